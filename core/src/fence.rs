//! Fencing tokens (docs/FORMAT.md, "Fencing counter"; docs/PROTOCOL.md,
//! "Fencing tokens").
//!
//! Every lock entry `E` has a counter file `E+f` beside it, never removed.
//! A draw appends one byte to it (`O_APPEND`) and takes the file offset
//! after that byte as the token: the kernel places each append at the end
//! and moves the offset in one step, so concurrent draws from any process
//! get distinct numbers, in the order the appends happened, and a crash
//! can never leave a half-done draw. Whole 4 KiB blocks before the end are
//! punched out now and then, so the file stays sparse.
//!
//! The token is what makes fencing work only if it is drawn *while the
//! lock is held* and the holder then verifies it still holds the lock: a
//! holder broken by expire before it drew fails that verification, so every
//! token handed out is greater than the tokens of all acquisitions granted
//! before it (the proof is in docs/PROTOCOL.md). The verification is the
//! caller's (`Locker`), which knows how to check its acquisition.

use crate::error::{Error, Result};
use crate::lockdir::Entry;
use crate::sys;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Punch the counter's whole blocks every this many draws.
const PUNCH_EVERY: u64 = 1 << 16;

/// The counter file name of an entry.
pub fn counter_name(entry: &Entry) -> String {
    format!("{}+f", entry.name)
}

/// A Locker's descriptor on its counter file, opened on first use and
/// reopened in a child after fork() (an inherited description shares its
/// offset with the parent's, which would mix up both processes' draws).
#[derive(Debug)]
pub struct Counter {
    fd: AtomicI32,
    pid: AtomicU32,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            fd: AtomicI32::new(-1),
            pid: AtomicU32::new(0),
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let fd = *self.fd.get_mut();
        if fd >= 0 {
            // SAFETY: the descriptor was opened by `open` and is owned here.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

fn open(entry: &Entry) -> Result<OwnedFd> {
    let name = counter_name(entry);
    let cname = sys::cname(&name);
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW;
    let fd = sys::openat(entry.dirfd(), &cname, flags, 0o666).map_err(|e| match e {
        libc::ELOOP | libc::EISDIR | libc::ENXIO => not_a_counter(entry, &name),
        e => Error::os("open", entry.path_of(&name), e),
    })?;
    let st = sys::fstat(fd.as_raw_fd()).map_err(|e| Error::os("fstat", entry.path_of(&name), e))?;
    // Never append to a file that has other names: it may be anything.
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 1 {
        return Err(not_a_counter(entry, &name));
    }
    Ok(fd)
}

fn not_a_counter(entry: &Entry, name: &str) -> Error {
    Error::Untrusted(format!(
        "{} is not a plain fencing counter file (a directory, a symlink, or a file with other names)",
        entry.path_of(name).display()
    ))
}

impl Counter {
    fn fd(&self, entry: &Entry) -> Result<RawFd> {
        let me = sys::pid();
        let fd = self.fd.load(Ordering::Acquire);
        if fd >= 0 && self.pid.load(Ordering::Acquire) == me {
            return Ok(fd);
        }
        let fresh = open(entry)?.into_raw_fd();
        match self
            .fd
            .compare_exchange(fd, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.pid.store(me, Ordering::Release);
                if fd >= 0 {
                    // The parent's description, inherited: close our copy.
                    // SAFETY: we replaced it, nobody else uses this number
                    // in this process any more.
                    unsafe { libc::close(fd) };
                }
                Ok(fresh)
            }
            Err(other) => {
                // Another thread of this process opened it first.
                // SAFETY: `fresh` was opened above and never shared.
                unsafe { libc::close(fresh) };
                Ok(other)
            }
        }
    }

    /// Draws the next token of `entry`'s counter (>= 1).
    pub fn draw(&self, entry: &Entry) -> Result<u64> {
        let fd = self.fd(entry)?;
        let token = sys::append_byte(fd)
            .map_err(|e| Error::os("write", entry.path_of(&counter_name(entry)), e))?;
        if token % PUNCH_EVERY == 0 {
            let _ = sys::punch_hole(fd, (token - 1) as i64 & !4095);
        }
        Ok(token)
    }
}
