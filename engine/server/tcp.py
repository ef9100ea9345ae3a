"""TCP producers: one listener per ``listen`` entry of kind ``tcp``, bound to one stream.

Each connection reads large chunks and hands them to a framer (newline or length-prefixed),
which moves whole messages into the stream's current arena. While the stream has no free
arena the connection simply stops reading, so the kernel's socket buffers fill and TCP
pushes back on the producer. A broken connection loses only its own partial message
(counted); connections beyond ``max_connections`` are refused at once, one silent for
``idle_timeout_s`` is closed, and so is one whose message has not ended ``message_timeout_s``
after it began (a slowloris trickle). Each limit hit is counted in ``limit_hits`` and
logged once, as it closes its connection.

With ``tls: {cert, key}`` the listener speaks TLS (``tls://``): the handshake must end
within ``message_timeout_s``, and a client that fails it (plain text, say) is closed having
sent nothing to the stream. Raw TCP has no place for the bearer token of ``auth``: a TCP
listener is protected by the address it binds (127.0.0.1 unless configured otherwise) and
by TLS.
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskStatus
from anyio.streams.tls import TLSStream

from engine.batcher import Batcher, StreamClosed
from engine.config import Limits, ListenSpec
from engine.framer import FrameFramer, LineFramer, PartialBudget
from engine.pipeline import StreamStats
from engine.server.access import server_context

log = logging.getLogger("quiver.tcp")

READ_BYTES = 256 << 10
DRAIN_QUIET_S = 0.25  # on shutdown, a producer silent this long has sent everything
DRAIN_MAX_S = 5.0  # and no producer delays shutdown longer than this


@dataclass(eq=False)
class _Connection:
    peer: str
    scope: anyio.CancelScope | None = None  # set while waiting for bytes: stop() cancels it


class _HandshakeFailed(Exception):
    """A TLS client that did not complete the handshake; the message is the reason."""


class TcpListener:
    """Accepts producers for one stream until ``stop``; then lets each finish its last read."""

    def __init__(self, spec: ListenSpec, batcher: Batcher, limits: Limits, stats: StreamStats) -> None:
        self.spec = spec
        self._batcher = batcher
        self._limits = limits
        self._stats = stats
        self._connections: set[_Connection] = set()
        self._accepting = anyio.CancelScope()
        self._stopping = False
        self._drain_until = 0.0
        self.port = spec.port
        self.refused = 0
        self.limit_hits: Counter[str] = Counter()  # limit name -> connections it closed
        self._partials = PartialBudget(int(limits.max_partial_bytes))
        self.done = anyio.Event()
        self._ssl: ssl.SSLContext | None = None if spec.tls is None else server_context(spec.tls)

    @property
    def url(self) -> str:
        return f"{'tls' if self._ssl else 'tcp'}://{self.spec.host}:{self.port}"

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.spec.host, local_port=self.spec.port)
        self.port = listener.extra(SocketAttribute.local_port)
        try:
            async with anyio.create_task_group() as connections:
                with self._accepting:
                    task_status.started(self.port)
                    await listener.serve(self._handle, task_group=connections)
                await listener.aclose()
            # leaving the task group waited for every connection to hand over its last bytes
        finally:
            self.done.set()

    def stop(self) -> None:
        """Stop accepting; let each connection hand over what its producer already sent.

        A connection keeps reading while bytes keep coming (at most ``DRAIN_QUIET_S``
        apart, for at most ``DRAIN_MAX_S``), so data sitting in socket buffers is not
        thrown away; then it closes, discarding (and counting) a partial last message.
        """
        self._stopping = True
        self._drain_until = anyio.current_time() + DRAIN_MAX_S
        self._accepting.cancel()
        for conn in self._connections:
            if conn.scope is not None:
                conn.scope.deadline = min(conn.scope.deadline, anyio.current_time() + DRAIN_QUIET_S)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def _read_deadline(self, message_began: float | None) -> tuple[float, str]:
        """When the next read must have come, and the limit that says so. Silence is
        allowed for ``idle_timeout_s``; a message that has begun must end within
        ``message_timeout_s`` however its bytes trickle (slowloris)."""
        now = anyio.current_time()
        if self._stopping:
            return min(now + DRAIN_QUIET_S, self._drain_until), "shutdown"
        idle = now + self._limits.idle_timeout_s
        if message_began is not None and message_began + self._limits.message_timeout_s < idle:
            return message_began + self._limits.message_timeout_s, "message_timeout"
        return idle, "idle_timeout"

    def _hit(self, limit: str, peer: str) -> None:
        """Count a limit hit and log it: once per connection, since each closes it."""
        self.limit_hits[limit] += 1
        log.warning("limit_hit listener=%s peer=%s limit=%s action=closed", self.url, peer, limit)

    async def _handle(self, stream: SocketStream) -> None:
        _read_only_on_receive(stream)
        async with stream:
            address = stream.extra(SocketAttribute.remote_address, None)  # None after an early reset
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
            if len(self._connections) >= self._limits.max_connections:
                self.refused += 1
                self.limit_hits["max_connections"] += 1
                log.warning("connection_refused listener=%s peer=%s reason=max_connections", self.url, peer)
                return
            conn = _Connection(peer)
            self._connections.add(conn)
            cls = LineFramer if self.spec.framing == "newline" else FrameFramer
            framer = cls(self._batcher, int(self._limits.max_message_bytes))
            reason = "eof"
            reader: ByteStream = stream  # with TLS: the TLSStream over it (see _handshake)
            began: float | None = None  # when the message now in progress began
            held = 0  # this connection's partial message, as the listener's budget counts it
            try:
                if self._ssl is not None:
                    reader = await self._handshake(stream, conn)
                while True:
                    deadline, limit = self._read_deadline(began)
                    with anyio.CancelScope(deadline=deadline) as scope:
                        conn.scope = scope
                        try:
                            chunk = await reader.receive(READ_BYTES)
                        except anyio.EndOfStream:
                            chunk = None
                    conn.scope = None
                    if scope.cancelled_caught:
                        reason = "shutdown" if self._stopping else limit
                        if reason != "shutdown":
                            self._hit(reason, peer)
                        break
                    if chunk is None:
                        await framer.finish()  # a clean end completes an unterminated last line
                        break
                    handed = framer.handed
                    await framer.feed(chunk)
                    within = self._partials.update(held, framer.pending_bytes)
                    held = framer.pending_bytes
                    if not within:
                        reason = "max_partial_bytes"
                        self._hit(reason, peer)
                        break
                    if not framer.in_message:
                        began = None
                    elif began is None or framer.handed != handed:
                        began = anyio.current_time()  # a new message is under way
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                reason = f"broken: {exc!r}"
            except StreamClosed:
                reason = "stream closed"
            except _HandshakeFailed as exc:
                reason = str(exc)
            except Exception:  # a fault here must cost this connection only, never the listener
                log.exception("connection_failed listener=%s peer=%s", self.url, peer)
                reason = "internal error"
            finally:
                self._connections.discard(conn)
                self._partials.update(held, 0)
                if framer.discard():  # anything left is a message cut off mid-way
                    self._stats.discarded_partials += 1
            log.info("connection_closed listener=%s peer=%s reason=%s", self.url, peer, reason)

    async def _handshake(self, stream: SocketStream, conn: _Connection) -> TLSStream:
        """The server side of the TLS handshake, bounded by ``message_timeout_s`` so a silent
        client cannot hold a connection slot, and cut short by ``stop``.

        The TLSStream reads through ``stream``, whose transport stays paused outside its
        ``receive`` (``_read_only_on_receive``), so TLS producers are pushed back the same
        way. ``standard_compatible=False``: producers may close without a TLS close_notify
        (most do), and closing never waits for the peer's.
        """
        deadline = anyio.current_time() + self._limits.message_timeout_s
        if self._stopping:
            deadline = min(deadline, self._drain_until)
        with anyio.CancelScope(deadline=deadline) as scope:
            conn.scope = scope
            try:
                return await TLSStream.wrap(stream, server_side=True, ssl_context=self._ssl, standard_compatible=False)
            except (OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:  # ssl.SSLError is an OSError
                detail = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else repr(exc)
                raise _HandshakeFailed(f"tls_handshake_failed: {detail}") from None
            finally:
                conn.scope = None
        if self._stopping:
            raise _HandshakeFailed("shutdown")
        self._hit("message_timeout", conn.peer)
        raise _HandshakeFailed("tls_handshake_timeout")


def _read_only_on_receive(stream: SocketStream) -> None:
    """Make an accepted connection read only while its handler waits in ``receive``.

    anyio (4.x, asyncio backend) leaves accepted sockets reading, and its ``receive`` pauses
    the transport only after a wait on an empty queue. A producer that is faster than the
    stream from its first bytes on therefore never gets paused: every read is queued in
    memory, TCP never pushes back, and at full speed the server grew to 5.7 GB and 33 s of
    latency. Paused here, the transport reads one wait's worth at a time.
    """
    transport = getattr(stream, "_transport", None)  # anyio's asyncio SocketStream
    if transport is not None and hasattr(transport, "pause_reading") and transport.is_reading():
        transport.pause_reading()
