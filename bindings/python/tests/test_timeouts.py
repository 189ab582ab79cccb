"""Timeouts are the library's: a wait lasts about the timeout asked for
(never less; not rounded up to slices, as 0.1's binding did: 0.26 s waited
0.50 s). The bounds are loose on purpose: the fastest of three tries must
end within SLACK of the timeout."""

import threading
import time

import pytest

import locking
from conftest import PATIENCE, REAL_METHODS, method_id

SLACK = 0.2


def timed(fn, error):
    start = time.monotonic()
    with pytest.raises(error):
        fn()
    return time.monotonic() - start


def check(durations, t):
    assert min(durations) >= t, durations  # never shorter
    assert min(durations) < t + SLACK, durations  # not rounded up


@pytest.mark.parametrize("t", [0.05, 0.26])
@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_per_call_timeout(lockdir, method, t):
    holder = locking.Locker("t", lockdir, method=method)
    holder.acquire()
    waiter = locking.Locker("t", lockdir, timeout=PATIENCE, method=method)
    check([timed(lambda: waiter.acquire(timeout=t), locking.LockerFailed) for _ in range(3)], t)
    holder.release()


@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
def test_locker_timeout_and_modes(lockdir, shared):
    holder = locking.Locker("t", lockdir)
    holder.acquire()
    waiter = locking.Locker("t", lockdir, timeout=0.26)
    durations = [timed(lambda: waiter.acquire(shared=shared), locking.LockerFailed)
                 for _ in range(3)]
    check(durations, 0.26)
    with pytest.raises(locking.LockerFailed) as e:
        waiter.lock()
    assert "within 0.26 s" in str(e.value)
    holder.release()


def test_timeout_in_a_thread(lockdir):
    # off the main thread the call goes to the library directly
    holder = locking.Locker("t", lockdir)
    holder.acquire()
    waiter = locking.Locker("t", lockdir)
    durations = []
    t = threading.Thread(target=lambda: durations.extend(
        timed(lambda: waiter.acquire(timeout=0.26), locking.LockerFailed) for _ in range(3)
    ))
    t.start()
    t.join(PATIENCE)
    check(durations, 0.26)
    holder.release()


def test_open_locked_timeout(tmp_path):
    path = tmp_path / "f"
    with locking.open_locked(path):
        durations = [timed(lambda: locking.open_locked(path, timeout=0.26),
                           locking.CannotGetLock) for _ in range(3)]
        with pytest.raises(locking.CannotGetLock) as e:
            locking.open_locked(path, timeout=0.1)
        assert "within 0.1 s" in str(e.value)
    check(durations, 0.26)


def test_zero_and_non_blocking_return_at_once(lockdir):
    holder = locking.Locker("z", lockdir)
    holder.acquire()
    waiter = locking.Locker("z", lockdir, timeout=PATIENCE)
    assert min(timed(lambda: waiter.acquire(timeout=0), locking.LockerFailed)
               for _ in range(3)) < SLACK
    assert min(timed(lambda: waiter.acquire(blocking=False), locking.LockerFailed)
               for _ in range(3)) < SLACK
    holder.release()


def test_a_release_ends_the_wait_early(lockdir):
    holder = locking.Locker("e", lockdir)
    holder.acquire()
    waiter = locking.Locker("e", lockdir)
    result = []

    def wait():
        start = time.monotonic()
        waiter.acquire(timeout=PATIENCE)
        result.append(time.monotonic() - start)

    t = threading.Thread(target=wait)
    t.start()
    holder.release()
    t.join(PATIENCE)
    assert result and result[0] < PATIENCE / 2  # woken by the release
    waiter.release()
