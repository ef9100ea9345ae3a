"""The engine end to end on loopback: TCP producers, in-process consumers, shutdown, backpressure."""

from __future__ import annotations

import random
import socket
import threading
import time

import anyio
import numba
import pytest

from engine import Engine, load_config
from engine.outputs.hub import ConsumerDropped
from engine.pipeline import INLINE_BYTES
from tests.live import SERVICE_YAML, column, drain, message, send_tcp, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def config():
    return load_config(SERVICE_YAML)


async def test_concurrent_tcp_producers_deliver_every_message_exactly_once(config):
    rnd = random.Random(3)
    conns, per_conn = 6, 3000
    payloads, bad = [], 0
    for c in range(conns):
        lines = []
        for i in range(per_conn):
            seq = c * per_conn + i
            if seq % 97 == 0:
                lines.append(b'{"seq":%d,"name":' % seq)  # truncated: invalid_json
                bad += 1
            else:
                lines.append(message(seq))
        payloads.append(b"\n".join(lines) + b"\n")
    accepted, rejects = [], []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        consumers.start_soon(drain, eng.subscribe("events"), accepted)
        consumers.start_soon(drain, eng.subscribe("events.rejects"), rejects)
        port = eng.tcp[0].port
        async with anyio.create_task_group() as producers:
            for data in payloads:
                producers.start_soon(anyio.to_thread.run_sync, send_tcp, port, data, rnd.randint(1, 400))
    stats = eng.stats("events")  # final counts, after shutdown delivered everything
    seqs = column(accepted, "seq")
    expected = [s for s in range(conns * per_conn) if s % 97]
    assert sorted(seqs) == expected  # every good message once, none twice
    assert len(column(rejects, "index")) == bad and set(column(rejects, "error")) == {"invalid_json"}
    assert stats["received"] == stats["accepted"] + stats["rejected"] == conns * per_conn
    assert max(b.num_rows for b in accepted) <= 500  # batch.max_messages


async def test_length_prefixed_listener_with_oversize_and_truncated_frames(config):
    def frame(body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + body

    big = b'{"seq":1,"name":"' + b"x" * 5000 + b'"}'
    data = frame(message(0)) + frame(big) + frame(b'{"seq":2,\n"v":1e3}') + b"\x00\x00\x00\x50{"
    accepted, rejects = [], []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        consumers.start_soon(drain, eng.subscribe("events"), accepted)
        consumers.start_soon(drain, eng.subscribe("events.rejects"), rejects)
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[1].port, data, 7)
    assert column(accepted, "seq") == [0, 2]  # a frame may hold newlines
    assert column(rejects, "error") == ["too_large", "truncated"]
    assert column(rejects, "position")[1] == 5  # where it stopped: 5 of the 4 + 80 bytes came
    assert column(rejects, "offset")[1] == len(data) - 5  # its header's input offset
    raw = column(rejects, "raw")
    assert raw[0] == big[: 4096 + 1]  # the oversize frame's dead letter shows how it began
    assert raw[1] == b"\x00\x00\x00\x50{"  # the truncated frame, header included


async def test_dead_letter_offsets_count_skipped_bytes_and_a_cut_short_frame(config):
    """Offsets are input offsets: the 4 bytes skipped of an oversize frame and the 4-byte
    header the framer puts before a cut-short frame cancel out in the arena's total, and must
    still move the offsets of what lies between them. A cut-short frame whose header declared
    more than max_message_bytes is too_large, reported from its body like any such frame."""

    def frame(body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + body

    first = frame(message(0))
    over = (4096 + 5).to_bytes(4, "big") + b"x" * (4096 + 5)  # max + 1 kept, 4 skipped
    cut = b"\x00\x00\x00\x50" + b'{"seq":'  # 7 of its 80 bytes came
    for tail, code, at in [(cut, "truncated", 0), (b"\x00\x01\x00\x00" + b"y" * 300, "too_large", 4)]:
        data = first + over + frame(b"[1]") + tail
        async with Engine(config) as eng:
            rejects = eng.subscribe("events.rejects")
            receipt = await eng.ingest("events", data, framing="length_prefixed")
            assert (receipt.accepted, receipt.rejected) == (1, 3)
            got = (await rejects.next_batch()).to_pylist()
        assert [r["error"] for r in got] == ["too_large", "not_an_object", code]
        assert [r["offset"] for r in got] == [len(first) + 4, len(first) + len(over) + 4, len(data) - len(tail) + at]
        assert got[2]["raw"] == tail[at : at + 4097]
        assert got[2]["position"] == (len(tail) if code == "truncated" else 0)
        assert eng.stats("events")["bytes"] == len(data)


async def test_oversize_line_is_rejected_without_losing_its_neighbours(config):
    big = b'{"seq":5,"name":"' + b"y" * 100_000 + b'"}'
    data = message(1) + b"\n" + big + b"\n" + message(2) + b"\n"
    accepted, rejects = [], []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        consumers.start_soon(drain, eng.subscribe("events"), accepted)
        consumers.start_soon(drain, eng.subscribe("events.rejects"), rejects)
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, data, 50)
    assert column(accepted, "seq") == [1, 2]
    assert column(rejects, "error") == ["too_large"]
    # the same prefix whether the line spanned reads (never buffered whole) or not
    assert column(rejects, "raw") == [big[: 4096 + 1]]


async def test_skipped_bytes_that_no_message_follows_are_counted(config):
    """The rest of an oversize line arrives after its kept prefix went out in a lingered
    batch, and then the producer ends: those skipped bytes sit in an arena of their own,
    with no message, which must still reach the counts."""
    async with Engine(config) as eng:
        with socket.create_connection(("127.0.0.1", eng.tcp[0].port)) as s:
            s.sendall(b"x" * 6000)  # over max_message_bytes: its prefix is a too_large message
            await wait_until(lambda: eng.stats("events")["received"] == 1)  # flushed by linger_ms
            s.sendall(b"y" * 4000)  # skipped: no message follows, and no newline
        await wait_until(lambda: eng.stats("events")["bytes"] == 10_000)
    assert eng.stats("events")["rejected"] == 1


@pytest.mark.parametrize("framing", ["newline", "length_prefixed"])
@pytest.mark.parametrize("pieces", [1, 61])
async def test_dead_letter_offsets_count_the_skipped_rest_of_an_oversize_message(config, framing, pieces):
    # the rest of an oversize message never reaches an arena, but it was input: offsets of
    # later dead letters, and the bytes counted, are the same however the reads fell
    msgs = [message(1), b'{"seq":5,"name":"' + b"y" * 100_000 + b'"}', b'{"seq":2,', message(3), b"{}"]
    if framing == "newline":
        data = b"".join(m + b"\n" for m in msgs)
        where = [sum(len(m) + 1 for m in msgs[:k]) for k in range(len(msgs))]
    else:
        data = b"".join(len(m).to_bytes(4, "big") + m for m in msgs)
        where = [sum(len(m) + 4 for m in msgs[:k]) + 4 for k in range(len(msgs))]  # at the body
    rejects = []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        consumers.start_soon(drain, eng.subscribe("events.rejects"), rejects)
        port = eng.tcp[0 if framing == "newline" else 1].port
        await anyio.to_thread.run_sync(send_tcp, port, data, pieces)
    assert column(rejects, "error") == ["too_large", "invalid_json", "missing_required"]
    assert column(rejects, "offset") == [where[1], where[2], where[4]]
    assert column(rejects, "raw")[0] == msgs[1][: 4096 + 1]
    assert eng.stats("events")["bytes"] == len(data)


async def test_shutdown_flushes_partial_arenas_to_connected_consumers():
    cfg = load_config(SERVICE_YAML.replace("linger_ms: 5}\n    arenas: 3", "linger_ms: 600000}\n    arenas: 3"))
    accepted = []
    async with anyio.create_task_group() as consumers, Engine(cfg) as eng:
        consumers.start_soon(drain, eng.subscribe("events"), accepted)
        # the last message has no newline: the clean end of the connection completes it
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, message(1) + b"\n" + message(2))
        await wait_until(lambda: eng.streams["events"].batcher._current is not None)
        assert accepted == []  # linger is ten minutes: nothing flushed yet
    assert column(accepted, "seq") == [1, 2]


async def test_ingest_returns_counts_and_first_errors_after_delivery(config):
    async with Engine(config) as eng:
        sub = eng.subscribe("events")
        receipt = await eng.ingest("events", message(1) + b'\n{"name":"a"}\n\n' + message(2) + b"\n[1]\n")
        assert (receipt.accepted, receipt.rejected) == (2, 2)
        assert [(e["index"], e["error"], e["field"]) for e in receipt.errors] == [
            (1, "missing_required", "seq"),
            (3, "not_an_object", None),
        ]
        batch = await sub.next_batch()  # already handed over when ingest returned
        assert batch.column("seq").to_pylist() == [1, 2]
        framed = b"".join(len(m).to_bytes(4, "big") + m for m in (message(3), b"{}"))
        receipt = await eng.ingest("events", framed, framing="length_prefixed")
        assert (receipt.accepted, receipt.rejected) == (1, 1)
        with pytest.raises(KeyError, match="no such stream"):
            await eng.ingest("nope", b"{}")
        with pytest.raises(ValueError, match="framing: expected 'newline' or 'length_prefixed'; got 'ndjson'"):
            await eng.ingest("events", message(4) + b"\n", framing="ndjson")


async def test_concurrent_streams_share_the_kernels_safely(config):
    # "other" gets batches of several MiB while "events" keeps sending small ones: batches
    # of both share the kernel threads, launched from several threads at once (the omp
    # layer must hold up); then a batch of several MiB alone gets both threads
    n = 20_000
    events, other = [], []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        consumers.start_soon(drain, eng.subscribe("events"), events)
        consumers.start_soon(drain, eng.subscribe("other"), other)
        a = b"".join(message(i) + b"\n" for i in range(n))
        b = b"".join(b'{"seq":%d,"pad":"%s"}\n' % (i, b"p" * 200) for i in range(n))
        async with anyio.create_task_group() as producers:
            for _ in range(2):
                producers.start_soon(anyio.to_thread.run_sync, send_tcp, eng.tcp[0].port, a, 64)
                producers.start_soon(anyio.to_thread.run_sync, send_tcp, eng.tcp[2].port, b, 64)
        assert (await eng.ingest("other", b)).accepted == n
    assert sorted(column(events, "seq")) == sorted(list(range(n)) * 2)
    assert sorted(column(other, "seq")) == sorted(list(range(n)) * 3)
    assert eng.streams["other"].pipeline.widest == min(2, numba.config.NUMBA_NUM_THREADS)


async def test_lingered_small_arenas_are_parsed_on_the_event_loop_and_the_rest_on_a_worker(config):
    # a small arena that linger_ms flushed costs less parsed where the loop already runs
    # than handed to a worker thread and back; a full arena (a stream sending as fast as
    # arenas fill) or one big enough for several kernel threads goes to a worker, and the
    # loop reads on meanwhile
    parsed_on = []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        out = []
        for name in ("events", "other"):
            consumers.start_soon(drain, eng.subscribe(name), out)
            pipeline = eng.streams[name].pipeline

            def spy(arena, *args, parse=pipeline._parse, name=name):
                parsed_on.append((name, arena.lingered, arena.used < INLINE_BYTES, threading.get_ident()))
                return parse(arena, *args)

            pipeline._parse = spy
        loop_thread = threading.get_ident()
        small = b"".join(message(i) + b"\n" for i in range(10))
        big = b"".join(b'{"seq":%d,"pad":"%s"}\n' % (i, b"p" * 200) for i in range(20_000))
        assert (await eng.ingest("other", small)).accepted == 10
        assert (await eng.ingest("other", big)).accepted == 20_000
        # "events" flushes an arena at 500 messages: this one goes full, the next lingers
        full = b"".join(message(i) + b"\n" for i in range(2_000))
        assert (await eng.ingest("events", full)).accepted == 2_000
        assert (await eng.ingest("events", small)).accepted == 10
    assert len(column(out, "seq")) == 22_020
    assert [(name, lingered, small, ident == loop_thread) for name, lingered, small, ident in parsed_on] == [
        ("other", True, True, True),
        ("other", True, False, False),
        ("events", False, True, False),
        ("events", True, True, True),
    ]


async def test_a_consumer_that_does_not_read_pushes_back_on_tcp_producers():
    cfg = load_config(
        SERVICE_YAML.replace(
            "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 3",
            "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 2\n    consumer_queue: 1",
        )
    )
    line = message(1, "x" * 15) + b"\n"
    data = line * 1_000_000  # ~40 MB: far more than socket buffers, arenas and queues hold
    async with Engine(cfg) as eng:
        sub = eng.subscribe("events")
        sender = threading.Thread(target=send_tcp, args=(eng.tcp[0].port, data, 200))
        sender.start()
        await wait_until(lambda: eng.streams["events"].batcher.saturated)
        await anyio.sleep(0.5)
        assert sender.is_alive()  # the producer is blocked in send: TCP backpressure
        assert eng.stats("events")["received"] < 100_000  # and the service holds only a few batches
        rows = 0
        with anyio.fail_after(120):
            while rows < 1_000_000:
                rows += (await sub.next_batch()).num_rows
        await anyio.to_thread.run_sync(sender.join)
    assert rows == 1_000_000


async def test_disconnect_policy_drops_a_slow_consumer_and_keeps_the_rest_going():
    cfg = load_config(
        SERVICE_YAML.replace("arenas: 3", "arenas: 3\n    slow_consumer: disconnect\n    consumer_queue: 2")
    )
    async with Engine(cfg) as eng:
        slow, fast = eng.subscribe("events"), eng.subscribe("events")
        seen = 0
        for k in range(6):
            await eng.ingest("events", message(k) + b"\n")
            seen += (await fast.next_batch()).num_rows
        assert seen == 6 and eng.streams["events"].batches.dropped == 1
        assert [(await slow.next_batch()).num_rows for _ in range(2)] == [1, 1]
        with pytest.raises(ConsumerDropped):
            await slow.next_batch()


async def test_start_fails_fast_and_cleanly_when_a_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = load_config(SERVICE_YAML.replace("{kind: http, port: 0}", f"{{kind: http, port: {port}}}"))
        with anyio.fail_after(30), pytest.raises(OSError):
            async with Engine(cfg):
                pass


async def test_empty_frames_are_credited_to_their_own_submission(config):
    def frame(body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + body

    async with Engine(config) as eng:
        receipt = await eng.ingest("events", frame(message(1)) + frame(b""), framing="length_prefixed")
        assert (receipt.accepted, receipt.rejected) == (1, 1)
        results = {}

        async def submit(key: str, data: bytes) -> None:
            results[key] = await eng.ingest("events", data, framing="length_prefixed")

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "a", frame(b""))
            tg.start_soon(submit, "b", frame(message(2)))
        assert (results["a"].accepted, results["a"].rejected) == (0, 1)
        assert (results["b"].accepted, results["b"].rejected) == (1, 0)


async def test_an_oversize_line_of_blanks_is_still_counted(config):
    async with Engine(config) as eng:
        receipt = await eng.ingest("events", b" " * 5000 + b"\n" + message(1) + b"\n")
        assert (receipt.accepted, receipt.rejected) == (1, 1)
        assert receipt.errors[0]["error"] == "too_large"


async def test_a_consumer_that_never_reads_cannot_hold_shutdown_forever():
    """Dropped at shutdown_timeout, it alone: a consumer that reads still gets every batch
    and a clean end."""
    cfg = load_config(SERVICE_YAML.replace("arenas: 3", "arenas: 2\n    consumer_queue: 1"))
    healthy = []
    async with anyio.create_task_group() as tg, Engine(cfg, shutdown_timeout=1) as eng:
        stuck = eng.subscribe("events")  # never read: the pipeline stalls behind it
        tg.start_soon(drain, eng.subscribe("events"), healthy)
        with anyio.move_on_after(2):
            while True:
                await eng.ingest("events", message(1) + b"\n")
        stalled_at = eng.stats("events")["received"]
        started = time.monotonic()
    assert time.monotonic() - started < 20
    assert eng.stats("events")["received"] >= stalled_at
    assert eng.streams["events"].batches.dropped == 1 and stuck.dropped
    assert len(column(healthy, "seq")) == eng.stats("events")["accepted"]  # drain ended: a clean end


async def test_an_engine_runs_once(config):
    eng = Engine(config)
    async with eng:
        endpoints = eng.endpoints
    with pytest.raises(RuntimeError, match="runs once"):
        async with eng:
            pass
    assert eng.endpoints == endpoints  # no second set of listeners, left running


async def test_serving_compiles_no_kernel_after_start(config):
    """Start-up warms every kernel a batch needs: a first batch that compiled one would
    stall its stream for seconds (minutes on a cold cache), after the ready line."""
    from kernels import framing, gather, jsonparse

    kernels = [getattr(m, name) for m in (framing, gather, jsonparse) for name in dir(m)]
    kernels = [k for k in kernels if isinstance(k, numba.core.registry.CPUDispatcher)]
    accepted = []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        compiled = {k: len(k.signatures) for k in kernels}
        consumers.start_soon(drain, eng.subscribe("events"), accepted)
        lines = b"".join(message(i) + b"\n" for i in range(50))
        frames = b"".join(len(m).to_bytes(4, "big") + m for m in map(message, range(50, 100)))
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, lines, 5)
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[1].port, frames, 5)
    assert sorted(column(accepted, "seq")) == list(range(100))
    assert {k.__name__: len(k.signatures) for k in kernels} == {k.__name__: n for k, n in compiled.items()}


async def test_arenas_parsed_side_by_side_are_published_in_order_and_numbered_stream_wide(config):
    # a stream sending as fast as arenas fill has two arenas in the kernels at once, one
    # thread each; the second may finish first, but batches and dead letters go out in
    # stream order, numbered from the stream's first message and byte
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    in_kernels, most, widths = [0], [0], []
    async with anyio.create_task_group() as consumers, Engine(config) as eng:
        rows, dead = [], []
        consumers.start_soon(drain, eng.subscribe("events"), rows)
        consumers.start_soon(drain, eng.subscribe("events.rejects"), dead)
        pipeline = eng.streams["events"].pipeline

        def slow_parse(arena, width, parse=pipeline._parse):
            in_kernels[0] += 1
            most[0] = max(most[0], in_kernels[0])
            widths.append(width)
            time.sleep(0.02 if len(widths) % 2 else 0.002)  # odd arenas take longer: overtaken
            try:
                return parse(arena, width)
            finally:
                in_kernels[0] -= 1

        pipeline._parse = slow_parse
        lines, offsets, bad = [], [], []
        at = 0
        for i in range(6_000):
            line = message(i) if i % 251 else b'{"seq":%d,"name":' % i  # truncated: a dead letter
            if i % 251 == 0:
                bad.append(i)
                offsets.append(at)
            lines.append(line)
            at += len(line) + 1
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, b"\n".join(lines) + b"\n", 4)
        await wait_until(lambda: eng.stats("events")["received"] == 6_000)
        await wait_until(lambda: len(column(dead, "index")) == len(bad))
    assert column(rows, "seq") == [i for i in range(6_000) if i % 251]  # one connection: in order
    assert column(dead, "index") == bad and column(dead, "offset") == offsets
    assert most[0] == threads  # side by side where there are two threads
    assert threads == 1 or 1 in widths


@pytest.mark.parametrize("kind", ["tcp", "http", "flight"])
async def test_a_port_already_taken_names_its_listener(kind):
    """Not a bare 'Address already in use' (or, from gRPC, 'Server did not start')."""
    from engine.service import ListenError

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        stream = ", stream: events" if kind == "tcp" else ""
        yaml = SERVICE_YAML.replace("listen:\n", f"listen:\n  - {{kind: {kind}, port: {port}{stream}}}\n", 1)
        with pytest.raises(ListenError, match=rf"^listen\.0: cannot listen for {kind} on 127\.0\.0\.1:{port}: "):
            async with Engine(load_config(yaml)):
                pass
