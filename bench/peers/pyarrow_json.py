"""Peer 2, "asyncio + pyarrow.json per batch": the vectorised service a team reaches for next.

This module owns the per-batch path of that peer. The front-end (``bench.peers.frontend``)
only collects raw lines; per batch they are joined and parsed by Arrow's multi-threaded C++
JSON reader (``pyarrow.json.read_json``, GIL released) with an explicit schema derived from
Quiver's, then the rules are checked column-wise with ``pyarrow.compute`` and failing rows are
rejected and counted:

* required / nullable: a null where the field is required and not nullable; when null and
  absent mean different things (required but nullable, or optional but not nullable) the
  rows holding a null are judged one by one with peer 1's checker;
* integer, float and timestamp ``min`` / ``max``; infinite floats; string ``min_length`` /
  ``max_length`` in code points (``utf8_length``); integer ``enum`` (``is_in``);
* enums are read as strings and mapped with ``index_in`` onto the fixed dictionary of the
  enum's values (Arrow's JSON reader cannot produce dictionaries), so the output has Quiver's
  ``dictionary<int32, string>`` columns with Quiver's dictionary;
* timestamps are read as int64 (epoch integers in the column's unit) and cast; if a batch
  fails that way it is read once more with the timestamp type (RFC 3339 text, which Arrow
  parses), and whichever worked is tried first from then on;
* string columns are validated as UTF-8 (the reader does not).

When the reader refuses a batch (a malformed line, a wrong type, a duplicate or unknown key,
a blank line or two objects on one line that break the row-to-line mapping, a line over
``max_message_bytes``), the batch falls back to peer 1's path, ``orjson.loads`` and Python
checks per line, so its good lines are still accepted and only the bad ones rejected.

Where this peer is more lenient than Quiver on its fast path: Arrow's ISO 8601 parser takes
timestamps without an offset (as UTC) and date-only text.

    python -m bench.peers.pyarrow_json -c configs/bench/loadgen.yaml
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from bench.peers.frontend import (
    INVALID_JSON,
    K_ENUM,
    K_FLOAT,
    K_INT,
    K_STRING,
    K_TIMESTAMP,
    MISSING_REQUIRED,
    NO_LIMIT,
    NOT_IN_ENUM,
    OUT_OF_RANGE,
    TOO_LONG,
    TOO_SHORT,
    Built,
    FieldRule,
    Ingest,
    main,
)
from bench.peers.plain import PlainIngest
from engine.config import StreamConfig


class PyArrowJsonIngest(Ingest):
    """Raw lines per batch -> ``read_json`` -> vectorised rule checks."""

    def __init__(self, stream: StreamConfig) -> None:
        super().__init__(stream)
        self._lines: list[bytes] = []
        self.fallback = PlainIngest(stream)  # per-line path: used in the worker thread only
        self.epoch = True  # timestamps arrive as epoch integers (else RFC 3339 text)
        block = 1 << 20
        while block < 2 * self.max_message_bytes:
            block <<= 1
        self.read_options = pj.ReadOptions(use_threads=True, block_size=block)
        unexpected = "error" if stream.unknown_fields == "reject" else "ignore"
        self.parse_options = {
            epoch: pj.ParseOptions(explicit_schema=self._read_schema(epoch), unexpected_field_behavior=unexpected)
            for epoch in (True, False)
        }
        self.has_timestamps = any(r.kind == K_TIMESTAMP for r in self.rules)
        self.string_rules = [r for r in self.rules if r.kind in (K_STRING, K_ENUM)]
        self.names = [r.name for r in self.rules]

    def _read_schema(self, epoch: bool) -> pa.Schema:
        """What the JSON reader is asked for: every field nullable (nulls are checked after),
        enums as strings, timestamps as int64 (``epoch``) or as themselves (text)."""
        fields = []
        for r in self.rules:
            t = r.arrow_type
            if r.kind == K_ENUM:
                t = pa.string()
            elif r.kind == K_TIMESTAMP and epoch:
                t = pa.int64()
            fields.append(pa.field(r.name, t, nullable=True))
        return pa.schema(fields)

    def add(self, lines: list[bytes]) -> None:
        self._lines += lines

    def take(self) -> Callable[[], Built]:
        lines, self._lines = self._lines, []
        return lambda: self.build(lines)

    # ---------------------------------------------------------------- in the worker thread

    def build(self, lines: list[bytes]) -> Built:
        if max(map(len, lines)) > self.max_message_bytes:
            return self._per_line(lines)
        table = self._read(b"\n".join(lines), len(lines))
        if table is None:
            return self._per_line(lines)
        return self._check(table, lines)

    def _read(self, data: bytes, n: int) -> pa.Table | None:
        """The batch as a table of one row per line, or None if the reader refuses it."""
        modes = (self.epoch, not self.epoch) if self.has_timestamps else (self.epoch,)
        for epoch in modes:
            try:
                table = pj.read_json(pa.BufferReader(data), self.read_options, self.parse_options[epoch])
                table = table.select(self.names)  # the rules' order, whatever the reader did
                for r in self.string_rules:
                    table.column(r.name).validate(full=True)  # UTF-8
            except (pa.ArrowException, UnicodeDecodeError):
                continue
            if table.num_rows != n:  # blank lines, or several objects on a line
                return None
            self.epoch = epoch
            return table
        return None

    def _per_line(self, lines: list[bytes]) -> Built:
        self.fallback.add(lines)
        return self.fallback.take()()

    def _check(self, table: pa.Table, lines: list[bytes]) -> Built:
        n = table.num_rows
        bad = np.zeros(n, np.bool_)
        errors: Counter = Counter()
        recheck = None  # rows where a null may or may not be allowed: judged per line

        def flag(code: str, mask: pa.ChunkedArray) -> None:
            m = pc.fill_null(mask, False).to_numpy()
            fresh = int(np.count_nonzero(m & ~bad))
            if fresh:
                errors[code] += fresh
                bad[m] = True

        for i, r in enumerate(self.rules):
            col = table.column(i)
            if col.null_count:
                if r.required and not r.nullable:
                    flag(MISSING_REQUIRED, pc.is_null(col))
                elif r.required or not r.nullable:
                    nulls = pc.is_null(col).to_numpy()
                    recheck = nulls if recheck is None else recheck | nulls
            if r.kind == K_ENUM:
                indices = pc.index_in(col, value_set=self.dictionaries[r.name])
                flag(NOT_IN_ENUM, pc.and_(pc.is_valid(col), pc.is_null(indices)))
                table = table.set_column(i, r.name, indices)
            elif r.kind == K_STRING:
                if r.bounded:
                    lengths = pc.utf8_length(col)
                    if r.hi < NO_LIMIT:
                        flag(TOO_LONG, pc.greater(lengths, r.hi))
                    if r.lo:
                        flag(TOO_SHORT, pc.less(lengths, r.lo))
            elif r.kind == K_TIMESTAMP:
                ticks = col if self.epoch else col.cast(pa.int64())
                if r.bounded:
                    flag(OUT_OF_RANGE, _outside(ticks, r))
                if self.epoch:
                    table = table.set_column(i, r.name, col.cast(r.arrow_type))
            elif r.kind == K_INT:
                if r.bounded:
                    flag(OUT_OF_RANGE, _outside(col, r))
                if r.values:
                    member = pc.is_in(col, value_set=pa.array(r.values, r.arrow_type))
                    flag(NOT_IN_ENUM, pc.and_(pc.is_valid(col), pc.invert(member)))
            elif r.kind == K_FLOAT:
                flag(OUT_OF_RANGE, pc.or_(pc.is_inf(col), _outside(col, r)) if r.bounded else pc.is_inf(col))
        if recheck is not None:
            check, loads = self.fallback.checker.check, orjson.loads
            for row in np.flatnonzero(recheck & ~bad).tolist():
                try:
                    code = check(loads(lines[row]))
                except orjson.JSONDecodeError:
                    code = INVALID_JSON
                if code is not None:
                    errors[code] += 1
                    bad[row] = True
        rejected = int(np.count_nonzero(bad))
        if rejected:
            table = table.filter(pa.array(~bad))
        return Built(self._to_batch(table), n, rejected, 0, errors)

    def _to_batch(self, table: pa.Table) -> pa.RecordBatch | None:
        if table.num_rows == 0:
            return None
        columns = []
        for r, col in zip(self.rules, table.columns, strict=True):
            arr = col.combine_chunks()
            if r.kind == K_ENUM:
                arr = pa.DictionaryArray.from_arrays(arr, self.dictionaries[r.name])
            columns.append(arr)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def _outside(col: pa.ChunkedArray, r: FieldRule) -> pa.ChunkedArray:
    return pc.or_(pc.less(col, r.lo), pc.greater(col, r.hi))


if __name__ == "__main__":
    sys.exit(main(PyArrowJsonIngest, prog="python -m bench.peers.pyarrow_json"))
