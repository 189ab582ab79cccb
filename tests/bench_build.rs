//! Keeps the benchmark suite (`bench/`) building, without running it.
//!
//! `bench/run.sh` installs its dependencies and runs for minutes, so it is
//! not part of the test command; this test only checks that its sources
//! still build against the current header and library:
//!
//! - `bench/lockbench.c` is compiled with `-Wall -Wextra -Werror` against
//!   `include/locking.h` and the C test support library
//!   (`c_tests/support.h`) and linked with this build's `liblocking.so`, once
//!   without liblockfile and, when its header is installed (Debian
//!   `liblockfile-dev`, which `bench/run.sh` installs), once with it;
//! - the Python driver and worker are byte-compiled (`python3 -m py_compile`);
//! - `bench/run.sh` is parsed with `bash -n`.
//!
//! Parts whose tools are missing on this machine are skipped with a note.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench_build");
    std::fs::create_dir_all(&d).expect("creating the output directory");
    d
}

/// The directory of this build's `liblocking.so`: cargo builds the library
/// with all its crate types next to the test binary (`target/<profile>/deps`)
/// before it runs tests; the profile directory itself is the other candidate.
fn lib_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?.to_path_buf();
    [deps.clone(), deps.parent()?.to_path_buf()]
        .into_iter()
        .find(|d| d.join("liblocking.so").is_file())
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn compile_lockbench(with_lockfile: bool) {
    let root = repo();
    let exe = out_dir().join(if with_lockfile {
        "lockbench"
    } else {
        "lockbench-no-liblockfile"
    });
    let mut args: Vec<OsString> = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]
        .iter()
        .map(OsString::from)
        .collect();
    if with_lockfile {
        args.push("-DHAVE_LOCKFILE".into());
    }
    args.push("-I".into());
    args.push(root.join("include").into());
    // the C test support library, c_tests/support.h
    args.push("-I".into());
    args.push(root.join("c_tests").into());
    args.push(root.join("bench/lockbench.c").into());
    match lib_dir() {
        Some(dir) => {
            args.push("-o".into());
            args.push(exe.into());
            args.push("-L".into());
            args.push(dir.into());
            args.push("-llocking".into());
            if with_lockfile {
                args.push("-llockfile".into());
            }
        }
        None => {
            println!("note: liblocking.so not found next to the test binary: compiling only, not linking");
            args.push("-c".into());
            args.push("-o".into());
            args.push(exe.with_extension("o").into());
        }
    }
    run(Command::new("cc").args(&args));
}

#[test]
fn lockbench_c_builds() {
    compile_lockbench(false);
    if Path::new("/usr/include/lockfile.h").is_file() {
        compile_lockbench(true);
    } else {
        println!(
            "note: /usr/include/lockfile.h is absent (liblockfile-dev not installed; \
             bench/run.sh installs it): the liblockfile part of bench/lockbench.c was not built"
        );
    }
}

#[test]
fn python_driver_compiles() {
    if !have("python3") {
        println!("note: python3 not found: the bench's Python files were not checked");
        return;
    }
    let bench = repo().join("bench");
    run(Command::new("python3")
        // keep __pycache__ out of the source tree
        .env("PYTHONPYCACHEPREFIX", out_dir().join("pycache"))
        .args(["-m", "py_compile"])
        .arg(bench.join("bench.py"))
        .arg(bench.join("pyworker.py")));
}

#[test]
fn run_script_parses() {
    if !have("bash") {
        println!("note: bash not found: bench/run.sh was not checked");
        return;
    }
    run(Command::new("bash")
        .arg("-n")
        .arg(repo().join("bench/run.sh")));
}
