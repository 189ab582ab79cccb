//! Thin wrappers over the Linux system calls the lock methods use, made
//! with rustix where it has a typed API; libc is used only for the
//! byte-range open file description locks (`F_OFD_SETLK`, `F_OFD_SETLKW`,
//! `F_OFD_GETLK`, which rustix does not offer) and for `dup3` onto a number
//! the caller does not own exclusively (see [`dup3`]).
//!
//! Every wrapper returns the raw `errno` on failure so callers can decide
//! what a given error means for their protocol step, takes descriptor
//! numbers and C strings as the rest of the crate keeps them, and returns
//! `libc::stat` for stat results. Every descriptor is opened close-on-exec.
//! rustix does not retry on `EINTR`: the wrappers that must not fail with
//! it retry themselves, as noted on each.

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, UTIME_NOW};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Err(errno)` of a failed call.
pub type SysResult<T> = std::result::Result<T, i32>;

/// The `errno` a failed libc call left.
fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Runs `call` again while it fails with `EINTR`.
fn retry<T>(mut call: impl FnMut() -> SysResult<T>) -> SysResult<T> {
    loop {
        match call() {
            Err(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// Lends the descriptor number `fd` to one rustix call.
///
/// The wrappers of this module take descriptor numbers, as the libc calls
/// they replace did; every caller in the crate passes a descriptor it keeps
/// open across the call (a `LockDir`'s directory, an `OwnedFd` in hand, a
/// counter file it owns) or `AT_FDCWD`.
fn with_fd<T>(
    fd: RawFd,
    call: impl FnOnce(BorrowedFd<'_>) -> rustix::io::Result<T>,
) -> SysResult<T> {
    if fd == -1 {
        // The one number a `BorrowedFd` cannot hold; the kernel would say
        // EBADF.
        return Err(libc::EBADF);
    }
    // SAFETY: `fd` is not -1, and the caller keeps it open while this
    // function runs (see above). The `BorrowedFd` is handed to `call` by
    // value under a lifetime `call` is generic over, so neither it nor
    // anything borrowing from it can outlive this function. rustix only
    // passes the number to the kernel: a number that is not open makes the
    // call fail with EBADF, exactly as the libc call did.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    call(fd).map_err(Errno::raw_os_error)
}

/// [`with_fd`] for calls that take two descriptors.
fn with_fds<T>(
    a: RawFd,
    b: RawFd,
    call: impl FnOnce(BorrowedFd<'_>, BorrowedFd<'_>) -> rustix::io::Result<T>,
) -> SysResult<T> {
    with_fd(a, |a| {
        with_fd(b, |b| call(a, b)).map_err(Errno::from_raw_os_error)
    })
}

/// A C string from a name built by this library (never contains NUL).
pub fn cname(s: &str) -> CString {
    CString::new(s).expect("library-built names contain no NUL")
}

/// `openat(dirfd, name, flags | O_CLOEXEC, mode)`, retried on `EINTR`.
pub fn openat(
    dir: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> SysResult<OwnedFd> {
    // The O_* and mode bits are the kernel's, the same in libc and rustix.
    let flags = OFlags::from_bits_retain(flags as u32) | OFlags::CLOEXEC;
    let mode = Mode::from_bits_retain(mode);
    retry(|| with_fd(dir, |dir| rustix::fs::openat(dir, name, flags, mode)))
}

/// `mkdirat(dirfd, name, mode)`.
pub fn mkdirat(dir: RawFd, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    with_fd(dir, |dir| {
        rustix::fs::mkdirat(dir, name, Mode::from_bits_retain(mode))
    })
}

/// `renameat(from_dir, from, to_dir, to)`.
pub fn renameat_between(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> SysResult<()> {
    with_fds(from_dir, to_dir, |a, b| {
        rustix::fs::renameat(a, from, b, to)
    })
}

/// `unlinkat(dirfd, name, flags)`.
pub fn unlinkat(dir: RawFd, name: &CStr, flags: libc::c_int) -> SysResult<()> {
    let flags = AtFlags::from_bits_retain(flags as u32);
    with_fd(dir, |dir| rustix::fs::unlinkat(dir, name, flags))
}

/// `linkat(from_dir, from, to_dir, to, flags)`.
pub fn linkat(
    from_dir: RawFd,
    from: &CStr,
    to_dir: RawFd,
    to: &CStr,
    flags: libc::c_int,
) -> SysResult<()> {
    let flags = AtFlags::from_bits_retain(flags as u32);
    with_fds(from_dir, to_dir, |a, b| {
        rustix::fs::linkat(a, from, b, to, flags)
    })
}

/// rustix's stat result as the `libc::stat` the rest of the crate uses.
fn to_libc(st: &rustix::fs::Stat) -> libc::stat {
    // SAFETY: `libc::stat` is a C struct of integer fields and integer
    // padding, for which all-zero bytes are a valid value; its padding
    // fields are private, so it cannot be built with a struct literal.
    let mut out: libc::stat = unsafe { std::mem::zeroed() };
    out.st_dev = st.st_dev as _;
    out.st_ino = st.st_ino as _;
    out.st_nlink = st.st_nlink as _;
    out.st_mode = st.st_mode as _;
    out.st_uid = st.st_uid as _;
    out.st_gid = st.st_gid as _;
    out.st_rdev = st.st_rdev as _;
    out.st_size = st.st_size as _;
    out.st_blksize = st.st_blksize as _;
    out.st_blocks = st.st_blocks as _;
    out.st_atime = st.st_atime as _;
    out.st_atime_nsec = st.st_atime_nsec as _;
    out.st_mtime = st.st_mtime as _;
    out.st_mtime_nsec = st.st_mtime_nsec as _;
    out.st_ctime = st.st_ctime as _;
    out.st_ctime_nsec = st.st_ctime_nsec as _;
    out
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstatat(dir: RawFd, name: &CStr) -> SysResult<libc::stat> {
    with_fd(dir, |dir| {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
    })
    .map(|st| to_libc(&st))
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd) -> SysResult<libc::stat> {
    with_fd(fd, |fd| rustix::fs::fstat(fd)).map(|st| to_libc(&st))
}

/// `fstatat(dir, name)` following a final symlink.
pub fn statat(dir: RawFd, name: &CStr) -> SysResult<libc::stat> {
    with_fd(dir, |dir| rustix::fs::statat(dir, name, AtFlags::empty())).map(|st| to_libc(&st))
}

/// `dup3(from, to, O_CLOEXEC)`, retried on `EINTR`: makes `to` name what
/// `from` names.
///
/// Made with libc: rustix's `dup3` takes the target as `&mut OwnedFd`,
/// which would claim sole ownership of `to`, while the one caller
/// (`LockDir::tmp_dir`) replaces a number that other threads may be using
/// at that very moment (that is the point: they see either directory).
pub fn dup3(from: RawFd, to: RawFd) -> SysResult<()> {
    retry(|| {
        // SAFETY: dup3 takes two descriptor numbers and no pointers; it
        // cannot touch this process's memory. An invalid `from` or `to`
        // fails with EBADF. `to` is the caller's own descriptor, which the
        // caller means to replace.
        if unsafe { libc::dup3(from, to, libc::O_CLOEXEC) } < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    })
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

/// Both times of a file set to "now" (`UTIME_NOW`, what a NULL `times`
/// argument means to `utimensat` and `futimens`).
const NOW: Timestamps = Timestamps {
    last_access: Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    },
    last_modification: Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    },
};

/// Sets a file's times to now: `utimensat(dirfd, name, NOW, AT_SYMLINK_NOFOLLOW)`.
pub fn touchat(dir: RawFd, name: &CStr) -> SysResult<()> {
    with_fd(dir, |dir| {
        rustix::fs::utimensat(dir, name, &NOW, AtFlags::SYMLINK_NOFOLLOW)
    })
}

/// Sets an open file's times to now.
pub fn futimens_now(fd: RawFd) -> SysResult<()> {
    with_fd(fd, |fd| rustix::fs::futimens(fd, &NOW))
}

/// Writes all of `buf` at `offset`, retrying on `EINTR` and short writes.
pub fn pwrite_all(fd: RawFd, mut buf: &[u8], mut offset: i64) -> SysResult<()> {
    while !buf.is_empty() {
        // A negative offset reaches the kernel as one and fails with EINVAL.
        let n = retry(|| with_fd(fd, |fd| rustix::io::pwrite(fd, buf, offset as u64)))?;
        if n == 0 {
            return Err(libc::EIO);
        }
        buf = &buf[n..];
        offset += n as i64;
    }
    Ok(())
}

/// Reads at most `max` bytes from offset 0, retrying on `EINTR` and short
/// reads until end of file.
pub fn pread_upto(fd: RawFd, max: usize) -> SysResult<Vec<u8>> {
    let mut out = vec![0u8; max];
    let mut got = 0usize;
    while got < max {
        let n = retry(|| with_fd(fd, |fd| rustix::io::pread(fd, &mut out[got..], got as u64)))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    out.truncate(got);
    Ok(out)
}

/// `ftruncate(fd, len)`, retried on `EINTR`.
pub fn ftruncate(fd: RawFd, len: i64) -> SysResult<()> {
    retry(|| with_fd(fd, |fd| rustix::fs::ftruncate(fd, len as u64)))
}

/// The names in a directory (without `.` and `..`), read through a
/// duplicate of `dirfd` (rewound to the start) so the caller's descriptor
/// stays open. Fails with `ENOTDIR` on anything but a directory; an error
/// while reading ends the list (the names read so far are returned).
pub fn list_dir(dirfd: RawFd) -> SysResult<Vec<Vec<u8>>> {
    let dup = with_fd(dirfd, |fd| rustix::io::fcntl_dupfd_cloexec(fd, 0))?;
    let st = rustix::fs::fstat(&dup).map_err(Errno::raw_os_error)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Err(libc::ENOTDIR);
    }
    let mut dir = rustix::fs::Dir::new(dup).map_err(Errno::raw_os_error)?;
    dir.rewind();
    let mut names = Vec::new();
    while let Some(Ok(ent)) = dir.read() {
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
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
    // SAFETY: `libc::flock` is a C struct of integer fields (and, on some
    // targets, private integer padding), for which all-zero bytes are a
    // valid value.
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

/// `fcntl(fd, cmd, fl)` for the three OFD lock commands, which rustix does
/// not offer for byte ranges (its `fcntl_lock` locks whole files only).
fn ofd_fcntl(fd: RawFd, cmd: libc::c_int, fl: &mut libc::flock) -> SysResult<()> {
    debug_assert!(matches!(
        cmd,
        libc::F_OFD_SETLK | libc::F_OFD_SETLKW | libc::F_OFD_GETLK
    ));
    // SAFETY: for F_OFD_SETLK, F_OFD_SETLKW and F_OFD_GETLK the third
    // argument is a pointer to one `struct flock`, which the kernel reads
    // (and, for F_OFD_GETLK, overwrites); `fl` is a valid, exclusive
    // reference to one for the whole call. A bad `fd` fails with EBADF.
    if unsafe { libc::fcntl(fd, cmd, fl as *mut libc::flock) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `F_OFD_SETLK`, retried on `EINTR`: `Ok(true)` when taken (or released),
/// `Ok(false)` when another open file description holds a conflicting lock.
pub fn ofd_try(fd: RawFd, kind: LockKind, start: i64, len: i64) -> SysResult<bool> {
    let mut fl = flock_for(kind, start, len);
    match retry(|| ofd_fcntl(fd, libc::F_OFD_SETLK, &mut fl)) {
        Ok(()) => Ok(true),
        Err(libc::EAGAIN) | Err(libc::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `F_OFD_SETLKW`: blocks until taken. `EINTR` is returned to the caller,
/// which decides whether to go on waiting.
pub fn ofd_wait(fd: RawFd, kind: LockKind, start: i64, len: i64) -> SysResult<()> {
    let mut fl = flock_for(kind, start, len);
    ofd_fcntl(fd, libc::F_OFD_SETLKW, &mut fl)
}

/// `F_OFD_GETLK`, retried on `EINTR`: true when some other open file
/// description holds a lock that conflicts with `kind` on the range.
pub fn ofd_conflict(fd: RawFd, kind: LockKind, start: i64, len: i64) -> SysResult<bool> {
    let mut fl = flock_for(kind, start, len);
    retry(|| ofd_fcntl(fd, libc::F_OFD_GETLK, &mut fl))?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// 16 random bytes from `getrandom(2)` (retried on `EINTR`); without it,
/// bytes made from the time, the PID and an address.
pub fn random16() -> [u8; 16] {
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < buf.len() {
        match rustix::rand::getrandom(&mut buf[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => got += n,
            Err(Errno::INTR) => continue,
            Err(_) => {
                // No getrandom: fall back to time, pid and an address.
                // Tokens need uniqueness, not secrecy.
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
        }
    }
    buf
}

/// `pidfd_open(pid, 0)` (close-on-exec by definition).
pub fn pidfd_open(pid: u32) -> SysResult<OwnedFd> {
    // PID 0 and numbers beyond `pid_t` are no process: EINVAL, as the
    // kernel says.
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(libc::EINVAL)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(Errno::raw_os_error)
}

/// An inotify instance watching one directory.
pub struct Inotify {
    fd: OwnedFd,
    wd: i32,
}

/// A new inotify instance (close-on-exec, non-blocking).
pub fn inotify_new() -> SysResult<OwnedFd> {
    use rustix::fs::inotify::{self, CreateFlags};
    inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(Errno::raw_os_error)
}

impl Inotify {
    /// Makes the instance `fd` watch the directory open at `dirfd` for
    /// `mask` events (`IN_*` bits). On failure the instance is handed back.
    pub fn watch_dir(
        fd: OwnedFd,
        dirfd: RawFd,
        mask: u32,
    ) -> std::result::Result<Inotify, OwnedFd> {
        use rustix::fs::inotify::{self, WatchFlags};
        let path = cname(&format!("/proc/self/fd/{dirfd}"));
        let flags = WatchFlags::from_bits_retain(mask) | WatchFlags::ONLYDIR;
        match inotify::add_watch(&fd, path.as_c_str(), flags) {
            Ok(wd) => Ok(Inotify { fd, wd }),
            Err(_) => Err(fd),
        }
    }

    /// Removes the watch and hands back the instance, with its queue
    /// drained, for reuse (closing an instance that had a watch waits for
    /// an RCU grace period: milliseconds).
    pub fn unwatch(self) -> OwnedFd {
        let _ = rustix::fs::inotify::remove_watch(&self.fd, self.wd);
        drain(self.fd.as_fd());
        self.fd
    }

    /// The descriptor to poll.
    pub fn raw(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    /// Reads pending events; true if one names `name` (or the queue
    /// overflowed, or the directory itself went away).
    pub fn drain_matches(&self, name: &[u8]) -> bool {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let gone = ReadFlags::QUEUE_OVERFLOW
            | ReadFlags::IGNORED
            | ReadFlags::DELETE_SELF
            | ReadFlags::MOVE_SELF;
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = Reader::new(&self.fd, &mut buf);
        let mut hit = false;
        // Until the queue is empty (EAGAIN) or a read fails.
        while let Ok(ev) = events.next() {
            let ename = ev.file_name().map_or(&[][..], CStr::to_bytes);
            if ev.events().intersects(gone) || ename == name {
                hit = true;
            }
        }
        hit
    }
}

/// Discards whatever events are queued on an inotify instance.
fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(fd, &mut buf[..]), Ok(n) if n > 0) {}
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no
/// limit). Returns the indexes that are readable (empty on timeout or when
/// a signal interrupted the wait: the caller re-checks its deadline). A
/// negative number is skipped, as poll(2) does.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> SysResult<Vec<usize>> {
    use rustix::event::{PollFd, PollFlags};
    let borrowed: Vec<(usize, BorrowedFd<'_>)> = fds
        .iter()
        .enumerate()
        .filter(|&(_, &fd)| fd >= 0)
        // SAFETY: `fd` is not negative, and the caller keeps every
        // descriptor in `fds` open while this function runs (wait.rs passes
        // the inotify instance and the pidfd its `Waiter` owns); the
        // borrows live in locals dropped before it returns.
        .map(|(i, &fd)| (i, unsafe { BorrowedFd::borrow_raw(fd) }))
        .collect();
    let mut pfds: Vec<PollFd<'_>> = borrowed
        .iter()
        .map(|(_, fd)| PollFd::new(fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64 / 2) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match rustix::event::poll(&mut pfds, ts.as_ref()) {
        Ok(_) => {}
        Err(Errno::INTR) => return Ok(Vec::new()),
        Err(e) => return Err(e.raw_os_error()),
    }
    Ok(pfds
        .iter()
        .zip(&borrowed)
        .filter(|(p, _)| !p.revents().is_empty())
        .map(|(_, (i, _))| *i)
        .collect())
}

/// Sleeps for all of `d` (used only by the fallback poll when nothing can
/// be watched, and between tries of a short guard). A signal does not end
/// the sleep early: `std::thread::sleep` goes back to sleep for the time
/// that remains after every interruption.
pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// This process's PID, cached (see `forksafe::pid`).
pub fn pid() -> u32 {
    crate::forksafe::pid()
}

/// Appends one byte to `fd` (opened `O_APPEND`) and returns the file offset
/// after it: the file's new size at the moment of this very write (the
/// kernel decides where an append goes and moves the description's offset
/// in one step, under the inode's lock). The write is retried on `EINTR`.
pub fn append_byte(fd: RawFd) -> SysResult<u64> {
    with_fd(fd, |fd| {
        loop {
            match rustix::io::write(fd, b"\n") {
                Ok(1) => break,
                Ok(_) => return Err(Errno::IO),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
        rustix::fs::tell(fd)
    })
}

/// Frees the blocks of `[0, len)` keeping the size (best effort: an error
/// only means the file keeps its blocks).
pub fn punch_hole(fd: RawFd, len: i64) -> SysResult<()> {
    use rustix::fs::FallocateFlags;
    let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    with_fd(fd, |fd| rustix::fs::fallocate(fd, mode, 0, len as u64))
}

/// True for file systems that other machines (or other mounts) may share,
/// whose inode numbers may differ between them and whose changes made
/// elsewhere inotify does not see: network and cluster file systems and
/// FUSE. Unknown (fstatfs failed): true, the cautious answer.
pub fn shared_file_system(fd: RawFd) -> bool {
    let mut sfs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes at most one statfs into the buffer, which is
    // live and large enough; any descriptor number is acceptable to it.
    if unsafe { libc::fstatfs(fd, sfs.as_mut_ptr()) } != 0 {
        return true;
    }
    // SAFETY: fstatfs succeeded, so it filled the buffer.
    let magic = unsafe { sfs.assume_init() }.f_type as u64 & 0xffff_ffff;
    const SHARED: &[u64] = &[
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x6573_5546, // FUSE
        0x00c3_6400, // Ceph
        0x5346_414f, // AFS
        0x6b41_4653, // kAFS
        0x0102_1997, // 9p
        0x7375_7245, // Coda
        0x0116_1970, // GFS2
        0x7461_636f, // OCFS2
        0x0bd0_0bd0, // Lustre
        0x4750_4653, // GPFS
    ];
    SHARED.contains(&magic)
}
