"""Per-stream accumulation: whole messages into the current arena, and when it is a batch.

Every listener of a stream appends to the same current arena (one event loop, so appends
need no lock). The arena becomes a batch on ``max_messages``, ``max_bytes`` or
``linger_ms`` after its first message, whichever comes first, or when the next append
does not fit. Flushed arenas queue for the pipeline; when every arena of the pool is
queued, parsing or waiting on consumers, appends wait for one to come back, and so do the
connections behind them: that is how producers feel backpressure.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.arena import Arena, ArenaPool
from engine.config import BatchSpec

#: How late the event loop's timers may fire; a linger flush is scheduled this much early.
TIMER_SLACK_S = 0.001
#: A window whose first message is read this soon after the event loop was held by a
#: batch parsed on it is dated from the start of that hold (see ``LoopHolds``).
HOLD_GRACE_S = 0.001
#: The share of the event loop's time that batches parsed on it may take, and the burst
#: beyond that share it tolerates before further batches go to a worker thread again.
HOLD_SHARE = 0.1
HOLD_BURST_S = 0.005


class LoopHolds:
    """The times the event loop was held by a batch parsed on it (one loop per process,
    shared by every stream, so one record for all of them).

    Two uses. Data that arrived during a hold waited in its socket, unread: a window
    opened by a read right after the hold is dated from its start, so linger_ms bounds a
    message's whole wait, not just the part in the arena (else every window opened behind
    a hold would close that much late, and those first messages are a stream's oldest).
    And holds are a budget: a leaky bucket that drains at HOLD_SHARE seconds per second. A
    stream whose small batches come so fast (a short linger_ms at a high rate) that
    parsing them would take more than that share of the loop has them parsed on a worker
    thread, where they do not stop the loop from reading.
    """

    def __init__(self) -> None:
        self.start = -math.inf
        self.end = -math.inf
        self._debt = 0.0  # hold time not yet drained, as of self.end

    def held(self, start: float, end: float) -> None:
        self._debt = self._owed(start) + (end - start)
        self.start, self.end = start, end

    def window_start(self, now: float) -> float:
        """When a window opened by a read at ``now`` began."""
        return self.start if now - self.end <= HOLD_GRACE_S else now

    def has_room(self, now: float) -> bool:
        """Whether another batch may be parsed on the loop now."""
        return self._owed(now) < HOLD_BURST_S

    def _owed(self, now: float) -> float:
        return max(0.0, self._debt - HOLD_SHARE * max(0.0, now - self.end))


LOOP_HOLDS = LoopHolds()


class StreamClosed(RuntimeError):
    """The stream is shutting down and takes no more messages."""


@dataclass
class Receipt:
    """How the messages of one submission (an HTTP request, an ``ingest`` call) fared.

    Filled in on the event loop as the batches holding them are parsed; ``wait`` returns
    once every one of them has been handed to the outputs.
    """

    accepted: int = 0
    rejected: int = 0
    errors: list[dict] = field(default_factory=list)
    max_errors: int = 10
    not_stored: int = 0  # messages delivered to consumers but not (durably) in the segment log
    _messages: int = 0  # messages settled so far: the index of the next one
    _pending: int = 0  # regions appended and not yet settled
    _closed: bool = False
    _done: anyio.Event = field(default_factory=anyio.Event)

    def add_region(self) -> None:
        self._pending += 1

    def settle(self, messages: int, rejected: int, first_rejects: list[dict], stored: bool = True) -> None:
        """One region's outcome: ``messages`` in it, ``rejected`` of them, the first few
        dead letters with their index within the region, and whether its batches reached
        the segment log as durably as the stream promises (a failing disk at shutdown)."""
        if not stored:
            self.not_stored += messages
        for r in first_rejects:
            if len(self.errors) >= self.max_errors:
                break
            self.errors.append({**r, "index": self._messages + r["index"]})
        self.accepted += messages - rejected
        self.rejected += rejected
        self._messages += messages
        self._pending -= 1
        self._maybe_done()

    def close(self) -> None:
        """No more regions will be added."""
        self._closed = True
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._closed and self._pending == 0:
            self._done.set()

    async def wait(self) -> Receipt:
        await self._done.wait()
        return self

    @property
    def received(self) -> int:
        return self.accepted + self.rejected

    def as_dict(self) -> dict:
        out = {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors}
        if self.not_stored:
            out["not_stored"] = self.not_stored
        return out


class Batcher:
    """Fills one stream's arenas with whole messages and flushes them as batches."""

    def __init__(self, pool: ArenaPool, spec: BatchSpec, flushed: MemoryObjectSendStream[Arena]) -> None:
        self._pool = pool
        self._max_messages = spec.max_messages
        self._max_bytes = int(spec.max_bytes)
        self._linger = spec.linger_ms / 1000
        self._flushed = flushed
        self._current: Arena | None = None
        self._generation = 0  # bumps on every acquire: tells a reused arena from its past
        self._acquiring = anyio.Lock()
        self._armed = anyio.Event()
        self._closed = False
        self._held_s = 0.0  # time producers waited for a free arena, in waits that ended
        self._held_since: float | None = None  # when the wait going on now began

    @classmethod
    def create(cls, pool: ArenaPool, spec: BatchSpec) -> tuple[Batcher, MemoryObjectReceiveStream[Arena]]:
        """A batcher and the queue its flushed arenas arrive on (never full: at most every
        arena of the pool can be in it)."""
        send, receive = anyio.create_memory_object_stream[Arena](pool.count)
        return cls(pool, spec, send), receive

    @property
    def backpressure_s(self) -> float:
        """Time producers waited for a free arena, counting a wait still going on (a metric
        that moved only when a wait ended would read 0 through a whole stall)."""
        held = 0.0 if self._held_since is None else anyio.current_time() - self._held_since
        return self._held_s + held

    @property
    def saturated(self) -> bool:
        """True when no arena is free: the pipeline is behind, new work would only wait."""
        return self._pool.available == 0 and (self._current is None or self._current.used >= self._max_bytes)

    def add_nowait(self, parts: tuple, kind: int, count: int, owner: Any = None, gap: int = 0) -> bool:
        """Copy ``parts`` (``count`` whole messages of framing ``kind``) into the current
        arena, or a free one, if that needs no wait; False (nothing taken) if it would."""
        if self._closed:
            raise StreamClosed("stream is shutting down")
        size = sum(len(p) for p in parts)
        arena = self._current
        if arena is None or arena.room() < size:
            if arena is not None:
                if arena.used == 0:
                    raise ValueError(f"{size} bytes cannot fit an arena of {arena.capacity}")
                self.flush()  # full enough: on to the pipeline now, whether or not one is free
            if self._acquiring.locked():  # someone already waits for an arena: queue behind
                return False
            arena = self._pool.try_acquire()
            if arena is None:
                return False
            self._current = arena
            self._generation += 1
        if not arena.regions:  # its first region (maybe only skipped bytes, no message)
            arena.opened_at = LOOP_HOLDS.window_start(anyio.current_time())
            self._armed.set()
        arena.add_messages(parts, kind, count, owner, gap)
        if owner is not None:
            owner.add_region()
        if arena.messages >= self._max_messages or arena.used >= self._max_bytes or self._linger == 0:
            self.flush()
        return True

    async def add(self, parts: tuple, kind: int, count: int, owner: Any = None, gap: int = 0) -> None:
        """``add_nowait``, waiting for a free arena when none is (backpressure)."""
        while not self.add_nowait(parts, kind, count, owner, gap):
            async with self._acquiring:
                if self._current is None and not self._closed:
                    if self._pool.available == 0:  # producers are held back from now on
                        self._held_since = anyio.current_time()
                    try:
                        arena = await self._pool.acquire()
                    finally:
                        if self._held_since is not None:
                            self._held_s += anyio.current_time() - self._held_since
                            self._held_since = None
                    if self._closed:  # closed while we waited: nothing may enter it now
                        self._pool.release(arena)
                        raise StreamClosed("stream is shutting down")
                    self._current = arena
                    self._generation += 1

    def flush(self) -> None:
        """Hand the current arena to the pipeline now, if it holds anything: messages, or
        only the count of input bytes a producer's framer skipped (which must be counted
        even if no message ever follows them)."""
        arena = self._current
        if arena is None or not arena.regions:
            return
        self._current = None
        arena.flushed_at = anyio.current_time()
        self._flushed.send_nowait(arena)

    async def run_linger(self) -> None:
        """Flush each arena ``linger_ms`` after its first message (runs until cancelled)."""
        while True:
            await self._armed.wait()
            self._armed = anyio.Event()
            arena, generation = self._current, self._generation
            if arena is None or not arena.regions:
                continue
            # asyncio's timers fire late (epoll waits whole milliseconds, rounded up:
            # measured 0.8 ms late at the median), so aim early: no message waits in an
            # arena longer than linger_ms, as the config promises
            await anyio.sleep_until(arena.opened_at + max(0.0, self._linger - TIMER_SLACK_S))
            if self._current is arena and self._generation == generation:
                arena.lingered = True
                self.flush()

    def hurry(self) -> None:
        """Shutting down: flush now, and flush every later append at once (no linger)."""
        self._linger = 0.0
        self.flush()

    def close(self) -> None:
        """Flush what is buffered and end the queue: the pipeline drains, then stops."""
        self.flush()
        self._closed = True
        self._flushed.close()


class Outbox:
    """One producer's whole messages on their way into a stream's batcher.

    A framer puts them here synchronously, straight from a read. While the stream has room
    they go into the arena at once (the copy the data path allows); when it has none they
    are copied out of the read buffer and kept, in order, and the producer stops reading
    until ``drain`` has added them: that wait is the backpressure producers feel. A
    producer's reads stop as soon as it is ``blocked``, so one read's worth is the most
    that waits here.
    """

    def __init__(self, batcher: Batcher, owner: Any = None) -> None:
        self._batcher = batcher
        self._owner = owner
        self._waiting: deque[tuple[tuple, int, int, int]] = deque()

    @property
    def blocked(self) -> bool:
        """Messages are waiting for a free arena: stop reading until ``drain`` returns."""
        return bool(self._waiting)

    def put(self, parts: tuple, kind: int, count: int, gap: int = 0) -> None:
        """Take ``count`` whole messages of framing ``kind``, the concatenation of ``parts``
        (which may view a buffer the caller reuses after this returns), which came ``gap``
        skipped input bytes after the previous ones."""
        if not self._waiting and self._batcher.add_nowait(parts, kind, count, self._owner, gap):
            return
        self._waiting.append((tuple(bytes(p) for p in parts), kind, count, gap))

    async def drain(self) -> None:
        """Wait until everything put so far is in an arena."""
        while self._waiting:
            parts, kind, count, gap = self._waiting[0]
            await self._batcher.add(parts, kind, count, self._owner, gap)
            self._waiting.popleft()

    def clear(self) -> int:
        """The producer is gone (or the stream closed): drop what waits; returns how many
        messages that was."""
        dropped = sum(count for _, _, count, _ in self._waiting)
        self._waiting.clear()
        return dropped
