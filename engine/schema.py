"""Field specs -> the kernel's schema tables and the Arrow schema of output batches.

Everything the kernels need to know about a stream's fields is resolved here, once:
type bounds folded with ``min``/``max`` (int8's own range, a timestamp bound written as
RFC 3339 text converted to the column's unit), enum strings as UTF-8 bytes, output slots.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from engine.config import FLOAT_TYPES, INT_TYPES, ConfigError, FieldSpec, StreamConfig, parse_timestamp_type
from kernels import tables as tb

_INT_BOUNDS = {t: (int(np.iinfo(t).min), int(np.iinfo(t).max)) for t in INT_TYPES}
_UNIT_TICKS = {"s": 1, "ms": 1000, "us": 1000_000, "ns": 1000_000_000}
_I64 = (-(1 << 63), (1 << 63) - 1)
_I32 = (-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class Column:
    """How one declared field travels from kernel output to its Arrow column."""

    name: str
    index: int
    spec: FieldSpec
    kind: int
    slot: int  # row in ints or floats (-1 when the field has none)
    span_slot: int  # row in the span arrays (-1 when the field has none)
    arrow_type: pa.DataType
    enum_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompiledSchema:
    """A stream's fields compiled for the kernels, with its Arrow schema."""

    columns: tuple[Column, ...]
    tables: tb.SchemaTables
    arrow_schema: pa.Schema
    n_ints: int
    n_floats: int
    n_spans: int


def _arrow_type(spec: FieldSpec) -> pa.DataType:
    t = spec.type
    if spec.enum is not None and t in ("string", "enum"):
        return pa.dictionary(pa.int32(), pa.string())
    if t in INT_TYPES or t in FLOAT_TYPES:
        return pa.from_numpy_dtype(np.dtype(t))
    simple = {"bool": pa.bool_(), "string": pa.string(), "binary": pa.binary(), "json": pa.string(), "date32": pa.date32()}
    if t in simple:
        return simple[t]
    unit, tz = parse_timestamp_type(t)
    return pa.timestamp(unit, tz=tz)


def _kind(spec: FieldSpec) -> int:
    t = spec.type
    if t == "uint64":
        return tb.KIND_UINT64
    if t in INT_TYPES:
        return tb.KIND_INT
    if t == "float64":
        return tb.KIND_FLOAT
    if t == "float32":
        return tb.KIND_FLOAT32
    if t in ("string", "enum"):
        return tb.KIND_ENUM if spec.enum is not None else tb.KIND_STRING
    named = {"bool": tb.KIND_BOOL, "binary": tb.KIND_BINARY, "json": tb.KIND_JSON, "date32": tb.KIND_DATE}
    return named.get(t, tb.KIND_TIMESTAMP)


def _time_bound(v: int | str, spec: FieldSpec, path: str) -> int:
    """A timestamp/date bound in the column's unit (integers are taken as already in it)."""
    if isinstance(v, int):
        return v
    try:
        if spec.type == "date32":
            return (dt.date.fromisoformat(v) - dt.date(1970, 1, 1)).days
        unit, _ = parse_timestamp_type(spec.type)
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        if t.tzinfo is None:
            raise ValueError("no UTC offset")
        delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return micros * _UNIT_TICKS[unit] // 1_000_000
    except ValueError as exc:
        raise ConfigError(f"{path}: expected an RFC 3339 date-time (or YYYY-MM-DD for date32); got {v!r} ({exc})") from None


def compile_schema(stream: StreamConfig) -> CompiledSchema:
    """Resolve a stream's fields into kernel tables and an Arrow schema."""
    k = len(stream.fields)
    kind = np.zeros(k, np.int64)
    slot = np.full(k, -1, np.int64)
    span_slot = np.full(k, -1, np.int64)
    required = np.zeros(k, np.uint8)
    nullable = np.zeros(k, np.uint8)
    int_lo = np.full(k, _I64[0], np.int64)
    int_hi = np.full(k, _I64[1], np.int64)
    uint_lo = np.zeros(k, np.uint64)
    uint_hi = np.full(k, np.iinfo(np.uint64).max, np.uint64)
    float_lo = np.full(k, -np.inf)
    float_hi = np.full(k, np.inf)
    min_len = np.zeros(k, np.int64)
    max_len = np.full(k, _I64[1], np.int64)
    unit = np.ones(k, np.int64)
    frac_digits = np.zeros(k, np.int64)
    enum_strings: list[bytes] = []
    enum_first = [0]
    int_enum: list[int] = []
    int_enum_first = [0]
    columns = []
    n_ints = n_floats = n_spans = 0
    for f, (name, spec) in enumerate(stream.fields.items()):
        path = f"streams.{stream.name}.fields.{name}"
        kd = _kind(spec)
        kind[f] = kd
        required[f] = spec.required
        nullable[f] = spec.is_nullable
        if kd in (tb.KIND_FLOAT, tb.KIND_FLOAT32):
            slot[f] = n_floats
            n_floats += 1
            span_slot[f] = n_spans  # the literal's text, for the exact fallback
            n_spans += 1
            if spec.min is not None:
                float_lo[f] = float(spec.min)
            if spec.max is not None:
                float_hi[f] = float(spec.max)
        elif kd in (tb.KIND_STRING, tb.KIND_BINARY, tb.KIND_JSON):
            span_slot[f] = n_spans
            n_spans += 1
            if spec.min_length is not None:
                min_len[f] = spec.min_length
            if spec.max_length is not None:
                max_len[f] = spec.max_length
        else:
            slot[f] = n_ints
            n_ints += 1
        if kd == tb.KIND_INT:
            lo, hi = _INT_BOUNDS[spec.type]
            int_lo[f] = max(lo, spec.min) if spec.min is not None else lo
            int_hi[f] = min(hi, spec.max) if spec.max is not None else hi
        elif kd == tb.KIND_UINT64:
            uint_lo[f] = max(0, spec.min) if spec.min is not None else 0
            uint_hi[f] = min(_INT_BOUNDS["uint64"][1], spec.max) if spec.max is not None else _INT_BOUNDS["uint64"][1]
            if spec.max is not None and spec.max < 0:
                uint_hi[f], uint_lo[f] = 0, 1  # nothing fits
        elif kd == tb.KIND_TIMESTAMP:
            u, _ = parse_timestamp_type(spec.type)
            unit[f] = _UNIT_TICKS[u]
            frac_digits[f] = len(str(_UNIT_TICKS[u])) - 1
        elif kd == tb.KIND_DATE:
            int_lo[f], int_hi[f] = _I32
        if kd in (tb.KIND_TIMESTAMP, tb.KIND_DATE):
            if spec.min is not None:
                int_lo[f] = max(int(int_lo[f]), _time_bound(spec.min, spec, f"{path}.min"))
            if spec.max is not None:
                int_hi[f] = min(int(int_hi[f]), _time_bound(spec.max, spec, f"{path}.max"))
        if spec.min is not None and spec.max is not None and not isinstance(spec.min, str):
            if not isinstance(spec.max, str) and spec.min > spec.max:
                raise ConfigError(f"{path}.min: {spec.min} is greater than max {spec.max}")
        enum_values: tuple[str, ...] = ()
        if kd == tb.KIND_ENUM:
            enum_values = tuple(spec.enum)
            enum_strings.extend(v.encode() for v in enum_values)
        elif spec.enum is not None:
            int_enum.extend(spec.enum)
        enum_first.append(len(enum_strings))
        int_enum_first.append(len(int_enum))
        columns.append(Column(name, f, spec, kd, int(slot[f]), int(span_slot[f]), _arrow_type(spec), enum_values))

    names = [n.encode() for n in stream.fields]
    tables = tb.SchemaTables(
        kind=kind,
        slot=slot,
        span_slot=span_slot,
        required=required,
        nullable=nullable,
        int_lo=int_lo,
        int_hi=int_hi,
        uint_lo=uint_lo,
        uint_hi=uint_hi,
        float_lo=float_lo,
        float_hi=float_hi,
        min_len=min_len,
        max_len=max_len,
        unit=unit,
        frac_digits=frac_digits,
        name_bytes=np.frombuffer(b"".join(names) or b"\0", np.uint8).copy(),
        name_off=np.concatenate([[0], np.cumsum([len(n) for n in names])]).astype(np.int64),
        enum_bytes=np.frombuffer(b"".join(enum_strings) or b"\0", np.uint8).copy(),
        enum_off=np.concatenate([[0], np.cumsum([len(s) for s in enum_strings], dtype=np.int64)]).astype(np.int64),
        enum_first=np.array(enum_first, np.int64),
        int_enum=np.array(int_enum or [0], np.int64),
        int_enum_first=np.array(int_enum_first, np.int64),
        options=np.array([stream.unknown_fields == "reject", stream.limits.max_depth], np.int64),
    )
    arrow_schema = pa.schema(
        [pa.field(c.name, c.arrow_type, nullable=c.spec.is_nullable or not c.spec.required) for c in columns],
        metadata={"quiver.stream": stream.name},
    )
    return CompiledSchema(tuple(columns), tables, arrow_schema, n_ints, n_floats, n_spans)
