//! The `lockrun` command: runs a command under the lock, passes its exit
//! status on, gives up with 75 on timeout, reports the holder with
//! `--check`, forwards signals, and releases the lock however the command
//! ends. Holders are synchronised through their output ("ready") and stdin,
//! never by sleeping.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use support::scratch;

const LOCKRUN: &str = env!("CARGO_BIN_EXE_lockrun");
const PATIENCE: Duration = Duration::from_secs(30);
const METHODS: [&str; 3] = ["kernel", "mkdir", "opencreate"];
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// A lockrun command with default signal handling (the test process may
/// have inherited ignored signals, which lockrun would rightly keep).
fn lockrun(dir: &Path, method: &str) -> Command {
    let mut c = Command::new(LOCKRUN);
    c.arg("--dir").arg(dir).arg("--method").arg(method);
    c.env_remove("LOCKRUN_DIR");
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
    c
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.stdin(Stdio::null()).output().expect("running lockrun");
    Out {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A lockrun process whose command talks to the test through pipes.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Holder {
    fn start(mut cmd: Command) -> Holder {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("starting lockrun");
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
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("no line from the lockrun command in time")
    }

    fn expect(&self, want: &str) {
        assert_eq!(self.line(), want);
    }

    fn signal(&self, sig: libc::c_int) {
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Closes the command's stdin (so `read` ends) and waits for lockrun.
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
            assert!(start.elapsed() < PATIENCE, "lockrun did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Holder {
    /// Nothing started by a test outlives it, whatever lockrun did with
    /// its command: kill the whole process group.
    fn drop(&mut self) {
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// lockrun holding `name` while its command waits for a line on stdin.
fn hold(dir: &Path, method: &str, name: &str) -> Holder {
    let mut c = lockrun(dir, method);
    c.args([name, "--", "sh", "-c", "echo ready; read x; echo bye"]);
    let h = Holder::start(c);
    h.expect("ready");
    h
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
    assert_eq!(o.status.code(), Some(3), "{}", o.stderr);
    assert_eq!(o.stdout, "a b||--dir|");
    // without the "--"
    let o = run(lockrun(&d, "kernel").args(["job", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);
    let o = run(lockrun(&d, "kernel").args(["job", "false"]));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_held_lock_times_out_with_75_and_check_names_the_holder() {
    for m in METHODS {
        let d = dir(&format!("timeout-{m}"));
        let mut a = hold(&d, m, "job");

        let o = run(lockrun(&d, m).args(["-n", "job", "--", "echo", "ran"]));
        assert_eq!(o.status.code(), Some(75), "{m}: {}", o.stderr);
        assert_eq!(o.stdout, "", "{m}: the command ran without the lock");
        assert!(o.stderr.contains("timed out"), "{m}: {}", o.stderr);
        assert!(
            o.stderr.contains(&format!("pid {}", a.pid())),
            "{m}: the message does not name the holder: {}",
            o.stderr
        );

        // a real wait, bounded below by the timeout
        let start = Instant::now();
        let o = run(lockrun(&d, m).args(["--timeout", "0.3", "job", "true"]));
        assert_eq!(o.status.code(), Some(75), "{m}: {}", o.stderr);
        assert!(start.elapsed() >= Duration::from_millis(300), "{m}");

        // --quiet: the status alone
        let o = run(lockrun(&d, m).args(["-q", "-w", "0", "job", "true"]));
        assert_eq!(o.status.code(), Some(75));
        assert_eq!(o.stderr, "");

        let o = run(lockrun(&d, m).args(["--check", "job"]));
        assert_eq!(o.status.code(), Some(1), "{m}: {}", o.stderr);
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

        // another name and another namespace are other locks
        let o = run(lockrun(&d, m).args(["-n", "other", "true"]));
        assert_eq!(o.status.code(), Some(0), "{m}: {}", o.stderr);
        let o = run(lockrun(&d, m).args(["-n", "--ns", "elsewhere", "job", "true"]));
        assert_eq!(o.status.code(), Some(0), "{m}: {}", o.stderr);

        assert_eq!(a.release().code(), Some(0));
        assert_eq!(a.line(), "bye");

        let o = run(lockrun(&d, m).args(["--check", "job"]));
        assert_eq!(o.status.code(), Some(0), "{m}: {}", o.stderr);
        assert!(o.stdout.ends_with(": free\n"), "{m}: {}", o.stdout);
        let o = run(lockrun(&d, m).args(["-n", "job", "true"]));
        assert_eq!(o.status.code(), Some(0), "{m}: {}", o.stderr);
    }
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
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "A\nB\n", "{m}");
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
    assert_eq!(o.status.code(), Some(75));
    h.signal(libc::SIGTERM);
    h.expect("got TERM");
    assert_eq!(h.wait().code(), Some(7));
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);
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
        assert_eq!(o.status.code(), Some(code), "{sig}: {}", o.stderr);
        // released however it ended
        let o = run(lockrun(&d, "mkdir").args(["-n", "job", "true"]));
        assert_eq!(o.status.code(), Some(0), "{sig}: {}", o.stderr);
    }
    // SIGINT: lockrun dies of it too, so that a calling shell sees an
    // interrupted command (and $? is 130 all the same)
    let o = run(lockrun(&d, "mkdir").args(["job", "sh", "-c", "kill -INT $$; sleep 5"]));
    assert_eq!(o.status.signal(), Some(libc::SIGINT), "{:?}", o.status);
    let o = run(lockrun(&d, "mkdir").args(["-n", "job", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);
}

/// Waits until process `pid` is gone (or a zombie).
fn wait_gone(pid: i32) {
    let start = Instant::now();
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(s) => {
                let state = s.rsplit(')').next().unwrap().trim_start().chars().next();
                if state == Some('Z') {
                    return;
                }
            }
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
        let o = run(lockrun(&d, m).args(["--check", "job"]));
        assert_eq!(o.status.code(), Some(0), "{m}: {}{}", o.stdout, o.stderr);
        if m != "kernel" {
            // the entry of the dead holder is still there, judged stale
            assert!(o.stdout.contains("stale lock of pid"), "{m}: {}", o.stdout);
        }
        let o = run(lockrun(&d, m).args(["-n", "job", "true"]));
        assert_eq!(o.status.code(), Some(0), "{m}: {}", o.stderr);
    }
}

#[test]
fn the_lock_is_released_when_the_command_cannot_start() {
    let d = dir("nostart");
    let o = run(lockrun(&d, "kernel").args(["job", "--", "/no/such/program"]));
    assert_eq!(o.status.code(), Some(127), "{}", o.stderr);
    assert!(o.stderr.contains("/no/such/program"), "{}", o.stderr);
    let o = run(lockrun(&d, "kernel").args(["job", "--", "/"]));
    assert_eq!(o.status.code(), Some(126), "{}", o.stderr);
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);
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
    assert_eq!(o.status.code(), Some(75), "{}", o.stderr);
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
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("lockrun"), "{args:?}: {}", o.stderr);
    }
    // a lock of one method, tried with another: a clear error, not silence
    let mut h = hold(&d, "mkdir", "job");
    let o = run(lockrun(&d, "kernel").args(["-n", "job", "true"]));
    assert_eq!(o.status.code(), Some(64), "{}", o.stderr);
    assert!(o.stderr.contains("method"), "{}", o.stderr);
    assert_eq!(h.release().code(), Some(0));

    let o = run(Command::new(LOCKRUN).arg("--help"));
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.starts_with("usage: lockrun"), "{}", o.stdout);
    let o = run(Command::new(LOCKRUN).arg("--version"));
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", o.stdout);
}
