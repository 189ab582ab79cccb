//! The lock directory: created with its parents if missing, opened once as a
//! directory descriptor, and shared by every Locker of the process that uses
//! the same path (so 1,000 Lockers do not cost 1,000 descriptors).

use crate::error::{Error, Result};
use crate::sys;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// An open lock directory.
#[derive(Debug)]
pub struct LockDir {
    fd: OwnedFd,
    path: PathBuf,
    pid: u32,
}

static CACHE: Mutex<Option<HashMap<PathBuf, Weak<LockDir>>>> = Mutex::new(None);

/// Holds the cache's lock across a fork() (see `forksafe.rs`).
pub(crate) fn fork_guard() -> Box<dyn std::any::Any> {
    Box::new(CACHE.lock().unwrap_or_else(|e| e.into_inner()))
}

impl LockDir {
    /// Opens (creating it and its parents if needed) the directory at `path`.
    pub fn open(path: &Path) -> Result<Arc<LockDir>> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidArgument("lockdir is empty".into()));
        }
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidArgument("lockdir contains a NUL byte".into()))?;
        crate::forksafe::ensure();
        let cached = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(path)
            .and_then(Weak::upgrade);
        if let Some(dir) = cached {
            // Still the same directory at that path, in this process?
            if dir.pid == crate::sys::pid() {
                if let (Ok(a), Ok(b)) = (sys::lstatat(libc::AT_FDCWD, &c), sys::fstat(dir.raw())) {
                    if sys::same_inode(&a, &b) {
                        return Ok(dir);
                    }
                }
            }
        }
        // Opened without holding the cache's lock; two threads racing here
        // merely open the directory twice.
        let dir = Arc::new(Self::open_uncached(path, &c)?);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let map = cache.get_or_insert_with(HashMap::new);
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(path.to_path_buf(), Arc::downgrade(&dir));
        Ok(dir)
    }

    fn open_uncached(path: &Path, c: &CString) -> Result<LockDir> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        let fd = match sys::openat(libc::AT_FDCWD, c, flags, 0) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                std::fs::create_dir_all(path).map_err(|e| Error::Io {
                    call: "mkdir",
                    path: path.display().to_string(),
                    source: e,
                })?;
                sys::openat(libc::AT_FDCWD, c, flags, 0)
                    .map_err(|e| Error::os("open", path.display().to_string(), e))?
            }
            Err(e) => return Err(Error::os("open", path.display().to_string(), e)),
        };
        Ok(LockDir {
            fd,
            path: path.to_path_buf(),
            pid: crate::sys::pid(),
        })
    }

    /// The directory descriptor.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One lock entry: a name inside a lock directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The directory.
    pub dir: Arc<LockDir>,
    /// The entry name (see `name.rs`).
    pub name: String,
    /// `name` as a C string.
    pub cname: CString,
}

impl Entry {
    /// The entry `name` in `dir`.
    pub fn new(dir: Arc<LockDir>, name: String) -> Entry {
        let cname = sys::cname(&name);
        Entry { dir, name, cname }
    }

    /// The directory descriptor.
    pub fn dirfd(&self) -> RawFd {
        self.dir.raw()
    }

    /// The full path of the entry, for messages.
    pub fn path(&self) -> String {
        self.dir.path().join(&self.name).display().to_string()
    }

    /// The full path of `sub` (relative to the lock directory), for messages.
    pub fn path_of(&self, sub: &str) -> String {
        self.dir.path().join(sub).display().to_string()
    }

    /// An I/O error for `call` on this entry.
    pub fn err(&self, call: &'static str, errno: i32) -> Error {
        Error::os(call, self.path(), errno)
    }
}
