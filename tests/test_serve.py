"""``quiver serve`` as a real subprocess: ready line, live consumers, clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from engine.cli import main
from tests.live import SERVICE_YAML, message, send_tcp


@contextlib.contextmanager
def _service(tmp_path: Path, yaml: str, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """``quiver serve`` on ``yaml`` as a subprocess (stdout and stderr piped), killed if
    the test leaves it running."""
    config = tmp_path / "serve.yaml"
    config.write_text(yaml)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "-c", str(config), "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ready_line(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300  # a cold Numba cache compiles the kernels first
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("quiver ready"):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no ready line; exit code {proc.poll()}")


def test_a_stderr_that_nobody_reads_never_stalls_the_service(tmp_path: Path):
    """A supervisor or harness that reads stderr only at the end fills its pipe (64 KiB)
    within a few hundred logged connections: writing lines in place, the event loop would
    block there, and every producer and consumer with it."""
    with _service(tmp_path, SERVICE_YAML) as proc:  # stderr piped, and never read here
        line = _ready_line(proc)
        tcp = int(re.search(r"tcp://127\.0\.0\.1:(\d+) \(events, newline\)", line).group(1))
        http = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
        for i in range(1500):  # each close logs a line of about 100 bytes: 150 KB
            with socket.create_connection(("127.0.0.1", tcp)) as s:
                s.sendall(message(i) + b"\n")
        for _ in range(500):
            stats = json.load(urllib.request.urlopen(f"{http}/v1/streams", timeout=10))["streams"][0]["stats"]
            if stats["received"] == 1500:
                break
            time.sleep(0.02)
        assert stats["accepted"] == 1500
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # lines still queued wait at most a moment
        assert time.monotonic() - began < 15
        assert "connection_closed" in proc.stderr.read()


def test_serve_runs_until_sigterm_and_delivers_everything(tmp_path: Path):
    with _service(tmp_path, SERVICE_YAML) as proc:
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


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """``main(["serve", ...])`` in this process points Quiver's loggers at its log thread
    (no propagation): put them back, so later tests' logs reach pytest as before."""
    names = ("quiver", "uvicorn", "uvicorn.error", "uvicorn.access")
    loggers = {n: logging.getLogger(n) for n in names}
    saved = {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in loggers.items()}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_serve_reports_a_bad_config_with_its_key_path(tmp_path: Path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(SERVICE_YAML.replace("kind: http", "kind: htp"))
    assert main(["serve", "-c", str(config)]) == 2
    assert "listen.3.kind" in capsys.readouterr().err


def test_serve_refuses_to_start_with_one_line_and_its_exit_code(tmp_path: Path, capsys, monkeypatch, logging_restored):
    """Refusals found while starting (after the config loaded) are as plain as config errors."""
    monkeypatch.delenv("QUIVER_TEST_NO_TOKEN", raising=False)
    config = tmp_path / "auth.yaml"
    config.write_text(SERVICE_YAML + "auth: {token_env: QUIVER_TEST_NO_TOKEN}\n")
    assert main(["serve", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "quiver: auth.token_env: environment variable QUIVER_TEST_NO_TOKEN is not set (or empty)"
    locked = tmp_path / "locked.yaml"
    locked.write_text(SERVICE_YAML + f"data_dir: {tmp_path / 'data'}\n")
    with _service(tmp_path, locked.read_text()) as first:
        _ready_line(first)
        assert main(["serve", "-c", str(locked)]) == 1  # the data_dir is the first one's
        err = capsys.readouterr().err
        assert err.startswith("quiver: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _serve(config: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = _ready_line(proc)
    return proc, re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)


def test_kill_9_during_http_load_loses_no_acknowledged_record(tmp_path: Path):
    """durability: batch means a 200 is on disk: after SIGKILL and a restart, every
    acknowledged record is in the segments exactly once, and numbering goes on."""
    data_dir = tmp_path / "data"
    config = tmp_path / "durable.yaml"
    text = SERVICE_YAML.replace(
        "    arenas: 3\n", "    arenas: 3\n    durability: batch\n    segments: {max_bytes: 64KiB}\n"
    )
    config.write_text(text + f"data_dir: {data_dir}\n")
    proc, http = _serve(config)
    acked: list[int] = []
    sent_any = threading.Event()

    def producer(p: int) -> None:
        k = 0
        while True:
            seqs = [(p * 1_000_000) + k * 40 + i for i in range(40)]
            body = b"\n".join(message(s) for s in seqs) + b"\n"
            req = urllib.request.Request(f"{http}/v1/streams/events", data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    receipt = json.load(r)
            except OSError:
                return  # the server is gone
            assert receipt["accepted"] == 40
            acked.extend(seqs)
            sent_any.set()
            k += 1

    try:
        threads = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        assert sent_any.wait(60)
        time.sleep(1.0)
        proc.kill()  # SIGKILL: no shutdown code runs
        proc.wait(30)
        for t in threads:
            t.join(60)
        acked_at_kill = list(acked)
        assert len(acked_at_kill) > 200

        proc, http = _serve(config)  # recovers the segments
        body = b"\n".join(message(s) for s in range(9_000_000, 9_000_010)) + b"\n"
        req = urllib.request.Request(f"{http}/v1/streams/events", data=body, method="POST")
        assert json.load(urllib.request.urlopen(req, timeout=30))["accepted"] == 10
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = tmp_path / "all.arrow"
    assert main(["export", "-c", str(config), "--stream", "events", "-o", str(out)]) == 0
    reader = pa.ipc.open_file(out)
    seqs = [int(reader.get_batch_with_custom_metadata(i)[1][b"quiver.seq"]) for i in range(reader.num_record_batches)]
    assert seqs == list(range(len(seqs)))  # contiguous across the crash
    stored = reader.read_all().column("seq").to_pylist()
    assert len(stored) == len(set(stored))  # nothing twice
    assert set(acked_at_kill) <= set(stored)  # nothing acknowledged lost
    assert set(range(9_000_000, 9_000_010)) <= set(stored)


STUCK_FLIGHT_YAML = """
streams:
  events:
    fields:
      seq:  {type: int64, required: true}
      name: {type: string}
    batch: {max_messages: 65536, max_bytes: 1MiB, linger_ms: 20}
    slow_consumer: disconnect
    consumer_queue: 4
listen:
  - {kind: tcp, port: 0, stream: events}
  - {kind: flight, port: 0}
limits: {max_message_bytes: 64KiB}
kernels: {threads: 1}
"""


def test_serve_exits_on_sigterm_beside_a_flight_client_that_stopped_reading(tmp_path: Path):
    """Flight's stop waits for every call, and a client that stopped reading never ends its
    own: the service gives up on it and still exits, 0, soon after FLIGHT_STOP_S."""
    import pyarrow.flight as fl

    from engine.service import FLIGHT_STOP_S

    with _service(tmp_path, STUCK_FLIGHT_YAML) as proc:
        line = _ready_line(proc)
        tcp = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", line).group(1))
        grpc = re.search(r"(grpc://127\.0\.0\.1:\d+)", line).group(1)
        client = fl.connect(grpc)
        reader = client.do_get(fl.Ticket(b"events"))  # opened, never read
        assert reader.schema.names  # its schema came: the server has subscribed it
        # enough Arrow data to fill gRPC's flow-control windows, so the server's write blocks
        send_tcp(tcp, b"\n".join(b'{"seq":%d,"name":"%s"}' % (i, b"p" * 400) for i in range(100_000)))
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(FLIGHT_STOP_S + 30) == 0
        assert time.monotonic() - t0 < FLIGHT_STOP_S + 10
        assert "flight_stop_abandoned" in proc.stderr.read()
        del reader


def test_a_second_sigterm_during_the_drain_exits_at_once(tmp_path: Path):
    """The drain may wait up to shutdown_timeout (30 s) for a consumer that is not reading:
    a second signal is the operator saying "now"."""
    with _service(tmp_path, STUCK_FLIGHT_YAML.replace("slow_consumer: disconnect", "slow_consumer: block")) as proc:
        line = _ready_line(proc)
        tcp = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", line).group(1))
        grpc = re.search(r"(grpc://127\.0\.0\.1:\d+)", line).group(1)
        import pyarrow.flight as fl

        reader = fl.connect(grpc).do_get(fl.Ticket(b"events"))  # opened, never read: holds the stream up
        assert reader.schema.names  # its schema came: the server has subscribed it
        producer = socket.create_connection(("127.0.0.1", tcp))
        producer.settimeout(3)
        with contextlib.suppress(TimeoutError):  # the stream is held up: it stops reading
            producer.sendall(b"\n".join(b'{"seq":%d,"name":"%s"}' % (i, b"p" * 400) for i in range(100_000)))
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(2)  # draining, held up by the consumer
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 1
        assert "again action=exiting now" in proc.stderr.read()
        producer.close()
        del reader


def test_a_signal_during_start_up_exits_at_once(tmp_path: Path):
    """A cold start compiles the kernels for about a minute; SIGTERM then means "do not start"."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cold-cache")}  # nothing cached: a long start
    with _service(tmp_path, SERVICE_YAML, env=env) as proc:
        deadline = time.monotonic() + 120
        while "warming stream=" not in (line := proc.stderr.readline()):
            assert line and time.monotonic() < deadline, "no warming line"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "during start-up action=exiting now" in proc.stderr.read()
        assert "quiver ready" not in proc.stdout.read()


def test_consumers_still_replaying_at_sigterm_get_everything_and_a_clean_end(tmp_path: Path):
    """They are not live subscribers yet: the drain waits for them too, where the listeners'
    own stops would cut them off within seconds."""
    yaml = SERVICE_YAML + f"data_dir: {tmp_path / 'data'}\n"
    with _service(tmp_path, yaml) as proc:
        http = re.search(r"(http://127\.0\.0\.1:\d+)", _ready_line(proc)).group(1)
        for k in range(200):  # about 20 MB of Arrow: far more than socket buffers hold
            body = b"\n".join(message(i) for i in range(k * 2000, (k + 1) * 2000)) + b"\n"
            urllib.request.urlopen(urllib.request.Request(f"{http}/v1/streams/events", data=body), timeout=30)
        got: dict = {"seqs": []}
        started = threading.Event()

        def slow_replay() -> None:
            try:
                with urllib.request.urlopen(f"{http}/v1/streams/events/arrow?from=earliest", timeout=60) as resp:
                    reader = pa.ipc.open_stream(resp)
                    while True:
                        try:
                            _, meta = reader.read_next_batch_with_custom_metadata()
                        except StopIteration:
                            break
                        if meta is not None:
                            got["seqs"].append(int(meta[b"quiver.seq"]))
                            started.set()
                            time.sleep(0.012)  # 800 batches: about 10 s, past the listeners' 5 s
                got["end"] = "clean"
            except Exception as exc:  # noqa: BLE001
                got["end"] = exc

        reader = threading.Thread(target=slow_replay)
        reader.start()
        assert started.wait(30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        reader.join(60)
    assert got["end"] == "clean", got["end"]
    assert got["seqs"] == list(range(len(got["seqs"]))) and len(got["seqs"]) >= 800
