"""The filelock-style API: acquire/release/is_locked, context managers,
shared locks, fencing tokens, holder()."""

import math
import os
import threading

import pytest

import locking
from conftest import PATIENCE, REAL_METHODS, method_id, wait_until


def test_acquire_release_is_locked(lockdir):
    lk = locking.Locker("a", lockdir)
    assert not lk.is_locked
    got = lk.acquire()
    assert got  # truthy, as filelock's proxy is
    assert lk.is_locked and lk.locked and not lk.is_shared
    lk.release()
    assert not lk.is_locked
    with pytest.raises(locking.NotLocked):
        lk.release()


def test_acquire_returns_a_context_manager(lockdir):
    lk = locking.Locker("a", lockdir)
    with lk.acquire(timeout=1) as inside:  # filelock: with lock.acquire(...)
        assert inside is lk
        assert lk.is_locked
    assert not lk.is_locked
    with pytest.raises(RuntimeError):
        with lk.acquire(shared=True):
            raise RuntimeError("boom")
    assert not lk.is_locked


def test_with_is_exclusive_and_guards_choose_the_mode(lockdir):
    lk = locking.Locker("g", lockdir, timeout=0)
    other = locking.Locker("g", lockdir, timeout=0)
    with lk as inside:
        assert inside is lk and lk.is_locked and not lk.is_shared
        with pytest.raises(locking.LockerFailed):
            other.acquire(shared=True)
    with lk.shared() as inside:
        assert inside is lk and lk.is_shared
        with other.shared():  # shared holders coexist
            assert other.is_shared
        with pytest.raises(locking.LockerFailed):
            other.acquire()
    with lk.exclusive(timeout=0):
        assert lk.is_locked and not lk.is_shared
    guard = lk.shared(timeout=0)
    for _ in range(2):  # a guard can be used again
        with guard:
            assert lk.is_shared
        assert not lk.is_locked


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_shared_and_exclusive(lockdir, method):
    readers = [locking.Locker("rw", lockdir, method=method) for _ in range(3)]
    writer = locking.Locker("rw", lockdir, method=method)
    for r in readers:
        r.acquire(timeout=0, shared=True)
    with pytest.raises(locking.LockerFailed):
        writer.acquire(timeout=0)
    with pytest.raises(locking.LockerFailed):
        writer.acquire(blocking=False)
    for r in readers:
        r.release()
    writer.acquire(timeout=0)
    with pytest.raises(locking.LockerFailed):
        readers[0].acquire(timeout=0, shared=True)
    writer.release()
    readers[0].acquire(timeout=0, shared=True)
    readers[0].release()


def test_a_waiting_writer_is_not_starved(lockdir):
    reader = locking.Locker("w", lockdir)
    reader.acquire(shared=True)
    writer = locking.Locker("w", lockdir)
    got = []
    t = threading.Thread(target=lambda: got.append(writer.acquire(timeout=PATIENCE)))
    t.start()
    # once the writer waits, a new reader waits behind it
    late = locking.Locker("w", lockdir)

    def late_reader_refused():
        try:
            late.acquire(timeout=0, shared=True)
        except locking.LockerFailed:
            return True
        late.release()
        return False

    wait_until(late_reader_refused, "a new reader waits behind the waiting writer")
    reader.release()
    t.join(PATIENCE)
    assert got and writer.is_locked
    writer.release()


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_fencing_tokens_increase(lockdir, method):
    a = locking.Locker("f", lockdir, method=method)
    b = locking.Locker("f", lockdir, method=method)
    with pytest.raises(locking.NotLocked):
        a.fencing_token
    seen = []
    for lk, shared in [(a, False), (b, False), (a, True), (b, True), (a, False)]:
        lk.acquire(timeout=0, shared=shared)
        token = lk.fencing_token
        assert token == lk.fencing_token  # the same for one acquisition
        seen.append(token)
        lk.release()
    assert all(x < y for x, y in zip(seen, seen[1:])), seen
    # two shared holders at once get distinct tokens, both above the past
    a.acquire(shared=True)
    b.acquire(shared=True)
    ta, tb = a.fencing_token, b.fencing_token
    assert ta != tb and min(ta, tb) > seen[-1]
    a.release()
    b.release()
    # a new Locker, as a restarted process would have, continues the sequence
    c = locking.Locker("f", lockdir, method=method)
    with c:
        assert c.fencing_token > max(ta, tb)


@pytest.mark.parametrize("method", REAL_METHODS, ids=method_id)
def test_holder(lockdir, method):
    lk = locking.Locker("h", lockdir, method=method)
    other = locking.Locker("h", lockdir, method=method)
    assert other.holder() == [] and other.holder_text() == ""
    with lk:
        for who in (lk, other):
            (h,) = who.holder()
            assert h["mode"] == "exclusive"
            assert h["pid"] == str(os.getpid())
            assert h["state"] == "alive"
            assert float(h["age"]) >= 0
        text = other.holder_text()
        assert "pid=%d\n" % os.getpid() in text and text.endswith("\n")
    assert other.holder() == []
    with lk.shared(), other.shared():
        hs = lk.holder()
        assert [h["mode"] for h in hs] == ["shared", "shared"]
        assert {h["pid"] for h in hs} == {str(os.getpid())}
        assert "\n\n" in lk.holder_text()


def test_holder_does_not_wait_for_a_wait_on_the_same_locker(lockdir):
    held = locking.Locker("q", lockdir)
    held.acquire()
    lk = locking.Locker("q", lockdir)
    t = threading.Thread(target=lambda: lk.acquire(timeout=PATIENCE))
    t.start()
    wait_until(lambda: lk._waiting, "the thread waits in the library")
    (h,) = lk.holder()  # answered at once while lk waits
    assert h["pid"] == str(os.getpid())
    held.release()
    t.join(PATIENCE)
    assert lk.is_locked
    lk.release()


def test_blocking_false_tries_once(lockdir):
    held = locking.Locker("b", lockdir)
    held.acquire()
    lk = locking.Locker("b", lockdir, timeout=PATIENCE)
    with pytest.raises(locking.LockerFailed):
        lk.acquire(blocking=False)
    with pytest.raises(locking.LockerFailed):
        lk.acquire(timeout=PATIENCE, blocking=False)  # as filelock: try once
    held.release()
    lk.acquire(blocking=False)
    lk.release()


def test_repr_and_version_constants(lockdir):
    lk = locking.Locker("r", lockdir, ns="n")
    assert "free" in repr(lk)
    with lk.shared():
        assert "held shared" in repr(lk)
    lk.close()
    assert "closed" in repr(lk)


def test_infinite_and_negative_timeouts_wait_forever(lockdir):
    lk = locking.Locker("i", lockdir, timeout=math.inf)
    with lk:  # free: returns at once
        pass
    lk.acquire(timeout=-5)
    lk.release()
    lk.acquire(timeout=math.inf, shared=True)
    lk.release()
