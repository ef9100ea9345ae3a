"""TCP listener faults: resets, shutdown with data in flight, partial messages, idle producers."""

from __future__ import annotations

import socket
import struct
import threading
import time

import anyio
import pytest

from engine import Engine, load_config
from engine.server import tcp
from tests.live import SERVICE_YAML, assert_pushed_back, column, drain, message, send_tcp, wait_until

pytestmark = pytest.mark.anyio


def _stallable(limits: str = "limits: {max_message_bytes: 4KiB}") -> str:
    """SERVICE_YAML with two arenas and a one-batch consumer queue, so that a subscription
    that is not read stalls the ``events`` stream within a few batches; ``limits`` replaces
    its top-level limits."""
    return SERVICE_YAML.replace(
        "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 3",
        "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 2\n    consumer_queue: 1",
    ).replace("limits: {max_message_bytes: 4KiB}", limits)


def _reset_storm(port: int, n: int) -> None:
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        s.connect(("127.0.0.1", port))
        s.close()


async def test_connections_reset_at_once_do_not_take_the_listener_down():
    async with Engine(load_config(SERVICE_YAML)) as eng:
        port = eng.tcp[0].port
        for _ in range(5):
            await anyio.to_thread.run_sync(_reset_storm, port, 20)
            time.sleep(0.05)  # hold the loop: the resets land before their handlers run
            await anyio.sleep(0.05)
        receipt_rows = []
        sub = eng.subscribe("events")
        await anyio.to_thread.run_sync(send_tcp, port, message(1) + b"\n")
        receipt_rows += (await sub.next_batch()).column("seq").to_pylist()
    assert receipt_rows == [1]


async def test_shutdown_reads_what_producers_already_sent():
    n = 200_000
    data = b"".join(b'{"seq":%d}\n' % i for i in range(n))
    rows, sent = [], threading.Event()

    def produce(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(data)
            sent.set()
            s.recv(1)

    async with anyio.create_task_group() as consumers, Engine(load_config(SERVICE_YAML)) as eng:
        consumers.start_soon(drain, eng.subscribe("other"), rows)
        producer = threading.Thread(target=produce, args=(eng.tcp[2].port,))
        producer.start()
        await anyio.sleep(0.05)  # stop while most of it still sits in socket buffers
    producer.join(30)
    assert sent.is_set() and sorted(column(rows, "seq")) == list(range(n))


async def test_shutdown_stops_reading_a_producer_that_never_pauses_while_held_back(monkeypatch):
    """A producer faster than the stream is held back read after read, so its deadline
    timer never gets to fire: shutdown must still stop reading it after DRAIN_MAX_S, not
    at the engine's shutdown timeout, when consumers are dropped."""
    monkeypatch.setattr(tcp, "DRAIN_MAX_S", 0.5)
    chunk = b"".join(message(i) + b"\n" for i in range(2000))
    stop, rows = threading.Event(), []

    def produce(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            try:
                while not stop.is_set():
                    s.sendall(chunk)
            except OSError:  # closed by the shutdown
                pass

    eng = Engine(load_config(SERVICE_YAML), shutdown_timeout=30)
    async with anyio.create_task_group() as consumers, eng:
        consumers.start_soon(drain, eng.subscribe("events"), rows)
        producer = threading.Thread(target=produce, args=(eng.tcp[0].port,))
        producer.start()
        pipeline = eng.streams["events"].pipeline
        await wait_until(lambda: eng.streams["events"].batcher.saturated and pipeline.stats.batches > 20)
    stop.set()
    producer.join(10)
    stats = eng.streams["events"].stats
    # at the engine's timeout the consumer would have been dropped, its rows short
    assert stats.received == stats.accepted > 0 and len(column(rows, "seq")) == stats.accepted


async def test_a_message_cut_off_by_a_dead_producer_is_discarded_and_counted():
    cfg = load_config(
        SERVICE_YAML.replace(
            "limits: {max_message_bytes: 4KiB}", "limits: {max_message_bytes: 4KiB, idle_timeout_s: 0.3}"
        )
    )
    rows = []
    async with anyio.create_task_group() as consumers, Engine(cfg) as eng:
        consumers.start_soon(drain, eng.subscribe("events"), rows)
        with socket.create_connection(("127.0.0.1", eng.tcp[0].port)) as s:
            s.sendall(message(1) + b"\n" + message(2)[:10])  # then silence: idle timeout
            s.settimeout(20)
            assert await anyio.to_thread.run_sync(s.recv, 1) == b""  # the server hung up
    assert column(rows, "seq") == [1]
    stats = eng.stats("events")
    assert stats["discarded_partials"] == 1 and stats["received"] == 1 == stats["accepted"]


async def test_connections_beyond_the_limit_are_refused():
    cfg = load_config(
        SERVICE_YAML.replace(
            "limits: {max_message_bytes: 4KiB}", "limits: {max_message_bytes: 4KiB, max_connections: 2}"
        )
    )
    async with Engine(cfg) as eng:
        port = eng.tcp[0].port
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        await anyio.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.settimeout(10)
            assert await anyio.to_thread.run_sync(extra.recv, 1) == b""  # closed at once
        assert eng.tcp[0].refused == 1
        for s in held:
            s.close()


async def test_a_producer_ahead_of_the_stream_from_its_first_byte_is_pushed_back():
    """The first bytes arrive before the connection's handler first reads (the loop is busy
    while they are sent); the stream is stalled by a consumer that does not read. The
    producer must still be held back by TCP, not buffered in the server's memory."""
    cfg = load_config(_stallable())
    line = message(1, "x" * 15) + b"\n"
    total = 1_000_000
    data = line * total  # ~40 MB
    first = 64 * len(line) * 40
    async with Engine(cfg) as eng:
        sub = eng.subscribe("events")
        sock = socket.create_connection(("127.0.0.1", eng.tcp[0].port))
        sock.sendall(data[:first])  # blocking, on the loop's thread: nothing is read meanwhile
        await assert_pushed_back(eng, sock, data, first, sub, total)


async def test_time_the_stream_holds_a_producer_back_is_not_charged_to_its_message():
    """message_timeout_s bounds how long a producer takes over a message, not how long the
    stream kept it from reading: a message under way when the stream stalled for longer
    than the limit is taken whole once the stream moves again."""
    yaml = _stallable("limits: {max_message_bytes: 4KiB, message_timeout_s: 0.5}")
    line = message(1, "x" * 15) + b"\n"
    async with Engine(load_config(yaml)) as eng:
        sub = eng.subscribe("events")  # not read yet: the stream stalls
        port = eng.tcp[0].port
        flood = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        rows = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, flood.sendall, line * 20_000)
            await wait_until(lambda: eng.streams["events"].batcher.saturated)
            slow.sendall(line * 10 + line[:10])  # one read, ending mid-message, held back
            await anyio.sleep(1.5)  # three message timeouts
            with anyio.fail_after(60):
                while rows < 20_010:
                    rows += (await sub.next_batch()).num_rows
        slow.sendall(line[10:])  # the rest of the message under way
        with anyio.fail_after(30):
            while rows < 20_011:
                rows += (await sub.next_batch()).num_rows
        assert eng.tcp[0].limit_hits["message_timeout"] == 0
        flood.close()
        slow.close()


async def test_whole_messages_of_a_connection_closed_for_the_partial_budget_still_go_in():
    """A read that completes messages and also starts one that takes the listener past
    max_partial_bytes closes the connection, while the stream has no free arena: the
    partial is discarded (counted), the completed messages are not."""
    yaml = _stallable("limits: {max_message_bytes: 60KiB, max_partial_bytes: 1MiB}")
    line = message(1, "x" * 15) + b"\n"
    async with Engine(load_config(yaml)) as eng:
        sub = eng.subscribe("events")  # not read yet: the stream stalls
        port = eng.tcp[0].port
        holders = [socket.create_connection(("127.0.0.1", port)) for _ in range(17)]
        for h in holders:  # partials that stay: 17 x 60,000 bytes of the 1 MiB budget
            h.sendall(b'{"seq": 1, "name": "' + b"h" * (60_000 - 20))
        await wait_until(lambda: eng.tcp[0]._partials.held == 17 * 60_000)
        # the stream is stalled through another listener (its own partial budget)
        flood = socket.create_connection(("127.0.0.1", eng.tcp[1].port))
        frame = struct.pack(">I", len(line) - 1) + line[:-1]
        rows = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, flood.sendall, frame * 20_000)
            await wait_until(lambda: eng.streams["events"].batcher.saturated)
            closed = socket.create_connection(("127.0.0.1", port))
            closed.sendall(line * 10 + b'{"seq": 2, "name": "' + b"c" * 40_000)
            await wait_until(lambda: eng.tcp[0].limit_hits["max_partial_bytes"] == 1)
            with anyio.fail_after(60):
                while rows < 20_010:
                    rows += (await sub.next_batch()).num_rows
        assert eng.stats("events")["discarded_partials"] == 1
        for s in (*holders, flood, closed):
            s.close()
