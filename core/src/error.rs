//! The error type of the safe core. The FFI layer maps each variant to one
//! fixed `LOCKING_E_*` code; nothing here knows about C.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in liblocking. Messages read like a C
/// library's: what failed, on what, and why; no type names, no
/// "(os error N)".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Locker::lock` did not get the lock within its timeout.
    #[error("could not lock {name} within {timeout} s")]
    LockerFailed {
        /// A printable form of `ns:objname`.
        name: String,
        /// The timeout that ran out, in seconds.
        timeout: f64,
    },
    /// `open_locked` did not get the lock within its timeout.
    #[error("could not lock the file {path} within {timeout} s")]
    CannotGetLock {
        /// The file that was to be opened.
        path: String,
        /// The timeout that ran out, in seconds.
        timeout: f64,
    },
    /// An argument was rejected before anything was touched.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The lock directory holds something this library did not make or
    /// cannot trust (another method's entry, a symlink, a file with other
    /// names): reported, never used.
    #[error("{0}")]
    Untrusted(String),
    /// The operation is not possible here (a file system without the locks
    /// a method needs, a mode a method does not offer).
    #[error("{0}")]
    Unsupported(String),
    /// An OS call failed; `source` keeps the OS error.
    #[error("{call} {}: {}{}", path.display(), strerror(source), hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Io {
        /// The system call or operation that failed, e.g. `"open"`.
        call: &'static str,
        /// The path it was applied to, byte for byte.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
        /// What the failure means here, when the OS error alone does not
        /// say (e.g. why `ENOLCK` refuses a method on this file system).
        hint: Option<&'static str>,
    },
    /// `lock` on a Locker that already holds its lock.
    #[error("{0} is already held by this Locker (locks are not reentrant)")]
    AlreadyLocked(String),
    /// `unlock`/`check`/`refresh` on a Locker that does not hold its lock,
    /// or `close_locked` on something that did not come from `open_locked`.
    #[error("{0} is not held by this Locker")]
    NotLocked(String),
    /// The lock was broken by another party (after `expire`).
    #[error("lost the lock {0} (another party broke it after its expire or judged its holder dead, or the lock's directory or session went away)")]
    LockLost(String),
}

/// The OS's text for an I/O error, without Rust's " (os error N)".
fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error with an explicit errno value.
    pub(crate) fn os(call: &'static str, path: impl Into<PathBuf>, errno: i32) -> Self {
        Error::Io {
            call,
            path: path.into(),
            source: io::Error::from_raw_os_error(errno),
            hint: None,
        }
    }

    /// An I/O error with an explicit errno value and a hint saying what it
    /// means here.
    pub(crate) fn os_hint(
        call: &'static str,
        path: impl Into<PathBuf>,
        errno: i32,
        hint: &'static str,
    ) -> Self {
        Error::Io {
            call,
            path: path.into(),
            source: io::Error::from_raw_os_error(errno),
            hint: Some(hint),
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

impl From<Error> for io::Error {
    /// The OS error for `Io`; otherwise an error of the closest kind
    /// (`TimedOut`, `InvalidInput`, `Unsupported`, ...) carrying the message.
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => {
                if let Some(n) = source.raw_os_error() {
                    return io::Error::new(io::Error::from_raw_os_error(n).kind(), e);
                }
                source.kind()
            }
            Error::LockerFailed { .. } | Error::CannotGetLock { .. } => io::ErrorKind::TimedOut,
            Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::Untrusted(_) => io::ErrorKind::InvalidData,
            Error::Unsupported(_) => io::ErrorKind::Unsupported,
            Error::AlreadyLocked(_) | Error::NotLocked(_) | Error::LockLost(_) => {
                io::ErrorKind::Other
            }
        };
        io::Error::new(kind, e)
    }
}
