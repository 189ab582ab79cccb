//! Name encoding: every `(ns, objname)` pair of byte strings maps to one lock
//! entry name in the lock directory, and distinct pairs to distinct names.
//!
//! Layout (specified in docs/FORMAT.md so other implementations can cooperate):
//!
//! * short form `l-<enc(ns)>=<enc(objname)>`, where `enc` keeps ASCII
//!   letters, digits, `-`, `_` and `.`, and writes every other byte as `%XX`
//!   (uppercase hex). `=` and `%` are always escaped, so the form is
//!   injective: the first unescaped `=` splits ns from objname.
//! * long form `h-<sha256 hex>` when the short form would be longer than
//!   `MAX_SHORT` bytes; the digest is taken over the 8-byte big-endian
//!   length of ns, then ns, then objname. Distinct pairs collide only if
//!   SHA-256 does.
//!
//! Entry names never contain `/` or NUL, never are `.` or `..` (they start
//! with `l-` or `h-`), and never start with `~`, which is kept for the
//! library's private temporary names.

use crate::sha256;

/// The longest short-form name; longer ones use the hashed form.
pub(crate) const MAX_SHORT: usize = 200;

fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

fn encode_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
}

/// The lock entry name of `(ns, objname)`.
pub fn entry_name(ns: &[u8], objname: &[u8]) -> String {
    let mut s = String::with_capacity(3 + ns.len() + objname.len());
    s.push_str("l-");
    encode_into(&mut s, ns);
    s.push('=');
    encode_into(&mut s, objname);
    if s.len() <= MAX_SHORT {
        return s;
    }
    let mut buf = Vec::with_capacity(8 + ns.len() + objname.len());
    buf.extend_from_slice(&(ns.len() as u64).to_be_bytes());
    buf.extend_from_slice(ns);
    buf.extend_from_slice(objname);
    let mut h = String::from("h-");
    for b in sha256::digest(&buf) {
        h.push_str(&format!("{b:02x}"));
    }
    h
}

/// A printable form of the name for messages: `"objname"`, or
/// `"objname" in namespace "ns"`, each part cut to a sane length.
pub fn display_name(ns: &[u8], objname: &[u8]) -> String {
    fn part(b: &[u8]) -> String {
        let s = String::from_utf8_lossy(b);
        if s.chars().count() > 80 {
            let cut: String = s.chars().take(64).collect();
            return format!("\"{cut}...\" ({} bytes)", b.len());
        }
        format!("\"{}\"", s.escape_debug())
    }
    if ns.is_empty() {
        part(objname)
    } else {
        format!("{} in namespace {}", part(objname), part(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 255
            && !name.contains('/')
            && !name.contains('\0')
            && name != "."
            && name != ".."
            && !name.starts_with('~')
    }

    #[test]
    fn readable_short_names() {
        assert_eq!(entry_name(b"one", b"foo"), "l-one=foo");
        assert_eq!(entry_name(b"", b"a/b"), "l-=a%2Fb");
        assert_eq!(entry_name(b"x", b".."), "l-x=..");
        assert_eq!(entry_name(b"a=b", b"c"), "l-a%3Db=c");
        assert_eq!(entry_name(b"a", b"b=c"), "l-a=b%3Dc");
    }

    #[test]
    fn distinct_pairs_distinct_names() {
        let parts: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"=".to_vec(),
            b"a=".to_vec(),
            b"=a".to_vec(),
            b"%".to_vec(),
            b"%3D".to_vec(),
            b"/".to_vec(),
            b"..".to_vec(),
            vec![0xff, 0x00],
            "é".as_bytes().to_vec(),
            vec![b'x'; 199],
            vec![b'x'; 200],
            vec![b'x'; 10_000],
            vec![b'/'; 70],
        ];
        let mut seen = HashSet::new();
        for ns in &parts {
            for obj in &parts {
                let n = entry_name(ns, obj);
                assert!(valid(&n), "{n}");
                assert_eq!(n, entry_name(ns, obj));
                assert!(seen.insert(n.clone()), "collision for {ns:?} {obj:?}");
            }
        }
    }

    #[test]
    fn long_names_are_hashed_and_split_point_matters() {
        let a = entry_name(&[b'x'; 150], &[b'y'; 150]);
        let b = entry_name(&[b'x'; 151], &[b'y'; 149]);
        assert!(a.starts_with("h-") && b.starts_with("h-"));
        assert_eq!(a.len(), 66);
        assert_ne!(a, b);
    }
}
