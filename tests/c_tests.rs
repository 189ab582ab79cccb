//! The C test suite (`c_tests/`), run by `cargo test`.
//!
//! Each `c_tests/test_*.c` is compiled with the system C compiler against
//! `include/locking.h` and the freshly built `liblocking.so`, then run with a
//! fresh scratch directory (argv[1] and `$LOCKING_TEST_DIR`). Every C file has
//! its own `#[test]`, so a failure names the file; the C program prints one
//! line per check, shown by libtest when the test fails (or always with
//! `cargo test --test c_tests -- --nocapture`).
//!
//! Besides those, the header is compiled as strict C99 and as C++11, and a
//! program is linked statically against `liblocking.a`.
//!
//! Where the library comes from: `cargo test` builds the library target with
//! all its crate types (rlib, cdylib, staticlib) into `target/<profile>/deps`
//! before it runs any test, so that is used. If either file is missing there
//! (a cargo that builds only the rlib for tests), the harness runs
//! `cargo build --lib` with the same profile and target dir; that cannot
//! deadlock, because cargo releases the build lock before it runs tests.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A C test program that runs longer than this is killed (with its whole
/// process group) and fails. The suite is meant to take well under a minute.
const WATCHDOG: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn c_dir() -> PathBuf {
    repo().join("c_tests")
}

fn include_dir() -> PathBuf {
    let inc = repo().join("include");
    assert!(
        inc.join("locking.h").is_file(),
        "{} is missing: the build script should generate it",
        inc.join("locking.h").display()
    );
    inc
}

fn has_libs(dir: &Path) -> bool {
    dir.join("liblocking.so").is_file() && dir.join("liblocking.a").is_file()
}

/// The directory holding liblocking.so and liblocking.a of this build.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(find_or_build_libs)
}

fn find_or_build_libs() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target[/<triple>]/<profile>/deps/c_tests-<hash>
    let deps = exe.parent().expect("deps dir").to_path_buf();
    if has_libs(&deps) {
        return deps;
    }
    let profile_dir = deps.parent().expect("profile dir").to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile name")
        .to_string();
    let above = profile_dir.parent().expect("target dir").to_path_buf();
    // cargo marks the root of a target dir with CACHEDIR.TAG; if it is not
    // there, `above` is target/<triple>.
    let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
        (above, None)
    } else {
        let triple = above.file_name().unwrap().to_string_lossy().into_owned();
        (
            above.parent().expect("target dir").to_path_buf(),
            Some(triple),
        )
    };
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build")
        .arg("--lib")
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.arg("--profile").arg(other);
        }
    }
    if let Some(t) = triple {
        cmd.arg("--target").arg(t);
    }
    let out = cmd.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "{:?} failed:\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        has_libs(&profile_dir),
        "after `cargo build --lib`, {} lacks liblocking.so or liblocking.a",
        profile_dir.display()
    );
    profile_dir
}

/// `<target tmp>/c_tests/<pid of this test process>`: runs of the suite may
/// overlap (two `cargo test` at once), so each works in its own directory.
/// Directories of runs whose process is gone (failed runs keep theirs for
/// inspection) are removed the first time.
fn run_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_tests");
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let stale = match name.parse::<u32>() {
                    Ok(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
                    // left over from an older layout of this harness
                    Err(_) => {
                        name.starts_with("test_")
                            || name.starts_with("header_")
                            || name == "static_link"
                    }
                };
                if stale {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        base.join(std::process::id().to_string())
    })
}

/// A fresh, empty working directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = run_root().join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing old {}: {e}", dir.display()));
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Run a compiler; panic with its diagnostics if it fails.
fn compile(compiler: &str, args: &[OsString]) {
    let out = Command::new(compiler)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {} failed:\n{}{}",
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

/// The SONAME recorded in a shared library (`readelf -d`), if any.
fn soname(lib: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-d").arg(lib).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("(SONAME)"))?;
    let start = line.find('[')? + 1;
    let end = line.rfind(']')?;
    Some(line[start..end].to_string())
}

/// A directory with `liblocking.so` and, if the library has a SONAME other
/// than that (e.g. `liblocking.so.0`), a link of that name too: cargo builds
/// only `liblocking.so`, but the dynamic loader looks for the SONAME, as
/// after an install. The links point at this build's library.
fn dynamic_lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let real = lib_dir().join("liblocking.so");
        // one directory per library location (debug, release, ... share
        // CARGO_TARGET_TMPDIR); links are replaced atomically, so runs of
        // the suite may overlap
        let key: String = lib_dir()
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("c_tests-lib")
            .join(key);
        fs::create_dir_all(&dir).expect("creating the library link dir");
        let mut names = vec!["liblocking.so".to_string()];
        names.extend(soname(&real).filter(|n| n != "liblocking.so"));
        for n in names {
            let tmp = dir.join(format!(".{n}.{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&real, &tmp).unwrap_or_else(|e| panic!("symlink {n}: {e}"));
            fs::rename(&tmp, dir.join(&n)).unwrap_or_else(|e| panic!("rename {n}: {e}"));
        }
        dir
    })
}

/// Arguments to link dynamically against liblocking, with an rpath to it.
fn dynamic_link_args() -> Vec<OsString> {
    let dir = dynamic_lib_dir();
    let mut rpath = os("-Wl,-rpath,");
    rpath.push(dir);
    vec![os("-L"), dir.as_os_str().to_owned(), os("-llocking"), rpath]
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status:?}"),
    }
}

/// Run a test program in its own process group, killing the whole group
/// afterwards (and after `WATCHDOG`, failing); returns its exit status and
/// its stdout (stderr appended).
fn run_with_watchdog(exe: &Path, work: &Path) -> (ExitStatus, String) {
    let lockroot = work.join("scratch");
    let stdout_path = work.join("stdout.txt");
    let stderr_path = work.join("stderr.txt");
    let start = Instant::now();
    let mut child = Command::new(exe)
        .arg(&lockroot)
        .env("LOCKING_TEST_DIR", &lockroot)
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let pgid = child.id() as libc::pid_t;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if start.elapsed() > WATCHDOG {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever happened, no process of this test survives it (stopped or
    // orphaned children included).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let mut out = read(&stdout_path);
    let err = read(&stderr_path);
    if !err.is_empty() {
        out.push_str("--- stderr ---\n");
        out.push_str(&err);
    }
    let Some(status) = status else {
        let _ = child.wait();
        println!("{out}");
        panic!(
            "{} hung: killed by the watchdog after {:?}",
            exe.display(),
            WATCHDOG
        );
    };
    println!(
        "{} finished in {:.2?}: {}",
        exe.display(),
        start.elapsed(),
        describe(status)
    );
    (status, out)
}

/// Run a test program; print its output; panic unless it exits with status
/// 0 and reports no failing check.
fn run_program(exe: &Path, work: &Path) {
    let (status, out) = run_with_watchdog(exe, work);
    println!("{out}");
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        status.success() && failures.is_empty(),
        "{} failed ({}); {} failing checks:\n{}",
        exe.display(),
        describe(status),
        failures.len(),
        failures.join("\n")
    );
    // keep the scratch directory of a failed run for inspection only
    let _ = fs::remove_dir_all(work);
}

/// Compile `c_tests/<name>.c` into `<work>/<name>` with `extra` flags.
fn compile_c_test(name: &str, work: &Path, extra: &[&str]) -> PathBuf {
    let src = c_dir().join(format!("{name}.c"));
    let exe = work.join(name);
    let mut args: Vec<OsString> = [
        "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-g", "-O1",
    ]
    .iter()
    .chain(extra)
    .map(os)
    .collect();
    args.push(os("-I"));
    args.push(include_dir().into());
    args.push(os("-I"));
    args.push(c_dir().into());
    args.push(os("-o"));
    args.push(exe.clone().into());
    args.push(src.into());
    args.extend(dynamic_link_args());
    args.push(os("-lm"));
    compile("cc", &args);
    exe
}

fn run_c_test(name: &str) {
    let work = scratch(name);
    let exe = compile_c_test(name, &work, &[]);
    run_program(&exe, &work);
}

/// Negative control: the same program built with
/// `-DFORCE_METHOD=LOCKING_METHOD_FAKE` (no locking at all) must fail, or
/// its checks could not detect the absence of locking.
fn run_fake_control(name: &str) {
    let work = scratch(&format!("{name}-fake-control"));
    let exe = compile_c_test(name, &work, &["-DFORCE_METHOD=LOCKING_METHOD_FAKE"]);
    let (status, out) = run_with_watchdog(&exe, &work);
    let failing: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    let failures = failing.len();
    println!("as expected without locking, {failures} checks failed, e.g.:");
    for l in failing.iter().take(5) {
        println!("  {l}");
    }
    assert!(
        !status.success() && failures > 0,
        "{name} passed with FORCE_METHOD=LOCKING_METHOD_FAKE ({}, {failures} \
         failing checks): its checks cannot tell locking from no locking",
        describe(status)
    );
    let _ = fs::remove_dir_all(&work);
}

/// One `#[test]` per C program, named after it; `C_TESTS` lists them all.
macro_rules! c_tests {
    ($($name:ident),* $(,)?) => {
        const C_TESTS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run_c_test(stringify!($name));
            }
        )*
    };
}

/// Negative controls, `fake_control::<name>`: see `run_fake_control`.
/// (test_bad_input is about argument checking, not exclusion: no control.)
macro_rules! fake_controls {
    ($($name:ident),* $(,)?) => {
        mod fake_control {
            $(
                #[test]
                fn $name() {
                    super::run_fake_control(stringify!($name));
                }
            )*
        }
    };
}

// Every `c_tests/test_*.c`; `all_c_files_have_a_test` keeps this honest.
c_tests!(
    test_bad_input,
    test_chaos,
    test_exclusion,
    test_expire,
    test_fork,
    test_open_locked,
    test_stolen,
    test_stress,
    test_threads,
    test_timeout,
);

fake_controls!(
    test_chaos,
    test_exclusion,
    test_expire,
    test_fork,
    test_open_locked,
    test_stolen,
    test_stress,
    test_threads,
    test_timeout,
);

/// A new `c_tests/test_*.c` must not be silently skipped.
#[test]
fn all_c_files_have_a_test() {
    let mut found: Vec<String> = fs::read_dir(c_dir())
        .expect("c_tests dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("test_") && n.ends_with(".c"))
        .map(|n| n.trim_end_matches(".c").to_string())
        .collect();
    found.sort();
    let mut known: Vec<String> = C_TESTS.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(
        found, known,
        "c_tests/test_*.c and C_TESTS in tests/c_tests.rs differ"
    );
}

/// Both library files exist next to each other, from this very build.
#[test]
fn library_artifacts_exist() {
    let dir = lib_dir();
    for f in ["liblocking.so", "liblocking.a"] {
        let meta = fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 0, "{f} is empty");
    }
}

/// The header is valid strict C99 (pedantic, old-style prototypes rejected),
/// and its declarations and values match the contract (checked at compile
/// time and by calling every entry point).
#[test]
fn header_compiles_as_c99() {
    let work = scratch("header_c99");
    let exe = work.join("header_c99");
    let mut args: Vec<OsString> = [
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-Wstrict-prototypes",
    ]
    .iter()
    .map(os)
    .collect();
    args.extend([os("-I"), include_dir().into(), os("-o"), exe.clone().into()]);
    args.push(c_dir().join("header_check.c").into());
    args.extend(dynamic_link_args());
    compile("cc", &args);
    run_program(&exe, &work);
}

/// The header works from C++ (extern "C", no C-only constructs).
#[test]
fn header_compiles_as_cxx11() {
    let work = scratch("header_cxx11");
    let exe = work.join("header_cxx11");
    let mut args: Vec<OsString> = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
        .iter()
        .map(os)
        .collect();
    args.extend([os("-I"), include_dir().into(), os("-o"), exe.clone().into()]);
    args.push(c_dir().join("header_check.cpp").into());
    args.extend(dynamic_link_args());
    compile("c++", &args);
    run_program(&exe, &work);
}

/// liblocking.a links into a C program on its own (no liblocking.so
/// anywhere on the link line or the library path) and works.
#[test]
fn static_library_links() {
    let work = scratch("static_link");
    let exe = work.join("static_link");
    let mut args: Vec<OsString> = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
        .iter()
        .map(os)
        .collect();
    args.extend([os("-I"), include_dir().into(), os("-o"), exe.clone().into()]);
    args.push(c_dir().join("header_check.c").into());
    args.push(lib_dir().join("liblocking.a").into());
    // what Rust's std needs from the C side on Linux
    for l in [
        "-lgcc_s",
        "-lutil",
        "-lrt",
        "-lpthread",
        "-lm",
        "-ldl",
        "-lc",
    ] {
        args.push(os(l));
    }
    compile("cc", &args);
    run_program(&exe, &work);
}
