//! The file system matrix (`hardening/fs_matrix.sh`), run by `cargo test`.
//!
//! The script mounts tmpfs, ext4/xfs/btrfs loop images, overlayfs and FUSE
//! (bindfs) file systems in a private `mktemp -d` directory and runs the C
//! driver `hardening/fsprobe.c` against this build's `liblocking.so` on each,
//! for every lock method: a stress run with lost-update counters, a stress run
//! with random SIGKILLs, the recovery of a SIGKILLed holder's lock by waiters
//! with expire disabled, and open_locked_fd; then two bindfs mounts of one
//! directory ("two views", as two hosts sharing a network file system). It
//! fails on any silent non-exclusion, stall, or error without a message, and
//! when its negative controls are not caught.
//!
//! It needs root (mount, losetup). Without root, or when nothing can be
//! mounted, the script prints `SKIP: <reason>` and this test passes; rows
//! whose tools are missing are shown as skipped (Debian packages:
//! e2fsprogs xfsprogs btrfs-progs bindfs fuse3). With
//! `LOCKING_FS_MATRIX_STRICT=1` such skips fail.
//!
//! The result tables go to stdout (`cargo test --test fs_matrix --
//! --nocapture`) and to `<target tmp>/fs_matrix/<pid>/RESULTS.md` (running
//! the script by hand writes `hardening/RESULTS.md`).

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

/// The script is meant to take about a minute; past this it is stopped
/// (SIGTERM, so that its trap unmounts everything; then SIGKILL).
const WATCHDOG: Duration = Duration::from_secs(300);

use support::{lib_dir, repo};

fn read(p: &Path) -> String {
    let mut s = String::new();
    let _ = fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
    s
}

/// Mount points under `dir` still listed in /proc/mounts.
fn mounts_under(dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    read(Path::new("/proc/mounts"))
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// `<target tmp>/fs_matrix/<pid>`: runs may overlap (two `cargo test` at
/// once), so each has its own directory. Directories of runs whose process
/// is gone are removed, unless something is still mounted below them
/// (removing files there would reach into the mounted file system).
fn work_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fs_matrix");
    if let Ok(entries) = fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            let path = e.path();
            if mounts_under(&path.to_string_lossy()).is_empty() {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    fs::create_dir_all(&dir).expect("creating the work dir");
    dir
}

#[test]
fn file_system_matrix() {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: not root (the file system matrix mounts file systems)");
        return;
    }
    let work = work_dir();
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hardening/fs_matrix.sh"))
        .env("LOCKING_LIB_DIR", lib_dir())
        .env("LOCKING_FS_MATRIX_RESULTS", work.join("RESULTS.md"))
        .env("TMPDIR", &work)
        .current_dir(repo());
    // a hung script gets SIGTERM first, so that its trap unmounts and
    // detaches what it set up; SIGKILL 30 s later
    let ran = support::run_watched(&mut cmd, &work, WATCHDOG, Duration::from_secs(30));
    let status = ran.status;
    let (out, err) = (ran.stdout, ran.stderr);
    println!("{out}");
    if !err.is_empty() {
        println!("--- stderr ---\n{err}");
    }
    println!("fs_matrix.sh took {:.1?}", start.elapsed());

    // the script cleans up after itself, even on failure; check it did
    let workdir = out
        .lines()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .map(str::to_string);
    if let Some(dir) = &workdir {
        let left = mounts_under(dir);
        for m in left.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        assert!(
            left.is_empty(),
            "fs_matrix.sh left mounts behind (now lazily unmounted): {left:?}"
        );
        let loops = Command::new("losetup")
            .arg("-a")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let stale: Vec<&str> = loops.lines().filter(|l| l.contains(dir.as_str())).collect();
        assert!(
            stale.is_empty(),
            "fs_matrix.sh left loop devices: {stale:?}"
        );
    }

    let Some(status) = status else {
        panic!("fs_matrix.sh hung: stopped after {WATCHDOG:?}");
    };
    if let Some(reason) = out.lines().find(|l| l.starts_with("SKIP:")) {
        assert!(
            status.success(),
            "fs_matrix.sh skipped but failed: {status:?}"
        );
        println!("{reason}");
        return;
    }
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        status.success() && fails.is_empty(),
        "fs_matrix.sh failed ({}):\n{}",
        match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => format!("{status:?}"),
        },
        fails.join("\n")
    );
    assert!(
        out.contains("fs_matrix: all checks passed"),
        "fs_matrix.sh ended without its closing line"
    );
}
