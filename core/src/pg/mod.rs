//! `PgLocker`: the postgres method (`Method::Postgres`), a lock held as a
//! PostgreSQL session-level advisory lock (docs/PROTOCOL.md, "PostgreSQL";
//! the table it keeps is in docs/FORMAT.md, "PostgreSQL").
//!
//! Each Locker has its own connection (its own server session), made by
//! `Locker::new`, made again when it was lost, closed when the Locker is
//! freed. The name `(ns, objname)` is looked up (and added on first use)
//! in the table `liblocking_locks`, which gives it a 32-bit id; the lock is
//! the advisory lock `(table OID, id)` in the two-key form, whose key space
//! no single-key (`bigint`) advisory lock shares. The same row keeps the
//! lock's fencing counter.
//!
//! The server does all waiting: `pg_advisory_lock` in its own queue (a
//! shared request waits behind a queued exclusive one), bounded by
//! `lock_timeout` for finite timeouts; `pg_try_advisory_lock` for a try.
//! The client waits on its socket with `poll(2)`, never past its deadline.

mod libpq;

use crate::backing::{Backing, HolderInfo};
use crate::error::{Error, Result};
use crate::options::{Expire, Method, Mode, Timeout};
use crate::owner::Liveness;
use libpq::{Conn, Failure, Owner, Rows};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::{Duration, Instant};

/// The table's name (created in the first schema of `search_path`).
pub const TABLE: &str = "liblocking_locks";

/// Connecting is given at least this long, however short the caller's
/// timeout (a try-lock must be able to connect).
const CONNECT_AT_LEAST: Duration = Duration::from_secs(2);

/// Connecting when the caller waits forever (`connect_timeout` in the
/// connection string overrides it).
const CONNECT_FOREVER: Duration = Duration::from_secs(30);

/// A statement that does not wait for a lock (check, refresh, unlock,
/// token, holder query, setup) must be answered within this.
const ROUND_TRIP: Duration = Duration::from_secs(10);

/// How long after a finite wait's deadline the client still waits for the
/// server's answer: the server ends the wait itself with `lock_timeout`,
/// this only covers the answer's way back. `GRACE + timeout / 4`, at most
/// `GRACE_MAX`; a server that has not answered by then is left (the
/// session is closed, and with it any lock granted to it meanwhile).
const GRACE: Duration = Duration::from_millis(250);
const GRACE_MAX: Duration = Duration::from_secs(1);

/// The longest the server keeps a session whose client went silent on a
/// broken network when no shorter `expire` is asked for (TCP keepalives
/// and `tcp_user_timeout`, set on both sides).
const NETWORK_BOUND: Duration = Duration::from_secs(120);

/// The oldest server the method works with: `GENERATED ... STORED`
/// columns (12), `tcp_user_timeout` (12).
const MIN_SERVER: i32 = 120000;

/// `idle_session_timeout`, which makes `expire` work, came with 14.
const IDLE_TIMEOUT_SERVER: i32 = 140000;

/// Where a name's lock lives on the server.
#[derive(Debug, Clone)]
struct Key {
    /// `pg_database.oid` of the database (pg_locks.database).
    database: u32,
    /// The OID of the table `liblocking_locks` (the advisory lock's first
    /// key, and pg_locks.classid).
    table_oid: u32,
    /// The name's row id (the second key, and pg_locks.objid).
    id: i32,
    /// The table's schema-qualified, quoted name.
    table: String,
}

/// A held acquisition.
#[derive(Debug)]
struct Held {
    mode: Mode,
    /// The process that acquired it: a fork child does not hold it.
    owner: Owner,
    /// The server session's PID (`pg_backend_pid()`) that took it.
    backend: i32,
    /// The fencing token (0: not drawn yet; shared holders draw at once).
    fence: AtomicU64,
}

/// A lock on a name, held as a PostgreSQL advisory lock.
#[derive(Debug)]
pub struct PgLocker {
    /// The connection string as given (it may hold a password: never shown).
    conninfo: Secret,
    /// The server, for messages, without secrets.
    server: String,
    /// A printable `ns:objname`.
    display: String,
    /// `connect_timeout` from the connection string, if given.
    connect_timeout: Option<Duration>,
    expire: Expire,
    key: Key,
    held: Option<Held>,
    /// The connection. `&mut self` methods reach it without locking
    /// (`get_mut`), so a fork child freeing a Locker never waits on a lock
    /// that a thread of its parent held.
    conn: Mutex<Option<Conn>>,
    /// The process that made `conn`'s mutex: a fork child makes its own
    /// (the inherited one may be locked by a thread that it does not have).
    conn_mutex_owner: Owner,
}

/// A connection string, which `Debug` does not show (it may hold a
/// password).
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<connection string>")
    }
}

/// Hex digits of `bytes`, for `decode('...', 'hex')`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A `bytea` literal that means the same whatever the server's settings.
fn bytea(bytes: &[u8]) -> String {
    format!("decode('{}', 'hex')", hex(bytes))
}

/// Milliseconds, rounded up, at least 1, at most what a PostgreSQL
/// setting of milliseconds holds.
fn millis(d: Duration) -> u64 {
    (d.as_micros().div_ceil(1000) as u64).clamp(1, i32::MAX as u64)
}

/// Whole seconds, rounded down, at least 1.
fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

fn the_rows(mut r: Vec<Rows>, n: usize) -> Rows {
    if r.len() > n {
        r.swap_remove(n)
    } else {
        Vec::new()
    }
}

fn field(rows: &Rows, row: usize, col: usize) -> Option<&str> {
    rows.get(row)?.get(col)?.as_deref()
}

fn truthy(v: Option<&str>) -> bool {
    v == Some("t")
}

/// Printable ASCII only (the server keeps `application_name` as ASCII),
/// at most `max` bytes.
fn ascii(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(max)
        .collect()
}

impl PgLocker {
    /// A Locker for `(ns, objname)` on the server that `conninfo` names.
    /// Connects (within `timeout`, but at least 2 s and at most 30 s; or
    /// `connect_timeout` from the string), and looks the
    /// name up, adding it (and the table) on first use. Does not lock.
    pub fn new(
        objname: &[u8],
        conninfo: &[u8],
        ns: &[u8],
        timeout: Timeout,
        expire: Expire,
    ) -> Result<PgLocker> {
        if objname.is_empty() {
            return Err(Error::InvalidArgument("objname is empty".into()));
        }
        let conninfo = std::str::from_utf8(conninfo)
            .map_err(|_| {
                Error::InvalidArgument(
                    "the PostgreSQL connection string (lockdir) is not UTF-8".into(),
                )
            })?
            .to_string();
        let c = CString::new(conninfo.as_str()).map_err(|_| {
            Error::InvalidArgument("the PostgreSQL connection string has a NUL byte".into())
        })?;
        libpq::ensure_loaded()?;
        let given = libpq::parse_conninfo(&c)?;
        let get = |k: &str| {
            given
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let mut server = String::from("PostgreSQL");
        for k in ["host", "hostaddr", "port", "dbname", "user", "service"] {
            if let Some(v) = get(k).filter(|v| !v.is_empty()) {
                server.push_str(&format!(" {k}={v}"));
            }
        }
        if server == "PostgreSQL" {
            server.push_str(" (libpq defaults)");
        }
        // libpq takes connect_timeout as whole seconds, values below 2 as 2.
        let connect_timeout = get("connect_timeout")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(s.max(2)));
        let mut me = PgLocker {
            conninfo: Secret(conninfo),
            server,
            display: crate::name::display_name(ns, objname),
            connect_timeout,
            expire,
            key: Key {
                database: 0,
                table_oid: 0,
                id: 0,
                table: String::new(),
            },
            held: None,
            conn: Mutex::new(None),
            conn_mutex_owner: libpq::me(),
        };
        let deadline = after(me.connect_limit(timeout));
        let mut conn = me.connect(deadline)?;
        me.key = me.resolve(&mut conn, ns, objname)?;
        *me.conn.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        Ok(me)
    }

    /// How long a connection attempt may take for a call with `timeout`:
    /// the timeout, but at least 2 s and at most 30 s (30 s when waiting
    /// forever), or `connect_timeout` from the connection string.
    fn connect_limit(&self, timeout: Timeout) -> Duration {
        if let Some(t) = self.connect_timeout {
            return t;
        }
        match timeout {
            Timeout::Forever => CONNECT_FOREVER,
            Timeout::After(d) => d.clamp(CONNECT_AT_LEAST, CONNECT_FOREVER),
        }
    }

    /// `idle_session_timeout` for `expire`, in milliseconds; `None` for
    /// none (no expire, or one longer than the setting holds: 24.8 days).
    fn idle_ms(&self) -> Option<u64> {
        match self.expire {
            Expire::After(e) if e.as_millis() <= i32::MAX as u128 => Some(millis(e)),
            _ => None,
        }
    }

    /// The bound on noticing a dead peer over TCP, both sides.
    fn network_bound(&self) -> Duration {
        match self.expire {
            Expire::After(e) => e.min(NETWORK_BOUND),
            Expire::Never => NETWORK_BOUND,
        }
    }

    /// How long a holder's statement (check, refresh, unlock, token) waits
    /// for its answer: [`ROUND_TRIP`], or `expire` (at least 1 s) when that
    /// is shorter. A server that has not answered by then has ended, or
    /// will end, the silent session: the holder is told at once.
    fn held_round_trip(&self) -> Duration {
        match self.expire {
            Expire::After(e) => e.max(Duration::from_secs(1)).min(ROUND_TRIP),
            Expire::Never => ROUND_TRIP,
        }
    }

    /// `LOCKING_E_UNAVAILABLE` for the server.
    fn unavailable(&self, what: &str, why: &str) -> Error {
        Error::Unsupported(format!(
            "{what} ({}, lock {}): {why}",
            self.server, self.display
        ))
    }

    fn failure(&self, what: &str, f: Failure) -> Error {
        match f {
            Failure::TimedOut => self.unavailable(what, "the server did not answer in time"),
            Failure::Broken(m) => self.unavailable(what, &m),
            Failure::Sql { state, message } => {
                self.unavailable(what, &format!("{message} (SQLSTATE {state})"))
            }
        }
    }

    /// Opens a session: connects, then sets the session's TCP timeouts
    /// (server side) in one round trip.
    fn connect(&self, deadline: Instant) -> Result<Conn> {
        let b = self.network_bound();
        let idle = secs(b / 3);
        let interval = secs(b / 6);
        let user_timeout = millis(b);
        let me = crate::owner::identity();
        let app = ascii(
            &format!(
                "liblocking {}@{} {}",
                crate::sys::pid(),
                me.host,
                self.display
            ),
            63,
        );
        // Ours first: the connection string (expanded in place of dbname)
        // overrides any of them.
        let mut params: Vec<(&str, String)> = vec![
            ("fallback_application_name", app),
            ("keepalives", "1".into()),
            ("keepalives_idle", idle.to_string()),
            ("keepalives_interval", interval.to_string()),
            ("keepalives_count", "3".into()),
        ];
        if libpq::lib_version()? >= 120000 {
            params.push(("tcp_user_timeout", user_timeout.to_string()));
        }
        params.push(("dbname", self.conninfo.0.clone()));
        let mut conn = match Conn::connect(&params, deadline)? {
            Ok(c) => c,
            Err(f) => return Err(self.failure("cannot connect to the PostgreSQL server", f)),
        };
        let v = conn.server_version();
        if v < MIN_SERVER {
            return Err(self.unavailable(
                "the postgres method needs PostgreSQL 12 or later",
                &format!("the server is version {v}"),
            ));
        }
        if v < IDLE_TIMEOUT_SERVER && matches!(self.expire, Expire::After(_)) {
            return Err(self.unavailable(
                "expire with the postgres method needs PostgreSQL 14 or later (idle_session_timeout)",
                &format!("the server is version {v}"),
            ));
        }
        // The session is the Locker's alone: it runs no statement but ours,
        // so its timeouts are set here once (a role's or database's own
        // lock_timeout, statement_timeout or idle_session_timeout would
        // otherwise end our waits or our holds), and a wait sets
        // lock_timeout only for its own statement.
        let idle_off = if v >= IDLE_TIMEOUT_SERVER {
            "; SET idle_session_timeout = 0"
        } else {
            ""
        };
        // Fencing counters must survive a server crash: a commit that is
        // not flushed (synchronous_commit off or local) could hand out a
        // token again after a restart. Stronger settings (remote_apply,
        // ...) are left as the administrator chose them.
        let sql = format!(
            "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
             SET tcp_keepalives_count = 3; SET tcp_user_timeout = {user_timeout}; \
             SET lock_timeout = 0; SET statement_timeout = 0{idle_off}; \
             SELECT set_config('synchronous_commit', 'on', false) \
             WHERE current_setting('synchronous_commit') IN ('off', 'local')"
        );
        let left = deadline.max(Instant::now() + ROUND_TRIP);
        conn.query(&sql, Some(left))
            .map_err(|f| self.failure("cannot set up the PostgreSQL session", f))?;
        Ok(conn)
    }

    /// Looks the name up in the table, adding the table and the name when
    /// missing.
    fn resolve(&self, conn: &mut Conn, ns: &[u8], objname: &[u8]) -> Result<Key> {
        let (ns_l, name_l) = (bytea(ns), bytea(objname));
        let digest = format!("sha256(int4send(length({ns_l})) || {ns_l} || {name_l})");
        let lookup = format!(
            "SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database(); \
             SELECT t.tableoid::oid, t.id, t.ns = {ns_l} AND t.name = {name_l}, \
                    format('%I.%I', n.nspname, c.relname) \
             FROM {TABLE} t JOIN pg_catalog.pg_class c ON c.oid = t.tableoid \
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE t.digest = {digest}"
        );
        let insert = format!(
            "INSERT INTO {TABLE} (ns, name) VALUES ({ns_l}, {name_l}) \
             ON CONFLICT (digest) DO NOTHING RETURNING id"
        );
        let what = "cannot look the lock's name up in the PostgreSQL server";
        let mut created = false;
        for _ in 0..6 {
            let deadline = Some(Instant::now() + ROUND_TRIP);
            match conn.query(&lookup, deadline) {
                Ok(r) => {
                    let db = the_rows(r.clone(), 0);
                    let found = the_rows(r, 1);
                    let database = field(&db, 0, 0).and_then(|v| v.parse::<u32>().ok());
                    if let Some(row) = found.first() {
                        let get = |i: usize| row.get(i).and_then(|v| v.as_deref());
                        if !truthy(get(2)) {
                            return Err(Error::Untrusted(format!(
                                "the lock {} has the same SHA-256 digest as another name in {TABLE}: \
                                 refused (never shared)",
                                self.display
                            )));
                        }
                        let (Some(database), Some(table_oid), Some(id), Some(table)) = (
                            database,
                            get(0).and_then(|v| v.parse::<u32>().ok()),
                            get(1).and_then(|v| v.parse::<i32>().ok()),
                            get(3),
                        ) else {
                            return Err(self.unavailable(what, "unexpected answer"));
                        };
                        return Ok(Key {
                            database,
                            table_oid,
                            id,
                            table: table.to_string(),
                        });
                    }
                    // A new name: add it (a concurrent adder makes ours do
                    // nothing; the lookup then finds theirs).
                    conn.query(&insert, deadline)
                        .map_err(|f| self.failure(what, f))?;
                }
                Err(Failure::Sql { state, .. }) if state == "42P01" && !created => {
                    self.create_table(conn)?;
                    created = true;
                }
                Err(f) => return Err(self.failure(what, f)),
            }
        }
        Err(self.unavailable(what, "the name could not be added"))
    }

    /// `CREATE TABLE IF NOT EXISTS` (docs/FORMAT.md, "PostgreSQL"). Two
    /// parties creating it at once: the loser's error is ignored, and it
    /// finds the winner's table.
    fn create_table(&self, conn: &mut Conn) -> Result<()> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (\
               id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
               ns bytea NOT NULL, \
               name bytea NOT NULL, \
               digest bytea GENERATED ALWAYS AS (sha256(int4send(length(ns)) || ns || name)) STORED UNIQUE, \
               counter bigint NOT NULL DEFAULT 0)"
        );
        match conn.query(&sql, Some(Instant::now() + ROUND_TRIP)) {
            Ok(_) => Ok(()),
            // unique_violation (on the catalogs) or duplicate_table: made
            // by another party at the same moment.
            Err(Failure::Sql { state, .. }) if state == "23505" || state == "42P07" => Ok(()),
            Err(f) => Err(self.failure(
                &format!(
                    "cannot create the table {TABLE} (create it once by hand, see docs/FORMAT.md, \
                     or grant CREATE on the first schema of search_path)"
                ),
                f,
            )),
        }
    }

    /// `true` in SQL when this session holds the lock in `mode`.
    fn held_expr(&self, mode: Mode) -> String {
        let k = &self.key;
        let m = match mode {
            Mode::Shared => "ShareLock",
            _ => "ExclusiveLock",
        };
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' \
             AND database = {} AND classid = {} AND objid = {} AND objsubid = 2 \
             AND pid = pg_backend_pid() AND granted AND mode = '{m}')",
            k.database, k.table_oid, k.id as u32
        )
    }

    /// The advisory lock's two keys, as SQL arguments.
    fn keys(&self) -> String {
        format!("{}, {}", self.key.table_oid as i32, self.key.id)
    }

    /// One statement that evaluates `got` (taking the lock, or seeing that
    /// it is held) and, only if it is true, draws a fencing token
    /// (`token`) and arms `idle_session_timeout` (`arm`). Answers one row:
    /// got, the server session's PID, token, (setting).
    fn grant_sql(&self, got: &str, token: bool, arm: bool) -> String {
        let bump = if token {
            format!(
                ", u AS (UPDATE {} SET counter = counter + 1 WHERE id = {} \
                 AND (SELECT got FROM l) RETURNING counter)",
                self.key.table, self.key.id
            )
        } else {
            String::new()
        };
        let idle = match (self.idle_ms(), arm) {
            (Some(ms), true) => {
                format!("CASE WHEN got THEN set_config('idle_session_timeout', '{ms}', false) END")
            }
            _ => "NULL".into(),
        };
        let tok = if token {
            "(SELECT counter FROM u)"
        } else {
            "NULL"
        };
        format!(
            "WITH l AS MATERIALIZED (SELECT {got} AS got){bump} \
             SELECT got, pg_backend_pid(), {tok}, {idle} FROM l"
        )
    }

    fn timed_out(&self, timeout: Timeout) -> Error {
        Error::LockerFailed {
            name: self.display.clone(),
            timeout: timeout.as_secs(),
        }
    }

    fn lost(&self, why: &str) -> Error {
        Error::LockLost(format!("{} on {} ({why})", self.display, self.server))
    }

    /// Forgets an acquisition and a connection inherited across fork(),
    /// without a word to the server.
    fn forget_inherited(&mut self) {
        let me = libpq::me();
        if self.held.as_ref().is_some_and(|h| h.owner != me) {
            self.held = None;
        }
        if self.conn_mutex_owner != me {
            let inherited = std::mem::take(self.conn.get_mut().unwrap_or_else(|e| e.into_inner()));
            self.conn = Mutex::new(inherited);
            self.conn_mutex_owner = me;
        }
        let slot = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(Conn::inherited) {
            // Conn's drop closes only our copy of the socket.
            *slot = None;
        }
    }

    /// This process's acquisition, if any.
    fn held_here(&self) -> Result<&Held> {
        match &self.held {
            Some(h) if h.owner == libpq::me() => Ok(h),
            _ => Err(Error::NotLocked(self.display.clone())),
        }
    }

    /// How this Locker holds its lock (in this process), if it does.
    pub fn mode(&self) -> Option<Mode> {
        self.held_here().ok().map(|h| h.mode)
    }

    /// A usable connection in `slot`: the one there unless it is gone,
    /// else a new one made before `deadline`.
    fn ensure_conn<'a>(
        &self,
        slot: &'a mut Option<Conn>,
        deadline: Instant,
    ) -> Result<&'a mut Conn> {
        if slot
            .as_mut()
            .is_some_and(|c| c.inherited() || c.looks_dead())
        {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(self.connect(deadline)?);
        }
        Ok(slot.as_mut().expect("connected"))
    }

    /// Acquires in `mode`, the server waiting as `timeout` allows.
    pub fn acquire(&mut self, mode: Mode, timeout: Timeout) -> Result<()> {
        self.forget_inherited();
        if self.held.is_some() {
            return Err(Error::AlreadyLocked(self.display.clone()));
        }
        let start = Instant::now();
        let deadline = match timeout {
            Timeout::Forever => None,
            Timeout::After(d) => start.checked_add(d),
        };
        let shared = mode == Mode::Shared;
        // How long to keep trying to get a session back after the
        // connection broke under us (a server restart, a failover).
        let reconnect_until = deadline
            .unwrap_or(start)
            .max(after(self.connect_limit(timeout)));
        let mut broke: Option<String> = None;
        loop {
            let now = Instant::now();
            let mut slot = std::mem::take(self.conn.get_mut().unwrap_or_else(|e| e.into_inner()));
            let connect_by = if broke.is_some() {
                reconnect_until
            } else {
                now + self.connect_limit(timeout)
            };
            let conn = match self.ensure_conn(&mut slot, connect_by) {
                Ok(c) => c,
                Err(e) => {
                    if broke.is_some() && Instant::now() < reconnect_until {
                        crate::sys::sleep(Duration::from_millis(200));
                        continue;
                    }
                    return Err(e);
                }
            };
            // What is left of the caller's timeout: none left means try.
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let (sql, answer_by, blocking) = match left {
                Some(l) if l.is_zero() => {
                    (self.try_sql(mode), Some(Instant::now() + ROUND_TRIP), false)
                }
                Some(l) => (
                    // Past what lock_timeout holds (24.8 days), the
                    // client's deadline alone ends the wait.
                    format!(
                        "SET LOCAL lock_timeout = {}; {}",
                        if l.as_millis() > i32::MAX as u128 {
                            0
                        } else {
                            millis(l)
                        },
                        self.lock_sql(mode)
                    ),
                    Instant::now().checked_add(l + (GRACE + l / 4).min(GRACE_MAX)),
                    true,
                ),
                None => (self.lock_sql(mode), None, true),
            };
            let answer = conn.query(&sql, answer_by);
            let outcome = match answer {
                Ok(r) if blocking => Ok(blocking_grant(r, shared)),
                Ok(r) => Ok(the_rows(r, 0)),
                // lock_not_available (lock_timeout) or query_canceled: the
                // server may have granted the lock at that very moment
                // (the error is raised all the same, and a session-level
                // lock outlives the statement): look before saying no.
                Err(Failure::Sql { state, .. }) if state == "55P03" || state == "57014" => {
                    let look = self.grant_sql(&self.held_expr(mode), shared, true);
                    conn.query(&look, Some(Instant::now() + ROUND_TRIP))
                        .map(|r| the_rows(r, 0))
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(rows) => {
                    *self.conn.get_mut().unwrap_or_else(|e| e.into_inner()) = slot;
                    // got, the session's PID, token
                    if !truthy(field(&rows, 0, 0)) {
                        return Err(self.timed_out(timeout));
                    }
                    let backend = field(&rows, 0, 1)
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                    let fence = if shared {
                        match field(&rows, 0, 2).and_then(|v| v.parse::<u64>().ok()) {
                            Some(t) => t,
                            None => {
                                // Held, but no row to count in: give it back.
                                let _ = self.release(mode);
                                return Err(self.missing_row());
                            }
                        }
                    } else {
                        0
                    };
                    self.held = Some(Held {
                        mode,
                        owner: libpq::me(),
                        backend,
                        fence: AtomicU64::new(fence),
                    });
                    return Ok(());
                }
                // No answer in time: the session is dropped (with it any
                // lock the server may grant it meanwhile).
                Err(Failure::TimedOut) => {
                    drop(slot);
                    return Err(self.timed_out(timeout));
                }
                Err(Failure::Broken(m)) => {
                    // The session is gone, and any lock with it: connect
                    // again and go on waiting.
                    drop(slot);
                    if Instant::now() >= reconnect_until {
                        return Err(self.unavailable("lost the connection to the server", &m));
                    }
                    broke = Some(m);
                }
                Err(f @ Failure::Sql { .. }) => {
                    // The lock may be held now (the statement took it and
                    // failed after): ending the session lets it go.
                    drop(slot);
                    return Err(self.failure("the PostgreSQL server refused the lock", f));
                }
            }
        }
    }

    /// The waiting acquisition (the statement's `lock_timeout` is set before
    /// it): the lock, the session's PID and (with `expire`) the idle timer
    /// in one statement; a shared one draws its token in a second one,
    /// which runs only if the first succeeded (one implicit transaction).
    fn lock_sql(&self, mode: Mode) -> String {
        let arm = match self.idle_ms() {
            Some(ms) => format!(", set_config('idle_session_timeout', '{ms}', false)"),
            None => String::new(),
        };
        match mode {
            Mode::Shared => format!(
                "SELECT pg_advisory_lock_shared({}), pg_backend_pid(){arm}; \
                 UPDATE {} SET counter = counter + 1 WHERE id = {} RETURNING counter",
                self.keys(),
                self.key.table,
                self.key.id
            ),
            _ => format!(
                "SELECT pg_advisory_lock({}), pg_backend_pid(){arm}",
                self.keys()
            ),
        }
    }

    /// The try: answers got, the session's PID, token (shared).
    fn try_sql(&self, mode: Mode) -> String {
        match mode {
            Mode::Shared => self.grant_sql(
                &format!("pg_try_advisory_lock_shared({})", self.keys()),
                true,
                true,
            ),
            _ => {
                let arm = match self.idle_ms() {
                    Some(ms) => format!(
                        ", CASE WHEN got THEN set_config('idle_session_timeout', '{ms}', false) END"
                    ),
                    None => String::new(),
                };
                format!(
                    "SELECT got, pg_backend_pid(), NULL{arm} \
                     FROM pg_try_advisory_lock({}) AS got",
                    self.keys()
                )
            }
        }
    }

    fn missing_row(&self) -> Error {
        Error::Untrusted(format!(
            "the row of {} in {} is gone (changed by hand?): no fencing token",
            self.display, self.key.table
        ))
    }

    /// `pg_advisory_unlock` and disarming `idle_session_timeout`, one round
    /// trip. `Ok(true)` when the lock was ours.
    fn release(&mut self, mode: Mode) -> std::result::Result<bool, Failure> {
        let suffix = if mode == Mode::Shared { "_shared" } else { "" };
        let reset = if self.idle_ms().is_some() {
            ", set_config('idle_session_timeout', '0', false)"
        } else {
            ""
        };
        let sql = format!("SELECT pg_advisory_unlock{suffix}({}){reset}", self.keys());
        let answer_by = Instant::now() + self.held_round_trip();
        let slot = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(conn) = slot.as_mut() else {
            return Err(Failure::Broken("no connection".into()));
        };
        match conn.query(&sql, Some(answer_by)) {
            Ok(r) => Ok(truthy(field(&the_rows(r, 0), 0, 0))),
            Err(f) => {
                if !matches!(f, Failure::Sql { .. }) {
                    *slot = None;
                }
                Err(f)
            }
        }
    }

    /// Releases the lock.
    pub fn unlock(&mut self) -> Result<()> {
        self.forget_inherited();
        let mode = self.held_here()?.mode;
        self.held = None;
        match self.release(mode) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lost("the server session no longer held it")),
            Err(Failure::Sql { state, message }) => {
                // The session is sound but the statement failed: end the
                // session, which releases whatever it holds.
                *self.conn.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
                Err(self.unavailable(
                    "the PostgreSQL server refused the unlock (the session was closed, which releases the lock)",
                    &format!("{message} (SQLSTATE {state})"),
                ))
            }
            Err(Failure::TimedOut) => {
                Err(self.lost("the server did not answer in time; the session was closed"))
            }
            Err(Failure::Broken(m)) => Err(self.lost(&format!("the session ended: {m}"))),
        }
    }

    /// Runs `sql` on the Locker's connection for a `&self` method. A broken
    /// connection is dropped.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> std::result::Result<T, Failure>,
        connect: bool,
    ) -> std::result::Result<T, Failure> {
        let mut guard = match self.conn.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // Another thread is using this Locker (which it must not
                // while we do), or a thread of the process we were forked
                // from was: use a connection of our own for this call.
                if !connect {
                    return Err(Failure::Broken("the connection is busy".into()));
                }
                let mut c = self
                    .connect(Instant::now() + ROUND_TRIP)
                    .map_err(|e| Failure::Broken(e.to_string()))?;
                return f(&mut c);
            }
        };
        let slot: &mut Option<Conn> = &mut guard;
        if slot.as_ref().is_some_and(Conn::inherited) {
            *slot = None;
        }
        if slot.is_none() {
            if !connect {
                return Err(Failure::Broken("the connection was lost".into()));
            }
            *slot = Some(
                self.connect(Instant::now() + ROUND_TRIP)
                    .map_err(|e| Failure::Broken(e.to_string()))?,
            );
        }
        let conn = slot.as_mut().expect("connected");
        let r = f(conn);
        if matches!(r, Err(Failure::Broken(_)) | Err(Failure::TimedOut)) {
            *slot = None;
        }
        r
    }

    /// `Ok` while this session still holds the lock: one round trip, which
    /// also proves the session alive (and restarts its idle clock).
    pub fn check(&self) -> Result<()> {
        let mode = self.held_here()?.mode;
        let sql = format!("SELECT {}", self.held_expr(mode));
        match self.with_conn(
            |c| c.query(&sql, Some(Instant::now() + self.held_round_trip())),
            false,
        ) {
            Ok(r) if truthy(r.first().and_then(|x| field(x, 0, 0))) => Ok(()),
            Ok(_) => Err(self.lost("the server session no longer holds it")),
            Err(Failure::Sql { state, message }) => Err(self.unavailable(
                "cannot check the lock",
                &format!("{message} (SQLSTATE {state})"),
            )),
            Err(Failure::TimedOut) => {
                Err(self.lost("the server did not answer in time; the session was closed"))
            }
            Err(Failure::Broken(m)) => Err(self.lost(&format!("the session ended: {m}"))),
        }
    }

    /// The fencing token: drawn with the lock for shared holders; on the
    /// first request for an exclusive holder, in a statement that draws
    /// only in the server session that took the lock (a session keeps its
    /// server process for life, and holds its advisory lock until it
    /// releases it or ends).
    pub fn fencing_token(&self) -> Result<u64> {
        let h = self.held_here()?;
        let t = h.fence.load(Ordering::Acquire);
        if t != 0 {
            return Ok(t);
        }
        let sql = format!(
            "UPDATE {} SET counter = counter + 1 WHERE id = {} AND pg_backend_pid() = {} \
             RETURNING counter",
            self.key.table, self.key.id, h.backend
        );
        let rows = match self.with_conn(
            |c| c.query(&sql, Some(Instant::now() + self.held_round_trip())),
            false,
        ) {
            Ok(r) => the_rows(r, 0),
            Err(Failure::Sql { state, message }) => {
                return Err(self.unavailable(
                    "cannot draw a fencing token",
                    &format!("{message} (SQLSTATE {state})"),
                ))
            }
            Err(Failure::TimedOut) => {
                return Err(self.lost("the server did not answer in time; the session was closed"))
            }
            Err(Failure::Broken(m)) => return Err(self.lost(&format!("the session ended: {m}"))),
        };
        let Some(t) = field(&rows, 0, 0).and_then(|v| v.parse::<u64>().ok()) else {
            // Not drawn: another server session (a pooler in front of the
            // server), or the row is gone.
            self.check()?;
            return Err(self.missing_row());
        };
        match h
            .fence
            .compare_exchange(0, t, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(t),
            Err(other) => Ok(other),
        }
    }

    /// Who holds the lock: the sessions with a granted advisory lock on
    /// its key (pg_locks), with what pg_stat_activity tells of them.
    pub fn holders(&self) -> Result<Vec<HolderInfo>> {
        let k = &self.key;
        let sql = format!(
            "SELECT l.mode, l.pid, a.application_name, host(a.client_addr), a.client_port, \
                    a.state, extract(epoch FROM clock_timestamp() - a.state_change)::float8, \
                    a.usename \
             FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.database = {} AND l.classid = {} \
               AND l.objid = {} AND l.objsubid = 2 AND l.granted \
             ORDER BY l.mode = 'ShareLock', l.pid",
            k.database, k.table_oid, k.id as u32
        );
        let rows = match self.with_conn(|c| c.query(&sql, Some(Instant::now() + ROUND_TRIP)), true)
        {
            Ok(r) => the_rows(r, 0),
            Err(f) => {
                return Err(self.failure("cannot ask the PostgreSQL server who holds the lock", f))
            }
        };
        let mut out = Vec::new();
        for row in &rows {
            let get = |i: usize| row.get(i).and_then(|v| v.as_deref());
            let mode = if get(0) == Some("ShareLock") {
                Mode::Shared
            } else {
                Mode::Exclusive
            };
            let mut extra: Vec<(String, String)> = vec![("method".into(), "postgres".into())];
            let app = get(2).unwrap_or("");
            // Our application_name: "liblocking <pid>@<host> <name>".
            if let Some(rest) = app.strip_prefix("liblocking ") {
                if let Some((who, _)) = rest.split_once(' ') {
                    if let Some((pid, host)) = who.split_once('@') {
                        if pid.parse::<u32>().is_ok() {
                            extra.push(("pid".into(), pid.into()));
                            extra.push(("host".into(), host.into()));
                        }
                    }
                }
            }
            extra.push(("backend_pid".into(), get(1).unwrap_or("-").into()));
            let client = match (get(3), get(4)) {
                (Some(addr), Some(port)) => format!("{addr}:{port}"),
                (None, Some("-1")) => "local".into(),
                _ => "-".into(),
            };
            extra.push(("client_addr".into(), client));
            extra.push((
                "application_name".into(),
                if app.is_empty() { "-" } else { app }.into(),
            ));
            extra.push(("user".into(), get(7).unwrap_or("-").into()));
            extra.push(("session".into(), get(5).unwrap_or("-").into()));
            let age = get(6)
                .and_then(|v| v.parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok());
            out.push(HolderInfo {
                mode,
                record: None,
                // The server has the session: alive as far as it knows
                // (a hung holder is ended by idle_session_timeout).
                liveness: Liveness::Alive,
                age,
                extra,
            });
        }
        Ok(out)
    }

    /// Where the lock lives, for messages.
    pub fn place(&self) -> String {
        format!(
            "{} advisory lock ({}, {}) of {}",
            self.server, self.key.table_oid, self.key.id, self.display
        )
    }
}

/// The answer of [`PgLocker::lock_sql`] as one row: got (true: the
/// statement succeeded), the session's PID, the token (shared).
fn blocking_grant(r: Vec<Rows>, shared: bool) -> Rows {
    let pid = r
        .first()
        .and_then(|rows| field(rows, 0, 1))
        .map(str::to_string);
    let token = if shared {
        r.get(1)
            .and_then(|rows| field(rows, 0, 0))
            .map(str::to_string)
    } else {
        None
    };
    vec![vec![Some("t".to_string()), pid, token]]
}

/// `d` from now, or as far as the clock goes.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86400)))
        .unwrap_or(now)
}

impl Drop for PgLocker {
    fn drop(&mut self) {
        self.forget_inherited();
        if let Some(h) = self.held.take() {
            let _ = self.release(h.mode);
        }
        // The connection (if ours) is finished by Conn's drop.
    }
}

impl Backing for PgLocker {
    fn method(&self) -> Method {
        Method::Postgres
    }
    fn place(&self) -> String {
        PgLocker::place(self)
    }
    fn mode(&self) -> Option<Mode> {
        PgLocker::mode(self)
    }
    fn acquire(&mut self, mode: Mode, timeout: Timeout) -> Result<()> {
        PgLocker::acquire(self, mode, timeout)
    }
    fn unlock(&mut self) -> Result<()> {
        PgLocker::unlock(self)
    }
    fn check(&self) -> Result<()> {
        PgLocker::check(self)
    }
    fn refresh(&mut self) -> Result<()> {
        // The check's round trip is the refresh: it restarts the session's
        // idle clock (idle_session_timeout, which is how expire works).
        self.forget_inherited();
        PgLocker::check(self)
    }
    fn fencing_token(&self) -> Result<u64> {
        PgLocker::fencing_token(self)
    }
    fn holders(&self) -> Result<Vec<HolderInfo>> {
        PgLocker::holders(self)
    }
}
