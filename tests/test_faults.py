"""Faults over loopback, each with exact accounting: a failure inside batch processing, a
disk that refuses writes, slowloris producers (TCP and HTTP), oversize request heads,
thousands of idle connections, a Flight consumer that hangs up mid-stream.

Everywhere: what producers sent = accepted + rejected + discarded partials, per stream.
(Other faults have their tests beside the feature: dead producers and connection limits in
test_server_tcp.py, slow and vanishing consumers in test_service.py and
test_server_http.py, SIGTERM and kill -9 under load in test_serve.py.)
"""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import threading
import time
from functools import partial

import anyio
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from engine import Engine, load_config
from engine.outputs.segments import SegmentLog, SegmentPolicy, seq_of
from tests.live import SERVICE_YAML, column, drain, message, send_tcp, wait_until
from tests.live import exchange as live_exchange

pytestmark = pytest.mark.anyio


def with_limits(limits: str, extra: str = "") -> str:
    return (
        SERVICE_YAML.replace("limits: {max_message_bytes: 4KiB}", f"limits: {{max_message_bytes: 4KiB, {limits}}}")
        + extra
    )


def lines(first: int, n: int) -> bytes:
    return b"".join(message(i) + b"\n" for i in range(first, first + n))


async def test_a_failure_inside_batch_processing_sends_that_batch_to_dead_letters():
    async with anyio.create_task_group() as tg, Engine(load_config(SERVICE_YAML)) as eng:
        rows, dead = [], []
        tg.start_soon(drain, eng.subscribe("events"), rows)
        tg.start_soon(drain, eng.subscribe("events.rejects"), dead)
        stream = eng.streams["events"]

        def faulty(parse):
            def call(buf, *args, **kw):
                if b"poison" in buf.tobytes():
                    raise RuntimeError("a bug in batch processing")
                return parse(buf, *args, **kw)

            return call

        # both ways an arena is parsed: lines framed as they are parsed, or framed first
        stream.parser.parse_lines_of = faulty(stream.parser.parse_lines_of)
        stream.parser.parse_spans = faulty(stream.parser.parse_spans)
        port = eng.tcp[0].port
        first = lines(200, 10)
        await anyio.to_thread.run_sync(send_tcp, port, first)
        await wait_until(lambda: eng.stats("events")["received"] == 10)
        bad = lines(0, 20) + b'{"seq": 20, "name": "poison"}\n' + lines(21, 9) + b"{not json\n"
        await anyio.to_thread.run_sync(send_tcp, port, bad)
        await wait_until(lambda: eng.stats("events")["received"] == 41)
        await anyio.to_thread.run_sync(send_tcp, port, lines(100, 50))  # the stream goes on
        await wait_until(lambda: len(column(rows, "seq")) == 60)
        await wait_until(lambda: len(column(dead, "index")) == 31)
    assert column(rows, "seq") == list(range(200, 210)) + list(range(100, 150))
    assert column(dead, "error") == ["internal_error"] * 31  # the whole batch, bad JSON too
    assert column(dead, "index") == list(range(10, 41))
    assert b"\n".join(column(dead, "raw")) + b"\n" == bad
    line_starts = [len(first)]
    for line in bad.split(b"\n")[:-2]:
        line_starts.append(line_starts[-1] + len(line) + 1)
    assert column(dead, "offset") == line_starts  # where each message began in the stream
    stats = eng.stats("events")
    assert stats["received"] == 91 == stats["accepted"] + stats["rejected"]
    assert stats["errors"] == {"internal_error": 31}
    assert stream.pipeline.internal_errors >= 1


async def test_a_failed_batch_that_held_the_rest_of_an_oversize_line_counts_its_skipped_bytes():
    # an oversize line spanning reads is cut to its kept start and the rest skipped; when
    # the batch holding it fails, its dead letters still say where each message began in
    # the stream, and the stream's byte count (the base of later offsets) includes the skip
    msgs = [message(1), b'{"seq":5,"name":"' + b"y" * 100_000 + b'"}', b'{"seq":2,', message(3), b"{}"]
    data = b"".join(m + b"\n" for m in msgs)
    starts = [sum(len(m) + 1 for m in msgs[:k]) for k in range(len(msgs))]
    async with anyio.create_task_group() as tg, Engine(load_config(SERVICE_YAML)) as eng:
        dead = []
        tg.start_soon(drain, eng.subscribe("events.rejects"), dead)
        pipeline = eng.streams["events"].pipeline
        pipeline._parse_arena = partial(_fail, "a bug in batch processing")
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, data, 61)
        await wait_until(lambda: eng.stats("events")["received"] == len(msgs))
        del pipeline._parse_arena
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, b"[1]\n")
        await wait_until(lambda: len(column(dead, "index")) == len(msgs) + 1)
    assert column(dead, "error") == ["internal_error"] * len(msgs) + ["not_an_object"]
    assert column(dead, "offset") == starts + [len(data)]
    assert eng.stats("events")["bytes"] == len(data) + 4


def _fail(reason: str, *args: object) -> None:
    raise RuntimeError(reason)


class _FullDisk:
    """A file object that takes ``budget`` more bytes, then fails like a full disk."""

    budget = 1 << 60

    def __init__(self, path: str, mode: str) -> None:
        self._f = open(path, mode)  # noqa: SIM115 (closed by close())
        self.closed = False

    def write(self, data) -> int:
        n = len(data)
        if n > _FullDisk.budget:
            taken = max(0, _FullDisk.budget)
            self._f.write(bytes(memoryview(data)[:taken]))  # a torn write, as on a real disk
            self._f.flush()
            _FullDisk.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        _FullDisk.budget -= n
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self._f.tell()

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self.closed = True
        self._f.close()

    def writable(self) -> bool:
        return True


def _batch(seq: int, n: int = 100) -> pa.RecordBatch:
    return pa.record_batch({"v": pa.array(range(seq * n, seq * n + n), pa.int64()), "s": ["x" * 20] * n})


def test_a_write_the_disk_refuses_leaves_whole_batches_and_can_be_retried(tmp_path, monkeypatch):
    import engine.outputs.segments as segments

    schema = _batch(0).schema
    log = SegmentLog.open(tmp_path / "t", schema, SegmentPolicy())
    monkeypatch.setattr(segments.pa, "OSFile", lambda path, mode: pa.PythonFile(_FullDisk(path, mode), mode="w"))
    log.append([_batch(0), _batch(1)], sync=True)
    _FullDisk.budget = 1000  # the next batch is torn part way
    with pytest.raises(OSError):
        log.append([_batch(2)], sync=True)
    assert log.next_seq == 2
    for _ in range(2):  # the disk is still full: a new segment cannot even start
        with pytest.raises(OSError):
            log.append([_batch(2)], sync=True)
    _FullDisk.budget = 1 << 60  # space again
    log.append([_batch(2), _batch(3)], sync=True)
    log.close()
    monkeypatch.undo()
    reopened = SegmentLog.open(tmp_path / "t", schema, SegmentPolicy())  # recovery reads every segment back
    got = list(reopened.read(0))
    reopened.close()
    assert [seq_of(b) for b in got] == [0, 1, 2, 3]
    assert [b.column("v").to_pylist() for b in got] == [_batch(k).column("v").to_pylist() for k in range(4)]
    for path in sorted((tmp_path / "t").glob("*.arrow")):  # each file a valid, whole stream
        with pa.ipc.open_stream(pa.OSFile(str(path))) as reader:
            reader.read_all()


async def test_a_disk_that_refuses_writes_stalls_the_stream_and_loses_nothing(tmp_path):
    cfg = load_config(
        SERVICE_YAML.replace("    arenas: 3\n", "    arenas: 3\n    durability: batch\n") + f"data_dir: {tmp_path}\n"
    )
    async with Engine(cfg) as eng:
        log = eng.topics()["events"].log
        append = log.append
        failures = []

        def refusing(batches, sync=False):
            if len(failures) < 3:
                failures.append(1)
                raise OSError(errno.ENOSPC, "No space left on device")
            return append(batches, sync)

        log.append = refusing
        url = f"{eng.http[0].url}/v1/streams/events"
        body = lines(0, 40)
        started = time.perf_counter()
        answer = await anyio.to_thread.run_sync(lambda: _post(url, body))
        assert answer == (200, 40, 0)
        assert time.perf_counter() - started > 0.3  # waited out three retries: 50 + 100 + 200 ms
        assert eng.streams["events"].pipeline.storage_errors == 3
        metrics = (await anyio.to_thread.run_sync(lambda: _get(f"{eng.http[0].url}/metrics"))).decode()
        assert 'quiver_storage_errors_total{stream="events"} 3.0' in metrics
        stored = list(log.read(0))
    assert sorted(column(stored, "seq")) == list(range(40))  # each exactly once


def _post(url: str, body: bytes) -> tuple[int, int, int]:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as resp:
        answer = json.loads(resp.read())
        return resp.status, answer["accepted"], answer["rejected"]


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def _closed_by_peer(s: socket.socket) -> bool:
    s.settimeout(20)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


async def test_a_tcp_message_that_trickles_is_cut_off_but_an_idle_connection_stays():
    cfg = load_config(with_limits("message_timeout_s: 0.5, idle_timeout_s: 60"))
    async with Engine(cfg) as eng:
        port = eng.tcp[0].port
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(lines(0, 3))  # whole messages, then silence: only idle_timeout applies
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(lines(3, 2) + b'{"seq": 5')
        began = time.perf_counter()

        def trickle() -> bool:
            try:
                for ch in b', "name": "slooooooooooooooooooow"}':
                    slow.send(bytes([ch]))
                    time.sleep(0.1)  # each byte well within the idle timeout
            except OSError:
                return True
            return _closed_by_peer(slow)

        assert await anyio.to_thread.run_sync(trickle)
        assert time.perf_counter() - began < 5
        await wait_until(lambda: eng.tcp[0].connections == 1)  # the idle one is still there
        assert eng.tcp[0].limit_hits == {"message_timeout": 1}
        await wait_until(lambda: eng.stats("events")["received"] == 5)
        stats = eng.stats("events")
        assert stats["accepted"] == 5 and stats["discarded_partials"] == 1
        idle.close()
        slow.close()


async def test_http_heads_that_are_too_large_or_too_slow_are_refused():
    cfg = load_config(with_limits("message_timeout_s: 0.5, max_header_bytes: 2KiB"))
    async with Engine(cfg) as eng:
        port = eng.http[0].port

        exchange = partial(live_exchange, port)

        head = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000 + b"\r\n\r\n"
        assert (await anyio.to_thread.run_sync(exchange, head)).startswith(b"HTTP/1.1 431")
        slow = b"GET /v1/streams HTTP/1.1\r\nHost: x\r\n"  # and the blank line never comes
        assert (await anyio.to_thread.run_sync(exchange, slow)).startswith(b"HTTP/1.1 408")
        # a head just under the cap, with a body, is served
        body = lines(0, 30)
        ok = (
            b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\nX-Pad: %s\r\n\r\n%s"
            % (len(body), b"b" * 1800, body)
        )
        answer = await anyio.to_thread.run_sync(exchange, ok)
        assert answer.startswith(b"HTTP/1.1 200") and b'"accepted": 30' in answer
        # a body that stalls part way: what came before the stall is counted and kept
        stalled = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + lines(30, 10)
        answer = await anyio.to_thread.run_sync(exchange, stalled)
        assert answer.startswith(b"HTTP/1.1 408") and b'"accepted": 10' in answer
        assert eng.http[0].limit_hits == {"max_header_bytes": 1, "message_timeout": 2}
        assert eng.stats("events")["accepted"] == 40


async def test_http_bodies_cut_off_by_the_connection_are_answered_with_what_was_taken():
    """A body that trickles, whose trailers are too large, or whose client ends its side
    part way: the connection layer ends the body there, and the answer still counts the
    messages already taken, so the client knows what not to send again."""
    cfg = load_config(with_limits("message_timeout_s: 0.5, max_header_bytes: 2KiB"))
    async with Engine(cfg) as eng:
        port = eng.http[0].port
        chunked = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

        def chunk(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data)

        def trickle(first: bytes, pieces: list[bytes], pause: float) -> bytes:
            """Send ``first``, then each piece ``pause`` apart until the server stops
            reading; the answer."""
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(first)
                s.settimeout(20)
                try:
                    for piece in pieces:
                        s.sendall(piece)
                        time.sleep(pause)
                except OSError:
                    pass
                out = b""
                while data := s.recv(65536):
                    out += data
                return out

        # a message every 0.1 s: never a stall, always too slow
        answer = await anyio.to_thread.run_sync(trickle, chunked, [chunk(lines(i, 1)) for i in range(40)], 0.1)
        head, _, text = answer.partition(b"\r\n\r\n")
        taken = eng.stats("events")["accepted"]
        assert head.startswith(b"HTTP/1.1 408") and 5 <= taken < 40
        assert json.loads(text)["accepted"] == taken

        trailers = chunked + chunk(lines(100, 3)) + b"0\r\nX-Pad: " + b"t" * 4000 + b"\r\n\r\n"
        answer = await anyio.to_thread.run_sync(live_exchange, port, trailers)
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431") and json.loads(text)["accepted"] == 3

        # one trailer line that never ends, in pieces: httptools buffers a header value
        # until its line ends, so it must be counted as it arrives
        opening = chunked + chunk(lines(150, 2)) + b"0\r\nX-Pad: "
        answer = await anyio.to_thread.run_sync(trickle, opening, [b"t" * 1024] * 64, 0.002)
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431") and json.loads(text)["accepted"] == 2

        for cut in (chunked + chunk(lines(200, 4)), b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 100000\r\n\r\n" + lines(300, 4) + b'{"seq": 3'):  # fmt: skip
            answer = await anyio.to_thread.run_sync(partial(live_exchange, port, cut, half_close=True))
            head, _, text = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and json.loads(text)["accepted"] == 4
        stats = eng.stats("events")
        assert stats["accepted"] == taken + 3 + 2 + 8 and stats["discarded_partials"] == 1
        assert eng.http[0].limit_hits == {"max_header_bytes": 2, "message_timeout": 1}


async def test_thousands_of_idle_connections_neither_block_producers_nor_leak():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2000
    if soft < 2 * want + 200:  # both ends of every connection live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * want + 200), hard))
    n = min(want, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200) // 2)
    assert n >= 500
    rows = []
    async with anyio.create_task_group() as tg, Engine(load_config(with_limits("idle_timeout_s: 60"))) as eng:
        tg.start_soon(drain, eng.subscribe("events"), rows)
        port = eng.tcp[0].port

        def connect_all() -> list[socket.socket]:
            return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]

        idle = await anyio.to_thread.run_sync(connect_all)
        await wait_until(lambda: eng.tcp[0].connections == n, timeout=30)
        await anyio.to_thread.run_sync(send_tcp, port, lines(0, 500))
        await wait_until(lambda: len(rows) and len(column(rows, "seq")) == 500)
        for s in idle:
            s.close()
        await wait_until(lambda: eng.tcp[0].connections == 0, timeout=30)
    assert sorted(column(rows, "seq")) == list(range(500))
    assert eng.stats("events")["discarded_partials"] == 0


async def test_a_flight_consumer_that_hangs_up_mid_stream_costs_only_itself():
    rows = []
    async with anyio.create_task_group() as tg, Engine(load_config(SERVICE_YAML)) as eng:
        tg.start_soon(drain, eng.subscribe("events"), rows)
        location = eng.flight[0].url

        def read_two_then_hang_up() -> int:
            client = fl.connect(location)
            reader = client.do_get(fl.Ticket(b"events"))
            got = reader.read_chunk().data.num_rows + reader.read_chunk().data.num_rows
            reader.cancel()
            client.close()
            return got

        async def produce():
            for k in range(40):
                await eng.ingest("events", lines(k * 50, 50))
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as work:
            work.start_soon(produce)
            assert await anyio.to_thread.run_sync(read_two_then_hang_up) > 0
        await wait_until(lambda: eng.topics()["events"].consumers == 1)  # only the in-process one
    assert sorted(column(rows, "seq")) == list(range(2000))


async def test_http_connections_beyond_the_limit_are_refused_not_queued():
    async with Engine(load_config(with_limits("max_connections: 2"))) as eng:
        port = eng.http[0].port
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        await anyio.sleep(0.1)

        def third() -> bytes:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /v1/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                s.settimeout(20)
                return s.recv(65536)

        assert (await anyio.to_thread.run_sync(third)).startswith(b"HTTP/1.1 503")
        assert eng.http[0].limit_hits == {"max_connections": 1}

        def served(s: socket.socket) -> bytes:  # each of the two within the limit is
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(20)
            return s.recv(65536)

        for s in held:
            assert (await anyio.to_thread.run_sync(served, s)).startswith(b"HTTP/1.1 200")
            s.close()


def _failing_fsync(monkeypatch, failures: list[int]):
    """os.fsync that fails (EIO) for as long as ``failures`` holds a positive count."""
    import engine.outputs.segments as segments

    real = os.fsync

    def fsync(fd: int) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(segments.os, "fsync", fsync)


def test_a_failed_fsync_rewinds_the_log_to_its_last_good_fsync(tmp_path, monkeypatch):
    schema = _batch(0).schema
    log = SegmentLog.open(tmp_path / "t", schema, SegmentPolicy())
    log.append([_batch(0), _batch(1)], sync=True)
    log.append([_batch(2), _batch(3)])  # written, not yet fsynced
    failures = [1]
    _failing_fsync(monkeypatch, failures)
    with pytest.raises(OSError):
        log.sync()
    # Linux may have dropped those pages while a second fsync reports success: 2 and 3
    # are no longer trusted, the writer must write them again
    assert log.next_seq == 2
    log.append([_batch(2), _batch(3)], sync=True)
    log.close()
    got = list(SegmentLog.open(tmp_path / "t", schema, SegmentPolicy()).read(0))
    assert [seq_of(b) for b in got] == [0, 1, 2, 3]
    assert [b.column("v").to_pylist() for b in got] == [_batch(k).column("v").to_pylist() for k in range(4)]


def test_a_failed_fsync_while_a_segment_rolls_can_be_retried(tmp_path, monkeypatch):
    schema = _batch(0).schema
    log = SegmentLog.open(tmp_path / "t", schema, SegmentPolicy(max_bytes=4096))
    log.append([_batch(0)], sync=True)
    log.append([_batch(1)])  # unsynced, and the segment is now full: the next append rolls
    failures = [1]
    _failing_fsync(monkeypatch, failures)
    with pytest.raises(OSError):
        log.append([_batch(2)])  # closing the full segment fails its fsync
    assert log.next_seq == 1
    for _ in range(2):  # the retry writes what the rewind took back, then goes on
        log.append([_batch(k) for k in range(log.next_seq, 4)], sync=True)
        if log.next_seq == 4:
            break
    log.close()
    got = list(SegmentLog.open(tmp_path / "t", schema, SegmentPolicy(max_bytes=4096)).read(0))
    assert [seq_of(b) for b in got] == [0, 1, 2, 3]


async def test_interval_durability_writes_again_what_a_failed_fsync_took_back(tmp_path, monkeypatch):
    cfg = load_config(
        SERVICE_YAML.replace("    arenas: 3\n", "    arenas: 3\n    durability: {interval_ms: 20}\n")
        + f"data_dir: {tmp_path}\n"
    )
    async with Engine(cfg) as eng:
        failures = [2]
        _failing_fsync(monkeypatch, failures)
        url = f"{eng.http[0].url}/v1/streams/events"
        answers = []
        for k in range(4):
            answers.append(await anyio.to_thread.run_sync(lambda k=k: _post(url, lines(k * 25, 25))))
        assert answers == [(200, 25, 0)] * 4
        assert failures == [0] and eng.streams["events"].pipeline.storage_errors >= 2
        stored = list(eng.topics()["events"].log.read(0))
    assert [seq_of(b) for b in stored] == list(range(len(stored)))
    assert sorted(column(stored, "seq")) == list(range(100))  # each exactly once


async def test_a_disk_that_never_recovers_answers_posts_with_what_was_not_stored(tmp_path):
    cfg = load_config(SERVICE_YAML + f"data_dir: {tmp_path}\n")
    async with Engine(cfg, shutdown_timeout=1.0) as eng:

        def refuse(batches, sync=False):
            raise OSError(errno.ENOSPC, "No space left on device")

        eng.topics()["events"].log.append = refuse
        url = f"{eng.http[0].url}/v1/streams/events"
        result = {}

        def post() -> None:
            import urllib.error

            try:
                _post(url, lines(0, 10))
            except urllib.error.HTTPError as err:
                result["status"], result["body"] = err.code, json.loads(err.read())

        poster = threading.Thread(target=post)
        poster.start()
        await wait_until(lambda: eng.streams["events"].pipeline.storage_errors >= 2)
    # the shutdown ran out of time: the stuck writes were abandoned, not the answers
    await anyio.to_thread.run_sync(poster.join, 30)
    assert result["status"] == 503
    assert result["body"]["not_stored"] == 10 and result["body"]["accepted"] == 10


async def test_http_clients_that_hold_a_slot_without_finishing_a_request_are_closed():
    cfg = load_config(with_limits("message_timeout_s: 0.5, max_header_bytes: 2KiB, max_connections: 3"))
    async with Engine(cfg) as eng:
        port = eng.http[0].port

        def idle() -> float:  # connects and says nothing
            with socket.create_connection(("127.0.0.1", port)) as s:
                began = time.perf_counter()
                reply = s.recv(65536) if _wait_readable(s) else b"?"
                assert reply.startswith(b"HTTP/1.1 408"), reply
                return time.perf_counter() - began

        def trickle_body() -> bytes:  # a fine head, then a body one byte every 0.2 s
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
                out = b""
                try:
                    for _ in range(100):
                        s.sendall(b" ")
                        time.sleep(0.2)
                        s.setblocking(False)
                        try:
                            chunk = s.recv(65536)
                        except BlockingIOError:
                            chunk = None
                        s.setblocking(True)
                        if chunk is not None:
                            return out + chunk
                except OSError:
                    return out
                return b"still open"

        def trailers() -> bytes:  # a chunked body whose trailers never end
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
                try:
                    for k in range(200):
                        s.sendall(b"X-T%d: %s\r\n" % (k, b"t" * 100))
                except OSError:
                    pass
                s.settimeout(20)
                return s.recv(65536)

        assert 0.4 < await anyio.to_thread.run_sync(idle) < 10
        started = time.perf_counter()
        assert (await anyio.to_thread.run_sync(trickle_body)).startswith(b"HTTP/1.1 408")
        assert time.perf_counter() - started < 5  # 0.5 s + the body grace, not 100 x 0.2 s
        assert (await anyio.to_thread.run_sync(trailers)).startswith(b"HTTP/1.1 431")
        hits = eng.http[0].limit_hits
        assert hits["message_timeout"] == 2 and hits["max_header_bytes"] == 1
        # and the slots are free again: a real request is served
        status, accepted, _ = await anyio.to_thread.run_sync(
            lambda: _post(f"{eng.http[0].url}/v1/streams/events", lines(0, 5))
        )
        assert (status, accepted) == (200, 5)


def _wait_readable(s: socket.socket, timeout: float = 20) -> bool:
    import select

    return bool(select.select([s], [], [], timeout)[0])


async def test_connections_that_each_hold_part_of_a_message_share_one_budget():
    cfg = load_config(
        """
streams:
  big:
    fields:
      seq: {type: int64, required: true}
    batch: {max_bytes: 4MiB}
    arenas: 2
listen:
  - {kind: tcp, port: 0, stream: big}
limits: {max_message_bytes: 1MiB, max_partial_bytes: 1MiB}
"""
    )
    async with Engine(cfg) as eng:
        port = eng.tcp[0].port
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for k, s in enumerate(socks[:2]):
            s.sendall(b'{"seq": %d, "pad": "' % k + b"x" * 400_000)
        await wait_until(lambda: eng.tcp[0].connections == 3)
        await anyio.sleep(0.2)  # both partials are held
        socks[2].sendall(b'{"seq": 2, "pad": "' + b"y" * 400_000)  # 1.2 MB held in all: over
        assert await anyio.to_thread.run_sync(_closed_by_peer, socks[2])
        for s in socks[:2]:
            s.sendall(b'"}\n')
            s.close()
        socks[2].close()
        await wait_until(lambda: eng.stats("big")["received"] == 2 and eng.tcp[0].connections == 0)
        assert eng.tcp[0].limit_hits == {"max_partial_bytes": 1}
        assert eng.stats("big")["accepted"] == 2 and eng.stats("big")["discarded_partials"] == 1
        assert eng.tcp[0]._partials.held == 0  # every connection gave its share back
