//! The waiting queue (docs/PROTOCOL.md, "Hand-over order"; docs/FORMAT.md,
//! "Queue directory"): first come, first served for the lock-directory
//! methods, exclusive and shared alike.
//!
//! A locker that finds the lock busy, or finds others queued, takes a
//! ticket in `E+q/`: it makes `w.<token>` (its owner record, visible at
//! once), draws a number from the lock's counter (`E+f`, the fencing
//! counter) and renames its ticket `q.<n>.<token>` (`n` zero-padded). Only
//! the head of the queue (no `w.*` ticket but its own and no `q.*` ticket
//! with a smaller number) tries the lock; the others wait for the ticket
//! ahead of them to go. A ticket appears before its number is drawn, so a
//! locker that drew later always finds it, numbered or not: no locker
//! overtakes one that drew before it. Tickets of dead waiters are removed
//! at once by the next in line (judged from their records, as holders are),
//! tickets not refreshed within `expire` (a stopped waiter) are removed
//! too; the last to leave removes the directory.

use crate::error::{Error, Result};
use crate::fence::Counter;
use crate::lockdir::Entry;
use crate::method::{lock_age, read_record};
use crate::options::Expire;
use crate::owner::{self, Identity, Liveness, Stamp};
use crate::sys;
use crate::wait::Waiter;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Leftovers of waiters that died while making a ticket (`~w.*`) are
/// removed once older than this.
const ORPHAN_AGE: Duration = Duration::from_secs(10);

/// The queue directory name of an entry.
pub fn dir_name(entry: &Entry) -> String {
    format!("{}+q", entry.name)
}

fn open_dir(entry: &Entry) -> Result<Option<OwnedFd>> {
    entry.open_side_dir(&dir_name(entry), "queue directory")
}

/// True when somebody is queued (the queue directory exists).
pub fn occupied(entry: &Entry) -> Result<bool> {
    let name = sys::cname(&dir_name(entry));
    match sys::lstatat(entry.dirfd(), &name) {
        Ok(_) => Ok(true),
        Err(libc::ENOENT) => Ok(false),
        Err(e) => Err(Error::os("stat", entry.path_of(&dir_name(entry)), e)),
    }
}

/// Our place in the queue.
#[derive(Debug)]
pub struct Ticket {
    dir: OwnedFd,
    file: OwnedFd,
    name: CString,
    number: u64,
    token: String,
    path: PathBuf,
}

/// What a look at the queue found.
#[derive(Debug)]
pub enum Place {
    /// Nobody is ahead of us: try the lock.
    Head,
    /// Somebody is.
    Behind {
        /// The ticket just ahead (its name in the queue directory).
        ahead_name: Vec<u8>,
        /// The waiter just ahead, to watch its process.
        ahead: Option<Identity>,
        /// When its ticket expires (for our expire).
        expires_at: Option<Instant>,
    },
    /// Our ticket was removed (judged stale by another waiter): queue again.
    Lost,
}

fn parse(name: &[u8]) -> Option<(Option<u64>, &str)> {
    let s = std::str::from_utf8(name).ok()?;
    if let Some(tok) = s.strip_prefix("w.") {
        return Some((None, tok));
    }
    let rest = s.strip_prefix("q.")?;
    let (n, tok) = rest.split_once('.')?;
    Some((Some(n.parse().ok()?), tok))
}

/// Takes a ticket (see the module docs).
pub fn enqueue(entry: &Entry, counter: &Counter, stamp: &Stamp) -> Result<Ticket> {
    let dname = dir_name(entry);
    for _ in 0..100 {
        let dir = match open_dir(entry)? {
            Some(d) => d,
            None => {
                match sys::mkdirat(entry.dirfd(), &sys::cname(&dname), 0o777) {
                    Ok(()) | Err(libc::EEXIST) => {}
                    Err(e) => return Err(Error::os("mkdir", entry.path_of(&dname), e)),
                }
                match open_dir(entry)? {
                    Some(d) => d,
                    None => continue,
                }
            }
        };
        let dfd = dir.as_raw_fd();
        let path = entry.path_of(&dname).join(format!("w.{}", stamp.token));
        let tmp = sys::cname(&format!("~w.{}", stamp.token));
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let file = match sys::openat(dfd, &tmp, flags, 0o666) {
            Ok(fd) => fd,
            // The last waiter removed the directory meanwhile.
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(Error::os("open", path, e)),
        };
        let visible = sys::cname(&format!("w.{}", stamp.token));
        let made = sys::pwrite_all(file.as_raw_fd(), &stamp.render(), 0)
            .map_err(|e| Error::os("write", path.clone(), e))
            .and_then(|()| match sys::renameat_between(dfd, &tmp, dfd, &visible) {
                Ok(()) => Ok(true),
                Err(libc::ENOENT) => Ok(false),
                Err(e) => Err(Error::os("rename", path.clone(), e)),
            });
        match made {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                let _ = sys::unlinkat(dfd, &tmp, 0);
                return Err(e);
            }
        }
        let number = match counter.draw(entry) {
            Ok(n) => n,
            Err(e) => {
                let _ = sys::unlinkat(dfd, &visible, 0);
                return Err(e);
            }
        };
        let name = sys::cname(&format!("q.{number:020}.{}", stamp.token));
        match sys::renameat_between(dfd, &visible, dfd, &name) {
            Ok(()) => {}
            // Judged stale and removed already (a stopped waiter): again.
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(Error::os("rename", path, e)),
        }
        return Ok(Ticket {
            dir,
            file,
            name,
            number,
            token: stamp.token.clone(),
            path: entry
                .path_of(&dname)
                .join(format!("q.{number:020}.{}", stamp.token)),
        });
    }
    Err(Error::Untrusted(format!(
        "{} keeps vanishing: cannot queue",
        entry.path_of(&dname).display()
    )))
}

impl Ticket {
    /// Looks at the queue: says whether we are at the head, or which ticket
    /// is just ahead of us, removing it if its waiter is dead or its ticket
    /// expired (each waiter judges only the one just ahead: a dead waiter
    /// further ahead is the business of the one behind it).
    /// `known_alive` says a waiter is alive without looking (its process is
    /// being watched already).
    pub fn place(&self, expire: Expire, known_alive: impl Fn(&Identity) -> bool) -> Result<Place> {
        let dfd = self.dir.as_raw_fd();
        let me = owner::identity();
        let mut head_once = false;
        for _ in 0..1000 {
            let names =
                sys::list_dir(dfd).map_err(|e| Error::os("readdir", self.path.clone(), e))?;
            let mut ours = false;
            // The ticket just ahead: the largest number below ours; an
            // unnumbered one (drawing now, before or after us: we cannot
            // tell) counts as ahead until it is numbered.
            let mut ahead: Option<(u64, Vec<u8>)> = None;
            for name in names {
                if name.starts_with(b"~w.") {
                    sweep_orphan(dfd, &name);
                    continue;
                }
                let Some((number, token)) = parse(&name) else {
                    continue;
                };
                if token == self.token {
                    ours |= number == Some(self.number);
                    continue;
                }
                let key = match number {
                    // Equal numbers happen where appends are not atomic
                    // between the parties (a lock directory seen through
                    // two mounts, a network file system): the token breaks
                    // the tie, so two waiters never wait for each other.
                    Some(n) if (n, token) > (self.number, self.token.as_str()) => continue,
                    Some(n) => n,
                    None => 0,
                };
                if ahead.as_ref().map_or(true, |(k, _)| key >= *k) {
                    ahead = Some((key, name));
                }
            }
            if !ours {
                return Ok(Place::Lost);
            }
            let Some((_, name)) = ahead else {
                // A listing may miss a ticket that is renamed (numbered)
                // while it runs: be head only when two listings agree.
                if head_once {
                    return Ok(Place::Head);
                }
                head_once = true;
                continue;
            };
            let Ok(cname) = CString::new(name.clone()) else {
                return Ok(Place::Head);
            };
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
            let Ok(fd) = sys::openat(dfd, &cname, flags, 0) else {
                continue; // gone meanwhile: look again
            };
            let record = read_record(fd.as_raw_fd());
            let mtime = sys::fstat(fd.as_raw_fd()).ok().map(|st| sys::mtime(&st));
            let alive = record.as_ref().is_some_and(|r| known_alive(&r.owner));
            let dead = !alive && owner::judge(record.as_ref(), &me) == Liveness::Dead;
            let expired = match (expire, mtime) {
                (Expire::After(e), Some(m)) => lock_age(m) >= e,
                _ => false,
            };
            if dead || expired {
                // By this exact name: a ticket renumbered meanwhile stays.
                let _ = sys::unlinkat(dfd, &cname, 0);
                continue;
            }
            let expires_at = match (expire, mtime) {
                (Expire::After(e), Some(m)) => {
                    Instant::now().checked_add(e.saturating_sub(lock_age(m)))
                }
                _ => None,
            };
            return Ok(Place::Behind {
                ahead_name: name,
                ahead: record.map(|r| r.owner),
                expires_at,
            });
        }
        Err(Error::Untrusted(format!(
            "{} keeps changing: cannot find our place",
            self.path.display()
        )))
    }

    /// Renews the ticket's age (a waiter that is not stopped keeps its
    /// place whatever the others' expire).
    pub fn refresh(&self) {
        let _ = sys::futimens_now(self.file.as_raw_fd());
    }

    /// A wait for the ticket `ahead` to go (removed, or renamed when it is
    /// numbered): inotify on the queue directory, waking for that name
    /// only, so a queue of n waiters does not wake n of them per step.
    pub fn watch(&self, ahead: &[u8], shared_fs: bool) -> Option<Waiter> {
        let mut w = Waiter::on_dir(
            self.dir.as_raw_fd(),
            libc::IN_DELETE | libc::IN_MOVED_FROM,
            shared_fs,
        )?;
        w.only(ahead);
        Some(w)
    }

    /// Leaves the queue (granted, timed out, or failed), removing the
    /// directory if we were the last.
    pub fn leave(self, entry: &Entry) {
        let _ = sys::unlinkat(self.dir.as_raw_fd(), &self.name, 0);
        let _ = sys::unlinkat(
            entry.dirfd(),
            &sys::cname(&dir_name(entry)),
            libc::AT_REMOVEDIR,
        );
    }
}

fn sweep_orphan(dfd: RawFd, name: &[u8]) {
    let Ok(cname) = CString::new(name.to_vec()) else {
        return;
    };
    let Ok(st) = sys::lstatat(dfd, &cname) else {
        return;
    };
    if lock_age(sys::mtime(&st)) >= ORPHAN_AGE {
        let _ = sys::unlinkat(dfd, &cname, 0);
    }
}
