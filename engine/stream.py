"""A configured stream at run time: its parser, arenas, batcher, pipeline and topics.

This is what listeners talk to. Producers go through ``batcher`` (or ``ingest``, which
frames a whole submission and waits for its receipt); consumers subscribe to ``batches``
or ``rejects``. With a ``data_dir``, each of the two topics has a segment log under
``<data_dir>/<topic name>/`` (see ``open_logs``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import pyarrow as pa

from engine.arena import CHUNK_BYTES, ArenaPool, arena_capacity
from engine.arrow import DEAD_LETTER_SCHEMA
from engine.batcher import Batcher, Outbox, Receipt
from engine.config import Limits, StreamConfig
from engine.framer import FrameFramer, LineFramer
from engine.kernel_threads import KernelThreads
from engine.outputs.hub import Topic
from engine.outputs.segments import SegmentLog, SegmentPolicy
from engine.parser import Parser
from engine.pipeline import Pipeline
from engine.schema import compile_schema

log = logging.getLogger("quiver.stream")


def open_logs(config: StreamConfig, data_dir: str | os.PathLike[str]) -> tuple[SegmentLog, SegmentLog]:
    """Open (and recover) the segment logs of a stream's batches and dead letters.

    Blocking: recovery reads the newest segment of each back. Run it on a worker thread.
    """
    policy = SegmentPolicy(
        max_bytes=int(config.segments.max_bytes),
        max_age_s=config.segments.max_age_s,
        retain_bytes=None if config.retention.max_bytes is None else int(config.retention.max_bytes),
        retain_age_s=config.retention.max_age_s,
    )
    root = Path(data_dir)
    schema = compile_schema(config)
    enums = {c.name: pa.array(c.enum_values, pa.string()) for c in schema.columns if c.enum_values}
    batches = SegmentLog.open(root / config.name, schema.arrow_schema, policy, enums)
    try:
        rejects = SegmentLog.open(root / f"{config.name}.rejects", DEAD_LETTER_SCHEMA, policy)
    except BaseException:
        batches.close()
        raise
    return batches, rejects


#: How often a stream with segments applies retention by age while nothing rolls.
RETENTION_CHECK_S = 60.0


class Stream:
    def __init__(
        self,
        config: StreamConfig,
        kernels: KernelThreads,
        logs: tuple[SegmentLog, SegmentLog] | None = None,
    ) -> None:
        assert config.limits is not None  # resolved by Config
        self.name = config.name
        self.config = config
        self.limits: Limits = config.limits
        self.parser = Parser(config)
        capacity = arena_capacity(int(config.batch.max_bytes), int(self.limits.max_message_bytes))
        self.pool = ArenaPool(config.arenas, capacity)
        self.batcher, self._flushed = Batcher.create(self.pool, config.batch)
        queue = config.consumer_queue
        batches_log, rejects_log = logs if logs is not None else (None, None)
        self.batches = Topic(self.name, self.parser.schema, queue, config.slow_consumer, batches_log)
        self.rejects = Topic(
            f"{self.name}.rejects", self.parser.rejects_schema, queue, config.slow_consumer, rejects_log
        )
        d = config.durability
        durability = d if isinstance(d, str) else d.interval_ms / 1000.0
        self.pipeline = Pipeline(self.parser, self.pool, self.batches, self.rejects, kernels, durability)

    @property
    def stats(self):
        return self.pipeline.stats

    def framer(self, framing: str = "newline", owner: Receipt | None = None) -> LineFramer | FrameFramer:
        """A framer for one producer, putting into its own ``Outbox`` (``framer.sink``)."""
        framers = {"newline": LineFramer, "length_prefixed": FrameFramer}
        if framing not in framers:  # a typo must not read NDJSON as length prefixes
            raise ValueError(f"framing: expected 'newline' or 'length_prefixed'; got {framing!r}")
        return framers[framing](Outbox(self.batcher, owner), int(self.limits.max_message_bytes))

    async def ingest(self, data: bytes | bytearray | memoryview, framing: str = "newline") -> Receipt:
        """Feed one submission and wait until its messages are parsed and handed to the outputs."""
        receipt = Receipt()
        framer = self.framer(framing, receipt)
        view = memoryview(data)
        for lo in range(0, len(view), CHUNK_BYTES):  # a read's worth at a time: bounded copies
            framer.feed(view[lo : lo + CHUNK_BYTES])
            await framer.sink.drain()
        framer.finish()
        await framer.sink.drain()
        receipt.close()
        return await receipt.wait()

    async def run(self) -> None:
        """The stream's background work: linger flushes and the pipeline (until closed)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.batcher.run_linger)
                if self.batches.log is not None:
                    tg.start_soon(self._retain_every, RETENTION_CHECK_S)
                await self.pipeline.run(self._flushed)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.close_logs)

    async def _retain_every(self, seconds: float) -> None:
        """Retention by age also on a quiet stream (rolls enforce it otherwise)."""
        while True:
            await anyio.sleep(seconds)
            for topic in (self.batches, self.rejects):
                if topic.log is not None:
                    await anyio.to_thread.run_sync(topic.log.enforce_retention)

    def close_logs(self) -> None:
        """Close the active segments (end-of-stream marker, fsync). Blocking; idempotent.
        A disk that fails now is logged: the next start's recovery keeps the whole batches."""
        for topic in (self.batches, self.rejects):
            if topic.log is not None:
                try:
                    topic.log.close()
                except (OSError, pa.ArrowException) as exc:
                    log.error("segment_close_failed topic=%s error=%r", topic.name, exc)

    def close(self) -> None:
        """Take no more messages; what is buffered is still parsed and delivered."""
        self.batcher.close()
