//! The postgres method (`Method::Postgres`, `LOCKING_METHOD_POSTGRES`)
//! against a real PostgreSQL server that these tests start themselves
//! (`tests/support/pg.rs`): `initdb` into a temporary directory as an
//! unprivileged user (`nobody` when run as root), trust authentication,
//! listening on a Unix socket and on 127.0.0.1, stopped again when the test
//! process ends.
//!
//! Where the server's programs are not installed (`/usr/lib/postgresql/*/bin`,
//! or `LOCKING_PG_BINDIR`), the tests print SKIP and pass, except in CI
//! (`CI` set), where that is a failure: `.ci/run` installs `postgresql`.
//! The tests across network namespaces, the chaos run and the 100 waiters
//! are in `tests/postgres_net.rs`.
//!
//! From Rust (in-process threads, the core API) and from C
//! (`c_tests/pg_client.c`, compiled here against `include/locking.h` and
//! the freshly built `liblocking.so`: a C test suite, plus a holder process
//! driven through stdin for the crash, stop and fork cases).

#[path = "support/pg.rs"]
mod pg;
mod support;

use locking::{Error, Expire, Locker, Method, Mode, Timeout};
use pg::*;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// The server most tests share (none of them restarts it).
fn shared() -> Option<&'static Server> {
    static S: OnceLock<Option<Server>> = OnceLock::new();
    S.get_or_init(|| Server::start("shared")).as_ref()
}

/// The server PID of a holder's session, from its holder text.
fn backend_pid_of(l: &Locker) -> i32 {
    let h = l.holder().unwrap().expect("a holder");
    h.extra
        .iter()
        .find(|(k, _)| k == "backend_pid")
        .and_then(|(_, v)| v.parse().ok())
        .expect("backend_pid")
}

// ---------------------------------------------------------------------
// Without a server

/// liblocking.so must not need libpq to load: no DT_NEEDED entry for it.
#[test]
fn the_library_does_not_link_libpq() {
    let lib = support::lib_dir().join("liblocking.so");
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        !needed.is_empty(),
        "readelf shows no NEEDED entries at all:\n{text}"
    );
    assert!(
        needed.iter().all(|l| !l.contains("libpq")),
        "liblocking.so needs libpq:\n{}",
        needed.join("\n")
    );
}

/// Without libpq: LOCKING_E_UNAVAILABLE, naming libpq.so.5.
#[test]
fn a_missing_libpq_is_unavailable_and_named() {
    let out = Command::new(pg_client())
        .args(["new", "host=/nonexistent user=x", "1"])
        .env("LOCKING_LIBPQ", "/nonexistent/libpq.so.5")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("new {UNAVAILABLE} ")), "{text}");
    assert!(
        text.contains("libpq.so.5") && text.contains("libpq5"),
        "{text}"
    );
}

/// A refused connection, a server that never answers, an unknown role:
/// LOCKING_E_UNAVAILABLE, within about the timeout.
#[test]
fn an_unreachable_server_is_unavailable_within_the_timeout() {
    let closed = free_port();
    let t0 = Instant::now();
    let e = Locker::new(
        b"x",
        Path::new(&format!("host=127.0.0.1 port={closed}")),
        b"",
        Timeout::from_secs(5.0).unwrap(),
        Expire::Never,
        Method::Postgres,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    if e.to_string().contains("could not be loaded") && std::env::var_os("CI").is_none() {
        eprintln!("SKIP: no libpq.so.5 here: {e}");
        return;
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("refused"), "{e}");

    // A server that accepts and then says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Ok((s, _)) = silent.accept() {
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    for (timeout, lo, hi) in [(3.0, 2.9, 4.5), (0.0, 1.9, 3.5)] {
        let t0 = Instant::now();
        let e = Locker::new(
            b"x",
            Path::new(&format!("host=127.0.0.1 port={port} user=x")),
            b"",
            Timeout::from_secs(timeout).unwrap(),
            Expire::Never,
            Method::Postgres,
        )
        .unwrap_err();
        let took = t0.elapsed().as_secs_f64();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(
            took >= lo && took < hi,
            "timeout {timeout}: gave up after {took:.2} s: {e}"
        );
    }
    drop(keep);
}

// ---------------------------------------------------------------------
// With the shared server

/// The C API suite (c_tests/pg_client.c).
#[test]
fn c_api_suite() {
    let Some(s) = shared() else { return };
    let work = support::scratch("postgres", "c_suite");
    let mut cmd = Command::new(pg_client());
    cmd.arg("suite").arg(work.join("scratch")).arg(s.conninfo());
    let ran = support::run_with_watchdog(&mut cmd, &work, Duration::from_secs(180));
    println!("{}", ran.show());
    let failures: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert!(
        ran.status.success() && failures.is_empty(),
        "pg_client suite failed:\n{}",
        failures.join("\n")
    );
}

/// A wrong role is refused: UNAVAILABLE with the server's reason.
#[test]
fn authentication_refused_is_unavailable() {
    let Some(s) = shared() else { return };
    let ci = format!(
        "host={} port={} user=nosuchrole dbname=postgres",
        s.sock.display(),
        s.port
    );
    let e = Locker::new(
        b"x",
        Path::new(&ci),
        b"",
        Timeout::TRY,
        Expire::Never,
        Method::Postgres,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("nosuchrole"), "{e}");
}

/// Threads, each with its own Locker, never overlap.
#[test]
fn threads_exclude_each_other() {
    let Some(s) = shared() else { return };
    let name = fresh("threads");
    let inside = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (ci, name, inside, total) =
                (s.conninfo(), name.clone(), inside.clone(), total.clone());
            std::thread::spawn(move || {
                let mut l = pg_locker(&ci, &name, -1.0, 0.0);
                for _ in 0..20 {
                    l.lock().unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    total.fetch_add(1, Ordering::SeqCst);
                    l.unlock().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(total.load(Ordering::SeqCst), 120);
}

/// Processes (C, through the library) never overlap, and every token they
/// write to a fenced store is above the last one it accepted.
#[test]
fn processes_exclude_each_other_and_tokens_increase() {
    let Some(s) = shared() else { return };
    let work = support::scratch("postgres", "processes");
    let counter = work.join("counter");
    let fence = work.join("fence");
    std::fs::write(&counter, "0\n").unwrap();
    let name = fresh("procs");
    let kids: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(pg_client())
                .arg("count")
                .arg(s.conninfo())
                .arg(&name)
                .arg(&counter)
                .arg(&fence)
                .arg("25")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("done 0"), "{text}");
    }
    let n: u64 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, 100, "lost updates: the lock did not exclude");
}

/// PostgreSQL queues a shared request behind a waiting exclusive one, so a
/// writer is not starved: while a writer waits for a reader, a new reader
/// neither gets in with a try nor with a wait; once the first reader
/// leaves, the writer gets the lock. And when a waiting writer gives up,
/// the readers queued behind it get the lock at once.
#[test]
fn a_waiting_writer_is_not_starved_by_readers() {
    let Some(s) = shared() else { return };
    let name = fresh("queue");
    let ci = s.conninfo();
    let mut r1 = pg_locker(&ci, &name, 0.0, 0.0);
    r1.acquire(Mode::Shared, Timeout::TRY).unwrap();
    let got = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ci, name, got) = (ci.clone(), name.clone(), got.clone());
        std::thread::spawn(move || {
            let mut w = pg_locker(&ci, &name, -1.0, 0.0);
            w.lock().unwrap();
            got.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            w.unlock().unwrap();
        })
    };
    // Wait until the writer is queued in the server.
    let t0 = Instant::now();
    while s.psql(&format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name LIKE '%{name}%'"
    )) != "1"
    {
        assert!(t0.elapsed() < PATIENCE, "the writer never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut r2 = pg_locker(&ci, &name, 0.0, 0.0);
    assert!(
        !r2.try_acquire(Mode::Shared).unwrap(),
        "a reader overtook the queued writer"
    );
    let t = Instant::now();
    let e = r2
        .acquire(Mode::Shared, Duration::from_millis(400))
        .unwrap_err();
    assert!(matches!(e, Error::LockerFailed { .. }), "{e}");
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    assert!(!got.load(Ordering::SeqCst));
    r1.unlock().unwrap();
    // The writer gets it now; then the reader.
    r2.acquire(Mode::Shared, Duration::from_secs(30)).unwrap();
    assert!(
        got.load(Ordering::SeqCst),
        "the reader got in before the writer"
    );
    writer.join().unwrap();
    r2.unlock().unwrap();

    // A writer that gives up lets the readers behind it in at once.
    r1.acquire(Mode::Shared, Timeout::TRY).unwrap();
    let w = {
        let (ci, name) = (ci.clone(), name.clone());
        std::thread::spawn(move || {
            let mut w = pg_locker(&ci, &name, 0.0, 0.0);
            let e = w
                .acquire(Mode::Exclusive, Duration::from_millis(800))
                .unwrap_err();
            assert!(matches!(e, Error::LockerFailed { .. }), "{e}");
            Instant::now()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    r2.acquire(Mode::Shared, Duration::from_secs(20)).unwrap();
    let got_at = Instant::now();
    let gave_up_at = w.join().unwrap();
    assert!(
        got_at.saturating_duration_since(gave_up_at) < Duration::from_millis(500),
        "the reader waited {:?} after the writer gave up",
        got_at.saturating_duration_since(gave_up_at)
    );
    r1.unlock().unwrap();
    r2.unlock().unwrap();
}

/// Try, finite and forever waits; the waiting is done in the server (the
/// waiter's session waits on the advisory lock, it does not poll).
#[test]
fn timeouts_try_finite_forever() {
    let Some(s) = shared() else { return };
    let name = fresh("timeouts");
    let ci = s.conninfo();
    let mut a = pg_locker(&ci, &name, 0.0, 0.0);
    let mut b = pg_locker(&ci, &name, 0.0, 0.0);
    a.lock().unwrap();
    let t = Instant::now();
    assert!(!b.try_acquire(Mode::Exclusive).unwrap());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    for secs in [0.05, 0.5, 1.2] {
        let t = Instant::now();
        let e = b
            .acquire(Mode::Exclusive, Duration::from_secs_f64(secs))
            .unwrap_err();
        let took = t.elapsed().as_secs_f64();
        assert!(matches!(e, Error::LockerFailed { .. }), "{e}");
        assert!(
            took >= secs * 0.9 && took < secs + 0.6,
            "{secs} s: took {took:.3} s"
        );
    }
    let waiter = {
        let (ci, name) = (ci.clone(), name.clone());
        std::thread::spawn(move || {
            let mut c = pg_locker(&ci, &name, -1.0, 0.0);
            let t = Instant::now();
            c.acquire(Mode::Exclusive, Timeout::Forever).unwrap();
            let took = t.elapsed();
            c.unlock().unwrap();
            took
        })
    };
    // The forever-waiter's session waits in the server's lock queue.
    let t0 = Instant::now();
    loop {
        let w = s.psql(&format!(
            "SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity \
             WHERE application_name LIKE '%{name}%' AND state = 'active'"
        ));
        if w == "Lock/advisory" {
            break;
        }
        assert!(
            t0.elapsed() < PATIENCE,
            "no session waits on the advisory lock: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    a.unlock().unwrap();
    let took = waiter.join().unwrap();
    assert!(took >= Duration::from_millis(450), "{took:?}");
}

/// Timeouts and expires of any size are valid: huge ones mean forever and
/// never, and nothing panics.
#[test]
fn huge_timeouts_and_expires_are_valid() {
    let Some(s) = shared() else { return };
    let name = fresh("huge");
    for secs in [1e9, 1e19, f64::INFINITY] {
        let mut l = Locker::new(
            name.as_bytes(),
            Path::new(&s.conninfo()),
            b"rust",
            Timeout::from_secs(secs).unwrap(),
            Expire::from_secs(secs).unwrap(),
            Method::Postgres,
        )
        .unwrap();
        l.lock().unwrap();
        l.refresh().unwrap();
        l.unlock().unwrap();
        l.acquire(Mode::Shared, Timeout::from_secs(secs).unwrap())
            .unwrap();
        l.unlock().unwrap();
    }
}

/// A lock granted just as lock_timeout fires is not reported as a timeout
/// and left held: after many racing short waits, the waiter's session
/// holds nothing, and the holder always gets the lock back.
#[test]
fn no_lock_is_left_behind_by_a_timed_out_wait() {
    let Some(s) = shared() else { return };
    let name = fresh("race");
    let ci = s.conninfo();
    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicUsize::new(0));
    let holder = {
        let (ci, name, stop, inside) = (ci.clone(), name.clone(), stop.clone(), inside.clone());
        std::thread::spawn(move || {
            let mut h = pg_locker(&ci, &name, 0.0, 0.0);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                h.acquire(Mode::Exclusive, Duration::from_secs(10)).unwrap();
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                std::thread::sleep(Duration::from_millis(2));
                inside.fetch_sub(1, Ordering::SeqCst);
                h.unlock().unwrap();
                n += 1;
            }
            n
        })
    };
    let mut w = pg_locker(&ci, &name, 0.0, 0.0);
    let (mut ok, mut failed) = (0, 0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let ms = 1 + (ok + failed) % 4;
        match w.acquire(Mode::Exclusive, Duration::from_millis(ms)) {
            Ok(()) => {
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                inside.fetch_sub(1, Ordering::SeqCst);
                w.unlock().unwrap();
                ok += 1;
            }
            Err(Error::LockerFailed { .. }) => {
                assert!(w.mode().is_none());
                failed += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let cycles = holder.join().unwrap();
    println!("holder cycles {cycles}, waiter got it {ok} times, timed out {failed} times");
    let left = s.psql(&format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'advisory' AND a.application_name LIKE '%{name}%'"
    ));
    assert_eq!(left, "0", "an advisory lock was left behind");
    assert!(cycles > 10 && failed > 0, "no contention happened");
}

/// The grant-at-timeout race, forced: a shared locker gets the advisory
/// lock at once, but its statement then waits on the name's row (the
/// fencing counter), which a transaction holds, until lock_timeout ends it
/// with an error. The lock is held all the same (a session-level lock
/// outlives the statement): it must be reported as had, with its token,
/// not as a timeout with the lock left held behind the Locker's back.
#[test]
fn a_lock_granted_as_the_wait_times_out_is_not_reported_as_a_timeout() {
    let Some(s) = shared() else { return };
    let name = fresh("granted");
    let ci = s.conninfo();
    let mut a = pg_locker(&ci, &name, 0.0, 0.0);
    a.acquire(Mode::Shared, Timeout::TRY).unwrap();
    let ta = a.fencing_token().unwrap();
    a.unlock().unwrap();
    let row = format!("ns = convert_to('rust', 'UTF8') AND name = convert_to('{name}', 'UTF8')");
    let blocker = {
        let (bin, sock, port, row) = (s.bin.clone(), s.sock.clone(), s.port, row.clone());
        std::thread::spawn(move || {
            Command::new(bin.join("psql"))
                .args(["-XAtq", "-h"])
                .arg(&sock)
                .args([
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(format!(
                    "BEGIN; SELECT id FROM liblocking_locks WHERE {row} FOR UPDATE; \
                     SELECT pg_sleep(1.5); COMMIT"
                ))
                .output()
                .unwrap()
        })
    };
    let t0 = Instant::now();
    while s.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FOR UPDATE%' AND query LIKE '%{name}%' \
         AND pid <> pg_backend_pid()"
    )) != "1"
    {
        assert!(t0.elapsed() < PATIENCE);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut b = pg_locker(&ci, &name, 0.0, 0.0);
    b.acquire(Mode::Shared, Duration::from_millis(300))
        .expect("the lock was granted before lock_timeout fired: it is ours");
    assert!(b.fencing_token().unwrap() > ta);
    b.check().unwrap();
    let mut w = pg_locker(&ci, &name, 0.0, 0.0);
    assert!(!w.try_acquire(Mode::Exclusive).unwrap());
    b.unlock().unwrap();
    assert!(w.try_acquire(Mode::Exclusive).unwrap());
    w.unlock().unwrap();
    assert!(blocker.join().unwrap().status.success());
}

/// A SIGKILLed holder's lock is free at once (its session ends with it).
#[test]
fn a_killed_holder_frees_the_lock_at_once() {
    let Some(s) = shared() else { return };
    let name = fresh("kill");
    let mut h = Holder::spawn(&s.conninfo(), &name, 0.0);
    assert_eq!(h.ask("lock exclusive 5").0, 0);
    let mut w = pg_locker(&s.conninfo(), &name, 0.0, 0.0);
    assert!(!w.try_acquire(Mode::Exclusive).unwrap());
    h.signal(libc::SIGKILL);
    let t = Instant::now();
    w.acquire(Mode::Exclusive, Duration::from_secs(20)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    w.unlock().unwrap();
}

/// pg_terminate_backend on the holder's session: the holder learns
/// LOCK_LOST (check, refresh, unlock), a waiter gets the lock, and the
/// Locker works again afterwards (a new session). The same for a shared
/// holder.
#[test]
fn a_terminated_session_loses_its_lock() {
    let Some(s) = shared() else { return };
    let ci = s.conninfo();
    for mode in [Mode::Exclusive, Mode::Shared] {
        let name = fresh("terminate");
        let mut a = pg_locker(&ci, &name, 0.0, 0.0);
        a.acquire(mode, Timeout::TRY).unwrap();
        let tok = a.fencing_token().unwrap();
        let pid = backend_pid_of(&a);
        let waiter = {
            let (ci, name) = (ci.clone(), name.clone());
            std::thread::spawn(move || {
                let mut b = pg_locker(&ci, &name, 0.0, 0.0);
                b.acquire(Mode::Exclusive, Duration::from_secs(30)).unwrap();
                let t = b.fencing_token().unwrap();
                b.unlock().unwrap();
                t
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(s.psql(&format!("SELECT pg_terminate_backend({pid})")), "t");
        let next = waiter.join().unwrap();
        assert!(next > tok, "{next} <= {tok}");
        assert!(
            matches!(a.check(), Err(Error::LockLost(_))),
            "{:?}",
            a.check()
        );
        assert!(matches!(a.refresh(), Err(Error::LockLost(_))));
        assert!(matches!(a.unlock(), Err(Error::LockLost(_))));
        // The Locker connects again.
        a.acquire(mode, Duration::from_secs(5)).unwrap();
        a.check().unwrap();
        a.unlock().unwrap();
    }
}

/// A stopped holder (SIGSTOP) is ended by the server after about `expire`
/// (idle_session_timeout); a waiter gets the lock, and the holder, once
/// continued, learns LOCK_LOST. A holder that refreshes keeps it.
#[test]
fn a_stopped_holder_loses_the_lock_after_expire() {
    let Some(s) = shared() else { return };
    let name = fresh("stop");
    let expire = 1.5;
    let mut h = Holder::spawn(&s.conninfo(), &name, expire);
    assert_eq!(h.ask("lock exclusive 5").0, 0);
    let mut w = pg_locker(&s.conninfo(), &name, 0.0, 0.0);
    // Refreshing keeps it, for several times expire.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(h.ask("refresh").0, 0);
        assert!(
            !w.try_acquire(Mode::Exclusive).unwrap(),
            "a refreshing holder was broken"
        );
    }
    h.signal(libc::SIGSTOP);
    let t = Instant::now();
    w.acquire(Mode::Exclusive, Duration::from_secs(30)).unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(
        took > expire * 0.8 && took < expire + 3.0,
        "freed after {took:.2} s"
    );
    h.signal(libc::SIGCONT);
    assert_eq!(h.ask("check").0, LOCK_LOST);
    assert_eq!(h.ask("unlock").0, LOCK_LOST);
    w.unlock().unwrap();
    // The holder's Locker works again.
    assert_eq!(h.ask("lock shared 5").0, 0);
    assert_eq!(h.ask("unlock").0, 0);
}

/// A fork child that frees an inherited held Locker leaves the parent's
/// session and lock untouched.
#[test]
fn a_fork_child_freeing_the_locker_keeps_the_parents_session() {
    let Some(s) = shared() else { return };
    let name = fresh("fork");
    let mut h = Holder::spawn(&s.conninfo(), &name, 0.0);
    assert_eq!(h.ask("lock exclusive 5").0, 0);
    let (_, before) = h.ask("holder");
    let backend = |text: &str| {
        text.split(' ')
            .find_map(|w| w.strip_prefix("backend_pid="))
            .map(str::to_string)
            .expect("backend_pid")
    };
    assert_eq!(h.ask("forkfree").0, 0);
    assert_eq!(h.ask("check").0, 0);
    let (_, after) = h.ask("holder");
    assert_eq!(backend(&before), backend(&after), "the session changed");
    let pid = backend(&after);
    assert_eq!(
        s.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        )),
        "1"
    );
    let mut w = pg_locker(&s.conninfo(), &name, 0.0, 0.0);
    assert!(!w.try_acquire(Mode::Exclusive).unwrap());
    let (rc, tok) = h.ask("token");
    assert_eq!(rc, 0, "{tok}");
    assert_eq!(h.ask("unlock").0, 0);
    assert!(w.try_acquire(Mode::Exclusive).unwrap());
    assert!(w.fencing_token().unwrap() > tok.parse::<u64>().unwrap());
    w.unlock().unwrap();
}

/// Distinct names never share a lock, not even when a 32-bit hash of them
/// collides (the table gives each full name its own id): names whose
/// `hashtext` collides, names that differ only in how ns and objname split
/// the bytes, non-UTF-8, NUL bytes, a 20 KB name, and 40 names held at once.
#[test]
fn distinct_names_never_share_a_lock() {
    let Some(s) = shared() else { return };
    let ci = s.conninfo();
    // Two names whose hashtext (a 32-bit hash) collides.
    let pair = s.psql(
        "SELECT string_agg(n, '|') FROM (SELECT 'name-' || i AS n FROM generate_series(1, 300000) i) s \
         GROUP BY hashtext(n) HAVING count(*) = 2 LIMIT 1",
    );
    let (n1, n2) = pair
        .split_once('|')
        .expect("a hashtext collision among 300000 names");
    type Name = (Vec<u8>, Vec<u8>);
    let mut pairs: Vec<(Name, Name)> = vec![
        ((b"".to_vec(), n1.into()), (b"".to_vec(), n2.into())),
        (
            (b"a".to_vec(), b"bc".to_vec()),
            (b"ab".to_vec(), b"c".to_vec()),
        ),
        (
            (b"a\0".to_vec(), b"b".to_vec()),
            (b"a".to_vec(), b"\0b".to_vec()),
        ),
        (
            (b"x".to_vec(), b"\xff\xfe".to_vec()),
            (b"x".to_vec(), b"\xff\xfd".to_vec()),
        ),
    ];
    let long_a = vec![b'q'; 20_000];
    let mut long_b = long_a.clone();
    long_b[19_999] = b'r';
    pairs.push(((b"".to_vec(), long_a), (b"".to_vec(), long_b)));
    for ((ns1, o1), (ns2, o2)) in pairs {
        let mk = |ns: &[u8], o: &[u8]| {
            Locker::new(
                o,
                Path::new(&ci),
                ns,
                Timeout::TRY,
                Expire::Never,
                Method::Postgres,
            )
            .unwrap()
        };
        let (mut a, mut b) = (mk(&ns1, &o1), mk(&ns2, &o2));
        a.lock().unwrap();
        b.lock().unwrap_or_else(|e| {
            panic!(
                "{:?} and {:?} share a lock: {e}",
                (&ns1, &o1.len()),
                (&ns2, o2.len())
            )
        });
        // ... and the same name does exclude.
        let mut again = mk(&ns1, &o1);
        assert!(!again.try_acquire(Mode::Exclusive).unwrap());
        a.unlock().unwrap();
        b.unlock().unwrap();
    }
    let base = fresh("many");
    let mut held: Vec<Locker> = (0..40)
        .map(|i| {
            let mut l = pg_locker(&ci, &format!("{base}-{i}"), 0.0, 0.0);
            l.lock().unwrap();
            l
        })
        .collect();
    for l in &mut held {
        l.unlock().unwrap();
    }
    assert_eq!(
        s.psql(
            "SELECT count(*) = count(DISTINCT id) AND count(*) = count(DISTINCT (ns, name)) \
             FROM liblocking_locks"
        ),
        "t"
    );
}

/// open_locked with the postgres method: the lock is named by the file's
/// canonical path; lockdir (the connection string) is required.
#[test]
fn open_locked_uses_the_canonical_path() {
    let Some(s) = shared() else { return };
    let work = support::scratch("postgres", "open_locked");
    let file = work.join("f");
    let link = work.join("link");
    std::os::unix::fs::symlink(&work, &link).unwrap();
    let ci = s.conninfo();
    let f = locking::open_locked(
        &file,
        Timeout::TRY,
        Some(Path::new(&ci)),
        Expire::Never,
        Method::Postgres,
    )
    .unwrap();
    let e = locking::open_locked(
        &link.join("f"),
        Timeout::TRY,
        Some(Path::new(&ci)),
        Expire::Never,
        Method::Postgres,
    )
    .unwrap_err();
    assert!(matches!(e, Error::CannotGetLock { .. }), "{e}");
    let e = locking::open_locked(&file, Timeout::TRY, None, Expire::Never, Method::Postgres)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    f.close().unwrap();
}

/// locker_holder's facts come from pg_locks and pg_stat_activity.
#[test]
fn the_holder_is_described_from_the_server() {
    let Some(s) = shared() else { return };
    let name = fresh("holder");
    let mut a = pg_locker(&s.tcp_conninfo(), &name, 0.0, 0.0);
    let b = pg_locker(&s.conninfo(), &name, 0.0, 0.0);
    assert!(b.holders().unwrap().is_empty());
    a.lock().unwrap();
    let hs = b.holders().unwrap();
    assert_eq!(hs.len(), 1);
    let text = hs[0].describe();
    for want in [
        "mode=exclusive\n".to_string(),
        "method=postgres\n".into(),
        format!("pid={}\n", std::process::id()),
        "client_addr=127.0.0.1:".into(),
        format!("application_name=liblocking {}@", std::process::id()),
        "session=idle\n".into(),
        "state=alive\n".into(),
    ] {
        assert!(text.contains(&want), "{want:?} not in:\n{text}");
    }
    assert!(
        a.entry_path().contains("advisory lock"),
        "{}",
        a.entry_path()
    );
    a.unlock().unwrap();
}

/// A TCP proxy to the server that can be cut (it stops passing bytes
/// either way, keeping both sockets open: to both ends it looks like a
/// network partition) and healed.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: u16) -> Proxy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (from, into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let cut = c.clone();
                    std::thread::spawn(move || pump(from, into, cut));
                }
            }
        });
        Proxy { port, cut }
    }

    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

fn pump(mut from: std::net::TcpStream, mut into: std::net::TcpStream, cut: Arc<AtomicBool>) {
    use std::io::Read;
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 16384];
    loop {
        if cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if into.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = into.shutdown(std::net::Shutdown::Write);
}

/// A network partition between holders and the server: the server ends
/// the silent sessions after about `expire` and a waiter gets the locks; a
/// holder that calls during the partition learns LOCK_LOST within about
/// `expire` (it never hangs), and one that calls after the link is back
/// learns LOCK_LOST from the server.
#[test]
fn a_partitioned_holder_loses_the_lock_after_expire() {
    let Some(s) = shared() else { return };
    let proxy = Proxy::start(s.port);
    let expire = 2.0;
    let (n1, n2) = (fresh("cut"), fresh("cut"));
    let mut h1 = pg_locker(&proxy.conninfo(), &n1, 0.0, expire);
    let mut h2 = pg_locker(&proxy.conninfo(), &n2, 0.0, expire);
    h1.lock().unwrap();
    h2.acquire(Mode::Shared, Timeout::TRY).unwrap();
    proxy.cut.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let mut w1 = pg_locker(&s.conninfo(), &n1, 0.0, 0.0);
    let mut w2 = pg_locker(&s.conninfo(), &n2, 0.0, 0.0);
    w1.acquire(Mode::Exclusive, Duration::from_secs(30))
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(
        took > expire * 0.8 && took < expire + 3.0,
        "freed after {took:.2} s"
    );
    w2.acquire(Mode::Exclusive, Duration::from_secs(30))
        .unwrap();
    // During the partition: no answer, LOCK_LOST within about expire.
    let t = Instant::now();
    assert!(matches!(h1.check(), Err(Error::LockLost(_))));
    assert!(
        t.elapsed() < Duration::from_secs_f64(expire + 1.5),
        "{:?}",
        t.elapsed()
    );
    // After it: the server says the session is gone.
    proxy.cut.store(false, Ordering::SeqCst);
    let t = Instant::now();
    assert!(
        matches!(h2.check(), Err(Error::LockLost(_))),
        "{:?}",
        h2.check()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(h1.unlock(), Err(Error::LockLost(_))));
    assert!(matches!(h2.unlock(), Err(Error::LockLost(_))));
    // Both connect again (through the healed link) and find the locks taken.
    assert!(!h1.try_acquire(Mode::Exclusive).unwrap());
    assert!(!h2.try_acquire(Mode::Shared).unwrap());
    w1.unlock().unwrap();
    w2.unlock().unwrap();
    assert!(h1.try_acquire(Mode::Exclusive).unwrap());
    h1.unlock().unwrap();
}

// ---------------------------------------------------------------------
// With a server of their own (restarted)

/// A server restart (a crash: `pg_ctl stop -m immediate`) ends every
/// session: the holder learns LOCK_LOST, a waiter (whose session ended
/// too) connects again and gets the lock, and fencing tokens drawn after
/// the restart are above those drawn before.
#[test]
fn a_server_restart_loses_the_lock_and_tokens_keep_increasing() {
    let Some(s) = Server::start("restart") else {
        return;
    };
    let ci = s.conninfo();
    let name = fresh("restart");
    let mut a = pg_locker(&ci, &name, 0.0, 0.0);
    a.acquire(Mode::Shared, Timeout::TRY).unwrap();
    let t1 = a.fencing_token().unwrap();
    a.unlock().unwrap();
    a.lock().unwrap();
    let t2 = a.fencing_token().unwrap();
    assert!(t2 > t1);
    let ready = Arc::new(Barrier::new(2));
    let waiter = {
        let (ci, name, ready) = (ci.clone(), name.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut b = pg_locker(&ci, &name, 0.0, 0.0);
            ready.wait();
            b.acquire(Mode::Exclusive, Duration::from_secs(40)).unwrap();
            let t = b.fencing_token().unwrap();
            b.unlock().unwrap();
            t
        })
    };
    ready.wait();
    std::thread::sleep(Duration::from_millis(300));
    s.restart_immediate();
    let t3 = waiter.join().unwrap();
    assert!(t3 > t2, "token after the restart {t3} <= {t2}");
    assert!(
        matches!(a.check(), Err(Error::LockLost(_))),
        "{:?}",
        a.check()
    );
    assert!(matches!(a.unlock(), Err(Error::LockLost(_))));
    a.lock().unwrap();
    assert!(a.fencing_token().unwrap() > t3);
    a.unlock().unwrap();
}

/// lockrun with `--method postgres`: `--dir` is the connection string; a
/// busy lock exits 75, `--check` names the holder, a free one is free.
#[test]
fn lockrun_uses_the_postgres_method() {
    let Some(s) = shared() else { return };
    let name = fresh("lockrun");
    let lockrun = Path::new(env!("CARGO_BIN_EXE_lockrun"));
    let run = |args: &[&str]| {
        Command::new(lockrun)
            .args([
                "--method",
                "postgres",
                "--dir",
                &s.conninfo(),
                "--ns",
                "rust",
            ])
            .args(args)
            .output()
            .expect("lockrun runs")
    };
    let free = run(&["--check", &name]);
    assert_eq!(free.status.code(), Some(0), "{free:?}");
    let mut holder = pg_locker(&s.conninfo(), &name, 0.0, 0.0);
    holder.lock().unwrap();
    let busy = run(&["-n", &name, "--", "true"]);
    assert_eq!(busy.status.code(), Some(75), "{busy:?}");
    let held = run(&["--check", &name]);
    assert_eq!(held.status.code(), Some(1), "{held:?}");
    let said = String::from_utf8_lossy(&held.stdout);
    assert!(
        said.contains(&format!("pid {}", std::process::id())) && !said.contains("unknown party"),
        "--check should name the holder: {said}"
    );
    holder.unlock().unwrap();
    let ran = run(&["-n", &name, "--", "true"]);
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
}

/// With `synchronous_commit = off` on the server, a crash loses the last
/// commits: the library's sessions turn it back on, so no fencing token is
/// handed out twice across the crash.
#[test]
fn tokens_survive_a_crash_with_asynchronous_commit() {
    let Some(s) = Server::start("asynccommit") else {
        return;
    };
    s.psql("ALTER SYSTEM SET synchronous_commit = off");
    s.psql("SELECT pg_reload_conf()");
    let ci = s.conninfo();
    let name = fresh("async");
    // Draw tokens, then crash the server at once: with asynchronous
    // commit the last commits (up to wal_writer_delay, 200 ms) are not on
    // disk yet, unless the library's session made them synchronous.
    let mut l = pg_locker(&ci, &name, 5.0, 0.0);
    let mut before = 0;
    for _ in 0..300 {
        l.lock().unwrap();
        before = l.fencing_token().unwrap();
        l.unlock().unwrap();
    }
    drop(l);
    s.restart_immediate();
    let mut l = pg_locker(&ci, &name, 20.0, 0.0);
    l.lock().unwrap();
    let after = l.fencing_token().unwrap();
    l.unlock().unwrap();
    assert!(
        after > before,
        "token {after} after the crash, {before} was handed out before it"
    );
}
