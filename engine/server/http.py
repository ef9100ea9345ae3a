"""The HTTP API: producers POST NDJSON, consumers GET live Arrow IPC streams.

HTTP/1.1 is uvicorn's (h11 or httptools), served inside Quiver's own event loop; this
module is the ASGI application plus the glue that starts and stops uvicorn there.

    POST /v1/streams/{name}                NDJSON body (gzip accepted) -> JSON receipt
    GET  /v1/streams                       streams, their Arrow schemas and counts
    GET  /v1/streams/{name}/arrow          live Arrow IPC stream of accepted batches
    GET  /v1/streams/{name}/rejects/arrow  live Arrow IPC stream of dead letters
         ?from=latest (default) | earliest | SEQ: start there (retained batches from the
         segment log, then live); each batch carries IPC custom metadata ``quiver.seq``
    GET  /healthz
    GET  /metrics                          Prometheus text format (engine/metrics.py)

A POST answers only after every message of its body is parsed and handed to the outputs.
It is refused with 503 (and ``Retry-After``) only before any of its body was taken; a
body over ``limits.max_body_bytes`` (after inflation) gets 413 with the counts of what was
taken before the limit.

With a top-level ``auth`` every route but ``/healthz`` needs ``Authorization: Bearer
<token>``; without it the answer is 401 (``WWW-Authenticate: Bearer``), given before any
of a POST's body is read. With ``tls`` on the listener it serves HTTPS.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import ssl
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import pyarrow as pa
import uvicorn
from anyio.abc import TaskStatus

from engine.batcher import Receipt, StreamClosed
from engine.config import Limits, ListenSpec
from engine.framer import CHUNK_BYTES, PartialBudget
from engine.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from engine.outputs.hub import ConsumerDropped, Start, Subscription, Topic
from engine.outputs.segments import SEQ_KEY, SeqOutOfRange
from engine.server.access import bearer_matches
from engine.server.http_protocol import ABORT, BODY_ERROR, CLOSE_DELIMITED, CUT, BoundedHttpToolsProtocol
from engine.stream import Stream

log = logging.getLogger("quiver.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ARROW_STREAM = b"application/vnd.apache.arrow.stream"
#: How long a dropped consumer may take to read what was queued for it before its
#: connection is aborted (one that does not read at all would hold those batches for good).
DROPPED_GRACE_S = 5.0
#: Ends a close-delimited stream (HTTP/1.0) whose consumer was dropped: an IPC message
#: prefix with a negative length, which readers fail on. A close alone would read as a
#: clean end, since an Arrow stream reader takes EOF between messages as the end.
_NOT_AN_END = b"\xff\xff\xff\xff\xff\xff\xff\xff"
_CHALLENGE = ((b"www-authenticate", b"Bearer"),)  # with 401 (its body unread: see _refuse)
_GET_ONLY = ((b"allow", b"GET, HEAD"),)


def _schema_json(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


async def _respond(send: Send, status: int, body: dict, headers: tuple = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _refuse(send: Send, status: int, body: dict, headers: tuple = ()) -> None:
    """Answer a request whose body is left unread, and close its connection: kept alive,
    the server would read (and drop) all of that body, however large, before the next."""
    await _respond(send, status, body, (*headers, (b"connection", b"close")))


async def _send_metrics(send: Send, data: bytes) -> None:
    headers = [(b"content-type", METRICS_CONTENT_TYPE.encode()), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class IpcChunks:
    """A write-only file for the IPC writer: collects what it writes, then sends it as
    HTTP body pieces of at most ``PIECE_BYTES``.

    What is written is kept as it is until sent (``bytes`` from the C++ buffer below, or
    ``pa.Buffer`` views of a batch's memory from a writer straight onto this sink). Pieces
    stay small because each is copied twice on its way out (here, and by uvicorn's
    chunked framing) into a fresh ``bytes``: a piece the size of a whole full-speed batch
    (several MB) is a fresh mmap for glibc, whose pages are faulted in and unmapped again
    on every batch, while a small piece reuses heap memory. At full speed, pieces halved
    the server's page faults (70 to 36 per 1000 messages).

    Write through ``new_stream``: its writer makes a dozen small writes per column (header,
    body, padding), and each write straight into this Python object takes the GIL back,
    which the parsing thread may hold. A C++ buffer in between gathers them into one write
    per piece: a 1,100-row clickstream batch went from 24 calls and 42 us to 1 call and
    10 us. (It copies large column bodies once more; at full speed that did not show.)
    """

    closed = False
    PIECE_BYTES = 192 << 10  # under the mmap threshold ``quiver serve`` fixes (256 KiB)

    def __init__(self) -> None:
        self._parts: list[Any] = []
        self._buffered: pa.NativeFile | None = None

    def new_stream(self, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
        """An IPC stream writer into this sink, buffered in pieces of PIECE_BYTES."""
        self._buffered = pa.output_stream(self, buffer_size=self.PIECE_BYTES)
        return pa.ipc.new_stream(self._buffered, schema)

    def write(self, data: Any) -> int:
        self._parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def pieces(self) -> list[bytes]:
        """What was written since the last call, cut into pieces of at most PIECE_BYTES."""
        if self._buffered is not None:
            self._buffered.flush()
        limit = self.PIECE_BYTES
        pieces: list[bytes] = []
        run: list[memoryview] = []
        size = 0
        for part in self._parts:
            view = memoryview(part)
            while view.nbytes:
                n = min(view.nbytes, limit - size)
                run.append(view[:n])
                view = view[n:]
                size += n
                if size == limit:
                    pieces.append(b"".join(run))
                    run.clear()
                    size = 0
        if run:
            pieces.append(b"".join(run))
        self._parts.clear()
        return pieces

    async def send(self, send: Send, *, more_body: bool = True) -> None:
        """Send what was written as response body pieces (the last says ``more_body``)."""
        pieces = self.pieces()
        last = pieces.pop() if pieces else b""
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": last, "more_body": more_body})


class _GzipBody:
    """Inflates a gzip body in bounded pieces; several members in a row are one body
    (RFC 1952), anything else after a member is an error."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(wbits=31)
        self._fed = False

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._z.eof:  # the next member begins
                self._z = zlib.decompressobj(wbits=31)
            self._fed = True
            out = self._z.decompress(data, CHUNK_BYTES)
            data = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            if out:
                yield out

    @property
    def complete(self) -> bool:
        return self._z.eof or not self._fed


class HttpApi:
    """The ASGI application over the engine's streams."""

    def __init__(self, streams: Mapping[str, Stream], token: bytes | None = None) -> None:
        self.streams = streams
        self.token = token  # None: open; else every route but /healthz needs it
        self.stopping = False
        self.limit_hits: Counter[str] = Counter()  # limit name -> requests (or connections) it ended
        self.metrics: Callable[[], bytes] | None = None  # Prometheus text for GET /metrics
        self.partials: PartialBudget | None = None  # unfinished lines across all POSTs
        self._posts = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        parts = path.strip("/").split("/")
        readonly = method in ("GET", "HEAD")  # (uvicorn leaves a HEAD answer's body out)
        refuse = _respond if readonly else _refuse  # (a body may follow)
        codings = _codings(scope, b"transfer-encoding")
        if codings and codings != [b"chunked"]:
            # httptools reads the body by its last coding, chunked, and hands on what the
            # others encoded as it is (RFC 9112 6.1: a coding not understood is 501)
            coding = b", ".join(codings).decode(errors="replace")
            return await _refuse(send, 501, {"error": f"unsupported Transfer-Encoding {coding!r}"})
        expect = _codings(scope, b"expect")
        if expect and expect != [b"100-continue"]:  # RFC 9110 10.1.1: one not met is 417
            return await _refuse(send, 417, {"error": "Expect: only 100-continue is supported"})
        if path == "/healthz":
            if not readonly:
                return await refuse(send, 405, {"error": "use GET"}, _GET_ONLY)
            return await _respond(send, 200, {"status": "stopping" if self.stopping else "ok"})
        if self.token is not None and not self._authorized(scope):
            # answered before any of a POST's body is read: nothing of it is ingested
            return await _refuse(send, 401, {"error": "missing or invalid bearer token"}, _CHALLENGE)
        if path == "/metrics" and self.metrics is not None:
            if not readonly:
                return await refuse(send, 405, {"error": "use GET"}, _GET_ONLY)
            return await _send_metrics(send, self.metrics())
        if parts[:2] != ["v1", "streams"]:
            return await refuse(send, 404, {"error": f"no such path: {path}"})
        if len(parts) == 2:
            if not readonly:
                return await refuse(send, 405, {"error": "use GET"}, _GET_ONLY)
            return await _respond(send, 200, {"streams": [self._describe(s) for s in self.streams.values()]})
        stream = self.streams.get(parts[2])
        if stream is None:
            return await refuse(send, 404, {"error": f"no such stream: {parts[2]!r}", "streams": list(self.streams)})
        tail = parts[3:]
        if not tail:
            if method != "POST":
                return await refuse(send, 405, {"error": "use POST"}, ((b"allow", b"POST"),))
            return await self._post(scope, receive, send, stream)
        if tail in (["arrow"], ["rejects", "arrow"]):
            if method != "GET":  # HEAD too: the answer is an endless stream
                return await refuse(send, 405, {"error": "use GET"}, ((b"allow", b"GET"),))
            topic = stream.batches if tail == ["arrow"] else stream.rejects
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            start = _parse_start(query.get("from", ["latest"])[-1])
            if start is None:
                return await _respond(send, 400, {"error": "from: expected earliest, latest or a sequence number"})
            return await self._stream_arrow(scope, receive, send, topic, start)
        return await refuse(send, 404, {"error": f"no such path: {path}"})

    def _authorized(self, scope: Scope) -> bool:
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        ok = len(values) == 1 and bearer_matches(values[0], self.token)
        if not ok:
            client = scope.get("client") or ("?", 0)
            log.info(
                "unauthorized transport=http peer=%s:%s path=%s reason=%s",
                client[0],
                client[1],
                scope["path"],
                "no token" if not values else "wrong token",
            )
        return ok

    def _hit(self, limit: str, scope: Scope) -> None:
        self.limit_hits[limit] += 1
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "?"
        log.warning("limit_hit listener=http peer=%s limit=%s path=%s", peer, limit, scope.get("path"))

    def _describe(self, stream: Stream) -> dict:
        base = f"/v1/streams/{stream.name}"
        d = stream.config.durability
        return {
            "name": stream.name,
            "schema": _schema_json(stream.parser.schema),
            "rejects_schema": _schema_json(stream.parser.rejects_schema),
            "post": base,
            "arrow": f"{base}/arrow",
            "rejects_arrow": f"{base}/rejects/arrow",
            "consumers": {"arrow": stream.batches.consumers, "rejects_arrow": stream.rejects.consumers},
            # the seq range a consumer can start at (first == next: nothing retained)
            "seq": {t: {"first": topic.first_seq, "next": topic.next_seq} for t, topic in _topics(stream)},
            "durability": None if stream.batches.log is None else (d if isinstance(d, str) else d.model_dump()),
            "stats": stream.stats.as_dict(),
        }

    async def _post(self, scope: Scope, receive: Receive, send: Send, stream: Stream) -> None:
        headers = dict(scope["headers"])
        limit = int(stream.limits.max_body_bytes)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._hit("max_body_bytes", scope)
            return await _refuse(send, 413, {"error": f"body of {int(length)} bytes exceeds max_body_bytes ({limit})"})
        codings = _codings(scope, b"content-encoding")  # every header: a list, applied in order
        encoding = codings[0] if len(codings) == 1 else b"identity" if not codings else b", ".join(codings)
        if encoding not in (b"identity", b"gzip", b"x-gzip"):
            return await _refuse(
                send, 415, {"error": f"unsupported Content-Encoding {encoding.decode(errors='replace')!r}"}
            )
        if self.stopping or stream.batcher.saturated:
            reason = "shutting down" if self.stopping else "stream is saturated"
            return await _refuse(send, 503, {"error": reason}, ((b"retry-after", b"1"),))
        self._posts += 1
        self._idle = anyio.Event() if self._posts == 1 else self._idle
        try:
            await self._take_body(scope, receive, send, stream, limit, encoding != b"identity")
        finally:
            self._posts -= 1
            if self._posts == 0:
                self._idle.set()

    async def _take_body(
        self, scope: Scope, receive: Receive, send: Send, stream: Stream, limit: int, gzipped: bool
    ) -> None:
        receipt = Receipt()
        framer = stream.framer("newline", receipt)
        inflater = _GzipBody() if gzipped else None
        taken = 0  # body bytes, after inflation
        held = 0  # the partial last line, as the listener's budget counts it
        failure: tuple[int, str] | None = None
        try:
            while failure is None:
                with anyio.move_on_after(stream.limits.message_timeout_s) as waited:
                    message = await receive()
                if waited.cancelled_caught:  # a body that stops (a trickle: http_protocol.py)
                    self._hit("message_timeout", scope)
                    failure = (408, f"body stalled for message_timeout_s ({stream.limits.message_timeout_s} s)")
                    break
                if message["type"] == "http.disconnect":
                    failure = (499, "client went away")
                    break
                body = message.get("body", b"")
                try:
                    for data in inflater.pieces(body) if inflater else (body,):
                        taken += len(data)
                        if taken > limit:
                            self._hit("max_body_bytes", scope)
                            failure = (413, f"body exceeds max_body_bytes ({limit}) after {taken - len(data)} bytes")
                            break
                        framer.feed(data)
                        await framer.sink.drain()
                        if self.partials is not None:
                            within = self.partials.update(held, framer.pending_bytes)
                            held = framer.pending_bytes
                            if not within:
                                self._hit("max_partial_bytes", scope)
                                failure = (503, "the server holds too many unfinished messages; retry")
                                break
                except zlib.error as exc:
                    failure = (400, f"bad gzip body: {exc}")
                if not message.get("more_body", False):
                    break
            broken = scope.get("extensions", {}).get(BODY_ERROR)
            if failure is None and broken is not None:  # what came before the fault is taken
                failure = broken
            if failure is None and inflater is not None and not inflater.complete:
                failure = (400, "gzip body ended early")
            if failure is None:
                framer.finish()
                await framer.sink.drain()
        except StreamClosed:
            failure = (503, "shutting down")
            framer.sink.clear()
        if self.partials is not None:
            self.partials.update(held, 0)
        if framer.discard():  # a partial last line of a failed body is not a message
            stream.stats.discarded_partials += 1
        receipt.close()
        await receipt.wait()
        if failure is None and receipt.not_stored:
            failure = (503, f"storage failed: {receipt.not_stored} messages reached consumers but not the segment log")
        if failure is None:
            return await _respond(send, 200, receipt.as_dict())
        if failure[0] != 499:
            # what was taken before the failure is still counted and delivered: say so
            # the rest of a failed body is never read: the connection cannot be reused
            close = ((b"connection", b"close"),)
            await _respond(send, failure[0], {"error": failure[1], **receipt.as_dict()}, close)

    async def _stream_arrow(self, scope: Scope, receive: Receive, send: Send, topic: Topic, start: Start) -> None:
        try:
            sub = topic.subscribe(start)
        except SeqOutOfRange as exc:
            body = {"error": str(exc), "first_seq": exc.first, "next_seq": exc.next}
            return await _respond(send, 416, body)
        extensions = scope.get("extensions", {})
        # HTTP/1.0 has no chunked coding: the body ends where the connection does
        close_delimited = scope.get("http_version") == "1.0" and CLOSE_DELIMITED in extensions
        cut = extensions.get(CUT)
        sent = [0]  # body pieces sent so far: whether a dropped consumer still reads

        async def counted(message: dict) -> None:
            await send(message)  # returns once uvicorn's buffer for the client has room
            sent[0] += 1

        try:
            sink = IpcChunks()
            writer = sink.new_stream(topic.schema)
            # an empty first batch makes the writer emit the schema (and dictionaries) now,
            # so readers open at once instead of waiting for the first real batch
            writer.write_batch(pa.RecordBatch.from_pylist([], schema=topic.schema))
            if close_delimited:
                extensions[CLOSE_DELIMITED]()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", ARROW_STREAM),
                        (b"cache-control", b"no-store"),
                        (b"quiver-start-seq", str(sub.start).encode()),
                    ],
                }
            )
            await sink.send(counted)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_disconnect, receive, tg.cancel_scope)
                abort = extensions.get(ABORT)
                if abort is not None:
                    tg.start_soon(self._abort_if_dropped, sub, abort, topic.name, lambda: sent[0])
                try:
                    async for batch in sub:
                        writer.write_batch(batch, custom_metadata={SEQ_KEY: batch.schema.metadata[SEQ_KEY]})
                        await sink.send(counted)
                    writer.close()  # end-of-stream marker: the reader ends cleanly
                except ConsumerDropped as exc:
                    log.warning("consumer_dropped transport=http topic=%s reason=%r", topic.name, str(exc))
                    if cut is not None:
                        # what was queued for it is sent, but no end: an end (the IPC end
                        # marker, the last chunk) would tell the reader it had everything
                        if close_delimited:
                            await send({"type": "http.response.body", "body": _NOT_AN_END, "more_body": True})
                        cut()
                        await anyio.sleep_forever()  # until the disconnect cancels the group
                if close_delimited and cut is not None:
                    await sink.send(counted)  # the end marker; then the close ends the body
                    cut()
                    await anyio.sleep_forever()  # until the disconnect cancels the group
                await sink.send(counted, more_body=False)
                tg.cancel_scope.cancel()
        finally:
            sub.close()

    @staticmethod
    async def _abort_if_dropped(
        sub: Subscription, abort: Callable[[], None], topic: str, sent: Callable[[], int]
    ) -> None:
        """A dropped consumer that reads gets what was queued for it, then its response is
        cut short (so it fails rather than ends); one that does not is stuck in a write,
        holding those batches and a full socket buffer for as long as it stays connected:
        abort it once a whole ``DROPPED_GRACE_S`` passes in which it took nothing (this
        task ends with the stream otherwise)."""
        await sub.wait_dropped()
        while True:
            before = sent()
            await anyio.sleep(DROPPED_GRACE_S)
            if sent() == before:
                break
        log.warning("consumer_aborted transport=http topic=%s reason=dropped and not reading", topic)
        abort()

    @staticmethod
    async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async def wait_idle(self) -> None:
        """Until no POST is in progress."""
        await self._idle.wait()


def _codings(scope: Scope, header: bytes) -> list[bytes]:
    """The codings a list-valued header names, over all its fields, lower-cased."""
    return [
        c.strip().lower() for name, value in scope["headers"] if name == header for c in value.split(b",") if c.strip()
    ]


def _parse_start(text: str) -> Start | None:
    if text in ("earliest", "latest"):
        return text  # type: ignore[return-value]
    # ASCII digits only: str.isdigit and int() also take other scripts' digits ("٣" is 3)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None


def _topics(stream: Stream) -> tuple[tuple[str, Topic], ...]:
    return (("arrow", stream.batches), ("rejects_arrow", stream.rejects))


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: Quiver's CLI owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class HttpListener:
    """Runs uvicorn on an already bound socket (so port 0 works) inside the current loop."""

    def __init__(
        self, spec: ListenSpec, streams: Mapping[str, Stream], limits: Limits, *, token: bytes | None = None
    ) -> None:
        self.spec = spec
        self.limits = limits
        self.api = HttpApi(streams, token)
        self.limit_hits = self.api.limit_hits  # limit name -> requests it ended
        self.api.partials = PartialBudget(int(limits.max_partial_bytes))
        self.port = spec.port
        self._server: _EmbeddedServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.spec.tls else 'http'}://{self.spec.host}:{self.port}"

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        family = socket.AF_INET6 if ":" in self.spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.spec.host, self.spec.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.api,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            # beyond it: 503, not a queue (uvicorn counts the connection asking among its
            # connections, so its limit N serves N - 1)
            limit_concurrency=self.limits.max_connections + 1,
            http=functools.partial(
                BoundedHttpToolsProtocol,
                max_header_bytes=int(self.limits.max_header_bytes),
                message_timeout_s=self.limits.message_timeout_s,
                hits=self.limit_hits,
            ),
            timeout_graceful_shutdown=5,  # only after Quiver drained: see Engine.aclose
            ssl_certfile=self.spec.tls.cert if self.spec.tls else None,
            ssl_keyfile=self.spec.tls.key if self.spec.tls else None,
        )
        config.load()  # builds the TLS context, so it can be held to TCP's and Flight's floor
        if config.ssl is not None:
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server = _EmbeddedServer(config)
        task_status.started(self.port)
        await self._server.serve(sockets=[sock])

    async def stop_accepting(self) -> None:
        """Refuse new POSTs (503) and wait for those in progress to be answered."""
        self.api.stopping = True
        await self.api.wait_idle()

    def close(self) -> None:
        """Stop uvicorn: call once the topics have ended, so live GETs got everything."""
        if self._server is not None:
            self._server.should_exit = True
