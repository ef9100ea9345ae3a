"""Soak: a steady load for minutes, with the server's memory, open file descriptors,
throughput, latency and CPU sampled every second. Is memory flat after warm-up?

    python -m bench soak                                   # 10 minutes at 200k messages/s
    python -m bench soak --minutes 30 --rate 100000 --connections 2
    python -m bench soak --seconds 20 --rate 5000 --out /tmp/soak   # a short run

It starts ``quiver serve`` (configs/bench/loadgen.yaml, or ``-c`` a config with the same
``clickstream`` stream and a TCP listener) as its own process and drives it with the pieces
of bench/loadgen.py: producers over TCP at a fixed rate with each message's scheduled send
time stamped in it, and one live Arrow consumer (HTTP, in a process of its own) that marks
every message seen. Every wall-clock second it records the server's RSS, open file
descriptors (``/proc/PID/fd``), threads and CPU, the messages sent and delivered in that
second, and the latency p50/p99/max of the messages delivered in it. At the end it checks
that nothing was lost (the consumer saw every message sent exactly once; the server's own
counts agree) and writes ``soak.md`` (settings, per-period table, flatness verdict) and
``soak.png`` to ``--out`` (default bench/results). Exits 1 if a message was lost or
duplicated, the server's counts do not add up, or a producer or the consumer failed.

Flatness: RSS after warm-up (``--warmup``, default a fifth of the run, at most 60 s) is
compared between the first and the last window (a minute, or a third of the steady part of a
short run), and fitted with a line (MB/min). It is called flat when neither the growth
between the windows' medians nor the fitted growth over the steady part exceeds
max(5 MB, 2% of the first window's median). Shrinking is not growth.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.loadgen import CONFIG, ROOT, Consumer, Producer, Server, Templates

#: Latency histogram edges, ms: 0.01 ms to ~2.8 h, 200 bins a decade (each ~1.2% wide).
HIST_EDGES = np.logspace(-2, 7, 1801)
NS = 1_000_000_000


# -- the consumer, summarising per second ----------------------------------------------------


def _consume_per_second(http: str, grpc: str, producers: int, capacity: int, subscribed, control, out) -> None:
    """bench.loadgen's Consumer in a process of its own; every half second the batches it
    received are grouped by the wall-clock second they arrived in, and each finished second
    goes to ``out`` as (second, messages, p50, p99, max ms). Runs until told how many
    messages to expect and they are in (or 30 s after the last one came in)."""
    sink = Consumer(producers, capacity)
    reader = threading.Thread(target=sink.run, args=(Server(0, http, grpc),), daemon=True)
    reader.start()
    sink.subscribed.wait(30)
    subscribed.set()
    pending: dict[int, list[np.ndarray]] = {}
    hist = np.zeros(len(HIST_EDGES) - 1, np.int64)
    worst = [float("nan")]

    def drain(final: bool) -> None:
        # The reader appends a batch's latencies, then its arrival time, and only ever
        # appends: the first ``n`` of both lists are complete and safe to take.
        n = len(sink.arrivals)
        arrivals, latencies = sink.arrivals[:n], sink.latencies[:n]
        del sink.arrivals[:n], sink.latencies[:n]
        for at, lat in zip(arrivals, latencies, strict=True):
            pending.setdefault(at // NS, []).append(lat)
        cutoff = math.inf if final else time.time_ns() // NS - 1  # a second may still be appending
        done = []
        for sec in sorted(s for s in pending if s < cutoff):
            lat = np.concatenate(pending.pop(sec)) / 1e6
            hist[:] += np.histogram(np.clip(lat, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)[0]
            p50, p99 = np.percentile(lat, [50, 99])
            worst[0] = float(np.nanmax([worst[0], lat.max()]))
            done.append((int(sec), len(lat), float(p50), float(p99), float(lat.max())))
        out.put(("seconds", done))

    expected, settle, seen = None, math.inf, 0
    while sink.error is None:
        time.sleep(0.5)
        if expected is None:
            with contextlib.suppress(queue.Empty):
                expected = control.get_nowait()
        if expected is not None and sink.received != seen:  # a backlog may still be draining
            seen, settle = sink.received, time.perf_counter() + 30
        if expected is not None and (sink.received >= expected or time.perf_counter() > settle):
            break
        drain(final=False)
    drain(final=True)
    out.put(
        (
            "done",
            {
                "received": sink.received,
                "unique": sink.unique,
                "duplicates": sink.duplicates,
                "error": sink.error,
                "quantiles": _hist_quantiles(hist, [50, 99, 99.9]) + [worst[0]],
                "cpu_s": time.process_time(),
            },
        )
    )
    out.close()
    out.join_thread()
    os._exit(0)  # the reader thread may sit in a native read: do not finalize under it


def _hist_quantiles(hist: np.ndarray, qs: list[float]) -> list[float]:
    """Upper edge of the bin holding each quantile (so never below the true value)."""
    total = hist.sum()
    if not total:
        return [float("nan")] * len(qs)
    cum = np.cumsum(hist)
    return [float(HIST_EDGES[1 + np.searchsorted(cum, q / 100 * total)]) for q in qs]


# -- sampling the server -------------------------------------------------------------------


def proc_sample(pid: int) -> dict:
    """RSS (MB), threads and open file descriptors of a process (Linux /proc)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_soak(config: Path, rate: float, seconds: float, connections: int, log) -> dict:
    """Drive ``quiver serve -c config`` at ``rate`` msgs/s for ``seconds``; one row per
    wall-clock second (``t``: seconds since the whole second the load started in), from
    the start of the load until the consumer has every message."""
    chunk = 100 if rate <= 200_000 else 1000  # as bench.loadgen: small sends keep a low rate smooth
    templates = Templates(chunk)
    per = rate / connections
    per_messages = max(chunk, int(per * seconds) - int(per * seconds) % chunk)
    server = Server.spawn(config)
    log(f"server ready in {server.ready_seconds:.1f} s: tcp {server.tcp}, {server.http}")
    pid = server.proc.pid
    ctx = multiprocessing.get_context("spawn")
    subscribed, control, out = ctx.Event(), ctx.Queue(), ctx.Queue()
    child = ctx.Process(
        target=_consume_per_second,
        args=(server.http, server.grpc, connections, per_messages, subscribed, control, out),
        daemon=True,
    )
    samples: dict[int, dict] = {}
    buckets: dict[int, tuple] = {}
    final: dict | None = None
    try:
        child.start()
        if not subscribed.wait(60):
            raise RuntimeError("the consumer did not subscribe")
        idle = {**proc_sample(pid), "load1": load_average()}
        producers = [Producer(i, server, templates, per, per_messages, "tcp", seconds) for i in range(connections)]
        prev_cpu, prev_sent, own0 = server.cpu_seconds(), 0, time.process_time()
        prev_at = began = time.time()
        start_sec = math.floor(prev_at)
        for p in producers:
            p.start()
        tick, signalled, next_log, last_delivery = start_sec + 1, None, start_sec + 10, 0.0
        while True:
            time.sleep(max(0.0, tick - time.time()))
            at, cpu = time.time(), server.cpu_seconds()
            sent = sum(p.sent for p in producers)
            samples[tick - 1] = {
                **proc_sample(pid),
                "cpu_pct": round(100 * (cpu - prev_cpu) / (at - prev_at), 1),
                "offered": round((sent - prev_sent) / (at - prev_at)),
                "load1": load_average(),
            }
            prev_cpu, prev_sent, prev_at = cpu, sent, at
            while True:
                try:
                    kind, body = out.get_nowait()
                except queue.Empty:
                    break
                if kind == "seconds":
                    buckets.update((b[0], b[1:]) for b in body)
                    last_delivery = at if any(b[1] for b in body) else last_delivery
                else:
                    final = body
            if signalled is None and not any(p.is_alive() for p in producers):
                control.put(sent)  # the consumer waits for the last batches, then reports
                signalled = at
                log(f"load done: {sent:,} messages sent; waiting for the consumer")
            if signalled is not None and (final is not None or at - max(signalled, last_delivery) > 60):
                break
            if at >= next_log and signalled is None:
                s, b = samples[tick - 1], buckets[max(buckets)] if buckets else (0, math.nan, math.nan, math.nan)
                log(
                    f"{tick - start_sec:5d} s  rss {s['rss_mb']:7.1f} MB  fds {s['fds']:3d}  cpu {s['cpu_pct']:5.1f}%"
                    f"  delivered {b[0]:>8,}/s  p99 {b[2]:7.1f} ms  load {s['load1']:.2f}"
                )
                next_log += 10
            tick = max(tick + 1, math.floor(time.time()) + 1)  # a late wake-up skips, never bunches
        own_cpu, wall = time.process_time() - own0, time.time() - began
        stats = server.stats()
    finally:
        server.stop()
        child.join(10)
        if child.is_alive():
            child.kill()
    rows = []
    for sec in sorted(samples):
        n, p50, p99, mx = buckets.get(sec, (0, math.nan, math.nan, math.nan))
        rows.append({"t": sec - start_sec, **samples[sec], "delivered": n, "p50_ms": p50, "p99_ms": p99, "max_ms": mx})
    sent = sum(p.sent for p in producers)
    final = final or {"received": 0, "unique": 0, "duplicates": 0, "error": "the consumer did not report"}
    final.setdefault("quantiles", [math.nan] * 4)
    final.setdefault("cpu_s", 0.0)
    errors = [e for e in [final["error"], *(p.error for p in producers)] if e]
    return {
        "rows": rows,
        "rate": rate,
        "idle": idle,
        "sent": sent,
        "received": final["received"],
        "lost": sent - final["unique"],
        "duplicates": final["duplicates"],
        "quantiles": final["quantiles"],
        "server": stats,
        "errors": errors,
        "chunk": chunk,
        "max_behind_ms": round(1000 * max(p.behind_s for p in producers), 1),
        "loadgen_cpu_pct": round(100 * (own_cpu + final["cpu_s"]) / wall, 1),
        "ready_s": round(server.ready_seconds, 2),
    }


# -- analysis ------------------------------------------------------------------------------


def analyse(run: dict, seconds: float, warmup: float) -> dict:
    """The figures the issue asks for; rows are whole wall-clock seconds, so row 0 (the
    load starts in it) and the last second of the load are partial and left out of medians."""
    rows = run["rows"]
    load = [r for r in rows if r["t"] < seconds]
    full = [r for r in load if 1 <= r["t"] <= seconds - 1]
    steady = [r for r in full if r["t"] >= warmup] or full
    window = min(60.0, max(1.0, (seconds - 1 - warmup) / 3))
    first = [r for r in steady if r["t"] < steady[0]["t"] + window]
    last = [r for r in steady if r["t"] > steady[-1]["t"] - window]

    def med(rs: list[dict], key: str) -> float:
        values = [r[key] for r in rs if not math.isnan(r[key])]
        return float(statistics.median(values)) if values else math.nan

    t = np.array([r["t"] for r in steady], float)
    rss = np.array([r["rss_mb"] for r in steady], float)
    fit = [float(c) for c in np.polyfit(t / 60, rss, 1)] if len(steady) >= 2 else None
    slope = fit[0] if fit else math.nan
    steady_min = (t[-1] - t[0]) / 60 if len(t) else 0.0
    after, end = med(first, "rss_mb"), med(last, "rss_mb")
    tolerance = max(5.0, 0.02 * after)
    fit_growth = slope * steady_min if not math.isnan(slope) else 0.0
    p99s = [r["p99_ms"] for r in steady if not math.isnan(r["p99_ms"])]
    server = run["server"]
    server_ok = (
        server["received"] == run["sent"]
        and server["accepted"] == server["received"]
        and server["rejected"] == 0
        and server.get("discarded_partials", 0) == 0
        and run["received"] == server["accepted"]
    )
    return {
        "warmup_s": warmup,
        "window_s": window,
        "steady_s": len(steady),
        "rss_idle_mb": run["idle"]["rss_mb"],
        "rss_start_mb": load[0]["rss_mb"] if load else math.nan,
        "rss_after_warmup_mb": after,
        "rss_end_mb": end,
        "rss_max_mb": max((r["rss_mb"] for r in load), default=math.nan),
        "rss_max_steady_mb": float(rss.max()) if len(rss) else math.nan,
        "rss_after_drain_mb": rows[-1]["rss_mb"] if rows else math.nan,
        "rss_growth_mb": end - after,
        "rss_steps": rss_steps(steady),
        "rss_slope_mb_per_min": slope,
        "rss_fit": fit,  # MB = fit[0] * minutes + fit[1], over rss_fit_span (seconds)
        "rss_fit_span": (float(t[0]), float(t[-1])) if len(t) else (0.0, 0.0),
        "rss_fit_growth_mb": fit_growth,
        "tolerance_mb": tolerance,
        "flat": (end - after) <= tolerance and fit_growth <= tolerance,
        "fds_idle": run["idle"]["fds"],
        "fds_start": load[0]["fds"] if load else 0,
        "fds_end": load[-1]["fds"] if load else 0,
        "fds_max": max((r["fds"] for r in load), default=0),
        "fds_after_drain": rows[-1]["fds"] if rows else 0,
        "threads_start": load[0]["threads"] if load else 0,
        "threads_end": load[-1]["threads"] if load else 0,
        "delivered_median": med(steady, "delivered"),
        "delivered_min": min((r["delivered"] for r in steady), default=0),
        "delivered_mean": run["received"] / seconds,
        "offered_median": med(steady, "offered"),
        "cpu_median": med(steady, "cpu_pct"),
        "p50_median": med(steady, "p50_ms"),
        "p99_median": float(statistics.median(p99s)) if p99s else math.nan,
        "p99_max": max(p99s, default=math.nan),
        "max_ms": run["quantiles"][3],
        "load_mean": float(np.mean([r["load1"] for r in load])) if load else math.nan,
        "load_max": max((r["load1"] for r in load), default=math.nan),
        "server_counts_ok": server_ok,
        "ok": run["lost"] == 0 and run["duplicates"] == 0 and not run["errors"] and server_ok,
    }


def rss_steps(steady: list[dict], threshold_mb: float = 1.0) -> list[dict]:
    """Seconds in which RSS rose by more than ``threshold_mb`` (largest first), with the
    worst per-second p99 of the three seconds up to each: steps that follow latency spikes
    (bigger batches after a stall) look different from a steady leak."""
    steps = []
    for i in range(1, len(steady)):
        rise = steady[i]["rss_mb"] - steady[i - 1]["rss_mb"]
        if rise > threshold_mb:
            near = [r["p99_ms"] for r in steady[max(0, i - 2) : i + 1] if not math.isnan(r["p99_ms"])]
            steps.append({"t": steady[i]["t"], "mb": round(rise, 1), "p99_ms": max(near, default=math.nan)})
    return sorted(steps, key=lambda st: -st["mb"])


def periods(rows: list[dict], seconds: float) -> tuple[int, list[dict]]:
    """Per-minute figures (per tenth of the run if it is under 3 minutes)."""
    period = 60 if seconds >= 180 else max(1, math.ceil(seconds / 10))
    out = []
    load = [r for r in rows if r["t"] < seconds]
    for start in range(0, math.ceil(seconds), period):
        rs = [r for r in load if start <= r["t"] < start + period]
        if not rs:
            continue
        p99 = [r["p99_ms"] for r in rs if not math.isnan(r["p99_ms"])]
        mx = [r["max_ms"] for r in rs if not math.isnan(r["max_ms"])]
        p50 = [r["p50_ms"] for r in rs if not math.isnan(r["p50_ms"])]
        out.append(
            {
                "from": start,
                "to": min(start + period, seconds),
                "offered": statistics.mean(r["offered"] for r in rs),
                "delivered": statistics.mean(r["delivered"] for r in rs),
                "p50": statistics.median(p50) if p50 else math.nan,
                "p99": statistics.median(p99) if p99 else math.nan,
                "p99_worst": max(p99, default=math.nan),
                "max": max(mx, default=math.nan),
                "cpu": statistics.mean(r["cpu_pct"] for r in rs),
                "rss_min": min(r["rss_mb"] for r in rs),
                "rss_med": statistics.median(r["rss_mb"] for r in rs),
                "rss_max": max(r["rss_mb"] for r in rs),
                "fds": max(r["fds"] for r in rs),
                "threads": max(r["threads"] for r in rs),
                "load1": statistics.mean(r["load1"] for r in rs),
            }
        )
    return period, out


# -- report --------------------------------------------------------------------------------


def plot(run: dict, a: dict, seconds: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = run["rows"]
    t = np.array([r["t"] for r in rows], float) / 60
    col = {k: np.array([r[k] for r in rows], float) for k in rows[0] if k != "t"}
    fig, axes = plt.subplots(5, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, col["rss_mb"], color="tab:blue", lw=1, label="RSS")
    if a["rss_fit"] is not None:
        lo, hi = a["rss_fit_span"]
        span = np.array([lo, hi], float)
        ax.plot(
            span / 60, np.polyval(a["rss_fit"], span / 60), "k--", lw=0.8, label=f"fit {a['rss_fit'][0]:+.3f} MB/min"
        )
    mid = a["rss_after_warmup_mb"] if not math.isnan(a["rss_after_warmup_mb"]) else float(np.nanmedian(col["rss_mb"]))
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, mid - 10), max(high, mid + 10))  # small wobbles must not look like a ramp
    ax.set_ylabel("server RSS, MB")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    ax.plot(t, col["fds"], color="tab:green", lw=1, label="open fds")
    ax.plot(t, col["threads"], color="tab:olive", lw=1, ls=":", label="threads")
    ax.set_ylabel("count")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    ax.plot(t, col["offered"] / 1000, color="tab:gray", lw=0.8, ls=":", label="sent")
    ax.plot(t, col["delivered"] / 1000, color="tab:purple", lw=1, label="delivered")
    ax.set_ylabel("thousand msgs/s")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[3]
    ax.plot(t, col["max_ms"], color="tab:red", lw=0.6, alpha=0.6, label="max")
    ax.plot(t, col["p99_ms"], color="tab:red", lw=1, label="p99")
    ax.plot(t, col["p50_ms"], color="tab:orange", lw=1, label="p50")
    seen = col["max_ms"][~np.isnan(col["max_ms"])]
    if len(seen) and seen.max() > 20 * max(np.nanmin(col["p50_ms"]), 1e-3):  # stalls: a log scale keeps both
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("latency per second, ms")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[4]
    ax.plot(t, col["cpu_pct"], color="tab:brown", lw=1, label="server CPU %")
    ax.plot(t, col["load1"] * 100, color="tab:gray", lw=0.8, ls=":", label="load average x 100")
    ax.set_ylabel("% of one core")
    ax.set_xlabel("minutes since the load started")
    ax.legend(fontsize=8, loc="lower right")
    for ax in axes:
        ax.axvspan(0, a["warmup_s"] / 60, color="0.9", zorder=0)
        ax.axvline(seconds / 60, color="0.5", lw=0.8, ls="--")
    fig.suptitle(
        f"Soak: {run['rate'] / 1000:,.0f}k msgs/s offered for {_length(seconds)} (warm-up shaded; dashed: load ends)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _steps_line(a: dict) -> str:
    steps = a["rss_steps"]
    if not steps:
        return "No one-second RSS rise over 1 MB after warm-up."
    listed = ", ".join(
        f"t={st['t']} s +{st['mb']:.1f} MB (worst p99 of the 3 s up to it {st['p99_ms']:,.0f} ms)" for st in steps[:5]
    )
    return (
        f"One-second RSS rises over 1 MB after warm-up: {len(steps)}, together "
        f"{sum(st['mb'] for st in steps):+.1f} MB of the {a['rss_growth_mb']:+.1f} MB between the windows; "
        f"largest: {listed}."
    )


def _length(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def report(run: dict, a: dict, settings: dict, env: dict, seconds: float, image: str) -> str:
    period, table = periods(run["rows"], seconds)
    server = run["server"]

    def f(x: float, d: int = 1) -> str:
        return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:,.{d}f}"

    verdict = "flat" if a["flat"] else "NOT flat"
    lines = [
        "# Soak",
        "",
        f"Generated by `{settings['command']}`; do not edit by hand.",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        f"- load average (1 min) during the load: mean {a['load_mean']:.2f}, max {a['load_max']:.2f} "
        f"(at start {run['idle']['load1']:.2f}); the load generator and its consumer share this machine "
        f"and used {run['loadgen_cpu_pct']:.0f}% of one core on average",
        "",
        "## Settings",
        "",
        *[f"- {k}: {v}" for k, v in settings.items() if k != "command"],
        "",
        "## Result",
        "",
        f"- messages: {run['sent']:,} sent, {run['received']:,} received by the consumer, "
        f"**{run['lost']:,} lost**, {run['duplicates']:,} duplicated; server counted "
        f"{server['received']:,} received, {server['accepted']:,} accepted, {server['rejected']:,} rejected, "
        f"{server.get('batches', 0):,} batches ({'consistent' if a['server_counts_ok'] else 'INCONSISTENT'})"
        + (f"; errors: {run['errors']}" if run["errors"] else ""),
        f"- throughput: median {f(a['delivered_median'], 0)} msgs/s delivered per steady second "
        f"(lowest {a['delivered_min']:,}), {f(a['delivered_mean'], 0)} msgs/s over the whole load; "
        f"producers fell behind schedule by at most {run['max_behind_ms']:,.1f} ms",
        f"- latency (scheduled send to the consumer's receipt): per-second p50 median {f(a['p50_median'])} ms, "
        f"per-second p99 median {f(a['p99_median'])} ms and worst {f(a['p99_max'])} ms; whole run p99 "
        f"{f(run['quantiles'][1])} ms, p99.9 {f(run['quantiles'][2])} ms (histogram bin upper edges), "
        f"max {f(a['max_ms'])} ms",
        f"- server CPU: median {f(a['cpu_median'], 0)}% of one core",
        f"- server RSS: {f(a['rss_idle_mb'])} MB idle before the load, {f(a['rss_start_mb'])} MB in its first second, "
        f"{f(a['rss_after_warmup_mb'])} MB after warm-up (median of the first {a['window_s']:g} s), "
        f"{f(a['rss_end_mb'])} MB at the end (median of the last {a['window_s']:g} s), max {f(a['rss_max_mb'])} MB "
        f"({f(a['rss_max_steady_mb'])} MB after warm-up), {f(a['rss_after_drain_mb'])} MB once the consumer "
        "had every message",
        f"- RSS slope after warm-up: {a['rss_slope_mb_per_min']:+.3f} MB/min over {a['steady_s']} s "
        f"({a['rss_fit_growth_mb']:+.1f} MB fitted growth)",
        f"- open file descriptors: {a['fds_idle']} idle, {a['fds_start']} at the start of the load, "
        f"{a['fds_end']} at the end, max {a['fds_max']}, {a['fds_after_drain']} after the producers "
        f"disconnected; threads {a['threads_start']} -> {a['threads_end']}",
        "",
        f"**Verdict: memory is {verdict} after warm-up.** Growth between the windows "
        f"{a['rss_growth_mb']:+.1f} MB and fitted growth {a['rss_fit_growth_mb']:+.1f} MB, against a "
        f"tolerance of {a['tolerance_mb']:.1f} MB (max(5 MB, 2% of the RSS after warm-up)).",
        "",
        _steps_line(a),
        "",
        f"## Per {'minute' if period == 60 else f'{period} s'}",
        "",
        "Rows are whole wall-clock seconds since the second the load started in; latency columns "
        "summarise the per-second p50/p99 of that period.",
        "",
        "| from s | to s | sent msgs/s | delivered msgs/s | p50 ms | p99 ms | worst p99 ms | max ms | CPU % "
        "| RSS MB min / median / max | fds | threads | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in table:
        lines.append(
            f"| {p['from']:g} | {p['to']:g} | {p['offered']:,.0f} | {p['delivered']:,.0f} | {f(p['p50'])} | "
            f"{f(p['p99'])} | {f(p['p99_worst'])} | {f(p['max'])} | {p['cpu']:.0f} | "
            f"{p['rss_min']:.1f} / {p['rss_med']:.1f} / {p['rss_max']:.1f} | {p['fds']} | {p['threads']} | "
            f"{p['load1']:.2f} |"
        )
    lines += ["", f"![soak]({image})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", type=Path, default=CONFIG, help="quiver config (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=200_000, help="messages/s over all connections (default 200000)")
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="length of the load (default 10)")
    length.add_argument("--seconds", type=float, help="length of the load, for short runs")
    ap.add_argument("--connections", type=int, default=1, help="producer connections (default 1)")
    ap.add_argument("--warmup", type=float, help="seconds left out of the flatness check (default: a fifth, <= 60)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where soak.md and soak.png go")
    ap.add_argument("--samples", type=Path, help="also write the per-second rows to this CSV file")
    args = ap.parse_args(argv)
    if args.rate <= 0:
        ap.error("--rate must be positive: a soak is a steady load")
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    warmup = args.warmup if args.warmup is not None else min(60.0, round(seconds / 5, 1))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    log(f"soak: {args.rate:,.0f} msgs/s over {args.connections} connection(s) for {seconds:g} s")
    run = run_soak(args.config, args.rate, seconds, args.connections, log)
    a = analyse(run, seconds, warmup)

    from bench.all import environment  # after the load: it starts Numba's thread pool here

    env = {**environment(), "date": started}
    config = args.config.resolve()
    settings = {
        "command": "python -m bench soak " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config),
        "offered rate": f"{args.rate:,.0f} msgs/s over {args.connections} TCP connection(s), "
        f"{run['chunk']} messages per send",
        "length": f"{seconds:g} s, warm-up {warmup:g} s, flatness windows {a['window_s']:g} s",
        "consumer": "one live Arrow stream over HTTP, in its own process; every message checked",
        "server start": f"{run['ready_s']} s to its ready line",
    }
    if args.samples:
        with args.samples.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(run["rows"][0]))
            writer.writeheader()
            writer.writerows(run["rows"])
    args.out.mkdir(parents=True, exist_ok=True)
    plot(run, a, seconds, args.out / "soak.png")
    (args.out / "soak.md").write_text(report(run, a, settings, env, seconds, "soak.png"))
    print(
        f"sent {run['sent']:,}  received {run['received']:,}  lost {run['lost']:,}  duplicates {run['duplicates']:,}"
        f"  server counts {'ok' if a['server_counts_ok'] else 'INCONSISTENT'}"
        + (f"  errors {run['errors']}" if run["errors"] else "")
    )
    print(
        f"throughput: median {a['delivered_median']:,.0f} msgs/s (lowest {a['delivered_min']:,}), "
        f"server CPU median {a['cpu_median']:.0f}%"
    )
    print(
        f"latency: p50 median {a['p50_median']:.1f} ms, p99 median {a['p99_median']:.1f} ms, "
        f"worst p99 {a['p99_max']:.1f} ms, max {a['max_ms']:.1f} ms"
    )
    print(
        f"RSS MB: idle {a['rss_idle_mb']:.1f}, start {a['rss_start_mb']:.1f}, after warm-up {a['rss_after_warmup_mb']:.1f}, "
        f"end {a['rss_end_mb']:.1f}, max {a['rss_max_mb']:.1f}; slope {a['rss_slope_mb_per_min']:+.3f} MB/min "
        f"-> {'flat' if a['flat'] else 'NOT flat'}"
    )
    print(_steps_line(a))
    print(
        f"fds: start {a['fds_start']}, end {a['fds_end']}, max {a['fds_max']}; load average mean {a['load_mean']:.2f}"
    )
    print(f"wrote {args.out / 'soak.md'} and {args.out / 'soak.png'}")
    return 0 if a["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
