"""Time from ``quiver serve`` being launched to its ready line, with a warm and a cold
Numba cache (cold: ``NUMBA_CACHE_DIR`` pointed at an empty directory, so every kernel
compiles, as on a fresh install).

    python -m bench.startup [--cold] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from bench.loadgen import CONFIG, Server


def time_to_ready(env: dict | None = None) -> tuple[float, str]:
    """Seconds from launch to the ready line (measured here), and the line itself."""
    started = time.perf_counter()
    server = Server.spawn(CONFIG, env)
    seconds = time.perf_counter() - started
    server.stop()
    return seconds, f"{server.http} {server.grpc}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", action="store_true", help="also time one start with an empty Numba cache")
    ap.add_argument("--repeat", type=int, default=5, help="warm starts to time (median reported)")
    args = ap.parse_args(argv)
    time_to_ready()  # make sure the cache is filled
    warm = [time_to_ready()[0] for _ in range(args.repeat)]
    print(
        f"warm start: median {statistics.median(warm):.2f} s (of {args.repeat}: {', '.join(f'{w:.2f}' for w in warm)})"
    )
    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            cold, _ = time_to_ready({"NUMBA_CACHE_DIR": cache})
        print(f"cold start: {cold:.1f} s (empty Numba cache: every kernel compiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
