"""TCP producers: one listener per ``listen`` entry of kind ``tcp``, bound to one stream.

Each connection reads large chunks and hands them to a framer (newline or length-prefixed),
which moves whole messages into the stream's current arena. While the stream has no free
arena the connection simply stops reading, so the kernel's socket buffers fill and TCP
pushes back on the producer. A broken connection loses only its own partial message
(counted); connections beyond ``max_connections`` are refused at once, and one silent for
``idle_timeout_s`` is closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from engine.batcher import Batcher, StreamClosed
from engine.config import Limits, ListenSpec
from engine.framer import FrameFramer, LineFramer
from engine.pipeline import StreamStats

log = logging.getLogger("quiver.tcp")

READ_BYTES = 256 << 10
DRAIN_QUIET_S = 0.25  # on shutdown, a producer silent this long has sent everything
DRAIN_MAX_S = 5.0  # and no producer delays shutdown longer than this


@dataclass(eq=False)
class _Connection:
    peer: str
    scope: anyio.CancelScope | None = None  # set while waiting for bytes: stop() cancels it


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
        self.done = anyio.Event()

    @property
    def url(self) -> str:
        return f"tcp://{self.spec.host}:{self.port}"

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

    def _read_deadline(self) -> float:
        now = anyio.current_time()
        if self._stopping:
            return min(now + DRAIN_QUIET_S, self._drain_until)
        return now + self._limits.idle_timeout_s

    async def _handle(self, stream: SocketStream) -> None:
        _read_only_on_receive(stream)
        async with stream:
            address = stream.extra(SocketAttribute.remote_address, None)  # None after an early reset
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
            if len(self._connections) >= self._limits.max_connections:
                self.refused += 1
                log.warning("connection_refused listener=%s peer=%s reason=max_connections", self.url, peer)
                return
            conn = _Connection(peer)
            self._connections.add(conn)
            cls = LineFramer if self.spec.framing == "newline" else FrameFramer
            framer = cls(self._batcher, int(self._limits.max_message_bytes))
            reason = "eof"
            try:
                while True:
                    with anyio.CancelScope(deadline=self._read_deadline()) as scope:
                        conn.scope = scope
                        try:
                            chunk = await stream.receive(READ_BYTES)
                        except anyio.EndOfStream:
                            chunk = None
                    conn.scope = None
                    if scope.cancelled_caught:
                        reason = "shutdown" if self._stopping else "idle_timeout"
                        break
                    if chunk is None:
                        await framer.finish()  # a clean end completes an unterminated last line
                        break
                    await framer.feed(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                reason = f"broken: {exc!r}"
            except StreamClosed:
                reason = "stream closed"
            except Exception:  # a fault here must cost this connection only, never the listener
                log.exception("connection_failed listener=%s peer=%s", self.url, peer)
                reason = "internal error"
            finally:
                self._connections.discard(conn)
                if framer.discard():  # anything left is a message cut off mid-way
                    self._stats.discarded_partials += 1
            log.info("connection_closed listener=%s peer=%s reason=%s", self.url, peer, reason)


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
