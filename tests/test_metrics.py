"""GET /metrics over loopback: Prometheus text that parses, with the engine's real counts."""

from __future__ import annotations

import socket
import urllib.request

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import Engine, load_config
from tests.live import SERVICE_YAML, drain, message, send_tcp, wait_until

pytestmark = pytest.mark.anyio


def scrape(url: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:
        ctype = resp.headers["content-type"]
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return ctype, samples


async def test_metrics_report_the_engine_counts_by_stream_error_topic_and_listener():
    cfg = load_config(
        SERVICE_YAML.replace(
            "limits: {max_message_bytes: 4KiB}", "limits: {max_message_bytes: 4KiB, idle_timeout_s: 0.3}"
        )
    )
    rows = []
    async with anyio.create_task_group() as tg, Engine(cfg) as eng:
        tg.start_soon(drain, eng.subscribe("events"), rows)
        port = eng.tcp[0].port
        data = b"".join(message(i) + b"\n" for i in range(100)) + b'{"seq": "x"}\n{oops\n\n'
        await anyio.to_thread.run_sync(send_tcp, port, data)
        with socket.create_connection(("127.0.0.1", port)) as s:  # idles out, a partial pending
            s.sendall(b'{"seq": 1')
            s.settimeout(20)
            await anyio.to_thread.run_sync(s.recv, 1)
        await wait_until(
            lambda: eng.stats("events")["received"] == 102 and eng.stats("events")["discarded_partials"] == 1
        )
        ctype, m = await anyio.to_thread.run_sync(scrape, eng.http[0].url)
        stats = eng.stats("events")
    assert ctype.startswith("text/plain; version=0.0.4")
    ev = (("stream", "events"),)
    assert m[("quiver_messages_received_total", ev)] == stats["received"] == 102
    assert m[("quiver_messages_accepted_total", ev)] == 100
    assert m[("quiver_messages_rejected_total", (("error", "invalid_json"), ("stream", "events")))] == 1
    assert m[("quiver_messages_rejected_total", (("error", "type_mismatch"), ("stream", "events")))] == 1
    # every code has a sample, zeros too, so sums and rates over them see every stream
    assert m[("quiver_messages_rejected_total", (("error", "too_deep"), ("stream", "events")))] == 0
    assert m[("quiver_partial_messages_discarded_total", ev)] == 1
    assert m[("quiver_blank_lines_total", ev)] == 1
    assert m[("quiver_received_bytes_total", ev)] == stats["bytes"]
    assert m[("quiver_batches_total", ev)] == stats["batches"] >= 1
    assert m[("quiver_batch_latency_seconds_count", ev)] >= 1
    assert (
        m[("quiver_batch_latency_seconds_bucket", (("le", "+Inf"), ("stream", "events")))]
        == m[("quiver_batch_latency_seconds_count", ev)]
    )
    assert m[("quiver_messages_received_total", (("stream", "other"),))] == 0
    assert m[("quiver_consumers", (("topic", "events"),))] == 1
    assert m[("quiver_consumers", (("topic", "events.rejects"),))] == 0
    assert m[("quiver_batches_published_total", (("topic", "events.rejects"),))] >= 1
    tcp = eng.tcp[0].url
    assert m[("quiver_limit_hits_total", (("limit", "idle_timeout"), ("listener", tcp)))] == 1
    assert ("quiver_backpressure_seconds_total", ev) in m


async def test_two_engines_in_one_process_each_report_only_themselves():
    async with Engine(load_config(SERVICE_YAML)) as a, Engine(load_config(SERVICE_YAML)) as b:
        await a.ingest("events", message(1) + b"\n")
        _, ma = await anyio.to_thread.run_sync(scrape, a.http[0].url)
        _, mb = await anyio.to_thread.run_sync(scrape, b.http[0].url)
    key = ("quiver_messages_received_total", (("stream", "events"),))
    assert (ma[key], mb[key]) == (1, 0)
