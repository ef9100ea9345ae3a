"""The process's kernel threads, shared by every stream's batches: which batches are in
the kernels now, and on how many threads each.

A batch alone in the kernels gets one thread per ``PARALLEL_BYTES`` of input, up to all of
them ("wide"): the lowest latency for a lone burst. When batches queue (a stream sending
as fast as arenas fill, or several busy streams), each newcomer gets an equal share of the
threads instead, down to one, and batches run side by side. A wide parse leaves cores idle
in its serial steps (line counts, column sizes, Arrow assembly, Python glue) and at the
barrier that ends each parallel kernel, where one thread waits whenever the event loop or
a producer preempted the other; batches side by side fill those gaps with each other's
work. At full speed on 2 cores that took 2.51M to 2.96M msgs/s (bench/README.md, "Where
the time goes at full speed").

Threads are handed out first come, first served, and never more than there are, so no
batch's threads wait on each other for a core. Numba's ``workqueue`` layer aborts the
process on concurrent launches: under it (``exclusive``) one batch is in the kernels at a
time, as before.
"""

from __future__ import annotations

from collections import deque

import anyio

#: Input bytes per kernel thread: below 2 * PARALLEL_BYTES a batch is parsed on one thread.
PARALLEL_BYTES = 1 << 20


class KernelThreads:
    """Counts the kernel threads in use; ``acquire`` waits for the ones a batch needs."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.exclusive = False  # one batch at a time, whatever its width (workqueue layer)
        self._free = self.threads
        self._holders = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    def width(self, nbytes: int) -> int:
        """Threads for a batch of ``nbytes`` that is about to queue: one per PARALLEL_BYTES,
        at most all, and at most an equal share among the batches in or waiting for the
        kernels, this one included."""
        want = max(1, min(self.threads, nbytes // PARALLEL_BYTES))
        share = self.threads // (self._holders + len(self._waiters) + 1)
        return max(1, min(want, share))

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` threads (1 <= n <= threads) are free, in arrival order."""
        if not self._waiters and self._fits(n):
            self._take(n)
            return
        ready = anyio.Event()
        entry = (n, ready)
        self._waiters.append(entry)
        try:
            await ready.wait()
        except BaseException:  # cancelled: leave the queue, or give back what was granted
            if ready.is_set():
                self.release(n)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, n: int) -> None:
        self._free += n
        self._holders -= 1
        self._wake()

    def _fits(self, n: int) -> bool:
        return self._free >= n and not (self.exclusive and self._holders)

    def _take(self, n: int) -> None:
        self._free -= n
        self._holders += 1

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            n, ready = self._waiters.popleft()
            self._take(n)
            ready.set()
