"""Processes exclude each other: Python and Python, Python and C (holder.c,
built with cc against locking.h and the cargo build's liblocking.so), Python
and lockrun.

Every step is synchronised through the parties' output ("locked TOKEN",
"released") and exit status, never by sleeping.
"""

import os
import sys
import threading

import pytest

import locking
from conftest import PATIENCE, REAL_METHODS, method_id


def locker_argv(prog, lockdir, name, method, timeout=0, mode="exclusive", ns="ns"):
    return list(prog) + ["locker", lockdir, ns, name, int(method), timeout, mode]


@pytest.fixture(params=["python", "c"])
def other(request, pyparty, c_holder):
    """argv prefix of the other party: another Python process, or C."""
    return pyparty if request.param == "python" else [c_holder]


# ------------------------------------------------- another process holds


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_other_holds_python_fails_then_gets_it(lockdir, other, parties, method):
    p = parties(locker_argv(other, lockdir, "shared", method))
    p.expect_locked()
    py = locking.Locker("shared", lockdir, ns="ns", timeout=0, method=method)
    with pytest.raises(locking.LockerFailed):
        py.acquire()
    with pytest.raises(locking.LockerFailed):
        py.acquire(shared=True)
    (h,) = py.holder()
    assert h["pid"] == str(p.proc.pid) and h["state"] == "alive"
    assert p.release() == 0
    assert p.line() == "released"
    py.acquire()
    py.release()


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_python_holds_other_fails_then_gets_it(lockdir, other, parties, method):
    py = locking.Locker("shared", lockdir, ns="ns", timeout=0, method=method)
    py.acquire()
    p = parties(locker_argv(other, lockdir, "shared", method))
    assert p.line().startswith("failed -1 ")
    assert p.wait() == 11  # 10 - LOCKING_E_LOCKER_FAILED
    p = parties(locker_argv(other, lockdir, "shared", method, mode="shared"))
    assert p.line().startswith("failed -1 ")
    assert p.wait() == 11
    py.release()
    p = parties(locker_argv(other, lockdir, "shared", method))
    p.expect_locked()
    assert p.release() == 0


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_python_waits_for_the_others_release(lockdir, other, parties, method):
    p = parties(locker_argv(other, lockdir, "w", method, ns=""))
    p.expect_locked()
    released = threading.Event()
    got = []

    def wait_for_it():
        lk = locking.Locker("w", lockdir, method=method)
        lk.acquire(timeout=PATIENCE)
        # the lock must not be had before the other was told to let go
        got.append(released.is_set())
        lk.release()

    t = threading.Thread(target=wait_for_it)
    t.start()
    released.set()
    assert p.release() == 0
    t.join(PATIENCE)
    assert got == [True]


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_shared_across_processes(lockdir, other, parties, method):
    # the other holds shared: Python shares, an exclusive waits
    p = parties(locker_argv(other, lockdir, "s", method, mode="shared"))
    p.expect_locked()
    reader = locking.Locker("s", lockdir, ns="ns", method=method)
    writer = locking.Locker("s", lockdir, ns="ns", method=method)
    reader.acquire(timeout=0, shared=True)
    with pytest.raises(locking.LockerFailed):
        writer.acquire(timeout=0)
    assert sorted(h["pid"] for h in writer.holder()) == sorted(
        [str(p.proc.pid), str(os.getpid())]
    )
    assert p.release() == 0
    with pytest.raises(locking.LockerFailed):
        writer.acquire(timeout=0)  # the Python reader still holds
    reader.release()
    writer.acquire(timeout=0)
    writer.release()
    # Python holds shared: the other shares
    reader.acquire(shared=True)
    p = parties(locker_argv(other, lockdir, "s", method, mode="shared"))
    p.expect_locked()
    assert p.release() == 0
    reader.release()


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_fencing_tokens_increase_across_processes(lockdir, other, parties, method):
    py = locking.Locker("f", lockdir, ns="ns", method=method)
    tokens = []
    for _ in range(2):
        with py:
            tokens.append(py.fencing_token)
        p = parties(locker_argv(other, lockdir, "f", method))
        tokens.append(p.expect_locked())
        assert p.release() == 0
    with py.shared():
        tokens.append(py.fencing_token)
    assert all(x < y for x, y in zip(tokens, tokens[1:])), tokens


# --------------------------------------------- many Python processes


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_python_processes_exclude_each_other(tmp_path, pyparty, parties, method):
    lockdir = tmp_path / "locks"
    counter = tmp_path / "counter"
    n, rounds = 4, 25
    ps = [
        parties(pyparty + ["count", lockdir, "counter", int(method), counter, rounds])
        for _ in range(n)
    ]
    for p in ps:
        assert p.line() == "done"
        assert p.wait() == 0
    assert int(counter.read_text()) == n * rounds


# ------------------------------------------------------------- C files


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
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
    py.acquire()
    c = parties([c_holder, "locker", lockdir, "", "mix", int(locking.Method.OPENCREATE), 0])
    assert c.line().startswith("failed -3 ")
    assert c.wait() == 13
    py.release()


# -------------------------------------------------------------- lockrun


def lockrun_argv(lockrun, lockdir, method, *args):
    return [lockrun, "--dir", lockdir, "--ns", "cron", "--method", method.name.lower()] + list(args)


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_lockrun_and_python_exclude_each_other(lockdir, lockrun, parties, method):
    # lockrun holds while its command waits for a line on stdin
    script = "echo locked; read x; echo released"
    run = parties(lockrun_argv(lockrun, lockdir, method, "job", "--", "sh", "-c", script))
    run.expect("locked")
    py = locking.Locker("job", lockdir, ns="cron", method=method)
    with pytest.raises(locking.LockerFailed):
        py.acquire(blocking=False)
    assert py.holder()[0]["pid"] == str(run.proc.pid)  # lockrun holds, not sh
    assert run.release() == 0
    # Python holds: lockrun -n gives up at once with EX_TEMPFAIL (75)
    with py:
        run = parties(lockrun_argv(lockrun, lockdir, method, "-n", "job", "--", "true"))
        assert run.wait() == 75
        run = parties(lockrun_argv(lockrun, lockdir, method, "--check", "job"))
        assert run.wait() == 1
        assert str(os.getpid()) in run.line()
    run = parties(lockrun_argv(lockrun, lockdir, method, "-n", "job", "--", "true"))
    assert run.wait() == 0


def test_lockrun_shared_and_python(lockdir, lockrun, parties):
    method = locking.Method.KERNEL
    py = locking.Locker("job", lockdir, ns="cron", method=method)
    with py.shared():
        run = parties(lockrun_argv(lockrun, lockdir, method, "-s", "-n", "job", "--", "true"))
        assert run.wait() == 0  # shares with Python
        run = parties(lockrun_argv(lockrun, lockdir, method, "-n", "job", "--", "true"))
        assert run.wait() == 75  # exclusive: busy
    with py:
        run = parties(lockrun_argv(lockrun, lockdir, method, "-s", "-n", "job", "--", "true"))
        assert run.wait() == 75


def test_python_in_a_lockrun_child_sees_the_lock_held(lockdir, lockrun, parties):
    """The command lockrun runs does not hold the lock itself (lockrun
    does), so a Locker in the command cannot take it either."""
    code = (
        "import sys, locking\n"
        "try:\n"
        "    locking.Locker('j', sys.argv[1]).acquire(blocking=False)\n"
        "    print('got it')\n"
        "except locking.LockerFailed:\n"
        "    print('busy')\n"
    )
    run = parties([lockrun, "--dir", lockdir, "j", "--", sys.executable, "-c", code, lockdir])
    assert run.line() == "busy"
    assert run.wait() == 0
