//! Generates include/locking.h with cbindgen and sets the shared library's
//! SONAME and export list.
//!
//! The header is committed. The build writes OUT_DIR/locking.h; outside CI
//! it also refreshes include/locking.h when that differs (commit the
//! result). In CI (`CI` set) the committed file is left alone, and the
//! `header_is_current` test fails if it drifted.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for f in ["src", "cbindgen.toml", "locking.map"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=CI");

    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let generated = out.join("locking.h");
    cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write_to_file(&generated);

    // cbindgen writes negative constants bare (`#define X -1`), which
    // misparses in expressions such as `a-X`: parenthesise them.
    let text = std::fs::read_to_string(&generated).unwrap();
    let text: String = text
        .lines()
        .map(|line| {
            match line
                .strip_prefix("#define ")
                .and_then(|r| r.split_once(' '))
            {
                Some((name, value)) if value.starts_with('-') => {
                    format!("#define {name} ({value})\n")
                }
                // C89 has no `//` comments: cbindgen writes them after
                // `#endif` and the closing brace of `extern "C"`.
                _ => match line.split_once("  // ").or_else(|| line.split_once(" // ")) {
                    Some((code, comment)) if !line.trim_start().starts_with('*') => {
                        format!("{code}  /* {comment} */\n")
                    }
                    _ => format!("{line}\n"),
                },
            }
        })
        .collect();
    std::fs::write(&generated, &text).unwrap();

    let committed = root.join("include/locking.h");
    let new = text.into_bytes();
    let old = std::fs::read(&committed).unwrap_or_default();
    if new != old && std::env::var_os("CI").is_none() {
        std::fs::create_dir_all(root.join("include")).unwrap();
        std::fs::write(&committed, &new).unwrap();
        println!("cargo:warning=include/locking.h was regenerated: commit it");
    }

    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblocking.so.0");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        root.join("locking.map").display()
    );
}
