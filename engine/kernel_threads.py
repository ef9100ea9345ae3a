"""The process's kernel threads, shared by every stream's batches: which batches are in
the kernels now, and on how many threads each.

A batch alone in the kernels gets one thread per ``PARALLEL_BYTES`` of input, up to all of
them ("wide"): the lowest latency for a lone burst. When batches queue (a stream sending
as fast as arenas fill, or several busy streams), each gets an equal share of the threads
instead, down to one, and batches run side by side. A wide parse leaves cores idle in its
serial steps (line counts, column sizes, Arrow assembly, Python glue) and at the
barrier that ends each parallel kernel, where one thread waits whenever the event loop or
a producer preempted the other; batches side by side fill those gaps with each other's
work. At full speed on 2 cores that took 2.53M to 2.94M msgs/s (bench/README.md, "Where
the time goes at full speed").

Threads are handed out first come, first served, never more than there are (so no batch's
threads wait on each other for a core), and a batch's share is decided when its turn
comes: it counts the batches holding threads, those waiting, and those of its own stream
queued behind it. Under sustained load some are always queued, so batches stay side by
side; a batch that waited behind a wide one but has nothing behind it (the end of a burst)
takes every free thread. Numba's ``workqueue`` layer aborts the process on concurrent
launches: under it (``exclusive``) one batch is in the kernels at a time, as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

#: Input bytes per kernel thread: below 2 * PARALLEL_BYTES a batch is parsed on one thread.
PARALLEL_BYTES = 1 << 20


class KernelThreads:
    """Counts the kernel threads in use; ``acquire`` waits for a batch's share of them."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.exclusive = False  # one batch at a time, whatever its width (workqueue layer)
        self._free = self.threads
        self._holders = 0
        self._waiters: deque[tuple[int, Callable[[], int], anyio.Event, list[int]]] = deque()

    async def acquire(self, nbytes: int, behind: Callable[[], int] = lambda: 0) -> int:
        """Threads for a batch of ``nbytes``, as many as it gets (give them back with
        ``release``); waits, in arrival order, while none is free. ``behind`` tells how
        many batches of the same stream wait to come after it.

        The share is decided when the threads are granted: a batch with no one after it
        and nothing behind it takes what is free (up to one per PARALLEL_BYTES), so a burst
        that ends gets every thread; otherwise an equal share among the batches holding
        threads, waiting for them and queued behind it, at least one.
        """
        want = max(1, min(self.threads, nbytes // PARALLEL_BYTES))
        if not self._waiters and self._fits():
            return self._take(want, behind(), 0)
        ready, granted = anyio.Event(), [0]
        entry = (want, behind, ready, granted)
        self._waiters.append(entry)
        try:
            await ready.wait()
        except BaseException:  # cancelled: leave the queue, or give back what was granted
            if ready.is_set():
                self.release(granted[0])
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        return granted[0]

    def release(self, n: int) -> None:
        self._free += n
        self._holders -= 1
        self._wake()

    def _fits(self) -> bool:
        return self._free > 0 and not (self.exclusive and self._holders)

    def _take(self, want: int, behind: int, after: int) -> int:
        others = behind + after
        share = self._free if not others else self.threads // (self._holders + others + 1)
        n = max(1, min(want, share, self._free))
        self._free -= n
        self._holders += 1
        return n

    def _wake(self) -> None:
        while self._waiters and self._fits():
            want, behind, ready, granted = self._waiters.popleft()
            granted[0] = self._take(want, behind(), len(self._waiters))
            ready.set()
