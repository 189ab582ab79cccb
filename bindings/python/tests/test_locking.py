"""The Python binding on its own: Locker, open_locked, errors, threads, fork."""

import errno
import math
import os
import re
import threading
import time

import pytest

import locking
from conftest import REAL_METHODS, REPO


def test_version_is_the_crate_version():
    cargo = (REPO / "Cargo.toml").read_text()
    want = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M).group(1)
    assert locking.version() == want


def test_strerror_names_every_code():
    assert "LockerFailed" in locking.strerror(locking.E_LOCKER_FAILED)
    assert locking.strerror(locking.E_CANNOT_GET_LOCK)
    assert locking.strerror(12345)  # any int, never NULL


def test_method_values_are_the_c_values():
    assert [int(m) for m in locking.Method] == [0, 1, 2, 3]
    assert locking.METHOD_KERNEL == 3 and locking.METHOD_MKDIR == 0


@pytest.mark.parametrize("method", REAL_METHODS, ids=lambda m: m.name.lower())
def test_two_lockers_exclude_and_hand_over(lockdir, method):
    a = locking.Locker("job", lockdir, ns="t", timeout=0, method=method)
    b = locking.Locker("job", lockdir, ns="t", timeout=0, method=method)
    a.lock()
    assert a.locked and not b.locked
    with pytest.raises(locking.LockerFailed) as e:
        b.lock()
    assert e.value.code == locking.E_LOCKER_FAILED
    assert "job" in str(e.value)
    a.unlock()
    assert not a.locked
    with b:
        assert b.locked
        with pytest.raises(locking.LockerFailed):
            a.lock()
    assert not b.locked
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


def test_os_errors_carry_errno_and_path(tmp_path):
    f = tmp_path / "plain-file"
    f.write_text("")
    with pytest.raises(locking.LockingOSError) as e:
        locking.Locker("x", f / "sub")
    assert isinstance(e.value, OSError)
    assert e.value.errno == errno.ENOTDIR
    assert e.value.code == locking.E_IO
    assert "plain-file" in str(e.value)


def test_closed_locker_is_refused(lockdir):
    lk = locking.Locker("c", lockdir)
    lk.close()
    with pytest.raises(ValueError):
        lk.lock()


def test_with_block_releases_on_exception(lockdir):
    lk = locking.Locker("w", lockdir, timeout=0)
    with pytest.raises(RuntimeError):
        with lk:
            raise RuntimeError("boom")
    other = locking.Locker("w", lockdir, timeout=0)
    other.lock()
    other.unlock()


@pytest.mark.parametrize("method", REAL_METHODS, ids=lambda m: m.name.lower())
def test_lock_lost_after_expire_is_reported(lockdir, method):
    holder = locking.Locker("x", lockdir, method=method)
    holder.lock()
    # the breaker waits until the lock is older than its expire, breaks it
    breaker = locking.Locker("x", lockdir, timeout=PATIENT, expire=0.2, method=method)
    breaker.lock()
    assert not holder.locked
    with pytest.raises(locking.LockLost):
        holder.check()
    with pytest.raises(locking.LockLost):
        holder.unlock()
    # the loser's unlock left the new holder's lock alone
    breaker.check()
    breaker.unlock()


PATIENT = 30.0


@pytest.mark.parametrize("method", REAL_METHODS, ids=lambda m: m.name.lower())
def test_threads_exclude_each_other(lockdir, method):
    inside = []
    overlaps = []
    count = [0]

    def work():
        lk = locking.Locker("t", lockdir, timeout=PATIENT, method=method)
        for _ in range(40):
            with lk:
                inside.append(1)
                time.sleep(0)  # let the other threads run (releases the GIL)
                if len(inside) != 1:
                    overlaps.append(len(inside))
                count[0] += 1
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENT * 4)
    assert not overlaps
    assert count[0] == 160


def test_shared_locker_calls_are_serialised(lockdir):
    lk = locking.Locker("s", lockdir, timeout=PATIENT)
    errors = []

    def work():
        for _ in range(50):
            try:
                lk.lock()
                lk.unlock()
            except locking.AlreadyLocked:
                pass  # the other thread holds it through this same Locker
            except locking.NotLocked:
                pass
            except Exception as e:  # anything else is a bug
                errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENT)
    assert not errors


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


@pytest.mark.parametrize("method", REAL_METHODS, ids=lambda m: m.name.lower())
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
    with pytest.raises(locking.LockingOSError) as e:
        locking.open_locked(tmp_path / "no" / "such" / "dir" / "f", timeout=0)
    assert e.value.errno == errno.ENOENT


@pytest.mark.parametrize("method", REAL_METHODS, ids=lambda m: m.name.lower())
def test_timeout_is_the_whole_wait(lockdir, method):
    holder = locking.Locker("t", lockdir, method=method)
    holder.lock()
    waiter = locking.Locker("t", lockdir, timeout=0.6, method=method)
    start = time.monotonic()
    with pytest.raises(locking.LockerFailed) as e:
        waiter.lock()
    assert time.monotonic() - start >= 0.6
    assert "within 0.6 s" in str(e.value)
    start = time.monotonic()
    with pytest.raises(locking.CannotGetLock):
        with locking.open_locked(lockdir / "f", timeout=0, method=method):
            locking.open_locked(lockdir / "f", timeout=0.4, method=method)
    assert time.monotonic() - start >= 0.4
    holder.unlock()


def test_ctrl_c_interrupts_an_endless_wait(lockdir):
    import signal
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, %r); import locking\n"
        "d = %r\n"
        "holder = locking.Locker('k', d)\n"
        "holder.lock()\n"
        "w = locking.Locker('k', d)\n"
        "try:\n"
        "    print('waiting', flush=True)\n"
        "    w.lock()  # waits forever\n"
        "    print('locked?!')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n" % (os.path.dirname(locking.__file__), str(lockdir))
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "waiting\n"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=PATIENT)
    finally:
        p.kill()
        p.wait()
    assert out == "interrupted\n"
    assert p.returncode == 0
