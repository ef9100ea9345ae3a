"""KernelThreads: how many threads each batch gets, in what order batches get them."""

from __future__ import annotations

import anyio
import pytest

from engine.kernel_threads import PARALLEL_BYTES, KernelThreads

pytestmark = pytest.mark.anyio

MIB = PARALLEL_BYTES


async def test_a_lone_batch_gets_a_thread_per_mib_up_to_all():
    k = KernelThreads(4)
    for nbytes, threads in ((0, 1), (MIB - 1, 1), (2 * MIB, 2), (3 * MIB + 5, 3), (64 * MIB, 4)):
        assert await k.acquire(nbytes) == threads
        k.release(threads)


async def test_batches_that_queue_get_an_equal_share_when_their_turn_comes():
    k = KernelThreads(4)
    assert await k.acquire(64 * MIB) == 4  # alone: every thread
    got = {}

    async def batch(name: str, nbytes: int) -> None:
        got[name] = await k.acquire(nbytes)

    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(batch, name, 64 * MIB)
            await anyio.wait_all_tasks_blocked()
        assert got == {}  # the first holds all four
        k.release(4)
    assert got == {"a": 1, "b": 1, "c": 2}  # a third each, at least one; c: what is left
    for n in got.values():
        k.release(n)
    assert await k.acquire(64 * MIB) == 4  # alone again


async def test_a_batch_that_queued_behind_a_wide_one_and_ends_up_alone_gets_every_thread():
    k = KernelThreads(2)
    assert await k.acquire(8 * MIB) == 2
    got = []

    async def batch() -> None:
        got.append(await k.acquire(8 * MIB))

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch)
        await anyio.wait_all_tasks_blocked()
        k.release(2)
    assert got == [2]


async def test_threads_go_first_come_first_served_and_never_oversubscribe():
    k = KernelThreads(2)
    assert await k.acquire(8 * MIB) == 2
    order = []

    async def batch(name: str) -> None:
        order.append((name, await k.acquire(8 * MIB)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch, "first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(batch, "second")
        await anyio.wait_all_tasks_blocked()
        assert order == []
        k.release(2)
    assert order == [("first", 1), ("second", 1)]  # side by side, one thread each


async def test_a_batch_arriving_while_one_holds_part_of_the_threads_takes_what_is_free():
    k = KernelThreads(4)
    assert await k.acquire(3 * MIB) == 3
    assert await k.acquire(64 * MIB) == 1  # its share would be 2, but 1 is free: no wait
    with anyio.move_on_after(0.05) as waited:
        await k.acquire(0)  # none free
    assert waited.cancel_called


async def test_exclusive_lets_one_batch_in_at_a_time():
    k = KernelThreads(2)
    k.exclusive = True  # Numba's workqueue layer: no concurrent launches
    assert await k.acquire(0) == 1
    with anyio.move_on_after(0.05) as waited:
        await k.acquire(0)
    assert waited.cancel_called
    k.release(1)
    with anyio.fail_after(1):
        assert await k.acquire(0) == 1


async def test_a_cancelled_wait_gives_its_place_and_threads_back():
    k = KernelThreads(2)
    assert await k.acquire(8 * MIB) == 2
    with anyio.move_on_after(0.05):
        await k.acquire(8 * MIB)  # never granted
    k.release(2)
    with anyio.fail_after(1):
        assert await k.acquire(8 * MIB) == 2  # the cancelled waiter neither queues ahead nor holds threads


async def test_a_batch_with_more_of_its_stream_queued_behind_it_takes_its_share_only():
    # sustained load: arenas keep queuing, so each takes a share and the next joins it
    k = KernelThreads(2)
    queued = [1]
    assert await k.acquire(8 * MIB, lambda: queued[0]) == 1
    queued[0] = 0
    assert await k.acquire(8 * MIB, lambda: queued[0]) == 1  # the one left: side by side
