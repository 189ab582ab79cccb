//! The checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`). Each `check_*` function
//! takes one fuzz input and returns `Err(description)` when the library
//! breaks a promise on it (a panic inside the library propagates as one).
//!
//! Only the public API of the `locking` crate is used, and every expected
//! value is computed here independently of the library (the name encoding
//! and SHA-256 from the README's "On-disk layout", a holder's liveness from
//! `/proc`), so a bug in the library cannot hide itself.

#![allow(dead_code)]

use locking::name::entry_name;
use locking::owner::{identity, judge, Identity, Liveness, Record};

// ---------------------------------------------------------------------
// entry names

/// The README's `enc`: ASCII letters, digits, `-`, `_`, `.` kept, every
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
                    return None; // the README says uppercase
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

/// SHA-256 (FIPS 180-4), written here so the hashed form is checked against
/// an implementation that is not the library's.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry name the README's "On-disk layout" prescribes for `(ns, obj)`.
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
        return Err(format!("{}: the README's layout gives {want:?}", what()));
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

/// Entry names: valid file names, the README's layout, and two distinct
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

fn proc_stat(pid: u32) -> Option<(u8, u64)> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    let mut it = rest.split_ascii_whitespace();
    let state = *it.next()?.as_bytes().first()?;
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

impl Placeholders {
    pub fn new() -> Placeholders {
        let me = identity();
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
/// gone, as seen by `me`? Either an earlier boot of this very machine (same
/// machine ID and host name, another boot ID, acquired before this boot
/// began), or this boot and PID namespace (same boot ID and PID namespace
/// inode) and the kernel has no process with that PID, or the process with
/// that PID started at another time than the record says, or it is a
/// zombie with no thread left. A PID that Linux can never hand out is not a
/// process that is gone: it is garbage.
pub fn really_gone(rec: &Record, me: &Identity) -> bool {
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
    let me = identity();
    let verdict = judge(parsed.as_ref(), &me);
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
