"""liblocking for Python: cooperative, multiprocess- and multithread-safe locks.

A pure ``ctypes`` binding of the C library ``liblocking.so`` (no build step).
It locks exactly as C programs using the library do, so a Python process and
a C process (or ``lockrun``) exclude each other when they use the same lock
directory, namespace, name and method.

    import locking

    with locking.Locker("inventory", "/var/lock/myapp", ns="db", timeout=5):
        ...                                  # the critical section

    with locking.open_locked("/srv/data/counter", timeout=5) as f:
        n = int(f.read() or b"0")
        f.seek(0); f.truncate(); f.write(b"%d\\n" % (n + 1))

The library is looked up in this order: the path in the environment variable
``LOCKING_LIBRARY``; ``ctypes.util.find_library("locking")``;
``liblocking.so.0``; ``liblocking.so``.

Errors are exceptions, one class per C return code, all subclasses of
:class:`LockingError` (which carries ``code`` and the library's ``message``):
:class:`LockerFailed` (a Locker's timeout ran out), :class:`CannotGetLock`
(``open_locked``'s timeout ran out), :class:`InvalidArgument` (also a
``ValueError``), :class:`LockingOSError` (also an ``OSError``, with
``errno``), :class:`AlreadyLocked`, :class:`NotLocked`, :class:`LockLost`
and :class:`InternalError`.
"""

import ctypes
import ctypes.util
import enum
import io
import math
import os
import threading
import time

__all__ = [
    "Method",
    "METHOD_MKDIR",
    "METHOD_OPENCREATE",
    "METHOD_FAKE",
    "METHOD_KERNEL",
    "WAIT_FOREVER",
    "NEVER_EXPIRE",
    "LockingError",
    "LockerFailed",
    "CannotGetLock",
    "InvalidArgument",
    "LockingOSError",
    "AlreadyLocked",
    "NotLocked",
    "LockLost",
    "InternalError",
    "Locker",
    "LockedFile",
    "open_locked",
    "strerror",
    "version",
    "library_path",
]


class Method(enum.IntEnum):
    """Lock methods (the ``LOCKING_METHOD_*`` values of ``locking.h``)."""

    MKDIR = 0
    OPENCREATE = 1
    FAKE = 2
    KERNEL = 3


METHOD_MKDIR = Method.MKDIR
METHOD_OPENCREATE = Method.OPENCREATE
METHOD_FAKE = Method.FAKE
METHOD_KERNEL = Method.KERNEL

#: A timeout that never ends.
WAIT_FOREVER = -1.0
#: An expire that never breaks a lock.
NEVER_EXPIRE = 0.0

# Return codes of the C API (LOCKING_OK and LOCKING_E_*).
OK = 0
E_LOCKER_FAILED = -1
E_CANNOT_GET_LOCK = -2
E_INVALID_ARGUMENT = -3
E_IO = -4
E_ALREADY_LOCKED = -5
E_NOT_LOCKED = -6
E_LOCK_LOST = -7
E_INTERNAL = -8


class LockingError(Exception):
    """A liblocking failure: ``code`` is the C return code, ``message`` the
    library's description (``locking_last_error()``)."""

    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class LockerFailed(LockingError):
    """``Locker.lock()`` did not get the lock within the timeout."""

    code = E_LOCKER_FAILED


class CannotGetLock(LockingError):
    """``open_locked()`` did not get the file's lock within the timeout."""

    code = E_CANNOT_GET_LOCK


class InvalidArgument(LockingError, ValueError):
    """An argument was rejected (empty name, NaN, unknown method, a lock
    entry of another method, ...)."""

    code = E_INVALID_ARGUMENT


class LockingOSError(LockingError, OSError):
    """An operating system call failed; ``errno`` and ``strerror`` are set
    as for any ``OSError``, ``message`` names the call and the path."""

    code = E_IO

    def __init__(self, message, code=E_IO, errno_=0):
        OSError.__init__(self, errno_, os.strerror(errno_) if errno_ else message)
        self.message = message
        self.code = code

    def __str__(self):
        return self.message


class AlreadyLocked(LockingError):
    """``lock()`` on a Locker that holds its lock (locks are not reentrant)."""

    code = E_ALREADY_LOCKED


class NotLocked(LockingError):
    """``unlock()``/``check()``/``refresh()`` on a Locker that does not hold
    its lock."""

    code = E_NOT_LOCKED


class LockLost(LockingError):
    """The lock was broken by another party after ``expire``."""

    code = E_LOCK_LOST


class InternalError(LockingError):
    """A bug in the library (a caught Rust panic)."""

    code = E_INTERNAL


_EXCEPTIONS = {
    cls.code: cls
    for cls in (
        LockerFailed,
        CannotGetLock,
        InvalidArgument,
        LockingOSError,
        AlreadyLocked,
        NotLocked,
        LockLost,
        InternalError,
    )
}


class _CLocker(ctypes.Structure):
    """The opaque ``Locker`` of the C API."""


_LockerP = ctypes.POINTER(_CLocker)


def _candidates():
    env = os.environ.get("LOCKING_LIBRARY")
    if env:
        return [env]
    found = ctypes.util.find_library("locking")
    names = [found] if found else []
    return names + ["liblocking.so.0", "liblocking.so"]


def _load():
    errors = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            errors.append("%s: %s" % (name, e))
            continue
        return name, lib
    raise ImportError(
        "cannot load liblocking (set LOCKING_LIBRARY to the path of "
        "liblocking.so): " + "; ".join(errors)
    )


library_path, _lib = _load()


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_c_int, _c_double, _c_char_p = ctypes.c_int, ctypes.c_double, ctypes.c_char_p

_locker_new = _declare(
    "locker_new",
    _c_int,
    _c_char_p,
    _c_char_p,
    _c_char_p,
    _c_double,
    _c_double,
    _c_int,
    ctypes.POINTER(_LockerP),
)
_locker_lock = _declare("locker_lock", _c_int, _LockerP)
_locker_unlock = _declare("locker_unlock", _c_int, _LockerP)
_locker_refresh = _declare("locker_refresh", _c_int, _LockerP)
_locker_check = _declare("locker_check", _c_int, _LockerP)
_locker_free = _declare("locker_free", None, _LockerP)
_open_locked_fd = _declare(
    "open_locked_fd", _c_int, _c_char_p, _c_double, _c_char_p, _c_double, _c_int
)
_close_locked_fd = _declare("close_locked_fd", _c_int, _c_int)
_strerror = _declare("locking_strerror", _c_char_p, _c_int)
_last_error = _declare("locking_last_error", _c_char_p)
_version = _declare("locking_version", _c_char_p)


def strerror(code):
    """The library's static description of a return code."""
    return _strerror(int(code)).decode("utf-8", "replace")


def version():
    """The library version, e.g. ``"0.2.0"``."""
    return _version().decode("ascii", "replace")


def _error(code):
    """The exception for a failed call; must run right after the call, on
    the same thread (``errno`` and ``locking_last_error()`` are per thread)."""
    err = ctypes.get_errno()
    detail = _last_error().decode("utf-8", "replace") or strerror(code)
    cls = _EXCEPTIONS.get(code)
    if cls is LockingOSError:
        return LockingOSError(detail, code, err)
    if cls is None:
        return LockingError("%s (code %d)" % (detail, code), code)
    return cls(detail, code)


def _check(code):
    if code < 0:
        raise _error(code)
    return code


def _bytes(value, what, allow_none=False):
    if value is None:
        if allow_none:
            return None
        raise InvalidArgument("%s must not be None" % what)
    if isinstance(value, (bytes, bytearray)):
        b = bytes(value)
    else:
        try:
            b = os.fsencode(value)
        except TypeError:
            raise TypeError(
                "%s must be str, bytes or os.PathLike, not %s"
                % (what, type(value).__name__)
            ) from None
    if b"\0" in b:
        raise InvalidArgument("%s contains a NUL byte" % what)
    return b


def _seconds(value, what):
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be a number of seconds" % what) from None
    if math.isnan(x):
        raise InvalidArgument("%s is NaN" % what)
    return x


def _method(value):
    if isinstance(value, str):
        try:
            return Method[value.upper()]
        except KeyError:
            raise InvalidArgument("unknown method %r" % value) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("method must be a Method, an int or a method name")
    return int(value)


# Waits are cut into slices of at most this many seconds, so that signal
# handlers (Ctrl-C: KeyboardInterrupt) run while a Python thread waits for
# a lock: the library's own wait is woken by the release itself, not by a
# poll, so slicing costs one extra call per slice, not latency.
_SLICE = 0.25


def _display(ns, objname):
    text = (ns or b"").decode("utf-8", "replace") + ":" + objname.decode("utf-8", "replace")
    return text if len(text) <= 120 else text[:100] + "..."


class Locker:
    """A cooperative lock on ``(lockdir, ns, objname)``; see ``locker_new``.

    ``objname`` (required, non-empty) and ``ns`` are str or bytes: any bytes
    are a valid name. ``lockdir`` is created if missing. ``timeout`` (s):
    ``< 0`` waits forever, ``0`` tries once. ``expire`` (s): ``<= 0`` never
    breaks a live holder's lock; ``> 0`` lets this Locker break older locks.
    ``method`` is a :class:`Method`, its int or its name (``"kernel"``).

    Creating it does not lock. ``with Locker(...) as lk:`` locks on entry
    and unlocks on exit. A Locker that is garbage-collected releases its
    lock, so keep a reference while you hold it. Unlike the C API, one
    Locker may be shared between threads (calls are serialised); it still
    is not reentrant.
    """

    def __init__(
        self,
        objname,
        lockdir,
        ns=None,
        timeout=WAIT_FOREVER,
        expire=NEVER_EXPIRE,
        method=Method.KERNEL,
    ):
        self._ptr = None
        self._mutex = threading.Lock()
        name = _bytes(objname, "objname")
        d = _bytes(lockdir, "lockdir")
        n = _bytes(ns, "ns", allow_none=True)
        t = _seconds(timeout, "timeout")
        e = _seconds(expire, "expire")
        m = _method(method)
        out = _LockerP()
        # the C Locker waits one slice at a time; lock() loops up to timeout
        per_call = t if 0 <= t <= _SLICE else _SLICE
        _check(_locker_new(name, d, n, per_call, e, m, ctypes.byref(out)))
        self._ptr = out
        self.objname, self.lockdir, self.ns = name, d, n
        self.timeout, self.expire, self.method = t, e, m

    def _call(self, fn):
        with self._mutex:
            if not self._ptr:
                raise ValueError("this Locker is closed")
            return _check(fn(self._ptr))

    def lock(self):
        """Acquire, waiting up to the timeout. Raises :class:`LockerFailed`
        when it ran out, :class:`AlreadyLocked` if held by this Locker.
        The wait can be interrupted by signals (KeyboardInterrupt)."""
        deadline = None if self.timeout < 0 else time.monotonic() + self.timeout
        while True:
            with self._mutex:
                if not self._ptr:
                    raise ValueError("this Locker is closed")
                rc = _locker_lock(self._ptr)
                if rc == OK:
                    return
                if rc != E_LOCKER_FAILED:
                    raise _error(rc)
            if deadline is None:
                continue
            if time.monotonic() >= deadline:
                raise LockerFailed(
                    "LockerFailed: could not lock %s within %g s"
                    % (_display(self.ns, self.objname), self.timeout)
                )

    def unlock(self):
        """Release. Raises :class:`NotLocked` if not held, :class:`LockLost`
        if another party broke the lock after ``expire`` (it is released
        all the same)."""
        self._call(_locker_unlock)

    def refresh(self):
        """Renew the lock's age so that ``expire`` does not break it."""
        self._call(_locker_refresh)

    def check(self):
        """Return if this Locker still holds its lock; raise
        :class:`LockLost` if it was broken, :class:`NotLocked` if not held."""
        self._call(_locker_check)

    @property
    def locked(self):
        """True while this Locker holds its lock (False if it was lost)."""
        try:
            self.check()
            return True
        except (NotLocked, LockLost):
            return False

    def close(self):
        """Release the lock if held and free the Locker (idempotent)."""
        with self._mutex:
            ptr, self._ptr = self._ptr, None
            if ptr:
                _locker_free(ptr)

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.unlock()
        except LockingError as e:
            if exc is None:
                raise
            # Do not hide the exception that is already on its way out.
            note = getattr(exc, "add_note", None)
            if note is not None:
                note("liblocking: unlock failed too: %s" % e)
        return False

    def __del__(self):
        ptr = getattr(self, "_ptr", None)
        if ptr and _locker_free is not None:
            self._ptr = None
            _locker_free(ptr)

    def __repr__(self):
        return "<locking.Locker ns=%r objname=%r lockdir=%r method=%s%s>" % (
            self.ns,
            self.objname,
            self.lockdir,
            Method(self.method).name.lower(),
            "" if self._ptr else " closed",
        )


class LockedFile:
    """A file opened by :func:`open_locked`: the lock is held until
    :meth:`close` (or the end of the ``with`` block).

    Reading, writing and seeking go to ``self.file`` (an ``io`` object over
    the locked descriptor ``self.fd``); attribute lookups that LockedFile
    does not answer itself are passed to it, so it reads like a file.
    Close it through LockedFile, never with ``os.close(fd)``.
    """

    def __init__(self, fd, file, name):
        self.fd = fd
        self.file = file
        self.name = name
        self._mutex = threading.Lock()
        self.closed = False

    def fileno(self):
        return self.fd

    def close(self):
        """Flush, release the lock and close the descriptor. Raises
        :class:`LockLost` if the lock had been broken (the file is closed
        all the same). Closing again does nothing."""
        with self._mutex:
            if self.closed:
                return
            self.closed = True
            try:
                self.file.close()  # flushes; closefd=False keeps fd open
            finally:
                _check(_close_locked_fd(self.fd))

    def __getattr__(self, attr):
        # Only called for attributes not found normally.
        if attr == "file":
            raise AttributeError(attr)
        return getattr(self.file, attr)

    def __iter__(self):
        return iter(self.file)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.close()
        except LockingError as e:
            if exc is None:
                raise
            note = getattr(exc, "add_note", None)
            if note is not None:
                note("liblocking: close failed too: %s" % e)
        return False

    def __del__(self):
        if not getattr(self, "closed", True) and _close_locked_fd is not None:
            self.closed = True
            try:
                self.file.close()
            except Exception:
                pass
            _close_locked_fd(self.fd)

    def __repr__(self):
        return "<locking.LockedFile name=%r fd=%d%s>" % (
            self.name,
            self.fd,
            " closed" if self.closed else "",
        )


def open_locked(
    filename,
    timeout=WAIT_FOREVER,
    lockdir=None,
    expire=NEVER_EXPIRE,
    method=Method.KERNEL,
    mode="r+b",
    buffering=-1,
    encoding=None,
    errors=None,
    newline=None,
):
    """Open ``filename`` for reading and writing with an exclusive lock
    (``open_locked_fd``): created (0666 & ~umask) if missing, at offset 0.

    Returns a :class:`LockedFile`, a context manager. ``mode`` is ``"r+b"``
    (binary, the default) or ``"r+"`` (text, with ``encoding``, ``errors``
    and ``newline`` as for ``open()``). ``lockdir=None`` keeps the lock in the
    file's own directory. Raises :class:`CannotGetLock` when the timeout
    runs out.
    """
    modes = {"r+b": "r+b", "rb+": "r+b", "+rb": "r+b", "r+": "r+", "+r": "r+"}
    if mode not in modes:
        raise ValueError("mode must be 'r+b' or 'r+' (the file is opened read+write)")
    mode = modes[mode]
    path = _bytes(filename, "filename")
    d = _bytes(lockdir, "lockdir", allow_none=True)
    t = _seconds(timeout, "timeout")
    e = _seconds(expire, "expire")
    m = _method(method)
    deadline = None if t < 0 else time.monotonic() + t
    while True:
        left = _SLICE if deadline is None else max(0.0, min(_SLICE, deadline - time.monotonic()))
        fd = _open_locked_fd(path, left, d, e, m)
        if fd >= 0:
            break
        if fd != E_CANNOT_GET_LOCK:
            raise _error(fd)
        if deadline is not None and time.monotonic() >= deadline:
            raise CannotGetLock(
                "CannotGetLock: could not lock file %s within %g s"
                % (os.fsdecode(path), t)
            )
    try:
        f = io.open(
            fd,
            mode,
            buffering=buffering,
            encoding=encoding,
            errors=errors,
            newline=newline,
            closefd=False,
        )
    except BaseException:
        _close_locked_fd(fd)
        raise
    return LockedFile(fd, f, filename)
