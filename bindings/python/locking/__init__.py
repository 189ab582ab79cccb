"""liblocking for Python: cooperative, multiprocess- and multithread-safe locks.

A ``ctypes`` binding of the C library liblocking, which ``pip install``
builds from the repository and ships inside this package. It locks exactly
as C programs using the library do, so a Python process and a C process (or
``lockrun``) exclude each other when they use the same lock directory,
namespace, name and method.

    import locking

    lk = locking.Locker("inventory", "/var/lock/myapp", ns="db", timeout=5)
    with lk:                                 # exclusive, up to 5 s
        ...
    with lk.shared():                        # shared with other readers
        ...
    lk.acquire(timeout=0.5)                  # this call waits up to 0.5 s
    try:
        print(lk.fencing_token)
    finally:
        lk.release()

    async with lk:                           # asyncio: the loop keeps running
        ...

    with locking.open_locked("/srv/data/counter", timeout=5) as f:
        n = int(f.read() or b"0")
        f.seek(0); f.truncate(); f.write(b"%d\\n" % (n + 1))

The library is the one built into this package; the environment variable
``LOCKING_LIBRARY`` (a path) overrides it, and without either (a source
checkout used in place) ``ctypes.util.find_library("locking")``,
``liblocking.so.0`` and ``liblocking.so`` are tried.

Errors are exceptions, all subclasses of :class:`LockingError` (with
``code`` and the library's ``message``). :class:`LockerFailed` and
:class:`CannotGetLock` (timeouts) are also :class:`TimeoutError`;
:class:`InvalidArgument` is also a :class:`ValueError`; OS failures are a
:class:`LockingOSError` that is also the built-in ``OSError`` subclass of
its errno (``FileNotFoundError``, ``PermissionError``, ...).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import importlib.machinery
import io
import math
import os
import signal
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Union

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "Method",
    "METHOD_MKDIR",
    "METHOD_OPENCREATE",
    "METHOD_FAKE",
    "METHOD_KERNEL",
    "METHOD_POSTGRES",
    "EXCLUSIVE",
    "SHARED",
    "WAIT_FOREVER",
    "NEVER_EXPIRE",
    "LockingError",
    "LockerFailed",
    "CannotGetLock",
    "InvalidArgument",
    "LockingOSError",
    "LockingBlockingIOError",
    "LockingChildProcessError",
    "LockingBrokenPipeError",
    "LockingConnectionAbortedError",
    "LockingConnectionRefusedError",
    "LockingConnectionResetError",
    "LockingFileExistsError",
    "LockingFileNotFoundError",
    "LockingInterruptedError",
    "LockingIsADirectoryError",
    "LockingNotADirectoryError",
    "LockingPermissionError",
    "LockingProcessLookupError",
    "LockingTimeoutError",
    "AlreadyLocked",
    "NotLocked",
    "LockLost",
    "InternalError",
    "Unavailable",
    "Locker",
    "Acquired",
    "LockGuard",
    "LockedFile",
    "open_locked",
    "strerror",
    "version",
    "library_path",
]

#: A name or path: ``str``, ``bytes`` or ``os.PathLike``.
StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class Method(enum.IntEnum):
    """Lock methods (the ``LOCKING_METHOD_*`` values of ``locking.h``)."""

    MKDIR = 0
    OPENCREATE = 1
    FAKE = 2
    KERNEL = 3
    #: (0.2) a PostgreSQL advisory lock; ``lockdir`` is a libpq connection
    #: string. Refused with :class:`InvalidArgument` by a library built
    #: without it.
    POSTGRES = 4


METHOD_MKDIR = Method.MKDIR
METHOD_OPENCREATE = Method.OPENCREATE
METHOD_FAKE = Method.FAKE
METHOD_KERNEL = Method.KERNEL
METHOD_POSTGRES = Method.POSTGRES

#: Lock modes (``LOCKING_EXCLUSIVE`` and ``LOCKING_SHARED``).
EXCLUSIVE = 0
SHARED = 1

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
E_UNAVAILABLE = -9


# --------------------------------------------------------------- errors


class LockingError(Exception):
    """A liblocking failure: ``code`` is the C return code, ``message`` the
    library's description (``locking_last_error()``)."""

    code: Optional[int] = None

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.code))


class LockerFailed(LockingError, TimeoutError):
    """A :class:`Locker` did not get its lock within the timeout (also a
    :class:`TimeoutError`, as ``filelock.Timeout`` is)."""

    code = E_LOCKER_FAILED


class CannotGetLock(LockingError, TimeoutError):
    """:func:`open_locked` did not get the file's lock within the timeout
    (also a :class:`TimeoutError`)."""

    code = E_CANNOT_GET_LOCK


class InvalidArgument(LockingError, ValueError):
    """An argument was rejected (empty name, NaN, unknown method or mode, a
    lock entry of another method, ...)."""

    code = E_INVALID_ARGUMENT


class LockingOSError(LockingError, OSError):
    """An operating system call failed. ``errno``, ``strerror`` and
    ``filename`` are set as for any ``OSError`` (``filename``: the path the
    failing call was applied to); ``message`` names the call and the path.

    The exception raised is the subclass that also derives from the
    built-in ``OSError`` subclass of the errno, as ``open()`` would raise:
    :class:`LockingFileNotFoundError` (a ``FileNotFoundError``),
    :class:`LockingPermissionError`, :class:`LockingIsADirectoryError`,
    :class:`LockingNotADirectoryError`, ...; this class itself for an errno
    without one."""

    code = E_IO

    def __init__(
        self,
        message: str,
        code: int = E_IO,
        errno_: int = 0,
        filename: Optional[str] = None,
    ) -> None:
        strerror_ = os.strerror(errno_) if errno_ else message
        if filename is None:
            OSError.__init__(self, errno_, strerror_)
        else:
            OSError.__init__(self, errno_, strerror_, filename)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.code, self.errno or 0, self.filename))


class LockingBlockingIOError(LockingOSError, BlockingIOError):
    """:class:`LockingOSError` for ``EAGAIN``, ``EWOULDBLOCK``, ``EALREADY``, ``EINPROGRESS``."""


class LockingChildProcessError(LockingOSError, ChildProcessError):
    """:class:`LockingOSError` for ``ECHILD``."""


class LockingBrokenPipeError(LockingOSError, BrokenPipeError):
    """:class:`LockingOSError` for ``EPIPE``, ``ESHUTDOWN``."""


class LockingConnectionAbortedError(LockingOSError, ConnectionAbortedError):
    """:class:`LockingOSError` for ``ECONNABORTED``."""


class LockingConnectionRefusedError(LockingOSError, ConnectionRefusedError):
    """:class:`LockingOSError` for ``ECONNREFUSED``."""


class LockingConnectionResetError(LockingOSError, ConnectionResetError):
    """:class:`LockingOSError` for ``ECONNRESET``."""


class LockingFileExistsError(LockingOSError, FileExistsError):
    """:class:`LockingOSError` for ``EEXIST``."""


class LockingFileNotFoundError(LockingOSError, FileNotFoundError):
    """:class:`LockingOSError` for ``ENOENT``."""


class LockingInterruptedError(LockingOSError, InterruptedError):
    """:class:`LockingOSError` for ``EINTR``."""


class LockingIsADirectoryError(LockingOSError, IsADirectoryError):
    """:class:`LockingOSError` for ``EISDIR``."""


class LockingNotADirectoryError(LockingOSError, NotADirectoryError):
    """:class:`LockingOSError` for ``ENOTDIR``."""


class LockingPermissionError(LockingOSError, PermissionError):
    """:class:`LockingOSError` for ``EACCES``, ``EPERM``."""


class LockingProcessLookupError(LockingOSError, ProcessLookupError):
    """:class:`LockingOSError` for ``ESRCH``."""


class LockingTimeoutError(LockingOSError, TimeoutError):
    """:class:`LockingOSError` for ``ETIMEDOUT`` (an OS call timed out; a lock
    wait that ran out is :class:`LockerFailed`)."""


# the built-in OSError subclass of an errno -> ours
_OS_CLASSES: Dict[type, type] = {
    builtin: ours
    for ours in (
        LockingBlockingIOError,
        LockingChildProcessError,
        LockingBrokenPipeError,
        LockingConnectionAbortedError,
        LockingConnectionRefusedError,
        LockingConnectionResetError,
        LockingFileExistsError,
        LockingFileNotFoundError,
        LockingInterruptedError,
        LockingIsADirectoryError,
        LockingNotADirectoryError,
        LockingPermissionError,
        LockingProcessLookupError,
        LockingTimeoutError,
    )
    for builtin in ours.__bases__[1:]
}


def _os_error_class(err: int) -> type:
    """The :class:`LockingOSError` subclass for an errno value."""
    # OSError(errno, ...) picks the built-in subclass, as open() does
    builtin = type(OSError(err, "")) if err else OSError
    return _OS_CLASSES.get(builtin, LockingOSError)


class AlreadyLocked(LockingError):
    """Acquiring through a Locker that already holds its lock, from the
    thread (or asyncio task) that acquired it: locks are not reentrant, and
    this error replaces a deadlock."""

    code = E_ALREADY_LOCKED


class NotLocked(LockingError):
    """``release()``/``check()``/``refresh()``/``fencing_token`` on a Locker
    that does not hold its lock."""

    code = E_NOT_LOCKED


class LockLost(LockingError):
    """The lock was broken by another party after ``expire`` (or its lock
    directory was replaced)."""

    code = E_LOCK_LOST


class InternalError(LockingError):
    """A bug in the library (a caught Rust panic)."""

    code = E_INTERNAL


class Unavailable(LockingError):
    """The lock service (PostgreSQL) or what a method needs is not
    available here; ``message`` has the reason."""

    code = E_UNAVAILABLE


_EXCEPTIONS: Dict[int, type] = {
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
        Unavailable,
    )
}


# -------------------------------------------------------------- library


class _CLocker(ctypes.Structure):
    """The opaque ``Locker`` of the C API."""


_LockerP = ctypes.POINTER(_CLocker)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _bundled() -> List[str]:
    """The library that ``pip install`` built into this package."""
    return [
        os.path.join(_HERE, "_liblocking" + suffix)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if os.path.exists(os.path.join(_HERE, "_liblocking" + suffix))
    ]


def _candidates() -> List[str]:
    env = os.environ.get("LOCKING_LIBRARY")
    if env:
        return [env]
    bundled = _bundled()
    if bundled:
        return bundled[:1]
    found = ctypes.util.find_library("locking")
    return ([found] if found else []) + ["liblocking.so.0", "liblocking.so"]


def _load() -> Any:
    errors = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            errors.append("%s: %s" % (name, e))
            continue
        return name, lib
    raise ImportError(
        "cannot load liblocking: this package was installed without its "
        "library (install it with `pip install bindings/python` from the "
        "liblocking repository), or set LOCKING_LIBRARY to the path of "
        "liblocking.so: " + "; ".join(errors)
    )


#: The path (or name) of the C library in use.
library_path: str
library_path, _lib = _load()


def _declare(name: str, restype: Any, *argtypes: Any) -> Any:
    try:
        f = getattr(_lib, name)
    except AttributeError:
        raise ImportError(
            "%s lacks %s(): liblocking 0.2 or later is needed" % (library_path, name)
        ) from None
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
_locker_acquire = _declare("locker_acquire", _c_int, _LockerP, _c_int, _c_double)
_locker_unlock = _declare("locker_unlock", _c_int, _LockerP)
_locker_refresh = _declare("locker_refresh", _c_int, _LockerP)
_locker_check = _declare("locker_check", _c_int, _LockerP)
_locker_fencing_token = _declare(
    "locker_fencing_token", _c_int, _LockerP, ctypes.POINTER(ctypes.c_uint64)
)
_locker_holder = _declare("locker_holder", _c_int, _LockerP, _c_char_p, ctypes.c_size_t)
_locker_free = _declare("locker_free", None, _LockerP)
_open_locked_fd = _declare(
    "open_locked_fd", _c_int, _c_char_p, _c_double, _c_char_p, _c_double, _c_int
)
_close_locked_fd = _declare("close_locked_fd", _c_int, _c_int)
_strerror = _declare("locking_strerror", _c_char_p, _c_int)
_last_error = _declare("locking_last_error", _c_char_p)
_version = _declare("locking_version", _c_char_p)


def strerror(code: int) -> str:
    """The library's static description of a return code."""
    return str(_strerror(int(code)).decode("utf-8", "replace"))


def version() -> str:
    """The version of the C library in use, e.g. ``"0.2.0"``."""
    return str(_version().decode("ascii", "replace"))


def _path_in(message: str, err: int) -> Optional[str]:
    """The path in an OS error message of the library ("CALL PATH: TEXT")."""
    text = message
    tail = ": " + os.strerror(err) if err else None
    if tail and text.endswith(tail):
        text = text[: -len(tail)]
    else:
        i = text.rfind(": ")
        if i < 0:
            return None
        text = text[:i]
    _call, sep, rest = text.partition(" ")
    if rest.startswith("(") and ") " in rest:  # "open (why...) PATH"
        rest = rest.split(") ", 1)[1]
    return rest or None


def _error(code: int, path: Optional[bytes] = None) -> LockingError:
    """The exception for a failed call; must run right after the call, on
    the same thread (``errno`` and ``locking_last_error()`` are per thread).
    ``path``: the path the call was given, for ``filename`` when the
    message names none."""
    err = ctypes.get_errno()
    detail = _last_error().decode("utf-8", "replace") or strerror(code)
    cls = _EXCEPTIONS.get(code)
    if cls is LockingOSError:
        filename = _path_in(detail, err)
        if filename is None and path is not None:
            filename = os.fsdecode(path)
        os_error: LockingError = _os_error_class(err)(detail, code, err, filename)
        return os_error
    if cls is None:
        return LockingError("%s (code %d)" % (detail, code), code)
    error: LockingError = cls(detail, code)
    return error


def _check(code: int) -> int:
    if code < 0:
        raise _error(code)
    return code


def _bytes(value: Any, what: str, allow_none: bool = False) -> Optional[bytes]:
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


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise TypeError("%s must be a number of seconds" % what)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be a number of seconds" % what) from None
    if math.isnan(x):
        raise InvalidArgument("%s is NaN" % what)
    return x


def _forever(t: float) -> bool:
    return t < 0 or t > threading.TIMEOUT_MAX


def _method(value: Any) -> int:
    if isinstance(value, str):
        try:
            return Method[value.upper()]
        except KeyError:
            raise InvalidArgument("unknown method %r" % value) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("method must be a Method, an int or a method name")
    return int(value)


def _display(ns: Optional[bytes], objname: bytes) -> str:
    """The name as the library prints it: "obj" or "obj" in namespace "ns"."""

    def part(b: bytes) -> str:
        s = b.decode("utf-8", "replace")
        if len(s) > 80:
            return '"%s..." (%d bytes)' % (s[:64], len(b))
        return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')

    if not ns:
        return part(objname)
    return "%s in namespace %s" % (part(objname), part(ns))


# ------------------------------------------------- waiting off the caller

# Signals a waiting helper thread must leave to the main thread (Ctrl-C);
# the synchronous ones stay deliverable.
_SYNC_SIGNALS = {
    getattr(signal, n)
    for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS")
    if hasattr(signal, n)
}


def _block_signals() -> None:
    if hasattr(signal, "pthread_sigmask"):
        try:
            signal.pthread_sigmask(
                signal.SIG_BLOCK, set(signal.valid_signals()) - _SYNC_SIGNALS
            )
        except (OSError, ValueError):
            pass


class _Background:
    """Runs a blocking library call in a helper thread, so that the caller
    can give up waiting (Ctrl-C in the main thread, a cancelled asyncio
    task) without leaking what the call gets: if the caller has left by
    the time the call succeeds, ``undo(result)`` releases it."""

    def __init__(
        self,
        fn: Callable[[], Any],
        undo: Callable[[Any], None],
        notify: Optional[Callable[[], Any]] = None,
    ) -> None:
        self._fn = fn
        self._undo = undo
        self._notify = notify
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._done = False
        self._abandoned = False
        self._collected = False
        self._result: Any = None
        self._error: Optional[BaseException] = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="locking-wait", daemon=True).start()

    def _run(self) -> None:
        _block_signals()  # the caller's thread handles them
        result: Any = None
        error: Optional[BaseException] = None
        try:
            result = self._fn()
        except BaseException as e:
            error = e
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                self._result, self._error, self._done = result, error, True
        if abandoned:
            if error is None:
                self._undo_quietly(result)
            return
        self._event.set()
        if self._notify is not None:
            try:
                self._notify()
            except BaseException:  # the event loop is gone: nobody collects it
                self.abandon()

    def _undo_quietly(self, result: Any) -> None:
        try:
            self._undo(result)
        except Exception:
            pass

    def run(self) -> Any:
        """Starts the call and waits (interruptibly) for it; its result, or
        its error. Whatever interrupts the wait (at any point) abandons it."""
        try:
            self.start()
            self._event.wait()
            return self.result()
        except BaseException:
            self.abandon()
            raise

    def result(self) -> Any:
        with self._lock:
            self._collected = True
            result, error = self._result, self._error
            self._result = self._error = None
        if error is not None:
            raise error
        return result

    def abandon(self) -> None:
        """The caller leaves: whatever the call gets is released."""
        with self._lock:
            if not self._done:
                self._abandoned = True
                return
            undo = not self._collected and self._error is None
            self._collected = True
            result = self._result
        if undo:
            self._undo_quietly(result)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# --------------------------------------------------------------- Locker

_LIVE: "weakref.WeakSet[Locker]" = weakref.WeakSet()


class Acquired:
    """What :meth:`Locker.acquire` returns (as ``filelock`` does): a context
    manager that releases on exit, so ``with lk.acquire(timeout=2):``
    works."""

    __slots__ = ("_locker",)

    def __init__(self, locker: "Locker") -> None:
        self._locker = locker

    def __enter__(self) -> "Locker":
        return self._locker

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._locker._exit(exc)

    def __repr__(self) -> str:
        return "<locking.Acquired %r>" % (self._locker,)


class LockGuard:
    """A context manager (``with`` and ``async with``) that acquires on
    entry and releases on exit: :meth:`Locker.shared`,
    :meth:`Locker.exclusive`. Reusable, not reentrant."""

    __slots__ = ("_locker", "_timeout", "_blocking", "_shared")

    def __init__(
        self, locker: "Locker", timeout: Optional[float], blocking: bool, shared: bool
    ) -> None:
        self._locker = locker
        self._timeout = timeout
        self._blocking = blocking
        self._shared = shared

    def __enter__(self) -> "Locker":
        self._locker.acquire(self._timeout, self._blocking, self._shared)
        return self._locker

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._locker._exit(exc)

    async def __aenter__(self) -> "Locker":
        await self._locker.acquire_async(self._timeout, self._blocking, self._shared)
        return self._locker

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._locker._exit(exc)


class Locker:
    """A cooperative lock on ``(lockdir, ns, objname)``; see ``locker_new``.

    ``objname`` (required, non-empty) and ``ns`` are str or bytes: any bytes
    are a valid name. ``lockdir`` is created if missing. ``timeout`` (s):
    the default wait of :meth:`acquire`, :meth:`lock` and ``with``; ``< 0``
    waits forever, ``0`` tries once. ``expire`` (s): ``<= 0`` never breaks a
    live holder's lock; ``> 0`` lets this Locker break older locks.
    ``method`` is a :class:`Method`, its int or its name (``"kernel"``).

    Creating it does not lock. A Locker holds at most one acquisition at a
    time (exclusive or shared); it is not reentrant.

    **Threads.** A Locker shared by threads behaves like
    ``threading.Lock``: while one thread holds it, another thread's
    :meth:`acquire` waits (up to its timeout) for the release. The lock
    belongs to the Locker, not to a thread: :meth:`release` may be called
    from any thread, as ``threading.Lock.release()`` may. The thread (or
    asyncio task) that acquired is remembered only to turn its own second
    acquire into :class:`AlreadyLocked` instead of a deadlock. For several
    shared holders in one process, give each thread its own Locker.

    **Signals.** A wait in the main thread runs the library call in a
    helper thread, so Ctrl-C (``KeyboardInterrupt``) and other signal
    handlers interrupt it; the lock is never left held by an interrupted
    wait.

    A Locker that is garbage-collected releases its lock, so keep a
    reference while you hold it.
    """

    objname: bytes
    lockdir: bytes
    ns: Optional[bytes]
    timeout: float
    expire: float
    method: int

    def __init__(
        self,
        objname: StrPath,
        lockdir: StrPath,
        ns: Optional[StrPath] = None,
        timeout: float = WAIT_FOREVER,
        expire: float = NEVER_EXPIRE,
        method: Union[Method, int, str] = Method.KERNEL,
    ) -> None:
        self._ptr: Any = None
        self._qptr: Any = None  # a second C Locker, for holder() queries
        self._mutex = threading.Lock()  # state, and calls on _ptr
        self._qmutex = threading.Lock()  # calls on _qptr
        self._hold = threading.Lock()  # held from acquire to release
        self._held = False  # the C Locker holds the lock
        self._waiting = False  # a blocking locker_acquire is running
        self._closed = False
        self._close_pending = False  # close() while waiting: the waiter frees
        self._owner: Any = None  # thread ident or asyncio task that acquired
        self._mode: Optional[int] = None
        name = _bytes(objname, "objname")
        d = _bytes(lockdir, "lockdir")
        n = _bytes(ns, "ns", allow_none=True)
        t = _seconds(timeout, "timeout")
        e = _seconds(expire, "expire")
        m = _method(method)
        assert name is not None and d is not None
        out = _LockerP()
        rc = _locker_new(name, d, n, t, e, m, ctypes.byref(out))
        if rc != OK:
            raise _error(rc, d)
        self._ptr = out
        self.objname, self.lockdir, self.ns = name, d, n
        self.timeout, self.expire, self.method = t, e, m
        _LIVE.add(self)

    # -- internals

    def _name(self) -> str:
        return _display(self.ns, self.objname)

    def _closed_error(self) -> ValueError:
        return ValueError("this Locker is closed")

    def _timeout_for(self, timeout: Optional[float], blocking: bool) -> float:
        if not blocking:
            return 0.0
        if timeout is None:
            return self.timeout
        return _seconds(timeout, "timeout")

    def _refuse_reentry(self, owner: Any) -> None:
        if self._closed:
            raise self._closed_error()
        if self._held and self._owner is not None and self._owner == owner:
            raise AlreadyLocked(
                "%s is already held by this Locker (locks are not reentrant)"
                % self._name(),
                E_ALREADY_LOCKED,
            )

    def _failed(self, asked: float, why: str = "") -> LockerFailed:
        return LockerFailed(
            "could not lock %s within %g s%s" % (self._name(), asked, why),
            E_LOCKER_FAILED,
        )

    def _take(self, mode: int, t: float, owner: Any, asked: float) -> None:
        """Waits up to ``t`` for the other threads using this Locker, then
        for the lock itself (``locker_acquire`` with what is left of ``t``).
        Raises on failure; ``asked`` is the timeout to name in messages."""
        start = time.monotonic()
        forever = _forever(t)
        if t == 0:
            got = self._hold.acquire(False)
        elif forever:
            got = self._hold.acquire()
        else:
            got = self._hold.acquire(True, t)
        if not got:
            raise self._failed(
                asked, " (another thread of this process holds it through this Locker)"
            )
        try:
            with self._mutex:
                if self._closed:
                    raise self._closed_error()
                self._waiting = True
                ptr = self._ptr
            left = t if forever or t == 0 else max(0.0, t - (time.monotonic() - start))
            rc = _locker_acquire(ptr, mode, left)
            err: Optional[LockingError] = None
            if rc == E_LOCKER_FAILED:
                err = self._failed(asked)
            elif rc != OK:
                err = _error(rc, self.lockdir)
            with self._mutex:
                self._waiting = False
                if self._close_pending:
                    self._close_pending = False
                    self._ptr = None
                    _locker_free(ptr)
                    raise ValueError("this Locker was closed while it waited")
                if err is None:
                    self._held, self._owner, self._mode = True, owner, mode
                    return
            raise err
        except BaseException:
            self._hold.release()
            raise

    def _adopt(self, token: Any, owner: Any) -> None:
        """A helper thread's acquisition becomes the caller's."""
        with self._mutex:
            if self._held and self._owner is token:
                self._owner = owner

    def _release_quietly(self) -> None:
        try:
            self.release()
        except (LockingError, ValueError):
            pass

    def _exit(self, exc: Optional[BaseException]) -> None:
        """Release at the end of a with block, never hiding an exception
        that is already on its way out (a failing release is attached to it
        as a note)."""
        try:
            self.release()
        except (LockingError, ValueError) as e:
            if exc is None:
                raise
            note = getattr(exc, "add_note", None)
            if note is not None:
                note("liblocking: release failed too: %s" % e)

    def _after_fork_in_child(self) -> None:
        # the helper thread of a wait in progress does not exist here
        self._mutex = threading.Lock()
        self._qmutex = threading.Lock()
        if self._waiting:
            self._waiting = False
            self._held = False
            self._owner = None
            self._hold = threading.Lock()

    # -- acquiring and releasing

    def acquire(
        self,
        timeout: Optional[float] = None,
        blocking: bool = True,
        shared: bool = False,
    ) -> Acquired:
        """Acquire the lock, exclusive or (``shared=True``) shared.

        ``timeout`` (s) is this call's wait: ``None`` is the Locker's own
        timeout, ``< 0`` forever, ``0`` try once; it is passed to the
        library (``locker_acquire``) as it is, minus any time spent waiting
        for another thread that holds this same Locker. ``blocking=False``
        tries once, whatever the timeout.

        Returns an :class:`Acquired`, a context manager that releases.
        Raises :class:`LockerFailed` (a ``TimeoutError``) when the wait ran
        out, :class:`AlreadyLocked` if this thread holds it already through
        this Locker.
        """
        t = self._timeout_for(timeout, blocking)
        mode = SHARED if shared else EXCLUSIVE
        owner = threading.get_ident()
        self._refuse_reentry(owner)
        if t == 0 or not _in_main_thread():
            self._take(mode, t, owner, t)
            return Acquired(self)
        # The main thread: a blocking library call could not be interrupted
        # by Ctrl-C, so a wait that does not succeed at once runs in a
        # helper thread while this one waits interruptibly.
        start = time.monotonic()
        try:
            self._take(mode, 0.0, owner, t)
            return Acquired(self)
        except LockerFailed:
            pass
        left = t if _forever(t) else max(0.0, t - (time.monotonic() - start))
        # Until this thread has the outcome, the acquisition is the helper's
        # (an abandoned one is not this thread's, even for a moment).
        token = object()
        _Background(
            lambda: self._take(mode, left, token, t),
            lambda _: self._release_quietly(),
        ).run()
        self._adopt(token, owner)
        return Acquired(self)

    async def acquire_async(
        self,
        timeout: Optional[float] = None,
        blocking: bool = True,
        shared: bool = False,
    ) -> Acquired:
        """:meth:`acquire` for asyncio: the wait runs in a helper thread and
        the event loop keeps running. Cancelling the awaiting task (or an
        ``asyncio.wait_for`` timeout) never leaves the lock held: if the
        library call gets the lock after the task left, it is released."""
        t = self._timeout_for(timeout, blocking)
        mode = SHARED if shared else EXCLUSIVE
        task = asyncio.current_task()
        owner: Any = task if task is not None else threading.get_ident()
        self._refuse_reentry(owner)
        start = time.monotonic()
        try:
            self._take(mode, 0.0, owner, t)  # never blocks the loop
            return Acquired(self)
        except LockerFailed:
            if t == 0:
                raise
        left = t if _forever(t) else max(0.0, t - (time.monotonic() - start))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done() -> None:
            if not fut.done():
                fut.set_result(None)

        token = object()
        bg = _Background(
            lambda: self._take(mode, left, token, t),
            lambda _: self._release_quietly(),
            lambda: loop.call_soon_threadsafe(done),
        )
        try:
            bg.start()
            await fut
            bg.result()
        except BaseException:
            bg.abandon()
            raise
        self._adopt(token, owner)
        return Acquired(self)

    def release(self) -> None:
        """Release the lock, from any thread. Raises :class:`NotLocked` if
        this Locker does not hold it, :class:`LockLost` if another party
        broke it after ``expire`` (it is released all the same)."""
        with self._mutex:
            if self._closed:
                raise self._closed_error()
            if not self._held:
                raise NotLocked("%s is not held by this Locker" % self._name(), E_NOT_LOCKED)
            rc = _locker_unlock(self._ptr)
            err = None if rc == OK else _error(rc, self.lockdir)
            if rc in (OK, E_LOCK_LOST, E_NOT_LOCKED):  # no longer held
                self._held, self._owner, self._mode = False, None, None
                self._hold.release()
        if err is not None:
            raise err

    def lock(self) -> None:
        """``acquire()`` (exclusive, the Locker's timeout), returning None."""
        self.acquire()

    def unlock(self) -> None:
        """Same as :meth:`release`."""
        self.release()

    def shared(self, timeout: Optional[float] = None, blocking: bool = True) -> LockGuard:
        """``with lk.shared():`` / ``async with lk.shared():`` holds the lock
        shared for the block (any number of shared holders at once, no
        exclusive one)."""
        return LockGuard(self, timeout, blocking, True)

    def exclusive(self, timeout: Optional[float] = None, blocking: bool = True) -> LockGuard:
        """``with lk.exclusive(timeout=5):`` holds the lock exclusive for the
        block; ``with lk:`` is the same with the Locker's timeout."""
        return LockGuard(self, timeout, blocking, False)

    # -- state

    def _held_call(self, fn: Callable[[Any], int]) -> None:
        with self._mutex:
            if self._closed:
                raise self._closed_error()
            if not self._held:
                raise NotLocked("%s is not held by this Locker" % self._name(), E_NOT_LOCKED)
            rc = fn(self._ptr)
            if rc != OK:
                raise _error(rc, self.lockdir)

    def refresh(self) -> None:
        """Renew the lock's age so that ``expire`` does not break it."""
        self._held_call(_locker_refresh)

    def check(self) -> None:
        """Return if this Locker still holds its lock; raise
        :class:`LockLost` if it was broken, :class:`NotLocked` if not held."""
        self._held_call(_locker_check)

    @property
    def is_locked(self) -> bool:
        """True while this Locker holds its lock (False once it was lost)."""
        if not self._held:
            return False
        try:
            self.check()
            return True
        except (NotLocked, LockLost, ValueError):
            return False

    #: Same as :attr:`is_locked` (the 0.1 name).
    locked = is_locked

    @property
    def is_shared(self) -> bool:
        """True while this Locker holds its lock shared."""
        return self._held and self._mode == SHARED

    @property
    def fencing_token(self) -> int:
        """The fencing token of the current acquisition (either mode): a
        number greater than that of every acquisition of this lock granted
        before, in any process. Raises :class:`NotLocked` if not held."""
        out = ctypes.c_uint64()
        self._held_call(lambda ptr: _locker_fencing_token(ptr, ctypes.byref(out)))
        return int(out.value)

    def holder_text(self) -> str:
        """Who holds the lock now, as ``locker_holder()`` describes it:
        ``key=value`` lines per holder (``mode``, ``pid``, ``host``,
        ``state``, ``age``, ...), holders separated by an empty line; ``""``
        when nobody holds it. It looks without locking, may be out of date
        at once, and does not wait for a wait in progress on this Locker."""
        with self._qmutex:
            if self._closed:
                raise self._closed_error()
            if not self._qptr:
                out = _LockerP()
                rc = _locker_new(
                    self.objname, self.lockdir, self.ns, 0.0, self.expire, self.method,
                    ctypes.byref(out),
                )
                if rc != OK:
                    raise _error(rc, self.lockdir)
                self._qptr = out
            size = 0
            while True:
                buf = ctypes.create_string_buffer(size + 1) if size else None
                n = _locker_holder(self._qptr, buf, size + 1 if size else 0)
                if n < 0:
                    raise _error(n, self.lockdir)
                if n == 0:
                    return ""
                if buf is not None and n <= size:
                    return buf.raw[:n].decode("utf-8", "replace")
                size = n  # (again if the text grew meanwhile)

    def holder(self) -> List[Dict[str, str]]:
        """Who holds the lock now: a list with one dict per holder (empty
        when free; several for shared holders), the ``key=value`` lines of
        :meth:`holder_text` as strings: ``{"mode": "exclusive", "pid":
        "1234", "host": ..., "state": "alive", "age": "0.125", ...}``."""
        holders = []
        for block in self.holder_text().split("\n\n"):
            entry: Dict[str, str] = {}
            for line in block.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    entry[key] = value
            if entry:
                holders.append(entry)
        return holders

    def close(self) -> None:
        """Release the lock if held and free the Locker (idempotent). A
        wait in progress in another thread ends as it would have, and then
        fails with ``ValueError``."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._waiting:
                self._close_pending = True
            else:
                ptr, self._ptr = self._ptr, None
                if ptr:
                    _locker_free(ptr)
                if self._held:
                    self._held, self._owner, self._mode = False, None, None
                    self._hold.release()
        with self._qmutex:
            qptr, self._qptr = self._qptr, None
            if qptr:
                _locker_free(qptr)

    # -- context managers

    def __enter__(self) -> "Locker":
        self.acquire()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._exit(exc)

    async def __aenter__(self) -> "Locker":
        await self.acquire_async()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._exit(exc)

    def __del__(self) -> None:
        free = _locker_free
        if free is None:  # interpreter shutdown
            return
        for attr in ("_ptr", "_qptr"):
            ptr = getattr(self, attr, None)
            if ptr:
                setattr(self, attr, None)
                free(ptr)

    def __repr__(self) -> str:
        state = "closed" if self._closed else (
            ("held " + ("shared" if self._mode == SHARED else "exclusive"))
            if self._held else "free"
        )
        try:
            method = Method(self.method).name.lower()
        except ValueError:
            method = str(self.method)
        return "<locking.Locker ns=%r objname=%r lockdir=%r method=%s %s>" % (
            self.ns, self.objname, self.lockdir, method, state,
        )


def _after_fork_in_child() -> None:
    for lk in list(_LIVE):
        lk._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ----------------------------------------------------------- open_locked


class LockedFile:
    """A file opened by :func:`open_locked`: the lock is held until
    :meth:`close` (or the end of the ``with`` block).

    Reading, writing and seeking go to ``self.file`` (an ``io`` object over
    the locked descriptor ``self.fd``); attribute lookups that LockedFile
    does not answer itself are passed to it, so it reads like a file.
    Close it through LockedFile, never with ``os.close(fd)``.
    """

    def __init__(self, fd: int, file: Any, name: Any) -> None:
        self.fd = fd
        self.file = file
        self.name = name
        self._mutex = threading.Lock()
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
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

    def __getattr__(self, attr: str) -> Any:
        # Only called for attributes not found normally.
        if attr == "file":
            raise AttributeError(attr)
        return getattr(self.file, attr)

    def __iter__(self) -> Any:
        return iter(self.file)

    def __enter__(self) -> "LockedFile":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.close()
        except LockingError as e:
            if exc is None:
                raise
            note = getattr(exc, "add_note", None)
            if note is not None:
                note("liblocking: close failed too: %s" % e)

    def __del__(self) -> None:
        if not getattr(self, "closed", True) and _close_locked_fd is not None:
            self.closed = True
            try:
                self.file.close()
            except Exception:
                pass
            _close_locked_fd(self.fd)

    def __repr__(self) -> str:
        return "<locking.LockedFile name=%r fd=%d%s>" % (
            self.name,
            self.fd,
            " closed" if self.closed else "",
        )


def open_locked(
    filename: StrPath,
    timeout: float = WAIT_FOREVER,
    lockdir: Optional[StrPath] = None,
    expire: float = NEVER_EXPIRE,
    method: Union[Method, int, str] = Method.KERNEL,
    mode: str = "r+b",
    buffering: int = -1,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
) -> LockedFile:
    """Open ``filename`` for reading and writing with an exclusive lock
    (``open_locked_fd``): created (0666 & ~umask) if missing, at offset 0.

    Returns a :class:`LockedFile`, a context manager. ``mode`` is ``"r+b"``
    (binary, the default) or ``"r+"`` (text, with ``encoding``, ``errors``
    and ``newline`` as for ``open()``). ``lockdir=None`` keeps the lock in the
    file's own directory. ``timeout`` goes to the library as it is. Raises
    :class:`CannotGetLock` (a ``TimeoutError``) when it runs out.
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

    def attempt(wait: float) -> int:
        fd = _open_locked_fd(path, wait, d, e, m)
        if fd == E_CANNOT_GET_LOCK:
            raise CannotGetLock(
                "could not lock the file %s within %g s"
                % (os.fsdecode(path), t),  # type: ignore[arg-type]
                E_CANNOT_GET_LOCK,
            )
        if fd < 0:
            raise _error(fd, path)
        return int(fd)

    if t == 0 or not _in_main_thread():
        fd = attempt(t)
    else:  # interruptible by Ctrl-C, as Locker.acquire is
        start = time.monotonic()
        try:
            fd = attempt(0.0)
        except CannotGetLock:
            left = t if _forever(t) else max(0.0, t - (time.monotonic() - start))
            fd = _Background(lambda: attempt(left), _close_locked_fd).run()
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

