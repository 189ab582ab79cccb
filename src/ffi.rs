//! The C ABI: the only module that knows about C. Each export checks its
//! pointers and arguments, runs its body inside [`ffi_boundary!`] (no panic
//! reaches C), maps errors to the fixed `LOCKING_E_*` codes, sets `errno`
//! for I/O failures and keeps the calling thread's last error message.

use locking_core::forksafe::ForkMutex;
use locking_core::open_locked;
use locking_core::Error;
use locking_core::Locker as CoreLocker;
use locking_core::{Expire, Method, Mode, Timeout};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString, OsStr};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The lock is a directory made with mkdir(2) (prepared privately, then
/// renamed into place). Works on every local file system.
pub const LOCKING_METHOD_MKDIR: c_int = 0;
/// The lock is a regular file created exclusively (O_TMPFILE or
/// O_CREAT|O_EXCL, then link(2)).
pub const LOCKING_METHOD_OPENCREATE: c_int = 1;
/// No locking at all: every lock succeeds at once. For tests.
pub const LOCKING_METHOD_FAKE: c_int = 2;
/// A kernel-held lock on a lock file (Linux open file description lock,
/// F_OFD_SETLK); the kernel drops it when the holder dies.
pub const LOCKING_METHOD_KERNEL: c_int = 3;
/// (0.2) A PostgreSQL advisory lock: `lockdir` is a libpq connection string
/// (URI or key=value words), so the lock is shared by every machine that
/// reaches the server. libpq (libpq.so.5) is loaded on first use; without
/// it, or without the server, calls fail with LOCKING_E_UNAVAILABLE.
pub const LOCKING_METHOD_POSTGRES: c_int = 4;

/// Mode for locker_acquire(): one holder at a time.
pub const LOCKING_EXCLUSIVE: c_int = 0;
/// Mode for locker_acquire(): any number of shared holders at once, and no
/// exclusive one. Every method but FAKE (which never excludes anything).
pub const LOCKING_SHARED: c_int = 1;

/// The major version of this header (0.2.0: 0).
pub const LOCKING_VERSION_MAJOR: c_int = 0;
/// The minor version of this header (0.2.0: 2).
pub const LOCKING_VERSION_MINOR: c_int = 2;
/// The patch version of this header (0.2.0: 0).
pub const LOCKING_VERSION_PATCH: c_int = 0;

/// Success.
pub const LOCKING_OK: c_int = 0;
/// LockerFailed: locker_lock() timed out.
pub const LOCKING_E_LOCKER_FAILED: c_int = -1;
/// CannotGetLock: open_locked_fd() timed out.
pub const LOCKING_E_CANNOT_GET_LOCK: c_int = -2;
/// An argument was rejected: NULL where not allowed, empty objname, NaN
/// timeout or expire, unknown method, a lock entry of another method, ...
pub const LOCKING_E_INVALID_ARGUMENT: c_int = -3;
/// An OS call failed: errno is set, and locking_last_error() names the call
/// and the path.
pub const LOCKING_E_IO: c_int = -4;
/// locker_lock() on a Locker that holds its lock (locks are not reentrant;
/// this error replaces a deadlock).
pub const LOCKING_E_ALREADY_LOCKED: c_int = -5;
/// locker_unlock()/locker_refresh()/locker_check() on a Locker that does not
/// hold its lock; close_locked_fd() on an fd that did not come from
/// open_locked_fd().
pub const LOCKING_E_NOT_LOCKED: c_int = -6;
/// The lock was broken by another party after `expire`: reported, never
/// hidden.
pub const LOCKING_E_LOCK_LOST: c_int = -7;
/// A bug in the library (a caught Rust panic); nothing unwinds into C.
pub const LOCKING_E_INTERNAL: c_int = -8;
/// The operation is not available here: a lock service could not be
/// reached or its client library is missing, or the file system lacks what
/// the method needs. locking_last_error() has the reason.
pub const LOCKING_E_UNAVAILABLE: c_int = -9;

/// A timeout that never ends.
pub const LOCKING_WAIT_FOREVER: f64 = -1.0;
/// An expire that never breaks a lock.
pub const LOCKING_NEVER_EXPIRE: f64 = 0.0;

/// An opaque lock on one name (`objname` in namespace `ns`) in one lock
/// directory, made by locker_new() and freed by locker_free(). It holds at
/// most one acquisition at a time, exclusive or shared. A Locker may move
/// between threads but must not be used by two threads at once; two
/// Lockers for the same name exclude each other, in one thread or many.
pub struct Locker(CoreLocker);

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn set_errno(v: c_int) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = v };
}

/// Records `err` as the thread's last error and returns its code.
fn fail(err: Error) -> c_int {
    let code = match &err {
        Error::LockerFailed { .. } => LOCKING_E_LOCKER_FAILED,
        Error::CannotGetLock { .. } => LOCKING_E_CANNOT_GET_LOCK,
        Error::InvalidArgument(_) | Error::Untrusted(_) => LOCKING_E_INVALID_ARGUMENT,
        Error::Unsupported(_) => LOCKING_E_UNAVAILABLE,
        Error::Io { .. } => LOCKING_E_IO,
        Error::AlreadyLocked(_) => LOCKING_E_ALREADY_LOCKED,
        Error::NotLocked(_) => LOCKING_E_NOT_LOCKED,
        Error::LockLost(_) => LOCKING_E_LOCK_LOST,
        // A variant added later and not yet given a code of its own.
        #[allow(unreachable_patterns)]
        _ => LOCKING_E_INTERNAL,
    };
    set_last_error(&err.to_string());
    if let Some(e) = err.raw_os_error() {
        set_errno(e);
    }
    code
}

fn invalid(msg: &str) -> c_int {
    fail(Error::InvalidArgument(msg.to_string()))
}

/// Runs an export's body; a panic becomes `LOCKING_E_INTERNAL` (or the
/// given value for functions that return no code).
macro_rules! ffi_boundary {
    ($on_panic:expr, $body:block) => {{
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                set_last_error(&format!(
                    "internal error (a bug in liblocking, please report it): {what}"
                ));
                $on_panic
            }
        }
    }};
}

/// The bytes of a C string argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// The method for a C API integer; `None` for an unknown value.
fn method_from_int(v: c_int) -> Option<Method> {
    match v {
        LOCKING_METHOD_MKDIR => Some(Method::Mkdir),
        LOCKING_METHOD_OPENCREATE => Some(Method::OpenCreate),
        LOCKING_METHOD_FAKE => Some(Method::Fake),
        LOCKING_METHOD_KERNEL => Some(Method::Kernel),
        LOCKING_METHOD_POSTGRES => Some(Method::Postgres),
        _ => None,
    }
}

/// The mode for a C API integer; `None` for an unknown value.
fn mode_from_int(v: c_int) -> Option<Mode> {
    match v {
        LOCKING_EXCLUSIVE => Some(Mode::Exclusive),
        LOCKING_SHARED => Some(Mode::Shared),
        _ => None,
    }
}

fn result(r: crate::Result<()>) -> c_int {
    match r {
        Ok(()) => LOCKING_OK,
        Err(e) => fail(e),
    }
}

/// Creates a Locker for `objname` in namespace `ns` inside `lockdir`. It
/// does not lock.
///
/// - `objname`: required, non-empty; any bytes (slashes, `..`, UTF-8 or not,
///   any length) are a valid name.
/// - `lockdir`: required; created with its parents if it does not exist.
/// - `ns`: the namespace; NULL means the empty namespace.
/// - `timeout` (seconds): `< 0` (LOCKING_WAIT_FOREVER) waits forever, `0`
///   tries once, `> 0` waits at most about that long; NaN is invalid.
/// - `expire` (seconds): `<= 0` (LOCKING_NEVER_EXPIRE) never breaks a live
///   holder's lock; `> 0` lets this Locker break a lock older than that.
///   Locks of holders that died on this machine are broken at once anyway.
/// - `method`: one of the LOCKING_METHOD_* values.
/// - `out`: receives the new Locker, written only on success. The caller
///   owns it and frees it with locker_free().
///
/// Returns LOCKING_OK, LOCKING_E_INVALID_ARGUMENT (NULL pointer, empty
/// objname or lockdir, NaN, unknown method), LOCKING_E_IO (the lock
/// directory cannot be created or opened; errno is set) or, for
/// LOCKING_METHOD_POSTGRES, LOCKING_E_UNAVAILABLE (no client library, server
/// unreachable, login refused; locking_last_error() says which).
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn locker_new(
    objname: *const c_char,
    lockdir: *const c_char,
    ns: *const c_char,
    timeout: f64,
    expire: f64,
    method: c_int,
    out: *mut *mut Locker,
) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        if out.is_null() {
            return invalid("locker_new: out is NULL");
        }
        // SAFETY: NULL or NUL-terminated, per the contract.
        let (Some(obj), Some(dir)) = (unsafe { bytes(objname) }, unsafe { bytes(lockdir) }) else {
            return invalid("locker_new: objname and lockdir must not be NULL");
        };
        // SAFETY: as above.
        let ns = unsafe { bytes(ns) }.unwrap_or(b"");
        let Some(method) = method_from_int(method) else {
            return invalid(&format!("locker_new: unknown method {method}"));
        };
        let timeout = match Timeout::from_secs(timeout) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let expire = match Expire::from_secs(expire) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        match CoreLocker::new(
            obj,
            Path::new(OsStr::from_bytes(dir)),
            ns,
            timeout,
            expire,
            method,
        ) {
            Ok(l) => {
                // SAFETY: checked non-NULL; written only on success.
                unsafe { *out = Box::into_raw(Box::new(Locker(l))) };
                LOCKING_OK
            }
            Err(e) => fail(e),
        }
    })
}

/// Acquires the lock, waiting up to the Locker's timeout.
///
/// Returns LOCKING_OK; LOCKING_E_LOCKER_FAILED when the timeout ran out;
/// LOCKING_E_ALREADY_LOCKED when this Locker holds the lock already;
/// LOCKING_E_INVALID_ARGUMENT for NULL or when the lock entry belongs to
/// another method; LOCKING_E_IO when an OS call failed (errno is set).
///
/// # Safety
/// `locker` is NULL or a live pointer from locker_new(), not used by another
/// thread during the call.
#[no_mangle]
pub unsafe extern "C" fn locker_lock(locker: *mut Locker) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        match unsafe { locker.as_mut() }.map(|l| &mut l.0) {
            Some(l) => result(l.lock()),
            None => invalid("locker_lock: locker is NULL"),
        }
    })
}

/// Acquires the lock in `mode` (LOCKING_EXCLUSIVE or LOCKING_SHARED),
/// waiting up to this call's `timeout` (seconds: `< 0` forever, `0` try
/// once, `> 0` at most about that long). locker_lock(l) is
/// locker_acquire(l, LOCKING_EXCLUSIVE, <the Locker's timeout>).
///
/// Shared holders coexist; an exclusive holder excludes every other
/// holder; an exclusive locker that waits is not starved (shared lockers
/// that arrive after it wait behind it). locker_unlock(), locker_refresh(),
/// locker_check() and locker_free() work on either mode.
///
/// Returns LOCKING_OK; LOCKING_E_LOCKER_FAILED when the timeout ran out;
/// LOCKING_E_ALREADY_LOCKED when this Locker holds the lock already (in
/// either mode); LOCKING_E_INVALID_ARGUMENT for NULL, an unknown mode, a NaN
/// timeout, or a lock entry of another method; LOCKING_E_IO when an OS call
/// failed (errno is set); LOCKING_E_UNAVAILABLE when the lock service
/// (LOCKING_METHOD_POSTGRES) cannot be reached.
///
/// # Safety
/// As for locker_lock().
#[no_mangle]
pub unsafe extern "C" fn locker_acquire(locker: *mut Locker, mode: c_int, timeout: f64) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        let Some(l) = unsafe { locker.as_mut() }.map(|l| &mut l.0) else {
            return invalid("locker_acquire: locker is NULL");
        };
        let Some(mode) = mode_from_int(mode) else {
            return invalid(&format!(
                "locker_acquire: unknown mode {mode} (LOCKING_EXCLUSIVE or LOCKING_SHARED)"
            ));
        };
        match Timeout::from_secs(timeout) {
            Ok(t) => result(l.acquire(mode, t)),
            Err(e) => fail(e),
        }
    })
}

/// Writes the fencing token of the Locker's current acquisition (either
/// mode) to `*out`: a number greater than the token of every acquisition of
/// the same lock (same lockdir, ns and objname) granted before this one, in
/// any process, across crashes, restarts and locks broken by expire. A
/// resource that remembers the highest token it has accepted can refuse a
/// holder whose lock was broken. The same value for repeated calls during
/// one acquisition. Kept in the lock directory (file `<entry>+f`, see
/// docs/FORMAT.md).
///
/// Returns LOCKING_OK (`*out` written); LOCKING_E_NOT_LOCKED when this
/// Locker does not hold its lock; LOCKING_E_LOCK_LOST when the lock was
/// broken before a token was drawn; LOCKING_E_INVALID_ARGUMENT for NULL;
/// LOCKING_E_IO on an OS failure. `*out` is written only on success.
///
/// # Safety
/// `locker` is NULL or a live pointer from locker_new(); `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn locker_fencing_token(locker: *const Locker, out: *mut u64) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        let Some(l) = unsafe { locker.as_ref() }.map(|l| &l.0) else {
            return invalid("locker_fencing_token: locker is NULL");
        };
        if out.is_null() {
            return invalid("locker_fencing_token: out is NULL");
        }
        match l.fencing_token() {
            Ok(t) => {
                // SAFETY: checked non-NULL; written only on success.
                unsafe { *out = t };
                LOCKING_OK
            }
            Err(e) => fail(e),
        }
    })
}

/// Describes who holds the lock now, without locking. Returns 0 when
/// nobody holds it; otherwise the length of the description, like
/// snprintf(): at most `size - 1` bytes and a terminating NUL are written to
/// `buf` (nothing when `size` is 0, and `buf` may then be NULL), so a
/// return value `>= size` means the text was cut. Negative on failure:
/// LOCKING_E_INVALID_ARGUMENT (NULL locker, or NULL buf with size > 0),
/// LOCKING_E_IO (errno set).
///
/// The description has, for each holder, `key=value` lines, each ending in
/// a newline: `mode=exclusive|shared`, the owner record's lines (`method=`,
/// `token=`, `pid=`, `start=`, `timens=`, `pidns=`, `boot=`, `machine=`,
/// `host=`, `time=`), `state=alive|dead|unknown` (as judged from here) and
/// `age=<seconds>` since the lock was taken or last refreshed. Several
/// shared holders are separated by an empty line. The answer may be out of
/// date as soon as it is returned.
///
/// # Safety
/// `locker` is NULL or a live pointer from locker_new(); `buf` is NULL or
/// has room for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn locker_holder(
    locker: *mut Locker,
    buf: *mut c_char,
    size: usize,
) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        let Some(l) = unsafe { locker.as_ref() }.map(|l| &l.0) else {
            return invalid("locker_holder: locker is NULL");
        };
        if buf.is_null() && size > 0 {
            return invalid("locker_holder: buf is NULL but size is not 0");
        }
        let holders = match l.holders() {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        let text = holders
            .iter()
            .map(|h| h.describe())
            .collect::<Vec<_>>()
            .join("\n");
        let bytes = text.as_bytes();
        if size > 0 {
            let n = bytes.len().min(size - 1);
            // SAFETY: `buf` has room for `size` bytes, per the contract.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n) = 0;
            }
        }
        c_int::try_from(bytes.len()).unwrap_or(c_int::MAX)
    })
}

/// Releases the lock; the Locker may lock again afterwards.
///
/// Returns LOCKING_OK; LOCKING_E_NOT_LOCKED when this Locker does not hold
/// the lock (also in a child process that inherited a held Locker: the
/// parent's lock is never released by the child); LOCKING_E_LOCK_LOST when
/// another party broke the lock after `expire` (the new holder is left
/// untouched, and this Locker no longer holds anything);
/// LOCKING_E_INVALID_ARGUMENT for NULL; LOCKING_E_IO on an OS failure.
///
/// # Safety
/// As for locker_lock().
#[no_mangle]
pub unsafe extern "C" fn locker_unlock(locker: *mut Locker) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        match unsafe { locker.as_mut() }.map(|l| &mut l.0) {
            Some(l) => result(l.unlock()),
            None => invalid("locker_unlock: locker is NULL"),
        }
    })
}

/// Renews the age of a held lock, so a long-running holder is not broken
/// by waiters whose `expire` would otherwise run out.
///
/// Returns LOCKING_OK; LOCKING_E_LOCK_LOST if the lock was broken already;
/// LOCKING_E_NOT_LOCKED if this Locker does not hold it;
/// LOCKING_E_INVALID_ARGUMENT for NULL; LOCKING_E_IO on an OS failure.
///
/// # Safety
/// As for locker_lock().
#[no_mangle]
pub unsafe extern "C" fn locker_refresh(locker: *mut Locker) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        match unsafe { locker.as_mut() }.map(|l| &mut l.0) {
            Some(l) => result(l.refresh()),
            None => invalid("locker_refresh: locker is NULL"),
        }
    })
}

/// Tells whether this Locker still holds its lock.
///
/// Returns LOCKING_OK if it does; LOCKING_E_LOCK_LOST if it was broken by
/// another party, or its lock directory was renamed away or replaced; LOCKING_E_NOT_LOCKED if it does not hold it;
/// LOCKING_E_INVALID_ARGUMENT for NULL; LOCKING_E_IO on an OS failure.
///
/// # Safety
/// `locker` is NULL or a live pointer from locker_new().
#[no_mangle]
pub unsafe extern "C" fn locker_check(locker: *const Locker) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        match unsafe { locker.as_ref() }.map(|l| &l.0) {
            Some(l) => result(l.check()),
            None => invalid("locker_check: locker is NULL"),
        }
    })
}

/// Releases the lock if this Locker holds it, then frees the Locker.
/// NULL is a no-op. In a child process after fork(), frees the child's
/// copy only: the parent's lock stays held.
///
/// # Safety
/// `locker` is NULL or a pointer from locker_new() that is not used again.
#[no_mangle]
pub unsafe extern "C" fn locker_free(locker: *mut Locker) {
    ffi_boundary!((), {
        if !locker.is_null() {
            // SAFETY: it came from Box::into_raw in locker_new.
            drop(unsafe { Box::from_raw(locker) });
        }
    })
}

/// The locks of descriptors handed out by open_locked_fd(), by descriptor
/// number, with the inode the descriptor was opened on. The table owns the
/// locks, never the descriptors: the caller does, and may close one with
/// plain close() behind our back. So nothing here ever closes a descriptor
/// except close_locked_fd() on one that is still ours (same number, same
/// inode); a number found in the table when open_locked_fd() hands it out
/// again was closed by the caller, and its stale lock is released.
static OPEN_FILES: ForkMutex<Option<OpenFiles>> = ForkMutex::new(None);

/// Descriptor number -> (its lock, the (device, inode) it was opened on).
type OpenFiles = HashMap<c_int, (CoreLocker, (u64, u64))>;

/// The (device, inode) of the file open at `fd`; `None` if `fd` is not open.
fn inode_of(fd: c_int) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat takes a descriptor number (one that is not open fails
    // with EBADF, whatever the caller did with it) and writes one
    // `struct stat` through its pointer; `st` is a writable, aligned
    // `libc::stat` that lives across the call.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled in the whole struct.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// Opens `filename` for reading and writing with an exclusive cooperative
/// lock: created with mode 0666 & ~umask if missing, positioned at offset
/// 0, close-on-exec. Every path that reaches the same file takes the same
/// lock: on a local file system the lock is named by the file's device and
/// inode (symlinks, `..`, hard links, renamed directories all exclude each
/// other; hard links in different directories need a common `lockdir`), on
/// a network or FUSE file system by its canonical path. When the lock is
/// had, the descriptor is the file at `filename` at that moment: a file
/// deleted or replaced while the caller waited is opened and locked anew.
///
/// - `timeout`, `expire`, `method`: as for locker_new().
/// - `lockdir`: where the lock lives; NULL means the file's own directory.
///
/// Returns the file descriptor (>= 0), owned by the caller, which must
/// release it with close_locked_fd(). A descriptor closed with plain
/// close() keeps its lock until `expire` runs out or, since the holder is
/// then judged alive, until the process exits (KERNEL: until the process
/// exits). On failure returns LOCKING_E_CANNOT_GET_LOCK (timeout),
/// LOCKING_E_INVALID_ARGUMENT (NULL or empty filename, NaN, unknown method)
/// or LOCKING_E_IO (the file or lock directory cannot be opened; errno set).
///
/// # Safety
/// `filename` and `lockdir` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn open_locked_fd(
    filename: *const c_char,
    timeout: f64,
    lockdir: *const c_char,
    expire: f64,
    method: c_int,
) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        // SAFETY: per the contract.
        let Some(name) = (unsafe { bytes(filename) }) else {
            return invalid("open_locked_fd: filename is NULL");
        };
        // SAFETY: per the contract.
        let dir = unsafe { bytes(lockdir) }.map(|d| Path::new(OsStr::from_bytes(d)));
        let Some(method) = method_from_int(method) else {
            return invalid(&format!("open_locked_fd: unknown method {method}"));
        };
        let (timeout, expire) = match (Timeout::from_secs(timeout), Expire::from_secs(expire)) {
            (Ok(t), Ok(e)) => (t, e),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        };
        match open_locked(
            Path::new(OsStr::from_bytes(name)),
            timeout,
            dir,
            expire,
            method,
        ) {
            Ok(f) => {
                let (file, locker) = f.into_parts();
                let fd = file.into_raw_fd();
                let ino = inode_of(fd).unwrap_or_default();
                let stale = {
                    let mut map = OPEN_FILES.lock();
                    map.get_or_insert_with(HashMap::new)
                        .insert(fd, (locker, ino))
                };
                // Released outside the table's lock; its descriptor is long
                // gone (the number was free to be handed out again).
                drop(stale);
                fd
            }
            Err(e) => fail(e),
        }
    })
}

/// Releases the lock of a descriptor from open_locked_fd() and closes it.
///
/// Returns LOCKING_OK; LOCKING_E_NOT_LOCKED when `fd` did not come from
/// open_locked_fd() (or was closed already: the descriptor is then left
/// alone, and never closed by the library); LOCKING_E_LOCK_LOST when the
/// lock had been broken after `expire` (the descriptor is closed all the
/// same); LOCKING_E_IO on an OS failure. In a child process after fork(),
/// closes the child's descriptor, leaves the parent's lock held and returns
/// LOCKING_OK. A descriptor number closed with plain close() and handed out
/// again by open_locked_fd() belongs to the new file: the old lock is
/// released then, and the library never closes a number it does not own.
#[no_mangle]
pub extern "C" fn close_locked_fd(fd: c_int) -> c_int {
    ffi_boundary!(LOCKING_E_INTERNAL, {
        let taken = {
            let mut guard = OPEN_FILES.lock();
            let map = guard.get_or_insert_with(HashMap::new);
            match map.get(&fd) {
                Some((_, ino)) if inode_of(fd) == Some(*ino) => map.remove(&fd).map(|(l, _)| l),
                _ => None,
            }
        };
        match taken {
            Some(mut locker) => {
                let released = locker.unlock();
                // SAFETY: the descriptor is ours: handed out by
                // open_locked_fd() and verified above to still be that file.
                unsafe { libc::close(fd) };
                match released {
                    // A child after fork(): the parent's lock stays held.
                    Err(Error::NotLocked(_)) => LOCKING_OK,
                    other => result(other),
                }
            }
            None => fail(Error::NotLocked(format!(
                "descriptor {fd}, which did not come from open_locked_fd() or was closed already,"
            ))),
        }
    })
}

/// A static description of a return code, for any int; never NULL.
#[no_mangle]
pub extern "C" fn locking_strerror(code: c_int) -> *const c_char {
    ffi_boundary!(c"internal error in liblocking".as_ptr(), {
        strerror(code).as_ptr()
    })
}

fn strerror(code: c_int) -> &'static CStr {
    match code {
        LOCKING_OK => c"success",
        LOCKING_E_LOCKER_FAILED => c"the lock could not be had within the timeout",
        LOCKING_E_CANNOT_GET_LOCK => c"the file's lock could not be had within the timeout",
        LOCKING_E_INVALID_ARGUMENT => c"invalid argument",
        LOCKING_E_IO => c"an operating system call failed (see errno)",
        LOCKING_E_ALREADY_LOCKED => c"this Locker already holds its lock",
        LOCKING_E_NOT_LOCKED => c"not locked by this Locker or descriptor",
        LOCKING_E_LOCK_LOST => c"the lock was broken by another party after its expire time",
        LOCKING_E_INTERNAL => c"internal error in liblocking",
        LOCKING_E_UNAVAILABLE => c"the lock service or a facility it needs is not available",
        _ => c"unknown liblocking return code",
    }
}

/// A message about the calling thread's most recent failure (which call,
/// which path, the OS error); "" when there was none; never NULL. The
/// string stays valid until the next failing liblocking call on this
/// thread.
#[no_mangle]
pub extern "C" fn locking_last_error() -> *const c_char {
    ffi_boundary!(c"".as_ptr(), {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

/// The library version, e.g. "0.1.0"; a static string, never NULL.
#[no_mangle]
pub extern "C" fn locking_version() -> *const c_char {
    ffi_boundary!(c"".as_ptr(), {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}
