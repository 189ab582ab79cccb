//! libpq, the PostgreSQL client library, loaded with `dlopen` on first use
//! (through `libloading`), so that neither building liblocking nor running
//! a program that never uses the postgres method needs it: `liblocking.so`
//! has no `DT_NEEDED` entry for libpq.
//!
//! On top of the few libpq calls used, a connection ([`Conn`]) that never
//! lets the caller's thread wait past a deadline: connecting goes through
//! `PQconnectStartParams`/`PQconnectPoll`, and statements through
//! `PQsendQuery` on a non-blocking connection, with `poll(2)` on the
//! socket until the deadline. Only the simple query protocol is used (every
//! value is written into the statement as a literal made of digits or hex
//! digits), which is what connection poolers and every server version
//! understand.
//!
//! fork(): a [`Conn`] dropped in a process other than the one that opened
//! it only closes that process's copy of the socket, without a word to
//! the server (no `Terminate` message, no TLS close-notify) and without
//! `PQfinish` (its memory is left behind): the parent's session goes on
//! undisturbed.

use crate::error::{Error, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Instant;

/// The shared object libpq's ABI version 5 is found by (every libpq since
/// PostgreSQL 8.2).
pub const LIBPQ_SONAME: &str = "libpq.so.5";

/// The environment variable that names another libpq to load (a path, or a
/// name the dynamic loader searches for). Ignored in set-user-ID and
/// set-group-ID programs.
pub const LIBPQ_ENV: &str = "LOCKING_LIBPQ";

/// `PGconn`, opaque.
#[repr(C)]
pub struct PgConnRaw {
    _opaque: [u8; 0],
}

/// `PGresult`, opaque.
#[repr(C)]
pub struct PgResultRaw {
    _opaque: [u8; 0],
}

/// `PQconninfoOption` (libpq-fe.h).
#[repr(C)]
struct ConninfoOption {
    keyword: *mut c_char,
    envvar: *mut c_char,
    compiled: *mut c_char,
    val: *mut c_char,
    label: *mut c_char,
    dispchar: *mut c_char,
    dispsize: c_int,
}

type NoticeProcessor = unsafe extern "C" fn(*mut c_void, *const c_char);

// ConnStatusType, PostgresPollingStatusType, ExecStatusType (libpq-fe.h).
const CONNECTION_BAD: c_int = 1;
const PGRES_POLLING_FAILED: c_int = 0;
const PGRES_POLLING_READING: c_int = 1;
const PGRES_POLLING_OK: c_int = 3;
const PGRES_EMPTY_QUERY: c_int = 0;
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const PGRES_NONFATAL_ERROR: c_int = 6;
const PGRES_FATAL_ERROR: c_int = 7;
// postgres_ext.h
const PG_DIAG_SQLSTATE: c_int = b'C' as c_int;
const PG_DIAG_MESSAGE_PRIMARY: c_int = b'M' as c_int;

/// The libpq functions used, resolved once per process.
struct Api {
    /// Keeps the library loaded (it is never unloaded).
    _lib: libloading::Library,
    lib_version: unsafe extern "C" fn() -> c_int,
    connect_start_params:
        unsafe extern "C" fn(*const *const c_char, *const *const c_char, c_int) -> *mut PgConnRaw,
    connect_poll: unsafe extern "C" fn(*mut PgConnRaw) -> c_int,
    status: unsafe extern "C" fn(*const PgConnRaw) -> c_int,
    socket: unsafe extern "C" fn(*const PgConnRaw) -> c_int,
    error_message: unsafe extern "C" fn(*const PgConnRaw) -> *const c_char,
    finish: unsafe extern "C" fn(*mut PgConnRaw),
    set_nonblocking: unsafe extern "C" fn(*mut PgConnRaw, c_int) -> c_int,
    set_notice_processor: unsafe extern "C" fn(
        *mut PgConnRaw,
        Option<NoticeProcessor>,
        *mut c_void,
    ) -> Option<NoticeProcessor>,
    send_query: unsafe extern "C" fn(*mut PgConnRaw, *const c_char) -> c_int,
    flush: unsafe extern "C" fn(*mut PgConnRaw) -> c_int,
    consume_input: unsafe extern "C" fn(*mut PgConnRaw) -> c_int,
    is_busy: unsafe extern "C" fn(*mut PgConnRaw) -> c_int,
    get_result: unsafe extern "C" fn(*mut PgConnRaw) -> *mut PgResultRaw,
    result_status: unsafe extern "C" fn(*const PgResultRaw) -> c_int,
    result_error_field: unsafe extern "C" fn(*const PgResultRaw, c_int) -> *const c_char,
    result_error_message: unsafe extern "C" fn(*const PgResultRaw) -> *const c_char,
    ntuples: unsafe extern "C" fn(*const PgResultRaw) -> c_int,
    nfields: unsafe extern "C" fn(*const PgResultRaw) -> c_int,
    get_value: unsafe extern "C" fn(*const PgResultRaw, c_int, c_int) -> *const c_char,
    get_is_null: unsafe extern "C" fn(*const PgResultRaw, c_int, c_int) -> c_int,
    clear: unsafe extern "C" fn(*mut PgResultRaw),
    server_version: unsafe extern "C" fn(*const PgConnRaw) -> c_int,
    conninfo_parse: unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> *mut ConninfoOption,
    conninfo_free: unsafe extern "C" fn(*mut ConninfoOption),
    freemem: unsafe extern "C" fn(*mut c_void),
}

/// The loaded API, published once; never freed (the library stays loaded).
/// An atomic rather than a `OnceLock`: a fork() while another thread is
/// loading must not leave the child waiting for a load that never ends.
static API: AtomicPtr<Api> = AtomicPtr::new(std::ptr::null_mut());

/// The library to load: `$LOCKING_LIBPQ` if set (and the process is not
/// set-user-ID or set-group-ID), else `libpq.so.5`.
fn library_name() -> (String, bool) {
    // SAFETY: getauxval reads the process's auxiliary vector; any key is
    // allowed (an unknown one gives 0).
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    match std::env::var(LIBPQ_ENV) {
        Ok(v) if !v.is_empty() && !secure => (v, true),
        _ => (LIBPQ_SONAME.to_string(), false),
    }
}

/// Resolves `name` in `lib` as a value of type `T` (a function pointer).
///
/// # Safety
/// `T` must be the exact C type of the symbol.
unsafe fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> std::result::Result<T, String> {
    let cname = format!("{name}\0");
    // SAFETY: per the caller, T is the symbol's type; the value is copied
    // out and stays valid while the library is loaded (forever).
    unsafe { lib.get::<T>(cname.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("{name}: {e}"))
}

fn load() -> std::result::Result<Api, String> {
    let (name, from_env) = library_name();
    let described = if from_env {
        format!("{name} (from {LIBPQ_ENV}; by default {LIBPQ_SONAME})")
    } else {
        name.clone()
    };
    // SAFETY: loading libpq runs its initialisers, which only set up
    // libpq's own state; nothing of ours runs in between.
    let lib = unsafe { libloading::Library::new(&name) }.map_err(|e| {
        format!(
            "the postgres method needs the PostgreSQL client library {described}, \
             which could not be loaded ({e}); install it (Debian, Ubuntu: libpq5; \
             Fedora, RHEL: libpq; Alpine: libpq) or name its path in {LIBPQ_ENV}"
        )
    })?;
    let bad = |e: String| format!("{described} lacks a function liblocking needs: {e}");
    // SAFETY: each `sym` names a libpq function with its type from
    // libpq-fe.h, unchanged since PostgreSQL 9.0.
    unsafe {
        Ok(Api {
            lib_version: sym(&lib, "PQlibVersion").map_err(bad)?,
            connect_start_params: sym(&lib, "PQconnectStartParams").map_err(bad)?,
            connect_poll: sym(&lib, "PQconnectPoll").map_err(bad)?,
            status: sym(&lib, "PQstatus").map_err(bad)?,
            socket: sym(&lib, "PQsocket").map_err(bad)?,
            error_message: sym(&lib, "PQerrorMessage").map_err(bad)?,
            finish: sym(&lib, "PQfinish").map_err(bad)?,
            set_nonblocking: sym(&lib, "PQsetnonblocking").map_err(bad)?,
            set_notice_processor: sym(&lib, "PQsetNoticeProcessor").map_err(bad)?,
            send_query: sym(&lib, "PQsendQuery").map_err(bad)?,
            flush: sym(&lib, "PQflush").map_err(bad)?,
            consume_input: sym(&lib, "PQconsumeInput").map_err(bad)?,
            is_busy: sym(&lib, "PQisBusy").map_err(bad)?,
            get_result: sym(&lib, "PQgetResult").map_err(bad)?,
            result_status: sym(&lib, "PQresultStatus").map_err(bad)?,
            result_error_field: sym(&lib, "PQresultErrorField").map_err(bad)?,
            result_error_message: sym(&lib, "PQresultErrorMessage").map_err(bad)?,
            ntuples: sym(&lib, "PQntuples").map_err(bad)?,
            nfields: sym(&lib, "PQnfields").map_err(bad)?,
            get_value: sym(&lib, "PQgetvalue").map_err(bad)?,
            get_is_null: sym(&lib, "PQgetisnull").map_err(bad)?,
            clear: sym(&lib, "PQclear").map_err(bad)?,
            server_version: sym(&lib, "PQserverVersion").map_err(bad)?,
            conninfo_parse: sym(&lib, "PQconninfoParse").map_err(bad)?,
            conninfo_free: sym(&lib, "PQconninfoFree").map_err(bad)?,
            freemem: sym(&lib, "PQfreemem").map_err(bad)?,
            _lib: lib,
        })
    }
}

/// libpq, loaded on first use. `Unsupported` (LOCKING_E_UNAVAILABLE) with
/// the reason when it cannot be loaded; a later call tries again.
fn api() -> Result<&'static Api> {
    let p = API.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only pointers from Box::into_raw below are stored, and
        // they are never freed.
        return Ok(unsafe { &*p });
    }
    let fresh = Box::into_raw(Box::new(load().map_err(Error::Unsupported)?));
    match API.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just published; never freed.
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(first) => {
            // Another thread published first: ours was never shared.
            // SAFETY: `fresh` came from Box::into_raw and nobody else saw it.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: as above for the published pointer.
            Ok(unsafe { &*first })
        }
    }
}

/// Loads libpq now (for an early, clear `Unsupported`).
pub fn ensure_loaded() -> Result<()> {
    api().map(|_| ())
}

/// libpq's version (`PQlibVersion`, e.g. 150018).
pub fn lib_version() -> Result<i32> {
    let api = api()?;
    // SAFETY: no arguments; a plain query of a constant.
    Ok(unsafe { (api.lib_version)() })
}

/// Owned copy of a C string from libpq (lossy UTF-8), on one line: libpq's
/// messages end with a newline and may have several lines ("...failed:
/// Connection refused\n\tIs the server running...").
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the caller.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keywords and values explicitly given in a connection string (URI or
/// `key=value` words); `InvalidArgument` if libpq cannot parse it.
pub fn parse_conninfo(conninfo: &CStr) -> Result<Vec<(String, String)>> {
    let api = api()?;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a writable pointer for the error.
    let opts = unsafe { (api.conninfo_parse)(conninfo.as_ptr(), &mut err) };
    if opts.is_null() {
        let msg = if err.is_null() {
            "out of memory".to_string()
        } else {
            // SAFETY: libpq's malloc'd message, freed right after.
            let m = unsafe { text(err) };
            // SAFETY: allocated by libpq, freed once with its own free.
            unsafe { (api.freemem)(err.cast()) };
            m
        };
        return Err(Error::InvalidArgument(format!(
            "not a PostgreSQL connection string: {msg}"
        )));
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: the array ends with an entry whose keyword is NULL; we
        // stop there.
        let o = unsafe { &*opts.add(i) };
        if o.keyword.is_null() {
            break;
        }
        if !o.val.is_null() {
            // SAFETY: NUL-terminated strings owned by the array.
            out.push(unsafe { (text(o.keyword), text(o.val)) });
        }
        i += 1;
    }
    // SAFETY: the array came from PQconninfoParse; freed once.
    unsafe { (api.conninfo_free)(opts) };
    Ok(out)
}

/// This process: its PID and fork generation (see `forksafe::generation`),
/// so that a child never takes its parent's connection for its own.
pub type Owner = (u32, u64);

/// The calling process as an [`Owner`].
pub fn me() -> Owner {
    let pid = crate::sys::pid();
    (pid, crate::forksafe::generation())
}

/// Why a statement or a connection attempt did not give an answer.
#[derive(Debug)]
pub enum Failure {
    /// The deadline passed first. The connection is in an unknown state
    /// (a statement may still run on the server): drop it.
    TimedOut,
    /// The connection is broken or could not be made (libpq's message).
    Broken(String),
    /// The server answered with an error; the connection is still good.
    Sql {
        /// SQLSTATE, e.g. `55P03` (lock_not_available).
        state: String,
        /// The server's message.
        message: String,
    },
}

/// Rows of one result: text values, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// A connection to a PostgreSQL server, non-blocking.
#[derive(Debug)]
pub struct Conn {
    raw: NonNull<PgConnRaw>,
    /// The socket, noted when the connection was made (a fork child closes
    /// its copy without asking libpq).
    fd: RawFd,
    born: Owner,
    server_version: i32,
}

// SAFETY: a PGconn may be used from any thread, one at a time (libpq is
// built thread-safe); every use goes through `&mut Conn`.
unsafe impl Send for Conn {}

/// A notice processor that drops notices and warnings (libpq's default
/// prints them on stderr, which a library must not do).
unsafe extern "C" fn quiet(_arg: *mut c_void, _message: *const c_char) {}

/// What `poll(2)` should wait for.
#[derive(Clone, Copy)]
enum Want {
    Read,
    Write,
    Both,
}

/// Waits until `fd` is ready as `want` says, or `deadline` passes (`None`:
/// no deadline). True when ready (or when poll failed for another reason
/// than a signal: libpq then finds out what is wrong).
fn wait_fd(fd: RawFd, want: Want, deadline: Option<Instant>) -> bool {
    let events = match want {
        Want::Read => libc::POLLIN,
        Want::Write => libc::POLLOUT,
        Want::Both => libc::POLLIN | libc::POLLOUT,
    };
    loop {
        let ms: c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                // rounded up, so that we never wake just before the deadline
                let ms = left.as_micros().div_ceil(1000);
                ms.min(c_int::MAX as u128) as c_int
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return true;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return true;
        }
        // r == 0 (timed out: the loop checks the deadline) or EINTR
    }
}

impl Conn {
    /// Connects with libpq's parameters `params` (keyword, value; processed
    /// in order, later ones overriding earlier ones; a `dbname` value that is
    /// a connection string is expanded in its place), never waiting past
    /// `deadline`.
    pub fn connect(
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<std::result::Result<Conn, Failure>> {
        let api = api()?;
        let mut owned: Vec<(CString, CString)> = Vec::with_capacity(params.len());
        for (k, v) in params {
            let (Ok(k), Ok(v)) = (CString::new(*k), CString::new(v.as_str())) else {
                return Err(Error::InvalidArgument(
                    "a connection parameter contains a NUL byte".into(),
                ));
            };
            owned.push((k, v));
        }
        let mut keys: Vec<*const c_char> = owned.iter().map(|(k, _)| k.as_ptr()).collect();
        let mut vals: Vec<*const c_char> = owned.iter().map(|(_, v)| v.as_ptr()).collect();
        keys.push(std::ptr::null());
        vals.push(std::ptr::null());
        // SAFETY: two NULL-terminated arrays of NUL-terminated strings that
        // outlive the call (libpq copies what it keeps).
        let raw = unsafe { (api.connect_start_params)(keys.as_ptr(), vals.as_ptr(), 1) };
        let Some(raw) = NonNull::new(raw) else {
            return Ok(Err(Failure::Broken("out of memory".into())));
        };
        let finish_with = |f: Failure| {
            // SAFETY: the connection is ours and dropped here, once.
            unsafe { (api.finish)(raw.as_ptr()) };
            Ok(Err(f))
        };
        // SAFETY: a live PGconn from PQconnectStartParams, used by this
        // thread only (so are the calls on `raw` below).
        if unsafe { (api.status)(raw.as_ptr()) } == CONNECTION_BAD {
            // SAFETY: as above; the message is copied at once.
            let msg = unsafe { text((api.error_message)(raw.as_ptr())) };
            return finish_with(Failure::Broken(msg));
        }
        // As libpq's documentation says: before the first PQconnectPoll,
        // behave as if it had asked to wait until the socket is writable.
        let mut want = Want::Write;
        loop {
            // SAFETY: as above.
            let fd = unsafe { (api.socket)(raw.as_ptr()) };
            if fd >= 0 && !wait_fd(fd, want, Some(deadline)) {
                return finish_with(Failure::TimedOut);
            }
            // SAFETY: as above.
            match unsafe { (api.connect_poll)(raw.as_ptr()) } {
                PGRES_POLLING_OK => break,
                PGRES_POLLING_FAILED => {
                    // SAFETY: as above.
                    let msg = unsafe { text((api.error_message)(raw.as_ptr())) };
                    return finish_with(Failure::Broken(msg));
                }
                PGRES_POLLING_READING => want = Want::Read,
                _ => want = Want::Write,
            }
            if Instant::now() >= deadline {
                return finish_with(Failure::TimedOut);
            }
        }
        // SAFETY: as above (a connected PGconn).
        let (fd, server_version) = unsafe {
            (api.set_notice_processor)(raw.as_ptr(), Some(quiet), std::ptr::null_mut());
            if (api.set_nonblocking)(raw.as_ptr(), 1) != 0 {
                let msg = text((api.error_message)(raw.as_ptr()));
                return finish_with(Failure::Broken(msg));
            }
            (
                (api.socket)(raw.as_ptr()),
                (api.server_version)(raw.as_ptr()),
            )
        };
        Ok(Ok(Conn {
            raw,
            fd,
            born: me(),
            server_version,
        }))
    }

    /// The server's version number (e.g. 150018).
    pub fn server_version(&self) -> i32 {
        self.server_version
    }

    /// True when this connection was made by another process (we are a
    /// fork child of it): it must not be used, only dropped.
    pub fn inherited(&self) -> bool {
        self.born != me()
    }

    /// True when the server has closed the connection or sent something
    /// unasked (an idle connection has nothing to read), looked at without
    /// waiting. Such a connection is not worth a statement.
    pub fn looks_dead(&mut self) -> bool {
        let Ok(api) = api() else { return true };
        let mut p = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1, no wait.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r <= 0 {
            return false;
        }
        // SAFETY: our live PGconn, for both calls.
        unsafe {
            (api.consume_input)(self.raw.as_ptr()) == 0
                || (api.status)(self.raw.as_ptr()) == CONNECTION_BAD
        }
    }

    /// Runs `sql` (one or more statements, simple query protocol), waiting
    /// for the answer until `deadline` (`None`: as long as it takes).
    /// Returns the rows of each statement that returns rows, in order.
    pub fn query(
        &mut self,
        sql: &str,
        deadline: Option<Instant>,
    ) -> std::result::Result<Vec<Rows>, Failure> {
        let api = api().map_err(|e| Failure::Broken(e.to_string()))?;
        let Ok(csql) = CString::new(sql) else {
            return Err(Failure::Broken("a statement contains a NUL byte".into()));
        };
        let raw = self.raw.as_ptr();
        let conn_error = |api: &Api| {
            // SAFETY: our live PGconn; the message is copied at once.
            Failure::Broken(unsafe { text((api.error_message)(raw)) })
        };
        // SAFETY: our live PGconn, used by this thread only (`&mut self`),
        // as in every libpq call on `raw` below; a NUL-terminated statement.
        if unsafe { (api.send_query)(raw, csql.as_ptr()) } == 0 {
            return Err(conn_error(api));
        }
        loop {
            // SAFETY: as above.
            match unsafe { (api.flush)(raw) } {
                0 => break,
                1 => {
                    if !wait_fd(self.fd, Want::Both, deadline) {
                        return Err(Failure::TimedOut);
                    }
                    // libpq asks that input be consumed while it waits to
                    // send, or the server could block on its side.
                    // SAFETY: as above.
                    if unsafe { (api.consume_input)(raw) } == 0 {
                        return Err(conn_error(api));
                    }
                }
                _ => return Err(conn_error(api)),
            }
        }
        let mut out = Vec::new();
        let mut error: Option<Failure> = None;
        loop {
            // SAFETY: as above.
            while unsafe { (api.is_busy)(raw) } == 1 {
                if !wait_fd(self.fd, Want::Read, deadline) {
                    return Err(Failure::TimedOut);
                }
                // SAFETY: as above.
                if unsafe { (api.consume_input)(raw) } == 0 {
                    return Err(conn_error(api));
                }
            }
            // SAFETY: as above.
            let res = unsafe { (api.get_result)(raw) };
            if res.is_null() {
                break;
            }
            // SAFETY: `res` is a live PGresult until PQclear below.
            let status = unsafe { (api.result_status)(res) };
            match status {
                PGRES_TUPLES_OK => {
                    // SAFETY: as above.
                    out.push(unsafe { rows(api, res) });
                }
                PGRES_COMMAND_OK | PGRES_EMPTY_QUERY | PGRES_NONFATAL_ERROR => {}
                PGRES_FATAL_ERROR => {
                    if error.is_none() {
                        // SAFETY: as above; strings copied at once.
                        let (state, primary, full) = unsafe {
                            (
                                text((api.result_error_field)(res, PG_DIAG_SQLSTATE)),
                                text((api.result_error_field)(res, PG_DIAG_MESSAGE_PRIMARY)),
                                text((api.result_error_message)(res)),
                            )
                        };
                        let message = if primary.is_empty() { full } else { primary };
                        error = Some(Failure::Sql { state, message });
                    }
                }
                other => {
                    if error.is_none() {
                        error = Some(Failure::Broken(format!(
                            "unexpected answer from the server (result status {other})"
                        )));
                    }
                }
            }
            // SAFETY: freed once; not used after.
            unsafe { (api.clear)(res) };
        }
        // SAFETY: as above.
        if unsafe { (api.status)(raw) } == CONNECTION_BAD {
            let msg = match error {
                Some(Failure::Sql { message, .. }) if !message.is_empty() => message,
                _ => match conn_error(api) {
                    Failure::Broken(m) => m,
                    _ => String::new(),
                },
            };
            return Err(Failure::Broken(if msg.is_empty() {
                "the connection to the server was lost".into()
            } else {
                msg
            }));
        }
        match error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The text values of a result.
///
/// # Safety
/// `res` is a live PGresult.
unsafe fn rows(api: &Api, res: *const PgResultRaw) -> Rows {
    // SAFETY: `res` is live, per the caller, and every index is within
    // the counts libpq gives.
    unsafe {
        let n = (api.ntuples)(res);
        let f = (api.nfields)(res);
        (0..n)
            .map(|r| {
                (0..f)
                    .map(|c| {
                        if (api.get_is_null)(res, r, c) == 1 {
                            None
                        } else {
                            let p = (api.get_value)(res, r, c);
                            Some(CStr::from_ptr(p).to_string_lossy().into_owned())
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.inherited() {
            // A fork child: close our copy of the socket and leave libpq's
            // memory alone. PQfinish would send Terminate (and a TLS
            // close-notify) on the parent's session.
            if self.fd >= 0 {
                // SAFETY: the descriptor came from libpq in the parent and
                // was inherited; nothing else in this process uses it.
                unsafe { libc::close(self.fd) };
            }
            return;
        }
        if let Ok(api) = api() {
            // SAFETY: our PGconn, finished once. The connection is
            // non-blocking, so its Terminate message never makes us wait.
            unsafe { (api.finish)(self.raw.as_ptr()) };
        }
    }
}
