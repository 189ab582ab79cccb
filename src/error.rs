//! The error type of the safe core. The FFI layer maps each variant to one
//! fixed `LOCKING_E_*` code; nothing here knows about C.

use std::io;

/// Everything that can go wrong in liblocking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Locker::lock` did not get the lock within its timeout.
    #[error("LockerFailed: could not lock {name} within {timeout} s")]
    LockerFailed {
        /// A printable form of `ns:objname`.
        name: String,
        /// The timeout that ran out, in seconds.
        timeout: f64,
    },
    /// `open_locked` did not get the lock within its timeout.
    #[error("CannotGetLock: could not lock file {path} within {timeout} s")]
    CannotGetLock {
        /// The file that was to be opened.
        path: String,
        /// The timeout that ran out, in seconds.
        timeout: f64,
    },
    /// An argument was rejected before anything was touched.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An OS call failed; `source` keeps the OS error.
    #[error("{call}({path}): {source}")]
    Io {
        /// The system call or operation that failed.
        call: &'static str,
        /// The path it was applied to.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `lock` on a Locker that already holds its lock.
    #[error("already locked: {0} is held by this Locker (locks are not reentrant)")]
    AlreadyLocked(String),
    /// `unlock`/`check`/`refresh` on a Locker that does not hold its lock,
    /// or `close_locked` on something that did not come from `open_locked`.
    #[error("not locked: {0}")]
    NotLocked(String),
    /// The lock was broken by another party (after `expire`).
    #[error("lock lost: {0} was broken by another party (its holder judged dead, or the lock older than the breaker's expire)")]
    LockLost(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error with an explicit errno value.
    pub(crate) fn os(call: &'static str, path: impl Into<String>, errno: i32) -> Self {
        Error::Io {
            call,
            path: path.into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The OS error number carried by an [`Error::Io`], if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
