//! `make install` / `make uninstall` into temporary prefixes, and programs
//! built from the installed files with nothing but pkg-config's flags:
//! linked dynamically and statically (which proves `Libs.private` lists
//! what liblocking.a needs). Also the uninstalled build: after a top-level
//! `make`, a program linked with the README's own `cc ... -L target/release
//! -llocking -Wl,-rpath,...` line starts and runs.
//!
//! The install needs the release build: the test runs `cargo build
//! --release` in this build's target dir first (from inside `cargo test`
//! that works: cargo releases its build lock before running tests). Needs
//! make, cc and pkg-config (CI installs them); readelf (binutils) too.

mod support;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use support::*;

/// The tests of this file share target/release: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

fn release_built() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        assert!(
            build().triple.is_none(),
            "the Makefile installs from target/release: run this test without --target"
        );
        cargo_build("release", &[]);
    });
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn major() -> &'static str {
    version().split('.').next().unwrap()
}

/// `make -C <repo> <target> VAR=value...`, panicking with its output on
/// failure.
fn make(target: &str, vars: &[(&str, &Path)]) {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(repo())
        .arg(target)
        .arg(format!("CARGO={}", env!("CARGO")))
        .arg(format!("CARGO_TARGET_DIR={}", build().target_dir.display()));
    for (k, v) in vars {
        let mut a = OsString::from(format!("{k}="));
        a.push(v);
        cmd.arg(a);
    }
    let out = cmd.output().expect("running make (is it installed?)");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pkg-config with only our .pc file visible.
fn pkg_config(pcdir: &Path, sysroot: Option<&Path>, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.env("PKG_CONFIG_LIBDIR", pcdir)
        .env_remove("PKG_CONFIG_PATH")
        .env_remove("PKG_CONFIG_SYSROOT_DIR")
        .args(args)
        .arg("locking");
    if let Some(s) = sysroot {
        cmd.env("PKG_CONFIG_SYSROOT_DIR", s);
    }
    let out = cmd.output().expect("running pkg-config (is it installed?)");
    assert!(
        out.status.success(),
        "pkg-config {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// cc example.c <flags> -o exe
fn cc(exe: &Path, flags: &[String]) {
    let mut args: Vec<OsString> = vec![
        os("-std=c99"),
        os("-Wall"),
        os("-Wextra"),
        os("-Werror"),
        os(repo().join("tests/install/example.c")),
        os("-o"),
        os(exe),
    ];
    args.extend(flags.iter().map(os));
    compile("cc", &args);
}

/// Runs an example program; returns the paths of the liblocking objects it
/// had mapped.
fn run_example(exe: &Path, work: &Path, ld_library_path: Option<&Path>) -> Vec<String> {
    let dir = work.join(format!(
        "run-{}",
        exe.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg(dir.join("locks")).env_remove("LD_LIBRARY_PATH");
    if let Some(p) = ld_library_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    let ran = run_with_watchdog(&mut cmd, &dir, Duration::from_secs(60));
    assert!(ran.status.success(), "{}: {}", exe.display(), ran.show());
    assert!(
        ran.stdout.contains(&format!("version {}\n", version())) && ran.stdout.ends_with("ok\n"),
        "{}",
        ran.show()
    );
    ran.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("mapped "))
        .map(String::from)
        .collect()
}

fn needed(exe: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(exe)
        .output()
        .expect("readelf (binutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l[l.find('[')? + 1..l.rfind(']')?].to_string()))
        .collect()
}

/// Every file under `root` (not directories), relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn expected_files(lib: &str, include: &str, bin: &str, man: &str) -> Vec<String> {
    let mut v = vec![
        format!("{man}/man1/lockrun.1"),
        format!("{lib}/liblocking.so.{}", version()),
        format!("{lib}/liblocking.so.{}", major()),
        format!("{lib}/liblocking.so"),
        format!("{lib}/liblocking.a"),
        format!("{lib}/pkgconfig/locking.pc"),
        format!("{include}/locking.h"),
        format!("{include}/locking.hpp"),
        format!("{bin}/lockrun"),
    ];
    v.sort();
    v
}

#[test]
fn install_to_a_prefix_then_build_with_pkg_config_dynamic_and_static_then_uninstall() {
    let _one = serial();
    release_built();
    let work = scratch("install", "prefix");
    let prefix = work.join("prefix");
    make("install", &[("PREFIX", &prefix)]);

    assert_eq!(
        files_under(&prefix),
        expected_files("lib", "include", "bin", "share/man")
    );
    assert_eq!(
        fs::read(prefix.join("share/man/man1/lockrun.1")).unwrap(),
        fs::read(repo().join("man/lockrun.1")).unwrap()
    );
    let lib = prefix.join("lib");
    let real = format!("liblocking.so.{}", version());
    let so_name = format!("liblocking.so.{}", major());
    assert_eq!(
        fs::read_link(lib.join(&so_name)).unwrap(),
        PathBuf::from(&real)
    );
    assert_eq!(
        fs::read_link(lib.join("liblocking.so")).unwrap(),
        PathBuf::from(&so_name)
    );
    assert_eq!(soname(&lib.join(&real)).as_deref(), Some(so_name.as_str()));
    assert_eq!(
        fs::read(prefix.join("include/locking.h")).unwrap(),
        fs::read(repo().join("include/locking.h")).unwrap()
    );
    let lockrun = Command::new(prefix.join("bin/lockrun"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&lockrun.stdout).contains(version()));

    let pcdir = lib.join("pkgconfig");
    assert_eq!(
        pkg_config(&pcdir, None, &["--modversion"]),
        vec![version().to_string()]
    );

    // dynamic: the program loads the installed liblocking.so.0
    let flags = pkg_config(&pcdir, None, &["--cflags", "--libs"]);
    assert!(flags.contains(&"-llocking".to_string()), "{flags:?}");
    let dynamic = work.join("example-dynamic");
    cc(&dynamic, &flags);
    assert!(
        needed(&dynamic).contains(&so_name),
        "{:?}",
        needed(&dynamic)
    );
    let mapped = run_example(&dynamic, &work, Some(&lib));
    assert!(
        !mapped.is_empty()
            && mapped
                .iter()
                .all(|m| Path::new(m.trim()) == lib.join(&real)),
        "not the installed library: {mapped:?}"
    );

    // static: pkg-config --static, with the archive chosen over the .so
    // (-l:liblocking.a); Libs.private must bring in everything it needs
    let flags: Vec<String> = pkg_config(&pcdir, None, &["--static", "--cflags", "--libs"])
        .into_iter()
        .map(|f| {
            if f == "-llocking" {
                "-l:liblocking.a".to_string()
            } else {
                f
            }
        })
        .collect();
    assert!(flags.contains(&"-l:liblocking.a".to_string()), "{flags:?}");
    let fixed = work.join("example-static");
    cc(&fixed, &flags);
    assert!(
        !needed(&fixed).iter().any(|n| n.contains("liblocking")),
        "{:?}",
        needed(&fixed)
    );
    let mapped = run_example(&fixed, &work, None);
    assert!(mapped.is_empty(), "statically linked, yet {mapped:?}");

    make("uninstall", &[("PREFIX", &prefix)]);
    assert_eq!(files_under(&prefix), Vec::<String>::new());
}

#[test]
fn destdir_and_custom_dirs_for_packagers() {
    let _one = serial();
    release_built();
    let work = scratch("install", "destdir");
    let stage = work.join("stage");
    let vars: [(&str, &Path); 6] = [
        ("DESTDIR", &stage),
        ("PREFIX", Path::new("/usr")),
        ("LIBDIR", Path::new("/usr/lib/x86_64-linux-gnu")),
        ("INCLUDEDIR", Path::new("/usr/include/locking-0")),
        ("BINDIR", Path::new("/usr/sbin")),
        ("MANDIR", Path::new("/usr/man")),
    ];
    make("install", &vars);
    assert_eq!(
        files_under(&stage),
        expected_files(
            "usr/lib/x86_64-linux-gnu",
            "usr/include/locking-0",
            "usr/sbin",
            "usr/man"
        )
    );
    // the .pc file names the final paths, not the staging ones
    let pcdir = stage.join("usr/lib/x86_64-linux-gnu/pkgconfig");
    let pc = fs::read_to_string(pcdir.join("locking.pc")).unwrap();
    assert!(pc.contains("prefix=/usr\n"), "{pc}");
    assert!(
        pc.contains("libdir=${prefix}/lib/x86_64-linux-gnu\n"),
        "{pc}"
    );
    assert!(
        pc.contains("includedir=${prefix}/include/locking-0\n"),
        "{pc}"
    );
    assert!(!pc.contains(&stage.display().to_string()), "{pc}");
    assert_eq!(
        pkg_config(&pcdir, None, &["--cflags"]),
        vec!["-I/usr/include/locking-0".to_string()]
    );
    // build against the staged tree, as a cross or package build would
    let flags = pkg_config(&pcdir, Some(&stage), &["--cflags", "--libs"]);
    let exe = work.join("example-staged");
    cc(&exe, &flags);
    let libdir = stage.join("usr/lib/x86_64-linux-gnu");
    let mapped = run_example(&exe, &work, Some(&libdir));
    assert!(
        mapped
            .iter()
            .all(|m| m.trim().starts_with(&libdir.display().to_string())),
        "{mapped:?}"
    );

    make("uninstall", &vars);
    assert_eq!(files_under(&stage), Vec::<String>::new());
}

/// Libs.private in the installed locking.pc covers every library that
/// rustc says a program linking liblocking.a needs.
#[test]
fn libs_private_lists_what_the_staticlib_needs() {
    let _one = serial();
    release_built();
    let out = Command::new(env!("CARGO"))
        .args(["rustc", "--release", "--lib", "--crate-type", "staticlib"])
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&build().target_dir)
        .args(["--", "--print", "native-static-libs"])
        .output()
        .expect("cargo rustc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo rustc failed:\n{stderr}");
    let needed: Vec<&str> = stderr
        .lines()
        .find_map(|l| l.split("native-static-libs:").nth(1))
        .unwrap_or_else(|| panic!("no native-static-libs note in:\n{stderr}"))
        .split_whitespace()
        .collect();
    assert!(!needed.is_empty());

    let work = scratch("install", "libs-private");
    let prefix = work.join("prefix");
    make("install", &[("PREFIX", &prefix)]);
    let private = pkg_config(
        &prefix.join("lib/pkgconfig"),
        None,
        &["--static", "--libs-only-l"],
    );
    for lib in needed {
        assert!(
            private.iter().any(|p| p == lib),
            "rustc says liblocking.a needs {lib}, locking.pc's Libs.private lacks it: {private:?}"
        );
    }
}

/// The README's way to link against the uninstalled build works as
/// written: `make` at the top (which adds the SONAME link
/// `target/release/liblocking.so.0`), then the README's `cc` line, run from
/// the top of the checkout with `app.c` and `app` standing for this test's
/// program; the program starts (the loader finds liblocking.so.0 by the
/// rpath) and uses the library in target/release.
#[test]
fn the_readme_way_to_link_the_uninstalled_build_works() {
    let _one = serial();
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("cc app.c ") && l.contains("-L target/release"))
        .expect("README has no `cc app.c ... -L target/release ...` line");
    assert!(
        line.contains(" -llocking") && line.contains("-Wl,-rpath,$PWD/target/release"),
        "{line}"
    );

    // `make` (the default target), with this build's target directory
    make("all", &[]);
    let release = build().target_dir.join("release");
    let so_name = format!("liblocking.so.{}", major());
    assert_eq!(
        fs::read_link(release.join(&so_name)).unwrap(),
        PathBuf::from("liblocking.so"),
        "make did not lay out the SONAME link"
    );

    let work = scratch("install", "uninstalled");
    let exe = work.join("app");
    let mut cmd = line
        .replacen(
            "cc app.c ",
            &format!("cc '{}' ", repo().join("tests/install/example.c").display()),
            1,
        )
        .replace(" -o app", &format!(" -o '{}'", exe.display()));
    if build().target_dir != repo().join("target") {
        // CARGO_TARGET_DIR elsewhere: the README's target/release is there
        let at = release.display();
        cmd = cmd
            .replace("-L target/release", &format!("-L '{at}'"))
            .replace("-rpath,$PWD/target/release", &format!("-rpath,'{at}'"));
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(needed(&exe).contains(&so_name), "{:?}", needed(&exe));
    let mapped = run_example(&exe, &work, None);
    let real = fs::canonicalize(release.join("liblocking.so")).unwrap();
    assert!(
        !mapped.is_empty() && mapped.iter().all(|m| Path::new(m.trim()) == real),
        "not the library in {}: {mapped:?}",
        release.display()
    );
}
