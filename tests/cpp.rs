//! The C++ side: `include/locking.h` and `include/locking.hpp` compile
//! cleanly as C++11 (and later) with warnings as errors, with and without
//! exceptions; the wrapper's test programs pass against this build's
//! library: `tests/cpp/test_locking_hpp.cpp` (the wrapper's own types),
//! `tests/cpp/test_std_locks.cpp` (the standard lock types and algorithms,
//! fencing tokens and holders, against other processes and threads; built
//! and run once per standard, C++11 to C++20, each running every facility
//! its standard has) and `tests/cpp/test_no_exceptions.cpp` (a
//! `-fno-exceptions` build using the error_code overloads); and the examples
//! in `examples/cpp/` build and work: concurrent counters lose no increment,
//! a busy named lock gives 75.
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
    build_with(std, src, out, &[]);
}

/// The same, with extra compiler flags (`-pthread`, `-fno-exceptions`).
fn build_with(std: &str, src: &Path, out: &Path, extra: &[&str]) {
    let mut args = cxx_args(std, src, out);
    args.extend(extra.iter().map(os));
    args.extend(link_args());
    compile(CXX, &args);
}

/// Builds one of the test programs of `tests/cpp/` for `std` and runs it
/// with a scratch directory; panics unless it exits 0 without a FAIL line
/// and with at least `min_oks` passed checks. Returns its output.
fn run_test_program(name: &str, std: &str, extra: &[&str], min_oks: usize) -> String {
    let tag: String = extra
        .iter()
        .map(|f| f.trim_start_matches('-'))
        .collect::<Vec<_>>()
        .join("-");
    let work = scratch("cpp", &format!("{name}-{std}-{tag}"));
    let exe = work.join(name);
    build_with(
        std,
        &repo().join(format!("tests/cpp/{name}.cpp")),
        &exe,
        extra,
    );
    let ran = run_with_watchdog(
        Command::new(&exe).arg(work.join("scratch")),
        &work,
        Duration::from_secs(180),
    );
    println!("{}", ran.stdout);
    let failures: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert!(
        ran.status.success() && failures.is_empty(),
        "{name} ({std} {extra:?}): {}\nfailing checks:\n{}",
        ran.show(),
        failures.join("\n")
    );
    // it really checked something
    let oks = ran.stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert!(
        oks >= min_oks,
        "{name} ({std}): only {oks} checks ran:\n{}",
        ran.stdout
    );
    ran.stdout
}

/// The value of `__cplusplus` for each `-std=`, and the facilities of
/// `test_std_locks.cpp` ("-- facility NAME" lines) each standard must run.
fn std_locks_in(std: &str) {
    let (cplusplus, since): (&str, &[&str]) = match std {
        "c++11" => ("201103", &[]),
        "c++14" => ("201402", &["std::shared_lock"]),
        "c++17" => ("201703", &["std::shared_lock", "std::scoped_lock"]),
        "c++20" => (
            "202002",
            &["std::shared_lock", "std::scoped_lock", "file_clock"],
        ),
        _ => unreachable!(),
    };
    let out = run_test_program("test_std_locks", std, &["-pthread"], 300);
    assert!(
        out.contains(&format!("-- standard {cplusplus}\n")),
        "{std}: not built as {cplusplus}:\n{out}"
    );
    let always = [
        "Lockable",
        "TimedLockable",
        "SharedTimedLockable",
        "std::lock_guard",
        "std::unique_lock",
        "std::lock",
        "holder",
        "fencing_token",
    ];
    for f in always.iter().chain(since) {
        assert!(
            out.contains(&format!("-- facility {f}\n")),
            "{std}: the facility {f} was not run:\n{out}"
        );
    }
    // and none that the standard lacks
    for (f, first) in [
        ("std::shared_lock", "c++14"),
        ("std::scoped_lock", "c++17"),
        ("file_clock", "c++20"),
    ] {
        if !since.contains(&f) {
            assert!(
                !out.contains(&format!("-- facility {f}\n")),
                "{std}: ran {f}, which needs {first}"
            );
        }
    }
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
        for extra in [&[][..], &["-fno-exceptions"][..]] {
            let exe = work.join(format!("both-{std}{}", extra.concat()));
            build_with(std, &src, &exe, extra);
            let ran = run_with_watchdog(&mut Command::new(&exe), &work, Duration::from_secs(60));
            assert!(ran.status.success(), "{std} {extra:?}: {}", ran.show());
        }
    }
}

#[test]
fn wrapper_test_program_passes() {
    run_test_program("test_locking_hpp", "c++11", &[], 50);
}

#[test]
fn wrapper_test_program_passes_as_cxx20() {
    run_test_program("test_locking_hpp", "c++20", &[], 50);
}

#[test]
fn std_lock_types_work_in_cxx11() {
    std_locks_in("c++11");
}

#[test]
fn std_lock_types_work_in_cxx14() {
    std_locks_in("c++14");
}

#[test]
fn std_lock_types_work_in_cxx17() {
    std_locks_in("c++17");
}

#[test]
fn std_lock_types_work_in_cxx20() {
    std_locks_in("c++20");
}

#[test]
fn no_exceptions_build_works_with_error_codes_cxx11() {
    let out = run_test_program(
        "test_no_exceptions",
        "c++11",
        &["-fno-exceptions", "-pthread"],
        150,
    );
    assert!(out.contains("-- standard 201103, no exceptions\n"), "{out}");
}

#[test]
fn no_exceptions_build_works_with_error_codes_cxx20() {
    let out = run_test_program(
        "test_no_exceptions",
        "c++20",
        &["-fno-exceptions", "-pthread"],
        150,
    );
    assert!(out.contains("-- standard 202002, no exceptions\n"), "{out}");
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
    // "busy: " and locking_strerror(LOCKING_E_LOCKER_FAILED), whatever its wording
    assert!(
        b.stdout.starts_with("busy: ") && b.stdout.trim_end().len() > "busy: ".len(),
        "{}",
        b.show()
    );

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
