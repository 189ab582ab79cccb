"""A Python process and a C process (and lockrun) exclude each other.

The C side is holder.c, built against the same liblocking; lockrun is the
command-line tool. Every step is synchronised through the helpers' output
("locked", "released") and exit status, never by sleeping.
"""

import os
import sys
import threading

import pytest

import locking
from conftest import PATIENCE, REAL_METHODS

ids = lambda m: m.name.lower()  # noqa: E731


@pytest.mark.parametrize("method", REAL_METHODS, ids=ids)
def test_c_holds_python_fails_then_gets_it(lockdir, c_holder, parties, method):
    c = parties([c_holder, "locker", lockdir, "ns", "shared", int(method), 0])
    c.expect("locked")
    py = locking.Locker("shared", lockdir, ns="ns", timeout=0, method=method)
    with pytest.raises(locking.LockerFailed):
        py.lock()
    assert c.release() == 0
    assert c.line() == "released"
    py.lock()
    py.unlock()


@pytest.mark.parametrize("method", REAL_METHODS, ids=ids)
def test_python_holds_c_fails_then_gets_it(lockdir, c_holder, parties, method):
    py = locking.Locker("shared", lockdir, ns="ns", timeout=0, method=method)
    py.lock()
    c = parties([c_holder, "locker", lockdir, "ns", "shared", int(method), 0])
    assert c.line().startswith("failed -1 ")
    assert c.wait() == 11  # 10 - LOCKING_E_LOCKER_FAILED
    py.unlock()
    c = parties([c_holder, "locker", lockdir, "ns", "shared", int(method), 0])
    c.expect("locked")
    assert c.release() == 0


@pytest.mark.parametrize("method", REAL_METHODS, ids=ids)
def test_python_waits_for_c_release(lockdir, c_holder, parties, method):
    c = parties([c_holder, "locker", lockdir, "", "w", int(method), 0])
    c.expect("locked")
    released = threading.Event()
    got = []

    def wait_for_it():
        lk = locking.Locker("w", lockdir, timeout=PATIENCE, method=method)
        lk.lock()
        # the lock must not be had before the C holder was told to let go
        got.append(released.is_set())
        lk.unlock()

    t = threading.Thread(target=wait_for_it)
    t.start()
    released.set()
    assert c.release() == 0
    t.join(PATIENCE)
    assert got == [True]


@pytest.mark.parametrize("method", REAL_METHODS, ids=ids)
def test_open_locked_interop_with_c(tmp_path, c_holder, parties, method):
    path = tmp_path / "shared.dat"
    c = parties([c_holder, "file", path, int(method), 0])
    c.expect("locked")
    with pytest.raises(locking.CannotGetLock):
        locking.open_locked(path, timeout=0, method=method)
    assert c.release() == 0
    with locking.open_locked(path, timeout=0, method=method) as f:
        f.write(b"py")
        c = parties([c_holder, "file", path, int(method), 0])
        assert c.line().startswith("failed -2 ")
        assert c.wait() == 12  # 10 - LOCKING_E_CANNOT_GET_LOCK
    assert path.read_bytes() == b"py"


def test_mixed_methods_are_an_error_not_silence(lockdir, c_holder, parties):
    py = locking.Locker("mix", lockdir, timeout=0, method=locking.Method.MKDIR)
    py.lock()
    c = parties([c_holder, "locker", lockdir, "", "mix", int(locking.Method.OPENCREATE), 0])
    assert c.line().startswith("failed -3 ")
    assert c.wait() == 13
    py.unlock()


@pytest.mark.parametrize("method", REAL_METHODS, ids=ids)
def test_lockrun_and_python_exclude_each_other(lockdir, lockrun, parties, method):
    m = method.name.lower()
    # lockrun holds while its command waits for a line on stdin
    script = "echo locked; read x; echo released"
    run = parties(
        [lockrun, "--dir", lockdir, "--ns", "cron", "--method", m, "job", "--", "sh", "-c", script]
    )
    run.expect("locked")
    py = locking.Locker("job", lockdir, ns="cron", timeout=0, method=method)
    with pytest.raises(locking.LockerFailed):
        py.lock()
    assert run.release() == 0
    # Python holds: lockrun gives up at once with EX_TEMPFAIL
    with py:
        run = parties(
            [lockrun, "--dir", lockdir, "--ns", "cron", "--method", m, "-n", "job", "true"]
        )
        assert run.wait() == 75
        err = run.proc.stderr.read().decode()
        assert "timed out" in err and str(os.getpid()) in err
        run = parties([lockrun, "--dir", lockdir, "--ns", "cron", "--method", m, "--check", "job"])
        assert run.wait() == 1
        assert "held by pid %d" % os.getpid() in run.line()
    run = parties([lockrun, "--dir", lockdir, "--ns", "cron", "--method", m, "-n", "job", "true"])
    assert run.wait() == 0


def test_python_in_a_lockrun_child_sees_the_lock_held(lockdir, lockrun, parties):
    """The command lockrun runs does not hold the lock itself (lockrun
    does), so a Locker in the command cannot take it either."""
    code = (
        "import sys; sys.path.insert(0, %r); import locking\n"
        "try:\n"
        "    locking.Locker('j', %r, timeout=0).lock()\n"
        "    print('got it')\n"
        "except locking.LockerFailed:\n"
        "    print('busy')\n" % (os.path.dirname(locking.__file__), str(lockdir))
    )
    run = parties([lockrun, "--dir", lockdir, "j", "--", sys.executable, "-c", code])
    assert run.line() == "busy"
    assert run.wait() == 0
