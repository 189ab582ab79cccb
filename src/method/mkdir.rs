//! The mkdir method (docs/PROTOCOL.md, "mkdir"): the lock is a directory at
//! the entry holding exactly one file `o.<token>` with the owner record.
//! Acquisition renames a fully prepared private directory into place;
//! release and break both remove `o.<token>` (which only the acquisition
//! `token` has) and then the entry if it is empty. No step ever removes
//! another acquisition's lock.
//!
//! Private directories are prepared in `<lockdir>/~tmp/`. A party killed
//! while it had one prepared leaves it behind; waiters sweep `~tmp` now and
//! then and remove those whose owner is dead (see [`MkdirLock::sweep`]).

use super::{read_record, Attempt, Backend, Holder, HolderHandle, Stale};
use crate::error::{Error, Result};
use crate::lockdir::Entry;
use crate::owner::{self, Liveness, Stamp};
use crate::sys;
use std::os::fd::AsRawFd;

/// State of one mkdir-method Locker.
#[derive(Debug, Default)]
pub struct MkdirLock {
    /// The last attempt found the lock held: look before preparing a
    /// private directory, so a waiter does not churn (or, if killed, leave)
    /// one per attempt.
    contended: bool,
}

/// The directory, inside the lock directory, where entries are prepared.
const TMP_DIR: &str = "~tmp";

/// A leftover private directory with no readable record is removed once it
/// is this old (a live acquirer keeps one for microseconds).
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

fn record_name(entry: &str, token: &str) -> String {
    format!("{entry}/o.{token}")
}

fn is_token(s: &[u8]) -> bool {
    s.len() == 32 && s.iter().all(|b| b.is_ascii_hexdigit())
}

/// Removes `o.<token>` inside the entry, then the entry if it is empty.
/// `Ok(false)` when `o.<token>` was not there (not that acquisition's lock).
fn remove_acquisition(entry: &Entry, token: &str) -> Result<bool> {
    let rec = sys::cname(&record_name(&entry.name, token));
    match sys::unlinkat(entry.dirfd(), &rec, 0) {
        Ok(()) => {}
        Err(libc::ENOENT) => return Ok(false),
        Err(e) => {
            return Err(Error::os(
                "unlink",
                entry.path_of(&record_name(&entry.name, token)),
                e,
            ))
        }
    }
    match sys::unlinkat(entry.dirfd(), &entry.cname, libc::AT_REMOVEDIR) {
        // Not empty: a new holder already renamed its lock over ours.
        Ok(()) | Err(libc::ENOENT) | Err(libc::ENOTEMPTY) | Err(libc::EEXIST) => Ok(true),
        Err(e) => Err(entry.err("rmdir", e)),
    }
}

fn discard_tmp(entry: &Entry, tmp: &str, token: &str) {
    let _ = sys::unlinkat(entry.dirfd(), &sys::cname(&format!("{tmp}/o.{token}")), 0);
    let _ = sys::unlinkat(entry.dirfd(), &sys::cname(tmp), libc::AT_REMOVEDIR);
}

/// Makes the private directory `~tmp/t-<token>`, creating `~tmp` if needed.
fn make_tmp(entry: &Entry, tmp: &str) -> Result<()> {
    let dir = entry.dirfd();
    let ctmp = sys::cname(tmp);
    match sys::mkdirat(dir, &ctmp, 0o777) {
        Err(libc::ENOENT) => match sys::mkdirat(dir, &sys::cname(TMP_DIR), 0o777) {
            Ok(()) | Err(libc::EEXIST) => sys::mkdirat(dir, &ctmp, 0o777),
            Err(e) => Err(e),
        },
        other => other,
    }
    .map_err(|e| Error::os("mkdir", entry.path_of(tmp), e))
}

/// Reads who holds the entry. `None` when it vanished meanwhile.
fn read_holder(entry: &Entry) -> Result<Option<Holder>> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let dfd = match sys::openat(entry.dirfd(), &entry.cname, flags, 0) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(None),
        Err(libc::ENOTDIR) | Err(libc::ELOOP) => return Err(not_a_dir(entry)),
        Err(e) => return Err(entry.err("open", e)),
    };
    let names = match sys::list_dir(dfd.as_raw_fd()) {
        Ok(n) => n,
        // Removed while we looked (some FUSE file systems say so here).
        Err(libc::ENOENT) | Err(libc::ESTALE) => return Ok(None),
        Err(e) => return Err(entry.err("readdir", e)),
    };
    let token = names.iter().find_map(|n| {
        n.strip_prefix(b"o.")
            .filter(|t| is_token(t))
            .map(|t| String::from_utf8_lossy(t).into_owned())
    });
    let Some(token) = token else {
        if names.is_empty() {
            // Nobody's lock: the next rename replaces it.
            return Ok(None);
        }
        // Foreign content: left alone, never broken.
        return Ok(Some(Holder {
            record: None,
            mtime: None,
            handle: HolderHandle::None,
        }));
    };
    let rname = sys::cname(&format!("o.{token}"));
    let (record, mtime) = match sys::openat(
        dfd.as_raw_fd(),
        &rname,
        libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
    ) {
        Ok(fd) => (
            read_record(fd.as_raw_fd()),
            sys::fstat(fd.as_raw_fd()).ok().map(|s| sys::mtime(&s)),
        ),
        Err(libc::ENOENT) => return Ok(None),
        Err(_) => (None, None),
    };
    Ok(Some(Holder {
        record,
        mtime,
        handle: HolderHandle::Token(token),
    }))
}

fn not_a_dir(entry: &Entry) -> Error {
    Error::InvalidArgument(format!(
        "lock entry {} exists but is not a directory: is another party locking this name with another method?",
        entry.path()
    ))
}

impl Backend for MkdirLock {
    fn try_acquire(&mut self, entry: &Entry, record: &Stamp, _block: bool) -> Result<Attempt> {
        let token = &record.token;
        if self.contended {
            if let Some(holder) = read_holder(entry)? {
                return Ok(Attempt::Busy(holder));
            }
        }
        let tmp = format!("{TMP_DIR}/t-{token}");
        let ctmp = sys::cname(&tmp);
        let dir = entry.dirfd();
        make_tmp(entry, &tmp)?;
        let rec_in_tmp = format!("{tmp}/o.{token}");
        let written = sys::openat(
            dir,
            &sys::cname(&rec_in_tmp),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o666,
        )
        .and_then(|fd| sys::pwrite_all(fd.as_raw_fd(), &record.render(), 0));
        if let Err(e) = written {
            discard_tmp(entry, &tmp, token);
            return Err(Error::os("write", entry.path_of(&rec_in_tmp), e));
        }
        match sys::renameat(dir, &ctmp, &entry.cname) {
            Ok(()) => {
                self.contended = false;
                Ok(Attempt::Acquired)
            }
            Err(libc::EEXIST) | Err(libc::ENOTEMPTY) => {
                discard_tmp(entry, &tmp, token);
                self.contended = true;
                Ok(read_holder(entry)?.map_or(Attempt::Retry, Attempt::Busy))
            }
            Err(libc::ENOTDIR) | Err(libc::EISDIR) => {
                discard_tmp(entry, &tmp, token);
                Err(not_a_dir(entry))
            }
            Err(e) => {
                discard_tmp(entry, &tmp, token);
                Err(entry.err("rename", e))
            }
        }
    }

    fn release(&mut self, entry: &Entry, token: &str) -> Result<()> {
        if remove_acquisition(entry, token)? {
            Ok(())
        } else {
            Err(Error::LockLost(entry.path()))
        }
    }

    fn check(&self, entry: &Entry, token: &str) -> Result<()> {
        match sys::lstatat(entry.dirfd(), &sys::cname(&record_name(&entry.name, token))) {
            Ok(_) => Ok(()),
            Err(libc::ENOENT) | Err(libc::ENOTDIR) => Err(Error::LockLost(entry.path())),
            Err(e) => Err(entry.err("stat", e)),
        }
    }

    fn refresh(&mut self, entry: &Entry, token: &str) -> Result<()> {
        match sys::touchat(entry.dirfd(), &sys::cname(&record_name(&entry.name, token))) {
            Ok(()) => Ok(()),
            Err(libc::ENOENT) | Err(libc::ENOTDIR) => Err(Error::LockLost(entry.path())),
            Err(e) => Err(entry.err("utimensat", e)),
        }
    }

    fn break_stale(&mut self, entry: &Entry, holder: Holder, _why: Stale) -> Result<bool> {
        // Removing o.<token> is conditional on the token: if the judged
        // acquisition already left, this finds nothing and touches nothing.
        if let HolderHandle::Token(token) = &holder.handle {
            remove_acquisition(entry, token)?;
        }
        Ok(true)
    }

    fn abandon(&mut self) {}

    fn peek(&self, entry: &Entry) -> Result<Option<Holder>> {
        read_holder(entry)
    }

    /// Removes private directories left in `~tmp` by parties that died
    /// while they had one prepared: those whose record's owner is dead, and
    /// those with no record that are older than [`ORPHAN_AGE`].
    fn sweep(&self, entry: &Entry) {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let Ok(tmpfd) = sys::openat(entry.dirfd(), &sys::cname(TMP_DIR), flags, 0) else {
            return;
        };
        let tfd = tmpfd.as_raw_fd();
        let me = owner::identity();
        for name in sys::list_dir(tfd).unwrap_or_default() {
            let Some(token) = name.strip_prefix(b"t-").filter(|t| is_token(t)) else {
                continue;
            };
            let token = String::from_utf8_lossy(token).into_owned();
            let sub = sys::cname(&format!("t-{token}"));
            let rec = sys::cname(&format!("t-{token}/o.{token}"));
            let dead = match sys::openat(tfd, &rec, libc::O_RDONLY | libc::O_NOFOLLOW, 0) {
                Ok(fd) => owner::judge(read_record(fd.as_raw_fd()).as_ref(), &me) == Liveness::Dead,
                Err(_) => sys::lstatat(tfd, &sub)
                    .map(|st| super::older_than(sys::mtime(&st), ORPHAN_AGE))
                    .unwrap_or(false),
            };
            if dead {
                let _ = sys::unlinkat(tfd, &rec, 0);
                let _ = sys::unlinkat(tfd, &sub, libc::AT_REMOVEDIR);
            }
        }
    }
}
