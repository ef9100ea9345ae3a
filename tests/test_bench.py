"""The benchmark tools run and report: corpora are deterministic and parse cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from bench.corpus import generate

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", ["clickstream", "logs", "metrics"])
def test_corpus_is_seeded_and_valid_for_its_config(kind):
    data = generate(kind, 500, seed=3)
    assert data == generate(kind, 500, seed=3) and data != generate(kind, 500, seed=4)
    parser = engine.Parser(engine.load_config(ROOT / f"configs/examples/{kind}.yaml").streams[kind])
    result = parser.parse_ndjson(data)
    assert result.received == 500 and result.rejected == 0, result.rejects.to_pylist()[:3]


def test_parse_benchmark_runs_all_peers_and_prints_ratios():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.parse",
            "--corpus",
            "clickstream",
            "--messages",
            "2000",
            "--repeat",
            "1",
            "--processes",
            "2",
            "--markdown",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    for peer in ("quiver", "pyarrow", "msgspec", "orjson"):
        assert peer in proc.stdout
    assert re.search(r"threading layer: (omp|tbb|workqueue)\)", proc.stdout)  # the layer the peers ran on
    assert "processes=2" in proc.stdout
    assert proc.stderr.count("process 2/2: quiver median") == 1  # each process measured apart


@pytest.mark.parametrize(("transport", "consumer"), [("tcp", "http"), ("http", "flight")])
def test_load_generator_checks_every_message_end_to_end(transport, consumer):
    from bench.loadgen import run_load

    result = run_load(rate=20_000, seconds=1.0, connections=2, transport=transport, consumer=consumer)
    assert result.errors == []
    assert result.sent == 20_000 and result.received == result.sent
    assert result.lost == 0 and result.duplicates == 0
    assert result.server_received == result.sent and result.server_rejected == 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms


def test_load_generator_stamps_are_fixed_width_json():
    import json

    from bench.loadgen import PER_PRODUCER, SEQ_BASE, Templates

    t = Templates(chunk=10, count=100)
    lines = t.stamp(3, SEQ_BASE + 2 * PER_PRODUCER + 40, 1_732_579_200_123_456_789).splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["seq"] - SEQ_BASE for d in docs] == [2 * PER_PRODUCER + 40 + k for k in range(10)]
    assert {d["sent_ns"] for d in docs} == {1_732_579_200_123_456_789}


def test_load_generator_records_latency_and_memory_over_time():
    from bench.loadgen import run_load

    result = run_load(rate=20_000, seconds=1.0)
    assert result.lost == 0 and result.timeline and result.rss
    times = [t for t, _, _ in result.timeline]
    assert times == sorted(times) and all(p50 <= mx for _, p50, mx in result.timeline)
    assert result.peak_rss_mb == max(mb for _, mb in result.rss) > 0
    # the event loop's thread is one of the server's threads: its share is part of the whole
    assert 0 <= result.server_loop_cpu_pct <= result.server_cpu_pct


def test_the_suite_runs_quick_and_writes_its_report(tmp_path):
    """`python -m bench all --quick`: every service at every quick rate, allocations,
    scaling, plots; the report says what was measured (no times are asserted)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--quick", "--seconds", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "RESULTS.md").read_text()
    for service in ("quiver", "asyncio+orjson", "asyncio+pyarrow.json"):
        assert f"| {service} |" in report
    for heading in (
        "### CPU beside the read floor",
        "### Targets",
        "## Python allocations on the hot path",
        "## Kernel scaling",
        "threading layer",
    ):
        assert heading in report
    for plot in ("latency_over_time.png", "cpu_vs_rate.png", "rss.png", "threads.png"):
        assert (tmp_path / "results" / plot).read_bytes()[:4] == b"\x89PNG"
        assert f"(results/{plot})" in report
    saved = json.loads((tmp_path / "results" / "runs.json").read_text())
    runs = saved["runs"]
    assert len(runs) == 9 and all(r["lost"] == 0 and r["duplicates"] == 0 for r in runs)
    # the read floor ran at each fixed quick rate and read every byte its producer sent
    floors = saved["read_floor"]
    assert sorted(f["rate"] for f in floors) == [10_000, 50_000]
    assert all(f["sent_bytes"] > 0 and f["read_bytes"] == f["sent_bytes"] and f["cpu_pct"] >= 0 for f in floors)
    assert "| 10k/s | " in report.split("### CPU beside the read floor")[1]


def test_soak_samples_every_second_and_reports_nothing_lost(tmp_path):
    """`python -m bench soak` for a few seconds at a low rate: every message arrives, the
    report and the plot are written (no figure is asserted but the loss count)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--seconds", "3", "--rate", "5000", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lost 0  duplicates 0  server counts ok" in proc.stdout
    report = (tmp_path / "soak.md").read_text()
    assert "**0 lost**" in report and "15,000 sent" in report and "Verdict: memory is" in report
    assert report.count("\n| ") >= 3  # the table's header and a row per period
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"
