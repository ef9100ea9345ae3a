"""Fan-out: each topic (a stream's batches, or its dead letters) to its consumers.

Every batch a topic publishes has a sequence number (``quiver.seq`` in the batch's schema
metadata): 0, 1, 2, ... per topic, and, when the topic has a segment log, stable across
restarts. A consumer starts at ``latest`` (the next batch), ``earliest`` (the oldest
retained) or any retained seq. One that starts in the past reads the segment log at its
own pace and joins the live fan-out only once it has caught up, at a point where no await
can slip between "read up to next_seq" and "receive from next_seq": no gap, no duplicate,
and a replaying consumer never holds up producers however far behind it starts.

Every consumer has its own bounded queue of record batches. What happens when one is full
is the stream's ``slow_consumer`` policy: ``block`` makes the publisher wait (the pipeline
stalls, arenas stop coming back, producers feel it), ``disconnect`` drops that consumer
with a logged reason while the others keep going. Either way memory stays bounded by
``consumer_queue`` batches per consumer. Everything runs on the event loop.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Literal

import anyio
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.outputs.segments import SEQ_KEY, LogCursor, LogError, SegmentLog, SeqOutOfRange, seq_of, stamp

log = logging.getLogger("quiver.hub")


class ConsumerDropped(RuntimeError):
    """This consumer fell behind a ``slow_consumer: disconnect`` stream and was dropped."""


#: Batches a replaying consumer reads from disk per worker-thread call.
READ_AHEAD = 16
#: Once shutdown has dropped the consumers holding a topic up, the longest a publish
#: waits for any other consumer's queue to have room before dropping that one too.
LAGGARD_SEND_S = 2.0
#: Replaying consumers of one topic reading at once (the rest wait their turn), so that
#: replays cannot take every worker thread from the pipelines.
REPLAY_READERS = 4

Start = Literal["earliest", "latest"] | int


class Subscription:
    """One consumer's view of a topic: an async iterator of record batches that ends when
    the topic closes (after every batch already queued has been delivered)."""

    def __init__(
        self, topic: Topic, send: MemoryObjectSendStream, receive: MemoryObjectReceiveStream, start: int
    ) -> None:
        self.topic = topic
        self.schema: pa.Schema = topic.schema
        self.start = start  # seq of the first batch this consumer gets
        self._send = send
        self._receive = receive
        self.dropped: str | None = None
        self._dropped_event = anyio.Event()
        self._cursor: LogCursor | None = None  # set while replaying from the segment log
        self._pos = start
        self._ahead: deque[pa.RecordBatch] = deque()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> pa.RecordBatch:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def next_batch(self) -> pa.RecordBatch | None:
        """The next batch, or None once the topic has ended; raises ConsumerDropped."""
        if self._cursor is not None:
            if not self._ahead and self._pos < self.topic.next_seq:
                cursor, until = self._cursor, self.topic.next_seq
                try:
                    got = await anyio.to_thread.run_sync(
                        cursor.read, until, READ_AHEAD, limiter=self.topic.replay_limiter
                    )
                except SeqOutOfRange as exc:
                    self.dropped = f"{self.topic.name}: replay fell behind retention: {exc}"
                    self._end_replay()
                    raise ConsumerDropped(self.dropped) from None
                except LogError as exc:
                    self.dropped = f"{self.topic.name}: replay stopped at a damaged segment: {exc}"
                    log.error("replay_failed topic=%s error=%s", self.topic.name, exc)
                    self._end_replay()
                    raise ConsumerDropped(self.dropped) from None
                self._ahead.extend(got)
            if self._ahead:
                batch = self._ahead.popleft()
                self._pos = seq_of(batch) + 1
                return batch
            # caught up: everything before next_seq was read, everything from it on is
            # fanned out to us (no await between this check and joining)
            self._end_replay()
            self.topic._join(self)
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self.dropped:
                raise ConsumerDropped(self.dropped) from None
            return None

    async def wait_dropped(self) -> None:
        """Until the topic drops this consumer (which may never happen)."""
        await self._dropped_event.wait()

    def _end_replay(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
            self.topic._replaying.discard(self)

    def close(self) -> None:
        """Stop receiving: the topic forgets this consumer on its next publish."""
        self._end_replay()
        self._receive.close()
        self.topic._subscribers.discard(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Topic:
    """A live feed of record batches with one schema, published by one stream's pipeline."""

    def __init__(
        self,
        name: str,
        schema: pa.Schema,
        queue_size: int,
        policy: Literal["block", "disconnect"] = "block",
        log: SegmentLog | None = None,
    ) -> None:
        self.name = name
        self.schema = schema
        self.queue_size = queue_size
        self.policy = policy
        self._laggard_reason: str | None = None  # set by drop_laggards (shutting down)
        self.log = log
        self._subscribers: set[Subscription] = set()
        self._replaying: set[Subscription] = set()  # still reading the log, not yet live
        self._closed = False
        self.next_seq = log.next_seq if log is not None else 0  # seq of the next batch to publish
        self._replay_limiter: anyio.CapacityLimiter | None = None
        self.published = 0
        self.dropped = 0

    @property
    def replay_limiter(self) -> anyio.CapacityLimiter:
        if self._replay_limiter is None:  # made on the loop, at first use
            self._replay_limiter = anyio.CapacityLimiter(REPLAY_READERS)
        return self._replay_limiter

    @property
    def first_seq(self) -> int:
        """The oldest seq a consumer can start at (== next_seq for a live-only topic)."""
        # min: the log may already hold a batch that is not published yet
        return min(self.log.first_seq, self.next_seq) if self.log is not None else self.next_seq

    def resolve(self, start: Start) -> int:
        """The seq ``start`` names; raises SeqOutOfRange if it is neither retained nor next."""
        if start == "latest":
            return self.next_seq
        if start == "earliest":
            return self.first_seq
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"expected 'earliest', 'latest' or a sequence number; got {start!r}")
        first = self.first_seq
        if not first <= start <= self.next_seq:
            raise SeqOutOfRange(start, first, self.next_seq)
        return start

    def stamp(self, batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """Number batches that are about to be published (after whatever is pending)."""
        return [stamp(b, self.next_seq + i) for i, b in enumerate(batches)]

    @property
    def consumers(self) -> int:
        return len(self._subscribers)

    @property
    def replaying(self) -> int:
        """Consumers still reading the log on their way to the live feed (a shutdown lets
        them finish: they too get every batch and a clean end)."""
        return len(self._replaying)

    def subscribe(self, start: Start = "latest") -> Subscription:
        """A consumer that sees every batch from ``start`` on (see the module docstring)."""
        pos = self.resolve(start)
        send, receive = anyio.create_memory_object_stream[pa.RecordBatch](self.queue_size)
        sub = Subscription(self, send, receive, pos)
        if pos < self.next_seq:
            assert self.log is not None  # resolve() allows the past only with a log
            sub._cursor = self.log.cursor(pos)
            self._replaying.add(sub)
        else:
            self._join(sub)
        return sub

    def _join(self, sub: Subscription) -> None:
        if self._closed:
            sub._send.close()
        else:
            self._subscribers.add(sub)

    async def publish(self, batch: pa.RecordBatch) -> None:
        """Fan out a batch: one numbered by ``stamp`` (and already in the log, if the topic
        has one), or an unnumbered one, which gets the next seq."""
        meta = batch.schema.metadata
        if meta is None or SEQ_KEY not in meta:
            batch = stamp(batch, self.next_seq)
        self.next_seq = seq_of(batch) + 1  # first, so consumers joining now replay it
        self.published += 1
        waiting = []
        for sub in list(self._subscribers):
            try:
                if self.policy == "block" and self._laggard_reason is None:
                    await sub._send.send(batch)
                else:
                    sub._send.send_nowait(batch)
            except anyio.WouldBlock:
                if self.policy == "block":
                    waiting.append(sub)  # shutting down: see below
                else:
                    self._drop(sub, f"fell {self.queue_size} batches behind")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(sub)  # the consumer went away
        if waiting:
            # shutting down, the laggards dropped: a consumer that keeps taking batches
            # still gets every one, however bursty the backlog now released; the full
            # ones are waited for side by side, each at most LAGGARD_SEND_S, then dropped
            async with anyio.create_task_group() as tg:
                for sub in waiting:
                    tg.start_soon(self._send_or_drop, sub, batch)

    async def _send_or_drop(self, sub: Subscription, batch: pa.RecordBatch) -> None:
        try:
            with anyio.move_on_after(LAGGARD_SEND_S):
                await sub._send.send(batch)
                return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._subscribers.discard(sub)
            return
        assert self._laggard_reason is not None
        self._drop(sub, self._laggard_reason)

    def _drop(self, sub: Subscription, reason: str) -> None:
        sub.dropped = f"{self.name}: slow consumer dropped: {reason}"
        self.dropped += 1
        self._subscribers.discard(sub)
        sub._send.close()
        sub._dropped_event.set()
        log.warning("consumer_dropped topic=%s reason=%r", self.name, reason)

    def drop_laggards(self, reason: str) -> int:
        """Drop the consumers whose queues are full (under ``block``, those that hold
        publishing up), and from now on (under ``block``) drop one that takes nothing for
        ``LAGGARD_SEND_S`` rather than wait for it: shutdown could not wait for them any
        longer, while the others still get every batch. Returns how many.

        Not a switch to ``disconnect``: the backlog the laggards held up is then published
        in a burst, which would overflow the queue of a consumer reading at full speed."""
        self._laggard_reason = reason
        full = [s for s in self._subscribers if s._send.statistics().current_buffer_used >= self.queue_size]
        for sub in full:
            self._drop(sub, reason)
        return len(full)

    def drop_all(self, reason: str) -> None:
        """Drop every consumer (shutdown could not wait for them any longer)."""
        for sub in list(self._subscribers):
            self._drop(sub, reason)

    def close(self) -> None:
        """No more batches: consumers drain what is queued, then their iteration ends."""
        self._closed = True
        for sub in self._subscribers:
            sub._send.close()
        self._subscribers.clear()
