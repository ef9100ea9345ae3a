"""TCP producers: one listener per ``listen`` entry of kind ``tcp``, bound to one stream.

Reads are the hot path, so each connection is an asyncio ``BufferedProtocol``: the event
loop reads into one buffer the listener shares, and the read is framed in the callback
that delivered it, its whole messages copied straight into the stream's current arena.
A read costs no task switch, cancel scope or timer; deadlines are checked by one lazy
timer per connection that fires only when a deadline may have passed.

While the stream has no free arena a connection stops reading (its last read waits in its
``Outbox``), so the kernel's socket buffers fill and TCP pushes back on the producer. A
broken connection loses only its own partial message (counted); connections beyond
``max_connections`` are refused at once, one silent for ``idle_timeout_s`` is closed, and
so is one whose message has not ended ``message_timeout_s`` after it began (a slowloris
trickle; time the stream held the connection back is not charged to it). Each limit hit
is counted in ``limit_hits`` and logged once, as it closes its connection.

With ``tls: {cert, key}`` the listener speaks TLS (``tls://``): the handshake must end
within ``message_timeout_s``, and a client that fails it (plain text, say) is closed having
sent nothing to the stream. Raw TCP has no place for the bearer token of ``auth``: a TCP
listener is protected by the address it binds (127.0.0.1 unless configured otherwise) and
by TLS.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter

import anyio
from anyio.abc import TaskGroup, TaskStatus

from engine.batcher import Batcher, Outbox, StreamClosed
from engine.config import Limits, ListenSpec
from engine.framer import FrameFramer, LineFramer, PartialBudget
from engine.pipeline import StreamStats
from engine.server.access import server_context

log = logging.getLogger("quiver.tcp")

READ_BYTES = 256 << 10
DRAIN_QUIET_S = 0.25  # on shutdown, a producer silent this long has sent everything
DRAIN_MAX_S = 5.0  # and no producer delays shutdown longer than this
BACKLOG = 4096  # pending connections the kernel queues (it caps this at somaxconn)


class TcpListener:
    """Accepts producers for one stream until ``stop``; then lets each finish its last read."""

    def __init__(self, spec: ListenSpec, batcher: Batcher, limits: Limits, stats: StreamStats) -> None:
        self.spec = spec
        self._batcher = batcher
        self._limits = limits
        self._stats = stats
        self._connections: set[_Producer] = set()
        self._stopping = False
        self._stopped_at = 0.0
        self._drain_until = 0.0
        self._stop_requested = anyio.Event()
        self._all_closed = anyio.Event()
        self._tasks: TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = spec.port
        self.refused = 0
        self.limit_hits: Counter[str] = Counter()  # limit name -> connections it closed
        self._partials = PartialBudget(int(limits.max_partial_bytes))
        # every read lands here and is framed before the next one: one buffer serves all
        # connections, so ten thousand idle producers hold no read buffers
        self._read_buffer = memoryview(bytearray(READ_BYTES))
        self.done = anyio.Event()
        self._ssl: ssl.SSLContext | None = None if spec.tls is None else server_context(spec.tls)

    @property
    def url(self) -> str:
        return f"{'tls' if self._ssl else 'tcp'}://{self.spec.host}:{self.port}"

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        loop = self._loop = asyncio.get_running_loop()
        sock = await _bind(self.spec.host, self.spec.port)
        server = await loop.create_server(lambda: _Producer(self), sock=sock, start_serving=False)
        self.port = server.sockets[0].getsockname()[1]
        try:
            async with anyio.create_task_group() as tasks:  # TLS handshakes and waits for arenas
                self._tasks = tasks  # before the first connection, which may need it
                await server.start_serving()
                task_status.started(self.port)
                await self._stop_requested.wait()
                server.close()
                if self._connections:
                    await self._all_closed.wait()  # each hands over its last bytes first
        finally:
            self._tasks = None  # a connection accepted from now on is refused
            server.close()
            for conn in list(self._connections):  # cancelled: whatever is left goes now
                conn.close("cancelled", abort=True)
            self.done.set()

    def stop(self) -> None:
        """Stop accepting; let each connection hand over what its producer already sent.

        A connection keeps reading while bytes keep coming (at most ``DRAIN_QUIET_S``
        apart, for at most ``DRAIN_MAX_S``), so data sitting in socket buffers is not
        thrown away; then it closes, discarding (and counting) a partial last message.
        """
        self._stopping = True
        self._stopped_at = anyio.current_time()
        self._drain_until = self._stopped_at + DRAIN_MAX_S
        self._stop_requested.set()
        for conn in list(self._connections):
            conn.stopping()

    @property
    def connections(self) -> int:
        return len(self._connections)

    def deadline(self, last_read: float, began: float | None) -> tuple[float, str]:
        """When a connection must next have sent something, and the limit that says so.
        Silence is allowed for ``idle_timeout_s``; a message that has begun must end within
        ``message_timeout_s`` however its bytes trickle (slowloris)."""
        if self._stopping:
            return min(max(last_read, self._stopped_at) + DRAIN_QUIET_S, self._drain_until), "shutdown"
        idle = last_read + self._limits.idle_timeout_s
        if began is not None and began + self._limits.message_timeout_s < idle:
            return began + self._limits.message_timeout_s, "message_timeout"
        return idle, "idle_timeout"

    def hit(self, limit: str, peer: str) -> None:
        """Count a limit hit and log it: once per connection, since each closes it."""
        self.limit_hits[limit] += 1
        log.warning("limit_hit listener=%s peer=%s limit=%s action=closed", self.url, peer, limit)

    def admit(self, conn: _Producer) -> bool:
        if self._stopping or self._tasks is None:
            return False
        if len(self._connections) >= self._limits.max_connections:
            self.refused += 1
            self.limit_hits["max_connections"] += 1
            log.warning("connection_refused listener=%s peer=%s reason=max_connections", self.url, conn.peer)
            return False
        self._connections.add(conn)
        return True

    def closed(self, conn: _Producer, reason: str) -> None:
        """``conn`` is gone: release what it held and account for its partial message."""
        self._connections.discard(conn)
        self._partials.update(conn.held, 0)
        if conn.framer.discard():  # anything left is a message cut off mid-way
            self._stats.discarded_partials += 1
        log.info("connection_closed listener=%s peer=%s reason=%s", self.url, conn.peer, reason)
        if self._stopping and not self._connections:
            self._all_closed.set()


async def _bind(host: str, port: int) -> socket.socket:
    """The listening socket (the first address ``host`` resolves to, as the HTTP listener)."""
    family, _, _, _, address = (await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    return socket.create_server(address[:2], family=family, backlog=BACKLOG)


class _Producer(asyncio.BufferedProtocol):
    """One producer connection: reads framed in place, deadlines, backpressure, TLS."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.BaseTransport | None = None
        self.peer = "?"
        limits = listener._limits
        cls = LineFramer if listener.spec.framing == "newline" else FrameFramer
        self.framer = cls(Outbox(listener._batcher), int(limits.max_message_bytes))
        self.outbox: Outbox = self.framer.sink
        self.held = 0  # this connection's partial message, as the listener's budget counts it
        self.began: float | None = None  # when the message now in progress began
        self.last_read = 0.0
        self.reading = False  # bytes may arrive (handshake over, not held back)
        self.gone = False  # the transport is lost
        self.ended = False  # accounted for and forgotten
        self.reason = "eof"
        self.eof = False
        self.closing = False  # close() was called: nothing more is read
        self.busy = False  # a task (handshake, wait for an arena) owns the connection
        self.scope: anyio.CancelScope | None = None  # the handshake's: stop() cancels it
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        address = transport.get_extra_info("peername")
        self.peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        if not self.listener.admit(self):
            self.ended = True
            transport.close()
            return
        self.last_read = anyio.current_time()
        if self.listener._ssl is not None:
            transport.pause_reading()  # nothing is read before the handshake takes over
            self._run(self._handshake)
        else:
            self.reading = True
            self._arm()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.listener._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # bytes can come while reads are held back (TLS delivers what it has decrypted):
        # they are framed all the same, and queue in the outbox behind what waits there
        if self.ended or self.closing:
            return  # (a closing TLS transport flushes what it decrypted: not ours any more)
        listener = self.listener
        framer = self.framer
        now = listener._loop.time()
        self.last_read = now
        try:
            handed = framer.handed
            framer.feed(listener._read_buffer[:nbytes])
        except StreamClosed:
            self.close("stream closed")
            return
        except Exception:  # a fault here must cost this connection only, never the listener
            log.exception("connection_failed listener=%s peer=%s", listener.url, self.peer)
            self.close("internal error")
            return
        within = listener._partials.update(self.held, framer.pending_bytes)
        self.held = framer.pending_bytes
        if not framer.in_message:
            self.began = None
        elif self.began is None:
            self.began = now  # a message is under way: its deadline may come before the timer
            if self.reading and now + listener._limits.message_timeout_s < self._timer_at:
                self._cancel_timer()
                self._arm()
        elif framer.handed != handed:
            self.began = now  # a new message is under way (a later deadline: timer stays)
        if not within:
            listener.hit("max_partial_bytes", self.peer)
            self.close("max_partial_bytes")
        elif self.outbox.blocked and not self.busy:
            self._hold_back()

    def eof_received(self) -> bool:
        """The producer is done. The transport may close at once (Quiver never writes):
        what waits in the outbox is copied out of the read buffer, and the connection is
        accounted for only once it is in an arena."""
        if self.ended or self.closing:
            return False
        self.eof = True
        self.reading = False
        self._cancel_timer()
        try:
            self.framer.finish()  # a clean end completes an unterminated last line
        except StreamClosed:
            self.reason = "stream closed"
            return False
        if self.outbox.blocked and not self.busy:
            self._run(self._drain)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.reading = False
        if exc is not None and self.reason == "eof":
            self.reason = f"broken: {exc!r}"
        self._cancel_timer()
        if not self.busy:
            self._end()

    # -- the connection's life -----------------------------------------------------------
    def stopping(self) -> None:
        """The listener is stopping: handshakes end now, reads once the producer is quiet."""
        if self.scope is not None:
            self.scope.cancel()
        if self.reading:
            self._cancel_timer()
            self._arm()

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Stop reading and close. Whole messages already read still go in (a limit closes
        the connection, not what the producer had completed), unless ``abort``."""
        if self.reason == "eof" or abort:
            self.reason = reason
        self.closing = True
        self.reading = False
        self._cancel_timer()
        if self.transport is not None and not self.gone:
            self.transport.abort() if abort else self.transport.close()
        if abort:  # cancelled: no connection_lost will come in time
            self.gone = True
            self.busy = False
            self._end()
        elif self.outbox.blocked and not self.busy:
            self._run(self._drain)  # accounted for (``_end``) once they are in

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        dropped = self.outbox.clear()  # only when the stream closed or the listener was cancelled
        if dropped:
            self.listener._stats.dropped += dropped
            log.warning(
                "messages_dropped listener=%s peer=%s count=%d reason=%s",
                self.listener.url,
                self.peer,
                dropped,
                self.reason,
            )
        self.listener.closed(self, self.reason)

    def _run(self, work) -> None:
        """Hand the connection to ``work`` (a coroutine function) in the listener's tasks."""
        tasks = self.listener._tasks
        if tasks is None:  # the listener is gone (cancelled): so is this connection
            self.close("cancelled", abort=True)
            return
        self.busy = True
        tasks.start_soon(self._owned, work)

    async def _owned(self, work) -> None:
        try:
            await work()
        except Exception:  # a fault here must cost this connection only, never the listener
            log.exception("connection_failed listener=%s peer=%s", self.listener.url, self.peer)
            self.close("internal error")
        finally:
            self.busy = False
            if self.gone:
                self._end()

    def _hold_back(self) -> None:
        """No free arena: stop reading (TCP pushes back) until the waiting messages are in."""
        self.reading = False
        self._cancel_timer()
        self.transport.pause_reading()
        self._run(self._drain)

    async def _drain(self) -> None:
        """Wait until the outbox is empty, then read again (the transport is paused)."""
        held_since = anyio.current_time()
        try:
            await self.outbox.drain()
        except StreamClosed:
            self.close("stream closed")
            return
        if self.gone or self.ended or self.eof or self.closing:
            return
        now = anyio.current_time()
        if self.listener._stopping and now >= self.listener._drain_until:
            # a producer that never pauses, held back read after read, never lets the
            # deadline timer fire: the shutdown's bound on reading is enforced here too
            self.close("shutdown")
            return
        if self.began is not None:  # time the stream held us back is not the producer's
            self.began += now - held_since
        self.last_read = now
        self.reading = True
        self.transport.resume_reading()
        self._arm()

    async def _handshake(self) -> None:
        listener = self.listener
        deadline = anyio.current_time() + listener._limits.message_timeout_s
        if listener._stopping:  # stop() came before this task could be cancelled
            deadline = min(deadline, listener._drain_until)
        with anyio.CancelScope(deadline=deadline) as scope:
            self.scope = scope
            try:
                # Quiver never writes, and producers that never read would never answer a
                # close_notify: closing waits for it only briefly
                tls = await asyncio.get_running_loop().start_tls(
                    self.transport,
                    self,
                    listener._ssl,
                    server_side=True,
                    ssl_handshake_timeout=None,
                    ssl_shutdown_timeout=DRAIN_QUIET_S,
                )
            except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
                detail = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else repr(exc)
                self._abandon(f"tls_handshake_failed: {detail}")
                return
            finally:
                self.scope = None
        if not scope.cancelled_caught:
            if tls is None:  # lost as the handshake ended
                self.gone = True
            else:
                self.transport = tls
            if self.outbox.blocked:  # what TLS delivered with its last handshake bytes waits
                if not (self.gone or self.eof or self.closing):
                    self.transport.pause_reading()
                await self._drain()  # even when the producer is gone: it sent them whole
                return
            if self.gone or self.eof or self.closing:
                return
            self.last_read = anyio.current_time()
            self.reading = True
            self._arm()
        elif listener._stopping:
            self._abandon("shutdown")
        else:
            listener.hit("message_timeout", self.peer)
            self._abandon("tls_handshake_timeout")

    def _abandon(self, reason: str) -> None:
        """The handshake failed: start_tls has closed the transport, and asyncio tells no
        protocol of a connection lost mid-handshake, so it counts as gone now."""
        self.close(reason)
        self.gone = True

    # -- deadlines: one lazy timer ---------------------------------------------------------
    def _arm(self) -> None:
        deadline, _ = self.listener.deadline(self.last_read, self.began)
        self._timer = self.listener._loop.call_at(deadline, self._check)
        self._timer_at = deadline

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """The deadline set when the timer was armed has come; reads since may have moved it."""
        self._timer = None
        if not self.reading:
            return
        deadline, limit = self.listener.deadline(self.last_read, self.began)
        if self.listener._loop.time() < deadline:
            self._arm()
            return
        if limit != "shutdown":
            self.listener.hit(limit, self.peer)
        self.close(limit)
