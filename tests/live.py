"""Helpers for tests that run the real service on loopback: config, producers, consumers."""

from __future__ import annotations

import socket
import time

import anyio
import pyarrow as pa

from engine.outputs.hub import Subscription

SERVICE_YAML = """
streams:
  events:
    fields:
      seq:  {type: int64, required: true}
      name: {type: string, max_length: 20}
      v:    {type: float64}
      kind: {type: string, enum: [a, b]}
    batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}
    arenas: 3
  other:
    fields:
      seq: {type: int64, required: true}
    batch: {max_messages: 100000, max_bytes: 8MiB, linger_ms: 50}
listen:
  - {kind: tcp, port: 0, stream: events}
  - {kind: tcp, port: 0, stream: events, framing: length_prefixed}
  - {kind: tcp, port: 0, stream: other}
  - {kind: http, port: 0}
  - {kind: flight, port: 0}
limits: {max_message_bytes: 4KiB}
kernels: {threads: 2}
"""


def message(seq: int, name: str = "n") -> bytes:
    return b'{"seq":%d,"name":"%s","v":%d.5,"kind":"%s"}' % (seq, name.encode(), seq, b"ab"[seq % 2 : seq % 2 + 1])


def send_tcp(port: int, data: bytes, pieces: int = 1) -> None:
    """Send ``data`` on a fresh connection in ``pieces`` writes, then close it cleanly."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        step = max(1, len(data) // pieces)
        for lo in range(0, len(data), step):
            s.sendall(data[lo : lo + step])
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the server closes after reading everything


def exchange(port: int, data: bytes, *, pause: float = 0.0, half_close: bool = False) -> bytes:
    """Send raw ``data`` on a fresh connection (then wait ``pause``, or end our side with
    ``half_close``) and read what comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)
        if pause:
            time.sleep(pause)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(20)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


async def drain(sub: Subscription, into: list[pa.RecordBatch]) -> None:
    async for batch in sub:
        into.append(batch)


def column(batches: list[pa.RecordBatch], name: str) -> list:
    return [v for b in batches for v in b.column(name).to_pylist()]


async def wait_until(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def assert_pushed_back(eng, sock: socket.socket, data: bytes, first: int, sub: Subscription, total: int) -> None:
    """Send ``data[first:]`` on ``sock`` from a thread while ``sub`` (not read yet) stalls
    the ``events`` stream: TCP must hold the sender back (far less than 16 MB taken: socket
    buffers, the arenas, a batch or two), and once ``sub`` reads, all ``total`` rows arrive."""
    import threading

    sent = [first]

    def rest() -> None:
        for lo in range(first, len(data), 1 << 16):
            sock.sendall(data[lo : lo + (1 << 16)])
            sent[0] += len(data[lo : lo + (1 << 16)])
        sock.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=rest)
    sender.start()
    await wait_until(lambda: eng.streams["events"].batcher.saturated)
    await anyio.sleep(1.0)
    assert sent[0] < 16 << 20 and sender.is_alive()
    rows = 0
    with anyio.fail_after(120):
        while rows < total:
            rows += (await sub.next_batch()).num_rows
    await anyio.to_thread.run_sync(sender.join)
    sock.close()
    assert rows == total
