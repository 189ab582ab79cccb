//! Thin, safe wrappers over the Linux system calls the lock methods use.
//! Every wrapper returns the raw `errno` on failure so callers can decide
//! what a given error means for their protocol step. Every descriptor is
//! opened close-on-exec.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Err(errno)` of a failed call.
pub type SysResult<T> = std::result::Result<T, i32>;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn cvt(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Retries a call while it fails with `EINTR`.
fn retry(mut f: impl FnMut() -> libc::c_int) -> SysResult<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// A C string from a name built by this library (never contains NUL).
pub fn cname(s: &str) -> CString {
    CString::new(s).expect("library-built names contain no NUL")
}

/// `openat(dirfd, name, flags | O_CLOEXEC, mode)`.
pub fn openat(
    dir: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> SysResult<OwnedFd> {
    let fd = retry(|| unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dirfd, name, mode)`.
pub fn mkdirat(dir: RawFd, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }).map(drop)
}

/// `renameat(from_dir, from, to_dir, to)`.
pub fn renameat_between(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> SysResult<()> {
    cvt(unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) }).map(drop)
}

/// `unlinkat(dirfd, name, flags)`.
pub fn unlinkat(dir: RawFd, name: &CStr, flags: libc::c_int) -> SysResult<()> {
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

/// `linkat(from_dir, from, to_dir, to, flags)`.
pub fn linkat(
    from_dir: RawFd,
    from: &CStr,
    to_dir: RawFd,
    to: &CStr,
    flags: libc::c_int,
) -> SysResult<()> {
    cvt(unsafe { libc::linkat(from_dir, from.as_ptr(), to_dir, to.as_ptr(), flags) }).map(drop)
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstatat(dir: RawFd, name: &CStr) -> SysResult<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd) -> SysResult<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// `fstatat(dir, name)` following a final symlink.
pub fn statat(dir: RawFd, name: &CStr) -> SysResult<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: name is NUL-terminated; st is writable.
    cvt(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), 0) })?;
    // SAFETY: fstatat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

/// `dup3(from, to, O_CLOEXEC)`: makes `to` name what `from` names.
pub fn dup3(from: RawFd, to: RawFd) -> SysResult<()> {
    // SAFETY: plain descriptor numbers; `to` is the caller's own.
    retry(|| unsafe { libc::dup3(from, to, libc::O_CLOEXEC) }).map(drop)
}

/// True when two stat results name the same inode.
pub fn same_inode(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// The modification time of a stat result.
pub fn mtime(st: &libc::stat) -> SystemTime {
    let secs = st.st_mtime.max(0) as u64;
    let nsec = st.st_mtime_nsec.clamp(0, 999_999_999) as u32;
    UNIX_EPOCH + Duration::new(secs, nsec)
}

/// Sets a file's times to now: `utimensat(dirfd, name, NULL, AT_SYMLINK_NOFOLLOW)`.
pub fn touchat(dir: RawFd, name: &CStr) -> SysResult<()> {
    cvt(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            std::ptr::null(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Sets an open file's times to now.
pub fn futimens_now(fd: RawFd) -> SysResult<()> {
    cvt(unsafe { libc::futimens(fd, std::ptr::null()) }).map(drop)
}

/// Writes all of `buf` at `offset`.
pub fn pwrite_all(fd: RawFd, mut buf: &[u8], mut offset: i64) -> SysResult<()> {
    while !buf.is_empty() {
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        buf = &buf[n as usize..];
        offset += n as i64;
    }
    Ok(())
}

/// Reads at most `max` bytes from offset 0.
pub fn pread_upto(fd: RawFd, max: usize) -> SysResult<Vec<u8>> {
    let mut out = vec![0u8; max];
    let mut got = 0usize;
    while got < max {
        let n = unsafe { libc::pread(fd, out[got..].as_mut_ptr().cast(), max - got, got as i64) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    out.truncate(got);
    Ok(out)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: RawFd, len: i64) -> SysResult<()> {
    retry(|| unsafe { libc::ftruncate(fd, len) }).map(drop)
}

/// The names in a directory (without `.` and `..`), read through a
/// duplicate of `dirfd` so the caller's descriptor stays open.
pub fn list_dir(dirfd: RawFd) -> SysResult<Vec<Vec<u8>>> {
    let dup = cvt(unsafe { libc::fcntl(dirfd, libc::F_DUPFD_CLOEXEC, 0) })?;
    let dirp = unsafe { libc::fdopendir(dup) };
    if dirp.is_null() {
        let e = errno();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    unsafe { libc::rewinddir(dirp) };
    let mut names = Vec::new();
    loop {
        let ent = unsafe { libc::readdir(dirp) };
        if ent.is_null() {
            break;
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    unsafe { libc::closedir(dirp) };
    Ok(names)
}

/// Kinds of open file description lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockKind {
    /// `F_RDLCK`
    Read,
    /// `F_WRLCK`
    Write,
    /// `F_UNLCK`
    Unlock,
}

fn flock_for(kind: LockKind, start: i64, len: i64) -> libc::flock {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl.l_pid = 0;
    fl
}

/// `F_OFD_SETLK`: `Ok(true)` when taken (or released), `Ok(false)` when
/// another open file description holds a conflicting lock.
pub fn ofd_try(fd: RawFd, kind: LockKind, start: i64, len: i64) -> SysResult<bool> {
    let fl = flock_for(kind, start, len);
    match retry(|| unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(libc::EAGAIN) | Err(libc::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `F_OFD_SETLKW`: blocks until taken. `EINTR` is returned to the caller,
/// which decides whether to go on waiting.
pub fn ofd_wait(fd: RawFd, kind: LockKind, start: i64, len: i64) -> SysResult<()> {
    let fl = flock_for(kind, start, len);
    cvt(unsafe { libc::fcntl(fd, libc::F_OFD_SETLKW, &fl) }).map(drop)
}

/// `F_OFD_GETLK`: true when some other open file description holds a lock
/// that conflicts with `kind` on the range.
pub fn ofd_conflict(fd: RawFd, kind: LockKind, start: i64, len: i64) -> SysResult<bool> {
    let mut fl = flock_for(kind, start, len);
    retry(|| unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// 16 random bytes from `getrandom(2)`.
pub fn random16() -> [u8; 16] {
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < buf.len() {
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            // No getrandom: fall back to time, pid and an address. Tokens
            // need uniqueness, not secrecy.
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let mix = (t.as_nanos() as u64)
                ^ ((std::process::id() as u64) << 32)
                ^ (&buf as *const _ as u64);
            buf[..8].copy_from_slice(&mix.to_le_bytes());
            buf[8..].copy_from_slice(&(t.as_secs() ^ mix.rotate_left(17)).to_le_bytes());
            return buf;
        }
        got += n as usize;
    }
    buf
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: u32) -> SysResult<OwnedFd> {
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(errno());
    }
    let fd = ret as RawFd;
    // pidfds are close-on-exec by definition.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An inotify instance watching one directory.
pub struct Inotify {
    fd: OwnedFd,
    wd: libc::c_int,
}

/// A new inotify instance (close-on-exec, non-blocking).
pub fn inotify_new() -> SysResult<OwnedFd> {
    let fd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Inotify {
    /// Makes the instance `fd` watch the directory open at `dirfd` for
    /// `mask` events. On failure the instance is handed back.
    pub fn watch_dir(
        fd: OwnedFd,
        dirfd: RawFd,
        mask: u32,
    ) -> std::result::Result<Inotify, OwnedFd> {
        let path = cname(&format!("/proc/self/fd/{dirfd}"));
        let wd = unsafe {
            libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask | libc::IN_ONLYDIR)
        };
        if wd < 0 {
            return Err(fd);
        }
        Ok(Inotify { fd, wd })
    }

    /// Removes the watch and hands back the instance, with its queue
    /// drained, for reuse (closing an instance that had a watch waits for
    /// an RCU grace period: milliseconds).
    pub fn unwatch(self) -> OwnedFd {
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), self.wd) };
        drain(self.fd.as_raw_fd());
        self.fd
    }

    /// The descriptor to poll.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads pending events; true if one names `name` (or the queue
    /// overflowed, or the directory itself went away).
    pub fn drain_matches(&self, name: &[u8]) -> bool {
        let mut hit = false;
        let mut buf = [0u8; 4096];
        loop {
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return hit;
            }
            let n = n as usize;
            let mut off = 0usize;
            let hdr = std::mem::size_of::<libc::inotify_event>();
            while off + hdr <= n {
                // SAFETY: the kernel writes whole events; read unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let len = ev.len as usize;
                let raw = &buf[(off + hdr).min(n)..(off + hdr + len).min(n)];
                let ename = raw.split(|&b| b == 0).next().unwrap_or(&[]);
                if ev.mask
                    & (libc::IN_Q_OVERFLOW
                        | libc::IN_IGNORED
                        | libc::IN_DELETE_SELF
                        | libc::IN_MOVE_SELF)
                    != 0
                    || ename == name
                {
                    hit = true;
                }
                off += hdr + len;
            }
        }
    }
}

/// Discards whatever events are queued on an inotify instance.
pub fn drain(fd: RawFd) {
    let mut buf = [0u8; 4096];
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no
/// limit). Returns the indexes that are readable (empty on timeout or when
/// a signal interrupted the wait: the caller re-checks its deadline).
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> SysResult<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64 / 2) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let n = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            tsp,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let e = errno();
        return if e == libc::EINTR {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    Ok(pfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}

/// Sleeps for `d` (used only by the fallback poll when nothing can be watched).
pub fn sleep(d: Duration) {
    let _ = poll_readable(&[], Some(d));
}

/// This process's PID, cached (see `forksafe::pid`).
pub fn pid() -> u32 {
    crate::forksafe::pid()
}

/// Appends one byte to `fd` (opened `O_APPEND`) and returns the file offset
/// after it: the file's new size at the moment of this very write (the
/// kernel decides where an append goes and moves the description's offset
/// in one step, under the inode's lock).
pub fn append_byte(fd: RawFd) -> SysResult<u64> {
    let b = [b'\n'];
    loop {
        // SAFETY: `b` is a readable one-byte buffer.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(if n < 0 { errno() } else { libc::EIO });
    }
    // SAFETY: lseek on any descriptor is safe.
    let off = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    if off < 0 {
        return Err(errno());
    }
    Ok(off as u64)
}

/// Frees the blocks of `[0, len)` keeping the size (best effort: an error
/// only means the file keeps its blocks).
pub fn punch_hole(fd: RawFd, len: i64) -> SysResult<()> {
    // SAFETY: fallocate on any descriptor is safe.
    cvt(unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            len,
        )
    })
    .map(drop)
}
