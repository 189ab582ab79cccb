//! The mkdir method (docs/PROTOCOL.md, "mkdir"): the lock is a directory at
//! the entry holding exactly one file `o.<token>` with the owner record.
//! Acquisition renames a fully prepared private directory into place;
//! release and break both remove `o.<token>` (which only the acquisition
//! `token` has) and then the entry if it is empty. No step ever removes
//! another acquisition's lock.
//!
//! A refresh renames the record file to the next generation,
//! `o.<token>.<n>`, before it renews the file's time. A breaker removes
//! exactly the name it judged, so a holder that refreshed after the breaker
//! looked has moved its record out of the way: the late breaker's unlink
//! finds nothing, and the refreshed lock stays (the re-check is the rename
//! itself, atomic on every file system).
//!
//! Private directories are prepared in `<lockdir>/~tmp/`. A party killed
//! while it had one prepared leaves it behind; waiters sweep `~tmp` now and
//! then and remove those whose owner is dead (see [`MkdirLock::sweep`]).

use super::{read_record, Attempt, Backend, Holder, HolderHandle, Stale};
use crate::error::{Error, Result};
use crate::lockdir::{Entry, TMP_DIR};
use crate::owner::{self, Liveness, Stamp};
use crate::sys;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// State of one mkdir-method Locker.
#[derive(Debug, Default)]
pub struct MkdirLock {
    /// The last attempt found the lock held: look before preparing a
    /// private directory, so a waiter does not churn (or, if killed, leave)
    /// one per attempt.
    contended: bool,
    /// Generation of our held record file (0: `o.<token>`; n: `o.<token>.<n>`).
    gen: u64,
}

/// A leftover private directory with no readable record is removed once it
/// is this old (a live acquirer keeps one for microseconds).
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

fn record_file(suffix: &str) -> CString {
    sys::cname(&format!("o.{suffix}"))
}

/// What follows `o.` in the record file of acquisition `token` at
/// generation `gen`.
fn record_suffix(token: &str, gen: u64) -> String {
    if gen == 0 {
        token.to_string()
    } else {
        format!("{token}.{gen}")
    }
}

fn is_token(s: &[u8]) -> bool {
    s.len() == 32 && s.iter().all(|b| b.is_ascii_hexdigit())
}

/// True for a record file suffix: a token, optionally `.` and a generation.
fn is_record_suffix(s: &[u8]) -> bool {
    match s.get(32) {
        None => is_token(s),
        Some(b'.') => {
            is_token(&s[..32])
                && s.len() > 33
                && s.len() <= 33 + 20
                && s[33..].iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    }
}

/// The entry directory itself, never through a symlink. `Ok(None)` when
/// there is no directory there (gone, or replaced by something else).
fn open_entry(entry: &Entry) -> Result<Option<OwnedFd>> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    match sys::openat(entry.dirfd(), &entry.cname, flags, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(libc::ENOENT) | Err(libc::ENOTDIR) | Err(libc::ELOOP) => Ok(None),
        Err(e) => Err(entry.err("open", e)),
    }
}

/// Removes `o.<suffix>` inside the entry, then the entry if it is empty.
/// `Ok(false)` when `o.<suffix>` was not there (not that acquisition's
/// lock, or not at that generation).
fn remove_acquisition(entry: &Entry, token: &str) -> Result<bool> {
    let Some(efd) = open_entry(entry)? else {
        return Ok(false);
    };
    match sys::unlinkat(efd.as_raw_fd(), &record_file(token), 0) {
        Ok(()) => {}
        Err(libc::ENOENT) => return Ok(false),
        Err(e) => {
            let path = entry.path_of(&format!("{}/o.{token}", entry.name));
            return Err(Error::os("unlink", path, e));
        }
    }
    drop(efd);
    match sys::unlinkat(entry.dirfd(), &entry.cname, libc::AT_REMOVEDIR) {
        // Not empty: a new holder already renamed its lock over ours.
        Ok(()) | Err(libc::ENOENT) | Err(libc::ENOTEMPTY) | Err(libc::EEXIST) => Ok(true),
        Err(e) => Err(entry.err("rmdir", e)),
    }
}

fn discard_tmp(tmpfd: RawFd, tmp: &CStr, token: &str) {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    if let Ok(fd) = sys::openat(tmpfd, tmp, flags, 0) {
        let _ = sys::unlinkat(fd.as_raw_fd(), &record_file(token), 0);
    }
    let _ = sys::unlinkat(tmpfd, tmp, libc::AT_REMOVEDIR);
}

type RecordAndAge = (Option<owner::Record>, Option<std::time::SystemTime>);

/// Reads an owner record file if it is a regular file (never blocking on a
/// FIFO or following a symlink): the record and its mtime.
fn read_record_file(dirfd: RawFd, name: &CStr) -> std::result::Result<RecordAndAge, i32> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let fd = sys::openat(dirfd, name, flags, 0)?;
    let st = sys::fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok((None, None));
    }
    Ok((read_record(fd.as_raw_fd()), Some(sys::mtime(&st))))
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
            .filter(|t| is_record_suffix(t))
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
    let (record, mtime) = match read_record_file(dfd.as_raw_fd(), &record_file(&token)) {
        Ok(found) => found,
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
    Error::Untrusted(format!(
        "lock entry {} exists but is not a directory: is another party locking this name with another method?",
        entry.path()
    ))
}

impl Backend for MkdirLock {
    fn try_acquire(&mut self, entry: &Entry, record: &Stamp) -> Result<Attempt> {
        let token = &record.token;
        if self.contended {
            if let Some(holder) = read_holder(entry)? {
                return Ok(Attempt::Busy(holder));
            }
        }
        let tmp = sys::cname(&format!("t-{token}"));
        let tmp_path = || entry.path_of(&format!("{TMP_DIR}/t-{token}"));
        let mut tmpfd = entry.dir.tmp_dir(false)?;
        if let Err(e) = sys::mkdirat(tmpfd, &tmp, 0o777) {
            if e != libc::ENOENT {
                return Err(Error::os("mkdir", tmp_path(), e));
            }
            // `~tmp` was removed meanwhile: open it afresh.
            tmpfd = entry.dir.tmp_dir(true)?;
            sys::mkdirat(tmpfd, &tmp, 0o777).map_err(|e| Error::os("mkdir", tmp_path(), e))?;
        }
        let written = sys::openat(
            tmpfd,
            &tmp,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .and_then(|dfd| {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            sys::openat(dfd.as_raw_fd(), &record_file(token), flags, 0o666)
        })
        .and_then(|fd| sys::pwrite_all(fd.as_raw_fd(), &record.render(), 0));
        if let Err(e) = written {
            discard_tmp(tmpfd, &tmp, token);
            return Err(Error::os("write", tmp_path(), e));
        }
        match sys::renameat_between(tmpfd, &tmp, entry.dirfd(), &entry.cname) {
            Ok(()) => {
                self.contended = false;
                self.gen = 0;
                Ok(Attempt::Acquired)
            }
            Err(libc::EEXIST) | Err(libc::ENOTEMPTY) => {
                discard_tmp(tmpfd, &tmp, token);
                self.contended = true;
                Ok(read_holder(entry)?.map_or(Attempt::Retry, Attempt::Busy))
            }
            Err(libc::ENOTDIR) | Err(libc::EISDIR) => {
                discard_tmp(tmpfd, &tmp, token);
                Err(not_a_dir(entry))
            }
            Err(e) => {
                discard_tmp(tmpfd, &tmp, token);
                Err(entry.err("rename", e))
            }
        }
    }

    fn release(&mut self, entry: &Entry, token: &str) -> Result<()> {
        if remove_acquisition(entry, &record_suffix(token, self.gen))? {
            Ok(())
        } else {
            Err(Error::LockLost(entry.path()))
        }
    }

    fn check(&self, entry: &Entry, token: &str) -> Result<()> {
        let Some(efd) = open_entry(entry)? else {
            return Err(Error::LockLost(entry.path()));
        };
        match sys::lstatat(
            efd.as_raw_fd(),
            &record_file(&record_suffix(token, self.gen)),
        ) {
            Ok(_) => Ok(()),
            Err(libc::ENOENT) => Err(Error::LockLost(entry.path())),
            Err(e) => Err(entry.err("stat", e)),
        }
    }

    fn refresh(&mut self, entry: &Entry, token: &str) -> Result<()> {
        let Some(efd) = open_entry(entry)? else {
            return Err(Error::LockLost(entry.path()));
        };
        // The rename is the refresh: a breaker that judged the old name
        // stale finds nothing to remove any more.
        let next = self.gen + 1;
        let from = record_file(&record_suffix(token, self.gen));
        let to = record_file(&record_suffix(token, next));
        match sys::renameat_between(efd.as_raw_fd(), &from, efd.as_raw_fd(), &to) {
            Ok(()) => self.gen = next,
            Err(libc::ENOENT) => return Err(Error::LockLost(entry.path())),
            Err(e) => return Err(entry.err("rename", e)),
        }
        match sys::touchat(efd.as_raw_fd(), &to) {
            Ok(()) => Ok(()),
            Err(libc::ENOENT) => Err(Error::LockLost(entry.path())),
            Err(e) => Err(entry.err("utimensat", e)),
        }
    }

    fn break_stale(&mut self, entry: &Entry, holder: Holder, _why: Stale) -> Result<bool> {
        // Removing o.<token>[.<n>] is conditional on the token and the
        // generation judged: if that acquisition left, or refreshed since
        // (renaming its record), this finds nothing and touches nothing.
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
        let Ok(tfd) = entry.dir.tmp_dir(false) else {
            return;
        };
        let me = owner::identity();
        let dflags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        for name in sys::list_dir(tfd).unwrap_or_default() {
            let Some(token) = name.strip_prefix(b"t-").filter(|t| is_token(t)) else {
                continue;
            };
            let token = String::from_utf8_lossy(token).into_owned();
            let sub = sys::cname(&format!("t-{token}"));
            // Never through a symlink planted in ~tmp.
            let Ok(sfd) = sys::openat(tfd, &sub, dflags, 0) else {
                continue;
            };
            let dead = match read_record_file(sfd.as_raw_fd(), &record_file(&token)) {
                Ok((rec, _)) => owner::judge(rec.as_ref(), &me) == Liveness::Dead,
                Err(libc::ENOENT) => sys::fstat(sfd.as_raw_fd())
                    .map(|st| super::older_than(sys::mtime(&st), ORPHAN_AGE))
                    .unwrap_or(false),
                Err(_) => false,
            };
            if dead {
                let _ = sys::unlinkat(sfd.as_raw_fd(), &record_file(&token), 0);
                let _ = sys::unlinkat(tfd, &sub, libc::AT_REMOVEDIR);
            }
        }
    }
}
