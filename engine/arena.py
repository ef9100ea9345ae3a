"""Arenas: preallocated byte buffers that whole messages are copied into, reused per batch.

An ``Arena`` holds a stream's raw bytes (``data``) until the kernels have parsed them. In
the service, every append is one or more *whole* messages (connections keep their partial
last message back), recorded as a ``Region`` of newline-delimited or length-prefixed bytes:
framing itself runs later, in the kernels. An ``ArenaPool`` owns a fixed number of arenas
per stream, so ingest memory is bounded by ``arenas * capacity`` whatever producers send.
When no arena is free, whoever fills them waits: that wait is the backpressure producers feel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

LINES = 0  # newline-delimited JSON, every line complete (ends with LF)
FRAMES = 1  # u32 big-endian length-prefixed frames, every frame complete
#: The last frame of a producer that ended inside it, re-framed whole: its header says how
#: many bytes came (the frame's own header among them). One message, rejected as truncated.
TRUNCATED_FRAME = 2

#: Largest piece a framer appends at once; arenas leave room for this plus a whole message.
CHUNK_BYTES = 256 << 10


def arena_capacity(max_bytes: int, max_message_bytes: int) -> int:
    """Bytes per arena: room for a full batch, and for the largest single append a framer
    makes (a carried message of ``max_message_bytes`` plus one read)."""
    return max(max_bytes, max_message_bytes + CHUNK_BYTES + 64)


@dataclass
class Region:
    """``data[start:end]`` of one framing; ``owner`` (an HTTP request's receipt, say) wants
    to hear how its messages fared. Appends without an owner merge into one region."""

    start: int
    end: int
    kind: int
    owner: Any = None
    gap: int = 0  # input bytes skipped just before this region (the rest of an oversize message;
    # negative: bytes a framer added before it, an LF or a frame header that was not input)


class Arena:
    """One reusable buffer: ``data[:used]`` holds bytes not yet parsed."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(capacity, np.uint8)
        # touch every page now: an untouched page would join the process' memory the
        # first time a burst fills this far, so RSS would creep up with every larger burst
        # instead of being what the config says from the start
        self.data.fill(0)
        self.used = 0
        self.messages = 0  # messages appended (newline framing counts blank lines too)
        self.regions: list[Region] = []
        self.opened_at = math.inf  # loop time of the first append since reset
        self.flushed_at = math.inf  # loop time it was handed to the pipeline
        self.lingered = False  # flushed by linger_ms: its stream fills arenas slower than that

    @property
    def capacity(self) -> int:
        return len(self.data)

    def room(self) -> int:
        return self.capacity - self.used

    def free_space(self) -> memoryview:
        """Writable view of the unused tail, for ``readinto``/``recv_into``."""
        return memoryview(self.data)[self.used :]

    def append(self, chunk: bytes | bytearray | memoryview) -> int:
        """Copy as much of ``chunk`` as fits; return how many bytes were taken."""
        n = min(len(chunk), self.capacity - self.used)
        self.data[self.used : self.used + n] = np.frombuffer(chunk, np.uint8, n)
        self.used += n
        return n

    def add_messages(self, parts: tuple, kind: int, count: int, owner: Any = None, gap: int = 0) -> None:
        """Copy ``parts`` (which together hold ``count`` whole messages) as one region,
        ``gap`` input bytes after what came before it from the same producer.

        The caller has checked ``room()``: a short copy here would split a message.
        """
        start = self.used
        for part in parts:
            if len(part):
                self.append(part)
        last = self.regions[-1] if self.regions else None
        if (
            last is not None
            and owner is None
            and last.owner is None
            and last.kind == kind
            and last.end == start
            and not gap
        ):
            last.end = self.used
        else:
            self.regions.append(Region(start, self.used, kind, owner, gap))
        self.messages += count

    def skipped(self) -> int:
        """Input bytes skipped inside this arena's regions (their gaps, in total)."""
        return sum(r.gap for r in self.regions)

    def keep_tail(self, consumed: int) -> None:
        """Drop the first ``consumed`` bytes (parsed), moving the rest to the front."""
        rest = self.used - consumed
        if rest and consumed:
            self.data[:rest] = self.data[consumed : self.used]  # numpy handles the overlap
        self.used = rest

    def reset(self) -> None:
        self.used = 0
        self.messages = 0
        self.regions = []
        self.opened_at = math.inf
        self.flushed_at = math.inf
        self.lingered = False


class ArenaPool:
    """A fixed set of arenas for one stream, handed out on the event loop.

    ``acquire`` waits (FIFO) while every arena is filling, queued for the kernels or waiting
    for consumers; ``release`` returns one. Nothing is allocated after construction.
    """

    def __init__(self, count: int, capacity: int) -> None:
        self.count = count
        self._send, self._receive = anyio.create_memory_object_stream[Arena](count)
        for _ in range(count):
            self._send.send_nowait(Arena(capacity))

    async def acquire(self) -> Arena:
        arena = await self._receive.receive()
        arena.reset()
        return arena

    def try_acquire(self) -> Arena | None:
        try:
            arena = self._receive.receive_nowait()
        except anyio.WouldBlock:
            return None
        arena.reset()
        return arena

    def release(self, arena: Arena) -> None:
        self._send.send_nowait(arena)

    @property
    def available(self) -> int:
        return self._receive.statistics().current_buffer_used
