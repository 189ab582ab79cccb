//! Waiting for a lock without burning a core: an inotify watch on the lock
//! directory for the entry's removal (or the kernel method's doorbell), a
//! pidfd on a holder of this machine so its exit wakes us at once, and a
//! slow fallback poll for file systems that send no events.

use crate::forksafe::ForkMutex;
use crate::lockdir::Entry;
use crate::owner::{self, Identity, Liveness};
use crate::sys::{self, Inotify};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Idle inotify instances of this process (and the PID they belong to).
/// Waits reuse them: closing one that had a watch costs an RCU grace
/// period, several milliseconds that a new holder would spend holding the
/// lock.
static POOL: ForkMutex<(u32, Vec<OwnedFd>)> = ForkMutex::new((0, Vec::new()));
/// Most idle instances kept.
const POOL_MAX: usize = 16;

fn pooled_instance() -> Option<OwnedFd> {
    let mut pool = POOL.lock();
    if pool.0 != sys::pid() {
        // Inherited across fork(): those instances are shared with the
        // parent. Let go of our copies.
        *pool = (sys::pid(), Vec::new());
    }
    let fd = pool.1.pop();
    drop(pool);
    fd.or_else(|| sys::inotify_new().ok())
}

fn return_instance(fd: OwnedFd) {
    let mut pool = POOL.lock();
    if pool.0 == sys::pid() && pool.1.len() < POOL_MAX {
        pool.1.push(fd);
    }
}

/// Fallback poll interval while an inotify watch is in place (events do not
/// cross network or FUSE mounts, so we still look now and then).
pub const WATCHED_POLL: Duration = Duration::from_millis(100);
/// Longest poll interval when nothing can be watched.
pub const UNWATCHED_POLL_MAX: Duration = Duration::from_millis(50);
/// Longest poll interval on a network or FUSE file system, where inotify
/// sees only this mount's changes: releases made elsewhere are found by
/// looking, from 1 ms growing to this.
pub const SHARED_FS_POLL_MAX: Duration = Duration::from_millis(20);

/// The state of one wait (one `lock` call that had to wait).
pub struct Waiter {
    inotify: Option<Inotify>,
    name: Vec<u8>,
    pidfd: Option<(u32, Option<u64>, OwnedFd)>,
    backoff: Duration,
    /// Poll with a growing interval even with a watch (shared file system).
    poll_anyway: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(i) = self.inotify.take() {
            return_instance(i.unwatch());
        }
    }
}

/// Why `Waiter::wait` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Woke {
    /// Something happened, or the poll interval passed: try again.
    Retry,
    /// The holder's process exited.
    HolderExited,
}

impl Waiter {
    /// Starts watching the directory open at `dirfd` for `mask` events on
    /// any name in it (`None` if it cannot be watched).
    pub fn on_dir(dirfd: std::os::fd::RawFd, mask: u32, shared_fs: bool) -> Option<Waiter> {
        let fd = pooled_instance()?;
        let inotify = Inotify::watch_dir(fd, dirfd, mask)
            .map_err(return_instance)
            .ok()?;
        Some(Waiter {
            inotify: Some(inotify),
            name: Vec::new(),
            pidfd: None,
            backoff: Duration::from_millis(1),
            poll_anyway: shared_fs,
        })
    }

    /// Wakes only for events on `name` (a directory watch made by
    /// [`Waiter::on_dir`] otherwise wakes for any name).
    pub fn only(&mut self, name: &[u8]) {
        self.name = name.to_vec();
    }

    /// A wait with nothing to watch: polls with a growing interval.
    pub fn polling() -> Waiter {
        Waiter {
            inotify: None,
            name: Vec::new(),
            pidfd: None,
            backoff: Duration::from_millis(1),
            poll_anyway: false,
        }
    }

    /// Starts watching `entry` for `mask` events.
    pub fn new(entry: &Entry, mask: u32) -> Waiter {
        let inotify = pooled_instance().and_then(|fd| {
            Inotify::watch_dir(fd, entry.dirfd(), mask)
                .map_err(return_instance)
                .ok()
        });
        Waiter {
            inotify,
            name: entry.name.as_bytes().to_vec(),
            pidfd: None,
            backoff: Duration::from_millis(1),
            poll_anyway: entry.dir.shared(),
        }
    }

    /// True when this wait already holds a pidfd on exactly that process
    /// (and it has not exited, or `wait` would have said so): it is alive,
    /// no need to look in /proc again.
    pub fn watching(&self, holder: &Identity) -> bool {
        self.pidfd
            .as_ref()
            .is_some_and(|(pid, start, _)| *pid == holder.pid && *start == holder.start)
    }

    /// Watches the holder's process if it can be seen from here. Returns
    /// `Liveness::Dead` if it turns out to be gone already.
    fn watch_holder(&mut self, holder: &Identity, me: &Identity) -> Liveness {
        if !owner::pid_visible(holder, me) {
            self.pidfd = None;
            return Liveness::Unknown;
        }
        if let Some((pid, start, _)) = &self.pidfd {
            if *pid == holder.pid && *start == holder.start {
                return Liveness::Alive;
            }
        }
        self.pidfd = None;
        let Ok(fd) = sys::pidfd_open(holder.pid) else {
            return owner::process_liveness(holder.pid, owner::comparable_start(holder, me));
        };
        // The PID may have been reused between the record and the pidfd:
        // check the start time now that the pidfd pins the process.
        let live = owner::process_liveness(holder.pid, owner::comparable_start(holder, me));
        if live == Liveness::Alive {
            self.pidfd = Some((holder.pid, holder.start, fd));
        }
        live
    }

    /// Sleeps until an event for our entry, the holder's exit, `until`, or
    /// the fallback poll interval, whichever comes first.
    pub fn wait(&mut self, until: Option<Instant>, holder: Option<&Identity>) -> Woke {
        if let Some(h) = holder {
            if self.watch_holder(h, &owner::identity()) == Liveness::Dead {
                return Woke::HolderExited;
            }
        } else {
            self.pidfd = None;
        }
        let interval = if self.poll_anyway {
            let b = self.backoff;
            self.backoff = (b * 2).min(SHARED_FS_POLL_MAX);
            b
        } else if self.inotify.is_some() {
            WATCHED_POLL
        } else {
            let b = self.backoff;
            self.backoff = (b * 2).min(UNWATCHED_POLL_MAX);
            b
        };
        let stop = Instant::now() + interval;
        let stop = until.map_or(stop, |u| u.min(stop));
        loop {
            let left = stop.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woke::Retry;
            }
            let mut fds = Vec::with_capacity(2);
            if let Some(i) = &self.inotify {
                fds.push(i.raw());
            }
            let pid_index = self.pidfd.as_ref().map(|(_, _, fd)| {
                fds.push(fd.as_raw_fd());
                fds.len() - 1
            });
            let ready = match sys::poll_readable(&fds, Some(left)) {
                Ok(r) => r,
                Err(_) => {
                    sys::sleep(left.min(UNWATCHED_POLL_MAX));
                    return Woke::Retry;
                }
            };
            if pid_index.is_some_and(|p| ready.contains(&p)) {
                self.pidfd = None;
                return Woke::HolderExited;
            }
            if self.inotify.is_some()
                && ready.contains(&0)
                && self
                    .inotify
                    .as_ref()
                    .is_some_and(|i| i.drain_matches(&self.name) || self.name.is_empty())
            {
                return Woke::Retry;
            }
            // Events for other names, or a signal: keep waiting.
        }
    }
}
