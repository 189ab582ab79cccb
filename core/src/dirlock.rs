//! `DirLocker`: a lock on a name in a lock directory, with the waiting
//! loop that drives a method's protocol steps (try, judge the holder, break
//! a stale lock, wait for an event), shared holders and fencing tokens.

use crate::backing::{Backing, HolderInfo};
use crate::error::{Error, Result};
use crate::fence::Counter;
use crate::lockdir::{Entry, LockDir};
use crate::method::{self, Attempt, Backend, Holder, Stale};
use crate::name;
use crate::options::{Expire, Method, Mode, Timeout};
use crate::owner::{self, Identity, Liveness, Stamp};
use crate::queue::{self, Place, Ticket};
use crate::shared::{self, Drain, SharedHold};
use crate::wait::{Waiter, Woke};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A cooperative lock on `(lockdir, ns, objname)`.
///
/// Every method but `Fake` excludes every other Locker of the same name,
/// in this thread, other threads and other processes; shared holders
/// ([`Mode::Shared`]) exclude only exclusive ones. Dropping a Locker
/// releases its lock. Locks are not reentrant.
#[derive(Debug)]
pub struct DirLocker {
    display: String,
    entry: Entry,
    expire: Expire,
    method: Method,
    backend: Box<dyn Backend>,
    held: Option<Held>,
    /// Report `LockLost` when the path no longer names the lock directory
    /// (off for open_locked's own choice of directory, which follows the
    /// file, not a path others use).
    watch_dir_path: bool,
    /// This Locker's descriptor on the lock's fencing counter.
    counter: Counter,
}

#[derive(Debug)]
struct Held {
    /// The token of our acquisition of the method's own entry (exclusive),
    /// or of our shared entry.
    token: String,
    /// The process that acquired it: after fork() the child does not hold it.
    pid: u32,
    /// Our shared entry, when held shared.
    shared: Option<SharedHold>,
    /// The fencing token, once drawn (0: not yet).
    fence: AtomicU64,
}

/// What a locker's steps after taking the gate came to.
enum Entered {
    /// The gate is the exclusive lock, now held.
    Exclusive,
    /// Our shared entry and its fencing token; the gate is let go.
    Shared(SharedHold, u64),
    /// The gate was broken under us: start over.
    GateLost,
}

/// How long to wait before looking again at a lock that another party is
/// busy releasing or breaking.
const BUSY_RETRY: Duration = Duration::from_millis(2);

/// A lock younger than this when found busy may be let go at once: look
/// again a few times ([`SPIN_TRIES`], pauses growing by [`SPIN_PAUSE`])
/// before taking a ticket and sleeping until woken.
const SPIN_WINDOW: Duration = Duration::from_millis(1);
const SPIN_TRIES: u32 = 16;
const SPIN_PAUSE: Duration = Duration::from_micros(10);

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

impl DirLocker {
    /// A lock on `objname` in namespace `ns` under `lockdir` (created with
    /// its parents if missing). Does not lock.
    pub fn new(
        objname: &[u8],
        lockdir: &Path,
        ns: &[u8],
        expire: Expire,
        method: Method,
    ) -> Result<DirLocker> {
        if objname.is_empty() {
            return Err(Error::InvalidArgument("objname is empty".into()));
        }
        let dir = LockDir::open(lockdir)?;
        Ok(DirLocker {
            display: name::display_name(ns, objname),
            entry: Entry::new(dir, name::entry_name(ns, objname)),
            expire,
            method,
            backend: method::backend(method),
            held: None,
            watch_dir_path: true,
            counter: Counter::default(),
        })
    }

    /// The method of the party that holds, or last held, `(ns, objname)` in
    /// `lockdir`, read from what is in the lock directory (`None`: nothing
    /// there says). For tools that must not guess, such as `lockrun
    /// --check`; the answer may be out of date at once.
    pub fn detect_method(lockdir: &Path, ns: &[u8], objname: &[u8]) -> Result<Option<Method>> {
        let dir = LockDir::open(lockdir)?;
        let entry = Entry::new(dir, name::entry_name(ns, objname));
        let named = match crate::sys::lstatat(entry.dirfd(), &entry.cname) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Ok(Some(Method::Mkdir));
            }
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
                crate::sys::openat(entry.dirfd(), &entry.cname, flags, 0)
                    .ok()
                    .and_then(|fd| method::read_record(std::os::fd::AsRawFd::as_raw_fd(&fd)))
                    .map(|r| r.method)
            }
            Ok(_) => None,
            Err(libc::ENOENT) => None,
            Err(e) => return Err(entry.err("stat", e)),
        };
        let named = match named {
            Some(m) => Some(m),
            None => shared::any_method(&entry)?,
        };
        Ok(named.and_then(|m| Method::from_name(&m)))
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

    /// The path of the lock entry in the lock directory.
    pub fn entry_path(&self) -> String {
        self.entry.path()
    }

    /// How this Locker holds its lock (in this process), if it does.
    pub fn mode(&self) -> Option<Mode> {
        self.held
            .as_ref()
            .filter(|h| h.pid == crate::sys::pid())
            .map(|h| {
                if h.shared.is_some() {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                }
            })
    }

    /// Drops a lock inherited across fork() without touching it.
    fn forget_inherited(&mut self) {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.pid != crate::sys::pid())
        {
            if let Some(sh) = self.held.take().and_then(|h| h.shared) {
                sh.abandon();
            }
            self.backend.abandon();
        }
    }

    /// Acquires the lock in `mode`, waiting as `timeout` (this call's, not
    /// the Locker's) allows.
    ///
    /// Errors: `LockerFailed` when the timeout ran out, `AlreadyLocked` when
    /// this Locker holds it already (in either mode), `Io`/`Untrusted`/
    /// `InvalidArgument` on failures.
    pub fn acquire(&mut self, mode: Mode, timeout: impl Into<Timeout>) -> Result<()> {
        let timeout = timeout.into();
        self.forget_inherited();
        if self.held.is_some() {
            return Err(Error::AlreadyLocked(self.display.clone()));
        }
        // A deadline past what the clock can hold is no deadline at all.
        let deadline = match timeout {
            Timeout::Forever => None,
            Timeout::After(d) => Instant::now().checked_add(d),
        };
        loop {
            let token = self.take_gate(deadline, timeout, mode == Mode::Shared)?;
            if self.method == Method::Fake {
                self.held = Some(Held::new(token, None, 0));
                return Ok(());
            }
            let done = match mode {
                Mode::Shared => self.enter_shared(&token),
                _ => self.drain_readers(&token, deadline, timeout).map(|ok| {
                    if ok {
                        Entered::Exclusive
                    } else {
                        Entered::GateLost
                    }
                }),
            };
            match done {
                Ok(Entered::Shared(hold, fence)) => {
                    self.held = Some(Held::new(hold.token().to_string(), Some(hold), fence));
                    return Ok(());
                }
                Ok(Entered::Exclusive) => {
                    self.held = Some(Held::new(token, None, 0));
                    return Ok(());
                }
                // The gate was broken under us: start over (a shared
                // locker has let go of it already).
                Ok(Entered::GateLost) => {
                    if mode != Mode::Shared {
                        let _ = self.backend.release(&self.entry, &token);
                    }
                }
                Err(e) => {
                    let _ = self.backend.release(&self.entry, &token);
                    return Err(e);
                }
            }
        }
    }

    fn timed_out(&self, timeout: Timeout) -> Error {
        Error::LockerFailed {
            name: self.display.clone(),
            timeout: timeout.as_secs(),
        }
    }

    /// A shared locker's steps while it holds the gate: its shared entry,
    /// its fencing token, the gate re-checked, the gate let go.
    fn enter_shared(&mut self, gate: &str) -> Result<Entered> {
        let stamp = Stamp::new(self.method.name(), next_token());
        let kernel = self.method == Method::Kernel;
        let Some(hold) = shared::create(&self.entry, &stamp, kernel)? else {
            let _ = self.backend.release(&self.entry, gate);
            return Ok(Entered::GateLost);
        };
        let fence = match self.counter.draw(&self.entry) {
            Ok(t) => t,
            Err(e) => {
                let _ = hold.release();
                return Err(e);
            }
        };
        // Releasing the gate checks it was still ours until that moment
        // (every method's release does): that is the re-check that makes
        // the entry count. If it was lost, our entry may have been made
        // after a writer looked: take it back and start over.
        match self.backend.release(&self.entry, gate) {
            Ok(()) => Ok(Entered::Shared(hold, fence)),
            Err(Error::LockLost(_)) => {
                let _ = hold.release();
                Ok(Entered::GateLost)
            }
            Err(e) => {
                let _ = hold.release();
                Err(e)
            }
        }
    }

    /// An exclusive locker's step while it holds the gate: waits until no
    /// live shared holder is left. `Ok(true)`: the lock is ours;
    /// `Ok(false)`: the gate was lost meanwhile, start over.
    fn drain_readers(
        &mut self,
        gate: &str,
        deadline: Option<Instant>,
        timeout: Timeout,
    ) -> Result<bool> {
        let kernel = self.method == Method::Kernel;
        let mut waiter: Option<Waiter> = None;
        loop {
            let (holder, expires_at) =
                match shared::drain(&self.entry, self.method.name(), kernel, self.expire)? {
                    // Found empty at once: nothing happened since the gate
                    // was taken that a re-check could see, short of a break
                    // by an expire shorter than that instant, which is no
                    // different from a break right after the grant (the
                    // holder learns it at its next check). After a wait, the
                    // gate is checked: a writer stopped while it waited may
                    // have been broken.
                    Drain::Empty if waiter.is_none() => return Ok(true),
                    Drain::Empty => {
                        return match self.backend.check(&self.entry, gate) {
                            Ok(()) => Ok(true),
                            Err(Error::LockLost(_)) => Ok(false),
                            Err(e) => Err(e),
                        };
                    }
                    Drain::Busy { holder, expires_at } => (holder, expires_at),
                };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(self.timed_out(timeout));
            }
            let Some(w) = waiter.as_mut() else {
                // Watch the readers directory, then look once more.
                waiter = shared::watch(&self.entry);
                if waiter.is_none() {
                    waiter = Some(Waiter::polling());
                }
                continue;
            };
            let until = match (deadline, expires_at) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            w.wait(until, holder.as_ref());
            // Keep the gate young while we wait, so that nobody's expire
            // breaks a writer that is only waiting for shared holders.
            match self.backend.refresh(&self.entry, gate) {
                Ok(()) => {}
                Err(Error::LockLost(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the method's own entry (the gate of docs/PROTOCOL.md, "Shared
    /// locks"), waiting until `deadline`: returns the acquisition's token.
    fn take_gate(
        &mut self,
        deadline: Option<Instant>,
        timeout: Timeout,
        shared: bool,
    ) -> Result<String> {
        // Waiting on the entry itself (as the head of the queue).
        let mut waiter: Option<Waiter> = None;
        // Waiting for the queue to move (behind others).
        let mut queue_waiter: Option<(Vec<u8>, Waiter)> = None;
        let mut ticket: Option<Ticket> = None;
        let mut spins = 0u32;
        let result = (|| loop {
            if let Some(t) = &ticket {
                let watched =
                    |who: &Identity| queue_waiter.as_ref().is_some_and(|(_, w)| w.watching(who));
                match t.place(self.expire, watched)? {
                    Place::Head => {}
                    Place::Lost => {
                        // Our ticket was judged stale (we were stopped
                        // longer than someone's expire): queue again.
                        ticket = Some(self.enqueue()?);
                        continue;
                    }
                    Place::Behind {
                        ahead_name,
                        ahead,
                        expires_at,
                    } => {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break Err(self.timed_out(timeout));
                        }
                        if queue_waiter
                            .as_ref()
                            .map_or(true, |(n, _)| *n != ahead_name)
                        {
                            // Watch first, then look again: the ticket ahead
                            // may have gone between our look and the watch.
                            let w = t
                                .watch(&ahead_name, self.entry.dir.shared())
                                .unwrap_or_else(Waiter::polling);
                            queue_waiter = Some((ahead_name, w));
                            continue;
                        }
                        let (_, qw) = queue_waiter.as_mut().expect("set above");
                        let until = match (deadline, expires_at) {
                            (Some(d), Some(e)) => Some(d.min(e)),
                            (d, e) => d.or(e),
                        };
                        qw.wait(until, ahead.as_ref());
                        t.refresh();
                        continue;
                    }
                }
            }
            let record = Stamp::new(self.method.name(), next_token());
            let holder = match self.backend.try_acquire(&self.entry, &record)? {
                // Got it without a ticket: but if others queued before this
                // moment, they came first. Let go and queue behind them.
                // (Looking after the try rather than before makes the
                // arrival of a locker that never queues the moment of this
                // look: whoever drew a ticket earlier has it visible now.)
                Attempt::Acquired
                    if ticket.is_none()
                        && self.method != Method::Fake
                        && queue::occupied(&self.entry)? =>
                {
                    self.backend.release(&self.entry, &record.token)?;
                    ticket = Some(self.enqueue()?);
                    continue;
                }
                Attempt::Acquired => break Ok(record.token),
                Attempt::Retry => continue,
                Attempt::Busy(h) => h,
            };
            if let Some(r) = &holder.record {
                if r.method != self.method.name() {
                    break Err(Error::Untrusted(format!(
                        "{} is locked with method {}, this Locker uses {}: all parties must use the same method",
                        self.entry.path(),
                        r.method,
                        self.method.name()
                    )));
                }
            }
            let (stale, expires_at) = self.judge(&holder, waiter.as_ref());
            let holder_id = holder.record.as_ref().map(|r| r.owner.clone());
            let fresh = holder
                .mtime
                .is_some_and(|m| method::lock_age(m) < SPIN_WINDOW);
            let mut busy_elsewhere = false;
            if let Some(why) = stale {
                crate::testing::before_break();
                if self.backend.break_stale(&self.entry, holder, why)? {
                    continue;
                }
                busy_elsewhere = true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(self.timed_out(timeout));
            }
            // A shared locker that finds the gate taken a moment ago (most
            // often by another shared locker passing it) looks again after a
            // short pause before queueing, so that shared lockers do not
            // line up behind each other. Not a way past the queue: a locker
            // that gets the gate this way still looks at the queue
            // afterwards and lets go if others wait. (Exclusive lockers
            // queue at once: pausing first would let later callers go
            // ahead of them.)
            if shared && ticket.is_none() && fresh && spins < SPIN_TRIES && stale.is_none() {
                spins += 1;
                crate::sys::sleep(SPIN_PAUSE * spins);
                continue;
            }
            let Some(w) = waiter.as_mut() else {
                // First failure: take a ticket (later lockers queue behind
                // us), set up the watch, then look once more so that a
                // release between our try and the watch is not missed.
                if ticket.is_none() {
                    ticket = Some(self.enqueue()?);
                }
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
            let woke = w.wait(until, holder_id.as_ref());
            if let Some(t) = &ticket {
                t.refresh();
            }
            if woke == Woke::HolderExited {
                continue;
            }
        })();
        if waiter.is_some() {
            self.backend.waiting(&self.entry, false);
        }
        if let Some(t) = ticket {
            t.leave(&self.entry);
        }
        result
    }

    fn enqueue(&self) -> Result<Ticket> {
        queue::enqueue(
            &self.entry,
            &self.counter,
            &Stamp::new(self.method.name(), next_token()),
        )
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

    /// Who holds this Locker's name right now (empty: nobody): the
    /// exclusive holder, or every shared holder, read from their owner
    /// records without trying to lock. For introspection (`locker_holder`,
    /// `lockrun --check`); the answer may be out of date at once. (A writer
    /// that holds the gate and waits for shared holders to leave is listed
    /// as the exclusive holder already.)
    pub fn holders(&self) -> Result<Vec<HolderInfo>> {
        let me = owner::identity();
        let mut out = Vec::new();
        if let Some(h) = self.backend.peek(&self.entry)? {
            out.push(HolderInfo {
                mode: Mode::Exclusive,
                liveness: owner::judge(h.record.as_ref(), &me),
                age: shared::age(h.mtime),
                record: h.record,
                extra: Vec::new(),
            });
        }
        if self.method != Method::Fake {
            for r in shared::readers(&self.entry, self.method == Method::Kernel)? {
                out.push(HolderInfo {
                    mode: Mode::Shared,
                    liveness: r.liveness,
                    age: shared::age(r.mtime),
                    record: r.record,
                    extra: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    fn held_here(&self) -> Result<&Held> {
        match &self.held {
            Some(h) if h.pid == crate::sys::pid() => Ok(h),
            _ => Err(Error::NotLocked(self.display.clone())),
        }
    }

    /// The fencing token of the current acquisition (either mode): greater
    /// than the token of every acquisition of this lock granted before it,
    /// in any process (docs/PROTOCOL.md, "Fencing tokens"). Drawn on first
    /// request and then kept; `LockLost` if the lock was broken before it
    /// could be drawn, `NotLocked` if not held.
    pub fn fencing_token(&self) -> Result<u64> {
        let h = self.held_here()?;
        let t = h.fence.load(Ordering::Acquire);
        if t != 0 {
            return Ok(t);
        }
        let t = self.counter.draw(&self.entry)?;
        // Drawn while held, or not at all: a holder broken before it drew
        // learns it here instead of getting a number above the breaker's.
        // (The lock's own check only: a replaced lock directory has a
        // counter of its own, and is reported by `check`.)
        match &h.shared {
            Some(sh) => sh.check()?,
            None => self.backend.check(&self.entry, &h.token)?,
        }
        match h
            .fence
            .compare_exchange(0, t, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(t),
            Err(other) => Ok(other),
        }
    }

    /// Releases the lock. The Locker may lock again afterwards.
    ///
    /// Errors: `NotLocked` when it does not hold the lock (also in a child
    /// after fork()), `LockLost` when another party broke it (the lock is
    /// then no longer held, and the new holder is left alone).
    pub fn unlock(&mut self) -> Result<()> {
        self.forget_inherited();
        self.held_here()?;
        let held = self.held.take().expect("held");
        let released = match &held.shared {
            Some(sh) => sh.release(),
            None => self.backend.release(&self.entry, &held.token),
        };
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
        let h = self.held_here()?;
        match &h.shared {
            Some(sh) => sh.check()?,
            None => self.backend.check(&self.entry, &h.token)?,
        }
        if self.dir_replaced() {
            return Err(self.lost_dir());
        }
        Ok(())
    }

    /// Renews the lock's age so that a long-running holder is not expired.
    /// `LockLost` if it was broken already.
    pub fn refresh(&mut self) -> Result<()> {
        self.forget_inherited();
        self.held_here()?;
        if self.dir_replaced() {
            return Err(self.lost_dir());
        }
        let h = self.held.as_mut().expect("held");
        match &mut h.shared {
            Some(sh) => sh.refresh(),
            None => self.backend.refresh(&self.entry, &h.token),
        }
    }
}

impl Held {
    fn new(token: String, shared: Option<SharedHold>, fence: u64) -> Held {
        Held {
            token,
            pid: crate::sys::pid(),
            shared,
            fence: AtomicU64::new(fence),
        }
    }
}

impl Drop for DirLocker {
    fn drop(&mut self) {
        self.forget_inherited();
        if let Some(h) = self.held.take() {
            match &h.shared {
                Some(sh) => {
                    let _ = sh.release();
                }
                None => {
                    let _ = self.backend.release(&self.entry, &h.token);
                }
            }
        }
    }
}

impl Backing for DirLocker {
    fn method(&self) -> Method {
        self.method
    }
    fn place(&self) -> String {
        self.entry_path()
    }
    fn mode(&self) -> Option<Mode> {
        DirLocker::mode(self)
    }
    fn acquire(&mut self, mode: Mode, timeout: Timeout) -> Result<()> {
        DirLocker::acquire(self, mode, timeout)
    }
    fn unlock(&mut self) -> Result<()> {
        DirLocker::unlock(self)
    }
    fn check(&self) -> Result<()> {
        DirLocker::check(self)
    }
    fn refresh(&mut self) -> Result<()> {
        DirLocker::refresh(self)
    }
    fn fencing_token(&self) -> Result<u64> {
        DirLocker::fencing_token(self)
    }
    fn holders(&self) -> Result<Vec<HolderInfo>> {
        DirLocker::holders(self)
    }
}
