"""Arrow Flight: consumers read live streams with ``pyarrow.flight``.

Tickets and descriptor paths name a topic: ``events`` (accepted batches) or
``events.rejects`` (dead letters). ``do_get`` is a live stream that ends when the service
stops. gRPC runs Flight calls on its own threads; they reach the topics, which live on the
event loop, through an anyio blocking portal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.flight as fl
from anyio.from_thread import BlockingPortal

from engine.config import ListenSpec
from engine.outputs.hub import ConsumerDropped, Subscription, Topic

log = logging.getLogger("quiver.flight")


class _FlightService(fl.FlightServerBase):
    def __init__(self, location: str, topics: Callable[[], dict[str, Topic]], portal: BlockingPortal) -> None:
        super().__init__(location)
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
        endpoint = fl.FlightEndpoint(topic.name.encode(), [self._location])
        return fl.FlightInfo(topic.schema, fl.FlightDescriptor.for_path(topic.name), [endpoint], -1, -1)

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
        topic = self._topic(ticket.ticket)
        sub: Subscription = self._portal.call(topic.subscribe)
        return fl.GeneratorStream(topic.schema, self._batches(sub, context))

    def _batches(self, sub: Subscription, context) -> Iterator[pa.RecordBatch]:
        try:
            while not context.is_cancelled():
                batch = self._portal.call(sub.next_batch)
                if batch is None:
                    return
                # as a table: pyarrow's GeneratorStream sends dictionaries only for tables
                yield pa.Table.from_batches([batch])
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

    def __init__(self, spec: ListenSpec, topics: Callable[[], dict[str, Topic]], portal: BlockingPortal) -> None:
        self.spec = spec
        self._topics = topics
        self._portal = portal
        self._server: _FlightService | None = None
        self.port = spec.port

    @property
    def url(self) -> str:
        return f"grpc://{self.spec.host}:{self.port}"

    def start(self) -> None:
        """Bind and start serving (blocking: run it on a worker thread)."""
        self._server = _FlightService(f"grpc://{self.spec.host}:{self.spec.port}", self._topics, self._portal)
        self.port = self._server.port
        self._server._location = self.url

    def stop(self) -> None:
        """Wait for calls in progress (live streams end when their topics close), then stop."""
        if self._server is not None:
            self._server.shutdown()
