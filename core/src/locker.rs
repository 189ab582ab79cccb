//! `Locker`: the public lock on a name, in a lock directory (the mkdir,
//! opencreate, kernel and fake methods, `dirlock.rs`) or in a lock service
//! (the postgres method, `pg/`).
//! It checks what every method shares (one acquisition at a time, the
//! Locker's own timeout) and hands the rest to its `Backing`.

use crate::backing::{Backing, HolderInfo};
use crate::dirlock::DirLocker;
use crate::error::{Error, Result};
use crate::options::{Expire, Method, Mode, Timeout};
use crate::pg::PgLocker;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A cooperative lock on `(lockdir, ns, objname)`.
///
/// Every method but `Fake` excludes every other Locker of the same name,
/// in this thread, other threads and other processes; shared holders
/// ([`Mode::Shared`]) exclude only exclusive ones. Dropping a Locker
/// releases its lock. Locks are not reentrant.
#[derive(Debug)]
pub struct Locker {
    timeout: Timeout,
    imp: Imp,
}

#[derive(Debug)]
enum Imp {
    Dir(DirLocker),
    Pg(PgLocker),
}

impl Locker {
    /// A Locker for `objname` in namespace `ns` under `lockdir` (created
    /// with its parents if missing). Does not lock.
    ///
    /// `timeout` ([`Timeout`], a `Duration`, or `Option<Duration>` with
    /// `None` for forever) is how long [`Locker::lock`] waits; `expire`
    /// ([`Expire`], a `Duration`, zero or `None` for never) lets this
    /// Locker's waits break a lock older than that.
    ///
    /// With [`Method::Postgres`], `lockdir` is a libpq connection string
    /// (its bytes, e.g. `Path::new("postgresql://db.example/app")`), the
    /// Locker connects at once (within `timeout`, but at least 2 s and at
    /// most 30 s), and `expire` is how long the server keeps the
    /// session of a holder that stops talking to it.
    /// `Unsupported` when the server cannot be reached or refuses, or libpq
    /// (`libpq.so.5`) cannot be loaded.
    pub fn new(
        objname: &[u8],
        lockdir: &Path,
        ns: &[u8],
        timeout: impl Into<Timeout>,
        expire: impl Into<Expire>,
        method: Method,
    ) -> Result<Locker> {
        let timeout = timeout.into();
        let expire = expire.into();
        let imp = if method == Method::Postgres {
            let conninfo = lockdir.as_os_str().as_bytes();
            Imp::Pg(PgLocker::new(objname, conninfo, ns, timeout, expire)?)
        } else {
            Imp::Dir(DirLocker::new(objname, lockdir, ns, expire, method)?)
        };
        Ok(Locker { timeout, imp })
    }

    fn backing(&self) -> &dyn Backing {
        match &self.imp {
            Imp::Dir(d) => d,
            Imp::Pg(p) => p,
        }
    }

    fn backing_mut(&mut self) -> &mut dyn Backing {
        match &mut self.imp {
            Imp::Dir(d) => d,
            Imp::Pg(p) => p,
        }
    }

    /// The method of the party that holds, or last held, `(ns, objname)` in
    /// `lockdir`, read from what is in the lock directory (`None`: nothing
    /// there says). For tools that must not guess, such as `lockrun
    /// --check`; the answer may be out of date at once.
    pub fn detect_method(lockdir: &Path, ns: &[u8], objname: &[u8]) -> Result<Option<Method>> {
        DirLocker::detect_method(lockdir, ns, objname)
    }

    /// Stops reporting `LockLost` when the lock directory's path comes to
    /// name another directory (open_locked with the file's own directory).
    pub(crate) fn follow_dir_not_path(&mut self) {
        match &mut self.imp {
            Imp::Dir(d) => d.follow_dir_not_path(),
            // The lock lives in a server: no directory to follow.
            Imp::Pg(_) => {}
        }
    }

    /// The method this Locker uses.
    pub fn method(&self) -> Method {
        self.backing().method()
    }

    /// Where the lock lives (the lock entry's path), for messages.
    pub fn entry_path(&self) -> String {
        self.backing().place()
    }

    /// How this Locker holds its lock (in this process), if it does.
    pub fn mode(&self) -> Option<Mode> {
        self.backing().mode()
    }

    /// True while this Locker holds its lock (in this process).
    pub fn is_locked(&self) -> bool {
        self.mode().is_some()
    }

    /// Acquires the lock exclusively, waiting as the Locker's timeout
    /// allows: `acquire(Mode::Exclusive, <the Locker's timeout>)`.
    ///
    /// Errors: `LockerFailed` when the timeout ran out, `AlreadyLocked` when
    /// this Locker holds it already, `Io`/`Untrusted`/`InvalidArgument` on
    /// failures.
    pub fn lock(&mut self) -> Result<()> {
        self.acquire(Mode::Exclusive, self.timeout)
    }

    /// Acquires the lock exclusively and returns a guard that releases it
    /// when dropped (use [`Guard::unlock`] to see the release's result).
    pub fn guard(&mut self) -> Result<Guard<'_>> {
        self.lock()?;
        Ok(Guard { locker: self })
    }

    /// Tries once, without waiting: `Ok(false)` when the lock is busy.
    pub fn try_acquire(&mut self, mode: Mode) -> Result<bool> {
        match self.acquire(mode, Timeout::TRY) {
            Ok(()) => Ok(true),
            Err(Error::LockerFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Acquires the lock in `mode`, waiting as `timeout` (this call's, not
    /// the Locker's) allows.
    ///
    /// Errors: `LockerFailed` when the timeout ran out, `AlreadyLocked` when
    /// this Locker holds it already (in either mode), `Io`/`Untrusted`/
    /// `InvalidArgument` on failures.
    pub fn acquire(&mut self, mode: Mode, timeout: impl Into<Timeout>) -> Result<()> {
        self.backing_mut().acquire(mode, timeout.into())
    }

    /// Who holds this Locker's name right now (empty: nobody): the
    /// exclusive holder, or every shared holder, without trying to lock.
    /// For introspection (`locker_holder`, `lockrun --check`); the answer
    /// may be out of date at once. (A writer that holds the gate and waits
    /// for shared holders to leave is listed as the exclusive holder
    /// already.)
    pub fn holders(&self) -> Result<Vec<HolderInfo>> {
        self.backing().holders()
    }

    /// The first of [`Locker::holders`], if any.
    pub fn holder(&self) -> Result<Option<HolderInfo>> {
        Ok(self.holders()?.into_iter().next())
    }

    /// The fencing token of the current acquisition (either mode): greater
    /// than the token of every acquisition of this lock granted before it,
    /// in any process (docs/PROTOCOL.md, "Fencing tokens"). The same value
    /// for every call during one acquisition; `LockLost` if the lock was
    /// broken before it could be drawn, `NotLocked` if not held.
    pub fn fencing_token(&self) -> Result<u64> {
        self.backing().fencing_token()
    }

    /// Releases the lock. The Locker may lock again afterwards.
    ///
    /// Errors: `NotLocked` when it does not hold the lock (also in a child
    /// after fork()), `LockLost` when another party broke it (the lock is
    /// then no longer held, and the new holder is left alone).
    pub fn unlock(&mut self) -> Result<()> {
        self.backing_mut().unlock()
    }

    /// `Ok` while this Locker still holds its lock; `LockLost` if it was
    /// broken, or its lock directory is no longer the one at its path;
    /// `NotLocked` if it does not hold it.
    pub fn check(&self) -> Result<()> {
        self.backing().check()
    }

    /// Renews the lock's age so that a long-running holder is not expired.
    /// `LockLost` if it was broken already.
    pub fn refresh(&mut self) -> Result<()> {
        self.backing_mut().refresh()
    }
}

/// An exclusive hold that ends when dropped (from [`Locker::guard`]).
#[derive(Debug)]
pub struct Guard<'a> {
    locker: &'a mut Locker,
}

impl Guard<'_> {
    /// The fencing token of this hold.
    pub fn fencing_token(&self) -> Result<u64> {
        self.locker.fencing_token()
    }

    /// `Ok` while the lock is still held (see [`Locker::check`]).
    pub fn check(&self) -> Result<()> {
        self.locker.check()
    }

    /// Renews the lock's age (see [`Locker::refresh`]).
    pub fn refresh(&mut self) -> Result<()> {
        self.locker.refresh()
    }

    /// Releases now, reporting what the release found (`LockLost`, ...).
    pub fn unlock(self) -> Result<()> {
        let mut me = std::mem::ManuallyDrop::new(self);
        me.locker.unlock()
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.locker.unlock();
    }
}
