//! `lockrun`: run a command while holding a liblocking lock, so that shell
//! scripts and cron jobs get the same cooperative locks as C programs.
//!
//! ```text
//! lockrun [OPTIONS] NAME [--] COMMAND [ARGS...]
//! lockrun [OPTIONS] --check NAME
//! ```
//!
//! Exit status: the command's; 128+N if a signal N killed it (for SIGINT,
//! lockrun then kills itself with SIGINT, so that a calling shell stops its
//! loop as it would for the command); 75 (EX_TEMPFAIL) when the lock could
//! not be had within `--timeout`; 64 usage errors; 71 lock failures of the
//! operating system; 126 the command cannot be executed; 127 not found.
//! With `--check`: 0 free, 1 held.
//!
//! Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
//! lockrun are passed on to the command; lockrun keeps the lock until the
//! command has ended, however it ended. A SIGINT or SIGQUIT that the
//! terminal sent to the whole foreground process group (Ctrl-C, Ctrl-\)
//! reached the command already and is not sent a second time. If lockrun
//! itself dies (SIGKILL), the command is killed too (`PR_SET_PDEATHSIG`), so
//! it never goes on running unlocked.

use locking::{Error, Expire, HolderInfo, Liveness, Locker, Method, Timeout};
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

const EX_OK: i32 = 0;
const EX_HELD: i32 = 1;
const EX_USAGE: i32 = 64;
const EX_OSERR: i32 = 71;
const EX_TEMPFAIL: i32 = 75;
const EX_CANNOT_EXECUTE: i32 = 126;
const EX_NOT_FOUND: i32 = 127;

/// The signals passed on to the command.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

const USAGE: &str = "\
usage: lockrun [OPTIONS] NAME [--] COMMAND [ARGS...]
       lockrun [OPTIONS] --check NAME

Runs COMMAND while holding the cooperative lock NAME (a liblocking Locker
with objname NAME) and exits with COMMAND's status.

options:
  --dir D        lock directory (default: $LOCKRUN_DIR, else /tmp/lockrun-UID,
                 a private directory of the calling user); every party that
                 shares the lock must use the same directory
  --ns NS        namespace of NAME (default: the empty namespace)
  --timeout S    seconds to wait for the lock: < 0 or 'inf' forever (the
                 default), 0 try once; fractions allowed
  -w S           same as --timeout S (as in flock(1))
  -n, --nonblock same as --timeout 0
  --expire S     break a lock older than S seconds (default 0: never; locks
                 of holders that died on this machine are broken anyway)
  --method M     kernel (default), mkdir, opencreate or fake (or 0-3); all
                 parties must use the same method
  --check        do not run anything: print whether NAME is free or who
                 holds it; exit 0 if free, 1 if held
  -q, --quiet    no message when the lock cannot be had in time
  -h, --help     this text
  --version      print the version

exit status: COMMAND's status, or 128+N if signal N killed it; 75 if the lock
was not had within --timeout; 64 usage error; 71 locking failed (OS error);
126 COMMAND cannot be executed; 127 COMMAND not found.

Signals SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lockrun
are passed on to COMMAND; the lock is released when COMMAND ends, however it
ends.
";

/// What the command line asks for.
#[derive(Debug)]
struct Opts {
    dir: Option<PathBuf>,
    ns: Vec<u8>,
    timeout: f64,
    expire: f64,
    method: Method,
    check: bool,
    quiet: bool,
    name: Vec<u8>,
    command: Vec<OsString>,
}

/// Why lockrun stops before running anything: a message and a status.
struct Exit {
    status: i32,
    message: Option<String>,
}

impl Exit {
    fn usage(msg: impl Into<String>) -> Exit {
        Exit {
            status: EX_USAGE,
            message: Some(format!(
                "{}\nTry 'lockrun --help' for more information.",
                msg.into()
            )),
        }
    }

    fn quiet(status: i32) -> Exit {
        Exit {
            status,
            message: None,
        }
    }
}

fn seconds(opt: &str, v: &OsStr) -> Result<f64, Exit> {
    let s = v
        .to_str()
        .ok_or_else(|| Exit::usage(format!("{opt}: not a number")))?;
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| Exit::usage(format!("{opt}: '{s}' is not a number of seconds")))?;
    if x.is_nan() {
        return Err(Exit::usage(format!(
            "{opt}: NaN is not a number of seconds"
        )));
    }
    Ok(x)
}

fn secs_timeout(s: f64) -> Result<Timeout, Exit> {
    Timeout::from_secs(s).map_err(|e| lock_failure(&e))
}

fn secs_expire(s: f64) -> Result<Expire, Exit> {
    Expire::from_secs(s).map_err(|e| lock_failure(&e))
}

fn method(v: &OsStr) -> Result<Method, Exit> {
    let s = v.to_str().unwrap_or("");
    Method::from_name(s)
        .or_else(|| {
            // The C API's numbers, as 0.1 accepted them.
            let by_int = [
                Method::Mkdir,
                Method::OpenCreate,
                Method::Fake,
                Method::Kernel,
            ];
            s.parse::<usize>().ok().and_then(|i| by_int.get(i).copied())
        })
        .ok_or_else(|| {
            Exit::usage(format!(
                "--method: unknown method '{}' (kernel, mkdir, opencreate or fake)",
                v.to_string_lossy()
            ))
        })
}

fn parse(args: Vec<OsString>) -> Result<Opts, Exit> {
    let mut o = Opts {
        dir: None,
        ns: Vec::new(),
        timeout: -1.0,
        expire: 0.0,
        method: Method::Kernel,
        check: false,
        quiet: false,
        name: Vec::new(),
        command: Vec::new(),
    };
    let mut it = args.into_iter();
    let name = loop {
        let Some(arg) = it.next() else {
            return Err(Exit::usage("lockrun: missing NAME"));
        };
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            match it.next() {
                Some(n) => break n,
                None => return Err(Exit::usage("lockrun: missing NAME after '--'")),
            }
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            break arg;
        }
        // --opt=value or --opt value
        let (key, inline): (&[u8], Option<OsString>) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) if bytes.starts_with(b"--") => (
                &bytes[..i],
                Some(OsStr::from_bytes(&bytes[i + 1..]).to_os_string()),
            ),
            _ => (bytes, None),
        };
        let key = String::from_utf8_lossy(key).into_owned();
        let takes_value = matches!(
            key.as_str(),
            "--dir" | "--ns" | "--timeout" | "-w" | "--expire" | "--method"
        );
        let value = if takes_value {
            match inline {
                Some(v) => Some(v),
                None => Some(
                    it.next()
                        .ok_or_else(|| Exit::usage(format!("lockrun: {key} needs a value")))?,
                ),
            }
        } else if inline.is_some() {
            return Err(Exit::usage(format!("lockrun: {key} takes no value")));
        } else {
            None
        };
        match (key.as_str(), value) {
            ("--dir", Some(v)) => {
                if v.is_empty() {
                    return Err(Exit::usage("lockrun: --dir is empty"));
                }
                o.dir = Some(PathBuf::from(v));
            }
            ("--ns", Some(v)) => o.ns = v.as_bytes().to_vec(),
            ("--timeout" | "-w", Some(v)) => o.timeout = seconds(&key, &v)?,
            ("--expire", Some(v)) => o.expire = seconds(&key, &v)?,
            ("--method", Some(v)) => o.method = method(&v)?,
            ("-n" | "--nonblock", None) => o.timeout = 0.0,
            ("--check", None) => o.check = true,
            ("-q" | "--quiet", None) => o.quiet = true,
            ("-h" | "--help", None) => {
                print!("{USAGE}");
                return Err(Exit::quiet(EX_OK));
            }
            ("--version", None) => {
                println!("lockrun (liblocking) {}", locking::VERSION);
                return Err(Exit::quiet(EX_OK));
            }
            _ => return Err(Exit::usage(format!("lockrun: unknown option '{key}'"))),
        }
    };
    if name.is_empty() {
        return Err(Exit::usage("lockrun: NAME is empty"));
    }
    o.name = name.as_bytes().to_vec();
    let mut rest: Vec<OsString> = it.collect();
    if o.check {
        if !rest.is_empty() {
            return Err(Exit::usage("lockrun: --check takes no COMMAND"));
        }
        return Ok(o);
    }
    if rest.first().is_some_and(|a| a.as_bytes() == b"--") {
        rest.remove(0);
    }
    if rest.is_empty() {
        return Err(Exit::usage("lockrun: missing COMMAND"));
    }
    o.command = rest;
    Ok(o)
}

/// The default lock directory: `$LOCKRUN_DIR`, else `/tmp/lockrun-UID`.
/// The latter lives in a world-writable directory, so it must be a real
/// directory owned by the caller and writable by nobody else (otherwise
/// another user could make or remove the caller's locks).
fn default_dir(create: bool) -> Result<PathBuf, Exit> {
    if let Some(d) = std::env::var_os("LOCKRUN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let uid = unsafe { libc::getuid() };
    let dir = PathBuf::from(format!("/tmp/lockrun-{uid}"));
    if create {
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(os_failure(format!("cannot create {}: {e}", dir.display()))),
        }
    }
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_dir() && m.uid() == uid && m.mode() & 0o022 == 0 => Ok(dir),
        Ok(_) => Err(os_failure(format!(
            "{} is not a private directory of user {uid} (a symlink, another owner, or \
             writable by others): refusing to use it; pass --dir or set LOCKRUN_DIR",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(dir),
        Err(e) => Err(os_failure(format!("{}: {e}", dir.display()))),
    }
}

fn os_failure(msg: String) -> Exit {
    Exit {
        status: EX_OSERR,
        message: Some(format!("lockrun: {msg}")),
    }
}

fn lock_failure(e: &Error) -> Exit {
    let status = match e {
        Error::InvalidArgument(_) => EX_USAGE,
        _ => EX_OSERR,
    };
    Exit {
        status,
        message: Some(format!("lockrun: {e}")),
    }
}

fn describe(info: &HolderInfo) -> String {
    let mut s = match &info.record {
        Some(r) => {
            let state = match info.liveness {
                Liveness::Alive => "running",
                Liveness::Dead => "dead",
                Liveness::Unknown => "not visible from here",
            };
            format!(
                "pid {} on host {} ({state}, method {})",
                r.owner.pid, r.owner.host, r.method
            )
        }
        None => "an unknown party (no readable owner record)".to_string(),
    };
    if let Some(age) = info.age {
        s.push_str(&format!(", locked {:.1} s ago", age.as_secs_f64()));
    }
    s
}

fn display(o: &Opts) -> String {
    let name = String::from_utf8_lossy(&o.name);
    if o.ns.is_empty() {
        format!("'{name}'")
    } else {
        format!("'{name}' (namespace '{}')", String::from_utf8_lossy(&o.ns))
    }
}

/// `--check`: 0 if free (or held by a dead process whose lock the next
/// locker breaks at once), 1 if held.
fn check(o: &Opts, dir: &Path) -> Result<i32, Exit> {
    let what = format!("{} in {}", display(o), dir.display());
    if !dir.exists() {
        println!("{what}: free");
        return Ok(EX_OK);
    }
    let locker = Locker::new(
        &o.name,
        dir,
        &o.ns,
        Timeout::TRY,
        secs_expire(o.expire)?,
        o.method,
    )
    .map_err(|e| lock_failure(&e))?;
    match locker.holder() {
        Ok(None) => {
            println!("{what}: free");
            Ok(EX_OK)
        }
        Ok(Some(info)) if info.liveness == Liveness::Dead => {
            println!(
                "{what}: free (a stale lock of {} is left; the next locker breaks it)",
                describe(&info)
            );
            Ok(EX_OK)
        }
        Ok(Some(info)) => {
            println!("{what}: held by {}", describe(&info));
            Ok(EX_HELD)
        }
        Err(e) => Err(lock_failure(&e)),
    }
}

/// The running command's PID, for the signal handler (0: none).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    // A keyboard signal from the terminal went to the whole foreground
    // process group, the command included: do not deliver it twice.
    if (sig == libc::SIGINT || sig == libc::SIGQUIT)
        && !info.is_null()
        && unsafe { (*info).si_code } == libc::SI_KERNEL
    {
        return;
    }
    unsafe { libc::kill(pid, sig) };
}

fn forwarded_set() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks or unblocks the forwarded signals; returns the previous mask.
fn mask(how: libc::c_int) -> libc::sigset_t {
    let set = forwarded_set();
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(how, &set, &mut old);
        old
    }
}

/// Installs the forwarding handler for every signal that is not ignored
/// (an ignored signal stays ignored, for lockrun and for the command, as
/// nohup(1) and background jobs expect). Returns which ones it installed.
fn install_handlers() -> [bool; FORWARDED.len()] {
    let mut installed = [false; FORWARDED.len()];
    for (i, s) in FORWARDED.into_iter().enumerate() {
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(s, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            installed[i] = true;
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(s, &act, std::ptr::null_mut());
        }
    }
    installed
}

/// Waits until `pid` has ended, without reaping it (so that its PID cannot
/// be reused while a signal might still be forwarded to it).
fn wait_exited(pid: libc::pid_t) -> io::Result<()> {
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Reaps `pid`; returns its wait status.
fn reap(pid: libc::pid_t) -> io::Result<libc::c_int> {
    loop {
        let mut status = 0;
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// Runs the command with the lock held. Returns how it ended.
fn run_command(o: &Opts) -> Result<Ended, Exit> {
    let prog = &o.command[0];
    let mut cmd = Command::new(prog);
    cmd.args(&o.command[1..]);
    let parent = unsafe { libc::getpid() };
    // Signals that arrive while the child is being started wait (blocked)
    // until its PID is known, then are passed on.
    let original_mask = mask(libc::SIG_BLOCK);
    let installed = install_handlers();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            // The command starts as lockrun started: default handling of
            // the signals lockrun catches, and lockrun's original mask.
            for (i, s) in FORWARDED.into_iter().enumerate() {
                if installed[i] {
                    libc::signal(s, libc::SIG_DFL);
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &original_mask, std::ptr::null_mut());
            // Die with lockrun: never run on without the lock.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            mask(libc::SIG_UNBLOCK);
            let status = match e.kind() {
                io::ErrorKind::NotFound => EX_NOT_FOUND,
                _ => EX_CANNOT_EXECUTE,
            };
            return Err(Exit {
                status,
                message: Some(format!(
                    "lockrun: cannot run {}: {e}",
                    prog.to_string_lossy()
                )),
            });
        }
    };
    let pid = child.id() as libc::pid_t;
    CHILD.store(pid, Ordering::SeqCst);
    mask(libc::SIG_UNBLOCK);

    let waited = wait_exited(pid);
    mask(libc::SIG_BLOCK);
    CHILD.store(0, Ordering::SeqCst);
    let status = waited
        .and_then(|()| reap(pid))
        .map_err(|e| os_failure(format!("waiting for {}: {e}", prog.to_string_lossy())))?;
    // The command has ended: from here on the forwarded signals are
    // ignored (there is nobody to pass them to), so that releasing the
    // lock and passing the status on are not cut short.
    for s in FORWARDED {
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(s, std::ptr::null(), &mut old);
            if old.sa_sigaction != libc::SIG_IGN {
                let mut ign: libc::sigaction = std::mem::zeroed();
                ign.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(s, &ign, std::ptr::null_mut());
            }
        }
    }
    mask(libc::SIG_UNBLOCK);
    drop(child);
    if libc::WIFSIGNALED(status) {
        Ok(Ended::Signaled(libc::WTERMSIG(status)))
    } else {
        Ok(Ended::Exited(libc::WEXITSTATUS(status)))
    }
}

fn run(o: &Opts) -> Result<i32, Exit> {
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => default_dir(!o.check)?,
    };
    if o.check {
        return check(o, &dir);
    }
    let mut locker = Locker::new(
        &o.name,
        &dir,
        &o.ns,
        secs_timeout(o.timeout)?,
        secs_expire(o.expire)?,
        o.method,
    )
    .map_err(|e| lock_failure(&e))?;
    match locker.lock() {
        Ok(()) => {}
        Err(Error::LockerFailed { timeout, .. }) => {
            if o.quiet {
                return Err(Exit::quiet(EX_TEMPFAIL));
            }
            let holder = match locker.holder() {
                Ok(Some(info)) => format!("; it is held by {}", describe(&info)),
                _ => String::new(),
            };
            return Err(Exit {
                status: EX_TEMPFAIL,
                message: Some(format!(
                    "lockrun: timed out after {timeout} s waiting for lock {} in {}{holder}",
                    display(o),
                    dir.display()
                )),
            });
        }
        Err(e) => return Err(lock_failure(&e)),
    }
    let ended = run_command(o);
    // However the command ended (or failed to start), release the lock.
    if let Err(e) = locker.unlock() {
        eprintln!(
            "lockrun: warning: lock {} in {}: {e}",
            display(o),
            dir.display()
        );
    }
    drop(locker);
    match ended? {
        Ended::Exited(code) => Ok(code),
        Ended::Signaled(sig) => {
            if sig == libc::SIGINT {
                // Die the same way, so that a calling shell sees the
                // interruption (and stops a loop, say) as it would have
                // for the command itself.
                let _ = io::stdout().flush();
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::raise(sig);
                }
            }
            Ok(128 + sig)
        }
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = match parse(args).and_then(|o| run(&o)) {
        Ok(code) => code,
        Err(Exit { status, message }) => {
            if let Some(m) = message {
                eprintln!("{m}");
            }
            status
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(status);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_options_name_and_command() {
        let o = parse(args(&[
            "--dir", "/d", "--ns=n", "-w", "2.5", "--expire", "9", "--method", "mkdir", "job",
            "--", "echo", "--dir",
        ]))
        .ok()
        .unwrap();
        assert_eq!(o.dir.as_deref(), Some(Path::new("/d")));
        assert_eq!(o.ns, b"n");
        assert_eq!(o.timeout, 2.5);
        assert_eq!(o.expire, 9.0);
        assert_eq!(o.method, Method::Mkdir);
        assert_eq!(o.name, b"job");
        assert_eq!(o.command, args(&["echo", "--dir"]));
        let o = parse(args(&["-n", "--method=1", "--", "-odd", "true"]))
            .ok()
            .unwrap();
        assert_eq!(o.timeout, 0.0);
        assert_eq!(o.method, Method::OpenCreate);
        assert_eq!(o.name, b"-odd");
        assert_eq!(o.command, args(&["true"]));
        let o = parse(args(&["--check", "x"])).ok().unwrap();
        assert!(o.check && o.command.is_empty());
        assert_eq!(o.method, Method::Kernel);
        assert_eq!(o.timeout, -1.0);
    }

    #[test]
    fn rejects_bad_command_lines() {
        for bad in [
            &[][..],
            &["name"][..],
            &["name", "--"][..],
            &["--timeout", "soon", "n", "true"][..],
            &["--timeout", "NaN", "n", "true"][..],
            &["--method", "flock", "n", "true"][..],
            &["--bogus", "n", "true"][..],
            &["--check", "n", "true"][..],
            &["--dir"][..],
            &["--dir=", "n", "true"][..],
            &["-n=1", "n", "true"][..],
            &["", "true"][..],
        ] {
            match parse(args(bad)) {
                Err(e) => assert_eq!(e.status, EX_USAGE, "{bad:?}"),
                Ok(o) => panic!("{bad:?} was accepted: {o:?}"),
            }
        }
    }
}
