//! The opencreate method (docs/PROTOCOL.md, "opencreate"): the lock is a
//! regular file at the entry whose content is the owner record. It appears
//! complete in one step (`linkat` of a prepared file, which never replaces
//! an existing name). Release and break run under an OFD lock on byte 0 of
//! the very inode they remove, after checking it is still the one at the
//! entry; while that guard is held nobody else can remove or replace it.

use super::{
    ofd_wait, older_than, read_record, still_at_entry, Attempt, Backend, Holder, HolderHandle,
    Stale,
};
use crate::error::{Error, Result};
use crate::lockdir::Entry;
use crate::owner::Stamp;
use crate::sys::{self, LockKind};
use std::os::fd::{AsRawFd, OwnedFd};

/// State of one opencreate-method Locker.
#[derive(Debug, Default)]
pub struct OpenCreateLock {
    /// Our lock file, kept open while held so its inode stays ours.
    held: Option<(OwnedFd, libc::stat)>,
    /// The last attempt found the lock held: look before creating a file.
    contended: bool,
}

fn read_holder(entry: &Entry) -> Result<Option<Holder>> {
    // Read-write, since breaking takes a write lock on it; read-only where
    // we may not write it (breaking then fails with a clear EBADF).
    let open = |mode| {
        sys::openat(
            entry.dirfd(),
            &entry.cname,
            mode | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
    };
    let fd = match open(libc::O_RDWR).or_else(|e| {
        if e == libc::EACCES {
            open(libc::O_RDONLY)
        } else {
            Err(e)
        }
    }) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(None),
        Err(libc::ELOOP) | Err(libc::EISDIR) | Err(libc::ENXIO) => return Err(not_a_file(entry)),
        Err(e) => return Err(entry.err("open", e)),
    };
    let st = match sys::fstat(fd.as_raw_fd()) {
        Ok(st) => st,
        // Unlinked while we looked (some FUSE file systems say so here).
        Err(libc::ENOENT) | Err(libc::ESTALE) => return Ok(None),
        Err(e) => return Err(entry.err("fstat", e)),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(not_a_file(entry));
    }
    Ok(Some(Holder {
        record: read_record(fd.as_raw_fd()),
        mtime: Some(sys::mtime(&st)),
        handle: HolderHandle::Inode(fd),
    }))
}

fn not_a_file(entry: &Entry) -> Error {
    Error::Untrusted(format!(
        "lock entry {} exists but is not a regular file: is another party locking this name with another method?",
        entry.path()
    ))
}

/// Creates a file holding `bytes` and links it at the entry. Returns the
/// open file on success, `None` when the entry exists.
fn create_linked(entry: &Entry, bytes: &[u8], token: &str) -> Result<Option<OwnedFd>> {
    let dir = entry.dirfd();
    // Preferred: an unnamed file, so a crash leaves nothing behind.
    match sys::openat(dir, c".", libc::O_TMPFILE | libc::O_RDWR, 0o666) {
        Ok(fd) => {
            sys::pwrite_all(fd.as_raw_fd(), bytes, 0).map_err(|e| entry.err("write", e))?;
            let proc_path = sys::cname(&format!("/proc/self/fd/{}", fd.as_raw_fd()));
            match sys::linkat(
                libc::AT_FDCWD,
                &proc_path,
                dir,
                &entry.cname,
                libc::AT_SYMLINK_FOLLOW,
            ) {
                Ok(()) => return Ok(Some(fd)),
                Err(libc::EEXIST) => return Ok(None),
                Err(libc::ENOENT) => {} // no /proc: fall back below
                Err(e) => return Err(entry.err("linkat", e)),
            }
        }
        Err(libc::EOPNOTSUPP) | Err(libc::EISDIR) | Err(libc::EINVAL) | Err(libc::ENOENT) => {}
        Err(e) => return Err(entry.err("open(O_TMPFILE)", e)),
    }
    // Fallback: a private named file, linked and then unlinked.
    let tmp = format!("~t-{token}");
    let ctmp = sys::cname(&tmp);
    let fd = sys::openat(
        dir,
        &ctmp,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o666,
    )
    .map_err(|e| Error::os("open", entry.path_of(&tmp), e))?;
    let linked = sys::pwrite_all(fd.as_raw_fd(), bytes, 0)
        .map_err(|e| Error::os("write", entry.path_of(&tmp), e))
        .and_then(|()| match sys::linkat(dir, &ctmp, dir, &entry.cname, 0) {
            Ok(()) => Ok(true),
            Err(libc::EEXIST) => Ok(false),
            Err(e) => Err(entry.err("link", e)),
        });
    let _ = sys::unlinkat(dir, &ctmp, 0);
    Ok(if linked? { Some(fd) } else { None })
}

impl Backend for OpenCreateLock {
    fn try_acquire(&mut self, entry: &Entry, record: &Stamp) -> Result<Attempt> {
        // Release and break rely on OFD locks as their guard.
        entry.dir.require_ofd_locks()?;
        if self.contended {
            if let Some(holder) = read_holder(entry)? {
                return Ok(Attempt::Busy(holder));
            }
        }
        match create_linked(entry, &record.render(), &record.token)? {
            Some(fd) => {
                let st = sys::fstat(fd.as_raw_fd()).map_err(|e| entry.err("fstat", e))?;
                self.held = Some((fd, st));
                self.contended = false;
                Ok(Attempt::Acquired)
            }
            None => {
                self.contended = true;
                Ok(read_holder(entry)?.map_or(Attempt::Retry, Attempt::Busy))
            }
        }
    }

    fn release(&mut self, entry: &Entry, _token: &str) -> Result<()> {
        let Some((fd, st)) = &self.held else {
            return Err(Error::NotLocked(entry.path()));
        };
        let fd = fd.as_raw_fd();
        // The removal guard (byte 0): waits out a party removing it now.
        ofd_wait(entry, fd, 0, 1)?;
        let result = match still_at_entry(entry, st) {
            Ok(true) => match sys::unlinkat(entry.dirfd(), &entry.cname, 0) {
                Ok(()) | Err(libc::ENOENT) => Ok(()),
                Err(e) => Err(entry.err("unlink", e)),
            },
            Ok(false) => Err(Error::LockLost(entry.path())),
            Err(e) => Err(e),
        };
        match &result {
            // Still ours after an OS failure: keep it (and drop the guard).
            Err(Error::Io { .. }) => {
                let _ = sys::ofd_try(fd, LockKind::Unlock, 0, 1);
            }
            // Closing the descriptor drops the guard.
            _ => self.held = None,
        }
        result
    }

    fn check(&self, entry: &Entry, _token: &str) -> Result<()> {
        match &self.held {
            Some((_, st)) if still_at_entry(entry, st)? => Ok(()),
            Some(_) => Err(Error::LockLost(entry.path())),
            None => Err(Error::NotLocked(entry.path())),
        }
    }

    fn refresh(&mut self, entry: &Entry, token: &str) -> Result<()> {
        self.check(entry, token)?;
        let (fd, _) = self.held.as_ref().expect("checked");
        sys::futimens_now(fd.as_raw_fd()).map_err(|e| entry.err("futimens", e))
    }

    fn break_stale(&mut self, entry: &Entry, holder: Holder, why: Stale) -> Result<bool> {
        let HolderHandle::Inode(fd) = holder.handle else {
            return Ok(true);
        };
        let fd = fd.as_raw_fd();
        // Someone else (its holder releasing, another breaker) is on it:
        // let them finish and look again.
        if !sys::ofd_try(fd, LockKind::Write, 0, 1)
            .map_err(|e| entry.err("fcntl(F_OFD_SETLK)", e))?
        {
            return Ok(false);
        }
        let st = match sys::fstat(fd) {
            Ok(st) => st,
            // Unlinked meanwhile (some FUSE file systems answer so).
            Err(libc::ENOENT) | Err(libc::ESTALE) => return Ok(true),
            Err(e) => return Err(entry.err("fstat", e)),
        };
        if !still_at_entry(entry, &st)? {
            return Ok(true);
        }
        if let Stale::Expired(expire) = why {
            // Judged from an earlier look; the holder may have refreshed.
            if !older_than(sys::mtime(&st), expire) {
                return Ok(true);
            }
        }
        match sys::unlinkat(entry.dirfd(), &entry.cname, 0) {
            Ok(()) | Err(libc::ENOENT) => Ok(true),
            Err(e) => Err(entry.err("unlink", e)),
        }
    }

    fn abandon(&mut self) {
        // Only our descriptor is closed; the parent's lock file stays.
        self.held = None;
    }

    fn peek(&self, entry: &Entry) -> Result<Option<Holder>> {
        read_holder(entry)
    }
}
