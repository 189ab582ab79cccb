//! Lock methods and the validated numeric options (timeout, expire).

use crate::error::{Error, Result};
use std::time::Duration;

/// How a lock is represented in the lock directory. See docs/PROTOCOL.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// A directory made with mkdir(2) (prepared privately, then renamed into place).
    Mkdir,
    /// A regular file created exclusively (O_TMPFILE/O_EXCL, then link(2)).
    OpenCreate,
    /// No locking at all: every lock succeeds at once. For tests.
    Fake,
    /// A Linux open file description lock (F_OFD_SETLK) on a lock file.
    Kernel,
    /// A PostgreSQL session-level advisory lock; the lock directory is a
    /// libpq connection string (docs/PROTOCOL.md, "PostgreSQL").
    Postgres,
}

impl Method {
    /// The method's name as written in owner records and messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Mkdir => "mkdir",
            Method::OpenCreate => "opencreate",
            Method::Fake => "fake",
            Method::Kernel => "kernel",
            Method::Postgres => "postgres",
        }
    }

    /// The method for a name as written by [`Method::name`].
    pub fn from_name(s: &str) -> Option<Method> {
        [
            Method::Mkdir,
            Method::OpenCreate,
            Method::Fake,
            Method::Kernel,
            Method::Postgres,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }
}

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// One holder at a time.
    Exclusive,
    /// Any number of shared holders at once, and no exclusive one. A
    /// waiting exclusive locker is not starved: shared lockers that come
    /// after it wait behind it.
    Shared,
}

impl Mode {
    /// `"exclusive"` or `"shared"`, as in `locker_holder`'s text.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

/// How long `lock` waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timeout {
    /// Wait until the lock is had (`timeout < 0`).
    Forever,
    /// Try once (`timeout == 0`) or wait at most this long.
    After(Duration),
}

impl Timeout {
    /// Try once, never wait.
    pub const TRY: Timeout = Timeout::After(Duration::ZERO);

    /// Seconds as C, Python and the command line give them: NaN is
    /// rejected, a negative value means forever, and values too large for
    /// a `Duration` (including +inf) also mean forever.
    pub fn from_secs(secs: f64) -> Result<Timeout> {
        if secs.is_nan() {
            return Err(Error::InvalidArgument("timeout is NaN".into()));
        }
        if secs < 0.0 {
            return Ok(Timeout::Forever);
        }
        Ok(Duration::try_from_secs_f64(secs)
            .map(Timeout::After)
            .unwrap_or(Timeout::Forever))
    }

    /// The timeout in seconds (-1 for forever), for messages.
    pub fn as_secs(self) -> f64 {
        match self {
            Timeout::Forever => -1.0,
            Timeout::After(d) => d.as_secs_f64(),
        }
    }
}

/// When a held lock may be broken by a waiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expire {
    /// Never break a live (or unjudgeable) holder's lock (`expire <= 0`).
    Never,
    /// Break it once it is older than this.
    After(Duration),
}

impl Expire {
    /// Seconds as C, Python and the command line give them: NaN is
    /// rejected, `<= 0` means never, values too large for a `Duration` also
    /// mean never.
    pub fn from_secs(secs: f64) -> Result<Expire> {
        if secs.is_nan() {
            return Err(Error::InvalidArgument("expire is NaN".into()));
        }
        if secs <= 0.0 {
            return Ok(Expire::Never);
        }
        Ok(Duration::try_from_secs_f64(secs)
            .map(Expire::After)
            .unwrap_or(Expire::Never))
    }
}

impl From<Duration> for Timeout {
    /// Wait at most this long (zero: try once).
    fn from(d: Duration) -> Timeout {
        Timeout::After(d)
    }
}

impl From<Option<Duration>> for Timeout {
    /// `None` waits forever.
    fn from(d: Option<Duration>) -> Timeout {
        d.map_or(Timeout::Forever, Timeout::After)
    }
}

impl From<Duration> for Expire {
    /// Break locks older than this (zero: never).
    fn from(d: Duration) -> Expire {
        if d.is_zero() {
            Expire::Never
        } else {
            Expire::After(d)
        }
    }
}

impl From<Option<Duration>> for Expire {
    /// `None` never breaks a live holder's lock.
    fn from(d: Option<Duration>) -> Expire {
        d.map_or(Expire::Never, Expire::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in [
            Method::Mkdir,
            Method::OpenCreate,
            Method::Fake,
            Method::Kernel,
            Method::Postgres,
        ] {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        assert_eq!(Method::from_name("nope"), None);
    }

    #[test]
    fn timeout_and_expire_validation() {
        assert!(Timeout::from_secs(f64::NAN).is_err());
        assert!(Expire::from_secs(f64::NAN).is_err());
        assert_eq!(Timeout::from_secs(-1.0).unwrap(), Timeout::Forever);
        assert_eq!(Timeout::from_secs(f64::INFINITY).unwrap(), Timeout::Forever);
        assert_eq!(
            Timeout::from_secs(0.0).unwrap(),
            Timeout::After(Duration::ZERO)
        );
        assert_eq!(Expire::from_secs(0.0).unwrap(), Expire::Never);
        assert_eq!(Expire::from_secs(-3.0).unwrap(), Expire::Never);
        assert_eq!(
            Expire::from_secs(1.5).unwrap(),
            Expire::After(Duration::from_millis(1500))
        );
    }
}
