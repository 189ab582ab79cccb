//! What the public [`crate::Locker`] needs from the thing that really holds
//! its lock: the lock-directory methods (`dirlock.rs`) or a lock service.

use crate::error::Result;
use crate::options::{Method, Mode, Timeout};
use crate::owner::{Liveness, Record};
use std::time::Duration;

/// One way of holding a named lock. Every method keeps the contract of
/// `docs/PROTOCOL.md`: exclusion, timeouts, lost locks reported, fork
/// safety (a child never holds or releases its parent's lock).
pub trait Backing: Send + Sync + std::fmt::Debug {
    /// The method.
    fn method(&self) -> Method;
    /// Where the lock lives, for messages.
    fn place(&self) -> String;
    /// How this process holds the lock, if it does.
    fn mode(&self) -> Option<Mode>;
    /// Acquires in `mode`, waiting as `timeout` allows.
    fn acquire(&mut self, mode: Mode, timeout: Timeout) -> Result<()>;
    /// Releases.
    fn unlock(&mut self) -> Result<()>;
    /// `Ok` while still held.
    fn check(&self) -> Result<()>;
    /// Renews the lock's age.
    fn refresh(&mut self) -> Result<()>;
    /// The current acquisition's fencing token.
    fn fencing_token(&self) -> Result<u64>;
    /// Who holds the lock now.
    fn holders(&self) -> Result<Vec<HolderInfo>>;
}

/// What [`crate::Locker::holders`] found out about a party holding a lock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HolderInfo {
    /// How it holds the lock.
    pub mode: Mode,
    /// The holder's owner record, if readable.
    pub record: Option<Record>,
    /// Whether the holder is alive, as judged from here.
    pub liveness: Liveness,
    /// Time since the lock was taken or last refreshed.
    pub age: Option<Duration>,
    /// Further `key=value` facts a method knows (e.g. the server-side
    /// session of a lock service), rendered after the record's lines.
    pub extra: Vec<(String, String)>,
}

impl HolderInfo {
    /// The holder as `key=value` lines (each ending in a newline): `mode=`,
    /// the owner record's lines (`method=`, `token=`, `pid=`, `start=`,
    /// `timens=`, `pidns=`, `boot=`, `machine=`, `host=`, `time=`), then
    /// `state=alive|dead|unknown` and `age=<seconds>`.
    pub fn describe(&self) -> String {
        let mut out = format!("mode={}\n", self.mode.name());
        if let Some(r) = &self.record {
            let text = String::from_utf8_lossy(&r.render()).into_owned();
            for line in text.lines().skip(1) {
                if line == "end" {
                    break;
                }
                out.push_str(line);
                out.push('\n');
            }
        }
        for (k, v) in &self.extra {
            out.push_str(&format!("{k}={v}\n"));
        }
        let state = match self.liveness {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        };
        out.push_str(&format!("state={state}\n"));
        match self.age {
            Some(a) => out.push_str(&format!("age={:.3}\n", a.as_secs_f64())),
            None => out.push_str("age=-\n"),
        }
        out
    }
}
