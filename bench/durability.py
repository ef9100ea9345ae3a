"""What each durability mode costs: the same load against live-only, none, interval, batch.

    python -m bench.durability                       # 10 s per run, 3 rounds
    python -m bench.durability --seconds 5 --rounds 1 --data-dir /mnt/ssd/q

Every mode runs the load generator (bench.loadgen) against its own ``quiver serve``
subprocess on configs/bench/loadgen.yaml, changed only in ``data_dir`` and the stream's
``durability``. Two loads: TCP as fast as possible (throughput: producers are never
acknowledged, so this is the cost of writing and fsyncing segments), and HTTP POSTs as
fast as possible (each POST waits for its acknowledgement, so under ``batch`` and an
interval it also waits for the fsync). Rounds interleave the modes so drift on a noisy
machine spreads over all of them; the table gives medians and the ratio to
``durability: none`` from the same run. Segments go to ``--data-dir`` (default: a fresh
directory under bench/.data, on the disk the repository is on; tmpfs would make fsync free
and the comparison meaningless).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.loadgen import CONFIG, ROOT, Server, run_load

MODES = {
    "live only": None,  # no data_dir: nothing written
    "none": "none",
    "interval 100ms": "{interval_ms: 100}",
    "batch": "batch",
}
LOADS = {
    "tcp": {"transport": "tcp", "connections": 2},
    # a POST waits for its acknowledgement: big bodies on several connections keep the
    # server busy while some wait
    "http": {"transport": "http", "connections": 8, "chunk": 5000},
}


def mode_config(durability: str | None, data_dir: Path, into: Path) -> Path:
    text = CONFIG.read_text()
    if durability is not None:
        text = text.replace("    arenas: 4\n", f"    arenas: 4\n    durability: {durability}\n")
        text += f"data_dir: {data_dir}\n"
    into.write_text(text)
    return into


def filesystem(path: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def run(seconds: float, rounds: int, data_root: Path, loads: list[str]) -> dict:
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(rounds):
        for load in loads:
            for mode, durability in MODES.items():
                work = Path(tempfile.mkdtemp(prefix="run-", dir=data_root))
                try:
                    cfg = mode_config(durability, work / "data", work / "quiver.yaml")
                    server = Server.spawn(cfg)
                    try:
                        res = run_load(0, seconds, server=server, **LOADS[load])
                    finally:
                        server.stop()
                    stored = sum(f.stat().st_size for f in (work / "data").rglob("*.arrow")) if durability else 0
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                row = {
                    "msgs_per_s": res.msgs_per_s,
                    "p99_ms": res.p99_ms,
                    "server_cpu_pct": res.server_cpu_pct,
                    "lost": res.lost,
                    "duplicates": res.duplicates,
                    "stored_mb": round(stored / 1e6, 1),
                }
                results.setdefault((load, mode), []).append(row)
                print(f"round {r + 1} {load:<4} {mode:<15} {json.dumps(row)}", file=sys.stderr, flush=True)
    return {"filesystem": filesystem(data_root), "results": results}


def table(report: dict, loads: list[str]) -> str:
    lines = [
        f"Segments on {report['filesystem']}; medians of {len(next(iter(report['results'].values())))} runs.",
        "",
        "| load | durability | msgs/s | vs none | p99 ms | server CPU % | lost | dup |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for load in loads:
        base = statistics.median(r["msgs_per_s"] for r in report["results"][(load, "none")])
        for mode in MODES:
            rows = report["results"][(load, mode)]
            rate = statistics.median(r["msgs_per_s"] for r in rows)
            lines.append(
                f"| {load} | {mode} | {rate:,.0f} | {rate / base:.2f}x"
                f" | {statistics.median(r['p99_ms'] for r in rows):,.1f}"
                f" | {statistics.median(r['server_cpu_pct'] for r in rows):.0f}"
                f" | {sum(r['lost'] for r in rows)} | {sum(r['duplicates'] for r in rows)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.durability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load", choices=[*LOADS, "all"], default="all")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".data", help="where segments are written")
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    loads = list(LOADS) if args.load == "all" else [args.load]
    report = run(args.seconds, args.rounds, args.data_dir, loads)
    print(table(report, loads))
    lost = sum(r["lost"] + r["duplicates"] for rows in report["results"].values() for r in rows)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
