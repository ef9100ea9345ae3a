"""Arenas: preallocated byte buffers that whole messages are copied into, reused per batch.

An ``Arena`` holds a stream's raw bytes (``data``, ``max_bytes`` long) until the kernels have
parsed them; an ``ArenaPool`` owns a fixed number of arenas per stream, so ingest memory is
bounded by ``arenas * max_bytes`` whatever producers send. When no arena is free, whoever
fills them waits: that wait is the backpressure producers feel.
"""

from __future__ import annotations

import threading

import numpy as np


class Arena:
    """One reusable buffer: ``data[:used]`` holds bytes not yet parsed."""

    def __init__(self, max_bytes: int) -> None:
        self.data = np.empty(max_bytes, np.uint8)
        self.used = 0

    @property
    def capacity(self) -> int:
        return len(self.data)

    def free_space(self) -> memoryview:
        """Writable view of the unused tail, for ``readinto``/``recv_into``."""
        return memoryview(self.data)[self.used :]

    def append(self, chunk: bytes | memoryview) -> int:
        """Copy as much of ``chunk`` as fits; return how many bytes were taken."""
        n = min(len(chunk), self.capacity - self.used)
        self.data[self.used : self.used + n] = np.frombuffer(chunk, np.uint8, n)
        self.used += n
        return n

    def keep_tail(self, consumed: int) -> None:
        """Drop the first ``consumed`` bytes (parsed), moving the rest to the front."""
        rest = self.used - consumed
        if rest and consumed:
            self.data[:rest] = self.data[consumed : self.used]  # numpy handles the overlap
        self.used = rest

    def reset(self) -> None:
        self.used = 0


class ArenaPool:
    """A fixed set of arenas for one stream; ``acquire`` waits while all are in use."""

    def __init__(self, count: int, max_bytes: int) -> None:
        self._free = [Arena(max_bytes) for _ in range(count)]
        self._cond = threading.Condition()
        self.count = count

    def acquire(self, timeout: float | None = None) -> Arena | None:
        """A free arena, or None if none became free within ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._free, timeout):
                return None
            arena = self._free.pop()
        arena.reset()
        return arena

    def release(self, arena: Arena) -> None:
        with self._cond:
            self._free.append(arena)
            self._cond.notify()

    @property
    def available(self) -> int:
        with self._cond:
            return len(self._free)
