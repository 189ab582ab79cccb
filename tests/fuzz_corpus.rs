//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) in the normal test
//! run, with the very checks the fuzz targets apply (`fuzz/oracle.rs`),
//! through the public API only: no libFuzzer, no nightly features.
//!
//! - `entry_name`: every entry is a valid file name (no '/', no NUL, not
//!   '.' or '..', at most 255 bytes, not a library-private '~' name), laid
//!   out exactly as docs/FORMAT.md's "Entry names" says (checked against an
//!   encoder written in the oracle and the `sha2` crate's SHA-256, not the
//!   library's), the short form decodes back to its pair, and two distinct
//!   (ns, objname) pairs never share one.
//! - `owner_record`: `Record::parse` never panics; what parses renders and
//!   parses back to itself; `judge` says Dead only for a record that parses
//!   and whose process is really gone (judged independently from /proc; a
//!   PID above Linux's PID_MAX_LIMIT is garbage, not a dead process), and
//!   Alive only for a holder on this machine, boot and PID namespace (this
//!   process's identity read by the oracle, not by the library).
//!
//! To grow the corpus: see fuzz/Cargo.toml (`cargo fuzz run ...`), then
//! `cargo fuzz cmin`.

#[path = "../fuzz/oracle.rs"]
mod oracle;

use std::fs;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{}: only {} corpus files; the corpus is missing",
        dir.display(),
        files.len()
    );
    assert!(
        files.len() <= 60,
        "{}: {} files; keep the committed corpus small (cargo fuzz cmin)",
        dir.display(),
        files.len()
    );
    files
}

fn replay(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let files = corpus(target);
    let mut failures = Vec::new();
    for (path, data) in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                failures.push(format!("{name}: panicked: {msg}"));
            }
        }
    }
    println!("{target}: replayed {} corpus files", files.len());
    assert!(
        failures.is_empty(),
        "{target}: {} of {} corpus files fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn entry_name_corpus() {
    replay("entry_name", oracle::check_entry_name);
}

#[test]
fn owner_record_corpus() {
    let ph = oracle::Placeholders::new();
    replay("owner_record", |d| oracle::check_owner_record(&ph, d));
}

/// The oracle's SHA-256 (the `sha2` crate) against FIPS 180-4 test vectors,
/// so that a hashed-name check failing can be trusted to be the library's
/// fault.
#[test]
fn oracle_sha256_known_answers() {
    let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(oracle::sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(oracle::sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(oracle::sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        hex(oracle::sha256(&vec![b'a'; 1_000_000])),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
    // the padding boundaries: 55, 56 and 64 bytes
    for (n, want) in [
        (
            55,
            "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072",
        ),
        (
            56,
            "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e",
        ),
        (
            64,
            "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c",
        ),
    ] {
        assert_eq!(hex(oracle::sha256(&vec![b'x'; n])), want, "{n} bytes");
    }
}

/// The oracles catch what they are meant to catch (so a green replay means
/// something): a colliding or malformed name, and a garbage record judged
/// dead, are reported.
#[test]
fn oracles_detect_violations() {
    // docs/FORMAT.md's layout for a known pair.
    assert_eq!(oracle::readme_entry_name(b"db", b"a/b"), "l-db=a%2Fb");
    assert_eq!(
        oracle::decode_short("l-db=a%2Fb"),
        Some((b"db".to_vec(), b"a/b".to_vec()))
    );
    assert_eq!(
        oracle::decode_short("l-db=a%2fb"),
        None,
        "lowercase escapes are not the layout"
    );
    assert_eq!(
        oracle::decode_short("l-db=a/b"),
        None,
        "an unescaped '/' is not the layout"
    );
    // A record of a PID no Linux process can have is not "really gone".
    let me = oracle::Me::now();
    let mut rec = locking::owner::Record::new("mkdir", "0123456789abcdef0123456789abcdef");
    assert!(!oracle::really_gone(&rec, &me), "this process is not gone");
    rec.owner.pid = u32::MAX;
    rec.owner.start = Some(0);
    assert!(
        !oracle::really_gone(&rec, &me),
        "pid u32::MAX is garbage, not a dead process"
    );
    rec.owner.host = "elsewhere".into();
    rec.owner.boot = Some("0badb007-0000-4000-8000-000000000000".into());
    assert!(
        !oracle::really_gone(&rec, &me),
        "another host (another boot ID) is never judged from here"
    );
}
