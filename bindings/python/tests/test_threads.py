"""Threads: one Locker shared by threads behaves like threading.Lock (a
second thread waits); Lockers of their own exclude each other."""

import threading
import time

import pytest

import locking
from conftest import PATIENCE, REAL_METHODS, method_id, wait_until


def start(fn):
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_a_second_thread_waits_for_the_release(lockdir):
    lk = locking.Locker("t", lockdir, timeout=PATIENCE)
    lk.acquire()
    trying = threading.Event()
    released = threading.Event()
    got = []

    def second():
        trying.set()
        with lk:  # waits, instead of failing with AlreadyLocked
            got.append(released.is_set())

    t = start(second)
    assert trying.wait(PATIENCE)
    # whenever it gets there, it must not have the lock before the release
    released.set()
    lk.release()
    t.join(PATIENCE)
    assert got == [True]
    assert not lk.is_locked


def test_a_waiting_thread_honours_its_timeout(lockdir):
    lk = locking.Locker("t", lockdir, timeout=PATIENCE)
    lk.acquire()
    errors = []

    def second():
        start = time.monotonic()
        try:
            lk.acquire(timeout=0.3)
        except locking.LockerFailed as e:
            errors.append((time.monotonic() - start, str(e)))
        try:
            lk.acquire(blocking=False)
        except locking.LockerFailed as e:
            errors.append((0, str(e)))

    t = start(second)
    t.join(PATIENCE)
    lk.release()
    assert len(errors) == 2
    assert errors[0][0] >= 0.3
    assert "within 0.3 s" in errors[0][1]
    assert "another thread" in errors[1][1]


def test_the_same_thread_gets_already_locked_not_a_deadlock(lockdir):
    lk = locking.Locker("t", lockdir, timeout=PATIENCE)
    with lk:
        with pytest.raises(locking.AlreadyLocked):
            lk.acquire()
        with pytest.raises(locking.AlreadyLocked):
            lk.acquire(shared=True, blocking=False)
    lk.acquire()
    lk.release()


def test_release_from_another_thread(lockdir):
    lk = locking.Locker("t", lockdir, timeout=PATIENCE)
    lk.acquire()
    start(lk.release).join(PATIENCE)  # as threading.Lock allows
    assert not lk.is_locked
    other = locking.Locker("t", lockdir, timeout=0)
    other.acquire()
    other.release()
    lk.acquire()
    lk.release()


@pytest.mark.parametrize("shared_locker", [True, False], ids=["one-locker", "own-lockers"])
@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_threads_exclude_each_other(lockdir, method, shared_locker):
    inside = []
    overlaps = []
    errors = []
    count = [0]
    common = locking.Locker("t", lockdir, timeout=PATIENCE, method=method)

    def work():
        lk = common if shared_locker else locking.Locker(
            "t", lockdir, timeout=PATIENCE, method=method
        )
        try:
            for _ in range(40):
                with lk:
                    inside.append(1)
                    time.sleep(0)  # let the other threads run (releases the GIL)
                    if len(inside) != 1:
                        overlaps.append(len(inside))
                    count[0] += 1
                    inside.pop()
        except Exception as e:  # any error is a bug
            errors.append(e)

    threads = [start(work) for _ in range(4)]
    for t in threads:
        t.join(PATIENCE * 4)
    assert not errors
    assert not overlaps
    assert count[0] == 160


def test_threads_with_own_lockers_share(lockdir):
    # two shared holders at once: each waits at the barrier while holding
    barrier = threading.Barrier(2, timeout=PATIENCE)
    ok = []

    def reader():
        lk = locking.Locker("s", lockdir, timeout=PATIENCE)
        with lk.shared():
            barrier.wait()
            ok.append(lk.is_shared)

    threads = [start(reader) for _ in range(2)]
    for t in threads:
        t.join(PATIENCE)
    assert ok == [True, True]


def test_close_while_another_thread_waits(lockdir):
    held = locking.Locker("c", lockdir)
    held.acquire()
    lk = locking.Locker("c", lockdir, timeout=PATIENCE)
    outcome = []

    def waiter():
        try:
            lk.acquire()
            outcome.append("locked")
        except ValueError:
            outcome.append("closed")

    t = start(waiter)
    wait_until(lambda: lk._waiting, "the thread waits in the library")
    lk.close()  # does not free the C Locker under the waiting thread
    held.release()
    t.join(PATIENCE)
    assert outcome == ["closed"]
    # the lock is free: the closed Locker's late acquisition was released
    with locking.Locker("c", lockdir, timeout=PATIENCE):
        pass
