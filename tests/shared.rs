//! The 0.2 API from Rust: shared locks, per-call timeouts, try-lock,
//! guards, fencing tokens and holders, for every method.

use locking::{Error, Expire, Locker, Method, Mode, Timeout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

const METHODS: [Method; 3] = [Method::Mkdir, Method::OpenCreate, Method::Kernel];

fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "locking-shared-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn locker(dir: &std::path::Path, m: Method) -> Locker {
    Locker::new(b"obj", dir, b"ns", Timeout::TRY, Expire::Never, m).unwrap()
}

#[test]
fn shared_holders_coexist_and_exclude_writers() {
    for m in METHODS {
        let d = tempdir("coexist");
        let mut r1 = locker(&d, m);
        let mut r2 = locker(&d, m);
        let mut w = locker(&d, m);
        r1.acquire(Mode::Shared, Timeout::TRY).unwrap();
        r2.acquire(Mode::Shared, Timeout::TRY).unwrap();
        assert_eq!(r1.mode(), Some(Mode::Shared));
        assert!(!w.try_acquire(Mode::Exclusive).unwrap(), "{m:?}");
        assert!(matches!(
            w.acquire(Mode::Exclusive, Duration::from_millis(50)),
            Err(Error::LockerFailed { .. })
        ));
        let holders = w.holders().unwrap();
        assert_eq!(holders.len(), 2, "{m:?}: {holders:?}");
        assert!(holders.iter().all(|h| h.mode == Mode::Shared));
        r1.unlock().unwrap();
        assert!(!w.try_acquire(Mode::Exclusive).unwrap(), "{m:?}");
        r2.unlock().unwrap();
        assert!(w.try_acquire(Mode::Exclusive).unwrap(), "{m:?}");
        assert!(!r1.try_acquire(Mode::Shared).unwrap(), "{m:?}");
        assert!(matches!(
            w.acquire(Mode::Shared, Timeout::TRY),
            Err(Error::AlreadyLocked(_))
        ));
        w.unlock().unwrap();
        // Nothing left behind but the fencing counter.
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('~'))
            .collect();
        left.sort();
        let kept = if m == Method::Kernel { 2 } else { 1 };
        assert_eq!(left.len(), kept, "{m:?}: {left:?}");
        assert!(left.iter().any(|n| n.ends_with("+f")), "{m:?}: {left:?}");
    }
}

#[test]
fn fencing_tokens_increase_across_lockers_and_modes() {
    for m in [
        Method::Mkdir,
        Method::OpenCreate,
        Method::Kernel,
        Method::Fake,
    ] {
        let d = tempdir("fence");
        let mut a = locker(&d, m);
        let mut b = locker(&d, m);
        assert!(matches!(a.fencing_token(), Err(Error::NotLocked(_))));
        let mut last = 0;
        for i in 0..20 {
            let l = if i % 2 == 0 { &mut a } else { &mut b };
            let mode = if i % 3 == 0 {
                Mode::Shared
            } else {
                Mode::Exclusive
            };
            l.acquire(mode, Timeout::TRY).unwrap();
            let t = l.fencing_token().unwrap();
            assert_eq!(l.fencing_token().unwrap(), t, "stable within one hold");
            assert!(t > last, "{m:?}: {t} after {last}");
            last = t;
            l.unlock().unwrap();
        }
    }
}

#[test]
fn guard_releases_on_drop() {
    for m in METHODS {
        let d = tempdir("guard");
        let mut a = locker(&d, m);
        let mut b = locker(&d, m);
        {
            let g = a.guard().unwrap();
            assert!(g.fencing_token().unwrap() > 0);
            assert!(!b.try_acquire(Mode::Shared).unwrap());
        }
        assert!(b.try_acquire(Mode::Exclusive).unwrap());
        b.unlock().unwrap();
        let g = a.guard().unwrap();
        g.unlock().unwrap();
        assert!(!a.is_locked());
    }
}

#[test]
fn io_error_conversion_keeps_the_kind() {
    let d = tempdir("io");
    let mut a = locker(&d, Method::Kernel);
    let mut b = locker(&d, Method::Kernel);
    a.lock().unwrap();
    let e: std::io::Error = b.lock().unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(!e.to_string().contains("os error"), "{e}");
}

/// Threads mixing shared and exclusive acquisitions: a writer's update is
/// never seen half-done by a reader, and no update is lost.
#[test]
fn threads_mixing_modes_lose_no_update() {
    for m in METHODS {
        let d = tempdir("mix");
        let state = Arc::new(Mutex::new((0u64, 0u64))); // (value, shadow)
        let writes = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (d, state, writes, start) =
                    (d.clone(), state.clone(), writes.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut l =
                        Locker::new(b"obj", &d, b"ns", Timeout::Forever, Expire::Never, m).unwrap();
                    start.wait();
                    for i in 0..40 {
                        if (i + t) % 3 == 0 {
                            l.lock().unwrap();
                            // a read-modify-write in two steps, with a pause
                            let v = state.lock().unwrap().0;
                            state.lock().unwrap().0 = v + 1;
                            std::thread::yield_now();
                            state.lock().unwrap().1 = v + 1;
                            writes.fetch_add(1, Ordering::Relaxed);
                        } else {
                            l.acquire(Mode::Shared, Timeout::Forever).unwrap();
                            let (v, s) = *state.lock().unwrap();
                            assert_eq!(v, s, "{m:?}: a reader saw a write half-done");
                        }
                        l.unlock().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (v, _) = *state.lock().unwrap();
        assert_eq!(v as usize, writes.load(Ordering::Relaxed), "{m:?}");
    }
}

#[test]
fn the_method_of_a_holder_is_detected_from_the_lock_directory() {
    for m in METHODS {
        let d = tempdir("detect");
        assert_eq!(Locker::detect_method(&d, b"ns", b"obj").unwrap(), None);
        let mut l = locker(&d, m);
        l.lock().unwrap();
        assert_eq!(Locker::detect_method(&d, b"ns", b"obj").unwrap(), Some(m));
        l.unlock().unwrap();
        l.acquire(Mode::Shared, Timeout::TRY).unwrap();
        assert_eq!(Locker::detect_method(&d, b"ns", b"obj").unwrap(), Some(m));
        l.unlock().unwrap();
    }
}
