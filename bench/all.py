"""The benchmark suite in one command: Quiver against the service a Python developer would
otherwise write, side by side, regenerating bench/RESULTS.md and its plots.

    python -m bench all            # 30 s per run (60 s at 50k/s), 3 repeats: about 35 min
    python -m bench all --quick    # a smoke run of a minute or two (what the tests run)

What runs, all on this machine with the load generator of bench/loadgen.py (TCP in, one
live Arrow consumer over HTTP in its own process, every message checked):

* services: ``quiver serve`` and the peers in bench/peers (asyncio + orjson + per-field
  validation + ``RecordBatch.from_pylist``; asyncio + ``pyarrow.json`` per batch), each on
  configs/bench/loadgen.yaml, at 10k, 50k, 100k and 200k messages/s and as fast as possible;
  per run: throughput, CPU of the service process, RSS over time, latency from scheduled
  send to the consumer (p50/p99/p99.9/max, and over time), messages lost;
* the read floor at each fixed rate: CPU of a process that only reads the same producer's
  bytes (bench/peers/reader.py), what the machine charges before any service does work;
* Python allocations on the hot path, in process: gen-0 garbage collections per million
  messages and allocated memory blocks per batch (Quiver's ingest path and the plain
  peer's per-message path over the same bytes);
* kernel scaling: parse throughput at 1..N threads, Quiver and pyarrow.json on the same
  bytes (bench/parse.py).

Repeated runs are interleaved (every service at every rate, then again) and reported as
medians; ratios are against the plain asyncio peer measured in the same invocation.
Nothing here asserts a time: the report says what was measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.loadgen import CONFIG, ROOT, STREAM, LoadResult, Producer, Server, Templates, default_chunk, run_load

SERVICES = {
    "quiver": "engine.cli serve",
    "asyncio+orjson": "bench.peers.plain",
    "asyncio+pyarrow.json": "bench.peers.pyarrow_json",
}
PEER = "asyncio+orjson"  # the baseline every ratio is against
FLOOR = "bench.peers.reader"  # reads and discards: what the reads alone cost
FLOOR_SECONDS = 10.0  # the floor is steady: a short run per rate is enough
MAX = 0  # rate 0: as fast as possible


def rate_label(rate: float) -> str:
    return "max" if rate == MAX else f"{rate / 1000:g}k/s"


# -- service runs -------------------------------------------------------------------------


def service_runs(rates: list[float], seconds: dict[float, float], repeat: int, log) -> tuple[list[dict], list[dict]]:
    """Every service at every rate, and the read floor at every fixed rate, interleaved:
    (service runs, floor runs)."""
    runs, floors = [], []
    for r in range(repeat):
        for rate in rates:
            if rate != MAX:
                floor = floor_run(rate, min(seconds[rate], FLOOR_SECONDS))
                floors.append({"rate": rate, "repeat": r, **floor})
                log(
                    f"{'read floor':<22} {rate_label(rate):>7} #{r + 1}: cpu {floor['cpu_pct']:5.1f}%"
                    f"  read {floor['read_bytes']:,} of {floor['sent_bytes']:,} bytes"
                )
            for name, module in SERVICES.items():
                server = Server.spawn(CONFIG, module=module)
                try:
                    res: LoadResult = run_load(rate, seconds[rate], connections=1 if rate else 2, server=server)
                finally:
                    server.stop()
                row = {"service": name, "rate": rate, "repeat": r, **asdict(res)}
                runs.append(row)
                log(
                    f"{name:<22} {rate_label(rate):>7} #{r + 1}: {res.msgs_per_s:>9,} msgs/s  p99 {res.p99_ms:8.1f} ms"
                    f"  max {res.max_ms:8.1f} ms  cpu {res.server_cpu_pct:5.1f}%  rss {res.peak_rss_mb:6.0f} MB"
                    f"  lost {res.lost}"
                )
    return runs, floors


def floor_run(rate: float, seconds: float) -> dict:
    """CPU of a process that only reads what the load generator's producer sends at
    ``rate`` (same chunks, same pacing, one connection as in the service runs)."""
    server = Server.spawn(CONFIG, module=FLOOR)
    try:
        templates = Templates(default_chunk(rate, "tcp"))
        budget = int(rate * seconds)
        producer = Producer(0, server, templates, rate, max(templates.chunk, budget - budget % templates.chunk), "tcp")
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        producer.start()
        producer.join()
        elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    finally:
        server.stop()
    assert server.proc is not None and server.proc.stdout is not None
    said = server.proc.stdout.read()
    read = int(said.split("read ", 1)[1].split()[0]) if "read " in said else -1
    return {
        "cpu_pct": round(100 * cpu / elapsed, 1),
        "sent_bytes": producer.bytes,
        "read_bytes": read,
        "error": producer.error,
    }


def median_of(runs: list[dict], service: str, rate: float, key: str) -> float:
    values = [r[key] for r in runs if r["service"] == service and r["rate"] == rate]
    return statistics.median(values) if values else float("nan")


# -- allocations ----------------------------------------------------------------------------


class GcCounter:
    """Counts generation-0 collections: each means ~700 more container objects were
    allocated than freed since the last one (CPython's default threshold)."""

    def __init__(self) -> None:
        self.collections = 0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.collections += 1

    def __enter__(self) -> GcCounter:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def allocation_probe(batches: int, batch_messages: int = 65536) -> dict[str, dict]:
    """gen-0 collections per million messages and the spread of allocated-block deltas
    per batch, for Quiver's whole ingest path and the plain peer's per-message path."""
    import anyio

    from engine import Engine, load_config

    templates = Templates(batch_messages, count=batch_messages)
    data = templates.stamp(0, 10**15, time.time_ns())
    text = CONFIG.read_text().split("listen:")[0] + "listen: []\nlog_level: warning\n"
    out: dict[str, dict] = {}

    async def quiver() -> dict:
        async with Engine(load_config(text)) as eng:
            stream = eng.streams["clickstream"]
            sub = eng.subscribe("clickstream")
            half = data[: data.index(b"\n", len(data) // 2) + 1]  # stays below max_messages
            for _ in range(3):  # warm-up: first-use allocations, caches
                await eng.ingest("clickstream", data)
                await sub.next_batch()
            deltas = []
            with GcCounter() as counter:
                for _ in range(batches):
                    framer = stream.framer()
                    before = sys.getallocatedblocks()
                    framer.feed(half)
                    await framer.sink.drain()
                    deltas.append(sys.getallocatedblocks() - before)  # what a batch in progress holds
                    framer.finish()
                    await framer.sink.drain()
                    batch = await sub.next_batch()  # the linger flushes it
                    assert batch.num_rows == half.count(b"\n")
                    receipt = await eng.ingest("clickstream", data)
                    batch = await sub.next_batch()
                    assert receipt.accepted == batch.num_rows == batch_messages
                    del batch
            return _alloc_row(
                counter.collections, deltas, batches * (batch_messages + half.count(b"\n")), per_batch=half.count(b"\n")
            )

    out["quiver"] = anyio.run(quiver, backend="asyncio")
    out[PEER] = peer_allocations(data, batches)
    return out


def peer_allocations(data: bytes, batches: int) -> dict:
    from bench.peers.plain import PlainIngest
    from engine import load_config

    ingest = PlainIngest(next(iter(load_config(CONFIG).streams.values())))
    lines = data.rstrip(b"\n").split(b"\n")
    for _ in range(2):
        ingest.add(lines)
        ingest.take()()
    deltas = []
    with GcCounter() as counter:
        for _ in range(batches):
            before = sys.getallocatedblocks()
            ingest.add(lines)
            deltas.append(sys.getallocatedblocks() - before)  # what a batch in progress holds
            built = ingest.take()()
            assert built.batch is not None and built.batch.num_rows == len(lines)
    return _alloc_row(counter.collections, deltas, batches * len(lines), per_batch=len(lines))


def _alloc_row(collections: int, held: list[int], messages: int, per_batch: int) -> dict:
    return {
        "gc_per_million": round(collections * 1e6 / messages, 1),
        "blocks_held": int(statistics.median(held)),
        "batch_messages": per_batch,
        "blocks_per_message": round(statistics.median(held) / per_batch, 3),
    }


# -- kernel scaling -------------------------------------------------------------------------


def kernel_scaling(messages: int, repeat: int, processes: int, log) -> list[dict]:
    """Parse MB/s at 1..N threads; each point is the median over ``processes`` fresh
    processes of their medians (a process's speed is one sample: see bench/parse.py)."""
    from bench.parse import load_corpus, run_corpus_in_processes

    megabytes = load_corpus("clickstream", messages, 0).megabytes
    rows = []
    for threads in range(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1) + 1):
        results = run_corpus_in_processes(
            "clickstream", messages, 0, ["quiver", "pyarrow"], threads, repeat, 1 << 20, False, processes, log
        )
        for r in results:
            rows.append({"peer": r.peer, "threads": threads, "mb_per_s": round(megabytes / r.median, 1)})
    return rows


# -- report ---------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    import numba
    import pyarrow as pa

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    try:
        from numba.np.ufunc.parallel import threading_layer

        numba.njit(parallel=True)(lambda n: np.arange(n).sum())(10)
        layer = threading_layer()
    except Exception as exc:  # a report, not a failure
        layer = f"unknown ({exc})"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "python": platform.python_version(),
        "versions": f"numba {numba.__version__}, numpy {np.__version__}, pyarrow {pa.__version__}",
        "numba threading layer": layer,
    }


def floor_of(floors: list[dict], rate: float) -> float:
    values = [f["cpu_pct"] for f in floors if f["rate"] == rate]
    return statistics.median(values) if values else float("nan")


def plots(runs: list[dict], floors: list[dict], scaling: list[dict], rates: list[float], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    names = []
    colors = {"quiver": "tab:blue", "asyncio+orjson": "tab:red", "asyncio+pyarrow.json": "tab:orange"}
    spike_rate = 50_000 if 50_000 in rates else next(r for r in rates if r)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in SERVICES:
        run = next((r for r in runs if r["service"] == name and r["rate"] == spike_rate), None)
        if run and run["timeline"]:
            t, p50, mx = zip(*run["timeline"], strict=True)
            ax.plot(t, mx, color=colors[name], lw=0.8, label=f"{name} max")
            ax.plot(t, p50, color=colors[name], lw=0.8, ls=":", label=f"{name} p50")
    ax.set(xlabel="seconds", ylabel="latency, ms (per 0.1 s)", yscale="log")
    ax.set_title(f"Latency over time at {rate_label(spike_rate)}: scheduled send to consumer")
    ax.legend(fontsize=8)
    names.append(_save(fig, out / "latency_over_time.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in SERVICES:
        fixed = [r for r in rates if r]
        ax.plot(
            [r / 1000 for r in fixed],
            [median_of(runs, name, r, "server_cpu_pct") for r in fixed],
            "o-",
            color=colors[name],
            label=name,
        )
    if floors:
        fixed = [r for r in rates if r]
        ax.plot(
            [r / 1000 for r in fixed], [floor_of(floors, r) for r in fixed], "o--", color="tab:gray", label="reads only"
        )
    ax.set(xlabel="offered rate, thousand messages/s", ylabel="service CPU % (of one core)")
    ax.set_title("CPU vs rate")
    ax.legend(fontsize=8)
    names.append(_save(fig, out / "cpu_vs_rate.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in SERVICES:
        run = next((r for r in runs if r["service"] == name and r["rate"] == spike_rate), None)
        if run and run["rss"]:
            t, mb = zip(*run["rss"], strict=True)
            ax.plot(t, mb, color=colors[name], label=name)
    ax.set(xlabel="seconds", ylabel="RSS, MB")
    ax.set_title(f"Service memory at {rate_label(spike_rate)}")
    ax.legend(fontsize=8)
    names.append(_save(fig, out / "rss.png"))

    if scaling:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for peer, label, color in (("quiver", "Quiver kernels", "tab:blue"), ("pyarrow", "pyarrow.json", "tab:green")):
            rows = [r for r in scaling if r["peer"] == peer]
            ax.plot([r["threads"] for r in rows], [r["mb_per_s"] for r in rows], "o-", color=color, label=label)
        ax.set(xlabel="threads", ylabel="MB/s of NDJSON", xticks=sorted({r["threads"] for r in scaling}))
        ax.set_title("Parse throughput vs threads (clickstream)")
        ax.legend(fontsize=8)
        names.append(_save(fig, out / "threads.png"))
    return names


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def report(
    env: dict,
    runs: list[dict],
    floors: list[dict],
    allocs: dict,
    scaling: list[dict],
    rates: list[float],
    args,
    images: list[str],
) -> str:
    repeat = max(r["repeat"] for r in runs) + 1
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench all{' --quick' if args.quick else ''}`; do not edit by hand.",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        f"- runs: {repeat} repeat(s), interleaved; medians below. Load generator and services share this machine.",
        "",
        "## Services side by side (`bench/loadgen.py`, TCP in, HTTP Arrow consumer)",
        "",
        "Latency runs from a message's scheduled send time to the consumer's receipt of its batch "
        "(no coordinated omission). CPU is the service process's user+system time over wall time "
        "(100% = one core). `vs asyncio+orjson` compares with that peer in the same invocation: at a "
        "fixed rate its CPU divided by this service's (above 1: this one uses less), at full speed "
        "this service's throughput divided by its (above 1: this one is faster). Medians hide outliers, "
        "so the worst p99 and the highest RSS of the repeats are shown too.",
        "",
        "| rate | service | msgs/s | p50 ms | p99 ms | p99.9 ms | max ms | worst p99 ms | CPU % | peak RSS MB (worst) "
        "| lost | vs asyncio+orjson |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in rates:
        for name in SERVICES:
            if not any(r["service"] == name and r["rate"] == rate for r in runs):
                continue

            def m(key: str, name: str = name, rate: float = rate) -> float:
                return median_of(runs, name, rate, key)

            mine = [r for r in runs if r["service"] == name and r["rate"] == rate]
            lost = sum(r["lost"] + r["duplicates"] for r in mine)
            worst_p99 = max(r["p99_ms"] for r in mine)
            worst_rss = max(r["peak_rss_mb"] for r in mine)
            if name == PEER:
                vs = "1.00x"
            elif rate == MAX:
                vs = f"{m('msgs_per_s') / median_of(runs, PEER, rate, 'msgs_per_s'):.2f}x"
            else:
                vs = f"{median_of(runs, PEER, rate, 'server_cpu_pct') / max(m('server_cpu_pct'), 1e-9):.2f}x"
            lines.append(
                f"| {rate_label(rate)} | {name} | {m('msgs_per_s'):,.0f} | {m('p50_ms'):.1f} | {m('p99_ms'):.1f} | "
                f"{m('p999_ms'):.1f} | {m('max_ms'):.1f} | {worst_p99:.1f} | {m('server_cpu_pct'):.0f} | {worst_rss:.0f} | "
                f"{lost} | {vs} |"
            )
    lines += ["", *floor_table(runs, floors, rates)]
    lines += ["", *targets(runs, floors, rates), "", "## Python allocations on the hot path", ""]
    lines += [
        "In process, the same stamped clickstream messages through Quiver's whole ingest path "
        "(framing into the arena, kernels, Arrow, topic) and through the plain peer's "
        "(`orjson.loads`, field checks, a dict per message, `from_pylist`). Generation-0 "
        "collections run every ~700 net container allocations, so they count per-message "
        "objects; blocks held is `sys.getallocatedblocks()` grown while a batch is being filled.",
        "",
        "| path | gen-0 GC collections per million messages | blocks held by a batch being filled | messages in it | blocks per message |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, a in allocs.items():
        lines.append(
            f"| {name} | {a['gc_per_million']} | {a['blocks_held']:,} | {a['batch_messages']:,} | {a['blocks_per_message']} |"
        )
    if scaling:
        lines += [
            "",
            "## Kernel scaling (`bench/parse.py`, clickstream)",
            "",
            "Each point is the median over fresh processes of each process's median run: on this "
            "machine a process's parse speed is set when it starts, so one process is one sample.",
            "",
            "| threads | Quiver MB/s | pyarrow.json MB/s | ratio |",
            "|---:|---:|---:|---:|",
        ]
        for t in sorted({r["threads"] for r in scaling}):
            q = next(r["mb_per_s"] for r in scaling if r["threads"] == t and r["peer"] == "quiver")
            p = next(r["mb_per_s"] for r in scaling if r["threads"] == t and r["peer"] == "pyarrow")
            lines.append(f"| {t} | {q} | {p} | {q / p:.2f}x |")
    lines += ["", "## Plots", "", *[f"![{n}](results/{n})" for n in images]]
    lines += [
        "",
        "## Other benchmarks",
        "",
        "- Parse throughput against pyarrow.json, msgspec and orjson on three corpora: "
        "`python -m bench.parse --markdown` ([results/parse.md](results/parse.md)).",
        "- What each durability mode costs: `python -m bench.durability` "
        "([results/durability.md](results/durability.md)).",
        "- Start-up time: `python -m bench.startup --cold`.",
        "",
        "## On a bigger machine",
        "",
        "Set `kernels.threads` in configs/bench/loadgen.yaml (default `auto`: every core Numba sees) "
        "and run more producer connections: `python -m bench.loadgen --rate 0 --connections 8 --seconds 30`. "
        "Kernel scaling covers 1..N threads where N is the machine's cores.",
    ]
    return "\n".join(lines) + "\n"


def floor_table(runs: list[dict], floors: list[dict], rates: list[float]) -> list[str]:
    """CPU of each service beside that of a process that only reads the same bytes."""
    fixed = [r for r in rates if r]
    if not floors or not fixed:
        return []
    lines = [
        "### CPU beside the read floor",
        "",
        "The read floor (`bench/peers/reader.py`) is a process that reads what the same producer sends, "
        "in the same chunks at the same pace, and throws it away. Its CPU is what this machine charges "
        "for the reads alone (wake-ups, system calls, the event loop); every service pays it before any "
        "work of its own. *Above floor* is a service's CPU minus the floor's. The targets below are on "
        "the whole CPU, floor included.",
        "",
        "| rate | reads only CPU % | " + " | ".join(f"{n} CPU % (above floor)" for n in SERVICES) + " |",
        "|---|---:|" + "---:|" * len(SERVICES),
    ]
    for rate in fixed:
        floor = floor_of(floors, rate)
        cells = []
        for name in SERVICES:
            cpu = median_of(runs, name, rate, "server_cpu_pct")
            cells.append(f"{cpu:.0f} ({cpu - floor:.0f})")
        lines.append(f"| {rate_label(rate)} | {floor:.1f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Quiver's CPU by thread: its event loop (reads, batching, publishing, the HTTP consumer's "
        "Arrow stream) runs on the main thread, and so do the kernels and Arrow assembly of a "
        "small batch that linger_ms flushed; full or large batches go to a worker thread (and, "
        "for large ones, Numba's threads). Medians of the same runs.",
        "",
        "| rate | quiver CPU % | event-loop thread % | other threads % |",
        "|---|---:|---:|---:|",
    ]
    for rate in fixed:
        mine = [r for r in runs if r["service"] == "quiver" and r["rate"] == rate]
        other = statistics.median([r["server_cpu_pct"] - r["server_loop_cpu_pct"] for r in mine] or [float("nan")])
        cpu, loop = (median_of(runs, "quiver", rate, k) for k in ("server_cpu_pct", "server_loop_cpu_pct"))
        lines.append(f"| {rate_label(rate)} | {cpu:.1f} | {loop:.1f} | {other:.1f} |")
    return lines


def targets(runs: list[dict], floors: list[dict], rates: list[float]) -> list[str]:
    """The issue's targets, checked against what was measured (never asserted)."""
    from engine import load_config

    linger_ms = load_config(CONFIG).streams[STREAM].batch.linger_ms  # the latency targets add to it
    out = ["### Targets", ""]
    if 50_000 in rates:
        q_cpu, p_cpu = (
            median_of(runs, "quiver", 50_000, "server_cpu_pct"),
            median_of(runs, PEER, 50_000, "server_cpu_pct"),
        )
        p999, p99, mx = (median_of(runs, "quiver", 50_000, k) for k in ("p999_ms", "p99_ms", "max_ms"))
        linger = linger_ms
        out += [
            f"- At 50k/s Quiver used {q_cpu:.0f}% CPU, the asyncio+orjson peer {p_cpu:.0f}%: "
            f"{p_cpu / max(q_cpu, 1e-9):.1f}x less (target: at least 5x). "
            f"{'Met' if p_cpu >= 5 * q_cpu else 'Not met'}. A process that only reads the same bytes used "
            f"{floor_of(floors, 50_000):.1f}%.",
            f"- At 50k/s Quiver's p99.9 was {p999:.1f} ms (target: linger_ms + 5 = {linger + 5} ms). "
            f"{'Met' if p999 <= linger + 5 else 'Not met'}.",
            f"- At 50k/s Quiver's max was {mx:.1f} ms, {mx / max(p99, 1e-9):.1f}x its p99 {p99:.1f} ms "
            f"(target: no spike over 3x p99). {'Met' if mx <= 3 * p99 else 'Not met'}.",
        ]
    if 100_000 in rates:
        p99 = median_of(runs, "quiver", 100_000, "p99_ms")
        out.append(
            f"- At 100k/s Quiver's p99 was {p99:.1f} ms (service target: linger_ms + 10 = {linger_ms + 10} ms). "
            f"{'Met' if p99 <= linger_ms + 10 else 'Not met'}."
        )
    if MAX in rates:
        q, p = median_of(runs, "quiver", MAX, "msgs_per_s"), median_of(runs, PEER, MAX, "msgs_per_s")
        out += [
            f"- At full speed Quiver moved {q:,.0f} msgs/s, the peer {p:,.0f}: {q / max(p, 1e-9):.1f}x "
            f"(target: at least 10x). {'Met' if q >= 10 * p else 'Not met'}.",
            f"- Service target: at least 1,000,000 msgs/s end to end at full speed, load generator on the same "
            f"machine. {'Met' if q >= 1_000_000 else 'Not met'} (median {q:,.0f}; every message checked, lost "
            f"{sum(r['lost'] + r['duplicates'] for r in runs if r['service'] == 'quiver' and r['rate'] == MAX)}).",
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench all", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: short runs, fewer rates, one repeat")
    ap.add_argument("--seconds", type=float, help="seconds per run (default 30, 60 at 50k/s; quick: 3)")
    ap.add_argument("--repeat", type=int, help="repeats per run (default 3; quick: 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench", help="where RESULTS.md and results/ go")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rates = [10_000, 50_000, MAX] if args.quick else [10_000, 50_000, 100_000, 200_000, MAX]
    base = args.seconds or (3.0 if args.quick else 30.0)
    seconds = {r: (base if (args.quick or args.seconds) else (60.0 if r == 50_000 else base)) for r in rates}
    repeat = args.repeat or (1 if args.quick else 3)
    env = environment()
    runs, floors = service_runs(rates, seconds, repeat, log)
    allocs = allocation_probe(batches=3 if args.quick else 20)
    log(f"allocations: {json.dumps(allocs)}")
    scaling = kernel_scaling(20_000 if args.quick else 500_000, 2 if args.quick else 5, 1 if args.quick else 5, log)
    images = plots(runs, floors, scaling, rates, args.out / "results")
    (args.out / "RESULTS.md").write_text(report(env, runs, floors, allocs, scaling, rates, args, images))
    (args.out / "results").mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k not in ("timeline", "rss")} for r in runs]
    (args.out / "results" / "runs.json").write_text(
        json.dumps({"environment": env, "runs": slim, "read_floor": floors}, indent=1)
    )
    log(f"wrote {args.out / 'RESULTS.md'}")
    complete = all(r["lost"] == 0 and r["duplicates"] == 0 for r in runs)
    return 0 if complete and all(f["read_bytes"] == f["sent_bytes"] for f in floors) else 1


if __name__ == "__main__":
    sys.exit(main())
