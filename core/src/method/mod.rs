//! The lock methods. Each implements one protocol of docs/PROTOCOL.md behind
//! the [`Backend`] trait; the waiting loop in `locker.rs` drives them.

mod fake;
mod kernel;
mod mkdir;
mod opencreate;

use crate::error::Result;
use crate::lockdir::Entry;
use crate::options::Method;
use crate::owner::{Record, Stamp};
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A snapshot of the party that holds an entry, taken by a failed attempt.
#[derive(Debug)]
pub struct Holder {
    /// Its owner record, if one could be read.
    pub record: Option<Record>,
    /// When its record was last written or refreshed.
    pub mtime: Option<SystemTime>,
    /// What a breaker needs to act on exactly this acquisition.
    pub handle: HolderHandle,
}

/// How a breaker names the acquisition it judged.
#[derive(Debug)]
pub enum HolderHandle {
    /// Nothing to act on (no record file found).
    None,
    /// mkdir: the acquisition token from the `o.<token>` file name.
    Token(String),
    /// opencreate: a descriptor on the judged inode (keeps its number ours).
    Inode(OwnedFd),
    /// kernel: the backend's own descriptor on the lock file.
    OwnFile,
}

/// The outcome of one acquisition attempt.
// `Busy` is much larger than the other variants (a `Holder` carries a
// parsed owner record). Not boxed: an `Attempt` is returned by value once
// per attempt and matched at once, so moving 200-odd bytes costs nothing
// next to the system calls every attempt makes, while a box would cost an
// allocation on every contended attempt, the common case while waiting.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Attempt {
    /// The lock is ours.
    Acquired,
    /// Somebody holds it.
    Busy(Holder),
    /// The entry changed under us (released or broken): try again at once.
    Retry,
}

/// Why a waiter breaks a lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stale {
    /// The holder is dead.
    Dead,
    /// The lock is older than this expire time.
    Expired(Duration),
}

/// One lock method's protocol steps.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// One attempt to acquire `entry` as acquisition `record.token`; never
    /// waits for a holder (waiting is the caller's, so that it can watch
    /// the holder's process and its own deadline).
    fn try_acquire(&mut self, entry: &Entry, record: &Stamp) -> Result<Attempt>;
    /// Releases our acquisition; `Error::LockLost` if it was broken.
    fn release(&mut self, entry: &Entry, token: &str) -> Result<()>;
    /// `Ok` while our acquisition is still the one at the entry.
    fn check(&self, entry: &Entry, token: &str) -> Result<()>;
    /// Renews our acquisition's age.
    fn refresh(&mut self, entry: &Entry, token: &str) -> Result<()>;
    /// Breaks the acquisition `holder` if it is still there and still stale.
    /// `Ok(false)` when nothing was done because another party is busy with
    /// that entry right now (the caller waits a little before looking again).
    fn break_stale(&mut self, entry: &Entry, holder: Holder, why: Stale) -> Result<bool>;
    /// Forgets a held acquisition without touching it (after `fork()`, in
    /// the child).
    fn abandon(&mut self);
    /// inotify events on the lock directory that may mean "try again".
    fn wake_mask(&self) -> u32 {
        libc::IN_DELETE | libc::IN_MOVED_FROM
    }
    /// Called when a wait begins and ends (the kernel method announces its
    /// waiters so a releasing holder wakes them).
    fn waiting(&mut self, _entry: &Entry, _on: bool) {}
    /// Removes leftovers of parties that died mid-acquisition (called now
    /// and then by waiters).
    fn sweep(&self, _entry: &Entry) {}
    /// Who holds the entry now, without trying to acquire it (`None`:
    /// free). For introspection only: the answer may be stale at once.
    fn peek(&self, entry: &Entry) -> Result<Option<Holder>>;
}

/// The backend for a method.
pub fn backend(method: Method) -> Box<dyn Backend> {
    match method {
        Method::Mkdir => Box::new(mkdir::MkdirLock::default()),
        Method::OpenCreate => Box::new(opencreate::OpenCreateLock::default()),
        Method::Fake => Box::new(fake::FakeLock),
        Method::Kernel => Box::new(kernel::KernelLock::default()),
        // Not a lock-directory method: Locker::new gives it a PgLocker.
        Method::Postgres => unreachable!("the postgres method has no lock-directory backend"),
    }
}

/// Reads an owner record from an open file (`None` if unreadable).
pub(crate) fn read_record(fd: std::os::fd::RawFd) -> Option<Record> {
    crate::sys::pread_upto(fd, crate::owner::MAX_RECORD + 1)
        .ok()
        .and_then(|b| Record::parse(&b))
}

/// How much later than its mtime says a lock may have been renewed on a
/// file system that keeps whole seconds only (ext4 with 128-byte inodes,
/// and FAT's two seconds).
const COARSE_MARGIN: Duration = Duration::from_secs(2);

/// The age of a lock whose record was last written or refreshed at
/// `mtime`, never more than it can really be: an mtime with no sub-second
/// part may have been truncated by a file system with coarse timestamps,
/// so the lock may be up to [`COARSE_MARGIN`] younger than it looks, and
/// is taken to be. (A fine-grained mtime that happens to fall on a whole
/// second only makes that one lock expire up to two seconds late.)
pub(crate) fn lock_age(mtime: SystemTime) -> Duration {
    let age = SystemTime::now()
        .duration_since(mtime)
        .unwrap_or(Duration::ZERO);
    let whole_second = mtime
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0);
    if whole_second {
        age.saturating_sub(COARSE_MARGIN)
    } else {
        age
    }
}

/// True when a lock with modification time `mtime` is older than `expire`.
pub(crate) fn older_than(mtime: SystemTime, expire: Duration) -> bool {
    lock_age(mtime) >= expire
}

/// True when the inode described by `st` is the one at the entry now.
pub(crate) fn still_at_entry(entry: &Entry, st: &libc::stat) -> Result<bool> {
    match crate::sys::lstatat(entry.dirfd(), &entry.cname) {
        Ok(now) => Ok(crate::sys::same_inode(&now, st)),
        Err(libc::ENOENT) => Ok(false),
        Err(e) => Err(entry.err("stat", e)),
    }
}

/// Takes a write OFD lock on `[start, start+len)` of `fd`, blocking;
/// a signal does not end the wait.
pub(crate) fn ofd_wait(entry: &Entry, fd: std::os::fd::RawFd, start: i64, len: i64) -> Result<()> {
    loop {
        match crate::sys::ofd_wait(fd, crate::sys::LockKind::Write, start, len) {
            Ok(()) => return Ok(()),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(entry.err("fcntl(F_OFD_SETLKW)", e)),
        }
    }
}
