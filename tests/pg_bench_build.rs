//! Keeps the postgres method's benchmark (`bench/pg_run.sh`,
//! `bench/pgbench.c`) building, without running it (it needs a server and
//! takes minutes): `pgbench.c` is compiled with `-Wall -Wextra -Werror`
//! against `include/locking.h` and linked with this build's
//! `liblocking.so` (libpq is loaded with dlopen: no PostgreSQL package is
//! needed), and `pg_run.sh` is parsed with `bash -n`.

mod support;

use std::ffi::OsString;
use std::process::Command;
use support::{compile, os, repo};

#[test]
fn pgbench_c_builds() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pg_bench_build");
    std::fs::create_dir_all(&out).unwrap();
    let lib = support::dynamic_lib_dir("pg_bench_build");
    let mut args: Vec<OsString> = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
        .iter()
        .map(os)
        .collect();
    args.extend([
        os("-I"),
        repo().join("include").into(),
        os("-I"),
        repo().join("c_tests").into(),
        os("-o"),
        out.join("pgbench").into(),
        repo().join("bench/pgbench.c").into(),
        os("-L"),
        lib.into(),
        os("-llocking"),
        os("-ldl"),
        os("-lm"),
    ]);
    compile("cc", &args);
}

#[test]
fn pg_run_script_parses() {
    let st = Command::new("bash")
        .arg("-n")
        .arg(repo().join("bench/pg_run.sh"))
        .status();
    match st {
        Ok(st) => assert!(st.success(), "bash -n bench/pg_run.sh: {st}"),
        Err(e) => println!("note: bash not found ({e}): bench/pg_run.sh was not checked"),
    }
}
