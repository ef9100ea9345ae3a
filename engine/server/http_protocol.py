"""uvicorn's httptools protocol with the two request limits it lacks.

httptools buffers a request line and headers without bound (a 10 MB header is taken
whole), and uvicorn has no deadline for a request head that trickles in (slowloris: a
client sending one header byte every few seconds holds its connection, and its share of
``max_connections``, forever). This subclass bounds both, per connection:

* ``max_header_bytes``: the request line and headers together; beyond it, 431 and close;
* ``message_timeout_s``: from a request's first byte to the end of its headers; beyond
  it, 408 and close. (The body has its own deadline in the ASGI app, per chunk.)

It also counts the requests uvicorn refuses with 503 for ``max_connections``.

Each hit is counted in ``hits`` (limit name -> connections closed) and logged once, as the
connection closes with it. Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("quiver.http")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with its request heads bounded in size and time."""

    def __init__(
        self, *args: Any, max_header_bytes: int, message_timeout_s: float, hits: Counter[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = max_header_bytes
        self._head_timeout = message_timeout_s
        self._hits = hits
        self._in_head = True  # bytes now arriving belong to a request line or headers
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            return super().data_received(data)
        # feed no more than the head may still take: what follows the head (a body, a
        # pipelined request) must not count against it
        room = self._max_head - self._head_bytes + 1
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        super().data_received(head)
        if self.transport.is_closing() or self.parser is None:
            return
        if self._in_head and self._head_bytes > self._max_head:
            return self._refuse(431, "max_header_bytes", "Request Header Fields Too Large")
        if rest:
            self.data_received(rest)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self._hits["max_connections"] += 1  # uvicorn answers 503 (and logs it)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # a next request may follow

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "message_timeout", "Request Timeout")

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, limit: str, phrase: str) -> None:
        self._hits[limit] += 1
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.warning("limit_hit listener=http peer=%s limit=%s action=closed status=%d", client, limit, status)
        body = f'{{"error": "{phrase.lower()} ({limit})"}}'.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, phrase.encode(), len(body), body)
        )
        self.transport.close()
