//! What a Rust user and a maintainer are promised of the crates themselves:
//! `locking-core`'s documentation builds without a warning, the crate
//! packages for crates.io (and the packaged copy builds on its own, without
//! cbindgen or any C artefact), and clippy with the workspace lints
//! (`unsafe_op_in_unsafe_fn`, `undocumented_unsafe_blocks`, `missing_docs`)
//! finds nothing. Doctests run with `cargo test` itself.

use std::path::Path;
use std::process::Command;

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root)
        .output()
        .expect("cargo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn core_docs_build_without_warnings() {
    let (ok, text) = cargo(
        &["doc", "-p", "locking-core", "--no-deps", "--quiet"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    );
    assert!(ok, "cargo doc failed or warned:\n{text}");
}

#[test]
fn core_packages_and_builds_alone() {
    // --allow-dirty: the test runs on work in progress too; the packaged
    // copy is built in target/package, away from the workspace.
    let (ok, text) = cargo(
        &["package", "-p", "locking-core", "--allow-dirty", "--quiet"],
        &[],
    );
    assert!(ok, "cargo package failed:\n{text}");
}

#[test]
fn clippy_is_clean() {
    let (present, _) = cargo(&["clippy", "--version"], &[]);
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "clippy is missing in CI (.ci/run installs it)"
        );
        println!("SKIP: clippy is not installed");
        return;
    }
    let (ok, text) = cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    assert!(ok, "clippy found something:\n{text}");
}
