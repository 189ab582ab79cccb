//! The committed header must be exactly what the build generates, and must
//! carry every name and value of the public contract.

use std::path::Path;

fn committed() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/locking.h"))
        .unwrap()
}

#[test]
fn committed_header_matches_generated() {
    let generated = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("locking.h")).unwrap();
    assert!(
        committed() == generated,
        "include/locking.h drifted from what cbindgen generates from src/ffi.rs: \
         build outside CI (it rewrites the file) and commit it"
    );
}

#[test]
fn header_has_the_contract_names_and_values() {
    let h = committed();
    for (name, value) in [
        ("LOCKING_METHOD_MKDIR", "0"),
        ("LOCKING_METHOD_OPENCREATE", "1"),
        ("LOCKING_METHOD_FAKE", "2"),
        ("LOCKING_METHOD_KERNEL", "3"),
        ("LOCKING_METHOD_POSTGRES", "4"),
        ("LOCKING_OK", "0"),
        ("LOCKING_E_LOCKER_FAILED", "(-1)"),
        ("LOCKING_E_CANNOT_GET_LOCK", "(-2)"),
        ("LOCKING_E_INVALID_ARGUMENT", "(-3)"),
        ("LOCKING_E_IO", "(-4)"),
        ("LOCKING_E_ALREADY_LOCKED", "(-5)"),
        ("LOCKING_E_NOT_LOCKED", "(-6)"),
        ("LOCKING_E_LOCK_LOST", "(-7)"),
        ("LOCKING_E_INTERNAL", "(-8)"),
        ("LOCKING_E_UNAVAILABLE", "(-9)"),
        ("LOCKING_EXCLUSIVE", "0"),
        ("LOCKING_SHARED", "1"),
        ("LOCKING_VERSION_MAJOR", "0"),
        ("LOCKING_VERSION_MINOR", "2"),
        ("LOCKING_VERSION_PATCH", "0"),
        ("LOCKING_WAIT_FOREVER", "(-1.0)"),
        ("LOCKING_NEVER_EXPIRE", "0.0"),
    ] {
        let line = format!("#define {name} {value}\n");
        assert!(h.contains(&line), "missing {line:?}");
    }
    for decl in [
        "typedef struct Locker Locker;",
        "int locker_new(const char *objname, const char *lockdir, const char *ns, double timeout, double expire, int method, Locker **out);",
        "int locker_lock(Locker *locker);",
        "int locker_unlock(Locker *locker);",
        "int locker_refresh(Locker *locker);",
        "int locker_check(const Locker *locker);",
        "void locker_free(Locker *locker);",
        "int open_locked_fd(const char *filename, double timeout, const char *lockdir, double expire, int method);",
        "int close_locked_fd(int fd);",
        "const char *locking_strerror(int code);",
        "const char *locking_last_error(void);",
        "const char *locking_version(void);",
        "int locker_acquire(Locker *locker, int mode, double timeout);",
        "int locker_fencing_token(const Locker *locker, uint64_t *out);",
        "int locker_holder(Locker *locker, char *buf, size_t size);",
        "#ifndef LOCKING_H",
        "extern \"C\" {",
    ] {
        assert!(h.contains(decl), "missing {decl:?}");
    }
}

#[test]
fn shared_library_exports_only_the_api_and_has_a_soname() {
    // The cdylib sits next to the test's deps directory.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let so = dir.join("liblocking.so");
    if !so.exists() {
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "--lib"])
            .args(if dir.ends_with("release") {
                &["--release"][..]
            } else {
                &[][..]
            })
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = std::process::Command::new("readelf")
        .args(["-d", "-W", "--dyn-syms"])
        .arg(&so)
        .output()
        .expect("readelf (binutils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Library soname: [liblocking.so.0]"),
        "no SONAME"
    );
    let mut exported: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" FUNC ") && l.contains(" GLOBAL ") && !l.contains(" UND "))
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap())
        .collect();
    exported.sort();
    exported.dedup();
    // locking.map is the one list of exports; the library, the header and
    // the version nodes are checked against it.
    let map = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/locking.map")).unwrap();
    let mut listed: Vec<(String, String)> = Vec::new();
    let mut node = String::new();
    for line in map.lines().map(str::trim) {
        if let Some(n) = line.strip_suffix(" {") {
            node = n.to_string();
        } else if let Some(sym) = line.strip_suffix(';') {
            if !sym.contains(':') && !sym.contains('*') && !sym.starts_with('}') {
                listed.push((sym.to_string(), node.clone()));
            }
        }
    }
    let mut names: Vec<&str> = listed.iter().map(|(s, _)| s.as_str()).collect();
    names.sort();
    assert_eq!(exported, names, "exports differ from locking.map");
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/locking.h")).unwrap();
    for (sym, node) in &listed {
        assert!(
            text.lines()
                .any(|l| l.ends_with(&format!(" {sym}@@{node}"))),
            "{sym} does not carry the version {node}:\n{text}"
        );
        assert!(
            header.contains(&format!(" {sym}(")) || header.contains(&format!("*{sym}(")),
            "{sym} is not declared in the header"
        );
    }
}
