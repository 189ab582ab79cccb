//! The lock directory: created with its parents if missing, opened once as a
//! directory descriptor, and shared by every Locker of the process that uses
//! the same path (so 1,000 Lockers do not cost 1,000 descriptors).

use crate::error::{Error, Result};
use crate::forksafe::ForkMutex;
use crate::sys;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Weak};

/// An open lock directory.
#[derive(Debug)]
pub struct LockDir {
    fd: OwnedFd,
    path: PathBuf,
    pid: u32,
    /// Whether the file system enforces OFD locks between descriptors:
    /// 0 not probed yet, 1 yes, 2 no.
    ofd: AtomicU8,
    /// The directory's device and inode when it was opened.
    id: (u64, u64),
    /// On a network, cluster or FUSE file system: changes made through
    /// other mounts or machines raise no inotify event here.
    shared: bool,
    /// Descriptor of the `~tmp` subdirectory (mkdir method), or -1. Once
    /// set, the number never changes while the LockDir lives: a `~tmp`
    /// removed meanwhile is replaced under the same number (`dup3`), so no
    /// thread can ever use a number that was closed and reused elsewhere.
    tmp: AtomicI32,
}

impl Drop for LockDir {
    fn drop(&mut self) {
        let fd = self.tmp.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: a descriptor this LockDir opened and owns; nobody
            // else can use it any more.
            unsafe { libc::close(fd) };
        }
    }
}

/// The subdirectory where the mkdir method prepares entries.
pub const TMP_DIR: &str = "~tmp";

static CACHE: ForkMutex<Option<HashMap<PathBuf, Weak<LockDir>>>> = ForkMutex::new(None);

/// `path` made absolute against the current directory (as given when
/// that cannot be read, e.g. a removed cwd): a later chdir() must neither
/// make a lock directory look replaced nor let a relative path find the
/// directory of another cwd.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
}

impl LockDir {
    /// Opens (creating it and its parents if needed) the directory at `path`.
    pub fn open(path: &Path) -> Result<Arc<LockDir>> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidArgument("lockdir is empty".into()));
        }
        if path.as_os_str().as_bytes().contains(&0) {
            return Err(Error::InvalidArgument("lockdir contains a NUL byte".into()));
        }
        crate::forksafe::ensure();
        // The cache is keyed by the absolute path, so that a relative path
        // after a chdir() never finds the directory of the old cwd.
        let abs = absolute(path);
        let path = abs.as_path();
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidArgument("lockdir contains a NUL byte".into()))?;
        let cached = CACHE
            .lock()
            .get_or_insert_with(HashMap::new)
            .get(path)
            .and_then(Weak::upgrade);
        if let Some(dir) = cached {
            // Still the same directory at that path, in this process?
            if dir.pid == crate::sys::pid() && !dir.replaced() {
                return Ok(dir);
            }
        }
        // Opened without holding the cache's lock; two threads racing here
        // merely open the directory twice.
        let dir = Arc::new(Self::open_uncached(path, &c)?);
        let mut cache = CACHE.lock();
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
                    path: path.to_path_buf(),
                    source: e,
                    hint: None,
                })?;
                sys::openat(libc::AT_FDCWD, c, flags, 0).map_err(|e| Error::os("open", path, e))?
            }
            Err(e) => return Err(Error::os("open", path, e)),
        };
        let st = sys::fstat(fd.as_raw_fd()).map_err(|e| Error::os("fstat", path, e))?;
        let shared = sys::shared_file_system(fd.as_raw_fd());
        Ok(LockDir {
            fd,
            path: path.to_path_buf(),
            pid: crate::sys::pid(),
            ofd: AtomicU8::new(0),
            id: (st.st_dev, st.st_ino),
            shared,
            tmp: AtomicI32::new(-1),
        })
    }

    /// True when the directory at the path is no longer the one opened
    /// (renamed away, removed, replaced): its locks are no longer what
    /// other parties find at that path. A path that cannot be looked up
    /// for another reason (permissions) is not proof of that.
    pub fn replaced(&self) -> bool {
        let Ok(c) = CString::new(self.path.as_os_str().as_bytes()) else {
            return false;
        };
        match sys::statat(libc::AT_FDCWD, &c) {
            Ok(st) => (st.st_dev, st.st_ino) != self.id,
            Err(e) => e == libc::ENOENT || e == libc::ENOTDIR,
        }
    }

    /// The directory descriptor.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Fails with `ENOLCK` unless open file description locks taken through
    /// one descriptor exclude another descriptor on this file system. Some
    /// FUSE file systems (bindfs with lock forwarding, for one) take every
    /// lock as one process, so every lock "succeeds": the kernel and
    /// opencreate methods would then silently not exclude. Probed once per
    /// directory and process, with a private file that is removed again.
    pub fn require_ofd_locks(&self) -> Result<()> {
        let state = match self.ofd.load(Ordering::Relaxed) {
            0 => {
                let ok = self.probe_ofd();
                self.ofd.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                ok
            }
            s => s == 1,
        };
        if state {
            return Ok(());
        }
        Err(Error::os_hint(
            "fcntl(F_OFD_SETLK) probe in",
            self.path.clone(),
            libc::ENOLCK,
            "open file description locks are not enforced between descriptors on this \
             file system, so the kernel and opencreate methods cannot exclude here: use \
             the mkdir method",
        ))
    }

    fn probe_ofd(&self) -> bool {
        use crate::sys::LockKind;
        let unique: String = sys::random16().iter().map(|b| format!("{b:02x}")).collect();
        let name = sys::cname(&format!("~probe-{unique}"));
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let Ok(a) = sys::openat(self.raw(), &name, flags, 0o600) else {
            // Cannot even make a file: the lock attempt will report why.
            return true;
        };
        let enforced = match sys::openat(self.raw(), &name, libc::O_RDWR | libc::O_NOFOLLOW, 0) {
            Ok(b) => {
                let first = sys::ofd_try(a.as_raw_fd(), LockKind::Write, 0, 1);
                let second = sys::ofd_try(b.as_raw_fd(), LockKind::Write, 0, 1);
                matches!((first, second), (Ok(true), Ok(false)))
            }
            Err(_) => true,
        };
        // Unlinked only now: some FUSE file systems treat locks on an
        // unlinked file differently.
        let _ = sys::unlinkat(self.raw(), &name, 0);
        enforced
    }

    /// A descriptor of `~tmp` inside the lock directory (created if
    /// missing, never followed if it is a symlink), opened once and kept.
    /// `stale`: the kept one no longer works (`~tmp` was removed): a fresh
    /// `~tmp` is opened and put in place under the same number.
    pub fn tmp_dir(&self, stale: bool) -> Result<RawFd> {
        let fd = self.tmp.load(Ordering::Relaxed);
        if fd >= 0 && !stale {
            return Ok(fd);
        }
        let opened = self.open_tmp()?;
        if fd >= 0 {
            // Atomically replaces what the number names; threads using it
            // meanwhile see either directory, both `~tmp` (a removed one
            // just fails with ENOENT and sends them here).
            sys::dup3(opened.as_raw_fd(), fd)
                .map_err(|e| Error::os("dup3", self.path.join(TMP_DIR), e))?;
            return Ok(fd);
        }
        let raw = std::os::fd::IntoRawFd::into_raw_fd(opened);
        match self
            .tmp
            .compare_exchange(-1, raw, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Ok(raw),
            Err(other) => {
                // Another thread was first: use its descriptor.
                // SAFETY: `raw` was opened just above and never shared.
                unsafe { libc::close(raw) };
                Ok(other)
            }
        }
    }

    fn open_tmp(&self) -> Result<OwnedFd> {
        let name = sys::cname(TMP_DIR);
        let path = self.path.join(TMP_DIR);
        match sys::mkdirat(self.raw(), &name, 0o777) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(Error::os("mkdir", path, e)),
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        match sys::openat(self.raw(), &name, flags, 0) {
            Ok(fd) => Ok(fd),
            Err(e @ (libc::ELOOP | libc::ENOTDIR)) => Err(Error::os_hint(
                "open",
                path,
                e,
                "not a directory: a symlink or file planted where the library keeps ~tmp?",
            )),
            Err(e) => Err(Error::os("open", path, e)),
        }
    }

    /// True on a network, cluster or FUSE file system (waiters poll more
    /// often there: inotify misses what other mounts do).
    pub fn shared(&self) -> bool {
        self.shared
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

    /// The full path of `sub` (relative to the lock directory).
    pub fn path_of(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Opens the directory `sub` beside the entry (its readers or queue
    /// directory), never through a symlink: `None` if it does not exist;
    /// `Untrusted` if something else stands at its name. `what` names it
    /// in that message.
    pub fn open_side_dir(&self, sub: &str, what: &str) -> Result<Option<OwnedFd>> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        match sys::openat(self.dirfd(), &sys::cname(sub), flags, 0) {
            Ok(fd) => Ok(Some(fd)),
            Err(libc::ENOENT) => Ok(None),
            Err(libc::ELOOP) | Err(libc::ENOTDIR) => Err(Error::Untrusted(format!(
                "{} is not a directory (a symlink or file where the {what} belongs)",
                self.path_of(sub).display()
            ))),
            Err(e) => Err(Error::os("open", self.path_of(sub), e)),
        }
    }

    /// An I/O error for `call` on this entry.
    pub fn err(&self, call: &'static str, errno: i32) -> Error {
        Error::os(call, self.dir.path().join(&self.name), errno)
    }
}
