//! The PostgreSQL server that the postgres method's tests start, and the
//! C client (`c_tests/pg_client.c`) they drive: shared by
//! `tests/postgres.rs` and `tests/postgres_net.rs`, which include it with
//! `#[path = "support/pg.rs"] mod pg;` (next to `mod support;`).
//!
//! `initdb` into a temporary directory as an unprivileged user (`nobody`
//! when run as root), trust authentication, listening on a Unix socket and
//! on 127.0.0.1 (and on more addresses when asked), stopped again when the
//! test process ends. Where the server's programs are not installed
//! (`/usr/lib/postgresql/*/bin`, or `LOCKING_PG_BINDIR`), [`Server::start`]
//! prints SKIP and gives `None`, except in CI (`CI` set), where that is a
//! failure: `.ci/run` installs `postgresql`.

#![allow(dead_code)]

use crate::support::{self, compile, os, repo};
use locking::{Expire, Locker, Method, Timeout};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

/// Only to catch hangs.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------
// The server

/// The directory with `initdb`, `pg_ctl`, `postgres` and `psql`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LOCKING_PG_BINDIR") {
        return Some(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, b)) = found.pop() {
        return Some(b);
    }
    // Elsewhere (Fedora, Arch, a source build) the programs are on PATH.
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then(|| p.parent().unwrap().to_path_buf())
}

/// The server's programs, or `None` after printing SKIP (a failure in CI).
pub fn server_bin() -> Option<PathBuf> {
    match bin_dir() {
        Some(b) => Some(b),
        None if std::env::var_os("CI").is_some() => panic!(
            "CI: PostgreSQL's server programs (initdb, pg_ctl) are not installed; \
             .ci/run installs the Debian package postgresql"
        ),
        None => {
            eprintln!(
                "SKIP: no PostgreSQL server programs (install postgresql, or set LOCKING_PG_BINDIR)"
            );
            None
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The unprivileged user that runs the server when we are root.
pub fn server_user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let exists = |u: &str| {
            Command::new("id")
                .arg(u)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if exists("nobody") {
            return "nobody".into();
        }
        let u = "liblocking-pg";
        if !exists(u) {
            let _ = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/bin/false", u])
                .status();
        }
        u.into()
    })
}

/// A port that is free now, for a server, outside the kernel's ephemeral
/// range (where listeners bound to port 0, and outgoing connections, get
/// theirs), so that nothing else takes it before the server binds it.
pub fn server_port() -> u16 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let seed = std::process::id() as usize * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as usize;
    for i in 0..1000 {
        let port = 15000 + (seed + (N.fetch_add(1, Ordering::Relaxed) + i) * 7) % 15000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port for the server");
}

/// A port nothing listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub root: PathBuf,
    pub data: PathBuf,
    pub sock: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
    /// `listen_addresses`: 127.0.0.1 and any more asked for.
    pub listen: String,
}

impl Server {
    /// A new server (initdb, start), stopped when dropped and, whatever
    /// happens, when this test process ends.
    pub fn start(tag: &str) -> Option<Server> {
        Server::start_with(tag, &[], &[])
    }

    /// [`Server::start`], listening also on the IPv4 addresses `listen`
    /// (which must exist already), and trusting clients from the networks
    /// `trust` (CIDR) on TCP as it trusts 127.0.0.1.
    pub fn start_with(tag: &str, listen: &[&str], trust: &[&str]) -> Option<Server> {
        let bin = server_bin()?;
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "locking-pg-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = root.join("data");
        let sock = root.join("sock");
        for d in [&data, &sock] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        if is_root() {
            let st = Command::new("chown")
                .arg(server_user())
                .arg(&data)
                .arg(&sock)
                .status()
                .unwrap();
            assert!(st.success(), "chown {} failed", server_user());
        }
        let s = Server {
            root,
            data,
            sock,
            bin,
            port: server_port(),
            listen: std::iter::once("127.0.0.1")
                .chain(listen.iter().copied())
                .collect::<Vec<_>>()
                .join(","),
        };
        s.reaper();
        let out = s
            .as_server(&s.bin.join("initdb"))
            .arg("-D")
            .arg(&s.data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !trust.is_empty() {
            let hba = s.data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap();
            for net in trust {
                text.push_str(&format!("host all all {net} trust\n"));
            }
            std::fs::write(&hba, text).unwrap();
        }
        s.pg_ctl_start();
        Some(s)
    }

    /// A command run as the server's user.
    pub fn as_server(&self, prog: &Path) -> Command {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", server_user(), "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        };
        // A directory the server's user can read.
        c.current_dir(&self.root);
        c
    }

    pub fn pg_ctl_start(&self) {
        let opts = format!(
            "-k {} -p {} -c listen_addresses={} -c fsync=off -c max_connections=250 \
             -c shared_buffers=16MB -c log_min_messages=warning",
            self.sock.display(),
            self.port,
            self.listen
        );
        let out = self
            .as_server(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .output()
            .expect("running pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data.join("log")).unwrap_or_default()
        );
    }

    pub fn pg_ctl_stop(&self, mode: &str) {
        let _ = self
            .as_server(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", mode, "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A crash and a start: `pg_ctl stop -m immediate`, then start.
    pub fn restart_immediate(&self) {
        self.pg_ctl_stop("immediate");
        self.pg_ctl_start();
    }

    /// Stops the server and removes its directory when this process ends,
    /// however it ends. (Never waited for: it outlives us.)
    #[allow(clippy::zombie_processes)]
    pub fn reaper(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             if [ -f '{data}/postmaster.pid' ]; then {stop} -D '{data}' -m immediate stop; fi; \
             rm -rf '{root}'",
            pid = std::process::id(),
            data = self.data.display(),
            root = self.root.display(),
            stop = if is_root() {
                format!(
                    "runuser -u {} -- '{}'",
                    server_user(),
                    self.bin.join("pg_ctl").display()
                )
            } else {
                format!("'{}'", self.bin.join("pg_ctl").display())
            }
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawning the server's reaper");
    }

    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.sock.display(),
            self.port
        )
    }

    pub fn tcp_conninfo(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL with psql; returns its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------
// Helpers

pub fn pg_locker(conninfo: &str, name: &str, timeout: f64, expire: f64) -> Locker {
    Locker::new(
        name.as_bytes(),
        Path::new(conninfo),
        b"rust",
        Timeout::from_secs(timeout).unwrap(),
        Expire::from_secs(expire).unwrap(),
        Method::Postgres,
    )
    .unwrap_or_else(|e| panic!("Locker::new({name}): {e}"))
}

/// A unique lock name per call (tests share the server).
pub fn fresh(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The C program, built once per test process.
pub fn pg_client() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("postgres")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&work).unwrap();
        let exe = work.join("pg_client");
        let lib = support::dynamic_lib_dir("postgres");
        let mut rpath = os("-Wl,-rpath,");
        rpath.push(&lib);
        let mut args: Vec<OsString> = [
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-g", "-O1",
        ]
        .iter()
        .map(os)
        .collect();
        args.extend([
            os("-I"),
            repo().join("include").into(),
            os("-I"),
            repo().join("c_tests").into(),
            os("-o"),
            exe.clone().into(),
            repo().join("c_tests/pg_client.c").into(),
            os("-L"),
            lib.clone().into(),
            os("-llocking"),
            rpath,
            os("-lm"),
            os("-ldl"),
        ]);
        compile("cc", &args);
        exe
    })
}

/// A pg_client `hold` process, driven through its stdin (namespace "rust",
/// as [`pg_locker`]).
pub struct Holder {
    pub child: Child,
    pub stdin: ChildStdin,
    pub lines: Receiver<String>,
}

impl Holder {
    pub fn spawn(conninfo: &str, name: &str, expire: f64) -> Holder {
        Holder::spawn_with(conninfo, name, expire, |_| {})
    }

    /// [`Holder::spawn`], with `prepare` applied to the command first (to
    /// run it in another network namespace, say).
    pub fn spawn_with(
        conninfo: &str,
        name: &str,
        expire: f64,
        prepare: impl FnOnce(&mut Command),
    ) -> Holder {
        let mut cmd = Command::new(pg_client());
        cmd.args(["hold", conninfo, name, &expire.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("spawning pg_client hold");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                match l {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut h = Holder {
            child,
            stdin,
            lines,
        };
        let (rc, msg) = h.read("new");
        assert_eq!(rc, 0, "pg_client hold: locker_new: {msg}");
        h
    }

    pub fn read(&mut self, cmd: &str) -> (i32, String) {
        let line = self
            .lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("pg_client hold: no answer to {cmd}"));
        let mut parts = line.splitn(3, ' ');
        let got = parts.next().unwrap_or("");
        assert_eq!(got, cmd.split(' ').next().unwrap(), "answer: {line}");
        let rc = parts.next().and_then(|r| r.parse().ok()).expect("a code");
        (rc, parts.next().unwrap_or("").to_string())
    }

    /// Sends a command; returns its code and detail.
    pub fn ask(&mut self, cmd: &str) -> (i32, String) {
        self.send(cmd);
        self.read(cmd)
    }

    /// Sends a command without waiting for its answer ([`Holder::read`]
    /// it later).
    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(self.pid(), sig) };
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const LOCK_LOST: i32 = -7;
pub const UNAVAILABLE: i32 = -9;
