"""Live fan-out: each topic (a stream's batches, or its dead letters) to its consumers.

Every consumer has its own bounded queue of record batches. What happens when one is full
is the stream's ``slow_consumer`` policy: ``block`` makes the publisher wait (the pipeline
stalls, arenas stop coming back, producers feel it), ``disconnect`` drops that consumer
with a logged reason while the others keep going. Either way memory stays bounded by
``consumer_queue`` batches per consumer. Everything runs on the event loop.
"""

from __future__ import annotations

import logging
from typing import Literal

import anyio
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

log = logging.getLogger("quiver.hub")


class ConsumerDropped(RuntimeError):
    """This consumer fell behind a ``slow_consumer: disconnect`` stream and was dropped."""


class Subscription:
    """One consumer's view of a topic: an async iterator of record batches that ends when
    the topic closes (after every batch already queued has been delivered)."""

    def __init__(self, topic: Topic, send: MemoryObjectSendStream, receive: MemoryObjectReceiveStream) -> None:
        self.topic = topic
        self.schema: pa.Schema = topic.schema
        self._send = send
        self._receive = receive
        self.dropped: str | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> pa.RecordBatch:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def next_batch(self) -> pa.RecordBatch | None:
        """The next batch, or None once the topic has ended; raises ConsumerDropped."""
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self.dropped:
                raise ConsumerDropped(self.dropped) from None
            return None

    def close(self) -> None:
        """Stop receiving: the topic forgets this consumer on its next publish."""
        self._receive.close()
        self.topic._subscribers.discard(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Topic:
    """A live feed of record batches with one schema, published by one stream's pipeline."""

    def __init__(
        self, name: str, schema: pa.Schema, queue_size: int, policy: Literal["block", "disconnect"] = "block"
    ) -> None:
        self.name = name
        self.schema = schema
        self.queue_size = queue_size
        self.policy = policy
        self._subscribers: set[Subscription] = set()
        self._closed = False
        self.published = 0
        self.dropped = 0

    @property
    def consumers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        """A consumer that sees every batch published from now on."""
        send, receive = anyio.create_memory_object_stream[pa.RecordBatch](self.queue_size)
        sub = Subscription(self, send, receive)
        if self._closed:
            send.close()
        else:
            self._subscribers.add(sub)
        return sub

    async def publish(self, batch: pa.RecordBatch) -> None:
        self.published += 1
        for sub in list(self._subscribers):
            try:
                if self.policy == "block":
                    await sub._send.send(batch)
                else:
                    sub._send.send_nowait(batch)
            except anyio.WouldBlock:
                self._drop(sub, f"fell {self.queue_size} batches behind")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(sub)  # the consumer went away

    def _drop(self, sub: Subscription, reason: str) -> None:
        sub.dropped = f"{self.name}: slow consumer dropped: {reason}"
        self.dropped += 1
        self._subscribers.discard(sub)
        sub._send.close()
        log.warning("consumer_dropped topic=%s reason=%r", self.name, reason)

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
