"""``Engine``: a whole configuration served on the current event loop.

    async with Engine("configs/default.yaml") as eng:
        async for batch in eng.subscribe("events"): ...      # in process
        receipt = await eng.ingest("events", b'{"ts": 1, "user_id": 7}\\n')

Start-up warms every stream's kernels before any listener accepts. Shut-down runs in the
order that loses nothing: stop accepting; let producers hand over what they sent; flush
partial arenas; parse and deliver everything to connected consumers; end the live
streams; stop the servers. The CLI's ``quiver serve`` is a thin wrapper over this class.
Runs on asyncio (uvicorn needs it).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import AsyncExitStack

import anyio
import numba
from anyio.from_thread import BlockingPortal

from engine.batcher import Receipt
from engine.config import Config, load_config
from engine.outputs.hub import Subscription, Topic
from engine.server.flight import FlightListener
from engine.server.http import HttpListener
from engine.server.tcp import TcpListener
from engine.stream import Stream

log = logging.getLogger("quiver.engine")


class Engine:
    """Serves a config: listeners, per-stream pipelines and consumers, on one event loop."""

    def __init__(self, config: Config | str | os.PathLike[str]) -> None:
        self.config = config if isinstance(config, Config) else load_config(config)
        threads = self.config.kernels.threads
        self.threads: int | None = None if threads == "auto" else min(int(threads), numba.config.NUMBA_NUM_THREADS)
        self.streams: dict[str, Stream] = {}
        self.tcp: list[TcpListener] = []
        self.http: list[HttpListener] = []
        self.flight: list[FlightListener] = []
        self.ready_seconds: float | None = None
        self._stack: AsyncExitStack | None = None
        self._closed = False

    # -- public API ---------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Every listener's URL (actual ports, also when the config asked for port 0)."""
        tcp = [f"{t.url} ({t.spec.stream}, {t.spec.framing})" for t in self.tcp]
        return tcp + [h.url for h in self.http] + [f.url for f in self.flight]

    def topics(self) -> dict[str, Topic]:
        """Every live feed by name: ``<stream>`` and ``<stream>.rejects``."""
        out: dict[str, Topic] = {}
        for s in self.streams.values():
            out[s.batches.name] = s.batches
            out[s.rejects.name] = s.rejects
        return out

    def subscribe(self, name: str) -> Subscription:
        """Record batches of ``name`` (a stream, or ``<stream>.rejects`` for its dead
        letters) from now on, as an async iterator; it ends when the engine stops."""
        topic = self.topics().get(name)
        if topic is None:
            raise KeyError(f"no such stream: {name!r}; expected one of {sorted(self.topics())}")
        return topic.subscribe()

    async def ingest(self, stream: str, data: bytes | bytearray | memoryview, framing: str = "newline") -> Receipt:
        """Feed NDJSON (or length-prefixed) bytes to a stream; returns once every message
        is parsed and handed to the outputs, with the counts and the first errors."""
        if stream not in self.streams:
            raise KeyError(f"no such stream: {stream!r}; expected one of {sorted(self.streams)}")
        return await self.streams[stream].ingest(data, framing)

    def stats(self, stream: str) -> dict:
        return self.streams[stream].stats.as_dict()

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        started = time.perf_counter()
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self.ready_seconds = time.perf_counter() - started
        log.info("ready seconds=%.2f endpoints=%s", self.ready_seconds, " ".join(self.endpoints))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _start(self, stack: AsyncExitStack) -> None:
        slot = anyio.CapacityLimiter(1)  # one batch in the kernels at a time (pipeline.py)
        for name, cfg in self.config.streams.items():
            self.streams[name] = Stream(cfg, slot, self.threads)
        for s in self.streams.values():
            await anyio.to_thread.run_sync(self._warm, s)
        tg = await stack.enter_async_context(anyio.create_task_group())
        self._tg = tg
        self._streams_tg = await stack.enter_async_context(anyio.create_task_group())
        for s in self.streams.values():
            self._streams_tg.start_soon(s.run, name=f"stream {s.name}")
        portal = None
        for spec in self.config.listen:
            if spec.kind == "tcp":
                stream = self.streams[spec.stream]
                listener = TcpListener(spec, stream.batcher, stream.limits, stream.stats)
                await tg.start(listener.serve)
                self.tcp.append(listener)
            elif spec.kind == "http":
                http = HttpListener(spec, self.streams)
                await tg.start(http.serve)
                self.http.append(http)
            else:
                if portal is None:
                    portal = await stack.enter_async_context(BlockingPortal())
                flight = FlightListener(spec, self.topics, portal)
                await anyio.to_thread.run_sync(flight.start)
                self.flight.append(flight)

    def _warm(self, stream: Stream) -> None:
        if self.threads is not None:
            numba.set_num_threads(self.threads)
        stream.parser.warm()

    async def aclose(self) -> None:
        """Stop in the order that loses nothing (see the module docstring). Idempotent."""
        if self._closed or self._stack is None:
            return
        self._closed = True
        log.info("stopping")
        for t in self.tcp:
            t.stop()
        for h in self.http:
            await h.stop_accepting()  # POSTs in progress finish: their batches flush on linger
        with anyio.CancelScope(shield=True):
            # producers' last reads reach the arenas; connections exit their task groups
            # as they finish, which the listener tasks wait for
            await self._wait_tcp_drained()
            for s in self.streams.values():
                s.close()  # flush partial arenas; the pipelines drain, then end their topics
            await self._wait_streams()
            for f in self.flight:
                await anyio.to_thread.run_sync(f.stop)
        await self._stack.aclose()  # uvicorn ends once its live responses have ended
        totals = {name: s.stats.as_dict() for name, s in self.streams.items()}
        log.info("stopped stats=%s", totals)

    async def _wait_tcp_drained(self) -> None:
        for t in self.tcp:
            await t.done.wait()

    async def _wait_streams(self) -> None:
        for s in self.streams.values():
            await s.pipeline.done.wait()
