"""Streaming files of any size through a stream's arena into Arrow IPC or Parquet files.

This is ``quiver convert``: input is read straight into a preallocated arena, every complete
line in it is parsed as one or more batches, the unfinished last line moves to the front,
and reading continues, so memory stays bounded by the arena however large the input. A
line longer than the arena is rejected as ``too_large`` (its dead letter keeps the first
arena-full of bytes) and skipped to its end without being buffered whole.

Inputs are treated as one stream of lines, except that each file's unterminated last line
is a message of its own; dead-letter ``index`` and ``offset`` count across all inputs.

An output file appears only once it is whole: it is written under a hidden name beside it
and renamed on success, so a conversion that fails part way leaves nothing a reader would
take for a result (Arrow IPC and Parquet files end in a footer; without it they are
unreadable).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.arena import Arena
from engine.config import ConfigError
from engine.parser import Parser, Tally, as_uint8
from kernels.framing import frame_lines


class OutputError(OSError):
    """An output could not hold what was written to it (the CLI, as for any OSError,
    prints it and exits 1)."""


class BatchWriter(Protocol):
    def write_batch(self, batch: pa.RecordBatch, custom_metadata: dict | None = None) -> None: ...
    def close(self) -> None: ...


class Output:
    """Where ``open_batch_writer`` writes: ``close`` when everything is written, or
    ``discard`` when the run failed (a file output is then removed, never left partial)."""

    def __init__(self, path: str, open_writer: Callable[[str], BatchWriter]) -> None:
        self.path = path
        self._target = path
        if path != "-" and (not os.path.exists(path) or os.path.isfile(path)):
            head, name = os.path.split(path)
            self._target = os.path.join(head, f".{name}.partial-{os.getpid()}")
        self._writer = open_writer(self._target)

    def write_batch(self, batch: pa.RecordBatch, custom_metadata: dict | None = None) -> None:
        self._writer.write_batch(batch, custom_metadata=custom_metadata)

    def close(self) -> None:
        self._writer.close()
        if self._target != self.path:
            os.replace(self._target, self.path)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._target != self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._target)


class _ParquetBatchWriter:
    """Gathers small batches into row groups of about ROW_GROUP rows: a row group per
    linger-sized batch would make files slow to scan."""

    ROW_GROUP = 1 << 16

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema)
        self._seconds = any(pa.types.is_timestamp(f.type) and f.type.unit == "s" for f in schema)
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def write_batch(self, batch: pa.RecordBatch, custom_metadata: dict | None = None) -> None:
        """Parquet keeps no per-batch metadata: ``custom_metadata`` is accepted and dropped."""
        if batch.num_rows:
            self._pending.append(batch)
            self._rows += batch.num_rows
            if self._rows >= self.ROW_GROUP:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            try:
                self._writer.write_table(pa.Table.from_batches(self._pending), row_group_size=self._rows)
            except pa.ArrowInvalid as exc:
                # Parquet has no seconds unit: timestamp[s] is written in milliseconds, and
                # a value past +-9.2e15 s (an epoch in ns, say) overflows there
                hint = (
                    "; Parquet stores timestamp[s] in milliseconds: bound the field with min/max, or write .arrow"
                    if self._seconds
                    else ""
                )
                raise OutputError(f"Parquet cannot hold this batch: {exc}{hint}") from exc
        self._pending, self._rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


def output_format(path: str) -> str:
    """``stdout``, ``parquet``, ``ipc-stream`` or ``ipc-file``, from an output's name; any
    other name is refused (the format would be a guess)."""
    if path == "-":
        return "stdout"
    formats = {".parquet": "parquet", ".arrows": "ipc-stream", ".arrow": "ipc-file"}
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise ConfigError(f"{path}: expected an output ending in .arrow, .arrows or .parquet, or - for stdout")
    return formats[suffix]


def open_batch_writer(path: str, schema: pa.Schema) -> Output:
    """A writer for ``output_format(path)``; '-' is an IPC stream on stdout."""
    kind = output_format(path)
    if kind == "stdout":
        return Output(path, lambda _: pa.ipc.new_stream(pa.PythonFile(sys.stdout.buffer, mode="w"), schema))
    if kind == "parquet":
        return Output(path, lambda target: _ParquetBatchWriter(target, schema))
    if kind == "ipc-stream":
        return Output(path, lambda target: pa.ipc.new_stream(target, schema))
    return Output(path, lambda target: pa.ipc.new_file(target, schema))


@dataclass
class ConvertSummary(Tally):
    """Counts of one conversion; received == accepted + rejected."""

    bytes_read: int = 0
    seconds: float = 0.0


class LineConverter:
    """Feeds byte streams through one arena of a stream and hands out batches."""

    def __init__(
        self,
        parser: Parser,
        on_batch: Callable[[pa.RecordBatch], None],
        on_rejects: Callable[[pa.RecordBatch], None],
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.parser = parser
        batch = parser.stream.batch
        # an arena must hold a whole maximal message plus some room to see where it ends
        size = max(int(batch.max_bytes), parser.max_message_bytes + (64 << 10))
        self.arena = Arena(size)
        self.max_messages = batch.max_messages
        self.on_batch = on_batch
        self.on_rejects = on_rejects
        self.on_progress = on_progress
        self.summary = ConvertSummary()
        self._stream_offset = 0  # input position of the arena's first byte

    def run(self, inputs: Iterable[BinaryIO]) -> ConvertSummary:
        started = time.perf_counter()
        self.arena.reset()
        for f in inputs:
            self._feed(f, self.arena)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _feed(self, f: BinaryIO, arena: Arena) -> None:
        skipping = False  # inside an oversize line: discard up to its newline
        while True:
            n = f.readinto(arena.free_space())
            eof = not n
            if n:
                self.summary.bytes_read += n
                if self.on_progress:
                    self.on_progress(n)
            arena.used += n or 0
            if skipping:
                nl = np.flatnonzero(arena.data[: arena.used] == 10)
                cut = int(nl[0]) + 1 if len(nl) else arena.used
                self._drop(arena, cut)
                skipping = not len(nl)
                if skipping and not eof:
                    continue
            consumed = self._parse_lines(arena, eof)
            self._drop(arena, consumed)
            if arena.used == arena.capacity:  # one line fills the arena: too large
                self._emit(arena, np.array([0]), np.array([arena.used]), 0)
                self._drop(arena, arena.used)
                skipping = True
            if eof:
                return

    def _drop(self, arena: Arena, consumed: int) -> None:
        arena.keep_tail(consumed)
        self._stream_offset += consumed

    def _parse_lines(self, arena: Arena, final: bool) -> int:
        buf = as_uint8(arena.data)
        starts, ends, blank, consumed = frame_lines(buf, 0, arena.used, final, 8, self.parser.max_message_bytes)
        self._emit(arena, starts, ends, blank)
        return int(consumed)

    def _emit(self, arena: Arena, starts: np.ndarray, ends: np.ndarray, blank: int) -> None:
        self.summary.blank += blank  # not in any result: a read may hold only blank lines
        for lo in range(0, len(starts), self.max_messages):
            hi = lo + self.max_messages
            result = self.parser.parse_spans(
                arena.data, starts[lo:hi], ends[lo:hi], base=-self._stream_offset, first_index=self.summary.received
            )
            self.summary.add(result)
            self.on_batch(result.batch)
            if result.rejected:
                self.on_rejects(result.rejects)
