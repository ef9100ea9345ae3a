"""uvicorn's httptools protocol with the request limits it lacks.

httptools buffers a request line, headers and chunked-body trailers without bound (a
10 MB header is taken whole), and uvicorn has no deadline for a request that trickles in:
a client sending one byte every few seconds (slowloris) resets its keep-alive timer with
each and holds its connection, and its share of ``max_connections``, forever. This
subclass bounds every connection:

* ``max_header_bytes``: the request line and headers together, and the trailers of a
  chunked body on their own (counted as they arrive, as is any stretch of chunk framing
  that carries no body: chunk sizes, extensions); beyond it, 431 and close.
* ``message_timeout_s``: a new connection must send its first request's head within it,
  and so must every request from its first byte; a body then gets ``message_timeout_s``
  (plus ``BODY_GRACE_S``) plus one second per ``MIN_BODY_BYTES_PER_S`` it sends (the way
  Apache's mod_reqtimeout bounds bodies: large uploads over slow links pass, trickles
  do not). Time in which uvicorn itself has
  paused reading (the app is behind, backpressure) is not charged to the client. Beyond
  it: 408 and close (or just close, when a response has already begun).

Each hit is counted in ``hits`` (limit name -> connections closed) and logged once, as the
connection closes with it. It also counts the requests uvicorn refuses with 503 for
``max_connections``.

It also closes the way nginx does ("lingering close"). A connection closed while its
client is still sending (a body refused unread with 401, 413 or 503, a head over its
limit) would otherwise be reset by the kernel, because unread bytes sit in the socket:
the reset can reach the client before it reads the answer, so it sees "connection reset"
instead of the status that explains it. So such a close first ends our side (FIN after
the answer), then reads and drops what still arrives, for at most ``LINGER_S`` and
``LINGER_BYTES``, and closes when the client ends its side. An idle connection closes at
once.

More ways a connection ends differently from uvicorn's: a client that half-closes after
a whole request (``shutdown(SHUT_WR)``, ``nc -N``) still gets its answer, then the
connection closes; a body that breaks off malformed (a bad chunk size), too slowly, with
trailers over the limit or at the client's FIN ends there for the app, which answers it
(a POST says what it took before the fault; ``BODY_ERROR`` in the scope's extensions
holds the status and reason) instead of a bare 400, 408 or 431; and the app can abort a
connection outright through the ``ABORT`` extension (a live stream whose consumer was
dropped while it did not read), or end it with its response cut short through ``CUT`` (a
live stream whose consumer was dropped: an end would tell it the stream was whole).
A request this layer refuses (a malformed or oversize head, 400 or 431) while the
requests pipelined before it are still being answered waits for their answers, then goes
out and closes: a client reads answers in order, and a POST's receipt must not be lost to
the junk that followed it. The app can also end a response by closing the connection
(``CLOSE_DELIMITED``, for an HTTP/1.0 client, which must not get a chunked body).
Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("quiver.http")

#: The slowest body a request may send, on average, once its first ``message_timeout_s``
#: are spent.
MIN_BODY_BYTES_PER_S = 64 << 10
#: Extra time a body gets beyond ``message_timeout_s`` (see ``on_headers_complete``).
BODY_GRACE_S = 1.0
#: The longest a closing connection keeps reading (and dropping) what its client still
#: sends, and the most it drops, so the client reads our answer rather than a reset.
LINGER_S = 2.0
LINGER_BYTES = 16 << 20
#: The key, in a request scope's ``extensions``, of a callable that aborts its connection.
ABORT = "quiver.abort"
#: The key, in a request scope's ``extensions``, of a callable that ends its connection
#: after what was already sent, leaving the response unfinished (a chunked body without its
#: last chunk): the client reads it as cut short, a failure, where an end says "whole".
CUT = "quiver.cut"
#: The key, in a request scope's ``extensions``, of why its body broke off (absent if not).
BODY_ERROR = "quiver.body_error"
#: The key, in a request scope's ``extensions``, of a callable that makes its response's
#: body end where the connection closes (no length, no chunked coding, ``connection:
#: close``): for an endless body to an HTTP/1.0 client. Call it before the response
#: starts, and end the response with ``CUT`` rather than a last body message.
CLOSE_DELIMITED = "quiver.close_delimited"


class LingeringTransport:
    """The connection's transport as uvicorn sees it, with ``close`` made lingering.

    uvicorn closes through ``transport.close()`` from many places; wrapping the transport
    catches them all. Everything but ``close`` and ``is_closing`` is the real transport's.
    """

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        real = self._transport
        if self.lingering or real.is_closing():
            return
        if not self._protocol.mid_request() or not real.can_write_eof():
            real.close()  # nothing unread to reset it (or TLS, which cannot half-close)
            return
        self.lingering = True
        real.write_eof()  # after what is buffered: the client gets the answer, then FIN
        real.resume_reading()  # drain even if uvicorn had paused reading
        self._protocol.linger(real)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with its requests bounded in size and time."""

    def __init__(
        self, *args: Any, max_header_bytes: int, message_timeout_s: float, hits: Counter[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = max_header_bytes
        self._timeout = message_timeout_s
        self._hits = hits
        self._in_head = True  # bytes now arriving belong to a request line or headers
        self._head_bytes = 0
        self._trailer_bytes = 0
        self._framing_bytes = 0  # body-phase bytes since the last body byte (chunk framing)
        self._body_seen = False
        self._began = False  # a message began during the read being parsed
        self._held: bytes | None = None  # a refusal waiting for earlier answers (pipelining)
        self._deadline = 0.0  # loop time by which the message in progress must have ended
        self._timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_left = 0  # bytes a lingering close still drops before it closes
        self._peer_done = False  # the client half-closed after a whole request: answer, close
        self._body_ended = False  # _end_body ended a body: nothing after it is parsed
        self._refused = False  # _fail answered (or holds the answer): nothing more is parsed
        # the head as its callbacks deliver it: a head that arrives in one read with the end
        # of the body before it is parsed there, in the body's read, uncounted above
        self._head_fields = 0

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = LingeringTransport(transport, self)  # type: ignore[assignment]
        self._arm(self.loop.time() + self._timeout)  # its first request must come

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self.transport.lingering:  # type: ignore[attr-defined]
            return False  # the client has sent all it will: the transport closes now
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body and not cycle.response_started:
            # a whole request, then the client's FIN: it still reads, so the answer (a
            # POST's receipt: its messages were taken) goes out, then the connection closes.
            # Not once an answer is under way: a FIN during a consumer's endless stream is
            # how a client that closed its socket leaves (kept open, it would sit in
            # CLOSE-WAIT, counted as a consumer and a connection, until a write failed)
            self._peer_done = True
            return True
        if (
            cycle is not None
            and cycle.more_body
            and self._end_body(400, "the body ended early: the client closed its side")
        ):
            self._peer_done = True  # it may still read: the app answers what it took, then close
            return True
        return super().eof_received()

    def on_response_complete(self) -> None:
        # uvicorn starts the next pipelined request here, taking it off the pipeline: an
        # empty pipeline afterwards does not mean nothing is left to answer
        started_next = bool(self.pipeline)
        super().on_response_complete()
        if started_next or self.transport.is_closing():
            return
        if self._held is not None:  # every earlier request answered: now the refusal
            self.transport.write(self._held)
            self.transport.close()
        elif self._peer_done:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """The parser failed (uvicorn then answers 400 and closes). Mid-body, with the app
        reading it and no answer begun, end the body at the fault and let the app answer."""
        if self._stopped or self.transport.is_closing():
            return  # already answered (or the app answers): the parser ran on into junk
        if not self._end_body(400, "malformed HTTP body (bad chunk framing)"):
            headers = b"".join(b"%s: %s\r\n" % (k, v) for k, v in self.server_state.default_headers)
            raw = msg.encode("ascii")
            self._fail(
                b"HTTP/1.1 400 Bad Request\r\n%scontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (headers, len(raw), raw)
            )

    def _fail(self, answer: bytes) -> None:
        """Answer a request this layer refuses, then close. A pipelined request refused
        while one before it is still being answered waits for that answer (a client reads
        answers in order; written now, this one would be read as the earlier request's, or
        land inside its body); one refused after its own answer began gets no second."""
        self._refused = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head:
                self._held = answer
                self._disarm()
                return
            if cycle.response_started:
                answer = b""
        if answer:
            self.transport.write(answer)
        self.transport.close()

    def _end_body(self, status: int, reason: str) -> bool:
        """End the body in progress here, for the app to answer with ``status`` and what it
        took (a POST's counts) and then close; False if there is no such body to end."""
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_started or cycle.disconnected:
            return False
        self._body_ended = True
        cycle.scope["extensions"][BODY_ERROR] = (status, reason)  # type: ignore[typeddict-item]
        cycle.more_body = False
        cycle.keep_alive = False  # the rest of the body is never read: close after the answer
        cycle.message_event.set()
        self.transport.pause_reading()  # nothing after the fault is read
        self._disarm()
        return True

    def abort(self) -> None:
        """Close at once, unanswered (the app's ``ABORT``)."""
        self.transport._transport.abort()  # type: ignore[attr-defined]

    def cut(self) -> None:
        """Close once what was written is sent, the response unfinished (the app's ``CUT``)."""
        self.transport._transport.close()  # type: ignore[attr-defined]

    def close_delimited(self) -> None:
        """The app's ``CLOSE_DELIMITED``: uvicorn would give a response with no length a
        chunked body whatever the request's version; this one ends where the connection does."""
        cycle = self.cycle
        assert cycle is not None and not cycle.response_started
        cycle.chunked_encoding = False  # neither chunked nor a content-length header
        cycle.expected_content_length = 1 << 62  # uvicorn counts the body down from it
        cycle.keep_alive = False  # -> connection: close

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:  # type: ignore[attr-defined]
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport._transport.close()  # type: ignore[attr-defined]
            return
        if self._stopped:
            return  # the connection closes after the app's answer: the rest is not read
        if not self._in_head:
            self._body_seen = self._began = False
            super().data_received(data)
            if self._in_head or self._stopped or self.transport.is_closing():
                return  # the message ended (what follows was parsed as the next), or refused
            # bytes of a chunked body that carry none of it (trailers, which httptools
            # buffers until each line ends; chunk sizes and extensions) are bounded too; a
            # read in which the next request began is that request's (its head is counted
            # by its callbacks)
            idle = not self._body_seen and not self._began
            self._framing_bytes = self._framing_bytes + len(data) if idle else 0
            if self._framing_bytes > self._max_head:
                self._refuse(431, "max_header_bytes", "Request Header Fields Too Large")
            return
        # feed no more than the head may still take: what follows the head (a body, a
        # pipelined request) must not count against it
        room = self._max_head - self._head_bytes + 1
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        super().data_received(head)
        if self.transport.is_closing() or self.parser is None or self._held is not None:
            return
        if self._in_head and self._head_bytes > self._max_head:
            return self._refuse(431, "max_header_bytes", "Request Header Fields Too Large")
        if rest:
            self.data_received(rest)

    # -- parser callbacks ----------------------------------------------------------------

    @property
    def _stopped(self) -> bool:
        """Nothing more is parsed (the parser still runs through what was already read)."""
        return self._body_ended or self._refused

    def on_url(self, url: bytes) -> None:
        if not self._stopped:
            self._head_fields += len(url)
            super().on_url(url)

    def on_message_begin(self) -> None:
        if self._stopped:
            return  # the parser goes on through what was read with the body's end
        super().on_message_begin()
        self._trailer_bytes = self._framing_bytes = self._head_fields = 0
        self._began = True
        if self._timer is None:  # the first request's clock started when it connected
            self._arm(self.loop.time() + self._timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.transport.is_closing() or self._stopped:
            return  # refused: the rest of what was read is dropped
        if self._in_head:  # a field line is at least name, ':', value and CRLF
            self._head_fields += len(name) + len(value) + 3
            over = self._head_fields > self._max_head
        else:  # a trailer of a chunked body: bounded on its own
            self._trailer_bytes += len(name) + len(value) + 3
            over = self._trailer_bytes > self._max_head
        if over:
            return self._refuse(431, "max_header_bytes", "Request Header Fields Too Large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._stopped:
            return
        # the body's clock starts now, a little later than the app's per-chunk deadline
        # (engine/server/http.py), which answers a body that simply stops with the counts
        # of what it took; this one catches the trickle that deadline never sees
        self._deadline = self.loop.time() + self._timeout + BODY_GRACE_S
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self._hits["max_connections"] += 1  # uvicorn answers 503 (and logs it)
        extensions = self.scope.setdefault("extensions", {})  # type: ignore[union-attr]
        extensions[ABORT] = self.abort
        extensions[CUT] = self.cut
        extensions[CLOSE_DELIMITED] = self.close_delimited
        super().on_headers_complete()  # raises for a URL httptools parsed but cannot split:
        self._in_head = False  # its 400 is then a head's, held behind earlier answers

    def on_body(self, body: bytes) -> None:
        if self._stopped:
            return
        self._deadline += len(body) / MIN_BODY_BYTES_PER_S
        self._body_seen = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._stopped:
            return
        super().on_message_complete()
        self._disarm()  # between requests, uvicorn's keep-alive timeout applies
        self._in_head, self._head_bytes = True, 0  # a next request may follow

    # -- lingering close ----------------------------------------------------------------

    def mid_request(self) -> bool:
        """Whether a request has begun arriving and may not have ended (bytes unread)."""
        return self._refused or not self._in_head or self._head_bytes > 0

    def linger(self, real: asyncio.Transport) -> None:
        self._disarm()
        self._linger_left = LINGER_BYTES
        self._linger_timer = self.loop.call_later(LINGER_S, real.close)

    # -- the deadline --------------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        self._disarm()
        self._deadline = deadline
        self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow is not None and self.flow.read_paused:
            self._deadline = max(self._deadline, now) + 1.0  # we are the slow side: not charged
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        self._refuse(408, "message_timeout", "Request Timeout")

    def _refuse(self, status: int, limit: str, phrase: str) -> None:
        if self.transport.is_closing() or self._stopped:
            return
        self._hits[limit] += 1
        self._disarm()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.warning("limit_hit listener=http peer=%s limit=%s action=closed status=%d", client, limit, status)
        if self._end_body(status, f"{phrase.lower()} ({limit})"):
            return  # mid-body: the app answers, with the counts of what it already took
        body = f'{{"error": "{phrase.lower()} ({limit})"}}'.encode()
        self._fail(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, phrase.encode(), len(body), body)
        )
