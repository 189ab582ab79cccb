//! Issue 9, scenario 7: breaking a stale lock re-checks it at the moment of
//! breaking, for every method.
//!
//! A waiter judges a lock expired from one look at its age, then breaks it.
//! A holder that refreshed in between must survive: the break has to look
//! again, under the same guard as release. The kernel and opencreate
//! methods did; mkdir removed the holder's record anyway (two holders).
//!
//! The interleaving is forced with the library's test hook
//! `locking::testing::set_before_break`, which runs in the waiter after it
//! judged the lock stale and before it breaks it:
//!
//!   1. holder A locks; the test back-dates the lock's age by setting the
//!      mtime of the file holding A's owner record one hour into the past
//!      (mkdir: the `o.*` file in the entry directory; opencreate and
//!      kernel: the entry file);
//!   2. waiter B (expire 1 s, timeout 0) calls lock(): it judges A expired;
//!      the hook calls A.refresh(), so the lock is fresh when B breaks;
//!   3. B must fail with LockerFailed, and A.check() must be Ok.
//!
//! Controls, per method: the hook really runs (a counter), and without the
//! refresh in the hook the same back-dated lock IS broken by B (so the
//! set-up does make B judge the lock expired).
//!
//! The hook is process-wide and tests of one binary run on parallel
//! threads, so everything runs inside one #[test], method after method.

mod support;

use locking::{Error, Expire, Locker, Method, Timeout};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use support::back_date;

/// How many times the before-break hook ran.
static HOOK_RUNS: AtomicUsize = AtomicUsize::new(0);
/// The holder the hook refreshes (None: the hook only counts).
static HOLDER: Mutex<Option<Locker>> = Mutex::new(None);
/// What A.refresh() in the hook returned (as text), for the report.
static REFRESH_RESULTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn before_break() {
    HOOK_RUNS.fetch_add(1, Ordering::SeqCst);
    let mut guard = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = guard.as_mut() {
        let r = a.refresh();
        REFRESH_RESULTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{r:?}"));
    }
}

/// Removes the hook even when a check panics.
struct HookGuard;
impl Drop for HookGuard {
    fn drop(&mut self) {
        locking::testing::set_before_break(None);
    }
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("break_recheck")
        .join(std::process::id().to_string());
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("removing an old scratch dir");
    }
    fs::create_dir_all(&dir).expect("creating the scratch dir");
    dir
}

/// The file whose mtime is the age of A's lock.
fn age_file(a: &Locker, method: Method) -> PathBuf {
    let entry = PathBuf::from(a.entry_path());
    match method {
        Method::Mkdir => {
            let found: Vec<PathBuf> = fs::read_dir(&entry)
                .unwrap_or_else(|e| panic!("listing {}: {e}", entry.display()))
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().as_bytes().starts_with(b"o."))
                .map(|e| e.path())
                .collect();
            assert_eq!(
                found.len(),
                1,
                "expected exactly one o.* record file in {}, found {found:?}",
                entry.display()
            );
            found.into_iter().next().unwrap()
        }
        _ => entry,
    }
}

fn set_holder(a: Option<Locker>) -> Option<Locker> {
    let mut g = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *g, a)
}

/// One round for `method`. `refresh_in_hook`: the real test (A refreshes
/// between B's judgement and B's break) or the control (it does not).
/// Returns a list of failures (empty: passed).
fn round(dir: &Path, method: Method, refresh_in_hook: bool) -> Vec<String> {
    let mname = method.name();
    let what = if refresh_in_hook {
        "refresh between judge and break"
    } else {
        "control: no refresh"
    };
    let mut fails = Vec::new();
    let lockdir = dir.join(format!(
        "{mname}-{}",
        if refresh_in_hook {
            "recheck"
        } else {
            "control"
        }
    ));
    let mut a = Locker::new(b"obj", &lockdir, b"ns", Timeout::TRY, Expire::Never, method)
        .expect("Locker A");
    a.lock().expect("A locks a free lock");
    back_date(&age_file(&a, method));
    let mut b = Locker::new(
        b"obj",
        &lockdir,
        b"ns",
        Timeout::TRY,
        Duration::from_secs(1),
        method,
    )
    .expect("Locker B");

    REFRESH_RESULTS.lock().unwrap().clear();
    let runs_before = HOOK_RUNS.load(Ordering::SeqCst);
    // A is parked where the hook can reach it (the real test only)
    let parked = if refresh_in_hook {
        set_holder(Some(a));
        None
    } else {
        Some(a)
    };
    let b_result = b.lock();
    let runs = HOOK_RUNS.load(Ordering::SeqCst) - runs_before;
    let a = match parked {
        Some(a) => a,
        None => set_holder(None).expect("A back from the hook's slot"),
    };
    let refreshes = REFRESH_RESULTS.lock().unwrap().clone();
    let a_check = a.check();

    let mut check = |ok: bool, msg: String| {
        println!(
            "{} [{mname}] {what}: {msg}",
            if ok { "ok  " } else { "FAIL" }
        );
        if !ok {
            fails.push(format!("[{mname}] {what}: {msg}"));
        }
    };
    check(
        runs >= 1,
        format!("the before-break hook ran in B ({runs} times)"),
    );
    if refresh_in_hook {
        check(
            !refreshes.is_empty() && refreshes.iter().all(|r| r == "Ok(())"),
            format!("A.refresh() in the hook succeeded: {refreshes:?}"),
        );
        check(
            matches!(b_result, Err(Error::LockerFailed { .. })),
            format!(
                "B (expire 1 s, timeout 0) does not get the lock A refreshed \
                 just before B's break: expected LockerFailed, got {b_result:?}"
            ),
        );
        check(
            a_check.is_ok(),
            format!("A still holds its lock: A.check() = {a_check:?}"),
        );
        check(
            !(b_result.is_ok() && a_check.is_ok()),
            "never two holders (A and B both hold)".to_string(),
        );
    } else {
        check(
            b_result.is_ok(),
            format!("B breaks the hour-old lock of A: B.lock() = {b_result:?}"),
        );
        check(
            matches!(a_check, Err(Error::LockLost(_))),
            format!("A's lock was broken: A.check() = {a_check:?}"),
        );
    }
    drop(b);
    drop(a);
    fails
}

#[test]
fn break_rechecks_a_refreshed_lock() {
    let dir = scratch();
    locking::testing::set_before_break(Some(before_break));
    let _guard = HookGuard;
    let mut fails = Vec::new();
    for method in [Method::Mkdir, Method::OpenCreate, Method::Kernel] {
        fails.extend(round(&dir, method, false));
        fails.extend(round(&dir, method, true));
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(
        fails.is_empty(),
        "{} failing checks:\n{}",
        fails.len(),
        fails.join("\n")
    );
}
