"""The benchmark tools run and report: corpora are deterministic and parse cleanly."""

from __future__ import annotations

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
    assert "threading layer" in proc.stdout
