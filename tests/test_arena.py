"""Arena and ArenaPool: bounded, reusable buffers and the wait when all are taken."""

from __future__ import annotations

import threading

from engine.arena import Arena, ArenaPool


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


def test_pool_hands_out_each_arena_once_and_waits_when_empty():
    pool = ArenaPool(2, 32)
    first, second = pool.acquire(), pool.acquire()
    assert first is not second and pool.available == 0
    assert pool.acquire(timeout=0.05) is None  # all taken: the caller waits, nothing is allocated
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=10)))
    waiter.start()
    pool.release(first)
    waiter.join(10)
    assert got == [first] and got[0].used == 0
