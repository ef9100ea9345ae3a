"""Arrow Flight: consumers read live streams with ``pyarrow.flight``.

Tickets and descriptor paths name a topic: ``events`` (accepted batches) or
``events.rejects`` (dead letters). A ticket may also be JSON,
``{"stream": "events", "from": 42}`` (``from``: a seq, ``"earliest"`` or ``"latest"``,
the default), to start in the retained past. ``do_get`` is a stream that ends when the
service stops; each batch's seq is its FlightData ``app_metadata`` (decimal ASCII),
except on the first chunk of a schema with enum columns (see ``_batches``).
``get_flight_info`` reports the retained range as JSON app_metadata
``{"first_seq": F, "next_seq": N}`` and the retained bytes as ``total_bytes``. gRPC runs Flight calls on its own threads; they reach the topics, which live on the
event loop, through an anyio blocking portal.

With a top-level ``auth`` every call needs the header ``authorization: Bearer <token>``
(``FlightCallOptions(headers=...)``), else it fails with FlightUnauthenticatedError. With
``tls`` on the listener it serves ``grpc+tls``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.flight as fl
from anyio.from_thread import BlockingPortal

from engine.config import ListenSpec
from engine.outputs.hub import ConsumerDropped, Start, Subscription, Topic
from engine.outputs.segments import SEQ_KEY, SeqOutOfRange
from engine.server.access import bearer_matches

log = logging.getLogger("quiver.flight")

#: How often a live stream waiting for its next batch checks that its client is still there.
HANGUP_POLL_S = 1.0


class _BearerAuth(fl.ServerMiddlewareFactory):
    """Refuses every call whose ``authorization`` header is not ``Bearer <token>``."""

    def __init__(self, token: bytes) -> None:
        super().__init__()
        self._token = token

    def start_call(self, info: fl.CallInfo, headers: dict[str, list]) -> None:
        values = headers.get("authorization", [])
        if len(values) == 1 and bearer_matches(values[0], self._token):
            return None
        reason = "wrong token" if values else "no token"
        log.info("unauthorized transport=flight method=%s reason=%s", info.method, reason)
        raise fl.FlightUnauthenticatedError("missing or invalid bearer token")


class _FlightService(fl.FlightServerBase):
    def __init__(
        self, location: str, topics: Callable[[], dict[str, Topic]], portal: BlockingPortal, **options: object
    ) -> None:
        super().__init__(location, **options)
        self._topics = topics
        self._portal = portal
        self._location = location

    def _topic(self, name: bytes | str) -> Topic:
        key = name.decode(errors="replace") if isinstance(name, bytes) else name
        topic = self._topics().get(key)
        if topic is None:
            raise fl.FlightServerError(f"no such stream: {key!r}; expected one of {sorted(self._topics())}")
        return topic

    def _info(self, topic: Topic) -> fl.FlightInfo:
        first, nxt = self._portal.call(lambda: (topic.first_seq, topic.next_seq))
        # a durable topic's ticket starts where the stream is now, so the reader knows
        # the seq of its first batch and misses nothing published after this call
        ticket = json.dumps({"stream": topic.name, "from": nxt}).encode() if topic.log else topic.name.encode()
        endpoint = fl.FlightEndpoint(ticket, [self._location])
        retained = topic.log.nbytes if topic.log is not None else 0
        meta = json.dumps({"first_seq": first, "next_seq": nxt}).encode()
        descriptor = fl.FlightDescriptor.for_path(topic.name)
        return fl.FlightInfo(topic.schema, descriptor, [endpoint], -1, retained, app_metadata=meta)

    def _ticket(self, ticket: bytes) -> tuple[Topic, Start]:
        if not ticket.lstrip().startswith(b"{"):
            return self._topic(ticket), "latest"
        try:
            spec = json.loads(ticket)
            name, start = spec["stream"], spec.get("from", "latest")
            if not isinstance(name, str):
                raise TypeError(name)
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: [[[[...]]]]
            raise fl.FlightServerError(
                'a JSON ticket needs {"stream": NAME} and optionally "from": SEQ | "earliest" | "latest"'
            ) from None
        if not (start in ("earliest", "latest") or (isinstance(start, int) and not isinstance(start, bool))):
            raise fl.FlightServerError(f'"from": expected a sequence number, "earliest" or "latest"; got {start!r}')
        return self._topic(name), start

    def _descriptor_topic(self, descriptor: fl.FlightDescriptor) -> Topic:
        if descriptor.descriptor_type == fl.DescriptorType.PATH and len(descriptor.path) == 1:
            return self._topic(descriptor.path[0])
        if descriptor.descriptor_type == fl.DescriptorType.CMD:
            return self._topic(descriptor.command)
        raise fl.FlightServerError("expected a descriptor path of one stream name, e.g. ['events']")

    def list_flights(self, context, criteria) -> Iterator[fl.FlightInfo]:
        for topic in self._topics().values():
            yield self._info(topic)

    def get_flight_info(self, context, descriptor) -> fl.FlightInfo:
        return self._info(self._descriptor_topic(descriptor))

    def get_schema(self, context, descriptor) -> fl.SchemaResult:
        return fl.SchemaResult(self._descriptor_topic(descriptor).schema)

    def do_get(self, context, ticket) -> fl.GeneratorStream:
        topic, start = self._ticket(ticket.ticket)
        try:
            sub: Subscription = self._portal.call(topic.subscribe, start)
        except SeqOutOfRange as exc:
            raise fl.FlightServerError(f"{exc} (first_seq={exc.first}, next_seq={exc.next})") from None
        return fl.GeneratorStream(topic.schema, self._batches(sub, context))

    def _next_batch(self, sub: Subscription, context) -> pa.RecordBatch | None:
        """The subscription's next batch; None once it ends or the client has gone. A client
        that hangs up is seen only here, so the wait is checked every ``HANGUP_POLL_S``: on a
        topic that publishes nothing (dead letters of a clean stream) one blocking wait would
        keep a gRPC thread and a consumer for every client that ever hung up."""
        future = self._portal.start_task_soon(sub.next_batch)
        while True:
            try:
                return future.result(timeout=HANGUP_POLL_S)
            except concurrent.futures.TimeoutError:
                if context.is_cancelled():
                    future.cancel()  # the client is gone: whatever it was owed goes with it
                    return None

    def _batches(self, sub: Subscription, context) -> Iterator[pa.Table | tuple[pa.RecordBatch, bytes]]:
        # Each batch goes as (batch, app_metadata=seq). pyarrow's GeneratorStream sends
        # dictionaries only with Table items, so on a schema with enum (dictionary)
        # columns the first batch goes as a Table, without app_metadata: its seq is the
        # start seq (the numeric "from" of the ticket). Enum dictionaries never change
        # within a stream, so later batches need none.
        need_dictionaries = any(pa.types.is_dictionary(f.type) for f in sub.schema)
        try:
            while not context.is_cancelled():
                batch = self._next_batch(sub, context)
                if batch is None:
                    return
                if need_dictionaries:
                    need_dictionaries = False
                    yield pa.Table.from_batches([batch.replace_schema_metadata(None)])
                else:
                    yield batch.replace_schema_metadata(None), batch.schema.metadata[SEQ_KEY]
        except ConsumerDropped as exc:
            log.warning("consumer_dropped transport=flight topic=%s reason=%r", sub.topic.name, str(exc))
            raise fl.FlightServerError(str(exc)) from None
        except RuntimeError:  # the portal is gone: the service stopped
            return
        finally:
            with contextlib.suppress(RuntimeError):
                self._portal.call(sub.close)


class FlightListener:
    """Owns the Flight server's lifetime; gRPC serves from the moment it is constructed."""

    def __init__(
        self,
        spec: ListenSpec,
        topics: Callable[[], dict[str, Topic]],
        portal: BlockingPortal,
        *,
        token: bytes | None = None,
    ) -> None:
        self.spec = spec
        self._token = token
        self._topics = topics
        self._portal = portal
        self._server: _FlightService | None = None
        self.port = spec.port

    @property
    def url(self) -> str:
        return f"{'grpc+tls' if self.spec.tls else 'grpc'}://{self.spec.host}:{self.port}"

    def start(self) -> None:
        """Bind and start serving (blocking: run it on a worker thread)."""
        options: dict = {}
        if self._token is not None:
            options["middleware"] = {"auth": _BearerAuth(self._token)}
        if self.spec.tls is not None:
            with open(self.spec.tls.cert, "rb") as cert, open(self.spec.tls.key, "rb") as key:
                options["tls_certificates"] = [fl.CertKeyPair(cert.read(), key.read())]
        scheme = "grpc+tls" if self.spec.tls else "grpc"
        location = f"{scheme}://{self.spec.host}:{self.spec.port}"
        self._server = _FlightService(location, self._topics, self._portal, **options)
        self.port = self._server.port
        self._server._location = self.url

    def stop(self) -> None:
        """Wait for calls in progress (live streams end when their topics close), then stop."""
        if self._server is not None:
            self._server.shutdown()
