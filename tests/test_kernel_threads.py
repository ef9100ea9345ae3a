"""KernelThreads: how many threads each batch gets, in what order batches get them."""

from __future__ import annotations

import anyio
import pytest

from engine.kernel_threads import PARALLEL_BYTES, KernelThreads

pytestmark = pytest.mark.anyio

MIB = PARALLEL_BYTES


def test_a_lone_batch_gets_a_thread_per_mib_up_to_all():
    k = KernelThreads(4)
    assert [k.width(n) for n in (0, MIB - 1, 2 * MIB, 3 * MIB + 5, 64 * MIB)] == [1, 1, 2, 3, 4]


async def test_batches_that_queue_get_an_equal_share_down_to_one():
    k = KernelThreads(4)
    await k.acquire(k.width(64 * MIB))  # alone: every thread
    assert k.width(64 * MIB) == 2  # one holds the kernels: half
    order = []

    async def batch(name: str, width: int) -> None:
        await k.acquire(width)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch, "b", k.width(64 * MIB))
        await anyio.wait_all_tasks_blocked()
        assert k.width(64 * MIB) == 1  # three in or waiting for the kernels: a third, at least one
        tg.start_soon(batch, "c", 1)
        await anyio.wait_all_tasks_blocked()
        assert order == []  # the first still holds all four
        k.release(4)
    assert order == ["b", "c"]  # b (two threads) and c (one) side by side
    k.release(2)
    k.release(1)
    assert k.width(64 * MIB) == 4  # alone again


async def test_threads_go_first_come_first_served_and_never_oversubscribe():
    k = KernelThreads(2)
    await k.acquire(1)
    got = []

    async def batch(name: str, width: int) -> None:
        await k.acquire(width)
        got.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch, "wide", 2)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(batch, "narrow", 1)  # one thread is free, but "wide" came first
        await anyio.wait_all_tasks_blocked()
        assert got == []
        k.release(1)
        await anyio.wait_all_tasks_blocked()
        assert got == ["wide"]
        k.release(2)
    assert got == ["wide", "narrow"]


async def test_exclusive_lets_one_batch_in_at_a_time():
    k = KernelThreads(2)
    k.exclusive = True  # Numba's workqueue layer: no concurrent launches
    await k.acquire(1)
    with anyio.move_on_after(0.05) as waited:
        await k.acquire(1)
    assert waited.cancel_called
    k.release(1)
    with anyio.fail_after(1):
        await k.acquire(1)


async def test_a_cancelled_wait_gives_its_place_and_threads_back():
    k = KernelThreads(2)
    await k.acquire(2)
    with anyio.move_on_after(0.05):
        await k.acquire(2)  # never granted
    k.release(2)
    with anyio.fail_after(1):
        await k.acquire(2)  # the cancelled waiter neither queues ahead nor holds threads
    k.release(2)
    assert k.width(64 * MIB) == 2
