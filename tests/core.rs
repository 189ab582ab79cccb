//! Integration tests of the safe core: exclusion, timeouts, expire, dead
//! holders, lost locks and fork(), for every real method.

use locking::{Error, Expire, Locker, Method, Timeout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const REAL: [Method; 3] = [Method::Mkdir, Method::OpenCreate, Method::Kernel];

fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "locking-core-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn locker(dir: &Path, name: &str, timeout: f64, expire: f64, m: Method) -> Locker {
    Locker::new(
        name.as_bytes(),
        dir,
        b"t",
        Timeout::from_secs(timeout).unwrap(),
        Expire::from_secs(expire).unwrap(),
        m,
    )
    .unwrap()
}

#[test]
fn two_lockers_exclude_and_hand_over() {
    for m in REAL {
        let d = tempdir("excl");
        let mut a = locker(&d, "x", 0.0, 0.0, m);
        let mut b = locker(&d, "x", 0.0, 0.0, m);
        a.lock().unwrap();
        assert!(matches!(b.lock(), Err(Error::LockerFailed { .. })), "{m:?}");
        assert!(matches!(a.lock(), Err(Error::AlreadyLocked(_))), "{m:?}");
        a.check().unwrap();
        a.unlock().unwrap();
        assert!(matches!(a.unlock(), Err(Error::NotLocked(_))), "{m:?}");
        assert!(matches!(a.check(), Err(Error::NotLocked(_))), "{m:?}");
        b.lock().unwrap();
        drop(b); // drop releases
        a.lock().unwrap();
    }
}

#[test]
fn namespaces_and_odd_names_are_distinct_locks() {
    let long = "n".repeat(10_000);
    let names: [&[u8]; 7] = [
        b"x",
        b"a/b",
        b"..",
        b"sp ace",
        "é".as_bytes(),
        &[0x80, 0xff],
        long.as_bytes(),
    ];
    for m in REAL {
        let d = tempdir("names");
        let mut held = Vec::new();
        for ns in [&b"a"[..], b"b"] {
            for n in names {
                let mut l = Locker::new(n, &d, ns, Timeout::TRY, Expire::Never, m).unwrap();
                l.lock().unwrap();
                let mut same = Locker::new(n, &d, ns, Timeout::TRY, Expire::Never, m).unwrap();
                assert!(same.lock().is_err(), "{m:?} {n:?}");
                held.push(l);
            }
        }
        drop(held);
        // Everything released: nothing left but kernel lock files.
        // (`~tmp` is where mkdir entries are prepared; it stays, empty.)
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "~tmp" || std::fs::read_dir(d.join("~tmp")).unwrap().next().is_some())
            .collect();
        if m != Method::Kernel {
            assert!(left.is_empty(), "{m:?} left {left:?}");
        }
    }
}

#[test]
fn fake_never_excludes() {
    let d = tempdir("fake");
    let mut a = locker(&d, "x", 0.0, 0.0, Method::Fake);
    let mut b = locker(&d, "x", 0.0, 0.0, Method::Fake);
    a.lock().unwrap();
    b.lock().unwrap();
}

#[test]
fn threads_lose_no_update() {
    for m in REAL {
        let d = tempdir("threads");
        let counter = Arc::new(AtomicUsize::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (d, counter, inside, start) =
                    (d.clone(), counter.clone(), inside.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut l = locker(&d, "ctr", -1.0, 0.0, m);
                    start.wait();
                    for _ in 0..150 {
                        l.lock().unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        // A deliberately racy read-modify-write.
                        let v = counter.load(Ordering::Relaxed);
                        std::thread::yield_now();
                        counter.store(v + 1, Ordering::Relaxed);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        l.unlock().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::SeqCst), 900, "{m:?}");
    }
}

#[test]
fn short_timeout_fails_in_about_that_time() {
    for m in REAL {
        let d = tempdir("timeout");
        let mut a = locker(&d, "x", 0.0, 0.0, m);
        a.lock().unwrap();
        let mut b = locker(&d, "x", 0.25, 0.0, m);
        let t = Instant::now();
        assert!(matches!(b.lock(), Err(Error::LockerFailed { .. })));
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(250) && e < Duration::from_secs(3),
            "{m:?} {e:?}"
        );
    }
}

#[test]
fn expired_lock_is_broken_and_the_old_holder_learns_it() {
    for m in REAL {
        let d = tempdir("expire");
        let mut a = locker(&d, "x", 0.0, 0.0, m);
        let t = Instant::now();
        a.lock().unwrap();
        // `a` is alive (this process), so only expire can break it.
        let mut b = locker(&d, "x", 10.0, 0.3, m);
        b.lock().unwrap();
        // Ages come from file mtimes, which the kernel stamps from a coarse
        // clock (a few ms behind): allow for that much.
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(280), "{m:?}: broken after {e:?}");
        assert!(matches!(a.check(), Err(Error::LockLost(_))), "{m:?}");
        assert!(matches!(a.refresh(), Err(Error::LockLost(_))), "{m:?}");
        assert!(matches!(a.unlock(), Err(Error::LockLost(_))), "{m:?}");
        // The old holder's unlock left the new holder alone.
        b.check().unwrap();
        let mut c = locker(&d, "x", 0.0, 0.0, m);
        assert!(c.lock().is_err(), "{m:?}");
        b.unlock().unwrap();
        c.lock().unwrap();
    }
}

#[test]
fn refresh_keeps_a_lock_from_expiring() {
    for m in REAL {
        let d = tempdir("refresh");
        let mut a = locker(&d, "x", 0.0, 0.0, m);
        a.lock().unwrap();
        let mut b = locker(&d, "x", 0.0, 0.5, m);
        for _ in 0..3 {
            a.refresh().unwrap();
            assert!(b.lock().is_err(), "{m:?}");
        }
        a.check().unwrap();
    }
}

/// Forks; the child runs `f` and exits with its result as status.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs f (library calls, fork-safe through its atfork handlers) and leaves with _exit, never returning into the test harness.
    match unsafe { libc::fork() } {
        0 => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
            // SAFETY: ends the forked child at once, without the parent's destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    }
}

fn wait_status(pid: libc::pid_t) -> i32 {
    let mut st = 0;
    // SAFETY: st is a live, writable c_int for the call.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        -1
    }
}

#[test]
fn dead_holder_is_recovered_at_once() {
    for m in REAL {
        let d = tempdir("dead");
        let (dc, mc) = (d.clone(), m);
        // The child locks and exits without unlocking (as if killed).
        let pid = fork_child(move || {
            let mut l = locker(&dc, "x", 0.0, 0.0, mc);
            l.lock().unwrap();
            std::mem::forget(l);
            0
        });
        assert_eq!(wait_status(pid), 0);
        let mut b = locker(&d, "x", 10.0, 0.0, m);
        let t = Instant::now();
        b.lock().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{m:?}");
    }
}

#[test]
fn child_freeing_an_inherited_lock_does_not_release_it() {
    for m in REAL {
        let d = tempdir("fork");
        let mut a = locker(&d, "x", 0.0, 0.0, m);
        a.lock().unwrap();
        let parent_copy = &a;
        let pid = fork_child(|| {
            // The child's own copy of the parent's Locker (memory is copied
            // by fork): unlock is refused and drop leaves the lock alone.
            // SAFETY: in the forked child: a bitwise copy of the child's own copy of the Locker; the original is never used or dropped again (the child leaves by _exit), so nothing is dropped twice.
            let mut a = unsafe { std::ptr::read(parent_copy) };
            let r = a.unlock();
            drop(a);
            if matches!(r, Err(Error::NotLocked(_))) {
                0
            } else {
                1
            }
        });
        assert_eq!(wait_status(pid), 0, "{m:?}");
        let mut b = locker(&d, "x", 0.0, 0.0, m);
        assert!(
            b.lock().is_err(),
            "{m:?}: the child released the parent's lock"
        );
        a.unlock().unwrap();
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let d = tempdir("bad");
    assert!(matches!(
        Locker::new(b"", &d, b"", Timeout::TRY, Expire::Never, Method::Mkdir),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Timeout::from_secs(f64::NAN),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Expire::from_secs(f64::NAN),
        Err(Error::InvalidArgument(_))
    ));
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join("plain");
    std::fs::write(&file, b"x").unwrap();
    let e = Locker::new(b"x", &file, b"", Timeout::TRY, Expire::Never, Method::Mkdir).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
}

#[test]
fn mixing_methods_on_one_name_is_an_error_not_silence() {
    for (a, b) in [
        (Method::Mkdir, Method::OpenCreate),
        (Method::Mkdir, Method::Kernel),
        (Method::OpenCreate, Method::Kernel),
        (Method::Kernel, Method::OpenCreate),
        (Method::OpenCreate, Method::Mkdir),
    ] {
        let d = tempdir("mix");
        let mut first = locker(&d, "x", 0.0, 0.0, a);
        first.lock().unwrap();
        let mut second = locker(&d, "x", 0.0, 0.0, b);
        let r = second.lock();
        assert!(
            matches!(r, Err(Error::Untrusted(_))),
            "{a:?} then {b:?}: {r:?}"
        );
    }
}

#[test]
fn open_locked_same_file_through_other_paths() {
    for m in REAL {
        let d = tempdir("open");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::os::unix::fs::symlink(&d, d.join("link")).unwrap();
        let f1 = locking::open_locked(&d.join("f"), Timeout::TRY, None, Expire::Never, m).unwrap();
        for p in [d.join("sub/../f"), d.join("link/f")] {
            let r = locking::open_locked(&p, Timeout::TRY, None, Expire::Never, m);
            assert!(matches!(r, Err(Error::CannotGetLock { .. })), "{m:?} {p:?}");
        }
        f1.close().unwrap();
        locking::open_locked(&d.join("link/f"), Timeout::TRY, None, Expire::Never, m).unwrap();
    }
}

#[test]
fn holder_reports_who_holds_the_lock() {
    for m in REAL {
        let d = tempdir("holder");
        let mut a = locker(&d, "x", 0.0, 0.0, m);
        let probe = locker(&d, "x", 0.0, 0.0, m);
        assert!(probe.holder().unwrap().is_none(), "{m:?}");
        a.lock().unwrap();
        let h = probe.holder().unwrap().expect("held");
        let rec = h.record.expect("record");
        assert_eq!(rec.owner.pid, std::process::id());
        assert_eq!(rec.method, m.name());
        assert_eq!(h.liveness, locking::Liveness::Alive);
        a.unlock().unwrap();
        assert!(probe.holder().unwrap().is_none(), "{m:?}");
    }
}
