"""The benchmark peers (bench/peers): their parsing against Quiver's, and each one end to end as
a real subprocess driven over TCP and read over HTTP, the way bench/loadgen.py drives them."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request
from collections import Counter

import numpy as np
import orjson
import pyarrow as pa
import pytest

import engine
from bench.loadgen import CONFIG, SEQ_BASE, STREAM, Server, Templates
from bench.peers.frontend import Ingest
from bench.peers.plain import PlainIngest
from bench.peers.pyarrow_json import PyArrowJsonIngest

PEERS = {"plain": PlainIngest, "pyarrow_json": PyArrowJsonIngest}
BASE = {
    "seq": 1,
    "sent_ns": 1_700_000_000_000_000_000,
    "ts": 1732579200435,
    "user_id": 7,
    "session": "s_0123456789abcdef",
    "event": "view",
    "url": "/p/1",
    "price": 9.99,
    "ok": True,
    "ua": "curl/8.5.0",
}


@pytest.fixture(scope="module")
def stream() -> engine.StreamConfig:
    return engine.load_config(CONFIG).streams[STREAM]


def _msg(tag: int, **changes) -> bytes:
    """A clickstream message with seq ``tag`` and the given fields changed (``...``: left out)."""
    body = {**BASE, "seq": tag, **changes}
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def _corpus(n: int) -> bytes:
    templates = Templates(1000, count=max(n, 1000))
    return b"".join(templates.stamp(c, SEQ_BASE + c * 1000, time.time_ns()) for c in range(n // 1000))


def _parse(ingest: Ingest, lines: list[bytes]):
    ingest.add(lines)
    return ingest.take()()


# a line per rule: (line, the error code it must get, or None if it is accepted)
CASES = [
    (_msg(1), None),
    (_msg(2, ts="2024-11-26T00:00:00.5+01:00"), None),  # RFC 3339 text for an epoch-ms column
    (_msg(3, price=None, ok=..., ua=...), None),  # optional: null or absent
    (_msg(4, price=3), None),  # an integer literal in a float field
    (_msg(5, extra={"x": [1]}), None),  # unknown fields are ignored
    (b'{"seq": 6, "sent_ns":', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (_msg(7, url=...), "missing_required"),
    (_msg(8, seq=None), "missing_required"),
    (_msg(9, user_id=0), "out_of_range"),  # min: 1
    (_msg(10, price=2_000_000.5), "out_of_range"),  # max: 1000000
    (_msg(11, session="short"), "too_short"),
    (_msg(12, session="s" * 65), "too_long"),
    (_msg(13, event="refund"), "not_in_enum"),
    (_msg(14, user_id="7"), "type_mismatch"),
    (_msg(15, ok=1), "type_mismatch"),
    (_msg(16, ts="yesterday"), "type_mismatch"),
    (_msg(17, ua="x" * (70 << 10)), "too_large"),  # limits.max_message_bytes: 64KiB
]


@pytest.mark.parametrize("peer", PEERS)
def test_every_rule_rejects_and_counts_like_quiver(stream, peer):
    lines = [line for line, _ in CASES]
    built = _parse(PEERS[peer](stream), [*lines[:3], b"", b"  \r", *lines[3:]])
    want = Counter(code for _, code in CASES if code)
    assert (built.received, built.rejected, built.blank) == (len(CASES), sum(want.values()), 2)
    assert built.errors == want
    assert built.batch.schema.equals(engine.Parser(stream).schema, check_metadata=True)
    assert built.batch.column("seq").to_pylist() == [orjson.loads(line)["seq"] for line, code in CASES if not code]
    # what Quiver makes of the same lines
    quiver = engine.Parser(stream).parse_ndjson(b"\n".join(lines))
    assert quiver.batch.column("seq").to_pylist() == built.batch.column("seq").to_pylist()
    assert built.batch.column("ts").to_pylist() == quiver.batch.column("ts").to_pylist()
    assert built.batch.column("price").to_pylist() == quiver.batch.column("price").to_pylist()


def test_pyarrow_json_checks_rules_vectorised_without_falling_back(stream, monkeypatch):
    ingest = PyArrowJsonIngest(stream)
    monkeypatch.setattr(ingest, "_per_line", lambda lines: pytest.fail("fell back to the per-line path"))
    lines = [_msg(1), _msg(2, price=None, ok=None, ua=None), _msg(3, user_id=0), _msg(4, price=2e6)]
    lines += [_msg(5, session="short"), _msg(6, session="s" * 65), _msg(7, event="refund"), _msg(8, seq=None)]
    built = _parse(ingest, lines)
    assert built.batch.column("seq").to_pylist() == [1, 2]
    assert built.errors == Counter(out_of_range=2, too_short=1, too_long=1, not_in_enum=1, missing_required=1)
    assert built.batch.column("event").dictionary.to_pylist() == ["view", "click", "add_to_cart", "purchase"]


@pytest.mark.parametrize("peer", PEERS)
def test_corpus_batch_equals_quivers(stream, peer):
    data = _corpus(3000)
    built = _parse(PEERS[peer](stream), data.split(b"\n")[:-1])
    quiver = engine.Parser(stream).parse_ndjson(data)
    assert (built.received, built.rejected) == (3000, 0)
    assert built.batch.equals(quiver.batch)


# --------------------------------------------------------------------------------------------
# end to end: a real subprocess, real sockets


class _Reader(threading.Thread):
    """Reads the live Arrow stream until its end-of-stream marker."""

    def __init__(self, http: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{http}/v1/streams/{STREAM}/arrow"
        self.batches: list[pa.RecordBatch] = []
        self.schema: pa.Schema | None = None
        self.subscribed = threading.Event()
        self.ended = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=60) as resp:
                self.subscribed.set()  # the peer subscribes before it sends the headers
                reader = pa.ipc.open_stream(resp)
                self.schema = reader.schema
                for batch in reader:
                    if batch.num_rows:  # the first one is empty: it only carries the schema
                        self.batches.append(batch)
            self.ended = True
        except BaseException as exc:
            self.error = exc
            self.subscribed.set()

    def seqs(self) -> np.ndarray:
        return np.concatenate([b.column("seq").to_numpy() for b in self.batches] or [np.array([], np.int64)])


def _wait_for(cond, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("peer", PEERS)
def test_peer_service_end_to_end(stream, peer):
    server = Server.spawn(CONFIG, module=f"bench.peers.{peer}")
    reader = _Reader(server.http)
    try:
        reader.start()
        assert reader.subscribed.wait(15) and reader.error is None
        data = _corpus(4000)  # seq SEQ_BASE .. SEQ_BASE + 3999
        lines = data.split(b"\n")[:-1]
        invalid = [b'{"seq": 1, "sent_ns": 2', _msg(1, url=...), _msg(2, price=1e7)]  # bad JSON, missing, > max
        # producer 1: in pieces that cut lines, invalid lines among the good ones, clean EOF
        first = b"\n".join([*lines[:1500], *invalid, *lines[1500:3000]]) + b"\n"
        with socket.create_connection(("127.0.0.1", server.tcp)) as s:
            for k in range(0, len(first), 7919):
                s.sendall(first[k : k + 7919])
            s.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b""  # the peer closes its side after EOF
        # producer 2: an unterminated last line at a clean EOF is a message
        with socket.create_connection(("127.0.0.1", server.tcp)) as s:
            s.sendall(b"\n".join(lines[3000:3500]))
            s.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b""
        assert _wait_for(lambda: len(reader.seqs()) >= 3500), len(reader.seqs())
        stats = server.stats()
        assert stats["received"] == 3503 and stats["rejected"] == 3
        assert stats["received"] == stats["accepted"] + stats["rejected"]
        # producer 3: still connected when SIGTERM comes; what it sent must be delivered
        late = socket.create_connection(("127.0.0.1", server.tcp))
        late.sendall(b"\n".join(lines[3500:]) + b"\n")
        time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        assert late.recv(1) == b""  # drained, then closed
        late.close()
        assert server.proc.wait(30) == 0
        reader.join(15)
        assert reader.ended and reader.error is None
        seqs = np.sort(reader.seqs())
        assert np.array_equal(seqs, SEQ_BASE + np.arange(4000))  # every valid message exactly once
        assert reader.schema.equals(engine.Parser(stream).schema, check_metadata=True)
        assert all(b.schema == reader.schema for b in reader.batches)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_streams_endpoint_answers_json(stream):
    server = Server.spawn(CONFIG, module="bench.peers.plain")
    try:
        with urllib.request.urlopen(f"{server.http}/v1/streams", timeout=10) as resp:
            body = json.load(resp)
        assert body["streams"][0]["name"] == STREAM
        stats = body["streams"][0]["stats"]
        assert (stats["received"], stats["accepted"], stats["rejected"]) == (0, 0, 0)
        assert server.stop() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_batches_are_cut_at_max_messages_and_the_partial_one_is_flushed_at_shutdown(tmp_path):
    text = CONFIG.read_text()
    batch = "batch: {max_messages: 65536, max_bytes: 16MiB, linger_ms: 20}"
    assert batch in text
    config = tmp_path / "small_batches.yaml"
    config.write_text(text.replace(batch, "batch: {max_messages: 100, linger_ms: 60000}"))
    server = Server.spawn(config, module="bench.peers.pyarrow_json")
    reader = _Reader(server.http)
    try:
        reader.start()
        assert reader.subscribed.wait(15) and reader.error is None
        with socket.create_connection(("127.0.0.1", server.tcp)) as s:
            s.sendall(b"\n".join(_corpus(2000).split(b"\n")[:1950]) + b"\n")
            s.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b""
        assert _wait_for(lambda: len(reader.seqs()) >= 1900)
        time.sleep(0.2)  # the linger is a minute: nothing more comes until shutdown
        assert [b.num_rows for b in reader.batches] == [100] * 19
        assert server.stats()["received"] == 1900  # counted per batch
        assert server.stop() == 0
        reader.join(15)
        assert reader.ended and reader.error is None
        assert [b.num_rows for b in reader.batches[19:]] == [50]
        assert np.array_equal(reader.seqs(), SEQ_BASE + np.arange(1950))
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
