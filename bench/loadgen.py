"""Load generator: producers over TCP or HTTP, one Arrow consumer, every message checked.

    python -m bench.loadgen --rate 100000 --seconds 30          # fixed rate
    python -m bench.loadgen --rate 0 --seconds 30 --connections 4  # as fast as possible

By default it starts ``quiver serve -c configs/bench/loadgen.yaml`` as a subprocess (its
own process, as in production) and reads its ready line; ``--connect`` targets a running
server with that config instead. Messages are clickstream events from bench.corpus,
stamped with ``seq`` (producer and position: every message must arrive exactly once) and
``sent_ns`` (for a fixed rate, the *scheduled* send time, so a stalled producer cannot hide
latency: no coordinated omission). Stamping is vectorised per chunk of messages, so the
generator itself does no per-message Python work.

The consumer, in a process of its own, reads the live Arrow stream over HTTP (or Flight
with ``--consumer flight``); the run reports messages/s, MB/s, latency percentiles from scheduled send to receipt of the
batch holding the message, CPU of server and generator, and lost/duplicate counts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from numba import njit

from bench.corpus import generate

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "bench" / "loadgen.yaml"
STREAM = "clickstream"
SEQ_BASE = 10**15  # seq stamps are 16 digits: 1 + producer (4) + position (11)
PER_PRODUCER = 10**11
_SEQ_W, _SENT_W = 16, 19  # _stamp writes seq as two halves of 8 digits
_PREFIX = b'{"seq":' + b"1" * _SEQ_W + b',"sent_ns":' + b"1" * _SENT_W + b","
_SEQ_AT, _SENT_AT = 7, 7 + _SEQ_W + 11


@njit(nogil=True, cache=True)
def _stamp(out, starts, first_seq, sent_ns):
    """Write message i's seq (first_seq + i) and the chunk's sent_ns as zero-padded digits
    into their places: a per-message numpy stamp (digit arrays and fancy indexing) cost the
    producer a quarter of a core at 1M msgs/s, on the same two cores as the server."""
    sent = np.empty(_SENT_W, np.uint8)
    v = sent_ns
    for k in range(_SENT_W - 1, -1, -1):
        sent[k] = 48 + v % 10
        v //= 10
    for i in range(starts.shape[0]):
        v = first_seq + i
        high = v // 100_000_000  # two independent halves of 8 digits: twice the pace
        low = v - high * 100_000_000
        p = starts[i] + _SEQ_AT
        for k in range(7, -1, -1):
            out[p + 8 + k] = 48 + low % 10
            out[p + k] = 48 + high % 10
            low //= 10
            high //= 10
        p = starts[i] + _SENT_AT
        for k in range(_SENT_W):
            out[p + k] = sent[k]


class Templates:
    """Corpus messages with room for the stamps, cut into chunks of ``chunk`` messages."""

    def __init__(self, chunk: int, count: int = 40_000, seed: int = 7) -> None:
        count -= count % chunk
        lines = generate(STREAM, count, seed).split(b"\n")[:count]
        body = b"".join(_PREFIX + line[1:] + b"\n" for line in lines)
        self.data = np.frombuffer(body, np.uint8)
        lengths = np.array([len(_PREFIX) + len(line) for line in lines], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.chunk = chunk
        self.chunks = count // chunk
        self.bytes_per_message = float(lengths.mean())
        starts = self.offsets[:-1].reshape(self.chunks, chunk) - self.offsets[:-1:chunk][:, None]
        self.starts = starts  # of each message, from its chunk's start
        self.stamp(0, SEQ_BASE, 0)  # compile (or load) the kernel now, not in a timed send

    def stamp(self, c: int, first_seq: int, sent_ns: int) -> bytes:
        """Chunk ``c`` of the templates with seq numbers from ``first_seq`` and ``sent_ns``."""
        lo, hi = self.offsets[c * self.chunk], self.offsets[(c + 1) * self.chunk]
        out = self.data[lo:hi].copy()
        _stamp(out, self.starts[c], first_seq, sent_ns)
        return out.tobytes()


@dataclass
class Server:
    tcp: int
    http: str
    grpc: str
    proc: subprocess.Popen | None = None
    ready_seconds: float = 0.0

    @classmethod
    def spawn(cls, config: Path, env: dict | None = None, module: str = "engine.cli serve") -> Server:
        """Start ``python -m <module> -c config`` (Quiver, or a peer from bench/peers) and
        wait for its ready line."""
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", *module.split(), "-c", str(config)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = proc.stdout.readline()
        if " ready in " not in line:
            proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        server = cls.parse(line)
        server.proc = proc
        server.ready_seconds = time.perf_counter() - started
        return server

    @classmethod
    def parse(cls, ready_line: str) -> Server:
        tcp = int(re.search(r"tcp://[^:]+:(\d+)", ready_line).group(1))
        http = re.search(r"(http://\S+)", ready_line)  # the read floor (bench/peers/reader) has none
        grpc = re.search(r"(grpc://\S+)", ready_line)  # peers (bench/peers) have no Flight
        return cls(tcp, http.group(1) if http else "", grpc.group(1) if grpc else "")

    def cpu_seconds(self) -> float:
        """user + system CPU seconds of the whole server process so far."""
        return self._cpu_seconds("stat")

    def loop_cpu_seconds(self) -> float:
        """The same for its main thread alone, where every service here runs its event loop
        (the rest is worker threads: Quiver's kernels and Arrow assembly, Flight)."""
        return self._cpu_seconds(f"task/{self.proc.pid}/stat") if self.proc else float("nan")

    def _cpu_seconds(self, stat: str) -> float:
        if self.proc is None:
            return float("nan")
        fields = Path(f"/proc/{self.proc.pid}/{stat}").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.http}/v1/streams", timeout=30) as resp:
            return next(s for s in json.load(resp)["streams"] if s["name"] == STREAM)["stats"]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


@dataclass
class Consumer:
    """Reads the live stream; records latency and marks every (producer, position) seen."""

    producers: int
    capacity: int  # most messages one producer can send
    transport: str = "http"
    received: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies: list = field(default_factory=list)
    arrivals: list = field(default_factory=list)  # receipt time (ns) of each batch
    error: str | None = None

    def __post_init__(self) -> None:
        self.seen = np.zeros((self.producers, self.capacity), np.bool_)
        self.subscribed = threading.Event()
        self._counting = threading.Lock()  # a batch's marks and count land together

    def _totals(self) -> tuple[int, int]:
        """(messages received, distinct ones), taken together."""
        with self._counting:
            return self.received, int(np.count_nonzero(self.seen))

    @property
    def unique(self) -> int:
        """Messages received at least once."""
        return self._totals()[1]

    @property
    def duplicates(self) -> int:
        """Extra copies received: from the totals, not per batch (a per-batch np.unique
        cost the consumer as much CPU as the rest of its work at full speed)."""
        received, unique = self._totals()
        return received - unique

    def run(self, server: Server) -> None:
        try:
            for batch in self._batches(server):
                if not batch.num_rows:
                    continue  # the empty first batch that carries the schema
                now = time.time_ns()
                seq = batch.column("seq").to_numpy() - SEQ_BASE
                producer, position = np.divmod(seq, PER_PRODUCER)
                flat = producer * self.capacity + position
                self.latencies.append(now - batch.column("sent_ns").to_numpy())
                self.arrivals.append(now)
                with self._counting:
                    self.seen.reshape(-1)[flat] = True
                    self.received += batch.num_rows
                self.first_ns = self.first_ns or now
                self.last_ns = now
        except Exception as exc:  # reported, not raised: the run's numbers say what happened
            self.error = repr(exc)

    def _batches(self, server: Server):
        if self.transport == "flight":
            import pyarrow.flight as fl

            reader = fl.connect(server.grpc).do_get(fl.Ticket(STREAM.encode()))
            self.subscribed.set()
            for chunk in reader:
                yield chunk.data
            return
        with urllib.request.urlopen(f"{server.http}/v1/streams/{STREAM}/arrow", timeout=600) as resp:
            self.subscribed.set()  # the server subscribes us before it sends the headers
            yield from pa.ipc.open_stream(resp)


def _consume_in_child(
    http: str, grpc: str, transport: str, producers: int, capacity: int, subscribed, control, results
):
    """A consumer in its own process (so neither it nor the producers wait on the other's
    GIL): reads until told how many messages to expect and they are in, or 30 s passed."""
    sink = Consumer(producers, capacity, transport)
    reader = threading.Thread(target=sink.run, args=(Server(0, http, grpc),), daemon=True)
    reader.start()
    sink.subscribed.wait(30)
    subscribed.set()
    expected = control.get()
    settle = time.perf_counter() + 30
    while sink.received < expected and time.perf_counter() < settle and sink.error is None:
        time.sleep(0.01)
    lat = np.concatenate(sink.latencies) / 1e6 if sink.latencies else np.array([np.nan])
    results.put(
        {
            "timeline": _timeline(sink),
            "received": sink.received,
            "unique": sink.unique,
            "duplicates": sink.duplicates,
            "active_s": (sink.last_ns - sink.first_ns) / 1e9,
            "quantiles": [float(q) for q in np.percentile(lat, [50, 99, 99.9])] + [float(lat.max())],
            "error": sink.error,
            "cpu_s": time.process_time(),
        }
    )
    results.close()
    results.join_thread()
    os._exit(0)  # the reader thread may sit in a native read: do not finalize under it


def _timeline(sink: Consumer, bucket_s: float = 0.1) -> list[tuple[float, float, float]]:
    """(seconds since the first batch, p50 ms, max ms) per ``bucket_s`` of receipt time:
    what the latency-over-time plots draw (spikes stay visible as bucket maxima)."""
    if not sink.arrivals:
        return []
    t0 = sink.arrivals[0]
    buckets: dict[int, list[np.ndarray]] = {}
    for at, lat in zip(sink.arrivals, sink.latencies, strict=True):
        buckets.setdefault(int((at - t0) / 1e9 / bucket_s), []).append(lat)
    out = []
    for b in sorted(buckets):
        lat = np.concatenate(buckets[b]) / 1e6
        out.append((round(b * bucket_s, 3), round(float(np.median(lat)), 3), round(float(lat.max()), 3)))
    return out


class RssSampler(threading.Thread):
    """Samples a process's resident memory every ``interval`` seconds (Linux /proc)."""

    def __init__(self, pid: int | None, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []  # (seconds, MB)
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while self.pid is not None and not self._halt.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            self.samples.append((round(time.perf_counter() - t0, 3), round(kb / 1024, 1)))
            self._halt.wait(self.interval)

    def stop(self) -> list[tuple[float, float]]:
        self._halt.set()
        self.join(5)
        return self.samples


class Producer(threading.Thread):
    """One connection sending chunks of stamped messages at its share of the rate."""

    def __init__(
        self,
        index: int,
        server: Server,
        templates: Templates,
        rate: float,
        messages: int,
        transport: str,
        seconds: float | None = None,
    ):
        super().__init__(daemon=True)
        self.index, self.server, self.templates = index, server, templates
        self.rate, self.messages, self.transport = rate, messages, transport
        self.seconds = seconds  # stop sending after this long, even short of ``messages``
        self.sent = 0
        self.bytes = 0
        self.behind_s = 0.0  # how far behind schedule it fell at worst
        self.error: str | None = None

    def run(self) -> None:
        try:
            send, close = self._connect()
            t = self.templates
            interval = t.chunk / self.rate if self.rate else 0.0
            start = time.perf_counter()
            wall0 = time.time_ns()
            c = self.index % t.chunks
            deadline = start + self.seconds if self.seconds else float("inf")
            while self.sent < self.messages and time.perf_counter() < deadline:
                if interval:
                    due = start + (self.sent // t.chunk) * interval
                    lag = time.perf_counter() - due
                    if lag < 0:
                        time.sleep(-lag)
                    self.behind_s = max(self.behind_s, lag)
                    sent_ns = wall0 + int((due - start) * 1e9)  # scheduled time
                else:
                    sent_ns = time.time_ns()
                data = t.stamp(c, SEQ_BASE + self.index * PER_PRODUCER + self.sent, sent_ns)
                send(data)
                self.sent += t.chunk
                self.bytes += len(data)
                c = (c + 1) % t.chunks
            close()
        except Exception as exc:
            self.error = repr(exc)

    def _connect(self):
        if self.transport == "tcp":
            sock = socket.create_connection(("127.0.0.1", self.server.tcp))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)

            def close_tcp() -> None:
                sock.shutdown(socket.SHUT_WR)
                sock.recv(1)
                sock.close()

            return sock.sendall, close_tcp
        host, port = self.server.http.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def post(data: bytes) -> None:
            conn.request("POST", f"/v1/streams/{STREAM}", body=data)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")

        return post, conn.close


@dataclass
class LoadResult:
    transport: str
    connections: int
    target_rate: float
    seconds: float
    sent: int
    received: int
    lost: int
    duplicates: int
    server_received: int
    server_rejected: int
    msgs_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    server_cpu_pct: float
    loadgen_cpu_pct: float
    max_behind_ms: float
    errors: list
    peak_rss_mb: float = 0.0
    server_loop_cpu_pct: float = float("nan")  # of server_cpu_pct, the event loop's thread
    timeline: list = field(default_factory=list, repr=False)  # (s, p50 ms, max ms) per 0.1 s
    rss: list = field(default_factory=list, repr=False)  # (s, MB) every 0.25 s


def default_chunk(rate: float, transport: str) -> int:
    """Messages per send: small chunks at low rates keep the schedule smooth; a POST waits
    for its receipt (a linger), so HTTP sends bigger ones."""
    return 100 if 0 < rate <= 200_000 and transport == "tcp" else 1000


def run_load(
    rate: float,
    seconds: float,
    connections: int = 1,
    transport: str = "tcp",
    consumer: str = "http",
    chunk: int = 0,
    server: Server | None = None,
) -> LoadResult:
    """One run against ``server`` (spawned from configs/bench/loadgen.yaml if None)."""
    templates = Templates(chunk or default_chunk(rate, transport))
    chunk = templates.chunk
    per = rate / connections if rate else 0
    budget = int((per * seconds) if rate else 2_000_000 * seconds / connections)
    per_messages = max(chunk, budget - budget % chunk)
    own = server is None
    server = server or Server.spawn(CONFIG)
    ctx = multiprocessing.get_context("spawn")
    subscribed, control, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    child = ctx.Process(
        target=_consume_in_child,
        args=(server.http, server.grpc, consumer, connections, per_messages, subscribed, control, results),
        daemon=True,
    )
    try:
        child.start()
        if not subscribed.wait(60):
            raise RuntimeError("the consumer did not subscribe")
        # as fast as possible: a time limit too, so a slow server is measured, not waited for
        limit = None if rate else seconds
        producers = [Producer(i, server, templates, per, per_messages, transport, limit) for i in range(connections)]
        sampler = RssSampler(server.proc.pid if server.proc else None)
        sampler.start()
        cpu0, loop0 = server.cpu_seconds(), server.loop_cpu_seconds()
        own0, t0 = time.process_time(), time.perf_counter()
        for p in producers:
            p.start()
        for p in producers:
            p.join()  # a producer that fell behind schedule still sends everything (max_behind_ms)
        sent = sum(p.sent for p in producers)
        control.put(sent)  # the consumer waits for the last batches (linger, parse), then reports
        sink = results.get(timeout=120)
        elapsed = time.perf_counter() - t0
        loop_cpu = server.loop_cpu_seconds() - loop0  # between the process readings
        cpu, own_cpu = server.cpu_seconds() - cpu0, time.process_time() - own0 + sink["cpu_s"]
        # /proc rounds a thread's times and the process' to clock ticks, and splits each into
        # user and system on its own: with (nearly) all the work on the loop's thread, the
        # thread can read a tick above the whole process, which it cannot really be
        loop_cpu = min(loop_cpu, cpu)
        rss = sampler.stop()
        stats = server.stats()
    finally:
        if own:
            server.stop()
        child.join(10)
        if child.is_alive():
            child.kill()
    active = sink["active_s"] if sink["active_s"] > 0 else elapsed
    q = sink["quantiles"]
    unique = sink["unique"]
    errors = [e for e in [sink["error"], *(p.error for p in producers)] if e]
    return LoadResult(
        transport=transport,
        connections=connections,
        target_rate=rate,
        seconds=round(elapsed, 2),
        sent=sent,
        received=sink["received"],
        lost=sent - unique,
        duplicates=sink["duplicates"],
        server_received=stats["received"],
        server_rejected=stats["rejected"],
        msgs_per_s=round(unique / max(elapsed if rate else active, 1e-9)),
        mb_per_s=round(sum(p.bytes for p in producers) / 1e6 / max(elapsed if rate else active, 1e-9), 1),
        p50_ms=round(float(q[0]), 2),
        p99_ms=round(float(q[1]), 2),
        p999_ms=round(float(q[2]), 2),
        max_ms=round(float(q[3]), 2),
        server_cpu_pct=round(100 * cpu / elapsed, 1),
        loadgen_cpu_pct=round(100 * own_cpu / elapsed, 1),
        max_behind_ms=round(1000 * max(p.behind_s for p in producers), 1),
        errors=errors,
        peak_rss_mb=max((mb for _, mb in rss), default=0.0),
        server_loop_cpu_pct=round(100 * loop_cpu / elapsed, 1),
        timeline=sink["timeline"],
        rss=rss,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=100_000, help="messages/s over all connections; 0 = max")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--transport", choices=["tcp", "http"], default="tcp")
    ap.add_argument("--consumer", choices=["http", "flight"], default="http")
    ap.add_argument("--chunk", type=int, default=0, help="messages per send (default: by rate)")
    ap.add_argument("--connect", metavar="READY_LINE", help="use a running server: paste its ready line")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    server = Server.parse(args.connect) if args.connect else None
    result = run_load(args.rate, args.seconds, args.connections, args.transport, args.consumer, args.chunk, server)
    summary = {k: v for k, v in asdict(result).items() if k not in ("timeline", "rss")}
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>16}: {v}")
    return 0 if result.lost == 0 and result.duplicates == 0 and not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
