//! `open_locked`: open a file read+write with an exclusive cooperative lock.
//!
//! The lock is a Locker with `ns = ""` whose `objname` names the *file*, not
//! the path used to reach it:
//!
//! - on a local file system, `inode:<dev>:<ino>` (the file's device and
//!   inode numbers, decimal), so every name of the file excludes every
//!   other: `./f`, `d/../f`, a symlinked directory, a hard link, a renamed
//!   directory;
//! - on a network or FUSE file system, where inode numbers need not be the
//!   same for every client, the file's canonical path (as the kernel reports
//!   it for the opened file; it always begins with `/`).
//!
//! `lockdir = None` puts the lock in the directory of that canonical path.
//! Hard links in *different* directories therefore exclude each other only
//! when every party passes the same `lockdir`.
//!
//! With the postgres method the lock is always named by the canonical path
//! (the parties may be on different machines, where device and inode
//! numbers mean nothing), and `lockdir`, the connection string, is
//! required.
//!
//! Once the lock is had, the descriptor is checked to still be the file at
//! `path` (the holder it waited for may have deleted or replaced it); if it
//! is not, it is closed and the file at `path` is opened and locked anew.

use crate::error::{Error, Result};
use crate::locker::Locker;
use crate::options::{Expire, Method, Timeout};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A file opened by [`open_locked`]: the lock is held until it is closed or
/// dropped.
#[derive(Debug)]
pub struct LockedFile {
    file: File,
    locker: Locker,
}

impl LockedFile {
    /// The open file (read+write).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The Locker that holds the file's lock.
    pub fn locker(&self) -> &Locker {
        &self.locker
    }

    /// Releases the lock and closes the file; `LockLost` if the lock was
    /// broken meanwhile (the file is closed all the same).
    pub fn close(mut self) -> Result<()> {
        self.locker.unlock()
    }

    /// The file and the Locker holding its lock, to be kept apart (the
    /// lock stays held until the Locker is unlocked or dropped).
    pub fn into_parts(self) -> (File, Locker) {
        (self.file, self.locker)
    }
}

fn io_err(call: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        call,
        hint: None,
        path: path.to_path_buf(),
        source: e,
    }
}

fn canonical(file: &File, path: &Path) -> Result<PathBuf> {
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    match std::fs::read_link(&link) {
        Ok(p) if p.is_absolute() && !p.as_os_str().as_bytes().ends_with(b" (deleted)") => Ok(p),
        _ => std::fs::canonicalize(path).map_err(|e| io_err("realpath", path, e)),
    }
}

/// The lock's objname and default lock directory for an opened file.
fn lock_name(file: &File, path: &Path) -> Result<(Vec<u8>, PathBuf)> {
    let canon = canonical(file, path)?;
    let dir = canon.parent().unwrap_or(Path::new("/")).to_path_buf();
    if crate::sys::shared_file_system(file.as_raw_fd()) {
        return Ok((canon.as_os_str().as_bytes().to_vec(), dir));
    }
    let st = file.metadata().map_err(|e| io_err("fstat", path, e))?;
    Ok((format!("inode:{}:{}", st.dev(), st.ino()).into_bytes(), dir))
}

/// True when `file` is (still) the file at `path`.
fn still_at_path(file: &File, path: &Path) -> Result<bool> {
    let mine = file.metadata().map_err(|e| io_err("fstat", path, e))?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(mine.nlink() > 0 && now.dev() == mine.dev() && now.ino() == mine.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("stat", path, e)),
    }
}

/// Opens `path` read+write (created with mode 0666 & ~umask if missing,
/// close-on-exec, offset 0) and locks it. `lockdir = None` keeps the lock
/// in the file's own directory.
///
/// Errors: `CannotGetLock` when the timeout ran out, `Io` when the file
/// cannot be opened, `InvalidArgument` for bad options.
pub fn open_locked(
    path: &Path,
    timeout: impl Into<Timeout>,
    lockdir: Option<&Path>,
    expire: impl Into<Expire>,
    method: Method,
) -> Result<LockedFile> {
    let timeout: Timeout = timeout.into();
    let expire: Expire = expire.into();
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("filename is empty".into()));
    }
    if method == Method::Postgres && lockdir.is_none() {
        return Err(Error::InvalidArgument(
            "open_locked with the postgres method needs lockdir: the PostgreSQL connection string"
                .into(),
        ));
    }
    let deadline = match timeout {
        Timeout::Forever => None,
        Timeout::After(d) => Instant::now().checked_add(d),
    };
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        let (objname, dir) = if method == Method::Postgres {
            let canon = canonical(&file, path)?;
            (canon.as_os_str().as_bytes().to_vec(), PathBuf::new())
        } else {
            lock_name(&file, path)?
        };
        let dir = lockdir.map_or(dir, Path::to_path_buf);
        // What is left of the caller's timeout (the first round gets it
        // whole; a later round, after the file was replaced, the rest).
        let left = deadline.map_or(Timeout::Forever, |d| {
            Timeout::After(d.saturating_duration_since(Instant::now()))
        });
        let mut locker = Locker::new(&objname, &dir, b"", left, expire, method)?;
        if lockdir.is_none() {
            locker.follow_dir_not_path();
        }
        match locker.lock() {
            Ok(()) => {}
            Err(Error::LockerFailed { .. }) => {
                return Err(Error::CannotGetLock {
                    path: path.display().to_string(),
                    timeout: timeout.as_secs(),
                })
            }
            Err(e) => return Err(e),
        }
        if still_at_path(&file, path)? {
            return Ok(LockedFile { file, locker });
        }
        // The file was deleted or replaced while we waited: the lock we
        // hold is for a file nobody reaches by `path` any more.
        drop(locker);
        if deadline.is_some_and(|d| Instant::now() >= d) && timeout != Timeout::TRY {
            return Err(Error::CannotGetLock {
                path: path.display().to_string(),
                timeout: timeout.as_secs(),
            });
        }
    }
}
