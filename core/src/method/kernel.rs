//! The kernel method (docs/PROTOCOL.md, "kernel"): an open file description
//! lock (`F_OFD_SETLK`) on byte 0 of a lock file that stays in the lock
//! directory. The kernel drops it when the holder's last descriptor closes,
//! so a dead holder never blocks anyone. Byte 1 guards breaking (expire),
//! byte 2 carries waiters' read locks so a releasing holder knows to wake
//! them.

use super::{
    older_than, read_record, still_at_entry, Attempt, Backend, Holder, HolderHandle, Stale,
};
use crate::error::{Error, Result};
use crate::lockdir::Entry;
use crate::owner::{self, Liveness, Stamp};
use crate::sys::{self, LockKind};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Longest wait for a breaker to release byte 1 (its check-and-unlink
/// takes a few system calls; longer means it is stopped).
const GUARD_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Size the owner record is padded to, so rewriting it never needs a
/// truncate.
const RECORD_SIZE: usize = 512;

#[derive(Debug)]
struct LockFile {
    fd: OwnedFd,
    st: libc::stat,
    /// The process that opened it: after fork() the child must not use the
    /// shared open file description (its locks are the parent's).
    pid: u32,
}

/// State of one kernel-method Locker.
#[derive(Debug, Default)]
pub struct KernelLock {
    file: Option<LockFile>,
    waiting: bool,
}

fn fcntl_err(entry: &Entry, e: i32) -> Error {
    entry.err("fcntl(F_OFD_SETLK)", e)
}

fn linked_elsewhere(entry: &Entry) -> Error {
    Error::Untrusted(format!(
        "lock entry {} is a file with other names (hard links): refusing to write an owner record into it",
        entry.path()
    ))
}

fn not_a_file(entry: &Entry) -> Error {
    Error::Untrusted(format!(
        "lock entry {} is not a kernel-method lock file: is another party locking this name with another method?",
        entry.path()
    ))
}

impl KernelLock {
    /// Our lock file at the entry, opened (or created) if needed.
    fn open(&mut self, entry: &Entry) -> Result<RawFd> {
        let me = crate::sys::pid();
        if let Some(f) = &self.file {
            if f.pid == me {
                return Ok(f.fd.as_raw_fd());
            }
            // Inherited across fork(): close our copy only.
            self.file = None;
        }
        entry.dir.require_ofd_locks()?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let mut unlinked = 0;
        let (fd, st) = loop {
            let fd = match sys::openat(entry.dirfd(), &entry.cname, flags, 0o666) {
                Ok(fd) => fd,
                Err(libc::EISDIR) | Err(libc::ELOOP) | Err(libc::ENXIO) => {
                    return Err(not_a_file(entry))
                }
                Err(e) => return Err(entry.err("open", e)),
            };
            let st = sys::fstat(fd.as_raw_fd()).map_err(|e| entry.err("fstat", e))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(not_a_file(entry));
            }
            match st.st_nlink {
                // Broken (unlinked) between our open and fstat: open anew
                // (a file system that always says 0 is not one to trust).
                0 if unlinked < 100 => {
                    unlinked += 1;
                    continue;
                }
                0 => return Err(entry.err("open (the lock file keeps vanishing)", libc::ESTALE)),
                1 => break (fd, st),
                // A name planted beside a file elsewhere: writing our record
                // would overwrite that file.
                _ => return Err(linked_elsewhere(entry)),
            }
        };
        if let Some(rec) = read_record(fd.as_raw_fd()) {
            if rec.method != "kernel" {
                return Err(not_a_file(entry));
            }
        }
        let raw = fd.as_raw_fd();
        if self.waiting {
            let _ = sys::ofd_try(raw, LockKind::Read, 2, 1);
        }
        self.file = Some(LockFile { fd, st, pid: me });
        Ok(raw)
    }

    fn holder(&self, fd: RawFd) -> Holder {
        // A failed fstat (a FUSE file system may answer ENOENT for a file
        // unlinked elsewhere) just leaves the age unknown.
        Holder {
            record: read_record(fd),
            mtime: sys::fstat(fd).ok().map(|st| sys::mtime(&st)),
            handle: HolderHandle::OwnFile,
        }
    }

    fn held_file(&self, entry: &Entry) -> Result<&LockFile> {
        match &self.file {
            Some(f) if f.pid == crate::sys::pid() => Ok(f),
            _ => Err(Error::NotLocked(entry.path())),
        }
    }

    /// Takes byte 1 (the break guard), polling for up to [`GUARD_WAIT`].
    fn wait_guard(&self, entry: &Entry, fd: RawFd) -> Result<bool> {
        let until = std::time::Instant::now() + GUARD_WAIT;
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            if sys::ofd_try(fd, LockKind::Write, 1, 1).map_err(|e| fcntl_err(entry, e))? {
                return Ok(true);
            }
            if std::time::Instant::now() >= until {
                return Ok(false);
            }
            sys::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
    }

    /// The break steps, run while holding byte 1 of our file.
    fn break_guarded(&mut self, entry: &Entry, fd: RawFd, why: Stale) -> Result<bool> {
        let st = self.file.as_ref().expect("open").st;
        if !still_at_entry(entry, &st)? {
            return Ok(true); // already broken: reopen
        }
        if !sys::ofd_conflict(fd, LockKind::Write, 0, 1).map_err(|e| fcntl_err(entry, e))? {
            return Ok(false); // released meanwhile
        }
        let still_stale = match why {
            Stale::Expired(expire) => {
                let now = sys::fstat(fd).map_err(|e| entry.err("fstat", e))?;
                older_than(sys::mtime(&now), expire)
            }
            Stale::Dead => {
                owner::judge(read_record(fd).as_ref(), &owner::identity()) == Liveness::Dead
            }
        };
        if !still_stale {
            return Ok(false);
        }
        match sys::unlinkat(entry.dirfd(), &entry.cname, 0) {
            Ok(()) | Err(libc::ENOENT) => Ok(true),
            Err(e) => Err(entry.err("unlink", e)),
        }
    }
}

impl Backend for KernelLock {
    fn try_acquire(&mut self, entry: &Entry, record: &Stamp) -> Result<Attempt> {
        loop {
            let fd = self.open(entry)?;
            let got = sys::ofd_try(fd, LockKind::Write, 0, 2).map_err(|e| fcntl_err(entry, e))?;
            if !got {
                if !sys::ofd_try(fd, LockKind::Write, 0, 1).map_err(|e| fcntl_err(entry, e))? {
                    let st = self.file.as_ref().expect("open").st;
                    if !still_at_entry(entry, &st)? {
                        // Our file was broken and unlinked: a fresh one may
                        // be free at the entry.
                        self.file = None;
                        continue;
                    }
                    return Ok(Attempt::Busy(self.holder(fd)));
                }
                // Byte 0 is ours but a breaker is looking at byte 1: it
                // finishes in a few steps. Wait for it, but not for a
                // breaker that is stopped or frozen: then let byte 0 go and
                // report the lock busy, so our own timeout still holds.
                if !self.wait_guard(entry, fd)? {
                    sys::ofd_try(fd, LockKind::Unlock, 0, 1).map_err(|e| fcntl_err(entry, e))?;
                    return Ok(Attempt::Busy(self.holder(fd)));
                }
            }
            let st = self.file.as_ref().expect("open").st;
            match sys::lstatat(entry.dirfd(), &entry.cname) {
                Ok(now) if sys::same_inode(&now, &st) && now.st_nlink == 1 => {}
                Ok(now) if sys::same_inode(&now, &st) => {
                    // A hard link was made to it since we opened it.
                    let _ = sys::ofd_try(fd, LockKind::Unlock, 0, 2);
                    self.file = None;
                    return Err(linked_elsewhere(entry));
                }
                // Broken and unlinked while we locked it: start over on the
                // file now at the entry.
                Ok(_) | Err(libc::ENOENT) => {
                    self.file = None;
                    continue;
                }
                Err(e) => return Err(entry.err("stat", e)),
            }
            let mut bytes = record.render();
            if bytes.len() < RECORD_SIZE {
                bytes.resize(RECORD_SIZE, b'\n');
            }
            let written = sys::pwrite_all(fd, &bytes, 0).and_then(|()| {
                if bytes.len() > RECORD_SIZE {
                    sys::ftruncate(fd, bytes.len() as i64)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = written {
                self.file = None;
                return Err(entry.err("write", e));
            }
            if self.waiting {
                let _ = sys::ofd_try(fd, LockKind::Unlock, 2, 1);
                self.waiting = false;
            }
            sys::ofd_try(fd, LockKind::Unlock, 1, 1).map_err(|e| fcntl_err(entry, e))?;
            return Ok(Attempt::Acquired);
        }
    }

    fn release(&mut self, entry: &Entry, _token: &str) -> Result<()> {
        let f = self.held_file(entry)?;
        let fd = f.fd.as_raw_fd();
        let lost = !still_at_entry(entry, &f.st)?;
        sys::ofd_try(fd, LockKind::Unlock, 0, 1).map_err(|e| fcntl_err(entry, e))?;
        if lost {
            self.file = None;
            return Err(Error::LockLost(entry.path()));
        }
        // Ring the doorbell for waiters: a change of times is an IN_ATTRIB
        // event, which record writes (IN_MODIFY) do not cause, so waiters
        // are woken by releases only.
        if sys::ofd_conflict(fd, LockKind::Write, 2, 1).unwrap_or(false) {
            let _ = sys::futimens_now(fd);
        }
        Ok(())
    }

    fn check(&self, entry: &Entry, _token: &str) -> Result<()> {
        let f = self.held_file(entry)?;
        if still_at_entry(entry, &f.st)? {
            Ok(())
        } else {
            Err(Error::LockLost(entry.path()))
        }
    }

    fn refresh(&mut self, entry: &Entry, token: &str) -> Result<()> {
        self.check(entry, token)?;
        let fd = self.held_file(entry)?.fd.as_raw_fd();
        sys::futimens_now(fd).map_err(|e| entry.err("futimens", e))
    }

    fn break_stale(&mut self, entry: &Entry, _holder: Holder, why: Stale) -> Result<bool> {
        let fd = self.open(entry)?;
        if !sys::ofd_try(fd, LockKind::Write, 1, 1).map_err(|e| fcntl_err(entry, e))? {
            return Ok(false); // another breaker, or an acquirer verifying
        }
        let result = self.break_guarded(entry, fd, why);
        match result {
            Ok(true) => self.file = None, // closing drops byte 1 too
            _ => {
                let _ = sys::ofd_try(fd, LockKind::Unlock, 1, 1);
            }
        }
        result.map(|_| true)
    }

    fn abandon(&mut self) {
        // Close our copy only: never F_UNLCK a description shared with the
        // parent.
        self.file = None;
        self.waiting = false;
    }

    fn peek(&self, entry: &Entry) -> Result<Option<Holder>> {
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let fd = match sys::openat(entry.dirfd(), &entry.cname, flags, 0) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => return Ok(None),
            Err(libc::EISDIR) | Err(libc::ELOOP) | Err(libc::ENXIO) => {
                return Err(not_a_file(entry))
            }
            Err(e) => return Err(entry.err("open", e)),
        };
        let locked = sys::ofd_conflict(fd.as_raw_fd(), LockKind::Write, 0, 1)
            .map_err(|e| fcntl_err(entry, e))?;
        if !locked {
            return Ok(None);
        }
        Ok(Some(self.holder(fd.as_raw_fd())))
    }

    fn wake_mask(&self) -> u32 {
        libc::IN_ATTRIB | libc::IN_DELETE | libc::IN_MOVED_FROM
    }

    fn waiting(&mut self, entry: &Entry, on: bool) {
        if on == self.waiting {
            return;
        }
        self.waiting = on;
        if let Some(f) = &self.file {
            let kind = if on { LockKind::Read } else { LockKind::Unlock };
            let _ = sys::ofd_try(f.fd.as_raw_fd(), kind, 2, 1);
        } else if on {
            let _ = self.open(entry);
        }
    }
}
