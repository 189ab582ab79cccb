//! The Python package (`bindings/python`), tested as a user gets it: a
//! fresh virtual environment (`python3 -m venv` in a temporary directory
//! outside the repository), `pip install pytest` and `pip install
//! ./bindings/python` into it (the install builds liblocking with cargo and
//! puts it inside the package), then pytest from that environment, run
//! outside the repository so that `import locking` is the installed package.
//! The tests in `bindings/python/tests` also run C parties (built with cc
//! against this build's liblocking.so) and this build's lockrun.
//!
//! The package's cargo build uses its own target directory,
//! `target/python-package`, kept between runs (a rebuild is quick) and apart
//! from `target/release`, which other tests use meanwhile.
//!
//! Without python3 (with its venv module) or without access to PyPI the test
//! prints a SKIP note and passes, unless `LOCKING_REQUIRE_PYTEST=1` (CI sets
//! it), where that is a failure.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// A directory removed when the test ends (kept if it failed, for a look).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "kept {} for a look", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn required() -> bool {
    std::env::var("LOCKING_REQUIRE_PYTEST").is_ok_and(|v| v == "1")
}

/// Fails in CI (`LOCKING_REQUIRE_PYTEST=1`), else prints a SKIP note.
fn skip(why: &str) {
    if required() {
        panic!("{why}, and LOCKING_REQUIRE_PYTEST=1");
    }
    // straight to the process's stderr: libtest captures eprintln!
    let _ = writeln!(
        std::io::stderr(),
        "SKIP python_package_in_a_fresh_venv: {why}"
    );
}

/// Runs one step; its output goes to `<dir>/<name>.out`, `.err`.
fn step(name: &str, cmd: &mut Command, dir: &Path, limit: Duration) -> (bool, Ran) {
    let work = dir.join(name);
    fs::create_dir_all(&work).unwrap();
    let start = Instant::now();
    let ran = run_with_watchdog(cmd, &work, limit);
    println!(
        "python: {name}: {} in {:.1} s",
        describe(ran.status),
        start.elapsed().as_secs_f64()
    );
    (ran.status.success(), ran)
}

#[test]
fn python_package_in_a_fresh_venv() {
    let started = Instant::now();
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return skip(&format!("python3 --version failed: {}", describe(o.status))),
        Err(e) => return skip(&format!("python3 cannot be run: {e}")),
    }
    // outside the repository (target/ is inside it)
    let tmp =
        TempDir(std::env::temp_dir().join(format!("liblocking-python-{}", std::process::id())));
    let _ = fs::remove_dir_all(&tmp.0);
    fs::create_dir_all(&tmp.0).unwrap();
    let venv = tmp.0.join("venv");
    let logs = tmp.0.join("logs");
    let python = venv.join("bin/python");

    let (ok, ran) = step(
        "venv",
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        &logs,
        Duration::from_secs(120),
    );
    if !ok {
        return skip(&format!(
            "python3 -m venv failed (on Debian: apt-get install python3-venv): {}",
            ran.show()
        ));
    }
    let pip = |args: &[&str]| {
        let mut c = Command::new(&python);
        c.args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
            .args(args)
            .env_remove("PIP_REQUIRE_VIRTUALENV")
            .env_remove("PYTHONPATH");
        c
    };
    let (ok, ran) = step(
        "pip-install-pytest",
        &mut pip(&["install", "pytest"]),
        &logs,
        Duration::from_secs(300),
    );
    if !ok {
        return skip(&format!(
            "pip could not install pytest from PyPI: {}",
            ran.show()
        ));
    }

    // The package: pip builds it (cargo, through setuptools-rust) in place.
    let (ok, ran) = step(
        "pip-install-package",
        pip(&["install", "./bindings/python"])
            .current_dir(repo())
            .env(
                "CARGO_TARGET_DIR",
                build().target_dir.join("python-package"),
            ),
        &logs,
        Duration::from_secs(900),
    );
    assert!(ok, "pip install ./bindings/python failed: {}", ran.show());

    // pytest from the venv, outside the repository
    let run_dir = tmp.0.join("run");
    fs::create_dir_all(&run_dir).unwrap();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(repo().join("bindings/python/tests"))
        .arg("--basetemp")
        .arg(tmp.0.join("pytest"))
        .current_dir(&run_dir)
        .env("LOCKING_TEST_INSTALLED", "1")
        .env("LOCKING_C_LIBDIR", dynamic_lib_dir("python"))
        .env("LOCKING_INCLUDE", repo().join("include"))
        .env("LOCKRUN", env!("CARGO_BIN_EXE_lockrun"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LOCKING_LIBRARY")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    let (ok, ran) = step("pytest", &mut cmd, &logs, Duration::from_secs(600));
    println!("{}", ran.stdout);
    assert!(ok, "pytest failed: {}", ran.show());
    // pytest exits 5 when it collected nothing; also insist on real work
    assert!(
        ran.stdout.contains(" passed"),
        "pytest ran no test: {}",
        ran.show()
    );
    assert!(
        !ran.stdout.contains(" skipped"),
        "pytest skipped tests (a missing cc or lockrun?): {}",
        ran.show()
    );
    println!(
        "python: all steps in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
