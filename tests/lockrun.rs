//! The `lockrun` command: runs a command under the lock, passes its exit
//! status on, gives up quietly with 75 (or `-E N`) when the lock is busy,
//! exits 70 when the lock was lost while the command ran, reports the
//! holder with `--check` (whatever its method), forwards signals, and
//! releases the lock however the command ends.
//!
//! Each flock(1)-compatible behaviour is checked against flock(1) itself
//! (util-linux): the same option forms, `-n`/`-w`/`-E` exit codes, quiet
//! conflicts, `-c`, `-s`, `-o`, and a PATH locking the file through every
//! path to it. Holders are synchronised through their output ("ready") and
//! stdin, never by sleeping; time limits only catch hangs.

mod support;

use locking::{Expire, Locker, Method, Timeout};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use support::{back_date, have, repo, scratch};

const LOCKRUN: &str = env!("CARGO_BIN_EXE_lockrun");
/// Only to catch hangs: nothing waits for this long when all is well.
const PATIENCE: Duration = Duration::from_secs(20);
const METHODS: [&str; 3] = ["kernel", "mkdir", "opencreate"];
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn method(name: &str) -> Method {
    Method::from_name(name).unwrap()
}

/// Default signal handling and an empty signal mask in the child (the test
/// process may have inherited ignored signals, which lockrun would rightly
/// keep).
fn plain_signals(c: &mut Command) {
    // SAFETY: runs in the forked child before exec and only makes
    // async-signal-safe calls (signal, sigemptyset, pthread_sigmask) on a
    // sigset_t it owns.
    unsafe {
        c.pre_exec(|| {
            for s in FORWARDED {
                libc::signal(s, libc::SIG_DFL);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// lockrun with no options.
fn bare() -> Command {
    let mut c = Command::new(LOCKRUN);
    c.env_remove("LOCKRUN_DIR");
    plain_signals(&mut c);
    c
}

/// lockrun with `--dir` and `--method`.
fn lockrun(dir: &Path, method: &str) -> Command {
    let mut c = bare();
    c.arg("--dir").arg(dir).arg("--method").arg(method);
    c
}

/// flock(1), running `-c` strings with /bin/sh as lockrun does.
fn flock() -> Command {
    let mut c = Command::new("flock");
    c.env("SHELL", "/bin/sh");
    plain_signals(&mut c);
    c
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .expect("running the command");
    Out {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A lockrun (or flock) process whose command talks to the test through
/// pipes.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<PathBuf>,
}

impl Holder {
    fn start(cmd: Command) -> Holder {
        Holder::spawn(cmd, None)
    }

    /// Its stderr goes to `log` (read with [`Holder::stderr`]).
    fn start_logged(cmd: Command, log: &Path) -> Holder {
        Holder::spawn(cmd, Some(log.to_path_buf()))
    }

    fn spawn(mut cmd: Command, log: Option<PathBuf>) -> Holder {
        let err = match &log {
            Some(p) => Stdio::from(fs::File::create(p).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("starting the holder");
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Holder {
            child,
            stdin,
            lines: rx,
            stderr: log,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("no line from the holder's command in time")
    }

    fn expect(&self, want: &str) {
        assert_eq!(self.line(), want);
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with plain integers.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Closes the command's stdin (so `read` ends) and waits for the holder.
    fn release(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.wait()
    }

    fn say(&mut self, s: &str) {
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{s}").unwrap();
        w.flush().unwrap();
    }

    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(start.elapsed() < PATIENCE, "the holder did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What it wrote on stderr (started with [`Holder::start_logged`]).
    fn stderr(&self) -> String {
        fs::read_to_string(self.stderr.as_ref().expect("not logged")).unwrap()
    }
}

impl Drop for Holder {
    /// Nothing started by a test outlives it, whatever the holder did with
    /// its command: kill the whole process group.
    fn drop(&mut self) {
        // SAFETY: kill(2) with plain integers.
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The command a holder runs: says "ready", then waits for its stdin to
/// close.
const WAIT_SCRIPT: &str = "echo ready; read x; echo bye";

/// `cmd` (lockrun or flock with its options and lock) holding the lock
/// while its command waits for a line on stdin.
fn hold_with(mut cmd: Command) -> Holder {
    cmd.args(["sh", "-c", WAIT_SCRIPT]);
    let h = Holder::start(cmd);
    h.expect("ready");
    h
}

/// lockrun holding `name` while its command waits for a line on stdin.
fn hold(dir: &Path, method: &str, name: &str) -> Holder {
    let mut c = lockrun(dir, method);
    c.args([name, "--"]);
    hold_with(c)
}

fn dir(test: &str) -> PathBuf {
    scratch("lockrun", test).join("locks")
}

#[test]
fn runs_the_command_with_its_arguments_and_passes_its_status_on() {
    let d = dir("status");
    let o = run(lockrun(&d, "kernel").args([
        "job",
        "--",
        "sh",
        "-c",
        "printf '%s|' \"$@\"; exit 3",
        "sh",
        "a b",
        "",
        "--dir",
    ]));
    assert_eq!(o.code(), Some(3), "{}", o.stderr);
    assert_eq!(o.stdout, "a b||--dir|");
    assert_eq!(o.stderr, "");
    // without the "--"
    let o = run(lockrun(&d, "kernel").args(["job", "true"]));
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let o = run(lockrun(&d, "kernel").args(["job", "false"]));
    assert_eq!(o.code(), Some(1));
}

#[test]
fn a_busy_lock_exits_75_quietly_as_flock_n_exits_1_and_v_names_the_holder() {
    for m in METHODS {
        let d = dir(&format!("busy-{m}"));
        let mut a = hold(&d, m, "job");

        // quiet, as `flock -n` is (a cron line must not mail every skip)
        let o = run(lockrun(&d, m).args(["-n", "job", "--", "echo", "ran"]));
        assert_eq!(o.code(), Some(75), "{m}: {}", o.stderr);
        assert_eq!(o.stdout, "", "{m}: the command ran without the lock");
        assert_eq!(o.stderr, "", "{m}: a busy lock is not an error");

        // -v: who holds it
        let o = run(lockrun(&d, m).args(["-v", "-n", "job", "true"]));
        assert_eq!(o.code(), Some(75), "{m}: {}", o.stderr);
        assert!(o.stderr.contains("timed out"), "{m}: {}", o.stderr);
        assert!(
            o.stderr.contains(&format!("pid {}", a.pid())),
            "{m}: the message does not name the holder: {}",
            o.stderr
        );
        // -q after -v: quiet again
        let o = run(lockrun(&d, m).args(["-vq", "-w", "0", "job", "true"]));
        assert_eq!(o.code(), Some(75));
        assert_eq!(o.stderr, "");

        // a real wait, bounded below by the timeout, quiet too
        let start = Instant::now();
        let o = run(lockrun(&d, m).args(["--timeout", "0.3", "job", "true"]));
        assert_eq!(o.code(), Some(75), "{m}: {}", o.stderr);
        assert!(start.elapsed() >= Duration::from_millis(300), "{m}");
        assert_eq!(o.stderr, "");

        // another name and another namespace are other locks
        let o = run(lockrun(&d, m).args(["-n", "other", "true"]));
        assert_eq!(o.code(), Some(0), "{m}: {}", o.stderr);
        let o = run(lockrun(&d, m).args(["-n", "--ns", "elsewhere", "job", "true"]));
        assert_eq!(o.code(), Some(0), "{m}: {}", o.stderr);

        assert_eq!(a.release().code(), Some(0));
        assert_eq!(a.line(), "bye");
        let o = run(lockrun(&d, m).args(["-n", "job", "true"]));
        assert_eq!(o.code(), Some(0), "{m}: {}", o.stderr);
    }

    // flock(1), for comparison: the same, with 1 for 75
    let f = scratch("lockrun", "busy-flock").join("f");
    let _a = hold_with({
        let mut c = flock();
        c.arg(&f);
        c
    });
    let o = run(flock().arg("-n").arg(&f).args(["echo", "ran"]));
    assert_eq!(
        (o.code(), o.stdout.as_str(), o.stderr.as_str()),
        (Some(1), "", "")
    );
    let start = Instant::now();
    let o = run(flock().args(["--timeout", "0.3"]).arg(&f).arg("true"));
    assert_eq!((o.code(), o.stderr.as_str()), (Some(1), ""));
    assert!(start.elapsed() >= Duration::from_millis(300));
    let o = run(flock().args(["--verbose", "-n"]).arg(&f).arg("true"));
    assert_eq!(o.code(), Some(1));
    assert_ne!(o.stderr, "", "flock --verbose says why");
}

/// Option forms as getopt users type them, each run by flock(1) on a
/// file held by flock and by lockrun on a name held by lockrun: both
/// accept it and exit with their conflict code (flock's default 1,
/// lockrun's 75, or both `-E`'s), quietly; on a free lock both run the
/// command.
#[test]
fn option_forms_give_the_same_results_as_with_flock() {
    let work = scratch("lockrun", "forms");
    let d = work.join("locks");
    let f = work.join("f");
    let free = work.join("free");
    // (options, flock's status, lockrun's status) on a busy lock
    let cases: &[(&[&str], i32, i32)] = &[
        (&["-n"], 1, 75),
        (&["--nb"], 1, 75),
        (&["--nonblock"], 1, 75),
        (&["-nx"], 1, 75),
        (&["-xn"], 1, 75),
        (&["-ne"], 1, 75),
        (&["-ns"], 1, 75),
        (&["-no"], 1, 75),
        (&["-n", "--close"], 1, 75),
        (&["-w0.2"], 1, 75),
        (&["-w", "0.2"], 1, 75),
        (&["--timeout=0.2"], 1, 75),
        (&["--timeout", "0.2"], 1, 75),
        (&["--wait=0.2"], 1, 75),
        (&["--wait", "0.2"], 1, 75),
        (&["-w", "0"], 1, 75),
        (&["-xw0.1"], 1, 75),
        (&["-n", "-E", "9"], 9, 9),
        (&["-nE9"], 9, 9),
        (&["-nE", "9"], 9, 9),
        (&["-E9", "-w0.1"], 9, 9),
        (&["--conflict-exit-code=0", "--nb"], 0, 0),
        (&["--conflict-exit-code", "42", "-n"], 42, 42),
    ];
    let _flock_holder = hold_with({
        let mut c = flock();
        c.arg(&f);
        c
    });
    let _lockrun_holder = hold(&d, "kernel", "job");
    for (opts, flock_code, lockrun_code) in cases {
        let o = run(flock().args(*opts).arg(&f).args(["echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str(), o.stderr.as_str()),
            (Some(*flock_code), "", ""),
            "flock {opts:?}"
        );
        let o = run(lockrun(&d, "kernel")
            .args(*opts)
            .args(["job", "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str(), o.stderr.as_str()),
            (Some(*lockrun_code), "", ""),
            "lockrun {opts:?}"
        );
        // free: both run the command
        let o = run(flock().args(*opts).arg(&free).args(["echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str()),
            (Some(0), "ran\n"),
            "flock {opts:?}: {}",
            o.stderr
        );
        let o = run(lockrun(&d, "kernel")
            .args(*opts)
            .args(["free", "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str()),
            (Some(0), "ran\n"),
            "lockrun {opts:?}: {}",
            o.stderr
        );
    }
    // lockrun's own short options group too
    for opts in [
        &["-nq"][..],
        &["-qn"][..],
        &["-nqs"][..],
        &["-q", "-w0"][..],
    ] {
        let o = run(lockrun(&d, "kernel")
            .args(opts)
            .args(["job", "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str(), o.stderr.as_str()),
            (Some(75), "", ""),
            "lockrun {opts:?}"
        );
    }
    // usage errors: 64 (EX_USAGE) from both
    for opts in [
        &["-E", "256"][..],
        &["-E", "-1"][..],
        &["-E", "x"][..],
        &["-w", "soon"][..],
        &["--frobnicate"][..],
    ] {
        let o = run(flock().args(opts).arg(&free).arg("true"));
        assert_eq!(o.code(), Some(64), "flock {opts:?}");
        let o = run(lockrun(&d, "kernel").args(opts).args(["free", "true"]));
        assert_eq!(o.code(), Some(64), "lockrun {opts:?}: {}", o.stderr);
        assert!(o.stderr.starts_with("lockrun: "), "{opts:?}: {}", o.stderr);
    }
}

#[test]
fn dash_c_runs_a_command_string_with_the_shell_as_flock_does() {
    let work = scratch("lockrun", "dash-c");
    let d = work.join("locks");
    let f = work.join("f");
    let script = "printf '%s|' a 'b c'; exit 4";
    for flag in ["-c", "--command"] {
        let by_flock = run(flock().arg(&f).args([flag, script]));
        let by_lockrun = run(lockrun(&d, "kernel").args(["job", flag, script]));
        assert_eq!(
            (by_flock.code(), by_flock.stdout.as_str()),
            (Some(4), "a|b c|")
        );
        assert_eq!(
            (
                by_lockrun.code(),
                by_lockrun.stdout.as_str(),
                by_lockrun.stderr.as_str()
            ),
            (Some(4), "a|b c|", ""),
            "{flag}"
        );
    }
    // lockrun also takes -c among the options, and --command=STRING
    let o = run(lockrun(&d, "kernel").args(["-nc", script, "job"]));
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(4), "a|b c|"),
        "{}",
        o.stderr
    );
    let o = run(lockrun(&d, "kernel").args(["job", &format!("--command={script}")]));
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(4), "a|b c|"),
        "{}",
        o.stderr
    );
    // exactly one command string: 64 from both
    for extra in [&["-c"][..], &["-c", "true", "more"][..]] {
        let o = run(flock().arg(&f).args(extra));
        assert_eq!(o.code(), Some(64), "flock {extra:?}");
        let o = run(lockrun(&d, "kernel").arg("job").args(extra));
        assert_eq!(o.code(), Some(64), "lockrun {extra:?}");
        assert!(o.stderr.contains("exactly one command"), "{}", o.stderr);
    }
    // the string runs under the lock
    let mut h = hold(&d, "kernel", "job");
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "-c", "echo ran"]));
    assert_eq!((o.code(), o.stdout.as_str()), (Some(75), ""));
    assert_eq!(h.release().code(), Some(0));
}

#[test]
fn shared_holders_coexist_and_exclude_exclusive_ones_as_with_flock_s() {
    for m in METHODS {
        let d = dir(&format!("shared-{m}"));
        let sh = |c: &mut Command| {
            c.args(["-s", "job", "--"]);
        };
        let mut a = hold_with({
            let mut c = lockrun(&d, m);
            sh(&mut c);
            c
        });
        let mut b = hold_with({
            let mut c = lockrun(&d, m);
            sh(&mut c);
            c
        });
        // a third shared one gets it at once; an exclusive one does not
        let o = run(lockrun(&d, m).args(["-s", "-n", "job", "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str()),
            (Some(0), "ran\n"),
            "{m}: {}",
            o.stderr
        );
        let o = run(lockrun(&d, m).args(["-n", "job", "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str(), o.stderr.as_str()),
            (Some(75), "", ""),
            "{m}"
        );
        let o = run(lockrun(&d, m).args(["-x", "-n", "job", "true"]));
        assert_eq!(o.code(), Some(75), "{m}");
        // --check sees both, without being told the method
        let o = run(bare().arg("--dir").arg(&d).args(["--check", "job"]));
        assert_eq!(o.code(), Some(1), "{m}: {}{}", o.stdout, o.stderr);
        assert!(
            o.stdout.contains("held shared by 2 holders"),
            "{m}: {}",
            o.stdout
        );
        for h in [&a, &b] {
            assert!(
                o.stdout.contains(&format!("pid {} ", h.pid())),
                "{m}: {}",
                o.stdout
            );
        }
        assert!(
            o.stdout.contains(&format!("method {m}")),
            "{m}: {}",
            o.stdout
        );
        assert_eq!(a.release().code(), Some(0));
        assert_eq!(b.release().code(), Some(0));
        let o = run(lockrun(&d, m).args(["-n", "job", "true"]));
        assert_eq!(o.code(), Some(0), "{m}: {}", o.stderr);

        // an exclusive holder excludes shared ones
        let mut x = hold(&d, m, "job");
        let o = run(lockrun(&d, m).args(["-s", "-n", "job", "echo", "ran"]));
        assert_eq!((o.code(), o.stdout.as_str()), (Some(75), ""), "{m}");
        assert_eq!(x.release().code(), Some(0));
    }

    // flock -s, for comparison
    let f = scratch("lockrun", "shared-flock").join("f");
    let shared_flock = || {
        let mut c = flock();
        c.arg("-s").arg(&f);
        hold_with(c)
    };
    let a = shared_flock();
    let b = shared_flock();
    let o = run(flock().arg("-sn").arg(&f).args(["echo", "ran"]));
    assert_eq!((o.code(), o.stdout.as_str()), (Some(0), "ran\n"));
    let o = run(flock().arg("-n").arg(&f).args(["echo", "ran"]));
    assert_eq!(
        (o.code(), o.stdout.as_str(), o.stderr.as_str()),
        (Some(1), "", "")
    );
    drop((a, b));
    let _x = hold_with({
        let mut c = flock();
        c.arg(&f);
        c
    });
    let o = run(flock().arg("-sn").arg(&f).args(["echo", "ran"]));
    assert_eq!((o.code(), o.stdout.as_str()), (Some(1), ""));
}

#[test]
fn check_reads_the_method_from_the_lock_directory_and_names_the_holder() {
    for m in METHODS {
        let d = dir(&format!("check-{m}"));
        let check = || run(bare().arg("--dir").arg(&d).args(["--check", "job"]));
        let o = check();
        assert_eq!(
            (o.code(), o.stdout.ends_with(": free\n")),
            (Some(0), true),
            "{m}: {}",
            o.stdout
        );

        let mut a = hold(&d, m, "job");
        // no --method, and a wrong one: the entry says which it is
        for wrong in [None, Some("mkdir"), Some("kernel")] {
            let mut c = bare();
            c.arg("--dir").arg(&d);
            if let Some(w) = wrong {
                c.args(["--method", w]);
            }
            let o = run(c.args(["--check", "job"]));
            assert_eq!(
                o.code(),
                Some(1),
                "{m} (--method {wrong:?}): {}{}",
                o.stdout,
                o.stderr
            );
            assert!(
                o.stdout
                    .contains(&format!("held by pid {} on host", a.pid())),
                "{m}: {}",
                o.stdout
            );
            assert!(
                o.stdout.contains(&format!("method {m}")),
                "{m}: {}",
                o.stdout
            );
        }
        // -v: the holder's record as key=value lines
        let o = run(bare().arg("--dir").arg(&d).args(["-v", "--check", "job"]));
        assert_eq!(o.code(), Some(1));
        for line in [
            "mode=exclusive".to_string(),
            format!("method={m}"),
            format!("pid={}", a.pid()),
            "state=alive".to_string(),
        ] {
            assert!(
                o.stdout.lines().any(|l| l == line),
                "{m}: no {line} in {}",
                o.stdout
            );
        }
        // another name is free
        let o = run(bare().arg("--dir").arg(&d).args(["--check", "other"]));
        assert_eq!(o.code(), Some(0), "{m}: {}", o.stdout);

        assert_eq!(a.release().code(), Some(0));
        let o = check();
        assert_eq!(o.code(), Some(0), "{m}: {}{}", o.stdout, o.stderr);
        assert!(o.stdout.ends_with(": free\n"), "{m}: {}", o.stdout);
    }
}

/// Makes the lock at `entry` look an hour old: the mtime of the file that
/// holds the owner record (mkdir: the `o.*` file in the entry directory;
/// opencreate and kernel: the entry file) is its age (docs/PROTOCOL.md).
fn age_lock(entry: &Path) {
    if entry.is_dir() {
        let records: Vec<PathBuf> = fs::read_dir(entry)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().as_bytes().starts_with(b"o."))
            .collect();
        assert_eq!(records.len(), 1, "{records:?}");
        back_date(&records[0]);
    } else {
        back_date(entry);
    }
}

/// The entry of `(ns "", name)` in `dir` for `method`, as the library
/// names it.
fn entry_of(dir: &Path, name: &[u8], m: &str) -> PathBuf {
    let l = Locker::new(name, dir, b"", Timeout::TRY, Expire::Never, method(m)).unwrap();
    PathBuf::from(l.entry_path())
}

#[test]
fn a_lock_lost_while_the_command_ran_exits_70_though_the_command_succeeded() {
    for m in METHODS {
        let work = scratch("lockrun", &format!("lost-{m}"));
        let d = work.join("locks");
        let log = work.join("stderr");
        let mut c = lockrun(&d, m);
        c.args(["job", "sh", "-c", WAIT_SCRIPT]);
        let mut a = Holder::start_logged(c, &log);
        a.expect("ready");
        // another party with --expire breaks the (now old) lock
        age_lock(&entry_of(&d, b"job", m));
        let o = run(lockrun(&d, m).args(["--expire", "60", "-n", "job", "echo", "broke it"]));
        assert_eq!(
            (o.code(), o.stdout.as_str()),
            (Some(0), "broke it\n"),
            "{m}: {}",
            o.stderr
        );
        // the holder's command finishes well, but the run was not protected
        let st = a.release();
        assert_eq!(a.line(), "bye", "{m}");
        assert_eq!(st.code(), Some(70), "{m}: {}", a.stderr());
        let err = a.stderr();
        assert!(err.contains("lost the lock"), "{m}: {err}");
        assert!(err.contains("exited with status 0"), "{m}: {err}");

        // a lock that was not broken: 0, nothing said
        let mut b = Holder::start_logged(
            {
                let mut c = lockrun(&d, m);
                c.args(["--expire", "3600", "job", "sh", "-c", WAIT_SCRIPT]);
                c
            },
            &log,
        );
        b.expect("ready");
        let o = run(lockrun(&d, m).args(["--expire", "3600", "-n", "job", "true"]));
        assert_eq!(o.code(), Some(75), "{m}");
        assert_eq!(b.release().code(), Some(0), "{m}: {}", b.stderr());
        assert_eq!(b.stderr(), "", "{m}");
    }

    // a PATH's lock too (named by the file's device and inode, in its
    // directory)
    let work = scratch("lockrun", "lost-path");
    let f = work.join("data");
    let log = work.join("stderr");
    let mut c = bare();
    c.arg(&f).args(["sh", "-c", WAIT_SCRIPT]);
    let mut a = Holder::start_logged(c, &log);
    a.expect("ready");
    let st = fs::metadata(&f).unwrap();
    let name = format!("inode:{}:{}", st.dev(), st.ino());
    age_lock(&entry_of(
        &fs::canonicalize(&work).unwrap(),
        name.as_bytes(),
        "kernel",
    ));
    let o = run(bare().args(["--expire", "60", "-n"]).arg(&f).arg("true"));
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert_eq!(a.release().code(), Some(70), "{}", a.stderr());
    assert!(a.stderr().contains("lost the lock"), "{}", a.stderr());
}

#[test]
fn a_path_locks_the_file_through_every_path_to_it_as_with_flock() {
    let work = fs::canonicalize(scratch("lockrun", "path")).unwrap();
    fs::create_dir(work.join("sub")).unwrap();
    std::os::unix::fs::symlink(&work, work.join("link")).unwrap();
    let d = work.join("locks");
    let file = work.join("x.lock");
    let other_paths = ["./x.lock", "sub/../x.lock", "link/x.lock"];

    // lockrun: the file is created and locked; every path to it is busy
    let mut c = bare();
    c.arg(&file).arg("--");
    let mut a = hold_with(c);
    assert!(file.is_file());
    for p in other_paths {
        let o = run(bare().current_dir(&work).args(["-n", p, "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str(), o.stderr.as_str()),
            (Some(75), "", ""),
            "{p}"
        );
    }
    let o = run(bare()
        .current_dir(&work)
        .args(["-v", "-w", "0.1", "./x.lock", "true"]));
    assert_eq!(o.code(), Some(75));
    assert!(o.stderr.contains("x.lock"), "{}", o.stderr);
    // a plain NAME (no '/') is a lock name in --dir, not the file
    let o = run(bare()
        .current_dir(&work)
        .arg("--dir")
        .arg(&d)
        .args(["-n", "x.lock", "echo", "ran"]));
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(0), "ran\n"),
        "{}",
        o.stderr
    );
    assert_eq!(a.release().code(), Some(0));
    let o = run(bare()
        .current_dir(&work)
        .args(["-n", "link/x.lock", "echo", "ran"]));
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(0), "ran\n"),
        "{}",
        o.stderr
    );

    // flock, for comparison: the same exclusions
    let f = work.join("y.lock");
    let mut c = flock();
    c.arg(&f);
    let b = hold_with(c);
    for p in ["./y.lock", "sub/../y.lock", "link/y.lock"] {
        let o = run(flock().current_dir(&work).args(["-n", p, "echo", "ran"]));
        assert_eq!((o.code(), o.stdout.as_str()), (Some(1), ""), "{p}");
    }
    drop(b);

    // what a PATH does not take, with a reason
    for (opts, why) in [
        (&["-s"][..], "not supported"),
        (&["--ns", "n"][..], "namespace"),
    ] {
        let o = run(bare()
            .current_dir(&work)
            .args(opts)
            .args(["./x.lock", "true"]));
        assert_eq!(o.code(), Some(64), "{opts:?}");
        assert!(o.stderr.contains(why), "{opts:?}: {}", o.stderr);
    }
    let o = run(bare().current_dir(&work).args(["--check", "./x.lock"]));
    assert_eq!(o.code(), Some(64));
    assert!(o.stderr.contains("PATH"), "{}", o.stderr);
}

/// A process that must not outlive the test.
struct KillOnDrop(i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) with plain integers.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// Runs `cmd` whose command leaves a background process behind and prints
/// its PID; returns it.
fn leaves_a_child(cmd: &mut Command) -> KillOnDrop {
    let o = run(cmd.args([
        "sh",
        "-c",
        "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!",
    ]));
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let pid: i32 = o.stdout.trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    KillOnDrop(pid)
}

/// flock(1) hands its lock to the command (the descriptor is inherited,
/// so a background child keeps the lock), unless `-o`; lockrun always
/// acts as `-o` does: the lock is lockrun's, released when COMMAND ends.
#[test]
fn dash_o_is_accepted_and_the_command_never_inherits_the_lock() {
    let work = scratch("lockrun", "close");
    let d = work.join("locks");
    for opts in [&[][..], &["-o"][..], &["--close"][..]] {
        let _bg = leaves_a_child(lockrun(&d, "kernel").args(opts).arg("job"));
        let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
        assert_eq!(o.code(), Some(0), "lockrun {opts:?}: {}", o.stderr);
    }
    let f = work.join("f");
    let _bg = leaves_a_child(flock().arg("-o").arg(&f));
    let o = run(flock().arg("-n").arg(&f).arg("true"));
    assert_eq!(o.code(), Some(0), "flock -o");
    let g = work.join("g");
    let _bg = leaves_a_child(flock().arg(&g));
    let o = run(flock().arg("-n").arg(&g).arg("true"));
    assert_eq!(
        o.code(),
        Some(1),
        "flock without -o: the child keeps the lock"
    );
}

#[test]
fn flock_options_lockrun_cannot_honour_are_refused_with_a_reason() {
    let d = dir("unsupported");
    for (args, why) in [
        (&["-u", "job", "true"][..], "not supported"),
        (&["--unlock", "job", "true"][..], "not supported"),
        (&["-F", "job", "true"][..], "not supported"),
        (&["9"][..], "file descriptor"),
        (&["job", "-n", "true"][..], "options go before NAME"),
    ] {
        let o = run(lockrun(&d, "kernel").args(args));
        assert_eq!(o.code(), Some(64), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
    }
}

#[test]
fn verbose_tells_how_long_getting_the_lock_took() {
    let d = dir("verbose");
    for opt in ["-v", "--verbose"] {
        let o = run(lockrun(&d, "mkdir").args([opt, "job", "echo", "ran"]));
        assert_eq!(
            (o.code(), o.stdout.as_str()),
            (Some(0), "ran\n"),
            "{}",
            o.stderr
        );
        assert!(
            o.stderr.contains("got an exclusive lock 'job'"),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("released"), "{}", o.stderr);
    }
    let o = run(lockrun(&d, "mkdir").args(["-vs", "job", "true"]));
    assert!(o.stderr.contains("got a shared lock"), "{}", o.stderr);
    // without it: nothing
    let o = run(lockrun(&d, "mkdir").args(["job", "true"]));
    assert_eq!(o.stderr, "");
}

#[test]
fn a_waiter_runs_only_after_the_holder_finished() {
    for m in ["kernel", "mkdir"] {
        let d = dir(&format!("order-{m}"));
        let log = d.parent().unwrap().join("log");
        let mut a = Holder::start({
            let mut c = lockrun(&d, m);
            c.args(["job", "sh", "-c"])
                .arg(format!("echo ready; read x; echo A >> '{}'", log.display()));
            c
        });
        a.expect("ready");
        let mut b = lockrun(&d, m);
        b.args(["--timeout", "60", "job", "sh", "-c"])
            .arg(format!("echo B >> '{}'", log.display()))
            .stdin(Stdio::null());
        let b = b.spawn().unwrap();
        assert_eq!(a.release().code(), Some(0));
        let o = b.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{m}");
        assert_eq!(fs::read_to_string(&log).unwrap(), "A\nB\n", "{m}");
    }
}

#[test]
fn signals_reach_the_command_and_the_lock_is_released() {
    let d = dir("signals");
    let script = "for s in INT HUP QUIT USR1 USR2; do trap \"echo got $s\" $s; done; \
                  trap 'echo got TERM; exit 7' TERM; \
                  echo ready; while :; do sleep 0.01; done";
    let mut c = lockrun(&d, "kernel");
    c.args(["job", "--", "sh", "-c", script]);
    let mut h = Holder::start(c);
    h.expect("ready");
    for (sig, name) in [
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGINT, "INT"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        h.signal(sig);
        assert_eq!(h.line(), format!("got {name}"));
    }
    // lockrun survived all of them, holding the lock
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.code(), Some(75));
    h.signal(libc::SIGTERM);
    h.expect("got TERM");
    assert_eq!(h.wait().code(), Some(7));
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_the_signal() {
    let d = dir("killed");
    for (sig, code) in [("TERM", 143), ("KILL", 137), ("USR1", 138)] {
        let o = run(lockrun(&d, "mkdir").args([
            "job",
            "sh",
            "-c",
            &format!("kill -{sig} $$; sleep 5"),
        ]));
        assert_eq!(o.code(), Some(code), "{sig}: {}", o.stderr);
        // released however it ended
        let o = run(lockrun(&d, "mkdir").args(["-n", "job", "true"]));
        assert_eq!(o.code(), Some(0), "{sig}: {}", o.stderr);
    }
    // SIGINT: lockrun dies of it too, so that a calling shell sees an
    // interrupted command (and $? is 130 all the same)
    let o = run(lockrun(&d, "mkdir").args(["job", "sh", "-c", "kill -INT $$; sleep 5"]));
    assert_eq!(o.status.signal(), Some(libc::SIGINT), "{:?}", o.status);
    let o = run(lockrun(&d, "mkdir").args(["-n", "job", "true"]));
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
}

/// Waits until process `pid` is gone (or a zombie).
fn wait_gone(pid: i32) {
    let start = Instant::now();
    loop {
        match support::proc_state(pid as u32) {
            None | Some('Z') => return,
            Some(_) => {}
        }
        assert!(start.elapsed() < PATIENCE, "process {pid} is still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn if_lockrun_is_killed_its_command_dies_too_and_the_lock_is_recovered() {
    for m in METHODS {
        let d = dir(&format!("pdeath-{m}"));
        let mut c = lockrun(&d, m);
        c.args(["job", "sh", "-c", "echo $$; read x; echo still running"]);
        let mut h = Holder::start(c);
        let sh: i32 = h.line().parse().unwrap();
        h.signal(libc::SIGKILL);
        assert_eq!(h.wait().signal(), Some(libc::SIGKILL));
        wait_gone(sh);
        let o = run(bare().arg("--dir").arg(&d).args(["--check", "job"]));
        assert_eq!(o.code(), Some(0), "{m}: {}{}", o.stdout, o.stderr);
        if m != "kernel" {
            // the entry of the dead holder is still there, judged stale
            assert!(o.stdout.contains("stale lock of pid"), "{m}: {}", o.stdout);
        }
        let o = run(lockrun(&d, m).args(["-n", "job", "true"]));
        assert_eq!(o.code(), Some(0), "{m}: {}", o.stderr);
    }
}

#[test]
fn the_lock_is_released_when_the_command_cannot_start() {
    let d = dir("nostart");
    let o = run(lockrun(&d, "kernel").args(["job", "--", "/no/such/program"]));
    assert_eq!(o.code(), Some(127), "{}", o.stderr);
    assert!(o.stderr.contains("/no/such/program"), "{}", o.stderr);
    let o = run(lockrun(&d, "kernel").args(["job", "--", "/"]));
    assert_eq!(o.code(), Some(126), "{}", o.stderr);
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
}

#[test]
fn lockrun_dir_comes_from_the_environment() {
    let d = dir("envdir");
    let mut c = Command::new(LOCKRUN);
    c.env("LOCKRUN_DIR", &d)
        .args(["job", "sh", "-c", "echo ready; read x"]);
    let mut h = Holder::start(c);
    h.expect("ready");
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.code(), Some(75), "{}", o.stderr);
    h.say("done");
    assert_eq!(h.wait().code(), Some(0));
}

#[test]
fn bad_command_lines_are_usage_errors() {
    let d = dir("usage");
    for args in [
        &[][..],
        &["job"][..],
        &["--timeout", "soon", "job", "true"][..],
        &["--method", "flock", "job", "true"][..],
        &["--frobnicate", "job", "true"][..],
        &["--check", "job", "true"][..],
    ] {
        let o = run(Command::new(LOCKRUN).arg("--dir").arg(&d).args(args));
        assert_eq!(o.code(), Some(64), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("lockrun"), "{args:?}: {}", o.stderr);
    }
    // a lock of one method, tried with another: a clear error, not silence
    let mut h = hold(&d, "mkdir", "job");
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.code(), Some(64), "{}", o.stderr);
    assert!(o.stderr.contains("method"), "{}", o.stderr);
    assert_eq!(h.release().code(), Some(0));

    for v in ["--version", "-V"] {
        let o = run(Command::new(LOCKRUN).arg(v));
        assert_eq!(o.code(), Some(0));
        assert!(o.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", o.stdout);
    }
}

/// The options column of `--help` (lines that start with blanks and a
/// dash, up to the description), or of the manual page's OPTIONS section
/// (the lines after `.TP`), as a sorted list of option names.
fn option_names(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = lines
        .flat_map(|l| {
            l.split(',')
                .map(|w| w.split_whitespace().next().unwrap_or("").to_string())
                .filter(|w| w.starts_with('-'))
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Roff source as plain text: font changes dropped, `\-` as `-`.
fn unroff(s: &str) -> String {
    s.replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\-", "-")
        .replace("\\(aq", "'")
        .replace("\\e", "\\")
        .replace("\\&", "")
}

#[test]
fn help_and_the_manual_page_match() {
    let help = run(Command::new(LOCKRUN).arg("--help"));
    assert_eq!(help.code(), Some(0));
    assert!(help.stdout.starts_with("usage: lockrun"), "{}", help.stdout);
    let h = run(Command::new(LOCKRUN).arg("-h"));
    assert_eq!(h.stdout, help.stdout);

    let page = fs::read_to_string(repo().join("man/lockrun.1")).expect("man/lockrun.1");
    let text = unroff(&page);

    // the same options
    let from_help = option_names(
        help.stdout
            .lines()
            .skip_while(|l| !l.starts_with("Options"))
            .take_while(|l| !l.is_empty())
            .filter(|l| l.trim_start().starts_with('-'))
            .map(|l| l.trim_start().split("  ").next().unwrap().to_string()),
    );
    let mut lines = text.lines().skip_while(|l| !l.starts_with(".SH OPTIONS"));
    lines.next();
    let section: Vec<&str> = lines.take_while(|l| !l.starts_with(".SH")).collect();
    let from_man = option_names(
        section
            .windows(2)
            .filter(|w| w[0].starts_with(".TP"))
            .map(|w| w[1].to_string()),
    );
    assert!(from_help.len() > 20, "{from_help:?}");
    assert_eq!(
        from_help, from_man,
        "--help and lockrun.1 list different options"
    );

    // the same exit codes, and the flock options it does not take
    for code in ["64", "70", "71", "75", "126", "127", "128"] {
        assert!(help.stdout.contains(code), "--help lacks {code}");
        assert!(text.contains(code), "lockrun.1 lacks {code}");
    }
    for unsupported in ["-u", "--unlock", "-F", "--no-fork"] {
        assert!(help.stdout.contains(unsupported), "{unsupported}");
        assert!(text.contains(unsupported), "{unsupported}");
    }
    assert!(text.contains(".TH LOCKRUN 1"), "no .TH header");
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "lockrun.1 does not name version {}",
        env!("CARGO_PKG_VERSION")
    );

    // it renders without warnings
    if have("groff") {
        let o = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(repo().join("man/lockrun.1")));
        assert_eq!((o.code(), o.stderr.as_str()), (Some(0), ""), "groff warns");
    } else {
        println!("SKIP rendering lockrun.1: groff is not installed");
    }
}
