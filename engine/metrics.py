"""Prometheus metrics of a running Engine, served as ``GET /metrics`` by the HTTP listener.

Nothing on the data path touches prometheus-client: the pipelines, batchers, topics and
listeners keep plain counters (most of which they keep anyway for ``GET /v1/streams``), and
``EngineCollector`` reads them when Prometheus scrapes. So a scrape costs a few microseconds
per stream and the hot path pays nothing for being observed.

Every family is named per Prometheus conventions (``quiver_`` prefix, base units,
``_total`` counters) and labelled by ``stream``, ``topic`` (``<stream>`` or
``<stream>.rejects``) or ``listener`` (its URL).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from kernels.errors import ERROR_NAMES

if TYPE_CHECKING:
    from engine.service import Engine

#: The Content-Type of Prometheus' text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    """Reads an Engine's counters at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        eng = self._engine
        streams = list(eng.streams.values())

        def per_stream(name: str, doc: str, value, kind=CounterMetricFamily) -> Metric:
            family = kind(name, doc, labels=["stream"])
            for s in streams:
                family.add_metric([s.name], value(s))
            return family

        yield per_stream(
            "quiver_messages_received", "Messages received (accepted + rejected).", lambda s: s.stats.received
        )
        yield per_stream(
            "quiver_messages_accepted", "Messages accepted into record batches.", lambda s: s.stats.accepted
        )
        rejected = CounterMetricFamily(
            "quiver_messages_rejected",
            "Messages sent to the dead-letter topic, by error code.",
            labels=["stream", "error"],
        )
        for s in streams:  # every code, zeros too: a sum or a rate over them sees each stream
            for error in ERROR_NAMES[1:]:
                rejected.add_metric([s.name, error], s.stats.errors.get(error, 0))
        yield rejected
        yield per_stream(
            "quiver_partial_messages_discarded",
            "Partial messages of connections that broke or timed out mid-message (never received).",
            lambda s: s.stats.discarded_partials,
        )
        yield per_stream(
            "quiver_messages_dropped",
            "Whole messages read from producers but never parsed: a shutdown ran out of time.",
            lambda s: s.stats.dropped,
        )
        yield per_stream("quiver_blank_lines", "Blank lines skipped by newline framing.", lambda s: s.stats.blank)
        yield per_stream("quiver_received_bytes", "Framed input bytes parsed.", lambda s: s.stats.bytes)
        yield per_stream("quiver_batches", "Record batches parsed.", lambda s: s.stats.batches)
        yield per_stream(
            "quiver_backpressure_seconds",
            "Time producers waited for a free arena (the stream was behind).",
            lambda s: s.batcher.backpressure_s,
        )
        yield per_stream(
            "quiver_internal_errors",
            "Arenas whose processing failed; their messages went to dead letters as internal_error.",
            lambda s: s.pipeline.internal_errors,
        )
        yield per_stream(
            "quiver_storage_errors",
            "Segment writes or fsyncs that failed (and were retried).",
            lambda s: s.pipeline.storage_errors,
        )
        yield per_stream(
            "quiver_free_arenas", "Arenas free to take input.", lambda s: s.pool.available, kind=GaugeMetricFamily
        )
        latency = HistogramMetricFamily(
            "quiver_batch_latency_seconds",
            "From an arena's flush to its batches being published (parse, store, fan out).",
            labels=["stream"],
        )
        for s in streams:
            h = s.pipeline.latency
            latency.add_metric([s.name], h.buckets(), h.sum)
        yield latency
        yield from self._topics()
        yield from self._listeners()

    def _topics(self) -> Iterator[Metric]:
        topics = list(self._engine.topics().values())
        consumers = GaugeMetricFamily("quiver_consumers", "Live consumers subscribed.", labels=["topic"])
        drops = CounterMetricFamily("quiver_consumer_drops", "Consumers dropped (slow, or shutdown).", labels=["topic"])
        published = CounterMetricFamily("quiver_batches_published", "Batches published.", labels=["topic"])
        next_seq = GaugeMetricFamily("quiver_next_seq", "Sequence number of the next batch.", labels=["topic"])
        retained = GaugeMetricFamily("quiver_retained_bytes", "Bytes of segment files on disk.", labels=["topic"])
        for t in topics:
            consumers.add_metric([t.name], t.consumers)
            drops.add_metric([t.name], t.dropped)
            published.add_metric([t.name], t.published)
            next_seq.add_metric([t.name], t.next_seq)
            if t.log is not None:
                retained.add_metric([t.name], t.log.nbytes)
        yield from (consumers, drops, published, next_seq, retained)

    def _listeners(self) -> Iterator[Metric]:
        eng = self._engine
        connections = GaugeMetricFamily("quiver_connections", "Open producer connections.", labels=["listener"])
        hits = CounterMetricFamily(
            "quiver_limit_hits", "Connections or requests ended by a limit, by limit.", labels=["listener", "limit"]
        )
        for t in eng.tcp:
            connections.add_metric([t.url], t.connections)
            for limit, n in sorted(t.limit_hits.items()):
                hits.add_metric([t.url, limit], n)
        for h in eng.http:
            for limit, n in sorted(h.limit_hits.items()):
                hits.add_metric([h.url, limit], n)
        yield connections
        yield hits


def engine_registry(engine: Engine) -> CollectorRegistry:
    """A registry of one engine's metrics (not the global one: engines in one process,
    as in tests, each report only themselves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)
