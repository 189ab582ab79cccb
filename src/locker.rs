//! `Locker`: a lock on a name in a namespace, with the waiting loop that
//! drives a method's protocol steps (try, judge the holder, break a stale
//! lock, wait for an event).

use crate::error::{Error, Result};
use crate::lockdir::{Entry, LockDir};
use crate::method::{self, Attempt, Backend, Holder, Stale};
use crate::name;
use crate::options::{Expire, Method, Timeout};
use crate::owner::{self, Liveness, Record, Stamp};
use crate::wait::{Waiter, Woke};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A cooperative lock on `(lockdir, ns, objname)`.
///
/// Every method but `Fake` excludes every other Locker of the same name,
/// in this thread, other threads and other processes. Dropping a Locker
/// releases its lock. Locks are not reentrant.
#[derive(Debug)]
pub struct Locker {
    display: String,
    entry: Entry,
    timeout: Timeout,
    expire: Expire,
    method: Method,
    backend: Box<dyn Backend>,
    held: Option<Held>,
    /// Report `LockLost` when the path no longer names the lock directory
    /// (off for open_locked's own choice of directory, which follows the
    /// file, not a path others use).
    watch_dir_path: bool,
}

/// What [`Locker::holder`] found out about the party holding a lock.
#[derive(Debug, Clone)]
pub struct HolderInfo {
    /// The holder's owner record, if readable.
    pub record: Option<Record>,
    /// Whether the holder is alive, as judged from here.
    pub liveness: Liveness,
    /// Time since the lock was taken or last refreshed.
    pub age: Option<Duration>,
}

#[derive(Debug)]
struct Held {
    token: String,
    /// The process that acquired it: after fork() the child does not hold it.
    pid: u32,
}

/// How long to wait before looking again at a lock that another party is
/// busy releasing or breaking.
const BUSY_RETRY: Duration = Duration::from_millis(2);

/// Waiters sweep leftovers of dead parties at most this often per process.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// When the last sweep began, in milliseconds of CLOCK_MONOTONIC.
static LAST_SWEEP_MS: AtomicU64 = AtomicU64::new(0);

fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is writable.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn sweep_due() -> bool {
    let now = monotonic_ms();
    let last = LAST_SWEEP_MS.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
        return false;
    }
    LAST_SWEEP_MS
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

/// The per-process random half of tokens, and the PID it was drawn for.
static TOKEN_BASE: AtomicU64 = AtomicU64::new(0);
static TOKEN_PID: AtomicU32 = AtomicU32::new(0);
static TOKEN_COUNT: AtomicU64 = AtomicU64::new(0);

/// A fresh acquisition token: a random 64-bit half drawn once per process
/// (drawn again after fork) and a process-wide counter. Unique without a
/// system call per lock, and lock-free (so fork() can never catch it
/// half-done).
fn next_token() -> String {
    let pid = crate::sys::pid();
    if TOKEN_PID.load(Ordering::Acquire) != pid {
        let r = crate::sys::random16();
        TOKEN_BASE.store(
            u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
            Ordering::Relaxed,
        );
        TOKEN_PID.store(pid, Ordering::Release);
    }
    let base = TOKEN_BASE.load(Ordering::Relaxed);
    let n = TOKEN_COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{base:016x}{n:016x}")
}

impl Locker {
    /// A Locker for `objname` in namespace `ns` under `lockdir` (created
    /// with its parents if missing). Does not lock.
    ///
    /// `timeout`: `< 0` waits forever, `0` tries once, `> 0` waits at most
    /// about that many seconds. `expire`: `<= 0` never breaks a live
    /// holder's lock; `> 0` lets a waiter break a lock older than that.
    pub fn new(
        objname: &[u8],
        lockdir: &Path,
        ns: &[u8],
        timeout: f64,
        expire: f64,
        method: Method,
    ) -> Result<Locker> {
        if objname.is_empty() {
            return Err(Error::InvalidArgument("objname is empty".into()));
        }
        let timeout = Timeout::from_secs(timeout)?;
        let expire = Expire::from_secs(expire)?;
        let dir = LockDir::open(lockdir)?;
        Ok(Locker {
            display: name::display_name(ns, objname),
            entry: Entry::new(dir, name::entry_name(ns, objname)),
            timeout,
            expire,
            method,
            backend: method::backend(method),
            held: None,
            watch_dir_path: true,
        })
    }

    /// Stops reporting `LockLost` when the lock directory's path comes to
    /// name another directory (for `open_locked` with the file's own
    /// directory: parties find that directory through the file, so a
    /// rename of it loses nothing).
    pub(crate) fn follow_dir_not_path(&mut self) {
        self.watch_dir_path = false;
    }

    fn dir_replaced(&self) -> bool {
        self.watch_dir_path && self.entry.dir.replaced()
    }

    /// The method this Locker uses.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The path of the lock entry in the lock directory.
    pub fn entry_path(&self) -> String {
        self.entry.path()
    }

    /// True while this Locker holds its lock (in this process).
    pub fn is_locked(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| h.pid == crate::sys::pid())
    }

    /// Drops a lock inherited across fork() without touching it.
    fn forget_inherited(&mut self) {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.pid != crate::sys::pid())
        {
            self.held = None;
            self.backend.abandon();
        }
    }

    /// Acquires the lock, waiting as the timeout allows.
    ///
    /// Errors: `LockerFailed` when the timeout ran out, `AlreadyLocked` when
    /// this Locker holds it already, `Io`/`InvalidArgument` on failures.
    pub fn lock(&mut self) -> Result<()> {
        self.forget_inherited();
        if self.held.is_some() {
            return Err(Error::AlreadyLocked(self.display.clone()));
        }
        // A deadline past what the clock can hold is no deadline at all.
        let deadline = match self.timeout {
            Timeout::Forever => None,
            Timeout::After(d) => Instant::now().checked_add(d),
        };
        let mut waiter: Option<Waiter> = None;
        let result = loop {
            let record = Stamp::new(self.method.name(), next_token());
            let attempt = match self.backend.try_acquire(&self.entry, &record) {
                Ok(a) => a,
                Err(e) => break Err(e),
            };
            let holder = match attempt {
                Attempt::Acquired => {
                    self.held = Some(Held {
                        token: record.token,
                        pid: crate::sys::pid(),
                    });
                    break Ok(());
                }
                Attempt::Retry => continue,
                Attempt::Busy(h) => h,
            };
            if let Some(r) = &holder.record {
                if r.method != self.method.name() {
                    break Err(Error::InvalidArgument(format!(
                        "{} is locked with method {}, this Locker uses {}: all parties must use the same method",
                        self.entry.path(),
                        r.method,
                        self.method.name()
                    )));
                }
            }
            let (stale, expires_at) = self.judge(&holder, waiter.as_ref());
            let holder_id = holder.record.as_ref().map(|r| r.owner.clone());
            let mut busy_elsewhere = false;
            if let Some(why) = stale {
                crate::testing::before_break();
                match self.backend.break_stale(&self.entry, holder, why) {
                    Ok(true) => continue,
                    Ok(false) => busy_elsewhere = true,
                    Err(e) => break Err(e),
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(Error::LockerFailed {
                    name: self.display.clone(),
                    timeout: self.timeout.as_secs(),
                });
            }
            let Some(w) = waiter.as_mut() else {
                // First failure: set up the watch, then try once more so
                // that a release between our try and the watch is not missed.
                waiter = Some(Waiter::new(&self.entry, self.backend.wake_mask()));
                self.backend.waiting(&self.entry, true);
                if sweep_due() {
                    self.backend.sweep(&self.entry);
                }
                continue;
            };
            // Somebody else is releasing or breaking this very lock: look
            // again shortly rather than spin.
            let expires_at = if busy_elsewhere {
                Some(Instant::now() + BUSY_RETRY)
            } else {
                expires_at
            };
            let until = match (deadline, expires_at) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            if w.wait(until, holder_id.as_ref()) == Woke::HolderExited {
                continue;
            }
        };
        if waiter.is_some() {
            self.backend.waiting(&self.entry, false);
        }
        result
    }

    /// Decides whether `holder` may be broken now, and if not, when its
    /// lock will expire.
    fn judge(&self, holder: &Holder, waiter: Option<&Waiter>) -> (Option<Stale>, Option<Instant>) {
        let known_alive = match (&holder.record, waiter) {
            (Some(r), Some(w)) => w.watching(&r.owner),
            _ => false,
        };
        if !known_alive
            && owner::judge(holder.record.as_ref(), &owner::identity()) == Liveness::Dead
        {
            return (Some(Stale::Dead), None);
        }
        let (Expire::After(expire), Some(mtime)) = (self.expire, holder.mtime) else {
            return (None, None);
        };
        let age = method::lock_age(mtime);
        if age >= expire {
            (Some(Stale::Expired(expire)), None)
        } else {
            (None, Instant::now().checked_add(expire - age))
        }
    }

    /// Who holds this Locker's name right now (`None`: nobody), read from
    /// the owner record without trying to lock. For introspection (e.g.
    /// `lockrun --check`); the answer may be out of date at once.
    pub fn holder(&self) -> Result<Option<HolderInfo>> {
        let Some(h) = self.backend.peek(&self.entry)? else {
            return Ok(None);
        };
        let liveness = owner::judge(h.record.as_ref(), &owner::identity());
        let age = h
            .mtime
            .and_then(|m| SystemTime::now().duration_since(m).ok());
        Ok(Some(HolderInfo {
            record: h.record,
            liveness,
            age,
        }))
    }

    fn held_token(&mut self) -> Result<String> {
        self.forget_inherited();
        match &self.held {
            Some(h) => Ok(h.token.clone()),
            None => Err(Error::NotLocked(self.display.clone())),
        }
    }

    /// Releases the lock. The Locker may lock again afterwards.
    ///
    /// Errors: `NotLocked` when it does not hold the lock (also in a child
    /// after fork()), `LockLost` when another party broke it (the lock is
    /// then no longer held, and the new holder is left alone).
    pub fn unlock(&mut self) -> Result<()> {
        self.held_token()?;
        let held = self.held.take().expect("held");
        let released = self.backend.release(&self.entry, &held.token);
        if self.dir_replaced() {
            // Whatever was left in the old directory is gone with it; others
            // lock in the directory now at the path.
            return Err(self.lost_dir());
        }
        match released {
            // An OS failure (a read-only or vanished file system, ...) left
            // the lock in place: it is still ours, to unlock again or to
            // release on drop; forgetting it would strand it.
            Err(e @ Error::Io { .. }) => {
                self.held = Some(held);
                Err(e)
            }
            other => other,
        }
    }

    /// `LockLost` for a lock whose directory was renamed away or replaced.
    fn lost_dir(&self) -> Error {
        Error::LockLost(format!(
            "{} (the lock directory {} was renamed, removed or replaced)",
            self.entry.path(),
            self.entry.dir.path().display()
        ))
    }

    /// `Ok` while this Locker still holds its lock; `LockLost` if it was
    /// broken, or its lock directory is no longer the one at its path;
    /// `NotLocked` if it does not hold it.
    pub fn check(&self) -> Result<()> {
        match &self.held {
            Some(h) if h.pid == crate::sys::pid() => {
                self.backend.check(&self.entry, &h.token)?;
                if self.dir_replaced() {
                    return Err(self.lost_dir());
                }
                Ok(())
            }
            _ => Err(Error::NotLocked(self.display.clone())),
        }
    }

    /// Renews the lock's age so that a long-running holder is not expired.
    /// `LockLost` if it was broken already.
    pub fn refresh(&mut self) -> Result<()> {
        let token = self.held_token()?;
        if self.dir_replaced() {
            return Err(self.lost_dir());
        }
        self.backend.refresh(&self.entry, &token)
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        self.forget_inherited();
        if let Some(h) = self.held.take() {
            let _ = self.backend.release(&self.entry, &h.token);
        }
    }
}
