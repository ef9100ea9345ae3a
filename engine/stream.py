"""A configured stream at run time: its parser, arenas, batcher, pipeline and topics.

This is what listeners talk to. Producers go through ``batcher`` (or ``ingest``, which
frames a whole submission and waits for its receipt); consumers subscribe to ``batches``
or ``rejects``.
"""

from __future__ import annotations

import anyio

from engine.arena import ArenaPool
from engine.batcher import Batcher, Receipt
from engine.config import Limits, StreamConfig
from engine.framer import CHUNK_BYTES, FrameFramer, LineFramer
from engine.outputs.hub import Topic
from engine.parser import Parser
from engine.pipeline import Pipeline


class Stream:
    def __init__(self, config: StreamConfig, kernel_slot: anyio.CapacityLimiter, threads: int | None) -> None:
        assert config.limits is not None  # resolved by Config
        self.name = config.name
        self.config = config
        self.limits: Limits = config.limits
        self.parser = Parser(config)
        # room for a full batch, and for the largest single append a framer makes: a
        # carried message of max_message_bytes plus one read
        capacity = max(int(config.batch.max_bytes), int(self.limits.max_message_bytes) + CHUNK_BYTES + 64)
        self.pool = ArenaPool(config.arenas, capacity)
        self.batcher, self._flushed = Batcher.create(self.pool, config.batch)
        queue = config.consumer_queue
        self.batches = Topic(self.name, self.parser.schema, queue, config.slow_consumer)
        self.rejects = Topic(f"{self.name}.rejects", self.parser.rejects_schema, queue, config.slow_consumer)
        self.pipeline = Pipeline(self.parser, self.pool, self.batches, self.rejects, kernel_slot, threads)

    @property
    def stats(self):
        return self.pipeline.stats

    def framer(self, framing: str = "newline", owner: Receipt | None = None) -> LineFramer | FrameFramer:
        cls = LineFramer if framing == "newline" else FrameFramer
        return cls(self.batcher, int(self.limits.max_message_bytes), owner)

    async def ingest(self, data: bytes | bytearray | memoryview, framing: str = "newline") -> Receipt:
        """Feed one submission and wait until its messages are parsed and handed to the outputs."""
        receipt = Receipt()
        framer = self.framer(framing, receipt)
        await framer.feed(data)
        await framer.finish()
        receipt.close()
        return await receipt.wait()

    async def run(self) -> None:
        """The stream's background work: linger flushes and the pipeline (until closed)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.batcher.run_linger)
            await self.pipeline.run(self._flushed)
            tg.cancel_scope.cancel()

    def close(self) -> None:
        """Take no more messages; what is buffered is still parsed and delivered."""
        self.batcher.close()
