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
//! start=<process start time, clock ticks after boot, /proc/PID/stat field 22>
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

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &str = "liblocking-owner 1";

/// Largest record a reader accepts.
pub(crate) const MAX_RECORD: usize = 4096;

/// Who this process is, as written into owner records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Process ID.
    pub pid: u32,
    /// Start time of the process (clock ticks after boot).
    pub start: u64,
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
/// once per process (again after fork()).
struct Cached {
    id: Arc<Identity>,
    lines: Arc<str>,
}

static IDENTITY: Mutex<Option<Cached>> = Mutex::new(None);

/// Holds the identity's lock across a fork() (see `forksafe.rs`).
pub(crate) fn fork_guard() -> Box<dyn std::any::Any> {
    Box::new(IDENTITY.lock().unwrap_or_else(|e| e.into_inner()))
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty() && !s.contains('\n')).then(|| s.to_string())
}

/// The fields of `/proc/PID/stat` after the command name: (state, starttime).
pub fn proc_stat(pid: u32) -> Option<(u8, u64)> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.as_bytes().first().copied()?;
    // Field 3 is state; starttime is field 22, i.e. 19 fields later.
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let h: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}

fn compute_identity(pid: u32) -> Identity {
    use std::os::unix::fs::MetadataExt;
    Identity {
        pid,
        start: proc_stat(pid).map(|(_, s)| s).unwrap_or(0),
        pidns: std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino()),
        boot: read_trimmed("/proc/sys/kernel/random/boot_id"),
        machine: read_trimmed("/etc/machine-id"),
        host: hostname(),
    }
}

fn cached() -> (Arc<Identity>, Arc<str>) {
    let pid = crate::sys::pid();
    let mut guard = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    match &*guard {
        Some(c) if c.id.pid == pid => (c.id.clone(), c.lines.clone()),
        _ => {
            let id = compute_identity(pid);
            let lines: Arc<str> = identity_lines(&id).into();
            let id = Arc::new(id);
            *guard = Some(Cached {
                id: id.clone(),
                lines: lines.clone(),
            });
            (id, lines)
        }
    }
}

/// This process's identity (computed once per process; recomputed after
/// `fork()`, since the PID and start time change).
pub fn identity() -> Arc<Identity> {
    cached().0
}

fn identity_lines(o: &Identity) -> String {
    format!(
        "pid={}\nstart={}\npidns={}\nboot={}\nmachine={}\nhost={}\n",
        o.pid,
        o.start,
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
        out.extend_from_slice(format!("time={secs}.{micros:06}\nend\n").as_bytes());
        out
    }
}

/// A fresh acquisition token: 128 random bits as 32 hex digits.
pub fn new_token() -> String {
    crate::sys::random16()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

    /// The record's bytes.
    pub fn render(&self) -> Vec<u8> {
        format!(
            "{MAGIC}\nmethod={}\ntoken={}\n{}time={:.6}\nend\n",
            self.method,
            self.token,
            identity_lines(&self.owner),
            self.time
        )
        .into_bytes()
    }

    /// Parses a record; `None` for anything incomplete or malformed.
    pub fn parse(bytes: &[u8]) -> Option<Record> {
        if bytes.len() > MAX_RECORD {
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
                "start" => start = Some(v.parse::<u64>().ok()?),
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
    /// Same machine, boot and PID namespace, and the process runs.
    Alive,
    /// Certainly gone: the lock may be broken at once.
    Dead,
    /// Cannot be judged here (another host or PID namespace, no record):
    /// only `expire` may break it.
    Unknown,
}

/// True when the record's holder is on this machine (same machine ID and
/// host name; both must be known).
pub fn same_machine(rec: &Identity, me: &Identity) -> bool {
    rec.machine.is_some() && rec.machine == me.machine && rec.host == me.host
}

/// True when the holder's PID can be looked up here: same machine, same
/// boot and same PID namespace.
pub fn pid_visible(rec: &Identity, me: &Identity) -> bool {
    same_machine(rec, me)
        && rec.boot.is_some()
        && rec.boot == me.boot
        && rec.pidns.is_some()
        && rec.pidns == me.pidns
}

/// Judges a holder, as seen from `me`.
pub fn judge(rec: Option<&Record>, me: &Identity) -> Liveness {
    let Some(rec) = rec else {
        return Liveness::Unknown;
    };
    let o = &rec.owner;
    if !same_machine(o, me) {
        return Liveness::Unknown;
    }
    if let (Some(b), Some(mine)) = (&o.boot, &me.boot) {
        if b != mine {
            return Liveness::Dead; // an earlier boot of this machine
        }
    }
    if !pid_visible(o, me) {
        return Liveness::Unknown;
    }
    process_liveness(o.pid, o.start)
}

/// The largest PID Linux can hand out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX_LIMIT: u32 = 4_194_304;

/// Whether process `pid` with start time `start` runs (zombies count as dead).
/// A PID no Linux process can have is garbage, judged unknown, never dead.
pub fn process_liveness(pid: u32, start: u64) -> Liveness {
    if pid == 0 || pid > PID_MAX_LIMIT {
        return Liveness::Unknown;
    }
    match proc_stat(pid) {
        None => {
            // No /proc entry: dead, unless /proc itself is missing.
            if std::path::Path::new("/proc/self/stat").exists() {
                Liveness::Dead
            } else {
                Liveness::Unknown
            }
        }
        Some((b'Z', _)) | Some((b'X', _)) => Liveness::Dead,
        Some((_, s)) if s != start => Liveness::Dead,
        Some(_) => Liveness::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        r.owner.start += 12345; // a live PID, but not the process that locked
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
        assert_eq!(judge(Some(&r), &identity()), Liveness::Dead);
    }

    #[test]
    fn other_host_or_namespace_is_unknown() {
        let me = identity();
        let mut r = mine();
        r.owner.host = "some-other-host".into();
        r.owner.start += 1; // would be dead if judged locally
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
        let mut r = mine();
        r.owner.machine = Some("0123456789abcdef0123456789abcdef".into());
        r.owner.start += 1;
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
        let mut r = mine();
        r.owner.pidns = Some(r.owner.pidns.unwrap_or(0) + 1);
        r.owner.start += 1;
        assert_eq!(judge(Some(&r), &me), Liveness::Unknown);
    }
}
