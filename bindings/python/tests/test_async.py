"""asyncio: waiting for a lock does not block the event loop, and a
cancelled wait never leaves the lock held."""

import asyncio
import time

import pytest

import locking
from conftest import PATIENCE


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, PATIENCE * 2))


async def ticks_while_pending(task, n=50):
    """Runs other work on the loop while `task` waits; the loop must keep
    running (a blocked loop would run none of it before the task ends)."""
    for i in range(n):
        await asyncio.sleep(0)
        assert not task.done(), "the waiting task ended early (after %d ticks)" % i
    return n


def test_async_with_does_not_block_the_loop(lockdir):
    holder = locking.Locker("a", lockdir)
    holder.acquire()
    lk = locking.Locker("a", lockdir, timeout=PATIENCE)
    released = []

    async def waiter():
        async with lk as inside:
            assert inside is lk and lk.is_locked
            return list(released)

    async def main():
        task = asyncio.create_task(waiter())
        ticks = await ticks_while_pending(task)
        released.append(True)
        holder.release()
        return ticks, await task

    assert run(main()) == (50, [True])
    assert not lk.is_locked


def test_acquire_async_and_guards(lockdir):
    lk = locking.Locker("g", lockdir)
    other = locking.Locker("g", lockdir)

    async def main():
        got = await lk.acquire_async(timeout=0)
        assert lk.is_locked
        with pytest.raises(locking.AlreadyLocked):  # the same task again
            await lk.acquire_async()
        with pytest.raises(locking.LockerFailed):
            await other.acquire_async(blocking=False)
        with got:  # the returned object releases too
            pass
        assert not lk.is_locked
        async with lk.shared(), other.shared():
            assert lk.is_shared and other.is_shared
        async with lk.exclusive(timeout=1):
            assert lk.is_locked and not lk.is_shared

    run(main())


def test_async_timeout_keeps_the_loop_running(lockdir):
    holder = locking.Locker("t", lockdir)
    holder.acquire()
    lk = locking.Locker("t", lockdir)

    async def main():
        start = time.monotonic()
        task = asyncio.create_task(lk.acquire_async(timeout=0.3))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        with pytest.raises(locking.LockerFailed):
            task.result()
        return time.monotonic() - start, ticks

    elapsed, ticks = run(main())
    assert elapsed >= 0.3
    assert ticks >= 2  # the loop ran while the task waited
    holder.release()


def test_two_tasks_one_locker_take_turns(lockdir):
    lk = locking.Locker("turns", lockdir, timeout=PATIENCE)
    order = []

    async def first(entered, leave):
        async with lk:
            order.append("first in")
            entered.set()
            await leave.wait()
            order.append("first out")

    async def second():
        async with lk:  # waits (in a helper thread) for the first task
            order.append("second in")

    async def main():
        entered, leave = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(first(entered, leave))
        await entered.wait()
        b = asyncio.create_task(second())
        await ticks_while_pending(b, 20)
        leave.set()
        await asyncio.gather(a, b)

    run(main())
    assert order == ["first in", "first out", "second in"]


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
def test_a_cancelled_wait_does_not_leak_the_lock(lockdir, how):
    holder = locking.Locker("c", lockdir)
    holder.acquire()
    lk = locking.Locker("c", lockdir, timeout=PATIENCE)

    async def main():
        if how == "cancel":
            task = asyncio.create_task(lk.acquire_async())
            await ticks_while_pending(task, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(lk.acquire_async(shared=True), 0.1)

    run(main())
    assert not lk.is_locked
    # the abandoned wait goes on in its thread; when it gets the lock, it
    # lets go of it at once
    holder.release()
    other = locking.Locker("c", lockdir, timeout=PATIENCE)
    other.acquire()
    other.release()

    async def again():
        async with lk:
            return lk.is_locked

    assert run(again())
