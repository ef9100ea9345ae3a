"""Kernel output buffers -> Arrow record batches: accepted rows and dead letters.

Numeric columns are wrapped without copying when every message of the batch was accepted
(``pa.Array.from_buffers`` over numpy memory); otherwise the accepted rows are taken with
one vectorised gather per column. Variable-length columns are laid out by the gather
kernel. Nothing here loops over messages in Python.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine import buffers
from engine.schema import Column, CompiledSchema
from kernels import tables as tb
from kernels.errors import ERROR_NAMES, TOO_LARGE, UNKNOWN_KEY
from kernels.gather import COLUMN_TOO_LARGE, COPY_RAW, COPY_STRING, INT32_MAX, gather, gather_columns

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("position", pa.int64(), nullable=False),
        pa.field("raw", pa.binary(), nullable=False),
    ],
    metadata={"quiver.kind": "dead_letters"},
)
_ERROR_NAMES = pa.array(ERROR_NAMES, pa.string())
_NO_REJECTS = pa.RecordBatch.from_pylist([], schema=DEAD_LETTER_SCHEMA)
_NO_ROWS = np.empty(0, np.int64)


def _chunks(m: int) -> int:
    return max(1, min(m, numba.get_num_threads() * 4))


def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


def gather_spans(
    buf: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    mode: int,
    large: bool = False,
) -> tuple[pa.Buffer, pa.Buffer]:
    """(offsets, data) Arrow buffers holding the value of each row, laid out by the kernel."""
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = buffers.empty(int(offsets[-1]), np.uint8)
    if len(rows):
        gather(buf, start, end, rows, offsets, data, mode, _chunks(len(rows)))
    return _arrow_offsets(offsets, data, large)


@functools.cache
def _dictionary(values: tuple[str, ...]) -> pa.Array:
    return pa.array(values, pa.string())


def _column(
    col: Column, cols: tb.BatchColumns, rows: np.ndarray | None, m: int, valid: np.ndarray, full: bool
) -> pa.Array:
    """The Arrow column of fixed-width ``col`` for the kept rows; ``valid`` marks which hold
    a value (``full``: all of them)."""
    validity = _validity(valid, full)
    kind = col.kind
    if kind in (tb.KIND_FLOAT, tb.KIND_FLOAT32):
        values = _take(cols.floats[col.slot], rows)
        if kind == tb.KIND_FLOAT32:
            values = values.astype(np.float32)
        return pa.Array.from_buffers(col.arrow_type, m, [validity, pa.py_buffer(values)])
    values = _take(cols.ints[col.slot], rows)
    if kind == tb.KIND_BOOL:
        return pa.Array.from_buffers(
            pa.bool_(), m, [validity, pa.py_buffer(np.packbits(values == 1, bitorder="little"))]
        )
    if kind == tb.KIND_ENUM:
        indices = pa.Array.from_buffers(pa.int32(), m, [validity, pa.py_buffer(values.astype(np.int32))])
        return pa.DictionaryArray.from_arrays(indices, _dictionary(col.enum_values))
    if kind == tb.KIND_DATE:
        values = values.astype(np.int32)
    elif kind == tb.KIND_UINT64:
        values = values.view(np.uint64)
    elif kind == tb.KIND_INT and col.spec.type != "int64":
        values = values.astype(col.spec.type)
    return pa.Array.from_buffers(col.arrow_type, m, [validity, pa.py_buffer(values)])


def _validity(valid: np.ndarray, full: bool) -> pa.Buffer | None:
    """Arrow validity bitmap of a bool mask; None when ``full`` (every row valid)."""
    return None if full else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _arrow_offsets(offsets: np.ndarray, data: np.ndarray, large: bool = False) -> tuple[pa.Buffer, pa.Buffer]:
    """Arrow (offsets, data) buffers: 32-bit offsets unless ``large``."""
    if not large:
        if offsets[-1] > INT32_MAX:
            raise OverflowError(COLUMN_TOO_LARGE)
        offsets = offsets.astype(np.int32)
    return pa.py_buffer(offsets), pa.py_buffer(data)


def build_batch(
    schema: CompiledSchema, cols: tb.BatchColumns, buf: np.ndarray, rows: np.ndarray | None, m: int
) -> pa.RecordBatch:
    """The record batch of the accepted rows (``rows``; None: all ``m`` messages)."""
    state = cols.state if rows is None else cols.state[rows]
    # every column's validity at once (fixed costs are per call), laid out by column: the
    # kernel writes a message's states side by side, and reductions along that stride crawl
    valid = np.ascontiguousarray((state == tb.STATE_VALUE).T)
    full = valid.all(axis=1).tolist()
    variable = _variable_width(schema, cols, buf, rows, m, valid, full)
    arrays = [
        variable[c.index] if c.index in variable else _column(c, cols, rows, m, valid[c.index], full[c.index])
        for c in schema.columns
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema.arrow_schema)


def _variable_width(
    schema: CompiledSchema,
    cols: tb.BatchColumns,
    buf: np.ndarray,
    rows: np.ndarray | None,
    m: int,
    valid: np.ndarray,
    full: list[bool],
) -> dict[int, pa.Array]:
    """The string-like columns by field index, laid out by one kernel call for all of them."""
    gathered, fields, slots, modes = schema.gathered
    if not gathered:
        return {}
    offsets, data, bases = gather_columns(
        buf,
        cols.state,
        cols.spans,
        fields,
        slots,
        modes,
        _NO_ROWS if rows is None else rows,
        rows is None,
        _chunks(m),
        allocate=buffers.empty,
    )
    data = pa.py_buffer(data)
    arrays = {}
    for k, col in enumerate(gathered):
        validity = _validity(valid[col.index], full[col.index])
        values = data.slice(int(bases[k]), int(bases[k + 1] - bases[k]))
        arrays[col.index] = pa.Array.from_buffers(col.arrow_type, m, [validity, pa.py_buffer(offsets[k]), values])
    return arrays


def build_rejects(
    schema: CompiledSchema,
    cols: tb.BatchColumns,
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    rows: np.ndarray,
    base: int,
    first_index: int = 0,
    max_message_bytes: int | None = None,
) -> pa.RecordBatch:
    """The dead-letter batch of the rejected messages ``rows``.

    ``base`` is the buffer position of the input's first byte, so offsets are relative to
    what the caller passed; ``first_index`` numbers messages across a stream's batches.
    A too_large message's ``raw`` is its first ``max_message_bytes + 1`` bytes: all the
    service can keep of a line that spans reads, so the same everywhere, and a dead letter
    never holds more than a message may.
    """
    m = len(rows)
    if m == 0:
        return _NO_REJECTS
    errors = cols.errors
    codes = errors[tb.ERR_CODE, rows]
    field_index = errors[tb.ERR_FIELD, rows]
    unknown = field_index == UNKNOWN_KEY
    names = pa.array(list(schema.arrow_schema.names), pa.string())
    known = pc.take(names, pa.array(np.where(field_index >= 0, field_index, 0), mask=field_index < 0))
    if unknown.any():
        lengths = np.zeros(m, np.int64)
        key_start = errors[tb.ERR_KEY_START, rows]
        key_end = errors[tb.ERR_KEY_END, rows]
        lengths[unknown] = errors[tb.ERR_KEY_LEN, rows][unknown]
        # the unknown key, decoded
        offsets, data = gather_spans(buf, key_start, key_end, lengths, np.arange(m, dtype=np.int64), COPY_STRING)
        keys = pa.Array.from_buffers(pa.string(), m, [None, offsets, data])
        field = pc.if_else(pa.array(unknown), keys, known)
    else:
        field = known
    raw_ends = ends
    too_large = codes == TOO_LARGE
    if max_message_bytes is not None and too_large.any():
        raw_ends = ends.copy()
        big = rows[too_large]
        raw_ends[big] = np.minimum(ends[big], starts[big] + max_message_bytes + 1)
    raw_offsets, raw_data = gather_spans(buf, starts, raw_ends, raw_ends[rows] - starts[rows], rows, COPY_RAW)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(rows + first_index, pa.int64()),
            pa.array(starts[rows] - base, pa.int64()),
            pc.take(_ERROR_NAMES, pa.array(codes)),
            field,
            pa.array(errors[tb.ERR_POS, rows], pa.int64()),
            pa.Array.from_buffers(pa.binary(), m, [None, raw_offsets, raw_data]),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )
