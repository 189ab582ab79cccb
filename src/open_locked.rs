//! `open_locked`: open a file read+write with an exclusive cooperative lock.
//!
//! The lock is a Locker with `ns = ""` and `objname` = the file's canonical
//! path (as the kernel reports it for the opened file), so every path that
//! reaches the same file (`./f`, `d/../f`, a symlinked directory) takes the
//! same lock, and a plain Locker on that canonical path is the same lock too.

use crate::error::{Error, Result};
use crate::locker::Locker;
use crate::options::Method;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
}

fn canonical(file: &File, path: &Path) -> Result<PathBuf> {
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    match std::fs::read_link(&link) {
        Ok(p) if p.is_absolute() && !p.as_os_str().as_bytes().ends_with(b" (deleted)") => Ok(p),
        _ => std::fs::canonicalize(path).map_err(|e| Error::Io {
            call: "realpath",
            path: path.display().to_string(),
            source: e,
        }),
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
    timeout: f64,
    lockdir: Option<&Path>,
    expire: f64,
    method: Method,
) -> Result<LockedFile> {
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("filename is empty".into()));
    }
    if timeout.is_nan() || expire.is_nan() {
        return Err(Error::InvalidArgument("timeout or expire is NaN".into()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::Io {
            call: "open",
            path: path.display().to_string(),
            source: e,
        })?;
    let canon = canonical(&file, path)?;
    let dir = match lockdir {
        Some(d) => d.to_path_buf(),
        None => canon.parent().unwrap_or(Path::new("/")).to_path_buf(),
    };
    let mut locker = Locker::new(
        canon.as_os_str().as_bytes(),
        &dir,
        b"",
        timeout,
        expire,
        method,
    )?;
    match locker.lock() {
        Ok(()) => Ok(LockedFile { file, locker }),
        Err(Error::LockerFailed { timeout, .. }) => Err(Error::CannotGetLock {
            path: path.display().to_string(),
            timeout,
        }),
        Err(e) => Err(e),
    }
}
