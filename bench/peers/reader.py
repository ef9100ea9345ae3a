"""The floor under every service in the benchmark: a process that only reads.

An asyncio server for the load generator's TCP producers that reads into one reused
buffer and throws the bytes away: no framing, no parsing, no batches, no consumer. At a
given rate its CPU is what this machine charges for the reads alone (wake-ups, syscalls,
the event loop), a cost Quiver and the peers pay before doing any work of their own. On
a virtual machine a wake-up from idle is far dearer than on bare metal, so the floor is
what makes CPU figures at low rates comparable across machines.

    python -m bench.peers.reader -c configs/bench/loadgen.yaml

It prints a ready line like the services' (``reader ready in 0.01s: tcp://127.0.0.1:PORT``)
and, when SIGTERM or SIGINT stops it, ``read N bytes`` once every producer has hung up:
the benchmark checks that every byte sent was read.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence

READ_BYTES = 256 << 10  # as quiver's TCP listener (engine/server/tcp.py)


class _Reader(asyncio.BufferedProtocol):
    """One producer connection: every read lands in the shared buffer and is only counted."""

    def __init__(self, buffer: memoryview, totals: list[int], open_: set) -> None:
        self._buffer, self._totals, self._open = buffer, totals, open_

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._open.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._totals[0] += nbytes

    def eof_received(self) -> bool:
        return False  # close: the producer waits for that before it reports done

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(self)


async def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    buffer = memoryview(bytearray(READ_BYTES))
    totals, open_ = [0], set()
    server = await loop.create_server(lambda: _Reader(buffer, totals, open_), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"reader ready in {time.perf_counter() - started:.2f}s: tcp://{bound[0]}:{bound[1]}", flush=True)
    await stop.wait()
    server.close()
    while open_:  # what producers already sent is still read
        await asyncio.sleep(0.01)
    print(f"read {totals[0]} bytes", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers.reader", description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", help="accepted for the services' command line; not read")
    ap.parse_args(argv)
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
