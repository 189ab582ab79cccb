//! Owner records: who holds a lock, written by the holder and read by
//! waiters to decide whether the holder is alive.
//!
//! Format (text, UTF-8 except the host name which is written lossily):
//!
//! ```text
//! liblocking-owner 1
//! method=mkdir
//! token=<32 lowercase hex digits>
//! pid=<decimal>
//! start=<process start time, clock ticks after boot (/proc/PID/stat field
//!        22) as the process's time namespace shows it, or - when unknown>
//! timens=<inode number of /proc/self/ns/time, or -> (optional)
//! pidns=<inode number of /proc/self/ns/pid, or ->
//! boot=<contents of /proc/sys/kernel/random/boot_id, or ->
//! machine=<contents of /etc/machine-id, or ->
//! host=<host name>
//! time=<acquisition time, seconds since the Unix epoch, with fraction>
//! end
//! ```
//!
//! A record is valid only when its first line is the magic line and its
//! last line is `end`; anything else is an unreadable record, whose holder
//! is judged "unknown" (never "dead").

use crate::forksafe::ForkMutex;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &str = "liblocking-owner 1";

/// Largest record a reader accepts.
pub(crate) const MAX_RECORD: usize = 4096;

/// Who this process is, as written into owner records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Process ID.
    pub pid: u32,
    /// Start time of the process in clock ticks after boot, as its own
    /// time namespace shows it; `None` when it could not be read from a
    /// `/proc` that is really this process's (see [`identity`]).
    pub start: Option<u64>,
    /// Inode of the process's time namespace (`/proc/self/ns/time`), the
    /// clock `start` is in; `None` where the kernel has none.
    pub timens: Option<u64>,
    /// Inode of the PID namespace.
    pub pidns: Option<u64>,
    /// Boot ID.
    pub boot: Option<String>,
    /// Machine ID.
    pub machine: Option<String>,
    /// Host name.
    pub host: String,
}

/// This process's identity and its rendering as record lines, computed
/// once per process (again after fork()), plus what a waiter needs to read
/// other processes' start times in the same clock.
struct Cached {
    /// `forksafe::generation()` when it was computed: an identity inherited
    /// across fork() is the parent's even when the PID number is the same
    /// (a child in a new PID namespace may get its ancestor's number).
    generation: u64,
    id: Arc<Identity>,
    lines: Arc<str>,
    view: View,
}

/// How this process sees `/proc`: whether it is the `/proc` of this
/// process's own PID namespace (so `/proc/PID` means our PID).
#[derive(Debug, Clone, Copy)]
struct View {
    proc_ours: bool,
}

static IDENTITY: ForkMutex<Option<Cached>> = ForkMutex::new(None);

/// Errors that say "try again later", not "this is how things are".
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN)
    )
}

/// A one-line file's content; `Err` only for transient failures.
fn read_trimmed(path: &str) -> Result<Option<String>, ()> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim();
            Ok((!s.is_empty() && !s.contains('\n')).then(|| s.to_string()))
        }
        Err(e) if transient(&e) => Err(()),
        Err(_) => Ok(None),
    }
}

/// Parses `/proc/PID/stat`: (pid, state, starttime).
fn parse_stat(s: &[u8]) -> Option<(u32, u8, u64)> {
    let open = s.iter().position(|&b| b == b'(')?;
    let pid = std::str::from_utf8(&s[..open]).ok()?.trim().parse().ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.as_bytes().first().copied()?;
    // Field 3 is state; starttime is field 22, i.e. 19 fields later.
    let start = it.nth(18)?.parse().ok()?;
    Some((pid, state, start))
}

/// The fields of `/proc/PID/stat` after the command name: (state,
/// starttime as this process's time namespace shows it). `Err` carries the
/// errno of a failed read.
pub fn proc_stat(pid: u32) -> Result<(u8, u64), i32> {
    let s = std::fs::read(format!("/proc/{pid}/stat"))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    parse_stat(&s)
        .map(|(_, state, start)| (state, start))
        .ok_or(libc::EINVAL)
}

/// Our own start time, and whether `/proc` is ours: `/proc/self/status`
/// must list exactly one PID in `NSpid:` (a `/proc` mounted for an
/// ancestor PID namespace lists one per level) and it must be our PID;
/// kernels without `NSpid:` are checked by the PID in `/proc/self/stat`.
/// The start time is in the clock of our time namespace, which the record
/// names (`timens=`): start times are compared only within one.
fn own_view(pid: u32) -> Result<(Option<u64>, View), ()> {
    let none = View { proc_ours: false };
    let read = |path: &str| match std::fs::read(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if transient(&e) => Err(()),
        Err(_) => Ok(None),
    };
    let Some(stat) = read("/proc/self/stat")? else {
        return Ok((None, none));
    };
    let Some((shown_pid, _, start)) = parse_stat(&stat) else {
        return Ok((None, none));
    };
    let Some(status) = read("/proc/self/status")? else {
        return Ok((None, none));
    };
    let status = String::from_utf8_lossy(&status);
    let ours = match status.lines().find_map(|l| l.strip_prefix("NSpid:")) {
        Some(list) => {
            let pids: Vec<&str> = list.split_ascii_whitespace().collect();
            pids.len() == 1 && pids[0].parse::<u32>() == Ok(pid)
        }
        None => shown_pid == pid,
    };
    if !ours || shown_pid != pid {
        return Ok((None, none));
    }
    Ok((Some(start), View { proc_ours: true }))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let h: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| !c.is_control() && *c != '=')
        .collect();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}

/// This process's identity and view. `complete` is false when a transient
/// failure (out of descriptors, say) left a part unknown: such an identity
/// is used once but not cached, so the next call tries again.
fn compute(pid: u32) -> (Identity, View, bool) {
    use std::os::unix::fs::MetadataExt;
    let mut complete = true;
    let (start, view) = own_view(pid).unwrap_or_else(|()| {
        complete = false;
        (None, View { proc_ours: false })
    });
    let mut ns_inode = |path| match std::fs::metadata(path) {
        Ok(m) => Some(m.ino()),
        Err(e) => {
            complete &= !transient(&e);
            None
        }
    };
    let pidns = ns_inode("/proc/self/ns/pid");
    let timens = ns_inode("/proc/self/ns/time");
    let mut one_line = |path| {
        read_trimmed(path).unwrap_or_else(|()| {
            complete = false;
            None
        })
    };
    let boot = one_line("/proc/sys/kernel/random/boot_id");
    let machine = one_line("/etc/machine-id");
    let id = Identity {
        pid,
        start,
        timens,
        pidns,
        boot,
        machine,
        host: hostname(),
    };
    (id, view, complete)
}

fn cached() -> (Arc<Identity>, Arc<str>, View) {
    let pid = crate::sys::pid();
    let generation = crate::forksafe::generation();
    let mut guard = IDENTITY.lock();
    if let Some(c) = &*guard {
        if c.id.pid == pid && c.generation == generation {
            return (c.id.clone(), c.lines.clone(), c.view);
        }
    }
    let (id, view, complete) = compute(pid);
    let lines: Arc<str> = identity_lines(&id).into();
    let id = Arc::new(id);
    if complete {
        *guard = Some(Cached {
            generation,
            id: id.clone(),
            lines: lines.clone(),
            view,
        });
    }
    (id, lines, view)
}

/// This process's identity (computed once per process; recomputed after
/// `fork()`, since the PID and start time change).
pub fn identity() -> Arc<Identity> {
    cached().0
}

fn identity_lines(o: &Identity) -> String {
    format!(
        "pid={}\nstart={}\ntimens={}\npidns={}\nboot={}\nmachine={}\nhost={}\n",
        o.pid,
        opt(&o.start),
        opt(&o.timens),
        opt(&o.pidns),
        opt(&o.boot),
        opt(&o.machine),
        o.host
    )
}

fn now_secs_micros() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_micros())
}

/// The record's last lines: its time as seconds and microseconds since the
/// epoch, and `end` (the one renderer of the format's time).
fn time_and_end(secs: u64, micros: u32) -> String {
    format!("time={secs}.{micros:06}\nend\n")
}

/// What a new acquisition writes: the method, its token and this process's
/// identity. Rendering reuses the identity lines computed once per process.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The method name.
    pub method: &'static str,
    /// The acquisition token.
    pub token: String,
}

impl Stamp {
    /// A stamp for acquisition `token` with `method`.
    pub fn new(method: &'static str, token: String) -> Stamp {
        Stamp { method, token }
    }

    /// The owner record's bytes, timed now.
    pub fn render(&self) -> Vec<u8> {
        let lines = cached().1;
        let (secs, micros) = now_secs_micros();
        let mut out = Vec::with_capacity(64 + self.token.len() + lines.len() + 40);
        out.extend_from_slice(MAGIC.as_bytes());
        out.extend_from_slice(b"\nmethod=");
        out.extend_from_slice(self.method.as_bytes());
        out.extend_from_slice(b"\ntoken=");
        out.extend_from_slice(self.token.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(lines.as_bytes());
        out.extend_from_slice(time_and_end(secs, micros).as_bytes());
        out
    }
}

/// A parsed owner record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The method that wrote it.
    pub method: String,
    /// The acquisition token.
    pub token: String,
    /// Who holds the lock.
    pub owner: Identity,
    /// When it was acquired (seconds since the epoch).
    pub time: f64,
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".to_string(), |x| x.to_string())
}

impl Record {
    /// A record for a new acquisition by this process.
    pub fn new(method: &str, token: &str) -> Record {
        let (secs, micros) = now_secs_micros();
        Record {
            method: method.to_string(),
            token: token.to_string(),
            owner: (*identity()).clone(),
            time: secs as f64 + micros as f64 / 1e6,
        }
    }

    /// The record's bytes, exactly as [`Stamp::render`] writes them.
    pub fn render(&self) -> Vec<u8> {
        let t = self.time.max(0.0);
        let secs = t.trunc() as u64;
        let micros = (((t - secs as f64) * 1e6).round() as u32).min(999_999);
        format!(
            "{MAGIC}\nmethod={}\ntoken={}\n{}{}",
            self.method,
            self.token,
            identity_lines(&self.owner),
            time_and_end(secs, micros)
        )
        .into_bytes()
    }

    /// Parses a record; `None` for anything incomplete or malformed.
    pub fn parse(bytes: &[u8]) -> Option<Record> {
        if bytes.len() > MAX_RECORD {
            return None;
        }
        // Control bytes (a NUL, say) appear in no record this library
        // writes: such a record is forged or damaged, not trusted.
        if bytes.iter().any(|&b| b < 0x20 && b != b'\n' || b == 0x7f) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        // Complete only with the terminating "end" line, newline included.
        if !text.contains("\nend\n") {
            return None;
        }
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let (mut method, mut token, mut pid, mut start) = (None, None, None, None);
        let (mut pidns, mut boot, mut machine, mut host, mut time) = (None, None, None, None, None);
        let mut timens = None;
        let mut ended = false;
        for line in lines {
            if ended {
                if line.is_empty() {
                    continue; // padding
                }
                return None;
            }
            if line == "end" {
                ended = true;
                continue;
            }
            let (k, v) = line.split_once('=')?;
            let some = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_string());
            match k {
                "method" => method = Some(v.to_string()),
                "token" => token = Some(v.to_string()),
                "pid" => pid = Some(v.parse::<u32>().ok()?),
                "start" => {
                    // 0.1 wrote 0 for "could not read it".
                    start = Some(if v == "-" || v == "0" {
                        None
                    } else {
                        Some(v.parse::<u64>().ok()?)
                    })
                }
                "timens" if v != "-" => timens = Some(v.parse::<u64>().ok()?),
                "pidns" => {
                    pidns = Some(if v == "-" {
                        None
                    } else {
                        Some(v.parse::<u64>().ok()?)
                    })
                }
                "boot" => boot = Some(some(v)),
                "machine" => machine = Some(some(v)),
                "host" => host = Some(v.to_string()),
                "time" => time = Some(v.parse::<f64>().ok().filter(|t| t.is_finite())?),
                _ => {} // unknown keys are allowed, for later versions
            }
        }
        let token: String = token?;
        if !ended || token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let pid = pid?;
        if pid == 0 {
            return None;
        }
        Some(Record {
            method: method?,
            token,
            owner: Identity {
                pid,
                start: start?,
                timens,
                pidns: pidns?,
                boot: boot?,
                machine: machine?,
                host: host?,
            },
            time: time?,
        })
    }
}

/// What a waiter concludes about a lock's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Same boot and PID namespace, and that very process runs.
    Alive,
    /// Proven gone: the lock may be broken at once.
    Dead,
    /// Cannot be proven either way from here (another host, boot or PID
    /// namespace, a hidden or unreadable `/proc`, no record): only `expire`
    /// may break it.
    Unknown,
}

/// True when the holder runs on this kernel, in this boot, in our PID
/// namespace: its PID means the same process here. The boot ID is drawn
/// afresh by the kernel at every boot, so equal boot IDs mean the same
/// running kernel (no machine ID or host name needed).
pub fn pid_visible(rec: &Identity, me: &Identity) -> bool {
    rec.boot.is_some() && rec.boot == me.boot && rec.pidns.is_some() && rec.pidns == me.pidns
}

/// True when the record comes from an earlier boot of this very machine:
/// another boot ID, the same machine ID and host name (both known), and an
/// acquisition time before this boot began.
fn earlier_boot(rec: &Record, me: &Identity) -> bool {
    let o = &rec.owner;
    let (Some(b), Some(mine)) = (&o.boot, &me.boot) else {
        return false;
    };
    if b == mine || o.machine.is_none() || o.machine != me.machine || o.host != me.host {
        return false;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is writable.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return false;
    }
    let up = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    rec.time < now - up
}

/// Judges a holder, as seen from `me`.
pub fn judge(rec: Option<&Record>, me: &Identity) -> Liveness {
    let Some(rec) = rec else {
        return Liveness::Unknown;
    };
    if earlier_boot(rec, me) {
        return Liveness::Dead;
    }
    if !pid_visible(&rec.owner, me) {
        return Liveness::Unknown;
    }
    process_liveness(rec.owner.pid, comparable_start(&rec.owner, me))
}

/// The holder's start time if it can be compared with what `/proc` shows
/// us: same time namespace (start times are shown shifted by the reader's
/// boottime offset), else `None`.
pub fn comparable_start(o: &Identity, me: &Identity) -> Option<u64> {
    o.start.filter(|_| o.timens == me.timens)
}

/// The largest PID Linux can hand out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX_LIMIT: u32 = 4_194_304;

/// Whether process `pid` of our PID namespace, started at `start` (clock
/// ticks after boot, in our time namespace's clock), still runs. Dead only on
/// proof: the kernel says no process has that PID (`kill(pid, 0)` fails
/// with `ESRCH`), or the process with that PID started at another time
/// (read in a `/proc` that is ours, in the same clock), or it is a zombie
/// whose every thread has exited. Everything else is `Unknown` or `Alive`.
pub fn process_liveness(pid: u32, start: Option<u64>) -> Liveness {
    if pid == 0 || pid > PID_MAX_LIMIT {
        return Liveness::Unknown;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        let e = std::io::Error::last_os_error().raw_os_error();
        match e {
            Some(libc::ESRCH) => return Liveness::Dead,
            // EPERM: it exists, but is another user's: /proc may still
            // tell whether it is the holder.
            Some(libc::EPERM) => {}
            _ => return Liveness::Unknown,
        }
    }
    let (Some(start), true) = (start, cached().2.proc_ours) else {
        return Liveness::Unknown;
    };
    let (state, seen) = match proc_stat(pid) {
        Ok(found) => found,
        // Hidden, unreadable, or exited since kill() looked (the next
        // judgement proves that).
        Err(_) => return Liveness::Unknown,
    };
    if seen != start {
        // Another process has that PID now: the holder is gone.
        return Liveness::Dead;
    }
    match state {
        b'X' => Liveness::Dead,
        // A zombie thread-group leader: dead only if no other thread of
        // the process still runs (a leader that called pthread_exit()
        // stays a zombie while its threads hold the lock).
        b'Z' => match threads_of(pid) {
            Some(1) => Liveness::Dead,
            _ => Liveness::Unknown,
        },
        _ => Liveness::Alive,
    }
}

/// The `Threads:` count of `/proc/PID/status`.
fn threads_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh random acquisition token (32 hex digits).
    fn new_token() -> String {
        crate::sys::random16()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn mine() -> Record {
        Record::new("mkdir", &new_token())
    }

    #[test]
    fn stamp_renders_a_record_of_this_process() {
        let st = Stamp::new("kernel", new_token());
        let back = Record::parse(&st.render()).unwrap();
        assert_eq!(back.token, st.token);
        assert_eq!(back.method, "kernel");
        assert_eq!(back.owner, *identity());
    }

    #[test]
    fn render_parse_round_trip() {
        let r = mine();
        let back = Record::parse(&r.render()).unwrap();
        assert_eq!(back.token, r.token);
        assert_eq!(back.owner, r.owner);
        assert_eq!(back.method, "mkdir");
    }

    #[test]
    fn half_written_or_garbage_is_unreadable() {
        let full = mine().render();
        for cut in 0..full.len() {
            assert!(Record::parse(&full[..cut]).is_none(), "prefix {cut} parsed");
        }
        assert!(Record::parse(b"garbage").is_none());
        assert!(Record::parse(&[0xff; 100]).is_none());
        assert!(Record::parse(&vec![b'a'; MAX_RECORD + 1]).is_none());
        let me = identity();
        assert_eq!(judge(None, &me), Liveness::Unknown);
    }

    #[test]
    fn own_process_is_alive() {
        let r = mine();
        assert_eq!(judge(Some(&r), &identity()), Liveness::Alive);
    }

    #[test]
    fn pid_reuse_other_start_time_is_dead() {
        let mut r = mine();
        // a live PID, but not the process that locked
        r.owner.start = r.owner.start.map(|s| s + 12345);
        assert_eq!(judge(Some(&r), &identity()), Liveness::Dead);
    }

    #[test]
    fn exited_process_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut r = mine();
        r.owner.pid = pid;
        // PID reuse within this test is possible but then the start time
        // differs, which is dead as well.
        assert_eq!(judge(Some(&r), &identity()), Liveness::Dead);
    }

    #[test]
    fn impossible_pid_is_unknown_not_dead() {
        for pid in [4_194_305, 99_999_999, 2_147_483_648, u32::MAX] {
            let mut r = mine();
            r.owner.pid = pid;
            assert_eq!(judge(Some(&r), &identity()), Liveness::Unknown, "{pid}");
        }
    }

    #[test]
    fn other_boot_is_dead() {
        let mut r = mine();
        r.owner.boot = Some("00000000-0000-0000-0000-000000000000".into());
        // Taken during this boot: another machine with a cloned machine ID
        // and host name could have written it, so it is not proof.
        assert_eq!(judge(Some(&r), &identity()), Liveness::Unknown);
        // Taken before this boot began: an earlier boot of this machine.
        r.time = 1.0;
        let want = if r.owner.machine.is_some() {
            Liveness::Dead
        } else {
            Liveness::Unknown // no machine ID: "this machine" is unprovable
        };
        assert_eq!(judge(Some(&r), &identity()), want);
    }

    #[test]
    fn other_host_or_namespace_is_unknown() {
        let me = identity();
        let bump = |r: &mut Record| r.owner.start = r.owner.start.map(|s| s + 1);
        // Another host: another boot ID (and machine ID, host name).
        let mut r = mine();
        r.owner.host = "some-other-host".into();
        r.owner.machine = Some("0123456789abcdef0123456789abcdef".into());
        r.owner.boot = Some("11111111-2222-3333-4444-555555555555".into());
        bump(&mut r);
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
        // Another boot with an unknown machine ID: cannot be told apart
        // from another host.
        let mut r = mine();
        r.owner.machine = None;
        r.owner.boot = Some("11111111-2222-3333-4444-555555555555".into());
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
        let mut r = mine();
        r.owner.pidns = Some(r.owner.pidns.unwrap_or(0) + 1);
        bump(&mut r);
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
    }

    #[test]
    fn identity_needs_no_machine_id_or_host_name() {
        let me = identity();
        let mut r = mine();
        r.owner.machine = None;
        r.owner.host = "renamed-since".into();
        assert_eq!(judge(Some(&r), &me), Liveness::Alive);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        r.owner.pid = child.id();
        child.wait().unwrap();
        assert_eq!(judge(Some(&r), &me), Liveness::Dead);
    }

    #[test]
    fn unknown_start_time_is_judged_by_the_pid_alone() {
        let me = identity();
        let mut r = mine();
        r.owner.start = None;
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
        let back = Record::parse(&r.render()).unwrap();
        assert_eq!(back.owner.start, None);
    }

    #[test]
    fn start_times_of_another_time_namespace_are_not_compared() {
        let me = identity();
        let mut r = mine();
        // Shown shifted by another boottime offset: not proof of PID reuse.
        r.owner.timens = Some(me.timens.unwrap_or(0) + 1);
        r.owner.start = r.owner.start.map(|s| s + 10_000);
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
        let back = Record::parse(&r.render()).unwrap();
        assert_eq!(back.owner.timens, r.owner.timens);
    }

    #[test]
    fn stat_parsing_reads_pid_state_and_start() {
        let line = b"42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20\n";
        assert_eq!(parse_stat(line), Some((42, b'S', 777)));
        assert_eq!(parse_stat(b"garbage"), None);
    }
}
