"""Batcher: flush on max_messages, max_bytes, linger and lack of room; wait for arenas."""

from __future__ import annotations

import anyio
import pytest

from engine import batcher as batcher_module
from engine.arena import LINES, ArenaPool
from engine.batcher import (
    HOLD_BURST_S,
    HOLD_GRACE_S,
    HOLD_SHARE,
    TIMER_SLACK_S,
    Batcher,
    LoopHolds,
    Outbox,
    Receipt,
    StreamClosed,
)
from engine.config import BatchSpec

pytestmark = pytest.mark.anyio
MSG = b'{"a":1}\n'


def _batcher(arenas=2, capacity=4096, **spec):
    spec = {"max_messages": 1000, "max_bytes": 2048, "linger_ms": 60_000, **spec}
    pool = ArenaPool(arenas, capacity)
    batcher, flushed = Batcher.create(pool, BatchSpec(**spec))
    return pool, batcher, flushed


async def test_flushes_on_max_messages():
    _, batcher, flushed = _batcher(max_messages=3)
    await batcher.add((MSG * 2,), LINES, 2)
    with pytest.raises(anyio.WouldBlock):
        flushed.receive_nowait()
    await batcher.add((MSG,), LINES, 1)
    arena = flushed.receive_nowait()
    assert arena.messages == 3 and bytes(arena.data[: arena.used]) == MSG * 3


async def test_flushes_on_max_bytes_and_when_the_next_append_does_not_fit():
    pool, batcher, flushed = _batcher(capacity=3000, max_bytes=2048)
    await batcher.add((b"x" * 2047 + b"\n",), LINES, 1)
    first = flushed.receive_nowait()
    assert first.used == 2048
    pool.release(first)
    await batcher.add((b"y" * 1999 + b"\n",), LINES, 1)
    await batcher.add((b"z" * 1999 + b"\n",), LINES, 1)  # 4000 > capacity: the first goes alone
    assert flushed.receive_nowait().used == 2000


async def test_linger_flushes_an_arena_that_stops_filling():
    _, batcher, flushed = _batcher(linger_ms=20)
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run_linger)
        await batcher.add((MSG,), LINES, 1)
        with anyio.fail_after(10):
            arena = await flushed.receive()
        assert arena.messages == 1
        # aimed TIMER_SLACK_S early (loop timers fire late), never earlier than that
        assert arena.flushed_at - arena.opened_at >= 0.020 - TIMER_SLACK_S
        tg.cancel_scope.cancel()


async def test_a_window_opened_behind_a_loop_hold_dates_from_the_hold(monkeypatch):
    # a batch parsed on the event loop held every read: the first message read after it
    # may have waited in its socket all along, so its window closes linger_ms after the
    # hold began, not linger_ms after the read
    holds = LoopHolds()
    monkeypatch.setattr(batcher_module, "LOOP_HOLDS", holds)
    pool, batcher, flushed = _batcher(max_messages=1)
    now = anyio.current_time()
    holds.held(now - 0.004, now)
    await batcher.add((MSG,), LINES, 1)
    arena = flushed.receive_nowait()
    assert arena.opened_at == now - 0.004
    pool.release(arena)
    await anyio.sleep(2 * HOLD_GRACE_S)  # read later: the hold did not delay it
    await batcher.add((MSG,), LINES, 1)
    assert flushed.receive_nowait().opened_at >= now + 2 * HOLD_GRACE_S


def test_loop_holds_are_a_budget_of_a_share_of_the_loop():
    holds = LoopHolds()
    t = 100.0
    assert holds.has_room(t)
    # holds of 1 ms every 20 ms (5% of the loop) never run out of room
    for _ in range(200):
        holds.held(t, t + 0.001)
        t += 0.020
        assert holds.has_room(t)
    # holds of 0.5 ms every 1 ms (50%) do, after a burst of HOLD_BURST_S
    taken = 0
    while holds.has_room(t):
        holds.held(t, t + 0.0005)
        t += 0.001
        taken += 1
    assert HOLD_BURST_S / 0.0005 <= taken <= 2 * HOLD_BURST_S / 0.0005 / (1 - 2 * HOLD_SHARE)
    # and it comes back once the loop has had its share of rest
    assert holds.has_room(t + HOLD_BURST_S / HOLD_SHARE + 0.001)


async def test_appends_wait_while_every_arena_is_busy():
    pool, batcher, flushed = _batcher(arenas=1, max_messages=1)
    await batcher.add((MSG,), LINES, 1)  # flushed at once: the only arena is queued
    assert batcher.saturated
    assert batcher.backpressure_s == 0
    held_at_start = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:  # the stall shows while it lasts, not only once it ends
            await anyio.sleep(0.05)
            held_at_start.append(batcher.backpressure_s)

        tg.start_soon(watch)
        with anyio.move_on_after(0.1) as waited:
            await batcher.add((MSG,), LINES, 1)
    assert waited.cancelled_caught  # nothing was allocated and nothing dropped: it waited
    assert 0 < held_at_start[0] < batcher.backpressure_s
    pool.release(flushed.receive_nowait())
    with anyio.fail_after(5):
        await batcher.add((MSG,), LINES, 1)
    assert flushed.receive_nowait().messages == 1


async def test_close_flushes_what_is_buffered_and_refuses_more():
    _, batcher, flushed = _batcher()
    await batcher.add((MSG,), LINES, 1)
    batcher.close()
    assert flushed.receive_nowait().messages == 1
    with pytest.raises(anyio.EndOfStream):
        flushed.receive_nowait()
    with pytest.raises(StreamClosed):
        await batcher.add((MSG,), LINES, 1)


async def test_receipt_completes_once_closed_and_every_region_settled():
    receipt = Receipt(max_errors=2)
    receipt.add_region()
    receipt.add_region()
    receipt.close()
    receipt.settle(3, 1, [{"index": 2, "error": "invalid_json", "field": None, "position": 0}])
    assert not receipt._done.is_set()
    receipt.settle(2, 2, [{"index": 0, "error": "e", "field": None, "position": 0}] * 2)
    with anyio.fail_after(1):
        await receipt.wait()
    assert (receipt.accepted, receipt.rejected) == (2, 3)
    assert [e["index"] for e in receipt.errors] == [2, 3]  # second region starts at message 3


async def test_outbox_adds_at_once_while_there_is_room_then_keeps_order_until_drained():
    pool, batcher, flushed = _batcher(arenas=1, max_messages=2)
    outbox = Outbox(batcher)
    read = bytearray(b'{"a":1}\n{"a":2}\n')  # a read buffer the caller reuses
    outbox.put((memoryview(read),), LINES, 2)  # fits: straight into the arena, and flushed
    assert not outbox.blocked
    read[:] = b'{"a":3}\n{"a":4}\n'
    outbox.put((memoryview(read)[:8],), LINES, 1)  # no free arena: copied, kept
    outbox.put((memoryview(read)[8:],), LINES, 1)  # and so is what comes after it, in order
    read[:] = b"X" * 16  # the caller's buffer is reused: what waits is a copy
    assert outbox.blocked
    first = flushed.receive_nowait()
    assert bytes(first.data[: first.used]) == b'{"a":1}\n{"a":2}\n'
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.drain)
        await anyio.sleep(0.05)
        assert outbox.blocked  # still no arena: the drain waits, nothing is dropped
        pool.release(first)
    assert not outbox.blocked
    second = flushed.receive_nowait()
    assert bytes(second.data[: second.used]) == b'{"a":3}\n{"a":4}\n' and second.messages == 2


async def test_an_append_that_needs_no_wait_does_not_jump_the_queue():
    pool, batcher, flushed = _batcher(arenas=1, max_messages=1)
    await batcher.add((MSG,), LINES, 1)  # the only arena is queued
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.add, (b'{"first":1}\n',), LINES, 1)
        await anyio.sleep(0.05)  # it waits for the arena
        pool.release(flushed.receive_nowait())
        # the arena is on its way to the waiter: an append that does not wait must queue
        assert not batcher.add_nowait((b'{"second":1}\n',), LINES, 1)
    arena = flushed.receive_nowait()
    assert bytes(arena.data[: arena.used]) == b'{"first":1}\n'
