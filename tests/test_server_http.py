"""The HTTP API over loopback with stdlib clients: POST receipts, limits, live Arrow streams."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from functools import partial

import anyio
import pyarrow as pa
import pytest

from engine import Engine, load_config
from engine.server import http as http_api
from tests.live import SERVICE_YAML, exchange, message, send_tcp, wait_until

pytestmark = pytest.mark.anyio


def request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    """(status, headers, parsed JSON body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


async def call(*args, **kwargs):
    return await anyio.to_thread.run_sync(lambda: request(*args, **kwargs))


@pytest.fixture(scope="module")
def config():
    return load_config(
        SERVICE_YAML.replace(
            "limits: {max_message_bytes: 4KiB}", "limits: {max_message_bytes: 4KiB, max_body_bytes: 64KiB}"
        )
    )


async def test_post_answers_with_counts_after_delivery(config):
    async with Engine(config) as eng:
        base = eng.http[0].url
        sub = eng.subscribe("events")
        body = message(1) + b"\n" + b'{"seq":"x"}\n' + message(2, "a" * 30) + b"\r\n\n" + message(3)
        status, _, answer = await call(f"{base}/v1/streams/events", body)
        assert status == 200
        assert (answer["accepted"], answer["rejected"]) == (2, 2)
        assert answer["errors"] == [
            {"index": 1, "error": "type_mismatch", "field": "seq", "position": 7},
            {"index": 2, "error": "too_long", "field": "name", "position": 16},
        ]
        assert (await sub.next_batch()).column("seq").to_pylist() == [1, 3]


async def test_gzip_bodies_are_inflated(config):
    async with Engine(config) as eng:
        body = gzip.compress(b"".join(message(i) + b"\n" for i in range(100)))
        status, _, answer = await call(f"{eng.http[0].url}/v1/streams/events", body, {"Content-Encoding": "gzip"})
        assert status == 200 and answer["accepted"] == 100
        status, _, answer = await call(f"{eng.http[0].url}/v1/streams/events", body[:-9], {"Content-Encoding": "gzip"})
        assert status == 400 and "ended early" in answer["error"]


async def test_limits_and_unknown_streams(config):
    async with Engine(config) as eng:
        base = eng.http[0].url
        status, _, answer = await call(f"{base}/v1/streams/nope", b"{}")
        assert status == 404 and answer["streams"] == ["events", "other"]
        status, _, answer = await call(f"{base}/v1/streams/events", b"x" * (65 << 10))
        assert status == 413 and "max_body_bytes" in answer["error"]
        bomb = gzip.compress(b'{"seq":1}\n' * 100_000)  # 1 MB inflated from a few KB
        status, _, answer = await call(f"{base}/v1/streams/events", bomb, {"Content-Encoding": "gzip"})
        assert status == 413 and answer["accepted"] < 7000  # only what fit under the cap was taken
        status, _, answer = await call(f"{base}/v1/streams/events", b"{}", {"Content-Encoding": "br"})
        assert status == 415
        status, _, _ = await call(f"{base}/v1/streams/events", method="GET")
        assert status == 405
        status, _, answer = await call(f"{base}/healthz")
        assert status == 200 and answer["status"] == "ok"
        for path in ("/healthz", "/metrics", "/v1/streams"):  # read-only routes
            status, headers, _ = await call(f"{base}{path}", b"{}", method="POST")
            assert (status, headers["Allow"]) == (405, "GET, HEAD"), path

            def head(path=path):
                conn = http.client.HTTPConnection("127.0.0.1", eng.http[0].port, timeout=10)
                conn.request("HEAD", path)
                resp = conn.getresponse()
                answer = resp.status, resp.read()
                conn.close()
                return answer

            assert await anyio.to_thread.run_sync(head) == (200, b""), path
        status, _, answer = await call(f"{base}/v1/streams")
        events = answer["streams"][0]
        assert events["name"] == "events"
        assert events["schema"][0] == {"name": "seq", "type": "int64", "nullable": False}
        assert events["stats"]["received"] == events["stats"]["accepted"] + events["stats"]["rejected"]


def _post_endless_body(port: int, declared: int) -> tuple[bytes, int]:
    """POST a body declared ``declared`` bytes long and keep sending it: (the answer, the
    body bytes sent before the server closed the connection)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % declared)
        s.settimeout(10)
        piece = b"x" * (1 << 20)
        answer = b""
        try:
            while sent < declared:
                s.sendall(piece)
                sent += len(piece)
        except OSError:  # reset or broken pipe: the server has closed
            pass
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, sent


async def test_a_refused_body_is_not_read_to_its_end(config):
    """413 on a declared length over max_body_bytes closes the connection (after a short
    lingering read, so the client sees the answer) instead of reading the whole body."""
    async with Engine(config) as eng:
        answer, sent = await anyio.to_thread.run_sync(_post_endless_body, eng.http[0].port, 10 << 30)
    assert answer.startswith(b"HTTP/1.1 413") and b"max_body_bytes" in answer
    assert sent < 1 << 30  # of 10 GiB declared (the server lingers for at most 16 MiB)


async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(config):
    body = b"".join(message(i) + b"\n" for i in range(10))
    request = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    async with Engine(config) as eng:  # ended our side as nc -N does
        answer = await anyio.to_thread.run_sync(partial(exchange, eng.http[0].port, request, half_close=True))
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and json.loads(text)["accepted"] == 10


async def test_live_streams_take_only_get(config):
    def answer(url: str, method: str):
        data = b"{}" if method in ("POST", "PUT") else None
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data, method=method), timeout=30) as resp:
                return resp.status, resp.headers["allow"]
        except urllib.error.HTTPError as err:
            return err.code, err.headers["allow"]

    async with Engine(config) as eng:
        for path in ("/v1/streams/events/arrow", "/v1/streams/events/rejects/arrow"):
            for method in ("POST", "HEAD", "PUT"):  # HEAD too: the GET answer never ends
                got = await anyio.to_thread.run_sync(answer, eng.http[0].url + path, method)
                assert got == (405, "GET"), (path, method)


async def test_pipelined_requests_then_a_half_close_get_every_answer(config):
    body = b"".join(message(i) + b"\n" for i in range(3))
    post = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    async with Engine(config) as eng:
        for pipelined, answers in ((post * 2, 2), (post * 3, 3), (post + get, 2)):
            out = await anyio.to_thread.run_sync(partial(exchange, eng.http[0].port, pipelined, half_close=True))
            assert out.count(b"HTTP/1.1 200") == answers, out  # a POST unanswered would be sent again
        assert eng.stats("events")["accepted"] == 3 * 6


async def test_a_refused_pipelined_request_waits_for_the_answers_before_it(config):
    """Junk or an oversize head after a whole POST (a body longer than its Content-Length,
    say): the POST's receipt comes first, then the refusal. Written at once, the refusal
    was all the client read, and it would send messages already taken again."""
    body = b"".join(message(i) + b"\n" for i in range(3))
    post = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    oversize = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (20 << 10) + b"\r\n\r\n"
    async with Engine(config) as eng:
        for follow, status in ((b"garbage\r\n\r\n", b"400"), (oversize, b"431"), (post + b"\x00junk\r\n\r\n", b"400")):
            out = await anyio.to_thread.run_sync(exchange, eng.http[0].port, post + follow)
            answers = out.split(b"HTTP/1.1 ")[1:]
            assert [a[:3] for a in answers] == [b"200"] * (1 + follow.startswith(b"POST")) + [status], out
            assert all(b'"accepted": 3' in a for a in answers[:-1])
        assert eng.stats("events")["accepted"] == 3 * 4
        # heads uvicorn refuses only once httptools has parsed them (a URL it cannot
        # split), and an oversize head with junk after it in the same read: one answer
        # each, in order
        fields = b"".join(b"X-H%03d: %s\r\n" % (i, b"h" * 200) for i in range(100))  # ~20 KiB
        for follow, status in (
            (b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
            (b"GET /healthz HTTP/1.1\r\n" + fields + b"\r\n\x00junk\r\n\r\n", b"431"),
        ):
            out = await anyio.to_thread.run_sync(exchange, eng.http[0].port, post + follow)
            assert [a[:3] for a in out.split(b"HTTP/1.1 ")[1:]] == [b"200", status], out
        assert eng.stats("events")["accepted"] == 3 * 6

        # a live consumer that sends junk: its stream goes on, no answer lands inside it
        url = eng.http[0].url

        def consume() -> list[int]:
            with socket.create_connection(("127.0.0.1", eng.http[0].port)) as s:
                s.sendall(b"GET /v1/streams/events/arrow HTTP/1.1\r\nHost: x\r\n\r\njunk\r\n\r\n")
                resp = http.client.HTTPResponse(s)
                resp.begin()
                return [v for b in pa.ipc.open_stream(resp) for v in b.column("seq").to_pylist()]

        reader = threading.Thread(target=lambda: got.extend(consume()))
        got: list[int] = []
        reader.start()
        await wait_until(lambda: eng.streams["events"].batches.consumers == 1)
        await call(f"{url}/v1/streams/events", message(7) + b"\n")
    await anyio.to_thread.run_sync(reader.join, 20)
    assert got == [7]  # then the end at shutdown: a whole stream


def _head(fields: int, size: int) -> bytes:
    """A GET head of exactly ``size`` bytes in ``fields`` fields written ``Name:value`` (no
    space after the colon: the least a field line may take)."""
    line = b"GET /healthz HTTP/1.1\r\n"
    names = [b"H%02d:" % i for i in range(fields)]
    pad = size - len(line) - sum(len(n) + 2 for n in names) - 2
    values = [b"v" * (pad // fields)] * (fields - 1) + [b"v" * (pad - (pad // fields) * (fields - 1))]
    head = line + b"".join(n + v + b"\r\n" for n, v in zip(names, values, strict=True)) + b"\r\n"
    assert len(head) == size
    return head


async def test_heads_and_trailers_within_max_header_bytes_are_served(config):
    """Right at the limit, however the bytes are split between reads and requests."""
    limit = int(config.limits.max_header_bytes)
    close = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    chunked = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = message(1) + b"\n"
    trailers = b"".join(b"X-T%02d: %s\r\n" % (i, b"t" * 1000) for i in range(9))  # 9 KiB
    post = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    second = post + b"".join(b"X-H%02d: %s\r\n" % (i, b"h" * 1000) for i in range(9)) + b"Connection: close\r\n\r\n"

    def pieces(*parts: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", eng.http[0].port)) as s:
            for part in parts:
                s.sendall(part)
                time.sleep(0.2)  # each part a read of its own
            s.settimeout(20)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    async with Engine(config) as eng:
        for fields in (1, 40, 80):
            out = await anyio.to_thread.run_sync(exchange, eng.http[0].port, _head(fields, limit) + close)
            assert [a[:3] for a in out.split(b"HTTP/1.1 ")[1:]] == [b"200", b"200"], fields
        # a chunked POST's 9 KiB of trailers and the next POST's 9 KiB head, in one read
        first = chunked + b"%x\r\n%s\r\n" % (len(body), body)
        out = await anyio.to_thread.run_sync(pieces, first, b"0\r\n" + trailers + b"\r\n" + second, body)
        assert [a[:3] for a in out.split(b"HTTP/1.1 ")[1:]] == [b"200", b"200"], out


async def test_transfer_codings_other_than_chunked_are_refused(config):
    """httptools reads such a body by its last coding (chunked) and would hand on the
    gzip or deflate bytes as they are, as NDJSON (RFC 9112: 501)."""
    body = gzip.compress(message(1) + b"\n")
    async with Engine(config) as eng:
        for coding in (b"gzip, chunked", b"deflate, chunked", b"foo, chunked"):
            request = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n" % coding
            out = await anyio.to_thread.run_sync(
                exchange, eng.http[0].port, request + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
            assert out.startswith(b"HTTP/1.1 501") and coding in out, out
        # Content-Encoding over several fields is one list: two gzips are not one
        two = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n"
        out = await anyio.to_thread.run_sync(
            exchange, eng.http[0].port, two + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert out.startswith(b"HTTP/1.1 415"), out
        # an expectation other than 100-continue cannot be met (RFC 9110 10.1.1)
        expect = (
            b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nExpect: the-unexpected\r\nContent-Length: 3\r\n\r\n{}\n"
        )
        out = await anyio.to_thread.run_sync(exchange, eng.http[0].port, expect)
        assert out.startswith(b"HTTP/1.1 417"), out
        assert eng.stats("events")["received"] == 0


async def test_an_http_1_0_consumer_gets_a_stream_that_ends_with_the_connection(config):
    """HTTP/1.0 has no chunked coding (RFC 9112 6.1): its reader would take the chunk
    sizes for stream bytes."""
    async with Engine(config) as eng:
        port = eng.http[0].port

        def consume() -> bytes:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /v1/streams/events/arrow HTTP/1.0\r\n\r\n")
                s.settimeout(30)
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                return out

        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(consume()))
        reader.start()
        await wait_until(lambda: eng.streams["events"].batches.consumers == 1)
        await call(f"{eng.http[0].url}/v1/streams/events", message(1) + b"\n" + message(2) + b"\n")
        await wait_until(lambda: eng.streams["events"].batches.next_seq == 1)
    await anyio.to_thread.run_sync(reader.join, 20)
    head, _, body = got[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert pa.ipc.open_stream(body).read_all().column("seq").to_pylist() == [1, 2]
    assert body.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")  # the end marker: a whole stream


async def test_a_dropped_consumer_is_aborted_only_once_it_stops_taking_what_it_is_sent(monkeypatch):
    """A dropped consumer still reading what was queued for it (each send completing) is
    left to finish; one that takes nothing for a whole grace period is aborted."""
    monkeypatch.setattr(http_api, "DROPPED_GRACE_S", 0.05)
    aborted: list[float] = []

    class Dropped:
        async def wait_dropped(self) -> None:
            pass

    for reading_s in (0.0, 0.3):
        sent = [0]

        async def reader(reading_s: float = reading_s, sent: list[int] = sent) -> None:
            with anyio.move_on_after(reading_s):
                while True:
                    await anyio.sleep(0.01)
                    sent[0] += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            began = anyio.current_time()
            await http_api.HttpApi._abort_if_dropped(
                Dropped(),
                lambda began=began: aborted.append(anyio.current_time() - began),
                "t",
                lambda sent=sent: sent[0],
            )
    assert aborted[0] < 0.2 and aborted[1] >= 0.3  # the reader was never cut off while reading


async def test_a_chunked_body_that_breaks_off_malformed_is_answered_with_what_was_taken(config):
    chunk = b"".join(message(i) + b"\n" for i in range(10)) + b'{"seq":'  # and a partial line
    request = (
        b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(chunk), chunk)
        + b"zz\r\nnot a chunk\r\n"
    )

    async with Engine(config) as eng:
        answer = await anyio.to_thread.run_sync(exchange, eng.http[0].port, request)
        stats = eng.streams["events"].stats
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    body = json.loads(text)
    assert "malformed" in body["error"] and (body["accepted"], body["rejected"]) == (10, 0)
    assert (stats.accepted, stats.discarded_partials) == (10, 1)  # the cut-off line: no message


WIDE_YAML = """
streams:
  wide:
    fields:
      seq:  {type: int64, required: true}
      blob: {type: string}
    batch: {max_messages: 200, max_bytes: 1MiB, linger_ms: 5}
    slow_consumer: disconnect
    consumer_queue: 1
listen:
  - {kind: http, port: 0}
"""


async def test_a_dropped_consumer_that_does_not_read_is_disconnected(monkeypatch, caplog):
    """Dropped while stuck in a write, a live stream's connection would hold its batches
    (and a full socket buffer) for as long as the client keeps it open."""
    monkeypatch.setattr(http_api, "DROPPED_GRACE_S", 0.2)
    blob = b"x" * 4000
    async with Engine(load_config(WIDE_YAML)) as eng:
        with socket.create_connection(("127.0.0.1", eng.http[0].port)) as s:
            s.sendall(b"GET /v1/streams/wide/arrow HTTP/1.1\r\nHost: x\r\n\r\n")  # then no reads
            topic = eng.streams["wide"].batches
            await wait_until(lambda: topic.consumers == 1)
            seq = 0
            while not topic.dropped:
                await eng.ingest("wide", b"".join(b'{"seq":%d,"blob":"%s"}\n' % (seq + k, blob) for k in range(200)))
                seq += 200
                assert seq < 200_000, "the consumer was never dropped"
            await wait_until(lambda: "consumer_aborted" in caplog.text)

            def read_to_the_end() -> None:  # what was sent, then the end (not a wait)
                s.settimeout(10)
                try:
                    while s.recv(1 << 20):
                        pass
                except ConnectionResetError:
                    pass

            await anyio.to_thread.run_sync(read_to_the_end)


async def _until_a_slow_reader_is_dropped(eng: Engine, slow_reader) -> None:
    """Run ``slow_reader`` on a thread, feed the wide stream until its consumer is dropped
    (a queue of one batch), then wait for the reader to finish."""
    topic = eng.streams["wide"].batches
    reader = threading.Thread(target=slow_reader)
    reader.start()
    await wait_until(lambda: topic.consumers == 1)
    seq = 0
    blob = b"x" * 400
    while not topic.dropped:
        await eng.ingest("wide", b"".join(b'{"seq":%d,"blob":"%s"}\n' % (seq + k, blob) for k in range(200)))
        seq += 200
        assert seq < 400_000, "the consumer was never dropped"
    await anyio.to_thread.run_sync(reader.join, 60)


async def test_a_dropped_consumer_that_reads_gets_what_was_queued_then_a_failure_not_an_end():
    """An end (the IPC end marker, the last chunk) would tell it the stream was whole."""
    got: dict[str, object] = {"seqs": []}
    async with Engine(load_config(WIDE_YAML)) as eng:
        url = f"{eng.http[0].url}/v1/streams/wide/arrow"

        def slow_reader() -> None:
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    for batch in pa.ipc.open_stream(resp):
                        got["seqs"].extend(batch.column("seq").to_pylist())
                        time.sleep(0.01)  # slower than the producer below
                got["end"] = "clean"
            except Exception as exc:  # noqa: BLE001 - which error depends on where the cut falls
                got["end"] = exc

        await _until_a_slow_reader_is_dropped(eng, slow_reader)
    assert isinstance(got["end"], Exception), got["end"]
    assert got["seqs"] == list(range(len(got["seqs"])))  # what it got, it got in order, whole


async def test_a_dropped_http_1_0_consumer_reads_a_failure_not_an_end():
    """Its body ends where the connection does, and an Arrow reader takes EOF between
    messages as the end: what was queued comes, then bytes no reader takes for an end."""
    got: dict[str, object] = {}
    async with Engine(load_config(WIDE_YAML)) as eng:

        def slow_reader() -> None:
            with socket.create_connection(("127.0.0.1", eng.http[0].port)) as s:
                s.sendall(b"GET /v1/streams/wide/arrow HTTP/1.0\r\n\r\n")
                s.settimeout(30)
                out = b""
                while chunk := s.recv(16384):
                    out += chunk
                    time.sleep(0.002)  # slower than the producer below
                got["raw"] = out

        await _until_a_slow_reader_is_dropped(eng, slow_reader)
    head, _, body = got["raw"].partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    seqs = []
    with pytest.raises(OSError, match="negative"):
        for batch in pa.ipc.open_stream(body):
            seqs.extend(batch.column("seq").to_pylist())
    assert seqs and seqs == list(range(len(seqs)))  # what it got, it got in order, whole


async def test_live_arrow_streams_deliver_batches_and_dead_letters_until_shutdown(config):
    got: dict[str, pa.Table] = {}

    def read(path: str, key: str) -> None:
        with urllib.request.urlopen(base + path, timeout=60) as resp:
            assert resp.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
            got[key] = pa.ipc.open_stream(resp).read_all()

    async with Engine(config) as eng:
        base = eng.http[0].url
        readers = [
            threading.Thread(target=read, args=("/v1/streams/events/arrow", "events")),
            threading.Thread(target=read, args=("/v1/streams/events/rejects/arrow", "rejects")),
        ]
        for r in readers:
            r.start()
        stream = eng.streams["events"]
        await wait_until(lambda: stream.batches.consumers == 1 and stream.rejects.consumers == 1)
        data = b"".join(message(i) + b"\n" for i in range(5000)) + b"oops\n"
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, data, 10)
    for r in readers:
        r.join(30)
    assert got["events"].column("seq").to_pylist() == list(range(5000))
    assert got["events"].column("kind").to_pylist()[:3] == ["a", "b", "a"]
    assert got["events"].schema == eng.streams["events"].parser.schema
    assert got["rejects"].column("raw").to_pylist() == [b"oops"]


async def test_a_consumer_that_hangs_up_is_forgotten(config):
    async with Engine(config) as eng:
        conn = http.client.HTTPConnection("127.0.0.1", eng.http[0].port)
        await anyio.to_thread.run_sync(lambda: conn.request("GET", "/v1/streams/events/arrow"))
        topic = eng.streams["events"].batches
        await wait_until(lambda: topic.consumers == 1)
        conn.sock.close()
        await wait_until(lambda: topic.consumers == 0)
        receipt = await eng.ingest("events", message(1) + b"\n")  # nothing waits on the departed
        assert receipt.accepted == 1


async def test_a_consumer_that_reads_all_it_got_then_closes_is_forgotten_at_once(config):
    # a clean close (FIN, no unread data, so no RST) on a quiet topic: nothing will be
    # written that could fail, so the FIN itself must end the stream, or the connection
    # sits in CLOSE-WAIT counted as a consumer until the next batch
    def visit(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /v1/streams/events/rejects/arrow HTTP/1.1\r\nHost: q\r\n\r\n")
            s.settimeout(0.3)
            got = b""
            try:
                while chunk := s.recv(65536):
                    got += chunk
            except TimeoutError:
                pass
            assert got.startswith(b"HTTP/1.1 200")

    async with Engine(config) as eng:
        topic = eng.streams["events"].rejects
        for _ in range(3):
            await anyio.to_thread.run_sync(visit, eng.http[0].port)
        await wait_until(lambda: topic.consumers == 0, timeout=3)


async def test_503_with_retry_after_when_the_stream_is_saturated():
    cfg = load_config(
        SERVICE_YAML.replace(
            "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 3",
            "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 1\n    consumer_queue: 1",
        )
    )
    async with Engine(cfg) as eng:
        sub = eng.subscribe("events")  # never read until the end: the pipeline stalls
        data = b"".join(message(i) + b"\n" for i in range(200_000))
        sender = threading.Thread(target=send_tcp, args=(eng.tcp[0].port, data, 100))
        sender.start()
        await wait_until(lambda: eng.streams["events"].batcher.saturated)
        status, headers, answer = await call(f"{eng.http[0].url}/v1/streams/events", message(1) + b"\n")
        assert status == 503 and headers["Retry-After"] == "1" and "saturated" in answer["error"]
        seqs = []
        with anyio.fail_after(60):
            while len(seqs) < 200_000:
                seqs += (await sub.next_batch()).column("seq").to_pylist()
        await anyio.to_thread.run_sync(sender.join)
    assert seqs == list(range(200_000))


async def test_gzip_bodies_of_several_members_are_read_whole(config):
    async with Engine(config) as eng:
        url = f"{eng.http[0].url}/v1/streams/events"
        body = gzip.compress(message(1) + b"\n" + message(2) + b"\n") + gzip.compress(message(3) + b"\n")
        status, _, answer = await call(url, body, {"Content-Encoding": "gzip"})
        assert status == 200 and answer["accepted"] == 3
        status, _, answer = await call(url, body + b"trailing junk", {"Content-Encoding": "gzip"})
        assert status == 400 and "bad gzip" in answer["error"]


async def test_shutdown_answers_posts_in_progress_and_completes_live_streams():
    cfg = load_config(SERVICE_YAML.replace("linger_ms: 5}\n    arenas: 3", "linger_ms: 600000}\n    arenas: 3"))
    answers, got = {}, {}

    def post(url: str) -> None:
        answers["post"] = request(url, message(1) + b"\n" + message(2) + b"\n")

    def read(url: str) -> None:
        with urllib.request.urlopen(url, timeout=60) as resp:
            got["rows"] = pa.ipc.open_stream(resp).read_all().column("seq").to_pylist()

    async with Engine(cfg) as eng:
        base = eng.http[0].url
        reader = threading.Thread(target=read, args=(f"{base}/v1/streams/events/arrow",))
        reader.start()
        await wait_until(lambda: eng.streams["events"].batches.consumers == 1)
        poster = threading.Thread(target=post, args=(f"{base}/v1/streams/events",))
        poster.start()
        await wait_until(lambda: eng.streams["events"].batcher._current is not None)
        started = time.monotonic()
    assert time.monotonic() - started < 10  # nobody waited out the ten-minute linger
    poster.join(10)
    reader.join(10)
    assert answers["post"][0] == 200 and answers["post"][2]["accepted"] == 2
    assert got["rows"] == [1, 2]


async def test_live_stream_readers_get_the_schema_before_any_batch(config):
    async with Engine(config) as eng:
        url = f"{eng.http[0].url}/v1/streams/events/arrow"

        def schema() -> pa.Schema:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return pa.ipc.open_stream(resp).schema

        with anyio.fail_after(20):
            assert await anyio.to_thread.run_sync(schema) == eng.streams["events"].parser.schema


def test_live_stream_bodies_go_out_in_bounded_pieces_that_make_the_ipc_stream():
    from engine.server.http import IpcChunks

    n = 100_000
    batch = pa.record_batch({"n": pa.array(range(n)), "s": pa.array([f"value {i:08d}" * 3 for i in range(n)])})

    def write(writer) -> None:
        writer.write_batch(batch)
        writer.write_batch(batch.slice(5, 10))
        writer.close()

    sink = IpcChunks()
    write(sink.new_stream(batch.schema))
    pieces = sink.pieces()
    assert len(pieces) > 10
    assert all(len(p) == IpcChunks.PIECE_BYTES for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= IpcChunks.PIECE_BYTES
    whole = pa.BufferOutputStream()
    write(pa.ipc.new_stream(whole, batch.schema))
    assert b"".join(pieces) == whole.getvalue().to_pybytes()
    assert sink.pieces() == []  # what was sent is not sent again
