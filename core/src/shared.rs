//! Shared holders (docs/PROTOCOL.md, "Shared locks"; docs/FORMAT.md,
//! "Readers directory").
//!
//! The method's own exclusive entry `E` is the gate: a shared locker takes
//! it for a moment, leaves a shared entry `E+r/r.<token>.<gen>` (a file
//! holding its owner record) and lets the gate go; an exclusive locker
//! takes the gate and, keeping it, waits until `E+r` holds no live shared
//! entry. Nobody creates a shared entry without holding the gate, so a
//! writer that holds it and has seen no live shared entry is alone, and
//! shared lockers that come after a waiting writer queue at the gate
//! behind it.
//!
//! A shared entry's holder is judged like any holder: dead on proof (the
//! kernel method: its file carries an OFD lock, which the kernel drops
//! when the holder's last descriptor closes), or expired by the mtime of
//! the entry. Refreshing renames `r.T.g` to `r.T.g+1`, so a breaker that
//! judged `r.T.g` and acts late removes nothing.

use crate::error::{Error, Result};
use crate::lockdir::Entry;
use crate::method::{lock_age, read_record};
use crate::options::Expire;
use crate::owner::{self, Identity, Liveness, Record, Stamp};
use crate::sys::{self, LockKind};
use crate::wait::Waiter;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The readers directory name of an entry.
pub fn dir_name(entry: &Entry) -> String {
    format!("{}+r", entry.name)
}

fn entry_file(token: &str, gen: u64) -> CString {
    sys::cname(&format!("r.{token}.{gen}"))
}

/// `r.<token>.<gen>` -> (token, gen) for names this library writes.
fn parse_name(name: &[u8]) -> Option<(&str, u64)> {
    let rest = std::str::from_utf8(name.strip_prefix(b"r.")?).ok()?;
    let (token, gen) = rest.rsplit_once('.')?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((token, gen.parse().ok()?))
}

/// One shared acquisition, held.
#[derive(Debug)]
pub struct SharedHold {
    dir: OwnedFd,
    file: OwnedFd,
    token: String,
    gen: u64,
    path: PathBuf,
}

fn lost(path: &Path) -> Error {
    Error::LockLost(format!("{} (shared)", path.display()))
}

fn open_dir(entry: &Entry) -> Result<Option<OwnedFd>> {
    entry.open_side_dir(&dir_name(entry), "readers directory")
}

/// Creates our shared entry. Call only while holding the gate.
/// `Ok(None)`: the readers directory vanished under us (the gate was lost):
/// start over.
pub fn create(entry: &Entry, stamp: &Stamp, kernel: bool) -> Result<Option<SharedHold>> {
    let name = dir_name(entry);
    let dir = match open_dir(entry)? {
        Some(dir) => dir,
        None => {
            match sys::mkdirat(entry.dirfd(), &sys::cname(&name), 0o777) {
                Ok(()) | Err(libc::EEXIST) => {}
                Err(e) => return Err(Error::os("mkdir", entry.path_of(&name), e)),
            }
            let Some(dir) = open_dir(entry)? else {
                return Ok(None);
            };
            dir
        }
    };
    let dfd = dir.as_raw_fd();
    // The marker `m.<method>` says which method the shared holders here
    // use; without it (a new directory, or one whose maker died before
    // writing it) the entries themselves are asked, and the marker made.
    let marker = sys::cname(&format!("m.{}", stamp.method));
    if sys::lstatat(dfd, &marker).is_err() {
        refuse_other_method(entry, dfd, stamp.method)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW;
        match sys::openat(dfd, &marker, flags, 0o666) {
            Ok(_) => {}
            Err(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::os("open", entry.path_of(&name), e)),
        }
    }
    let tmp = sys::cname(&format!("~r.{}", stamp.token));
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let file = match sys::openat(dfd, &tmp, flags, 0o666) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::os("open", entry.path_of(&name), e)),
    };
    let fd = file.as_raw_fd();
    let path = entry.path_of(&name).join(format!("r.{}", stamp.token));
    let setup = (|| {
        if kernel
            && !sys::ofd_try(fd, LockKind::Write, 0, 1)
                .map_err(|e| Error::os("fcntl(F_OFD_SETLK)", path.clone(), e))?
        {
            return Err(Error::os("fcntl(F_OFD_SETLK)", path.clone(), libc::EAGAIN));
        }
        sys::pwrite_all(fd, &stamp.render(), 0).map_err(|e| Error::os("write", path.clone(), e))?;
        match sys::renameat_between(dfd, &tmp, dfd, &entry_file(&stamp.token, 0)) {
            Ok(()) => Ok(true),
            Err(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::os("rename", path.clone(), e)),
        }
    })();
    match setup {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => {
            let _ = sys::unlinkat(dfd, &tmp, 0);
            return Err(e);
        }
    }
    Ok(Some(SharedHold {
        dir,
        file,
        token: stamp.token.clone(),
        gen: 0,
        path,
    }))
}

/// Every shared holder checked, when it joined, that the others use its
/// method (all under the gate): so one entry tells the method of all.
fn refuse_other_method(entry: &Entry, dfd: RawFd, method: &str) -> Result<()> {
    let names =
        sys::list_dir(dfd).map_err(|e| Error::os("readdir", entry.path_of(&dir_name(entry)), e))?;
    for name in names.iter().filter(|n| parse_name(n).is_some()) {
        let Ok(cname) = CString::new(name.clone()) else {
            continue;
        };
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let Ok(fd) = sys::openat(dfd, &cname, flags, 0) else {
            continue; // gone meanwhile: look at the next one
        };
        return match read_record(fd.as_raw_fd()) {
            Some(r) if r.method != method => Err(Error::Untrusted(format!(
                "{} is held shared with method {}, this Locker uses {}: all parties must use the same method",
                entry.path(),
                r.method,
                method
            ))),
            _ => Ok(()),
        };
    }
    Ok(())
}

impl SharedHold {
    /// The acquisition's token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Removes our entry. `LockLost` if it was broken.
    pub fn release(&self) -> Result<()> {
        match sys::unlinkat(self.dir.as_raw_fd(), &entry_file(&self.token, self.gen), 0) {
            Ok(()) => Ok(()),
            Err(libc::ENOENT) => Err(lost(&self.path)),
            Err(e) => Err(Error::os("unlink", self.path.clone(), e)),
        }
    }

    /// `Ok` while our entry is still there.
    pub fn check(&self) -> Result<()> {
        let mine = sys::fstat(self.file.as_raw_fd())
            .map_err(|e| Error::os("fstat", self.path.clone(), e))?;
        match sys::lstatat(self.dir.as_raw_fd(), &entry_file(&self.token, self.gen)) {
            Ok(st) if sys::same_inode(&st, &mine) => Ok(()),
            Ok(_) | Err(libc::ENOENT) => Err(lost(&self.path)),
            Err(e) => Err(Error::os("stat", self.path.clone(), e)),
        }
    }

    /// Renews our entry's age: the rename makes a late breaker's removal
    /// miss, the new mtime restarts the age.
    pub fn refresh(&mut self) -> Result<()> {
        let dfd = self.dir.as_raw_fd();
        let next = self.gen + 1;
        match sys::renameat_between(
            dfd,
            &entry_file(&self.token, self.gen),
            dfd,
            &entry_file(&self.token, next),
        ) {
            Ok(()) => self.gen = next,
            Err(libc::ENOENT) => return Err(lost(&self.path)),
            Err(e) => return Err(Error::os("rename", self.path.clone(), e)),
        }
        sys::futimens_now(self.file.as_raw_fd())
            .map_err(|e| Error::os("futimens", self.path.clone(), e))?;
        self.check()
    }

    /// Forgets the entry without touching it (a child after fork()): only
    /// our copies of the descriptors close; for the kernel method the lock
    /// stays, held by the parent's copy of the same description.
    pub fn abandon(self) {}
}

/// One live shared holder, as seen by a writer or by `holders`.
#[derive(Debug)]
pub struct Reader {
    /// Its owner record, if readable.
    pub record: Option<Record>,
    /// When it was taken or last refreshed.
    pub mtime: Option<SystemTime>,
    /// Whether its holder is alive.
    pub liveness: Liveness,
}

/// What a writer found in the readers directory.
#[derive(Debug)]
pub enum Drain {
    /// No live shared holder: the writer holds the lock.
    Empty,
    /// Live shared holders remain.
    Busy {
        /// One of them, to watch its process.
        holder: Option<Identity>,
        /// When the first of them expires (for the writer's expire).
        expires_at: Option<Instant>,
    },
}

fn judge_file(fd: RawFd, kernel: bool) -> (Option<Record>, Liveness) {
    let record = read_record(fd);
    let by_record = owner::judge(record.as_ref(), &owner::identity());
    if !kernel || by_record == Liveness::Dead {
        return (record, by_record);
    }
    // The kernel method: the holder keeps a write lock on its entry while
    // its lock is held; no lock means it is gone (a child that inherited
    // the descriptor keeps the lock, but then the record shows the holder
    // itself dead).
    let liveness = match sys::ofd_conflict(fd, LockKind::Write, 0, 1) {
        Ok(false) => Liveness::Dead,
        Ok(true) => by_record,
        Err(_) => by_record,
    };
    (record, liveness)
}

/// Visits every shared entry of `entry`: `(name, file, record, liveness,
/// mtime)`.
fn scan(
    entry: &Entry,
    kernel: bool,
    mut f: impl FnMut(RawFd, &[u8], Option<Record>, Liveness, SystemTime) -> Result<()>,
) -> Result<Option<OwnedFd>> {
    let Some(dir) = open_dir(entry)? else {
        return Ok(None);
    };
    let dfd = dir.as_raw_fd();
    let names =
        sys::list_dir(dfd).map_err(|e| Error::os("readdir", entry.path_of(&dir_name(entry)), e))?;
    for name in names {
        if name.starts_with(b"~r.") || name.starts_with(b"m.") {
            continue;
        }
        if parse_name(&name).is_none() {
            return Err(Error::Untrusted(format!(
                "{} holds an entry this library did not make: {:?}",
                entry.path_of(&dir_name(entry)).display(),
                String::from_utf8_lossy(&name)
            )));
        }
        let Ok(cname) = CString::new(name.clone()) else {
            continue;
        };
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let file = match sys::openat(dfd, &cname, flags, 0) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(Error::os("open", entry.path_of(&dir_name(entry)), e)),
        };
        let Ok(st) = sys::fstat(file.as_raw_fd()) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        let (record, liveness) = judge_file(file.as_raw_fd(), kernel);
        f(dfd, &name, record, liveness, sys::mtime(&st))?;
    }
    Ok(Some(dir))
}

/// The writer's step, while it holds the gate: removes dead and expired
/// shared entries (each by the exact name judged) and leftovers of shared
/// lockers that died while creating theirs, and says whether any live one
/// remains. With none left, the readers directory is removed too.
pub fn drain(entry: &Entry, method: &str, kernel: bool, expire: Expire) -> Result<Drain> {
    for _ in 0..1000 {
        let mut holder = None;
        let mut expires_at: Option<Instant> = None;
        let mut live = 0usize;
        let dir = scan(entry, kernel, |dfd, name, record, liveness, mtime| {
            if let Some(r) = &record {
                if r.method != method {
                    return Err(Error::Untrusted(format!(
                        "{} is held shared with method {}, this Locker uses {}: all parties must use the same method",
                        entry.path(),
                        r.method,
                        method
                    )));
                }
            }
            let stale = liveness == Liveness::Dead
                || matches!(expire, Expire::After(e) if lock_age(mtime) >= e);
            if stale {
                crate::testing::before_break();
                let cname = CString::new(name).expect("no NUL in a directory entry");
                let _ = sys::unlinkat(dfd, &cname, 0);
                return Ok(());
            }
            live += 1;
            if holder.is_none() {
                holder = record.map(|r| r.owner);
            }
            if let Expire::After(e) = expire {
                let left = e.saturating_sub(lock_age(mtime));
                let at = Instant::now().checked_add(left);
                expires_at = match (expires_at, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(())
        })?;
        let Some(dir) = dir else {
            return Ok(Drain::Empty);
        };
        if live > 0 {
            return Ok(Drain::Busy { holder, expires_at });
        }
        // Leftovers of shared lockers that died before renaming their entry
        // into place: never holders (they were made under a gate that we
        // hold now).
        for name in sys::list_dir(dir.as_raw_fd()).unwrap_or_default() {
            if name.starts_with(b"~r.") || name.starts_with(b"m.") {
                if let Ok(c) = CString::new(name) {
                    let _ = sys::unlinkat(dir.as_raw_fd(), &c, 0);
                }
            }
        }
        // The proof of "no shared holder": the readers directory removed.
        // A directory listing may miss an entry renamed (refreshed) while
        // it was read; rmdir cannot.
        let dname = sys::cname(&dir_name(entry));
        match sys::unlinkat(entry.dirfd(), &dname, libc::AT_REMOVEDIR) {
            Ok(()) | Err(libc::ENOENT) => return Ok(Drain::Empty),
            Err(libc::ENOTEMPTY) | Err(libc::EEXIST) => continue,
            Err(e) => return Err(Error::os("rmdir", entry.path_of(&dir_name(entry)), e)),
        }
    }
    Err(Error::Untrusted(format!(
        "{} keeps entries that cannot be removed",
        entry.path_of(&dir_name(entry)).display()
    )))
}

/// A wait for shared holders to leave: inotify on the readers directory
/// (`None` when it is gone already or cannot be watched).
pub fn watch(entry: &Entry) -> Option<Waiter> {
    let dir = open_dir(entry).ok()??;
    Waiter::on_dir(
        dir.as_raw_fd(),
        libc::IN_DELETE | libc::IN_MOVED_FROM,
        entry.dir.shared(),
    )
}

/// The method named by the record of one shared holder, if any.
pub fn any_method(entry: &Entry) -> Result<Option<String>> {
    let mut found = None;
    scan(entry, false, |_, _, record, _, _| {
        if found.is_none() {
            found = record.map(|r| r.method);
        }
        Ok(())
    })?;
    Ok(found)
}

/// The live-looking shared holders, for introspection.
pub fn readers(entry: &Entry, kernel: bool) -> Result<Vec<Reader>> {
    let mut out = Vec::new();
    scan(entry, kernel, |_, _, record, liveness, mtime| {
        out.push(Reader {
            record,
            mtime: Some(mtime),
            liveness,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Age for display.
pub fn age(mtime: Option<SystemTime>) -> Option<Duration> {
    mtime.and_then(|m| SystemTime::now().duration_since(m).ok())
}
