"""The Python binding on its own: Locker basics, open_locked, errors, fork,
signals."""

import errno
import math
import os
import pickle
import signal
import subprocess
import sys

import pytest

import locking
from conftest import PATIENCE, REAL_METHODS, method_id, wait_until


def test_strerror_names_every_code():
    texts = {locking.strerror(c) for c in range(0, -10, -1)}
    assert len(texts) == 10 and all(texts)
    assert locking.strerror(12345)  # any int, never NULL


def test_method_and_mode_values_are_the_c_values():
    assert [int(m) for m in locking.Method] == [0, 1, 2, 3, 4]
    assert locking.METHOD_KERNEL == 3 and locking.METHOD_MKDIR == 0
    assert locking.METHOD_POSTGRES == 4
    assert (locking.EXCLUSIVE, locking.SHARED) == (0, 1)


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_two_lockers_exclude_and_hand_over(lockdir, method):
    a = locking.Locker("job", lockdir, ns="t", timeout=0, method=method)
    b = locking.Locker("job", lockdir, ns="t", timeout=0, method=method)
    a.lock()
    assert a.locked and a.is_locked and not b.is_locked
    with pytest.raises(locking.LockerFailed) as e:
        b.lock()
    assert e.value.code == locking.E_LOCKER_FAILED
    assert "job" in str(e.value)
    a.unlock()
    assert not a.is_locked
    with b:
        assert b.is_locked
        with pytest.raises(locking.LockerFailed):
            a.lock()
    assert not b.is_locked
    a.lock()  # free again after the with block
    a.close()
    a.close()  # idempotent
    b.lock()  # close released it
    b.close()


def test_namespaces_and_any_bytes_are_distinct_names(lockdir):
    names = ["foo", "a/b", "..", "sp ace", "é", b"\xff\xfe", "x" * 5000]
    held = []
    for ns in ["one", "two", None]:
        for n in names:
            lk = locking.Locker(n, lockdir, ns=ns, timeout=0)
            lk.lock()  # none of them collides with another
            held.append(lk)
    # the same pair is the same lock
    with pytest.raises(locking.LockerFailed):
        locking.Locker(b"\xff\xfe", lockdir, ns="two", timeout=0).lock()
    with pytest.raises(locking.LockerFailed):
        locking.Locker("foo", lockdir, ns=b"", timeout=0).lock()  # None == b""
    for lk in held:
        lk.unlock()


def test_method_by_name_and_mismatch_is_reported(lockdir):
    a = locking.Locker("m", lockdir, timeout=0, method="mkdir")
    assert a.method == locking.Method.MKDIR
    a.lock()
    b = locking.Locker("m", lockdir, timeout=0, method="opencreate")
    with pytest.raises(locking.InvalidArgument) as e:
        b.lock()
    assert "method" in str(e.value)
    a.unlock()


def test_errors_are_typed(lockdir):
    lk = locking.Locker("e", lockdir, timeout=0)
    with pytest.raises(locking.NotLocked):
        lk.unlock()
    with pytest.raises(locking.NotLocked):
        lk.release()
    with pytest.raises(locking.NotLocked):
        lk.check()
    with pytest.raises(locking.NotLocked):
        lk.refresh()
    lk.lock()
    with pytest.raises(locking.AlreadyLocked):
        lk.lock()
    lk.refresh()
    lk.check()
    lk.unlock()

    for bad in [
        dict(objname="", lockdir=lockdir),
        dict(objname="x", lockdir=""),
        dict(objname="x", lockdir=lockdir, timeout=math.nan),
        dict(objname="x", lockdir=lockdir, expire=math.nan),
        dict(objname="x", lockdir=lockdir, method=99),
        dict(objname="x", lockdir=lockdir, method="flock"),
        dict(objname="x\0y", lockdir=lockdir),
    ]:
        with pytest.raises(locking.InvalidArgument) as e:
            locking.Locker(**bad)
        assert isinstance(e.value, ValueError)
        assert e.value.code == locking.E_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        locking.Locker(42, lockdir)
    with pytest.raises(TypeError):
        locking.Locker("x", lockdir, timeout="soon")
    with pytest.raises(locking.InvalidArgument):
        locking.Locker("x", lockdir).acquire(timeout=math.nan)


def test_timeouts_are_timeout_errors(lockdir, tmp_path):
    a = locking.Locker("t", lockdir)
    a.acquire()
    b = locking.Locker("t", lockdir)
    with pytest.raises(TimeoutError) as e:  # as filelock.Timeout is
        b.acquire(blocking=False)
    assert isinstance(e.value, locking.LockerFailed)
    assert isinstance(e.value, locking.LockingError)
    a.release()
    with locking.open_locked(tmp_path / "f", timeout=0):
        with pytest.raises(TimeoutError) as e:
            locking.open_locked(tmp_path / "f", timeout=0)
        assert isinstance(e.value, locking.CannotGetLock)


def test_os_errors_are_the_builtin_class_of_their_errno(tmp_path):
    f = tmp_path / "plain-file"
    f.write_text("")
    with pytest.raises(NotADirectoryError) as e:
        locking.Locker("x", f / "sub")
    assert isinstance(e.value, locking.LockingOSError)
    assert isinstance(e.value, locking.LockingNotADirectoryError)
    assert e.value.errno == errno.ENOTDIR
    assert e.value.strerror == os.strerror(errno.ENOTDIR)
    assert "plain-file" in e.value.filename
    assert e.value.code == locking.E_IO
    assert "plain-file" in str(e.value)

    with pytest.raises(FileNotFoundError) as e:
        locking.open_locked(tmp_path / "no" / "such" / "dir" / "f", timeout=0)
    assert isinstance(e.value, locking.LockingFileNotFoundError)
    assert e.value.errno == errno.ENOENT
    assert e.value.strerror == os.strerror(errno.ENOENT)
    assert "such" in e.value.filename

    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        locking.open_locked(tmp_path / "adir", timeout=0)
    assert isinstance(e.value, locking.LockingOSError)
    assert e.value.errno == errno.EISDIR
    assert "adir" in e.value.filename


@pytest.mark.parametrize(
    "err",
    [errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR, errno.ENOTDIR,
     errno.EEXIST, errno.EAGAIN, errno.EINTR, errno.ESRCH, errno.ETIMEDOUT,
     errno.EPIPE, errno.ECONNREFUSED, errno.EIO, errno.ENOSPC],
    ids=lambda e: errno.errorcode[e],
)
def test_every_errno_maps_to_both_classes(err):
    builtin = type(OSError(err, "x"))
    cls = locking._os_error_class(err)
    assert issubclass(cls, locking.LockingOSError)
    assert issubclass(cls, builtin)
    e = cls("open /x: %s" % os.strerror(err), locking.E_IO, err, "/x")
    assert (e.errno, e.strerror, e.filename) == (err, os.strerror(err), "/x")
    if err in (errno.EACCES, errno.EPERM):
        assert isinstance(e, PermissionError)
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is cls and copy.errno == err and str(copy) == str(e)


def test_exceptions_pickle():
    for e in [
        locking.LockerFailed("could not lock x", locking.E_LOCKER_FAILED),
        locking.NotLocked("x", locking.E_NOT_LOCKED),
        locking.InvalidArgument("bad", locking.E_INVALID_ARGUMENT),
    ]:
        copy = pickle.loads(pickle.dumps(e))
        assert type(copy) is type(e) and str(copy) == str(e) and copy.code == e.code


def test_closed_locker_is_refused(lockdir):
    lk = locking.Locker("c", lockdir)
    lk.close()
    with pytest.raises(ValueError):
        lk.lock()
    with pytest.raises(ValueError):
        lk.acquire(blocking=False)
    assert not lk.is_locked
    assert "closed" in repr(lk)


def test_with_block_releases_on_exception(lockdir):
    lk = locking.Locker("w", lockdir, timeout=0)
    with pytest.raises(RuntimeError):
        with lk:
            raise RuntimeError("boom")
    other = locking.Locker("w", lockdir, timeout=0)
    other.lock()
    other.unlock()


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_lock_lost_after_expire_is_reported(lockdir, method):
    holder = locking.Locker("x", lockdir, method=method)
    holder.lock()
    # the breaker waits until the lock is older than its expire, breaks it
    breaker = locking.Locker("x", lockdir, timeout=PATIENCE, expire=0.2, method=method)
    breaker.lock()
    assert not holder.is_locked
    with pytest.raises(locking.LockLost):
        holder.check()
    with pytest.raises(locking.LockLost):
        holder.unlock()
    # the loser's unlock left the new holder's lock alone
    breaker.check()
    breaker.unlock()
    holder.lock()  # the loser can lock again once the winner is gone
    holder.unlock()


def test_fork_child_does_not_release_the_parents_lock(lockdir):
    lk = locking.Locker("f", lockdir, timeout=0)
    lk.lock()
    pid = os.fork()
    if pid == 0:  # child: unlocking and freeing the copy touches nothing
        code = 0
        try:
            lk.unlock()
            code = 3
        except locking.NotLocked:
            pass
        except BaseException:
            code = 4
        lk.close()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    lk.check()
    with pytest.raises(locking.LockerFailed):
        locking.Locker("f", lockdir, timeout=0).lock()
    lk.unlock()


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_open_locked_reads_writes_and_excludes(tmp_path, method):
    path = tmp_path / "data.txt"
    with locking.open_locked(path, timeout=0, method=method) as f:
        assert f.read() == b""
        f.write(b"hello\n")
        # the same file through another path spelling is the same lock
        (tmp_path / "d").mkdir()
        with pytest.raises(locking.CannotGetLock) as e:
            locking.open_locked(tmp_path / "d" / ".." / "data.txt", timeout=0, method=method)
        assert e.value.code == locking.E_CANNOT_GET_LOCK
    assert f.closed
    assert path.read_bytes() == b"hello\n"
    with locking.open_locked(str(path), timeout=0, method=method, mode="r+") as t:
        assert t.read() == "hello\n"
        t.seek(0)
        t.truncate()
        t.write("é\n")
    assert path.read_text(encoding="utf-8") == "é\n"


def test_open_locked_close_is_idempotent_and_file_is_closed(tmp_path):
    lf = locking.open_locked(tmp_path / "f", timeout=0)
    fd = lf.fileno()
    assert fd >= 0
    lf.close()
    lf.close()
    with pytest.raises(ValueError):
        lf.read()
    with pytest.raises(OSError):
        os.fstat(fd)  # the descriptor is gone
    with pytest.raises(ValueError):
        locking.open_locked(tmp_path / "f", mode="w")


CTRL_C_LOCKER = """
import sys, locking
d = sys.argv[1]
holder = locking.Locker('k', d)
holder.lock()
w = locking.Locker('k', d)
try:
    print('waiting', flush=True)
    {wait}
    print('locked?!')
except KeyboardInterrupt:
    print('interrupted', flush=True)
# the interrupted wait must not keep (or later take and keep) the lock
holder.unlock()
other = locking.Locker('k', d, timeout={patience})
other.lock()
other.unlock()
w.lock()            # the interrupted Locker works again
w.unlock()
print('free', flush=True)
"""

CTRL_C_FILE = """
import sys, locking
f = sys.argv[1] + '/f'
held = locking.open_locked(f)
try:
    print('waiting', flush=True)
    locking.open_locked(f)
    print('locked?!')
except KeyboardInterrupt:
    print('interrupted', flush=True)
held.close()
locking.open_locked(f, timeout={patience}).close()
print('free', flush=True)
"""


@pytest.mark.parametrize(
    "code",
    [
        CTRL_C_LOCKER.format(wait="w.lock()", patience=PATIENCE),
        CTRL_C_LOCKER.format(wait="w.acquire(timeout=1e6, shared=True)", patience=PATIENCE),
        CTRL_C_FILE.format(patience=PATIENCE),
    ],
    ids=["lock", "acquire", "open_locked"],
)
def test_ctrl_c_interrupts_an_endless_wait(lockdir, code):
    lockdir.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(lockdir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline() == "waiting\n"
        # the wait runs in a helper thread: once it exists, the main thread
        # is waiting for it (or about to)
        wait_until(
            lambda: len(os.listdir("/proc/%d/task" % p.pid)) >= 2,
            "the waiting process has its helper thread",
        )
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=PATIENCE)
    finally:
        p.kill()
        p.wait()
    assert out == "interrupted\nfree\n"
    assert p.returncode == 0
