//! Runs the spin model check of the lock protocol (model/check.sh). The
//! script itself prints SKIP and succeeds when spin is not installed;
//! .ci/run installs it.

#[test]
fn protocol_model_checks() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("bash")
        .arg("model/check.sh")
        .current_dir(root)
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "model check failed:\n{text}");
}
