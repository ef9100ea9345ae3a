"""``quiver serve`` as a real subprocess: ready line, live consumers, clean stop on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pyarrow as pa

from engine.cli import main
from tests.live import SERVICE_YAML, message, send_tcp


def _ready_line(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300  # a cold Numba cache compiles the kernels first
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("quiver ready"):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no ready line; exit code {proc.poll()}")


def test_serve_runs_until_sigterm_and_delivers_everything(tmp_path: Path):
    config = tmp_path / "serve.yaml"
    config.write_text(SERVICE_YAML)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "-c", str(config), "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _ready_line(proc)
        tcp = int(re.search(r"tcp://127\.0\.0\.1:(\d+) \(events, newline\)", line).group(1))
        http = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
        assert re.search(r"grpc://127\.0\.0\.1:\d+", line)
        got = {}

        def consume() -> None:
            with urllib.request.urlopen(f"{http}/v1/streams/events/arrow", timeout=60) as resp:
                got["table"] = pa.ipc.open_stream(resp).read_all()

        reader = threading.Thread(target=consume)
        reader.start()
        for _ in range(500):
            streams = json.load(urllib.request.urlopen(f"{http}/v1/streams", timeout=10))["streams"]
            if streams[0]["consumers"]["arrow"] == 1:
                break
            time.sleep(0.02)
        # the last message has no newline: the clean end of the connection completes it
        send_tcp(tcp, b"\n".join(message(i) for i in range(1000)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        reader.join(30)
        assert got["table"].column("seq").to_pylist() == list(range(1000))
        logs = proc.stderr.read()
        assert "signal name=SIGTERM" in logs and "stopped stats=" in logs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_reports_a_bad_config_with_its_key_path(tmp_path: Path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(SERVICE_YAML.replace("kind: http", "kind: htp"))
    assert main(["serve", "-c", str(config)]) == 2
    assert "listen.3.kind" in capsys.readouterr().err
