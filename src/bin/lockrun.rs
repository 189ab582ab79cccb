//! `lockrun`: run a command while holding a liblocking lock, so that shell
//! scripts and cron jobs get the same cooperative locks as C programs. Its
//! options are flock(1)'s where they make sense; the manual page is
//! `man/lockrun.1`, and `--help` says the same in short.
//!
//! ```text
//! lockrun [OPTIONS] NAME|PATH [--] COMMAND [ARGS...]
//! lockrun [OPTIONS] NAME|PATH -c COMMAND_STRING
//! lockrun [OPTIONS] --check NAME
//! ```
//!
//! NAME (no `/` in it) is a Locker name in the lock directory; PATH (any
//! argument with a `/`, such as `/var/lock/x.lock` or `./x.lock`) is a file,
//! created if missing and locked with `open_locked`, so that every path to
//! the same file excludes every other, as flock(1) users expect.
//!
//! Exit status: the command's; 128+N if a signal N killed it (for SIGINT,
//! lockrun then kills itself with SIGINT, so that a calling shell stops its
//! loop as it would for the command); 75 (EX_TEMPFAIL, or `-E N`) when the
//! lock was busy or could not be had within the timeout; 70 (EX_SOFTWARE)
//! when the lock was lost while the command ran (another party broke it
//! after its `--expire`), whatever the command's status; 64 usage errors;
//! 71 lock failures of the operating system; 126 the command cannot be
//! executed; 127 not found. With `--check`: 0 free, 1 held.
//!
//! Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
//! lockrun are passed on to the command; lockrun keeps the lock until the
//! command has ended, however it ended. A SIGINT or SIGQUIT that the
//! terminal sent to the whole foreground process group (Ctrl-C, Ctrl-\)
//! reached the command already and is not sent a second time. If lockrun
//! itself dies (SIGKILL), the command is killed too (`PR_SET_PDEATHSIG`), so
//! it never goes on running unlocked.

use lexopt::Arg::{Long, Short, Value};
use locking::{open_locked, Error, Expire, HolderInfo, Liveness, Locker, Method, Mode, Timeout};
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

const EX_OK: i32 = 0;
const EX_HELD: i32 = 1;
const EX_USAGE: i32 = 64;
/// The lock was lost while the command ran (sysexits' EX_SOFTWARE: the
/// run went wrong although the command itself may have succeeded).
const EX_LOCK_LOST: i32 = 70;
const EX_OSERR: i32 = 71;
/// The default exit status for a busy lock or a timed-out wait (`-E`).
const EX_TEMPFAIL: i32 = 75;
const EX_CANNOT_EXECUTE: i32 = 126;
const EX_NOT_FOUND: i32 = 127;

/// The shell that runs `-c STRING` (as system(3) does; flock(1) uses
/// `$SHELL`, which in cron is this one too).
const SHELL: &str = "/bin/sh";

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
usage: lockrun [OPTIONS] NAME|PATH [--] COMMAND [ARGS...]
       lockrun [OPTIONS] NAME|PATH -c COMMAND_STRING
       lockrun [OPTIONS] --check NAME

Runs COMMAND while holding a cooperative liblocking lock and exits with
COMMAND's status. NAME (no '/' in it) names a lock in the lock directory
(--dir). PATH (an argument with a '/', such as /var/lock/x.lock or ./x.lock)
is a file, created if missing, whose lock excludes every path to that file,
as with flock(1).

Options (values attached or apart: -w0.5, -w 0.5, --wait=0.5, --wait 0.5;
short options group: -nq; options go before NAME):
  -n, --nonblock, --nb     fail at once if the lock is busy (-w 0)
  -w, --wait, --timeout S  wait at most S seconds for the lock (fractions
                           allowed; < 0 or 'inf': forever, the default)
  -E, --conflict-exit-code N
                           exit status when the lock is busy or the wait
                           timed out (0-255; default 75)
  -s, --shared             shared lock: any number of shared holders at once,
                           and no exclusive one (NAME only, not PATH)
  -x, -e, --exclusive      exclusive lock (the default)
  -c, --command STRING     run STRING with /bin/sh -c (instead of COMMAND)
  -o, --close              accepted for flock(1)'s sake: COMMAND never
                           inherits the lock (lockrun holds it)
  -v, --verbose            report on stderr how long getting the lock took,
                           and who holds it when it could not be had
  -q, --quiet              no message when the lock could not be had (the
                           default; cancels -v)
      --dir D              lock directory (default: $LOCKRUN_DIR, else
                           /tmp/lockrun-UID, a private directory of the
                           calling user; for a PATH: the file's directory);
                           every party must use the same one
      --ns NS              namespace of NAME (default: empty; not with PATH)
      --expire S           break a lock older than S seconds (default 0:
                           never; locks of holders that died on this machine
                           are broken anyway)
      --method M           kernel (default), mkdir, opencreate, fake or
                           postgres (or 0-4); all parties must use the same
                           method; with postgres, --dir is a libpq
                           connection string
      --check              run nothing: tell whether NAME is free or who
                           holds it (the method is read from the lock
                           directory); exit 0 if free, 1 if held; with -v
                           each holder's record follows
  -h, --help               this text
  -V, --version            print the version

Not supported: -u/--unlock, -F/--no-fork, a file descriptor number instead
of NAME (lockrun holds the lock only while COMMAND runs).

Exit status: COMMAND's, or 128+N if signal N killed it; 75 (or -E N) if the
lock was busy (-n) or the wait timed out (-w); 70 if the lock was lost while
COMMAND ran (another party broke it after its --expire), whatever COMMAND's
status; 64 usage error (also a lock held with another method); 71 an OS
error while locking; 126 COMMAND cannot be executed; 127 not found.
With --check: 0 free, 1 held.

Signals SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lockrun
are passed on to COMMAND; the lock is released when COMMAND ends, however it
ends. See lockrun(1).
";

/// What the command line asks for.
#[derive(Debug)]
struct Opts {
    /// `--dir`, when given (the default depends on NAME or PATH).
    dir: Option<PathBuf>,
    /// `--ns`, when given.
    ns: Option<Vec<u8>>,
    timeout: f64,
    expire: f64,
    method: Method,
    mode: Mode,
    /// The exit status for a busy lock or a timed-out wait (`-E`).
    conflict: i32,
    check: bool,
    verbose: bool,
    name: Vec<u8>,
    command: Vec<OsString>,
}

impl Opts {
    /// A NAME with a '/' in it is a file to lock, as flock(1) takes it.
    fn is_path(&self) -> bool {
        self.name.contains(&b'/')
    }

    fn ns(&self) -> &[u8] {
        self.ns.as_deref().unwrap_or(b"")
    }
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
                "lockrun: {}\nTry 'lockrun --help' for more information.",
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

impl From<lexopt::Error> for Exit {
    fn from(e: lexopt::Error) -> Exit {
        Exit::usage(e.to_string())
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

fn exit_code(opt: &str, v: &OsStr) -> Result<i32, Exit> {
    let s = v.to_string_lossy();
    match s.trim().parse::<i64>() {
        Ok(n) if (0..=255).contains(&n) => Ok(n as i32),
        Ok(_) => Err(Exit::usage(format!(
            "{opt}: exit code {s} out of range (expected 0 to 255)"
        ))),
        Err(_) => Err(Exit::usage(format!("{opt}: '{s}' is not an exit code"))),
    }
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
                Method::Postgres,
            ];
            s.parse::<usize>().ok().and_then(|i| by_int.get(i).copied())
        })
        .ok_or_else(|| {
            Exit::usage(format!(
                "--method: unknown method '{}' (kernel, mkdir, opencreate, fake or postgres)",
                v.to_string_lossy()
            ))
        })
}

/// Parses the command line as getopt_long(3) with "+" does: options
/// (grouped short ones, values attached or apart) up to NAME, then NAME,
/// then the command: `[--] COMMAND [ARGS...]` or `-c STRING`.
fn parse(args: Vec<OsString>) -> Result<Opts, Exit> {
    let mut o = Opts {
        dir: None,
        ns: None,
        timeout: -1.0,
        expire: 0.0,
        method: Method::Kernel,
        mode: Mode::Exclusive,
        conflict: EX_TEMPFAIL,
        check: false,
        verbose: false,
        name: Vec::new(),
        command: Vec::new(),
    };
    let mut shell_command: Option<OsString> = None;
    let mut p = lexopt::Parser::from_args(args);
    let name = loop {
        let Some(arg) = p.next()? else {
            return Err(Exit::usage("missing NAME"));
        };
        match arg {
            Value(name) => break name,
            Short('n') | Long("nonblock" | "nonblocking" | "nb") => o.timeout = 0.0,
            Short('w') | Long("wait" | "timeout") => o.timeout = seconds("-w", &p.value()?)?,
            Short('E') | Long("conflict-exit-code") => o.conflict = exit_code("-E", &p.value()?)?,
            Short('s') | Long("shared") => o.mode = Mode::Shared,
            Short('x' | 'e') | Long("exclusive") => o.mode = Mode::Exclusive,
            Short('c') | Long("command") => {
                if shell_command.is_some() {
                    return Err(Exit::usage("-c given twice"));
                }
                shell_command = Some(p.value()?);
            }
            Short('o') | Long("close") => {}
            Short('v') | Long("verbose") => o.verbose = true,
            Short('q') | Long("quiet") => o.verbose = false,
            Short('u') | Long("unlock") => {
                return Err(Exit::usage(
                    "-u/--unlock is not supported: lockrun holds the lock only while \
                     COMMAND runs and releases it when COMMAND ends; there is no \
                     descriptor to unlock",
                ))
            }
            Short('F') | Long("no-fork") => {
                return Err(Exit::usage(
                    "-F/--no-fork is not supported: lockrun stays to hold the lock, \
                     release it and report a lost lock; COMMAND never holds it",
                ))
            }
            Long("dir") => {
                let v = p.value()?;
                if v.is_empty() {
                    return Err(Exit::usage("--dir is empty"));
                }
                o.dir = Some(PathBuf::from(v));
            }
            Long("ns") => o.ns = Some(p.value()?.into_vec()),
            Long("expire") => o.expire = seconds("--expire", &p.value()?)?,
            Long("method") => o.method = method(&p.value()?)?,
            Long("check") => o.check = true,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Err(Exit::quiet(EX_OK));
            }
            Short('V') | Long("version") => {
                println!("lockrun (liblocking) {}", locking::VERSION);
                return Err(Exit::quiet(EX_OK));
            }
            other => return Err(other.unexpected().into()),
        }
    };
    if name.is_empty() {
        return Err(Exit::usage("NAME is empty"));
    }
    o.name = name.into_vec();
    let mut rest: Vec<OsString> = p.raw_args()?.collect();
    if o.check {
        if !rest.is_empty() || shell_command.is_some() {
            return Err(Exit::usage("--check takes no COMMAND"));
        }
        if o.is_path() {
            return Err(Exit::usage(format!(
                "--check takes a lock NAME, not a file PATH ('{}'); to test a file's \
                 lock, run: lockrun -n PATH true",
                String::from_utf8_lossy(&o.name)
            )));
        }
        return Ok(o);
    }
    // flock(1)'s `FILE -c STRING` (and `--command STRING`,
    // `--command=STRING`) after NAME.
    if let Some(first) = rest.first().map(|a| a.as_bytes().to_vec()) {
        let inline = first.strip_prefix(b"--command=").map(<[u8]>::to_vec);
        if first == b"-c" || first == b"--command" || inline.is_some() {
            let flag = String::from_utf8_lossy(&first).into_owned();
            if shell_command.is_some() {
                return Err(Exit::usage("-c given twice"));
            }
            let want = if inline.is_some() { 1 } else { 2 };
            if rest.len() != want {
                return Err(Exit::usage(format!(
                    "{} requires exactly one command argument",
                    if inline.is_some() { "--command" } else { &flag }
                )));
            }
            shell_command = Some(match inline {
                Some(v) => OsString::from_vec(v),
                None => rest.pop().expect("two arguments"),
            });
            rest.clear();
        } else if first == b"--" {
            rest.remove(0);
        } else if first.len() > 1 && first.starts_with(b"-") {
            return Err(Exit::usage(format!(
                "'{}' after NAME: options go before NAME (use '--' before a COMMAND \
                 whose name begins with '-')",
                String::from_utf8_lossy(&first)
            )));
        }
    }
    match shell_command {
        Some(s) => {
            if !rest.is_empty() {
                return Err(Exit::usage(
                    "-c takes one command string and no COMMAND after it",
                ));
            }
            o.command = vec![SHELL.into(), "-c".into(), s];
        }
        None if rest.is_empty() => {
            let hint = if o.name.iter().all(u8::is_ascii_digit) {
                " (lockrun has no file descriptor form like 'flock FD': put what \
                 must run under the lock in COMMAND or -c STRING)"
            } else {
                ""
            };
            return Err(Exit::usage(format!("missing COMMAND{hint}")));
        }
        None => o.command = rest,
    }
    if o.is_path() {
        let name = String::from_utf8_lossy(&o.name).into_owned();
        if o.ns.is_some() {
            return Err(Exit::usage(format!(
                "--ns names a lock NAME's namespace, and '{name}' is a file PATH (it has a \
                 '/'); a file's lock has no namespace"
            )));
        }
        if o.mode == Mode::Shared {
            return Err(Exit::usage(format!(
                "-s/--shared is not supported with a file PATH ('{name}'): file locks are \
                 exclusive; use a lock NAME (no '/') for shared locks"
            )));
        }
    }
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
    // SAFETY: getuid() takes no arguments, cannot fail and touches no memory.
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
        // A bad option, or a lock directory that holds another method's
        // entry (or something else the library did not make): the command
        // line has to change, not the system.
        Error::InvalidArgument(_) | Error::Untrusted(_) => EX_USAGE,
        _ => EX_OSERR,
    };
    Exit {
        status,
        message: Some(format!("lockrun: {e}")),
    }
}

fn describe(info: &HolderInfo) -> String {
    let state = match info.liveness {
        Liveness::Alive => "running",
        Liveness::Dead => "dead",
        Liveness::Unknown => "not visible from here",
    };
    let mut s = match &info.record {
        Some(r) => {
            format!(
                "pid {} on host {} ({state}, method {}{})",
                r.owner.pid,
                r.owner.host,
                r.method,
                if info.mode == Mode::Shared {
                    ", shared"
                } else {
                    ""
                }
            )
        }
        // A lock service (postgres) names its holder by other facts.
        None if !info.extra.is_empty() => {
            let get = |k: &str| {
                info.extra
                    .iter()
                    .find(|(key, _)| key == k)
                    .map_or("?", |(_, v)| v.as_str())
            };
            format!(
                "pid {} on host {} ({state}{})",
                get("pid"),
                get("host"),
                if info.mode == Mode::Shared {
                    ", shared"
                } else {
                    ""
                }
            )
        }
        None => "an unknown party (no readable owner record)".to_string(),
    };
    if let Some(age) = info.age {
        s.push_str(&format!(", locked {:.1} s ago", age.as_secs_f64()));
    }
    s
}

/// How the lock is named in messages.
fn display(o: &Opts, dir: &Path) -> String {
    let name = String::from_utf8_lossy(&o.name);
    if o.is_path() {
        return format!("on the file '{name}'");
    }
    match o.ns() {
        b"" => format!("'{name}' in {}", dir.display()),
        ns => format!(
            "'{name}' (namespace '{}') in {}",
            String::from_utf8_lossy(ns),
            dir.display()
        ),
    }
}

/// Everything known about who holds the lock, for messages: one line.
fn holders_line(holders: &[HolderInfo]) -> Option<String> {
    match holders {
        [] => None,
        [one] => Some(describe(one)),
        many => Some(format!(
            "{} holders: {}",
            many.len(),
            many.iter().map(describe).collect::<Vec<_>>().join("; ")
        )),
    }
}

/// `--check`: 0 if free (or held only by dead processes whose locks the
/// next locker breaks at once), 1 if held. The method is read from the
/// lock directory, so that `--method` need not be right (or given).
fn check(o: &Opts, dir: &Path) -> Result<i32, Exit> {
    let what = display(o, dir);
    let method = if o.method == Method::Postgres {
        // The lock lives in the server: --dir is a connection string.
        Method::Postgres
    } else {
        if !dir.exists() {
            println!("{what}: free");
            return Ok(EX_OK);
        }
        Locker::detect_method(dir, o.ns(), &o.name)
            .map_err(|e| lock_failure(&e))?
            .unwrap_or(o.method)
    };
    let locker = Locker::new(
        &o.name,
        dir,
        o.ns(),
        Timeout::TRY,
        secs_expire(o.expire)?,
        method,
    )
    .map_err(|e| lock_failure(&e))?;
    let holders = locker.holders().map_err(|e| lock_failure(&e))?;
    let (dead, live): (Vec<HolderInfo>, Vec<HolderInfo>) = holders
        .into_iter()
        .partition(|h| h.liveness == Liveness::Dead);
    let status = if live.is_empty() {
        match holders_line(&dead) {
            None => println!("{what}: free"),
            Some(d) => {
                println!("{what}: free (a stale lock of {d} is left; the next locker breaks it)")
            }
        }
        EX_OK
    } else {
        let shared = live.iter().all(|h| h.mode == Mode::Shared);
        match &live[..] {
            [one] if !shared => println!("{what}: held by {}", describe(one)),
            _ => println!(
                "{what}: held shared by {}",
                holders_line(&live).expect("not empty")
            ),
        }
        EX_HELD
    };
    if o.verbose {
        for h in live.iter().chain(&dead) {
            print!("\n{}", h.describe());
        }
    }
    Ok(status)
}

/// The lock could not be had in time: the conflict status, and a message
/// only with `--verbose` (as flock(1) does).
fn conflict(o: &Opts, message: impl FnOnce() -> String) -> Exit {
    Exit {
        status: o.conflict,
        message: o.verbose.then(message),
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
        // SAFETY: the kernel passes an SA_SIGINFO handler a valid
        // siginfo_t for the duration of the call (checked non-null).
        && unsafe { (*info).si_code } == libc::SI_KERNEL
    {
        return;
    }
    // SAFETY: kill(2) is async-signal-safe and takes plain integers.
    unsafe { libc::kill(pid, sig) };
}

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid value to initialise, and
    // sigemptyset/sigaddset only write the set we own, with valid signal
    // numbers.
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
    // SAFETY: both pointers are to live sigset_t values owned by this
    // frame; pthread_sigmask reads one and writes the other.
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
        // SAFETY: zeroed sigaction structs are valid; sigaction reads and
        // writes only them; the handler installed is an `extern "C"`
        // function with the SA_SIGINFO signature that only makes
        // async-signal-safe calls and reads an atomic.
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
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a live, writable siginfo_t.
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
        // SAFETY: `status` is a live, writable int.
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

impl Ended {
    fn describe(&self) -> String {
        match self {
            Ended::Exited(c) => format!("exited with status {c}"),
            Ended::Signaled(s) => format!("was killed by signal {s}"),
        }
    }
}

/// Runs the command with the lock held. Returns how it ended.
fn run_command(o: &Opts) -> Result<Ended, Exit> {
    let prog = &o.command[0];
    let mut cmd = Command::new(prog);
    cmd.args(&o.command[1..]);
    // SAFETY: getpid() takes no arguments and cannot fail.
    let parent = unsafe { libc::getpid() };
    // Signals that arrive while the child is being started wait (blocked)
    // until its PID is known, then are passed on.
    let original_mask = mask(libc::SIG_BLOCK);
    let installed = install_handlers();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (signal, pthread_sigmask,
    // prctl, getppid) on values it owns; it allocates nothing.
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
        // SAFETY: zeroed sigaction structs are valid; sigaction reads and
        // writes only them; SIG_IGN is a valid disposition.
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

/// What the lock's release said, once the command has ended.
fn released(o: &Opts, what: &str, r: locking::Result<()>) -> Option<Exit> {
    match r {
        Ok(()) => {
            if o.verbose {
                eprintln!("lockrun: released the lock {what}");
            }
            None
        }
        Err(e @ Error::LockLost(_)) => Some(Exit {
            status: EX_LOCK_LOST,
            message: Some(format!("lockrun: {e}")),
        }),
        Err(e) => {
            eprintln!("lockrun: warning: lock {what}: {e}");
            None
        }
    }
}

/// The exit status for how the command ended and what releasing the lock
/// said: a lost lock wins over the command's own status (COMMAND ran, at
/// least partly, without the lock).
fn finish(o: &Opts, ended: Result<Ended, Exit>, lost: Option<Exit>) -> Result<i32, Exit> {
    let ended = ended?;
    if let Some(mut lost) = lost {
        if let Some(m) = &mut lost.message {
            m.push_str(&format!(
                "\nlockrun: the command ({}) {}, but not all of it ran under the lock: \
                 exit status {EX_LOCK_LOST}",
                o.command[0].to_string_lossy(),
                ended.describe()
            ));
        }
        return Err(lost);
    }
    match ended {
        Ended::Exited(code) => Ok(code),
        Ended::Signaled(sig) => {
            if sig == libc::SIGINT {
                // Die the same way, so that a calling shell sees the
                // interruption (and stops a loop, say) as it would have
                // for the command itself.
                let _ = io::stdout().flush();
                // SAFETY: restoring the default disposition of a valid
                // signal and raising it touch no memory of ours.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::raise(sig);
                }
            }
            Ok(128 + sig)
        }
    }
}

fn verbose_got(o: &Opts, what: &str, method: Method, started: Instant) {
    if o.verbose {
        let mode = match o.mode {
            Mode::Shared => "a shared",
            _ => "an exclusive",
        };
        eprintln!(
            "lockrun: got {mode} lock {what} (method {}) after {:.6} s; running {}",
            method.name(),
            started.elapsed().as_secs_f64(),
            o.command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// A PATH: lock the file itself, as `open_locked` does (every path to the
/// same file excludes every other). The lock lives in `--dir` if given,
/// else in the file's own directory.
fn run_path(o: &Opts) -> Result<i32, Exit> {
    let path = Path::new(OsStr::from_bytes(&o.name));
    let what = display(o, Path::new(""));
    let timeout = secs_timeout(o.timeout)?;
    let started = Instant::now();
    let file = match open_locked(
        path,
        timeout,
        o.dir.as_deref(),
        secs_expire(o.expire)?,
        o.method,
    ) {
        Ok(f) => f,
        Err(Error::CannotGetLock { timeout, .. }) => {
            return Err(conflict(o, || {
                format!("lockrun: timed out after {timeout} s waiting for the lock {what}")
            }))
        }
        Err(e) => return Err(lock_failure(&e)),
    };
    verbose_got(o, &what, file.locker().method(), started);
    let ended = run_command(o);
    let lost = released(o, &what, file.close());
    finish(o, ended, lost)
}

fn run(o: &Opts) -> Result<i32, Exit> {
    if o.is_path() {
        return run_path(o);
    }
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => default_dir(!o.check)?,
    };
    if o.check {
        return check(o, &dir);
    }
    let what = display(o, &dir);
    let timeout = secs_timeout(o.timeout)?;
    let mut locker = Locker::new(
        &o.name,
        &dir,
        o.ns(),
        timeout,
        secs_expire(o.expire)?,
        o.method,
    )
    .map_err(|e| lock_failure(&e))?;
    let started = Instant::now();
    match locker.acquire(o.mode, timeout) {
        Ok(()) => {}
        Err(Error::LockerFailed { timeout, .. }) => {
            return Err(conflict(o, || {
                let holder = match locker.holders().ok().as_deref().and_then(holders_line) {
                    Some(h) => format!("; it is held by {h}"),
                    None => String::new(),
                };
                format!("lockrun: timed out after {timeout} s waiting for lock {what}{holder}")
            }));
        }
        Err(e) => return Err(lock_failure(&e)),
    }
    verbose_got(o, &what, o.method, started);
    let ended = run_command(o);
    // However the command ended (or failed to start), release the lock.
    let lost = released(o, &what, locker.unlock());
    drop(locker);
    finish(o, ended, lost)
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

    fn ok(v: &[&str]) -> Opts {
        match parse(args(v)) {
            Ok(o) => o,
            Err(e) => panic!("{v:?} was refused: {:?}", e.message),
        }
    }

    #[test]
    fn parses_options_name_and_command() {
        let o = ok(&[
            "--dir", "/d", "--ns=n", "-w", "2.5", "--expire", "9", "--method", "mkdir", "job",
            "--", "echo", "--dir",
        ]);
        assert_eq!(o.dir.as_deref(), Some(Path::new("/d")));
        assert_eq!(o.ns.as_deref(), Some(&b"n"[..]));
        assert_eq!(o.timeout, 2.5);
        assert_eq!(o.expire, 9.0);
        assert_eq!(o.method, Method::Mkdir);
        assert_eq!(o.name, b"job");
        assert_eq!(o.command, args(&["echo", "--dir"]));
        let o = ok(&["-n", "--method=1", "--", "-odd", "true"]);
        assert_eq!(o.timeout, 0.0);
        assert_eq!(o.method, Method::OpenCreate);
        assert_eq!(o.name, b"-odd");
        assert_eq!(o.command, args(&["true"]));
        let o = ok(&["--check", "x"]);
        assert!(o.check && o.command.is_empty());
        assert_eq!(o.method, Method::Kernel);
        assert_eq!(o.timeout, -1.0);
        assert_eq!(o.conflict, 75);
        assert_eq!(o.mode, Mode::Exclusive);
    }

    #[test]
    fn parses_as_getopt_does() {
        for form in [
            &["-w0.5"][..],
            &["-w", "0.5"][..],
            &["--timeout=0.5"][..],
            &["--timeout", "0.5"][..],
            &["--wait=0.5"][..],
            &["--wait", "0.5"][..],
        ] {
            let mut v = form.to_vec();
            v.extend(["job", "true"]);
            assert_eq!(ok(&v).timeout, 0.5, "{form:?}");
        }
        let o = ok(&["-nq", "job", "true"]);
        assert!(o.timeout == 0.0 && !o.verbose);
        let o = ok(&["-ns", "job", "true"]);
        assert!(o.timeout == 0.0 && o.mode == Mode::Shared);
        let o = ok(&["-vnE3", "job", "true"]);
        assert!(o.verbose && o.timeout == 0.0 && o.conflict == 3);
        let o = ok(&["-sx", "-E", "0", "job", "true"]);
        assert!(o.mode == Mode::Exclusive && o.conflict == 0);
        let o = ok(&["--conflict-exit-code=9", "--nb", "-o", "job", "true"]);
        assert!(o.conflict == 9 && o.timeout == 0.0);
        let o = ok(&["-w", "-1", "job", "true"]);
        assert_eq!(o.timeout, -1.0);
        let o = ok(&["-vq", "job", "true"]);
        assert!(!o.verbose);
        // -c: flock's place (after NAME) and as an option before it
        let o = ok(&["job", "-c", "echo a; echo b"]);
        assert_eq!(o.command, args(&["/bin/sh", "-c", "echo a; echo b"]));
        let o = ok(&["job", "--command=x"]);
        assert_eq!(o.command, args(&["/bin/sh", "-c", "x"]));
        let o = ok(&["-nc", "x y", "job"]);
        assert_eq!(o.command, args(&["/bin/sh", "-c", "x y"]));
        // a path, and a name with a dash after `--`
        let o = ok(&["./x.lock", "true"]);
        assert!(o.is_path());
        let o = ok(&["--", "-n", "--", "true"]);
        assert!(!o.is_path() && o.name == b"-n" && o.command == args(&["true"]));
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
            &["-Z", "n", "true"][..],
            &["--check", "n", "true"][..],
            &["--check", "./n"][..],
            &["--dir"][..],
            &["--dir=", "n", "true"][..],
            &["-n=1", "n", "true"][..],
            &["--nonblock=1", "n", "true"][..],
            &["", "true"][..],
            &["-E", "256", "n", "true"][..],
            &["-E", "-1", "n", "true"][..],
            &["-E", "x", "n", "true"][..],
            &["-u", "n", "true"][..],
            &["-F", "n", "true"][..],
            &["n", "-c"][..],
            &["n", "-c", "a", "b"][..],
            &["-c", "a", "n", "b"][..],
            &["-c", "a", "n", "-c", "b"][..],
            &["n", "-n", "true"][..],
            &["9"][..],
            &["-s", "/tmp/x.lock", "true"][..],
            &["--ns", "a", "./x.lock", "true"][..],
        ] {
            match parse(args(bad)) {
                Err(e) => assert_eq!(e.status, EX_USAGE, "{bad:?}"),
                Ok(o) => panic!("{bad:?} was accepted: {o:?}"),
            }
        }
    }
}
