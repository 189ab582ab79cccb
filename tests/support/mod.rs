//! Helpers shared by the packaging tests (install, C++, Python, lockrun):
//! where the built library is, scratch directories, and running programs
//! with a watchdog so that a hang fails a test instead of blocking CI.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory, the profile directory name ("debug", "release",
/// ...) and the target triple (if cross-compiling) of this test binary.
pub struct Build {
    pub target_dir: PathBuf,
    pub profile: String,
    pub triple: Option<String>,
    /// `target[/<triple>]/<profile>`
    pub profile_dir: PathBuf,
}

pub fn build() -> &'static Build {
    static B: OnceLock<Build> = OnceLock::new();
    B.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // target[/<triple>]/<profile>/deps/<test>-<hash>
        let deps = exe.parent().expect("deps dir");
        let profile_dir = deps.parent().expect("profile dir").to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile name")
            .to_string();
        let above = profile_dir.parent().expect("target dir").to_path_buf();
        // cargo marks the root of a target dir with CACHEDIR.TAG
        let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
            (above, None)
        } else {
            let t = above.file_name().unwrap().to_string_lossy().into_owned();
            (above.parent().expect("target dir").to_path_buf(), Some(t))
        };
        Build {
            target_dir,
            profile,
            triple,
            profile_dir,
        }
    })
}

/// Runs `cargo build <extra>` for this test binary's target dir and triple
/// (`profile`: "debug", "release" or a custom profile name). From inside
/// `cargo test` this cannot deadlock: cargo releases its build lock before
/// it runs the tests.
pub fn cargo_build(profile: &str, extra: &[&str]) {
    let b = build();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build")
        .args(extra)
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&b.target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.arg("--profile").arg(other);
        }
    }
    if let Some(t) = &b.triple {
        cmd.arg("--target").arg(t);
    }
    let out = cmd.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has_libs(dir: &Path) -> bool {
    dir.join("liblocking.so").is_file() && dir.join("liblocking.a").is_file()
}

/// The directory holding this build's liblocking.so and liblocking.a.
/// `cargo test` builds every crate type of the library into
/// `target/<profile>/deps`; if a cargo does not, `cargo build --lib` makes
/// them in `target/<profile>`.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let b = build();
        let deps = b.profile_dir.join("deps");
        if has_libs(&deps) {
            return deps;
        }
        cargo_build(&b.profile, &["--lib"]);
        assert!(
            has_libs(&b.profile_dir),
            "after `cargo build --lib`, {} lacks liblocking.so or liblocking.a",
            b.profile_dir.display()
        );
        b.profile_dir.clone()
    })
}

/// The SONAME recorded in a shared library (`readelf -d`), if any.
pub fn soname(lib: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-d").arg(lib).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("(SONAME)"))?;
    let start = line.find('[')? + 1;
    let end = line.rfind(']')?;
    Some(line[start..end].to_string())
}

/// A directory with links `liblocking.so` and `liblocking.so.0` (the
/// SONAME, which the dynamic loader looks for) to this build's library.
/// `suite` keeps the directories of different test binaries apart.
pub fn dynamic_lib_dir(suite: &str) -> PathBuf {
    let real = lib_dir().join("liblocking.so");
    let key: String = lib_dir()
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{suite}-lib"))
        .join(key);
    fs::create_dir_all(&dir).expect("creating the library link dir");
    let mut names = vec!["liblocking.so".to_string(), "liblocking.so.0".to_string()];
    names.extend(soname(&real).filter(|n| !names.contains(n)));
    for n in names {
        // replaced atomically: test binaries, and the tests (threads) of
        // one binary, may run at the same time
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{n}.{}.{seq}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&real, &tmp).unwrap_or_else(|e| panic!("symlink {n}: {e}"));
        fs::rename(&tmp, dir.join(&n)).unwrap_or_else(|e| panic!("rename {n}: {e}"));
    }
    dir
}

/// A fresh, empty directory for one test.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(suite)
        .join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing old {}: {e}", dir.display()));
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

pub fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status:?}"),
    }
}

/// What a program printed and how it ended.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The program's PID (also its process group's ID).
    pub pid: u32,
}

impl Ran {
    pub fn show(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe(self.status),
            self.stdout,
            self.stderr
        )
    }
}

/// How a watched program ended: `status` is `None` when it was stopped by
/// the watchdog.
pub struct Watched {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// The program's PID (also its process group's ID).
    pub pid: u32,
}

/// The watchdog runner of the Rust tests. Runs `cmd` in its own process
/// group with stdin closed, output to `stdout.txt` and `stderr.txt` in
/// `work` (no pipe can fill up and block the program). A program still
/// running after `limit` is stopped: with a `grace` period, its group gets
/// SIGTERM first (so that a script's trap can clean up) and SIGKILL when
/// the program has not ended within `grace`; without one, SIGKILL at once.
/// Whatever happened, the whole group is killed at the end: nothing of the
/// run outlives it.
pub fn run_watched(cmd: &mut Command, work: &Path, limit: Duration, grace: Duration) -> Watched {
    let out_path = work.join("stdout.txt");
    let err_path = work.join("stderr.txt");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pgid = child.id() as libc::pid_t;
    let kill_group = |sig: libc::c_int| {
        // SAFETY: kill(2) with plain integers; the group is the child's own
        // (process_group(0)), so nothing outside this run is hit.
        unsafe {
            libc::kill(-pgid, sig);
        }
    };
    let poll = |child: &mut std::process::Child, until: Duration| loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if start.elapsed() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = poll(&mut child, limit);
    if status.is_none() && !grace.is_zero() {
        kill_group(libc::SIGTERM);
        poll(&mut child, start.elapsed() + grace);
    }
    kill_group(libc::SIGKILL);
    if status.is_none() {
        let _ = child.wait();
    }
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    Watched {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        pid: pgid as u32,
    }
}

/// `run_watched` without a grace period, for programs that must finish:
/// panics (with their output) if `cmd` has not finished within `limit`.
pub fn run_with_watchdog(cmd: &mut Command, work: &Path, limit: Duration) -> Ran {
    let w = run_watched(cmd, work, limit, Duration::ZERO);
    match w.status {
        Some(status) => Ran {
            status,
            stdout: w.stdout,
            stderr: w.stderr,
            pid: w.pid,
        },
        None => panic!(
            "{cmd:?} hung: killed after {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            w.stdout, w.stderr
        ),
    }
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...; the fields
/// after the command name, which may hold anything, counted from its last
/// `)`); `None` if the process is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let s = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&s[close + 1..]).into_owned();
    rest.split_ascii_whitespace().next()?.chars().next()
}

/// Runs a compiler (or any build tool); panics with its diagnostics if it
/// fails.
pub fn compile(program: &str, args: &[OsString]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed:\n{}{}",
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True if `program` can be run (found in PATH).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Sets the mtime of `path` (not following symlinks) to one hour ago.
pub fn back_date(path: &Path) {
    let c =
        std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).unwrap();
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a live, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: now.tv_sec - 3600,
            tv_nsec: now.tv_nsec,
        },
    ];
    // SAFETY: a NUL-terminated path and an array of two timespecs, both
    // alive for the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat({}): {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}
