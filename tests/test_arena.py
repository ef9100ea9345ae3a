"""Arena and ArenaPool: bounded, reusable buffers and the wait when all are taken."""

from __future__ import annotations

import anyio
import pytest

from engine.arena import FRAMES, LINES, Arena, ArenaPool


def test_arena_append_and_keep_tail():
    a = Arena(16)
    assert a.append(b"hello\nwor") == 9
    a.keep_tail(6)
    assert bytes(a.data[: a.used]) == b"wor"
    assert a.append(b"ld and more than fits") == 13
    assert a.used == a.capacity == 16


def test_free_space_is_a_writable_view_of_the_arena():
    a = Arena(8)
    view = a.free_space()
    view[:3] = b"abc"
    a.used += 3
    assert bytes(a.data[:3]) == b"abc" and len(a.free_space()) == 5


@pytest.mark.anyio
async def test_pool_hands_out_each_arena_once_and_waits_when_empty():
    pool = ArenaPool(2, 32)
    first, second = await pool.acquire(), await pool.acquire()
    assert first is not second and pool.available == 0
    assert pool.try_acquire() is None
    with anyio.move_on_after(0.05) as waited:
        await pool.acquire()  # all taken: the caller waits, nothing is allocated
    assert waited.cancelled_caught
    first.append(b"dirty")
    pool.release(first)
    again = await pool.acquire()
    assert again is first and again.used == 0 and again.regions == []


def test_regions_merge_unless_owned_or_of_another_framing():
    a = Arena(64)
    a.add_messages((b"{}\n",), LINES, 1)
    a.add_messages((b"{}\n", b"{}\n"), LINES, 2)
    a.add_messages((b"\x00\x00\x00\x02{}",), FRAMES, 1)
    owner = object()
    a.add_messages((b"{}\n",), LINES, 1, owner)
    assert [(r.start, r.end, r.kind, r.owner) for r in a.regions] == [
        (0, 9, LINES, None),
        (9, 15, FRAMES, None),
        (15, 18, LINES, owner),
    ]
    assert a.messages == 5
