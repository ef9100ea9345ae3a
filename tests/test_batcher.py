"""Batcher: flush on max_messages, max_bytes, linger and lack of room; wait for arenas."""

from __future__ import annotations

import anyio
import pytest

from engine.arena import LINES, ArenaPool
from engine.batcher import TIMER_SLACK_S, Batcher, Receipt, StreamClosed
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


async def test_appends_wait_while_every_arena_is_busy():
    pool, batcher, flushed = _batcher(arenas=1, max_messages=1)
    await batcher.add((MSG,), LINES, 1)  # flushed at once: the only arena is queued
    assert batcher.saturated
    with anyio.move_on_after(0.1) as waited:
        await batcher.add((MSG,), LINES, 1)
    assert waited.cancelled_caught  # nothing was allocated and nothing dropped: it waited
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
