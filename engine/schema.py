"""Field specs -> the kernel's schema tables and the Arrow schema of output batches.

Everything the kernels need to know about a stream's fields is resolved here, once:
type bounds folded with ``min``/``max`` (int8's own range, a timestamp bound written as
RFC 3339 text converted to the column's unit), enum strings as UTF-8 bytes, output slots.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from engine.config import FLOAT_TYPES, INT_TYPES, ConfigError, FieldSpec, StreamConfig, int_range, parse_timestamp_type
from kernels import tables as tb
from kernels.errors import OK, OUT_OF_RANGE
from kernels.gather import COPY_BASE64, COPY_RAW, COPY_STRING
from kernels.temporal import parse_date, parse_rfc3339

_INT_BOUNDS = {t: int_range(t) for t in INT_TYPES}
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

    @functools.cached_property
    def float_columns(self) -> tuple[Column, ...]:
        """The float64/float32 columns: the only ones the exact float fallback can touch."""
        return tuple(c for c in self.columns if c.kind in (tb.KIND_FLOAT, tb.KIND_FLOAT32))

    @functools.cached_property
    def gathered(self) -> tuple[tuple[Column, ...], np.ndarray, np.ndarray, np.ndarray]:
        """The variable-length columns, and their field indices, span slots and copy modes
        as the ``gather_columns`` kernel takes them."""
        modes = {tb.KIND_STRING: COPY_STRING, tb.KIND_JSON: COPY_RAW, tb.KIND_BINARY: COPY_BASE64}
        cols = tuple(c for c in self.columns if c.kind in modes)
        return (
            cols,
            np.array([c.index for c in cols], np.int64),
            np.array([c.span_slot for c in cols], np.int64),
            np.array([modes[c.kind] for c in cols], np.int64),
        )


def _arrow_type(spec: FieldSpec) -> pa.DataType:
    t = spec.type
    if spec.enum is not None and t in ("string", "enum"):
        return pa.dictionary(pa.int32(), pa.string())
    if t in INT_TYPES or t in FLOAT_TYPES:
        return pa.from_numpy_dtype(np.dtype(t))
    simple = {
        "bool": pa.bool_(),
        "string": pa.string(),
        "binary": pa.binary(),
        "json": pa.string(),
        "date32": pa.date32(),
    }
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
    """A timestamp/date bound in the column's unit (integers are taken as already in it).

    Text goes through the kernels' own RFC 3339 / date parser, so a bound means exactly
    what the same text means as a value: all nine fraction digits of a nanosecond bound,
    digits finer than the unit dropped as they are from values, the same forms accepted.
    """
    if isinstance(v, int):
        return v
    text = v.encode("utf-8", "surrogatepass")
    x = np.frombuffer(text + bytes(8), np.uint8)  # padded: the parsers may look one byte on
    if spec.type == "date32":
        value, code = parse_date(x, 0, len(text))
        shape = "YYYY-MM-DD"
    else:
        unit, _ = parse_timestamp_type(spec.type)
        ticks = _UNIT_TICKS[unit]
        value, code = parse_rfc3339(x, 0, len(text), ticks, _frac_digits(ticks))
        shape = "an RFC 3339 date-time such as 2024-01-01T00:00:00Z"
    if code == OUT_OF_RANGE:
        raise ConfigError(f"{path}: {v!r} is not a valid instant of type {spec.type} (out of range)")
    if code != OK:
        raise ConfigError(f"{path}: expected {shape}; got {v!r}")
    return int(value)


def _frac_digits(ticks: int) -> int:
    """Fraction digits a unit of ``ticks`` per second keeps (log10: 1000 -> 3)."""
    return len(str(ticks)) - 1


def _folded(lo: int, hi: int) -> tuple[int, int]:
    """Bounds as the kernel tables hold them: (1, 0) when no value can fit. Folded with the
    type's own range, a bound past that range means exactly this, and stored as written it
    could overflow the table's integers."""
    return (lo, hi) if lo <= hi else (1, 0)


def compile_schema(stream: StreamConfig) -> CompiledSchema:
    """Resolve a stream's fields into kernel tables and an Arrow schema."""
    k = len(stream.fields)
    fields = np.zeros((k, tb.F_COLUMNS), np.int64)
    fields[:, tb.F_SLOT] = -1
    fields[:, tb.F_SPAN] = -1
    fields[:, tb.F_INT_LO], fields[:, tb.F_INT_HI] = _I64
    fields[:, tb.F_MAX_LEN] = _I64[1]
    fields[:, tb.F_UNIT] = 1
    float_bounds = np.tile(np.array([-np.inf, np.inf]), (k, 1))
    uint_bounds = np.tile(np.array([0, np.iinfo(np.uint64).max], np.uint64), (k, 1))
    text = bytearray()
    spans: list[int] = []  # enum string spans into text, two entries each
    int_enum: list[int] = []
    columns = []
    n_ints = n_floats = n_spans = 0
    for f, (name, spec) in enumerate(stream.fields.items()):
        path = f"streams.{stream.name}.fields.{name}"
        row = fields[f]
        kd = _kind(spec)
        row[tb.F_KIND] = kd
        row[tb.F_REQUIRED] = spec.required
        row[tb.F_NULLABLE] = spec.is_nullable
        row[tb.F_NAME_START] = len(text)
        text += name.encode()
        row[tb.F_NAME_END] = len(text)
        row[tb.F_NAME_PLAIN] = not any(c in '"\\' or ord(c) < 0x20 for c in name)
        if kd in (tb.KIND_FLOAT, tb.KIND_FLOAT32):
            row[tb.F_SLOT] = n_floats
            n_floats += 1
            row[tb.F_SPAN] = n_spans  # the literal's text, for the exact fallback
            n_spans += 1
            if spec.min is not None and spec.max is not None and spec.min > spec.max:
                raise ConfigError(f"{path}.min: {spec.min!r} is greater than max {spec.max!r}")
            if spec.min is not None:
                float_bounds[f, 0] = float(spec.min)
            if spec.max is not None:
                float_bounds[f, 1] = float(spec.max)
        elif kd in (tb.KIND_STRING, tb.KIND_BINARY, tb.KIND_JSON):
            row[tb.F_SPAN] = n_spans
            n_spans += 1
            if spec.min_length is not None:
                row[tb.F_MIN_LEN] = spec.min_length
            if spec.max_length is not None:
                row[tb.F_MAX_LEN] = spec.max_length
        else:
            row[tb.F_SLOT] = n_ints
            n_ints += 1
        if kd == tb.KIND_TIMESTAMP:
            unit, _ = parse_timestamp_type(spec.type)
            row[tb.F_UNIT] = _UNIT_TICKS[unit]
            row[tb.F_FRAC_DIGITS] = _frac_digits(_UNIT_TICKS[unit])
        if kd in (tb.KIND_INT, tb.KIND_UINT64, tb.KIND_TIMESTAMP, tb.KIND_DATE):
            lo, hi = {tb.KIND_TIMESTAMP: _I64, tb.KIND_DATE: _I32}.get(kd) or _INT_BOUNDS[spec.type]
            timed = kd in (tb.KIND_TIMESTAMP, tb.KIND_DATE)
            low = None if spec.min is None else _time_bound(spec.min, spec, f"{path}.min") if timed else spec.min
            high = None if spec.max is None else _time_bound(spec.max, spec, f"{path}.max") if timed else spec.max
            if low is not None and high is not None and low > high:
                raise ConfigError(f"{path}.min: {spec.min!r} is greater than max {spec.max!r}")
            lo, hi = _folded(lo if low is None else max(lo, low), hi if high is None else min(hi, high))
            if kd == tb.KIND_UINT64:
                uint_bounds[f] = (lo, hi)
            else:
                row[tb.F_INT_LO], row[tb.F_INT_HI] = lo, hi
        enum_values: tuple[str, ...] = ()
        row[tb.F_ENUM_FIRST] = len(spans) // 2
        if kd == tb.KIND_ENUM:
            enum_values = tuple(spec.enum)
            for v in enum_values:
                spans.append(len(text))
                text += v.encode()
                spans.append(len(text))
        row[tb.F_ENUM_LAST] = len(spans) // 2
        if kd != tb.KIND_ENUM and spec.enum is not None:
            row[tb.F_INT_ENUM_FIRST] = len(int_enum)
            # uint64 values past int64's range are kept as their two's complement bits,
            # which is how the kernel holds a uint64 value too (config checks each fits)
            int_enum.extend(v - (1 << 64) if v > _I64[1] else v for v in spec.enum)
            row[tb.F_INT_ENUM_LAST] = len(int_enum)
        columns.append(
            Column(name, f, spec, kd, int(row[tb.F_SLOT]), int(row[tb.F_SPAN]), _arrow_type(spec), enum_values)
        )

    # one pool for enum spans and allowed integers: integers go after the spans
    base = len(spans)
    fields[:, tb.F_INT_ENUM_FIRST] += base
    fields[:, tb.F_INT_ENUM_LAST] += base
    tables = tb.SchemaTables(
        fields=fields,
        float_bounds=float_bounds,
        uint_bounds=uint_bounds,
        text=np.frombuffer(bytes(text) + bytes(8), np.uint8).copy(),  # padded: read 8 bytes at a time
        lists=np.array(spans + int_enum + [0], np.int64),
        reject_unknown=stream.unknown_fields == "reject",
        max_depth=int(stream.limits.max_depth),
    )
    arrow_schema = pa.schema(
        [pa.field(c.name, c.arrow_type, nullable=c.spec.is_nullable or not c.spec.required) for c in columns],
        metadata={"quiver.stream": stream.name},
    )
    return CompiledSchema(tuple(columns), tables, arrow_schema, n_ints, n_floats, n_spans)
