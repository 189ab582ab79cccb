//! The layering of the code, checked rather than only described
//! (docs/DEVELOPING.md, "Layout of this repository"):
//!
//! - in the core crate (`core/src`), a module uses only modules of lower
//!   layers (`crate::x` paths), so there is no cycle and no upward
//!   dependency; the core exports nothing to C;
//! - every function the C library exports runs its body inside the one
//!   panic boundary (`ffi_boundary!`), and is listed in `locking.map`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer of each core module; a module may use modules of lower layers
/// only (and those listed in `SAME_LAYER`).
const LAYERS: &[(&str, u32)] = &[
    ("forksafe", 0),
    ("error", 0),
    ("sha256", 0),
    ("testing", 0),
    ("options", 1),
    ("sys", 1),
    ("name", 2),
    ("owner", 2),
    ("lockdir", 2),
    ("wait", 3),
    ("method", 4),
    ("fence", 4),
    ("shared", 4),
    ("queue", 4),
    ("backing", 4),
    ("dirlock", 5),
    ("pg", 5),
    ("locker", 6),
    ("open_locked", 7),
    ("lib", 8),
];

/// Uses within one layer that are allowed: (user, used).
const SAME_LAYER: &[(&str, &str)] = &[
    ("shared", "method"),
    ("queue", "method"),
    ("queue", "fence"),
];

fn layer(m: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(n, _)| *n == m)
        .unwrap_or_else(|| panic!("module {m} has no layer in tests/layering.rs"))
        .1
}

/// The crate modules a source file names through `crate::`.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // crate::{a::b, c, d::{e, f}}: the first segment of each item
            let mut depth = 0;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            out.push(first_segment(&item));
        } else {
            out.push(first_segment(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn first_segment(s: &str) -> String {
    s.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Strips `//` comments (doc comments mention modules freely).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn core_modules_use_only_lower_layers() {
    let src = repo().join("core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let module = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = code_only(&std::fs::read_to_string(f).unwrap());
        assert!(
            !text.contains("no_mangle") && !text.contains("crate::ffi"),
            "{}: the core exports nothing to C and knows no ffi",
            rel.display()
        );
        for used in uses(&text) {
            if used == module || used == "self" {
                continue;
            }
            let ok = layer(&used) < layer(&module)
                || SAME_LAYER.contains(&(module.as_str(), used.as_str()));
            if !ok {
                bad.push(format!("{} uses crate::{used}", rel.display()));
            }
            graph.entry(module.clone()).or_default().push(used);
        }
    }
    assert!(
        bad.is_empty(),
        "upward or sideways uses (fix the code, or the layer table if the design changed):\n{}",
        bad.join("\n")
    );
    // The forksafe module, the bottom layer, names no other module at all.
    assert!(
        graph.get("forksafe").is_none_or(|v| v.is_empty()),
        "{graph:?}"
    );
}

#[test]
fn every_export_has_the_panic_boundary_and_is_in_the_map() {
    let ffi = std::fs::read_to_string(repo().join("src/ffi.rs")).unwrap();
    let map = std::fs::read_to_string(repo().join("locking.map")).unwrap();
    let mut exports = 0;
    let mut rest = ffi.as_str();
    while let Some(i) = rest.find("#[no_mangle]") {
        rest = &rest[i + "#[no_mangle]".len()..];
        let sig_end = rest.find('{').expect("a function body");
        let sig = &rest[..sig_end];
        let name = sig
            .split("fn ")
            .nth(1)
            .and_then(|s| s.split('(').next())
            .expect("an exported fn")
            .trim()
            .to_string();
        assert!(sig.contains("extern \"C\""), "{name}: not extern \"C\"");
        let body = rest[sig_end + 1..].trim_start();
        assert!(
            body.starts_with("ffi_boundary!("),
            "{name}: its body must start with ffi_boundary!(...), so no panic reaches C"
        );
        assert!(
            map.contains(&format!("    {name};")),
            "{name} is not listed in locking.map"
        );
        exports += 1;
    }
    assert!(exports >= 14, "found only {exports} exports");
}
