"""Peer 1, "asyncio + orjson": the ingest service most Python teams would write first.

This module owns the per-message path of that peer: each line is decoded with
``orjson.loads``, each declared field checked in Python against the stream's rules (type,
required / nullable, min / max, min_length / max_length, enum; ``timestamp`` fields take
epoch integers in the column's unit or RFC 3339 text with an offset) and converted in place
(enum value -> its index, RFC 3339 -> ticks, integer literal in a float field -> float). The
decoded dict itself is the row; per batch ``pa.RecordBatch.from_pylist`` builds the columns
(in the front-end's worker thread) and enum indices are wrapped as the fixed
``dictionary<int32, string>`` of the enum's values, so the output matches Quiver's schema
and dictionary exactly. Everything around parsing (TCP, batching, consumers) is the shared
``bench.peers.frontend``.

Where this peer is more lenient than Quiver: duplicate keys (orjson keeps the last), nesting
depth (orjson's own limit), ``datetime.fromisoformat`` forms beyond RFC 3339, digits below a
microsecond. None of these occur in the benchmark corpus.

    python -m bench.peers.plain -c configs/bench/loadgen.yaml
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

import orjson
import pyarrow as pa

from bench.peers.frontend import (
    INVALID_JSON,
    K_BOOL,
    K_ENUM,
    K_FLOAT,
    K_INT,
    K_STRING,
    K_TIMESTAMP,
    MISSING_REQUIRED,
    NOT_AN_OBJECT,
    NOT_IN_ENUM,
    OUT_OF_RANGE,
    TOO_LARGE,
    TOO_LONG,
    TOO_SHORT,
    TYPE_MISMATCH,
    UNKNOWN_FIELD,
    Built,
    FieldRule,
    Ingest,
    main,
    rfc3339_ticks,
)
from engine.config import StreamConfig


class RowChecker:
    """The stream's rules applied to one decoded message, converting values in place.

    Fields are grouped by kind, one tight loop per kind: the common case (a value of the right
    type) costs one ``get``, one ``type`` test and the bound comparisons, no dispatch on kind.
    A ``None`` from ``get`` is then told apart (null or absent) with ``in``.
    """

    def __init__(self, ingest: Ingest) -> None:
        def group(kind: int, *extra: Callable[[FieldRule], object]) -> tuple:
            # (name, code if absent, code if null, *extra): flat tuples, unpacked in the loops
            return tuple(
                (r.name, MISSING_REQUIRED if r.required else None, None if r.nullable else r.null_code)
                + tuple(f(r) for f in extra)
                for r in ingest.rules
                if r.kind == kind
            )

        def lo(r: FieldRule) -> object:
            return r.lo

        def hi(r: FieldRule) -> object:
            return r.hi

        self.ints = group(K_INT, lo, hi, lambda r: frozenset(r.values) or None)
        self.strings = group(K_STRING, lo, hi)
        self.enums = group(K_ENUM, lambda r: {v: i for i, v in enumerate(r.values)})
        self.timestamps = group(K_TIMESTAMP, lo, hi, lambda r: r.ticks_per_s)
        self.floats = group(K_FLOAT, lo, hi)
        self.bools = group(K_BOOL)
        self.known = frozenset(r.name for r in ingest.rules)
        self.reject_unknown = ingest.stream.unknown_fields == "reject"

    def check(self, obj: dict) -> str | None:
        """None if ``obj`` (a decoded JSON object) passes, else the error code."""
        get = obj.get
        for name, absent, null, lo, hi, values in self.ints:
            v = get(name)
            if type(v) is int:
                if v < lo or v > hi:
                    return OUT_OF_RANGE
                if values is not None and v not in values:
                    return NOT_IN_ENUM
            elif v is None:
                code = null if name in obj else absent
                if code is not None:
                    return code
            else:
                return TYPE_MISMATCH
        for name, absent, null, lo, hi in self.strings:
            v = get(name)
            if type(v) is str:
                n = len(v)
                if n > hi:
                    return TOO_LONG
                if n < lo:
                    return TOO_SHORT
            elif v is None:
                code = null if name in obj else absent
                if code is not None:
                    return code
            else:
                return TYPE_MISMATCH
        for name, absent, null, index in self.enums:
            v = get(name)
            if type(v) is str:
                i = index.get(v)
                if i is None:
                    return NOT_IN_ENUM
                obj[name] = i
            elif v is None:
                code = null if name in obj else absent
                if code is not None:
                    return code
            else:
                return TYPE_MISMATCH
        for name, absent, null, lo, hi, ticks in self.timestamps:
            v = get(name)
            t = type(v)
            if t is int or t is str:
                if t is str:
                    try:
                        v = obj[name] = rfc3339_ticks(v, ticks)
                    except ValueError:
                        return TYPE_MISMATCH
                if v < lo or v > hi:
                    return OUT_OF_RANGE
            elif v is None:
                code = null if name in obj else absent
                if code is not None:
                    return code
            else:
                return TYPE_MISMATCH
        for name, absent, null, lo, hi in self.floats:
            v = get(name)
            t = type(v)
            if t is float or t is int:
                if t is int:
                    v = obj[name] = float(v)  # from_pylist refuses ints beyond 2**53 for a double
                if v < lo or v > hi:
                    return OUT_OF_RANGE
            elif v is None:
                code = null if name in obj else absent
                if code is not None:
                    return code
            else:
                return TYPE_MISMATCH
        for name, absent, null in self.bools:
            v = get(name)
            if v is None:
                code = null if name in obj else absent
                if code is not None:
                    return code
            elif type(v) is not bool:
                return TYPE_MISMATCH
        if self.reject_unknown and not obj.keys() <= self.known:
            return UNKNOWN_FIELD
        return None


class PlainIngest(Ingest):
    """orjson and Python checks per message; ``from_pylist`` per batch."""

    def __init__(self, stream: StreamConfig) -> None:
        super().__init__(stream)
        self.checker = RowChecker(self)
        # from_pylist builds enum columns as int32 indices; build() wraps them as dictionaries
        self.build_schema = pa.schema(
            [pa.field(f.name, pa.int32(), f.nullable) if f.name in self.dictionaries else f for f in self.schema]
        )
        self._enum_columns = [
            (i, self.dictionaries[f.name]) for i, f in enumerate(self.schema) if f.name in self.dictionaries
        ]
        self._reset()

    def _reset(self) -> None:
        self._rows: list[dict] = []
        self._received = 0
        self._blank = 0
        self._errors: Counter = Counter()

    def add(self, lines: list[bytes]) -> None:
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        check = self.checker.check
        append = self._rows.append
        errors = self._errors
        max_bytes = self.max_message_bytes
        blank = 0
        for line in lines:
            if len(line) > max_bytes:
                errors[TOO_LARGE] += 1
                continue
            try:
                obj = loads(line)
            except decode_error:
                if line.strip():
                    errors[INVALID_JSON] += 1
                else:
                    blank += 1
                continue
            if type(obj) is not dict:
                errors[NOT_AN_OBJECT] += 1
                continue
            code = check(obj)
            if code is None:
                append(obj)
            else:
                errors[code] += 1
        self._received += len(lines) - blank
        self._blank += blank

    def take(self) -> Callable[[], Built]:
        rows, received, blank, errors = self._rows, self._received, self._blank, self._errors
        self._reset()
        return lambda: Built(self.build(rows), received, received - len(rows), blank, errors)

    def build(self, rows: list[dict]) -> pa.RecordBatch:
        """Checked rows -> a batch of Quiver's schema."""
        columns = pa.RecordBatch.from_pylist(rows, schema=self.build_schema).columns
        for i, dictionary in self._enum_columns:
            columns[i] = pa.DictionaryArray.from_arrays(columns[i], dictionary)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


if __name__ == "__main__":
    sys.exit(main(PlainIngest, prog="python -m bench.peers.plain"))
