//! The C++ side: `include/locking.h` and `include/locking.hpp` compile
//! cleanly as C++11 (and later) with warnings as errors, the wrapper's test
//! program (`tests/cpp/test_locking_hpp.cpp`) passes against this build's
//! library, and the examples in `examples/cpp/` build and work: concurrent
//! counters lose no increment, a busy named lock gives 75.
//!
//! Needs g++ (CI installs it); without it these tests fail, they do not skip.

mod support;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const CXX: &str = "g++";
const WARNINGS: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Wshadow",
    "-Wconversion",
    "-Wold-style-cast",
    "-Wnon-virtual-dtor",
];

fn cxx_args(std: &str, src: &Path, out: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![os(format!("-std={std}"))];
    a.extend(WARNINGS.iter().map(os));
    a.extend([os("-g"), os("-I"), os(repo().join("include"))]);
    a.extend([os("-o"), os(out), os(src)]);
    a
}

fn link_args() -> Vec<OsString> {
    let dir = dynamic_lib_dir("cpp");
    let mut rpath = os("-Wl,-rpath,");
    rpath.push(&dir);
    vec![os("-L"), os(&dir), os("-llocking"), rpath]
}

/// Compiles and links a C++ program against this build's liblocking.
fn build(std: &str, src: &Path, out: &Path) {
    let mut args = cxx_args(std, src, out);
    args.extend(link_args());
    compile(CXX, &args);
}

#[test]
fn headers_compile_cleanly_in_every_cxx_standard() {
    let work = scratch("cpp", "headers");
    // every declaration of both headers, used, in one translation unit
    let src = work.join("both.cpp");
    std::fs::write(
        &src,
        "#include <locking.h>\n#include <locking.hpp>\n#include <locking.h>\n\
         #include <locking.hpp>\n\
         int main() {\n\
           locking::locker l;\n\
           std::error_code ec;\n\
           locking::lock_guard g(l, ec);\n\
           locking::locked_file f;\n\
           return (ec == locking::errc::invalid_argument && !g && !f\n\
                   && locking::version() == locking_version()) ? 0 : 1;\n\
         }\n",
    )
    .unwrap();
    for std in ["c++11", "c++14", "c++17", "c++20"] {
        let exe = work.join(format!("both-{std}"));
        build(std, &src, &exe);
        let ran = run_with_watchdog(&mut Command::new(&exe), &work, Duration::from_secs(60));
        assert!(ran.status.success(), "{std}: {}", ran.show());
    }
}

#[test]
fn wrapper_test_program_passes() {
    let work = scratch("cpp", "wrapper");
    let exe = work.join("test_locking_hpp");
    build(
        "c++11",
        &repo().join("tests/cpp/test_locking_hpp.cpp"),
        &exe,
    );
    let ran = run_with_watchdog(
        Command::new(&exe).arg(work.join("scratch")),
        &work,
        Duration::from_secs(120),
    );
    println!("{}", ran.stdout);
    let failures: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert!(
        ran.status.success() && failures.is_empty(),
        "{}\nfailing checks:\n{}",
        ran.show(),
        failures.join("\n")
    );
    // it really checked something
    let oks = ran.stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert!(oks >= 50, "only {oks} checks ran:\n{}", ran.stdout);
}

fn example(work: &Path, name: &str) -> PathBuf {
    let exe = work.join(name);
    build(
        "c++11",
        &repo().join(format!("examples/cpp/{name}.cpp")),
        &exe,
    );
    exe
}

#[test]
fn counter_example_loses_no_increment_across_processes() {
    let work = scratch("cpp", "counter");
    let exe = example(&work, "counter");
    let file = work.join("count.txt");
    let n = 200;
    let procs: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .arg(&file)
                .arg(n.to_string())
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in procs {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "counter failed: {}", describe(o.status));
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{}\n", 4 * n)
    );
}

#[test]
fn job_example_is_busy_while_another_holds_the_lock() {
    let work = scratch("cpp", "job");
    let exe = example(&work, "job");
    let locks = work.join("locks");
    let mut a = Command::new(&exe)
        .arg(&locks)
        .args(["nightly", "-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut a_out = BufReader::new(a.stdout.take().unwrap());
    let mut line = String::new();
    a_out.read_line(&mut line).unwrap();
    assert_eq!(line, "working\n");

    let b = run_with_watchdog(
        Command::new(&exe).arg(&locks).args(["nightly", "0"]),
        &work,
        Duration::from_secs(60),
    );
    assert_eq!(b.status.code(), Some(75), "{}", b.show());
    assert!(b.stdout.starts_with("busy: LockerFailed"), "{}", b.show());

    a.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    a_out.read_line(&mut line).unwrap();
    assert_eq!(line, "done\n");
    assert!(a.wait().unwrap().success());

    let c = run_with_watchdog(
        Command::new(&exe).arg(&locks).args(["nightly", "0"]),
        &work,
        Duration::from_secs(60),
    );
    assert!(c.status.success(), "{}", c.show());
    assert_eq!(c.stdout, "working\ndone\n");
}
