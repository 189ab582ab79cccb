//! The checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`). Each `check_*` function
//! takes one fuzz input and returns `Err(description)` when the library
//! breaks a promise on it (a panic inside the library propagates as one).
//!
//! Only the public API of the `locking` crate is used, and every expected
//! value is computed here independently of the library: the name encoding
//! from docs/FORMAT.md ("Entry names") with the `sha2` crate's SHA-256 (not
//! the library's `core/src/sha256.rs`), this process's identity from
//! `/proc`, `/etc/machine-id` and the kernel's host name (not the library's
//! `identity()`), a holder's liveness from `/proc`. So a bug in the library
//! cannot hide itself behind the same bug in the oracle.

#![allow(dead_code)]

use locking::name::entry_name;
use locking::owner::{identity, judge, Liveness, Record};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------
// entry names

/// docs/FORMAT.md's `enc`: ASCII letters, digits, `-`, `_`, `.` kept, every
/// other byte as `%XX` (uppercase hex).
pub fn readme_enc(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Inverse of the short form `l-<enc(ns)>=<enc(obj)>`; `None` if `name` is
/// not a well-formed short name.
pub fn decode_short(name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let body = name.strip_prefix("l-")?;
    let (ns, obj) = body.split_once('=')?;
    fn dec(s: &str) -> Option<Vec<u8>> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = s.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                {
                    return None; // docs/FORMAT.md says uppercase
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                let c = b[i];
                if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.') {
                    return None; // a byte that should have been escaped
                }
                out.push(c);
                i += 1;
            }
        }
        Some(out)
    }
    Some((dec(ns)?, dec(obj)?))
}

/// SHA-256 (FIPS 180-4) from the `sha2` crate, so that the hashed form is
/// checked against an implementation that is not the library's.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry name docs/FORMAT.md ("Entry names") prescribes for `(ns, obj)`.
pub fn readme_entry_name(ns: &[u8], obj: &[u8]) -> String {
    let short = format!("l-{}={}", readme_enc(ns), readme_enc(obj));
    if short.len() <= 200 {
        return short;
    }
    let mut buf = (ns.len() as u64).to_be_bytes().to_vec();
    buf.extend_from_slice(ns);
    buf.extend_from_slice(obj);
    format!("h-{}", hex(&sha256(&buf)))
}

/// Two `(ns, objname)` pairs made from one fuzz input: bytes 0 and 1 are
/// split points into the rest, byte 2 selects a byte of the second pair to
/// flip (0 = none). So the fuzzer explores both "same bytes, other split
/// point" and "one byte apart", the likeliest ways to a collision.
pub fn pairs_from(data: &[u8]) -> [(Vec<u8>, Vec<u8>); 2] {
    let get = |i: usize| data.get(i).copied().unwrap_or(0) as usize;
    let rest = if data.len() > 3 { &data[3..] } else { &[][..] };
    let split = |k: usize| {
        let k = k.min(rest.len());
        (rest[..k].to_vec(), rest[k..].to_vec())
    };
    let a = split(get(0));
    let mut b = split(get(1));
    let flip = get(2);
    if flip > 0 {
        let total = b.0.len() + b.1.len();
        if total > 0 {
            let i = (flip - 1) % total;
            let (ns_len, x) = (b.0.len(), 1u8 << (flip % 8));
            if i < ns_len {
                b.0[i] ^= x;
            } else {
                b.1[i - ns_len] ^= x;
            }
        }
    }
    [a, b]
}

fn check_one_name(ns: &[u8], obj: &[u8]) -> Result<String, String> {
    let name = entry_name(ns, obj);
    let what = || format!("entry_name({:?}, {:?}) = {name:?}", ns, obj);
    if name.is_empty() || name.len() > 255 {
        return Err(format!("{}: length {} not in 1..=255", what(), name.len()));
    }
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(format!("{}: not a valid file name", what()));
    }
    if name.starts_with('~') {
        return Err(format!(
            "{}: starts with '~' (the library's own names)",
            what()
        ));
    }
    if entry_name(ns, obj) != name {
        return Err(format!("{}: not deterministic", what()));
    }
    let want = readme_entry_name(ns, obj);
    if name != want {
        return Err(format!(
            "{}: docs/FORMAT.md's layout gives {want:?}",
            what()
        ));
    }
    if name.starts_with("l-") {
        // The short form decodes back to exactly this pair: injective.
        if decode_short(&name).as_ref().map(|(a, b)| (&a[..], &b[..])) != Some((ns, obj)) {
            return Err(format!("{}: does not decode back to the pair", what()));
        }
    } else if !(name.len() == 66
        && name.starts_with("h-")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(format!("{}: neither l-<short> nor h-<64 hex>", what()));
    }
    Ok(name)
}

/// Entry names: valid file names, docs/FORMAT.md's layout, and two distinct
/// pairs never share a name.
pub fn check_entry_name(data: &[u8]) -> Result<(), String> {
    let [(ns1, obj1), (ns2, obj2)] = pairs_from(data);
    let n1 = check_one_name(&ns1, &obj1)?;
    let n2 = check_one_name(&ns2, &obj2)?;
    if (ns1 != ns2 || obj1 != obj2) && n1 == n2 {
        return Err(format!(
            "collision: ({ns1:?}, {obj1:?}) and ({ns2:?}, {obj2:?}) both map to {n1:?}"
        ));
    }
    if ns1 == ns2 && obj1 == obj2 && n1 != n2 {
        return Err(format!("one pair ({ns1:?}, {obj1:?}) has two names"));
    }
    Ok(())
}

// ---------------------------------------------------------------------
// owner records

/// Placeholders a fuzz input may contain, replaced by this machine's and
/// this process's real values before parsing, so that the corpus stays
/// portable and the fuzzer can reach the "same machine" branches:
/// `@M@` machine ID, `@H@` host name, `@B@` boot ID, `@N@` PID namespace,
/// `@P@` our PID, `@S@` our start time, `@D@` the PID of a child that has
/// exited (and was reaped), `@E@` that child's start time.
pub struct Placeholders {
    pairs: Vec<(&'static [u8], Vec<u8>)>,
}

/// (state, start time) from `/proc/<pid>/stat` (`pid`: a number or "self").
fn proc_stat(pid: impl std::fmt::Display) -> Option<(u8, u64)> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    let mut it = rest.split_ascii_whitespace();
    let state = *it.next()?.as_bytes().first()?;
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// This process's identity as docs/FORMAT.md's owner record spells it,
/// read here without the library: `None` (`-` in a record) when unknown.
#[derive(Debug, Clone)]
pub struct Me {
    pub pid: u32,
    pub start: Option<u64>,
    pub pidns: Option<u64>,
    pub boot: Option<String>,
    pub machine: Option<String>,
    pub host: String,
}

/// A one-line file's content, trimmed; `None` if unreadable or empty.
fn one_line(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty() && !s.contains('\n')).then(|| s.to_string())
}

impl Me {
    pub fn now() -> Me {
        use std::os::unix::fs::MetadataExt;
        Me {
            pid: std::process::id(),
            start: proc_stat("self").map(|(_, s)| s),
            pidns: std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino()),
            boot: one_line("/proc/sys/kernel/random/boot_id"),
            machine: one_line("/etc/machine-id"),
            // the UTS namespace's host name, which gethostname(2) returns
            host: one_line("/proc/sys/kernel/hostname").unwrap_or_else(|| "-".into()),
        }
    }
}

impl Placeholders {
    pub fn new() -> Placeholders {
        let me = Me::now();
        // A child that exits: its PID is (until reused) a dead process's.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawning a child");
        let dead_pid = child.id();
        let dead_start = proc_stat(dead_pid).map(|(_, s)| s).unwrap_or(1);
        let _ = child.kill();
        let _ = child.wait();
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into()).into_bytes();
        Placeholders {
            pairs: vec![
                (&b"@M@"[..], opt(&me.machine)),
                (&b"@H@"[..], me.host.clone().into_bytes()),
                (&b"@B@"[..], opt(&me.boot)),
                (
                    &b"@N@"[..],
                    me.pidns.map_or("-".into(), |n| n.to_string()).into_bytes(),
                ),
                (&b"@P@"[..], me.pid.to_string().into_bytes()),
                (
                    &b"@S@"[..],
                    me.start.map_or("-".into(), |s| s.to_string()).into_bytes(),
                ),
                (&b"@D@"[..], dead_pid.to_string().into_bytes()),
                (&b"@E@"[..], dead_start.to_string().into_bytes()),
            ],
        }
    }

    pub fn apply(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut i = 0;
        'outer: while i < data.len() {
            for (k, v) in &self.pairs {
                if data[i..].starts_with(k) {
                    out.extend_from_slice(v);
                    i += k.len();
                    continue 'outer;
                }
            }
            out.push(data[i]);
            i += 1;
        }
        out
    }
}

impl Default for Placeholders {
    fn default() -> Self {
        Self::new()
    }
}

/// Linux never hands out a PID above this (PID_MAX_LIMIT on 64-bit).
pub const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// Independently of the library: is the holder named by `rec` certainly
/// gone, as seen by `me` (this process)? Either an earlier boot of this very machine (same
/// machine ID and host name, another boot ID, acquired before this boot
/// began), or this boot and PID namespace (same boot ID and PID namespace
/// inode) and the kernel has no process with that PID, or the process with
/// that PID started at another time than the record says, or it is a
/// zombie with no thread left. A PID that Linux can never hand out is not a
/// process that is gone: it is garbage.
pub fn really_gone(rec: &Record, me: &Me) -> bool {
    let o = &rec.owner;
    let known_eq = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
    if o.boot.is_some() && me.boot.is_some() && o.boot != me.boot {
        let up = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        return known_eq(&o.machine, &me.machine)
            && o.host == me.host
            && up.is_some_and(|up| rec.time < now - up - 1.0);
    }
    if !known_eq(&o.boot, &me.boot) || o.pidns.is_none() || o.pidns != me.pidns {
        return false;
    }
    if o.pid == 0 || o.pid > PID_MAX_LIMIT {
        return false;
    }
    if !std::path::Path::new(&format!("/proc/{}", o.pid)).exists() {
        // (this test process's /proc is its own)
        return true;
    }
    match (proc_stat(o.pid), o.start) {
        (Some((b'X', _)), _) => true,
        (Some((_, start)), Some(want)) if start != want => true,
        (Some((b'Z', _)), Some(_)) => std::fs::read_to_string(format!("/proc/{}/status", o.pid))
            .is_ok_and(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().eq(["Threads:", "1"]))
            }),
        _ => false,
    }
}

/// Owner records: parsing never panics; what parses renders and parses back
/// to the same record; only a record that parses and whose process is
/// really gone is judged Dead; Alive only for a holder on this machine,
/// boot and PID namespace.
pub fn check_owner_record(ph: &Placeholders, data: &[u8]) -> Result<(), String> {
    let bytes = ph.apply(data);
    let parsed = Record::parse(&bytes);
    // the judge is handed the library's own identity (the input of the code
    // under test); the expectations below use the oracle's
    let verdict = judge(parsed.as_ref(), &identity());
    let me = Me::now();
    let shown = || String::from_utf8_lossy(&bytes).into_owned();
    if let Some(rec) = &parsed {
        let again = Record::parse(&rec.render())
            .ok_or_else(|| format!("record {:?} parses, but its rendering does not", shown()))?;
        let close = (again.time - rec.time).abs() <= 1e-6 + rec.time.abs() * 1e-15;
        if again.method != rec.method
            || again.token != rec.token
            || again.owner != rec.owner
            || !close
        {
            return Err(format!(
                "record {:?}: parse(render(r)) = {again:?}, expected {rec:?}",
                shown()
            ));
        }
    }
    match verdict {
        Liveness::Dead => match &parsed {
            None => return Err(format!("unparsable record {:?} judged Dead", shown())),
            Some(rec) if !really_gone(rec, &me) => {
                return Err(format!(
                    "record {:?} judged Dead, but its holder is not certainly gone \
                     (pid {}, start {:?}; this process: {:?})",
                    shown(),
                    rec.owner.pid,
                    rec.owner.start,
                    me
                ))
            }
            Some(_) => {}
        },
        Liveness::Alive => {
            let Some(rec) = &parsed else {
                return Err(format!("unparsable record {:?} judged Alive", shown()));
            };
            let o = &rec.owner;
            if o.machine.is_none()
                || o.machine != me.machine
                || o.host != me.host
                || o.boot.is_none()
                || o.boot != me.boot
                || o.pidns.is_none()
                || o.pidns != me.pidns
            {
                return Err(format!(
                    "record {:?} judged Alive, but its holder is not on this machine, boot \
                     and PID namespace",
                    shown()
                ));
            }
        }
        Liveness::Unknown => {}
    }
    Ok(())
}
