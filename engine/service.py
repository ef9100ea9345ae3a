"""``Engine``: a whole configuration served on the current event loop.

    async with Engine("configs/default.yaml") as eng:
        async for batch in eng.subscribe("events"): ...      # in process
        receipt = await eng.ingest("events", b'{"ts": 1, "user_id": 7}\\n')

Start-up warms every stream's kernels before any listener accepts. Shut-down runs in the
order that loses nothing: stop accepting; let producers hand over what they sent (TCP
connections read until their producer goes quiet, POSTs in progress are answered); flush
partial arenas; parse and deliver everything to connected consumers; end the live
streams; stop the servers. A consumer that blocks all that for ``shutdown_timeout``
seconds is dropped. The CLI's ``quiver serve`` is a thin wrapper over this class.
Runs on asyncio (uvicorn needs it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import AsyncExitStack

import anyio
import numba
import pyarrow as pa
from anyio.from_thread import BlockingPortal
from prometheus_client import CollectorRegistry

from engine.batcher import Receipt
from engine.config import Config, load_config
from engine.framer import warm_framing
from engine.kernel_threads import KernelThreads
from engine.metrics import engine_registry, exposition
from engine.outputs.hub import Start, Subscription, Topic
from engine.outputs.segments import LogError
from engine.server.access import check_tls, resolve_token
from engine.server.flight import FlightListener
from engine.server.http import HttpListener
from engine.server.tcp import TcpListener
from engine.stream import Stream, open_logs

log = logging.getLogger("quiver.engine")

FLIGHT_STOP_S = 5.0
#: After shutdown_timeout, the longest shutdown still waits once the consumers holding it up
#: are dropped, before it drops every consumer.
LAGGARD_GRACE_S = 10.0


class Engine:
    """Serves a config: listeners, per-stream pipelines and consumers, on one event loop."""

    def __init__(self, config: Config | str | os.PathLike[str], *, shutdown_timeout: float = 30.0) -> None:
        self.config = config if isinstance(config, Config) else load_config(config)
        self.shutdown_timeout = shutdown_timeout
        self.threads: int | None = self.config.kernels.threads_here(numba.config.NUMBA_NUM_THREADS)
        self.streams: dict[str, Stream] = {}
        self.tcp: list[TcpListener] = []
        self.http: list[HttpListener] = []
        self.flight: list[FlightListener] = []
        self.ready_seconds: float | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._streams_tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._lock_fd = -1  # holds data_dir for this process
        self._registry: CollectorRegistry | None = None
        self.stops_left_running = 0  # Flight stops given up on: see _stop_flight

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

    def subscribe(self, name: str, start: Start = "latest") -> Subscription:
        """Record batches of ``name`` (a stream, or ``<stream>.rejects`` for its dead
        letters) as an async iterator that ends when the engine stops. ``start``:
        ``"latest"`` (from the next batch), ``"earliest"`` (the oldest retained) or a
        sequence number; retained batches come from the segment log, then live ones, with
        no gap and no duplicate. Each batch's seq is ``batch.schema.metadata[b"quiver.seq"]``.
        Raises SeqOutOfRange for a seq that is not retained."""
        topic = self.topics().get(name)
        if topic is None:
            raise KeyError(f"no such stream: {name!r}; expected one of {sorted(self.topics())}")
        return topic.subscribe(start)

    async def ingest(self, stream: str, data: bytes | bytearray | memoryview, framing: str = "newline") -> Receipt:
        """Feed NDJSON (or length-prefixed) bytes to a stream; returns once every message
        is parsed and handed to the outputs, with the counts and the first errors."""
        return await self._stream(stream).ingest(data, framing)

    def stats(self, stream: str) -> dict:
        return self._stream(stream).stats.as_dict()

    def _stream(self, name: str) -> Stream:
        if name not in self.streams:
            raise KeyError(f"no such stream: {name!r}; expected one of {sorted(self.streams)}")
        return self.streams[name]

    def metrics(self) -> bytes:
        """Every counter of the engine in Prometheus' text format (``GET /metrics``)."""
        if self._registry is None:
            self._registry = engine_registry(self)
        return exposition(self._registry)

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        if self._stack is not None:  # its streams and listeners are gone for good once closed
            raise RuntimeError("an Engine runs once: make a new Engine to serve again")
        started = time.perf_counter()
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            for t in self.tcp:
                t.stop()
            for s in self.streams.values():
                s.close()
            for group in (self._tg, self._streams_tg):
                if group is not None:
                    group.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                for f in self.flight:
                    await anyio.to_thread.run_sync(f.stop)
            await stack.aclose()
            for s in self.streams.values():
                s.close_logs()
            self._unlock_data_dir()
            raise
        self._stack = stack
        self.ready_seconds = time.perf_counter() - started
        log.info("ready seconds=%.2f endpoints=%s", self.ready_seconds, " ".join(self.endpoints))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _start(self, stack: AsyncExitStack) -> None:
        # access first: a service meant to be protected fails to start rather than start open
        token = resolve_token(self.config.auth)  # never logged
        for k, spec in enumerate(self.config.listen):
            if spec.tls is not None:
                check_tls(spec.tls, f"listen.{k}.tls")
        kernels = KernelThreads(self.threads or numba.config.NUMBA_NUM_THREADS)
        data_dir = self.config.data_dir
        if data_dir is not None:
            await anyio.to_thread.run_sync(self._lock_data_dir, data_dir)
        for name, cfg in self.config.streams.items():
            logs = None if data_dir is None else await anyio.to_thread.run_sync(open_logs, cfg, data_dir)
            self.streams[name] = Stream(cfg, kernels, logs)
        for s in self.streams.values():
            log.info(
                "warming stream=%s (kernels load from Numba's cache; the first start compiles them, about a minute)",
                s.name,
            )
            await anyio.to_thread.run_sync(self._warm, s)
        kernels.exclusive = _threading_layer() == "workqueue"
        tg = await stack.enter_async_context(anyio.create_task_group())
        self._tg = tg
        self._streams_tg = await stack.enter_async_context(anyio.create_task_group())
        for s in self.streams.values():
            self._streams_tg.start_soon(s.run, name=f"stream {s.name}")
        portal = None
        for k, spec in enumerate(self.config.listen):
            try:
                if spec.kind == "tcp":
                    stream = self.streams[spec.stream]
                    listener = TcpListener(spec, stream.batcher, stream.limits, stream.stats)
                    await tg.start(listener.serve)
                    self.tcp.append(listener)
                elif spec.kind == "http":
                    http = HttpListener(spec, self.streams, self.config.limits, token=token)
                    http.api.metrics = self.metrics
                    await tg.start(http.serve)
                    self.http.append(http)
                else:
                    if portal is None:
                        portal = await stack.enter_async_context(BlockingPortal())
                    flight = FlightListener(spec, self.topics, portal, token=token)
                    await anyio.to_thread.run_sync(flight.start)
                    self.flight.append(flight)
            except (OSError, pa.ArrowException) as exc:
                # gRPC says only "did not start"; the usual cause is a port already taken
                why = exc.strerror or str(exc) if isinstance(exc, OSError) else "the Flight server did not start"
                raise ListenError(
                    f"listen.{k}: cannot listen for {spec.kind} on {spec.host}:{spec.port}: {why} "
                    "(is the port already in use, or the host not an address of this machine?)"
                ) from None

    def _lock_data_dir(self, data_dir: str) -> None:
        """One process per data_dir: two writers would interleave the same segment files."""
        os.makedirs(data_dir, exist_ok=True)
        fd = os.open(os.path.join(data_dir, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogError(f"data_dir {data_dir} is in use by another Quiver process") from None
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _warm(self, stream: Stream) -> None:
        if self.threads is not None:
            numba.set_num_threads(self.threads)
        stream.parser.warm()
        warm_framing()  # the listeners' own kernels, so no first read compiles on the loop

    async def aclose(self) -> None:
        """Stop in the order that loses nothing (see the module docstring). Idempotent.

        Runs shielded from cancellation, and bounded: consumers that still hold the
        pipeline up after ``shutdown_timeout`` are dropped (every consumer LAGGARD_GRACE_S
        later), and replays still running ``shutdown_timeout`` after that are cut off, so
        shutdown always ends.
        """
        if self._closed or self._stack is None:
            return
        self._closed = True
        log.info("stopping")
        try:
            with anyio.CancelScope(shield=True):
                await self._drain()
        finally:
            await self._stack.aclose()  # uvicorn and the stream tasks have ended by now
            self._unlock_data_dir()  # the streams closed their logs as they ended
        totals = {name: s.stats.as_dict() for name, s in self.streams.items()}
        log.info("stopped stats=%s", totals)

    async def _drain(self) -> None:
        for t in self.tcp:
            t.stop()  # each connection reads what its producer already sent, then closes
        for s in self.streams.values():
            s.batcher.hurry()  # no more lingering: POSTs in progress get their answers
        reason = "the service stopped before this consumer caught up"
        if not await self._finish_within(self.shutdown_timeout):
            # first only the consumers that hold the streams up (full queues): the others
            # still get every batch and a clean end
            dropped = sum(t.drop_laggards(reason) for s in self.streams.values() for t in (s.batches, s.rejects))
            log.warning(
                "shutdown_timeout seconds=%s action=dropped consumers_behind=%d", self.shutdown_timeout, dropped
            )
            if not await self._finish_within(min(self.shutdown_timeout, LAGGARD_GRACE_S)):
                log.warning("shutdown_timeout action=dropping every consumer and unstored work")
                for s in self.streams.values():
                    s.close()
                    s.pipeline.abandon_storage()
                    s.batches.drop_all(reason)
                    s.rejects.drop_all(reason)
                await self._wait_streams()
        await self._wait_replays()
        for h in self.http:
            h.close()  # live GETs have ended with their topics
        for f in self.flight:
            await self._stop_flight(f)

    async def _wait_replays(self) -> None:
        """Let consumers still replaying the log read to its end (where the closed topic
        ends them cleanly), for at most shutdown_timeout: the listeners' own stops would
        cut them off within seconds."""
        topics = [t for s in self.streams.values() for t in (s.batches, s.rejects)]
        with anyio.move_on_after(self.shutdown_timeout) as waited:
            while any(t.replaying for t in topics):
                await anyio.sleep(0.05)
        if waited.cancelled_caught:
            log.warning("shutdown_timeout action=cutting off replays replaying=%d", sum(t.replaying for t in topics))

    async def _finish_within(self, seconds: float) -> bool:
        """Let producers finish, then the streams: parse what is left, deliver it, end the
        topics. False if that took longer than ``seconds`` (it may be called again)."""
        with anyio.move_on_after(seconds) as deadline:
            for h in self.http:
                await h.stop_accepting()
            await self._wait_tcp_drained()
            for s in self.streams.values():
                s.close()
            await self._wait_streams()
        return not deadline.cancelled_caught

    async def _stop_flight(self, f: FlightListener) -> None:
        """Stop a Flight listener, giving up after FLIGHT_STOP_S.

        Flight's stop waits for calls in progress, and a client that stopped reading never
        finishes its call: pyarrow offers no deadline. The stop runs on a daemon thread, so
        one left waiting does not hold the interpreter open at exit (a worker thread would:
        Python joins those), and ``stops_left_running`` tells `quiver serve` to end the
        process without waiting on it.
        """
        stopped = threading.Event()

        def stop() -> None:
            try:
                f.stop()
            finally:
                stopped.set()

        threading.Thread(target=stop, name="quiver-flight-stop", daemon=True).start()
        if not await anyio.to_thread.run_sync(stopped.wait, FLIGHT_STOP_S):
            self.stops_left_running += 1
            log.warning("flight_stop_abandoned url=%s reason=a client is not reading", f.url)

    async def _wait_tcp_drained(self) -> None:
        for t in self.tcp:
            await t.done.wait()

    async def _wait_streams(self) -> None:
        for s in self.streams.values():
            await s.pipeline.done.wait()


class ListenError(OSError):
    """A listener could not be started: the message names its ``listen.N`` entry."""


def _threading_layer() -> str:
    """Numba's threading layer, known once a parallel kernel has run (the warm-up's)."""
    try:
        return numba.threading_layer()
    except ValueError:  # none ran: assume the one layer that cannot launch concurrently
        return "workqueue"
