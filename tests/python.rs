//! The Python binding's pytest suite (`bindings/python/tests`), run by
//! `cargo test` against this build's liblocking.so and lockrun.
//!
//! Without python3 or pytest the test prints a SKIP note and passes, unless
//! `LOCKING_REQUIRE_PYTEST=1` (CI sets it, after installing pytest), where a
//! missing pytest fails.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;
use support::*;

fn pytest_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import pytest"])
        .output()
    {
        Err(e) => Err(format!("python3 cannot be run: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "pytest is not installed for python3 ({})",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        )),
        Ok(_) => Ok(()),
    }
}

#[test]
fn python_binding_pytest_suite() {
    if let Err(why) = pytest_available() {
        if std::env::var("LOCKING_REQUIRE_PYTEST").is_ok_and(|v| v == "1") {
            panic!("{why}, and LOCKING_REQUIRE_PYTEST=1");
        }
        // straight to the process's stderr: libtest captures eprintln!
        let _ = writeln!(
            std::io::stderr(),
            "SKIP python_binding_pytest_suite: {why}; install it with `python3 -m pip install pytest`"
        );
        return;
    }
    let libdir = dynamic_lib_dir("python");
    let work = scratch("python", "pytest");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("bindings/python/tests"))
        .arg("--basetemp")
        .arg(work.join("tmp"))
        .current_dir(repo())
        .env("LOCKING_LIBRARY", libdir.join("liblocking.so"))
        .env("LOCKING_INCLUDE", repo().join("include"))
        .env("LOCKRUN", env!("CARGO_BIN_EXE_lockrun"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let ran = run_with_watchdog(&mut cmd, &work, Duration::from_secs(300));
    println!("{}", ran.stdout);
    assert!(ran.status.success(), "pytest failed: {}", ran.show());
    // pytest exits 5 when it collected nothing; also insist on real work
    assert!(
        ran.stdout.contains(" passed"),
        "pytest ran no test: {}",
        ran.show()
    );
}
