"""The shared asyncio front-end of the benchmark peers (bench/peers/plain.py, pyarrow_json.py).

This module owns everything a peer does *around* parsing, written the way a competent Python
developer would write an ingest service with asyncio, so that the peers differ only in how a
batch is parsed (their ``Ingest``):

* the config: ``engine.load_config``; its single stream's fields and rules compiled once into
  ``FieldRule``s (``compile_rules``); the Arrow schema is Quiver's (``engine.Parser(...).schema``);
* TCP producers (``asyncio.start_server``): 256 KiB reads split into lines, the partial tail
  kept for the next read; an unterminated last line at a clean EOF is a message;
* batching: a batch is cut at ``batch.max_messages`` or ``batch.linger_ms`` after its first
  message, whichever comes first; it is built off the event loop in one worker thread (so
  batches stay in order) and published in order;
* backpressure: at most ``MAX_INFLIGHT`` cut batches wait to be built and delivered; beyond
  that producers' sockets are not read. Each consumer has a bounded queue of
  ``consumer_queue`` batches and the publisher awaits room in it;
* HTTP (uvicorn in the same loop, raw ASGI): ``GET /v1/streams/{name}/arrow`` is a live Arrow
  IPC stream, ``GET /v1/streams`` the stats, ``GET /healthz``;
* SIGTERM/SIGINT: stop accepting, read what connected producers already sent, flush the
  partial batch, deliver everything, end every Arrow stream with its end-of-stream marker,
  exit 0.

Run a peer with ``python -m bench.peers.plain -c configs/bench/loadgen.yaml``; it prints one
ready line (``peer ready in 0.12s: tcp://... (stream, newline)  http://...``) and nothing else
on stdout (bench/loadgen.py reads the first line and never drains the pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import uvicorn

import engine
from engine.config import FLOAT_TYPES, INT_TYPES, Config, StreamConfig, parse_timestamp_type
from engine.server.http import IpcChunks

log = logging.getLogger("bench.peers")

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "bench" / "loadgen.yaml"
READ_BYTES = 256 << 10
MAX_INFLIGHT = 2  # cut batches not yet delivered before producers' sockets stop being read
DRAIN_QUIET_S = 0.25  # on shutdown, a producer silent this long has sent everything
DRAIN_MAX_S = 5.0  # and no producer delays shutdown longer than this
CONSUMERS_MAX_S = 60.0  # on shutdown, how long consumers get to take their last batches
ARROW_STREAM = b"application/vnd.apache.arrow.stream"

# --------------------------------------------------------------------------------------------
# rules

# error codes (Quiver's names, where the peers can tell the cases apart)
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
TOO_LARGE = "too_large"
MISSING_REQUIRED = "missing_required"
TYPE_MISMATCH = "type_mismatch"
OUT_OF_RANGE = "out_of_range"
TOO_LONG = "too_long"
TOO_SHORT = "too_short"
NOT_IN_ENUM = "not_in_enum"
UNKNOWN_FIELD = "unknown_field"

# field kinds
K_INT, K_FLOAT, K_STRING, K_ENUM, K_BOOL, K_TIMESTAMP = range(6)

_TICKS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_I64 = (-(1 << 63), (1 << 63) - 1)
_FLOAT32_MAX = 3.4028234663852886e38
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
NO_LIMIT = sys.maxsize  # no max_length


def _int_range(t: str) -> tuple[int, int]:
    bits = int(t.removeprefix("u").removeprefix("int"))
    return (0, (1 << bits) - 1) if t.startswith("u") else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def rfc3339_ticks(text: str, ticks_per_s: int) -> int:
    """Epoch ticks of an RFC 3339 date-time with an offset (sub-unit digits floored; digits
    beyond microseconds are dropped). Raises ValueError for anything else."""
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    d = t - _EPOCH
    return (d.days * 86400 + d.seconds) * ticks_per_s + d.microseconds * ticks_per_s // 1_000_000


@dataclass(frozen=True)
class FieldRule:
    """One declared field, compiled: its kind, Arrow type and rules, bounds folded with the
    type's own range (``lo``/``hi`` are lengths for strings, ticks for timestamps)."""

    name: str
    kind: int
    arrow_type: pa.DataType
    required: bool
    nullable: bool
    lo: int | float
    hi: int | float
    bounded: bool  # min/max (or min_length/max_length) tighter than the type itself
    values: tuple = ()  # enum values: strings for K_ENUM, integers for an int enum
    ticks_per_s: int = 1  # timestamps

    @property
    def null_code(self) -> str:
        return MISSING_REQUIRED if self.required else TYPE_MISMATCH


def compile_rules(stream: StreamConfig) -> list[FieldRule]:
    """The stream's fields as FieldRules; refuses types the peers do not implement."""
    rules = []
    for name, spec in stream.fields.items():
        t = spec.type
        arrow_type = pa.dictionary(pa.int32(), pa.string()) if spec.enum and t in ("string", "enum") else None
        common = {"name": name, "required": spec.required, "nullable": spec.is_nullable}
        if t in INT_TYPES:
            lo, hi = _int_range(t)
            rule = FieldRule(
                kind=K_INT,
                arrow_type=pa.from_numpy_dtype(t),
                lo=lo if spec.min is None else max(lo, spec.min),
                hi=hi if spec.max is None else min(hi, spec.max),
                bounded=spec.min is not None or spec.max is not None,
                values=tuple(spec.enum or ()),
                **common,
            )
        elif t in FLOAT_TYPES:
            top = _FLOAT32_MAX if t == "float32" else float("inf")
            rule = FieldRule(
                kind=K_FLOAT,
                arrow_type=pa.float32() if t == "float32" else pa.float64(),
                lo=-top if spec.min is None else max(-top, float(spec.min)),
                hi=top if spec.max is None else min(top, float(spec.max)),
                bounded=spec.min is not None or spec.max is not None or t == "float32",
                **common,
            )
        elif t in ("string", "enum"):
            rule = FieldRule(
                kind=K_ENUM if arrow_type is not None else K_STRING,
                arrow_type=arrow_type or pa.string(),
                lo=spec.min_length or 0,
                hi=NO_LIMIT if spec.max_length is None else spec.max_length,
                bounded=bool(spec.min_length) or spec.max_length is not None,
                values=tuple(spec.enum or ()),
                **common,
            )
        elif t == "bool":
            rule = FieldRule(kind=K_BOOL, arrow_type=pa.bool_(), lo=0, hi=0, bounded=False, **common)
        elif parse_timestamp_type(t):
            unit, tz = parse_timestamp_type(t)
            ticks = _TICKS[unit]
            bound = [rfc3339_ticks(b, ticks) if isinstance(b, str) else b for b in (spec.min, spec.max)]
            rule = FieldRule(
                kind=K_TIMESTAMP,
                arrow_type=pa.timestamp(unit, tz=tz),
                lo=_I64[0] if bound[0] is None else bound[0],
                hi=_I64[1] if bound[1] is None else bound[1],
                bounded=spec.min is not None or spec.max is not None,
                ticks_per_s=ticks,
                **common,
            )
        else:
            raise SystemExit(f"peer: field {name!r}: type {t} is not implemented by the benchmark peers")
        rules.append(rule)
    return rules


# --------------------------------------------------------------------------------------------
# what a peer plugs in


@dataclass
class Built:
    """One cut batch, parsed: the accepted rows and what happened to the others."""

    batch: pa.RecordBatch | None
    received: int  # messages (blank lines are not messages)
    rejected: int
    blank: int = 0
    errors: Counter = field(default_factory=Counter)


class Ingest(ABC):
    """A peer's parsing: ``add`` takes complete lines (in the event loop), ``take`` cuts the
    current batch and returns the function that builds it (run in the worker thread)."""

    def __init__(self, stream: StreamConfig) -> None:
        self.stream = stream
        self.rules = compile_rules(stream)
        self.schema: pa.Schema = engine.Parser(stream).schema  # exactly Quiver's
        self.max_message_bytes = int(stream.limits.max_message_bytes)
        self.dictionaries = {r.name: pa.array(r.values, pa.string()) for r in self.rules if r.kind == K_ENUM}

    @abstractmethod
    def add(self, lines: list[bytes]) -> None:
        """Take complete lines (without their newline) into the current batch."""

    @abstractmethod
    def take(self) -> Callable[[], Built]:
        """Cut the current batch (start a new one) and return its builder."""

    def empty_batch(self) -> pa.RecordBatch:
        """A batch of no rows (the first one a consumer gets: it sends the schema at once)."""
        return pa.RecordBatch.from_arrays(
            [
                pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), self.dictionaries[f.name])
                if f.name in self.dictionaries
                else pa.array([], f.type)
                for f in self.schema
            ],
            schema=self.schema,
        )


# --------------------------------------------------------------------------------------------
# the service


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    blank: int = 0
    bytes: int = 0
    batches: int = 0
    discarded_partials: int = 0  # partial last lines of connections cut at shutdown
    errors: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "blank": self.blank,
            "bytes": self.bytes,
            "batches": self.batches,
            "discarded_partials": self.discarded_partials,
            "errors": dict(self.errors),
        }


class _Consumer:
    """One live Arrow stream: a bounded queue of batches (None ends it)."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[pa.RecordBatch | None] = asyncio.Queue(capacity)
        self.closed = False

    def close(self) -> None:
        """The client went away: drop what is queued, so a publisher waiting for room wakes."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()


@dataclass(eq=False)
class _Connection:
    task: asyncio.Task
    timeout: asyncio.Timeout | None = None  # set while waiting for bytes: shutdown shortens it


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the peer owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def _respond(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class PeerServer:
    """One stream served over TCP (producers) and HTTP (consumers, stats)."""

    def __init__(self, config: Config, make_ingest: Callable[[StreamConfig], Ingest]) -> None:
        tcp = next((spec for spec in config.listen if spec.kind == "tcp"), None)
        http = next((spec for spec in config.listen if spec.kind == "http"), None)
        name = tcp.stream if tcp is not None and tcp.stream else next(iter(config.streams))
        self.stream = config.streams[name]
        self.tcp_host, self.tcp_port = (tcp.host, tcp.port) if tcp else ("127.0.0.1", 0)
        self.http_host, self.http_port = (http.host, http.port) if http else ("127.0.0.1", 0)
        self.ingest = make_ingest(self.stream)
        self.schema = self.ingest.schema
        self.stats = Stats()
        self._max_messages = self.stream.batch.max_messages
        self._linger_s = self.stream.batch.linger_ms / 1000
        self._max_line = int(self.stream.limits.max_message_bytes)
        self._idle_s = self.stream.limits.idle_timeout_s
        self._pending = 0  # messages in the batch being filled
        self._timer: asyncio.TimerHandle | None = None
        self._jobs: asyncio.Queue[tuple[int, asyncio.Future[Built]] | None] = asyncio.Queue()
        self._inflight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="peer-build")  # one: batches in order
        self._connections: set[_Connection] = set()
        self._consumers: set[_Consumer] = set()
        self._streams: set[asyncio.Task] = set()  # live Arrow GETs
        self._stopping = False
        self._drain_until = 0.0
        self._ended = False  # the publisher has ended every consumer's stream

    # ---------------------------------------------------------------- producers and batching

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(asyncio.current_task())
        self._connections.add(conn)
        loop = asyncio.get_running_loop()
        tail = b""
        skipping = False  # inside a line longer than max_message_bytes: drop up to its newline
        feed, max_line, room = self._feed, self._max_line, self._room
        try:
            while True:
                if not room.is_set():  # backpressure: batches wait for consumers
                    await room.wait()
                try:
                    async with asyncio.timeout_at(self._read_deadline(loop)) as conn.timeout:
                        data = await reader.read(READ_BYTES)
                except TimeoutError:
                    break  # shutdown drained it, or idle too long
                finally:
                    conn.timeout = None
                if not data:  # clean EOF: an unterminated last line is a message
                    if tail and not skipping:
                        feed([tail])
                    tail = b""
                    break
                self.stats.bytes += len(data)
                if skipping:
                    cut = data.find(b"\n")
                    if cut < 0:
                        continue
                    data, skipping = data[cut + 1 :], False
                if tail:
                    data = tail + data
                lines = data.split(b"\n")
                tail = lines.pop()
                if len(tail) > max_line:  # a line that cannot fit: rejected, not buffered
                    self._reject_unframed()
                    tail, skipping = b"", True
                if lines:
                    feed(lines)
        except (ConnectionError, OSError) as exc:
            log.info("connection broken: %r", exc)
        finally:
            self._connections.discard(conn)
            if tail:
                self.stats.discarded_partials += 1
            writer.close()  # the producer waits for this close
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _read_deadline(self, loop: asyncio.AbstractEventLoop) -> float:
        now = loop.time()
        if self._stopping:
            return min(now + DRAIN_QUIET_S, self._drain_until)
        return now + self._idle_s

    def _reject_unframed(self) -> None:
        self.stats.received += 1
        self.stats.rejected += 1
        self.stats.errors[TOO_LARGE] += 1

    def _feed(self, lines: list[bytes]) -> None:
        """Complete lines into the current batch, cutting it at max_messages."""
        room = self._max_messages - self._pending
        while len(lines) > room:  # only with small max_messages: a read holds ~1000 lines
            self._add(lines[:room])
            lines = lines[room:]
            room = self._max_messages
        if lines:
            self._add(lines)

    def _add(self, lines: list[bytes]) -> None:
        if self._pending == 0:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._cut)
        self._pending += len(lines)
        self.ingest.add(lines)
        if self._pending >= self._max_messages:
            self._cut()

    def _cut(self) -> None:
        """Close the current batch: build it in the worker thread, queue it for publishing."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending == 0:
            return
        count, self._pending = self._pending, 0
        build = self.ingest.take()
        future = asyncio.get_running_loop().run_in_executor(self._executor, build)
        self._jobs.put_nowait((count, future))
        self._inflight += 1
        if self._inflight >= MAX_INFLIGHT:
            self._room.clear()

    async def _publisher(self) -> None:
        """Delivers built batches in order to every consumer; ends their streams at None."""
        stats = self.stats
        while (job := await self._jobs.get()) is not None:
            count, future = job
            try:
                built = await future
            except Exception:  # a bug in a peer must not stall the service: count and go on
                log.exception("batch build failed")
                built = Built(None, count, count, errors=Counter(internal_error=count))
            stats.received += built.received
            stats.rejected += built.rejected
            stats.blank += built.blank
            stats.errors.update(built.errors)
            batch = built.batch
            if batch is not None and batch.num_rows:
                stats.accepted += batch.num_rows
                stats.batches += 1
                for consumer in list(self._consumers):
                    if not consumer.closed:
                        await consumer.queue.put(batch)
            self._inflight -= 1
            if self._inflight < MAX_INFLIGHT:
                self._room.set()
        self._ended = True
        for consumer in list(self._consumers):
            if not consumer.closed:
                await consumer.queue.put(None)

    # ---------------------------------------------------------------- HTTP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        name = self.stream.name
        if method != "GET":
            return await _respond(send, 405, {"error": "use GET"})
        if path == "/healthz":
            return await _respond(send, 200, {"status": "stopping" if self._stopping else "ok"})
        if path == "/v1/streams":
            schema = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.schema]
            streams = [
                {"name": name, "schema": schema, "consumers": len(self._consumers), "stats": self.stats.as_dict()}
            ]
            return await _respond(send, 200, {"streams": streams})
        if path == f"/v1/streams/{name}/arrow":
            if self._ended:
                return await _respond(send, 503, {"error": "shutting down"})
            return await self._stream_arrow(receive, send)
        return await _respond(send, 404, {"error": f"no such path: {path}"})

    async def _stream_arrow(self, receive: Receive, send: Send) -> None:
        consumer = _Consumer(self.stream.consumer_queue)
        self._consumers.add(consumer)  # subscribed before the headers go out
        pump = asyncio.ensure_future(self._pump(consumer, send))
        watch = asyncio.ensure_future(self._until_disconnect(receive))
        self._streams.add(pump)
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not pump.done():  # the client went away
                pump.cancel()
            self._consumers.discard(consumer)
            consumer.close()
            self._streams.discard(pump)
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, consumer: _Consumer, send: Send) -> None:
        sink = IpcChunks()  # Quiver's own, so both pay the same per batch
        writer = sink.new_stream(self.schema)
        writer.write_batch(self.ingest.empty_batch())  # the schema goes out at once
        headers = [(b"content-type", ARROW_STREAM), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await sink.send(send)
        queue = consumer.queue
        while (batch := await queue.get()) is not None:
            writer.write_batch(batch)
            await sink.send(send)
        writer.close()  # end-of-stream marker
        await sink.send(send, more_body=False)

    @staticmethod
    async def _until_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    # ---------------------------------------------------------------- running

    async def run(self, started: float) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tcp = await asyncio.start_server(self._handle_tcp, self.tcp_host, self.tcp_port, limit=READ_BYTES)
        tcp_port = tcp.sockets[0].getsockname()[1]
        sock = socket.socket(socket.AF_INET6 if ":" in self.http_host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.http_host, self.http_port))
        sock.listen(1024)
        sock.setblocking(False)
        http_port = sock.getsockname()[1]
        http = _EmbeddedServer(
            uvicorn.Config(
                self,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=5,
            )
        )
        http_task = asyncio.ensure_future(http.serve(sockets=[sock]))
        publisher = asyncio.ensure_future(self._publisher())
        while not http.started and not http_task.done():
            await asyncio.sleep(0.005)
        print(
            f"peer ready in {time.perf_counter() - started:.2f}s: "
            f"tcp://{self.tcp_host}:{tcp_port} ({self.stream.name}, newline)  "
            f"http://{self.http_host}:{http_port}",
            flush=True,
        )
        await stop.wait()
        # stop accepting; let each producer hand over what it already sent
        tcp.close()
        self._stopping = True
        self._drain_until = loop.time() + DRAIN_MAX_S
        for conn in list(self._connections):
            if conn.timeout is not None:
                conn.timeout.reschedule(min(conn.timeout.when() or float("inf"), self._read_deadline(loop)))
        while self._connections:
            await asyncio.wait({c.task for c in self._connections})
        # flush the partial batch, deliver everything, end the streams
        self._cut()
        self._jobs.put_nowait(None)
        await publisher
        if self._streams:
            await asyncio.wait(set(self._streams), timeout=CONSUMERS_MAX_S)
        http.should_exit = True
        await http_task
        self._executor.shutdown()
        return 0


def main(make_ingest: Callable[[StreamConfig], Ingest], argv: Sequence[str] | None = None, prog: str = "") -> int:
    """The command line of a peer: ``python -m bench.peers.<peer> [-c CONFIG]``."""
    started = time.perf_counter()
    ap = argparse.ArgumentParser(prog=prog or None, description="A benchmark peer of Quiver (see bench/peers).")
    ap.add_argument("-c", "--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    config = engine.load_config(args.config)

    async def serve() -> int:
        return await PeerServer(config, make_ingest).run(started)

    return asyncio.run(serve())
