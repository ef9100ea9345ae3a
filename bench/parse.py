"""Parse throughput: Quiver against pyarrow, msgspec and orjson on the same NDJSON bytes.

This module owns the parse benchmark harness: it generates one corpus per example config
(``bench.corpus`` + ``configs/examples/<corpus>.yaml``), gives every peer the *same* bytes,
schema and thread budget, times ``--repeat`` runs after one untimed warm-up (so Numba compile
time, lazy imports and allocator warm-up are excluded for everybody) and reports the median.
Repeats are interleaved (one run of each peer in turn), so a slow spell of a shared machine
falls on every peer alike.

Peers, and what each one produces (a peer that does less work is labelled, not hidden):

* ``quiver`` -- ``engine.Parser(stream).parse_ndjson(data)``: an Arrow batch with the exact
  declared types, every rule checked, rejects split off.  Numba threads = ``--threads``.
* ``pyarrow`` -- ``pyarrow.json.read_json`` with an explicit schema taken from Quiver's
  ``Parser.schema`` (so non-null / required is enforced), multi-threaded over blocks.  Arrow's
  JSON reader cannot produce some Quiver types, so: dictionary (enum) columns are read as plain
  strings; ``json`` columns are left out of the explicit schema and *inferred* as nested structs
  (a string type fails on objects); epoch-integer timestamps are read as int64 and cast
  (zero-copy) afterwards, inside the timing.  No min/max/length/enum checks.
* ``msgspec`` -- typed decoding into ``msgspec.Struct`` objects built from the same field specs,
  with min/max/length bounds and enums as ``Literal`` (so it validates nearly as much as
  Quiver), ``json`` fields as ``msgspec.Raw``.  Produces Python objects, not columns.  Input is
  decoded in ~8 MiB newline-aligned chunks turned into JSON arrays (the fastest honest way:
  one decode call per chunk instead of one per line; the array building is timed).  The
  objects of a chunk are dropped before the next one, so its cost is a lower bound for any
  consumer.  Single-threaded (holds the GIL).
* ``orjson`` -- ``orjson.loads`` per line, then ``pa.RecordBatch.from_pylist`` with Quiver's
  schema per chunk: the common "DIY" pipeline.  ``json`` fields are re-serialised with
  ``orjson.dumps`` and RFC 3339 timestamps cast from strings, both timed, so the output matches
  Quiver's column for column.  No rule checks.  Single-threaded (holds the GIL).

After the warm-up the outputs are cross-checked against Quiver's batch column by column
(``--no-verify`` skips this): a mismatch is printed as a warning, because it means either the
corpus, a peer setup or the engine is wrong.

One process is one sample: on the 2-core VM these numbers come from, the same build parses
the same bytes at one speed for a whole process and at another in the next one (Quiver at
100 ms in most processes and 120-145 ms in some, with pyarrow unmoved), whatever the memory
or code placement inside the process. So ``--processes P`` (default 3) repeats the whole
measurement -- corpus, warm-up, interleaved repeats -- in P fresh processes, one after
another, and reports for each peer the median over processes of its per-process median.

Run: ``python -m bench.parse [--corpus clickstream|logs|metrics|all] [--messages N]
[--threads T] [--repeat R] [--processes P] [--markdown]``.  MB means 10**6 bytes of NDJSON
input.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numba
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

import engine
from bench.corpus import KINDS, generate
from engine.config import INT_TYPES, FieldSpec
from kernels.framing import count_lines

__all__ = ["Corpus", "PeerResult", "main", "run_corpus", "run_corpus_in_processes"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "examples"
PEERS = ("quiver", "pyarrow", "msgspec", "orjson")

#: Input slice for the Python peers: big enough to amortise per-call overhead, small enough
#: that the Python objects of one slice stay a few hundred MB at most.
CHUNK_BYTES = 8 << 20


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """One benchmark input: the bytes plus the stream config every peer derives its schema from."""

    name: str
    data: bytes
    messages: int
    stream: engine.StreamConfig
    sample: dict  # first message, to learn whether timestamps arrive as epoch ints or text

    @property
    def megabytes(self) -> float:
        return len(self.data) / 1e6


def load_corpus(name: str, messages: int, seed: int) -> Corpus:
    """Generate corpus ``name`` and load its example config (one stream of the same name)."""
    cfg = engine.load_config(CONFIG_DIR / f"{name}.yaml")
    data = generate(name, messages, seed)
    first = data[: data.find(b"\n")] if messages else b"{}"
    return Corpus(name, data, messages, cfg.streams[name], json.loads(first))


def newline_chunks(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Newline-aligned slices of ``data`` of about ``size`` bytes, each ending in ``\\n``
    (except possibly the last)."""
    start, n = 0, len(data)
    while start < n:
        end = data.find(b"\n", min(start + size, n) - 1)
        end = n if end < 0 else end + 1
        yield data[start:end]
        start = end


def _is_epoch_int(corpus: Corpus, name: str) -> bool:
    """Whether timestamp field ``name`` arrives as an integer (rather than RFC 3339 text)."""
    value = corpus.sample.get(name)
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# peers: each prepares once, then run() parses corpus.data and returns (rows, output)
# --------------------------------------------------------------------------------------------


class Peer(ABC):
    """A parser under test.  ``run`` must do all the work a caller would need for its output."""

    name = "?"
    output = "?"
    threads = 1

    def __init__(self, corpus: Corpus, threads: int) -> None:
        self.corpus = corpus
        self.notes: list[str] = []

    @abstractmethod
    def run(self) -> tuple[int, Any]:
        """Parse the corpus; return (rows produced, output to verify or None)."""


class QuiverPeer(Peer):
    """Quiver itself: the reference every ratio is computed against."""

    name = "quiver"
    output = "Arrow batch, exact types, all rules"

    def __init__(self, corpus: Corpus, threads: int) -> None:
        super().__init__(corpus, threads)
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise SystemExit(
                f"--threads {threads} exceeds Numba's pool of "
                f"{numba.config.NUMBA_NUM_THREADS}; start with "
                f"NUMBA_NUM_THREADS={threads} in the environment"
            )
        numba.set_num_threads(threads)
        self.threads = threads
        self.parser = engine.Parser(corpus.stream)
        self.schema: pa.Schema = self.parser.schema

    def run(self) -> tuple[int, Any]:
        res = self.parser.parse_ndjson(self.corpus.data)
        if res.rejected:
            first = res.rejects.slice(0, 1).to_pylist()[0]
            first["raw"] = bytes(first["raw"][:200])
            self.notes.append(f"rejected {res.rejected} messages {res.error_counts}; first: {first}")
        return res.accepted, res.batch


class PyArrowPeer(Peer):
    """pyarrow's multi-threaded C++ JSON reader with an explicit schema."""

    name = "pyarrow"
    output = "Arrow table (see notes on types)"

    def __init__(self, corpus: Corpus, threads: int, schema: pa.Schema, block_size: int) -> None:
        super().__init__(corpus, threads)
        self.threads = threads
        pa.set_cpu_count(threads)
        fields, self.casts = [], {}
        json_fields = {n for n, spec in corpus.stream.fields.items() if spec.type == "json"}
        for f in schema:
            t = f.type
            if f.name in json_fields:
                self.notes.append(f"{f.name}: json column inferred as a nested struct")
                continue
            if pa.types.is_dictionary(t):
                self.notes.append(f"{f.name}: enum read as string, not dictionary")
                t = t.value_type
            elif pa.types.is_timestamp(t) and _is_epoch_int(corpus, f.name):
                self.notes.append(f"{f.name}: epoch ints read as int64, cast to {t} (timed)")
                self.casts[f.name] = t
                t = pa.int64()
            elif pa.types.is_date(t) or pa.types.is_binary(t):
                self.notes.append(f"{f.name}: read as string ({t} not supported from JSON text)")
                t = pa.string()
            fields.append(pa.field(f.name, t, nullable=f.nullable))
        self.parse_options = pj.ParseOptions(
            explicit_schema=pa.schema(fields), unexpected_field_behavior="infer" if json_fields else "ignore"
        )
        self.read_options = pj.ReadOptions(use_threads=threads > 1, block_size=block_size)

    def run(self) -> tuple[int, Any]:
        table = pj.read_json(
            pa.BufferReader(self.corpus.data), read_options=self.read_options, parse_options=self.parse_options
        )
        for name, t in self.casts.items():
            i = table.schema.get_field_index(name)
            table = table.set_column(i, pa.field(name, t, table.schema.field(i).nullable), table.column(i).cast(t))
        return table.num_rows, table


def msgspec_type(spec: FieldSpec, epoch_int: bool) -> tuple[Any, bool]:
    """Map a Quiver field spec to a msgspec annotation and whether it needs a default.

    Bounds become ``Meta`` constraints and enums ``Literal`` so msgspec checks (nearly) the same
    rules as Quiver; ``json`` fields become ``msgspec.Raw`` (raw text, like Quiver keeps them).
    """
    t = spec.type
    meta: dict[str, Any] = {}
    if t in INT_TYPES:
        lo, hi = int(np.iinfo(t).min), int(np.iinfo(t).max)
        lo = lo if spec.min is None else max(lo, int(spec.min))
        hi = hi if spec.max is None else min(hi, int(spec.max))
        base: Any = Annotated[int, msgspec.Meta(ge=lo, le=hi)]
        if spec.enum:
            base = Literal[tuple(spec.enum)]
    elif t in ("float32", "float64"):
        if spec.min is not None:
            meta["ge"] = float(spec.min)
        if spec.max is not None:
            meta["le"] = float(spec.max)
        base = Annotated[float, msgspec.Meta(**meta)] if meta else float
    elif t == "bool":
        base = bool
    elif t in ("string", "enum"):
        if spec.enum:
            base = Literal[tuple(spec.enum)]
        else:
            if spec.min_length is not None:
                meta["min_length"] = spec.min_length
            if spec.max_length is not None:
                meta["max_length"] = spec.max_length
            base = Annotated[str, msgspec.Meta(**meta)] if meta else str
    elif t == "json":
        base = msgspec.Raw
    elif t == "binary":
        base = bytes  # msgspec decodes base64 text, like Quiver
    elif t == "date32":
        base = datetime.date
    elif t.startswith("timestamp"):
        base = int | datetime.datetime if epoch_int else datetime.datetime
    else:
        raise ValueError(f"no msgspec mapping for type {t!r}")
    if spec.is_nullable and base is not msgspec.Raw:  # Raw cannot sit in a union; keeps null
        base = base | None
    return base, not spec.required


class MsgspecPeer(Peer):
    """msgspec's typed decoder: fastest pure-Python-object route, with validation."""

    name = "msgspec"
    output = "Python Structs (not columns), most rules"

    def __init__(self, corpus: Corpus, threads: int) -> None:
        super().__init__(corpus, threads)
        fields = []
        for name, spec in corpus.stream.fields.items():
            annotation, optional = msgspec_type(spec, _is_epoch_int(corpus, name))
            fields.append((name, annotation, None) if optional else (name, annotation))
        # gc=False: the rows hold no containers, so they need no cycle tracking; msgspec
        # documents this as its fast path for many small structs.
        row = msgspec.defstruct(
            f"{corpus.name.title()}Row",
            fields,
            kw_only=True,
            gc=False,
            forbid_unknown_fields=corpus.stream.unknown_fields == "reject",
        )
        self.decoder = msgspec.json.Decoder(list[row])
        self.notes.append("decodes ~8 MiB newline-aligned chunks as JSON arrays into Struct(gc=False); single thread")

    def run(self) -> tuple[int, Any]:
        rows = 0
        decode = self.decoder.decode
        for chunk in newline_chunks(self.corpus.data):
            rows += len(decode(b"[" + chunk.rstrip(b"\n").replace(b"\n", b",") + b"]"))
        return rows, None


class OrjsonPeer(Peer):
    """orjson per line + ``RecordBatch.from_pylist``: the usual hand-rolled pipeline."""

    name = "orjson"
    output = "Arrow batches, exact types, no rules"

    def __init__(self, corpus: Corpus, threads: int, schema: pa.Schema) -> None:
        super().__init__(corpus, threads)
        self.json_fields = [n for n, s in corpus.stream.fields.items() if s.type == "json"]
        self.casts: dict[str, pa.DataType] = {}
        fields = []
        for f in schema:
            if f.name in self.json_fields:
                self.notes.append(f"{f.name}: re-serialised with orjson.dumps (timed)")
            if pa.types.is_timestamp(f.type) and not _is_epoch_int(corpus, f.name):
                self.notes.append(f"{f.name}: RFC 3339 text cast to {f.type} (timed)")
                self.casts[f.name] = f.type
                f = pa.field(f.name, pa.string(), f.nullable)
            fields.append(f)
        self.load_schema = pa.schema(fields)
        self.schema = schema
        self.notes.append("orjson.loads per line, from_pylist per ~8 MiB chunk; single thread")

    def run(self) -> tuple[int, Any]:
        loads, dumps = orjson.loads, orjson.dumps
        batches = []
        for chunk in newline_chunks(self.corpus.data):
            rows = [loads(line) for line in chunk.splitlines() if line]
            for name in self.json_fields:
                for r in rows:
                    if name in r:
                        r[name] = dumps(r[name]).decode()
            batch = pa.RecordBatch.from_pylist(rows, schema=self.load_schema)
            del rows
            if self.casts:
                arrays = [
                    pc.cast(col, self.casts[f.name]) if f.name in self.casts else col
                    for f, col in zip(self.load_schema, batch.columns, strict=True)
                ]
                batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=self.schema)
        return table.num_rows, table


# --------------------------------------------------------------------------------------------
# timing and verification
# --------------------------------------------------------------------------------------------


@dataclass
class PeerResult:
    """Timings of one peer on one corpus."""

    peer: str
    output: str
    threads: int
    times: list[float]
    rows: int
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_run(run: Callable[[], tuple[int, Any]]) -> tuple[float, int]:
    """One timed run: collect garbage first so one run's leftovers don't bill the next, and
    drop the output before the next run so memory stays at one output."""
    gc.collect()
    t0 = time.perf_counter()
    rows, out = run()
    elapsed = time.perf_counter() - t0
    del out
    return elapsed, rows


def compare(reference: pa.RecordBatch, other: pa.Table | pa.RecordBatch) -> list[str]:
    """Column-by-column differences between Quiver's batch and another peer's output.

    Dictionary columns are compared by value; a nested peer column (a json column pyarrow
    inferred as a struct) is skipped; any other type that does not cast is a problem.
    """
    problems = []
    if other.num_rows != reference.num_rows:
        return [f"{other.num_rows} rows, Quiver has {reference.num_rows}"]
    for f in reference.schema:
        if f.name not in other.schema.names:
            problems.append(f"{f.name}: missing")
            continue
        a = reference.column(f.name)
        b = other.column(f.name)
        a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
        b = b.combine_chunks() if isinstance(b, pa.ChunkedArray) else b
        if pa.types.is_dictionary(a.type):
            a = a.dictionary_decode()
        if pa.types.is_dictionary(b.type):
            b = b.dictionary_decode()
        if b.type != a.type:
            if pa.types.is_nested(b.type):  # a json column pyarrow inferred as a struct/list
                continue
            try:
                b = b.cast(a.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                problems.append(f"{f.name}: peer type {b.type} does not cast to {a.type} ({exc})")
                continue
        if a.equals(b):
            continue
        same = pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(a.is_null(), b.is_null()))
        bad = pc.indices_nonzero(pc.invert(same))
        i = bad[0].as_py()
        problems.append(
            f"{f.name}: {len(bad)} rows differ, first at row {i}: quiver={a[i].as_py()!r} peer={b[i].as_py()!r}"
        )
    return problems


def make_peers(corpus: Corpus, names: Sequence[str], threads: int, block_size: int) -> list[Peer]:
    """Build the requested peers; Quiver always comes first (its schema feeds the others)."""
    quiver = QuiverPeer(corpus, threads)
    peers: list[Peer] = [quiver] if "quiver" in names else []
    for name in names:
        if name == "pyarrow":
            peers.append(PyArrowPeer(corpus, threads, quiver.schema, block_size))
        elif name == "msgspec":
            peers.append(MsgspecPeer(corpus, threads))
        elif name == "orjson":
            peers.append(OrjsonPeer(corpus, threads, quiver.schema))
    return peers


def run_corpus(
    corpus: Corpus,
    names: Sequence[str],
    threads: int,
    repeat: int,
    block_size: int,
    verify: bool,
    log: Callable[[str], None],
) -> list[PeerResult]:
    """Warm up, verify and time every peer on one corpus."""
    reference: pa.RecordBatch | None = None
    peers = make_peers(corpus, names, threads, block_size)
    for peer in peers:
        t0 = time.perf_counter()
        rows, out = peer.run()  # warm-up: compiles / caches, excluded from timings
        log(f"  {peer.name}: warm-up {time.perf_counter() - t0:.2f}s, {rows} rows")
        if rows != corpus.messages:
            peer.notes.append(f"WARNING: produced {rows} rows for {corpus.messages} messages")
        if verify and out is not None:
            if peer.name == "quiver":
                reference = out
            elif reference is not None:
                peer.notes += [f"WARNING: differs from Quiver: {p}" for p in compare(reference, out)]
        del out
    # repeats interleaved, one run of each peer in turn: this machine's speed drifts (by up
    # to 1.7x for minutes at a time), and back-to-back repeats would bill a slow spell to
    # whichever peer it fell on
    times: dict[str, list[float]] = {peer.name: [] for peer in peers}
    rows_of: dict[str, int] = {}
    for _ in range(repeat):
        for peer in peers:
            elapsed, rows_of[peer.name] = time_run(peer.run)
            times[peer.name].append(elapsed)
    results = []
    for peer in peers:
        results.append(
            PeerResult(peer.name, peer.output, peer.threads, times[peer.name], rows_of[peer.name], peer.notes)
        )
        log(f"  {peer.name}: median {statistics.median(times[peer.name]):.3f}s over {repeat} runs")
    return results


def run_corpus_in_processes(
    name: str,
    messages: int,
    seed: int,
    names: Sequence[str],
    threads: int,
    repeat: int,
    block_size: int,
    verify: bool,
    processes: int,
    log: Callable[[str], None],
) -> list[PeerResult]:
    """run_corpus in ``processes`` fresh processes, one after another: each peer's times are
    its per-process medians, so ``median`` is the median over processes (see the module
    docstring for why a process is one sample)."""
    merged: dict[str, PeerResult] = {}
    for k in range(processes):
        argv = [
            sys.executable, "-m", "bench.parse", "--corpus", name, "--messages", str(messages),
            "--seed", str(seed), "--peers", ",".join(names), "--threads", str(threads),
            "--repeat", str(repeat), "--block-size", str(block_size), "--processes", "1", "--emit-json",
        ] + ([] if verify else ["--no-verify"])  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if proc.returncode != 0:
            raise RuntimeError(f"bench.parse process {k + 1} failed:\n{proc.stderr}")
        for row in json.loads(proc.stdout):
            r = PeerResult(**row)
            median = statistics.median(r.times)
            log(f"  process {k + 1}/{processes}: {r.peer} median {median:.3f}s")
            if r.peer not in merged:
                merged[r.peer] = PeerResult(r.peer, r.output, r.threads, [], r.rows, [])
            merged[r.peer].times.append(median)
            merged[r.peer].notes += [n for n in r.notes if n not in merged[r.peer].notes]
    return list(merged.values())


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


def environment(threads: int) -> dict[str, str]:
    """Versions and machine facts a reader needs to judge (or reproduce) the numbers."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no kernel ran in this process (the peers ran in child processes)
        count_lines(np.frombuffer(b"{}\n", np.uint8), 0, 3, 1)  # a tiny parallel kernel picks it
        layer = numba.threading_layer()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{cpu}; {os.cpu_count()} CPUs, {usable} usable",
        "threads": f"{threads} (Quiver Numba threads, pyarrow cpu_count; msgspec/orjson: 1)",
        "numba": f"{numba.__version__} (threading layer: {layer})",
        "quiver": getattr(engine, "__version__", "?"),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
    }


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def format_text(corpus: Corpus, results: list[PeerResult]) -> str:
    """Plain-text table: one line per peer; time ratio > 1 means slower than Quiver."""
    base = next((r.median for r in results if r.peer == "quiver"), None)
    title = (
        f"{corpus.name}: {corpus.messages:,} messages, {corpus.megabytes:.1f} MB "
        f"({len(corpus.data) / max(1, corpus.messages):.0f} B/msg)"
    )
    header = f"  {'peer':<8} {'threads':>7} {'median s':>9} {'MB/s':>8} {'msg/s':>8} {'time/quiver':>11}  output"
    lines = [title, header]
    for r in results:
        ratio = f"{r.median / base:.2f}x" if base else "-"
        lines.append(
            f"  {r.peer:<8} {r.threads:>7} {r.median:>9.3f} "
            f"{corpus.megabytes / r.median:>8.1f} {_rate(corpus.messages / r.median):>8} "
            f"{ratio:>11}  {r.output}"
        )
    for r in results:
        lines += [f"  note {r.peer}: {n}" for n in r.notes]
    return "\n".join(lines)


def format_markdown(corpus: Corpus, results: list[PeerResult]) -> str:
    """Markdown section for bench/RESULTS.md."""
    base = next((r.median for r in results if r.peer == "quiver"), None)
    lines = [
        f"### {corpus.name}: {corpus.messages:,} messages, {corpus.megabytes:.1f} MB",
        "",
        "| peer | threads | median s | MB/s | messages/s | time vs Quiver | output |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = f"{r.median / base:.2f}x" if base else "-"
        lines.append(
            f"| {r.peer} | {r.threads} | {r.median:.3f} | "
            f"{corpus.megabytes / r.median:.1f} | {_rate(corpus.messages / r.median)} | "
            f"{ratio} | {r.output} |"
        )
    notes = [f"- {r.peer}: {n}" for r in results for n in r.notes]
    return "\n".join(lines + [""] + notes)


def format_environment(env: dict[str, str], markdown: bool, args: argparse.Namespace) -> str:
    """The run's parameters and environment, as a list."""
    run = (
        f"messages={args.messages}, seed={args.seed}, repeat={args.repeat} per process, "
        f"processes={args.processes} (median of per-process medians), "
        f"pyarrow block_size={args.block_size}"
    )
    if markdown:
        return "\n".join([f"- run: {run}"] + [f"- {k}: {v}" for k, v in env.items()])
    return "\n".join([f"run: {run}"] + [f"{k:>9}: {v}" for k, v in env.items()])


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.parse", description="Time Quiver and peer JSON parsers on the same NDJSON bytes."
    )
    ap.add_argument("--corpus", choices=(*KINDS, "all"), default="all")
    ap.add_argument("--messages", type=lambda s: int(float(s)), default=1_000_000)
    ap.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
    )
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per process (default 5)")
    ap.add_argument("--processes", type=int, default=3, help="fresh processes, each a whole measurement (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument(
        "--block-size", type=int, default=1 << 20, help="pyarrow ReadOptions.block_size in bytes (default 1 MiB)"
    )
    ap.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip cross-checking peer outputs against Quiver"
    )
    ap.add_argument("--markdown", action="store_true", help="print markdown for bench/RESULTS.md")
    ap.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # one process's results
    args = ap.parse_args(argv)
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(names) - set(PEERS)
    if unknown or not names:
        ap.error(f"--peers: unknown {sorted(unknown)}; choose from {','.join(PEERS)}")
    if args.threads < 1 or args.repeat < 1 or args.messages < 1 or args.processes < 1:
        ap.error("--threads, --repeat, --processes and --messages must be positive")
    if args.emit_json and (args.corpus == "all" or args.processes != 1):
        ap.error("--emit-json is one corpus in one process")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    sections = []
    for name in KINDS if args.corpus == "all" else (args.corpus,):
        t0 = time.perf_counter()
        corpus = load_corpus(name, args.messages, args.seed)
        log(f"{name}: generated {corpus.megabytes:.1f} MB in {time.perf_counter() - t0:.1f}s")
        if args.processes == 1:
            results = run_corpus(corpus, names, args.threads, args.repeat, args.block_size, args.verify, log)
        else:
            results = run_corpus_in_processes(
                name, args.messages, args.seed, names, args.threads, args.repeat, args.block_size,
                args.verify, args.processes, log,
            )  # fmt: skip
        if args.emit_json:
            print(json.dumps([r.__dict__ for r in results]))
            return 0
        sections.append((format_markdown if args.markdown else format_text)(corpus, results))
        del corpus
    env = format_environment(environment(args.threads), args.markdown, args)
    legend = (
        "MB = 10^6 bytes of NDJSON input; in each process, the median of the timed runs "
        "after one untimed warm-up; over processes, the median of those; time vs Quiver = "
        "peer median / Quiver median (above 1: slower)."
    )
    if args.markdown:
        print("\n\n".join(["#### Environment\n\n" + env, legend, *sections]))
    else:
        print("\n\n".join([env, legend, *sections]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
