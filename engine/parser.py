"""``Parser``: one stream's schema, applied to a buffer of messages in one batch.

The data path of a batch: frame (or take pre-framed spans) -> ``parse_batch`` kernel ->
exact fallback for the rare floats the kernel declined -> Arrow batch of accepted rows
and dead-letter batch of rejected ones. Received always equals accepted + rejected.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numba
import numpy as np
import pyarrow as pa

from engine import buffers
from engine.arrow import DEAD_LETTER_SCHEMA, build_batch, build_rejects
from engine.config import StreamConfig
from engine.schema import Column, CompiledSchema, compile_schema
from kernels import tables as tb
from kernels.errors import (
    BLANK_LINE,
    ERROR_NAMES,
    INVALID_JSON,
    INVALID_UTF8,
    NO_FIELD,
    NOT_AN_OBJECT,
    OK,
    OUT_OF_RANGE,
    TOO_DEEP,
    TOO_LARGE,
    TRUNCATED,
)
from kernels.framing import count_lines, frame_length_prefixed, frame_lines
from kernels.jsonparse import parse_batch, parse_lines
from kernels.numeric import float32_halfway

_SYNTAX_ERRORS = np.array([INVALID_JSON, NOT_AN_OBJECT, INVALID_UTF8, TOO_DEEP, TOO_LARGE, TRUNCATED])
Bytes = bytes | bytearray | memoryview | np.ndarray


@dataclass
class ParseResult:
    """What one parse call produced: accepted rows, dead letters and the counts."""

    batch: pa.RecordBatch
    rejects: pa.RecordBatch
    blank: int = 0  # blank lines skipped by newline framing (not messages)
    error_counts: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.batch.num_rows

    @property
    def rejected(self) -> int:
        return self.rejects.num_rows

    @property
    def received(self) -> int:
        return self.accepted + self.rejected


@dataclass
class Tally:
    """Running counts over many parse results; ``received`` is derived, so it always equals
    ``accepted + rejected``."""

    accepted: int = 0
    rejected: int = 0
    blank: int = 0
    errors: Counter = field(default_factory=Counter)

    @property
    def received(self) -> int:
        return self.accepted + self.rejected

    def add(self, result: ParseResult) -> None:
        self.accepted += result.accepted
        self.rejected += result.rejected
        self.blank += result.blank
        self.errors.update(result.error_counts)


class _Workspace:
    """Per-message bookkeeping buffers (value states, spans, verdicts) reused across batches.

    They never leave a parse call, so recycling them is safe, and it spares every batch tens
    of megabytes of fresh pages (page faults cost more than the parse of short messages).
    """

    def __init__(self) -> None:
        self._state = np.empty(0, np.uint8)
        self._spans = np.empty(0, np.int64)
        self._errors = np.empty(0, np.int64)

    def views(self, k: int, n_spans: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """C-contiguous (state, spans, errors) views for n messages."""
        if len(self._state) < k * n:
            self._state = np.empty(k * n, np.uint8)
        if len(self._spans) < 3 * n_spans * n:
            self._spans = np.empty(3 * n_spans * n, np.int64)
        if len(self._errors) < tb.ERR_ROWS * n:
            self._errors = np.empty(tb.ERR_ROWS * n, np.int64)
        state = self._state[: k * n].reshape(n, k)  # the kernel clears what it will fill
        spans = self._spans[: 3 * n_spans * n].reshape(n_spans, n, 3)
        errors = self._errors[: tb.ERR_ROWS * n].reshape(tb.ERR_ROWS, n)
        return state, spans, errors


def as_uint8(data: Bytes) -> np.ndarray:
    """A read-only, contiguous uint8 view of bytes-like data: no copy, but of a strided
    uint8 array (copied once to be contiguous).

    Always read-only so the kernels see one array type and compile one signature.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise TypeError("expected a 1-D uint8 array")
        view = np.ascontiguousarray(data).view()
    else:
        try:
            view = np.frombuffer(data, np.uint8)
        except BufferError:
            raise TypeError("expected bytes, a contiguous buffer or a 1-D uint8 array") from None
    view.flags.writeable = False
    return view


def _threads_chunks(n: int) -> int:
    return max(1, min(n, numba.get_num_threads() * 4))


class Parser:
    """Parses NDJSON (or pre-framed messages) for one stream into Arrow batches.

    Construct once per stream and reuse: the kernels are compiled (or loaded from Numba's
    cache) on first use, and the compiled schema is kept. Safe to call from several
    threads at once.
    """

    def __init__(self, stream: StreamConfig, *, threads: int | None = None) -> None:
        if not isinstance(stream, StreamConfig):
            raise TypeError(
                f"Parser takes one stream's config, such as load_config(...).streams['events']; got {type(stream).__name__}"
            )
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads: expected 1 or more; got {threads}")
            threads = min(threads, numba.config.NUMBA_NUM_THREADS)  # as kernels.threads: all there are
        if stream.limits is None:
            stream = stream.model_copy(update={"limits": _default_limits()})
        self.stream = stream
        self.compiled: CompiledSchema = compile_schema(stream)
        self.threads = threads
        self.max_message_bytes = int(stream.limits.max_message_bytes)
        self._workspaces: list[_Workspace] = []
        self._workspaces_lock = threading.Lock()

    def _take_workspace(self) -> _Workspace:
        with self._workspaces_lock:
            return self._workspaces.pop() if self._workspaces else _Workspace()

    def _give_workspace(self, work: _Workspace) -> None:
        with self._workspaces_lock:
            self._workspaces.append(work)

    def warm(self) -> None:
        """Load (or, on a cold cache, compile) every kernel a batch can need, so that the
        first real batch is not the one that pays for it."""
        from engine.sample import sample_ndjson

        sample = sample_ndjson(self.stream, 8, broken_every=2)
        self.parse_ndjson(sample)
        # the service frames arenas apart from parsing them: newline and length-prefixed runs
        frame_lines(as_uint8(sample), 0, len(sample), True, 1, self.max_message_bytes)
        self.parse_length_prefixed(len(sample).to_bytes(4, "big") + sample)
        # size (and touch) the reused bookkeeping for a full batch now, for the same reason
        # arenas are touched: memory that grows only when a burst first needs it looks
        # like a leak in a long run
        work = self._take_workspace()
        try:
            c = self.compiled
            for view in work.views(len(c.columns), c.n_spans, self.stream.batch.max_messages):
                view.fill(0)
        finally:
            self._give_workspace(work)

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema of accepted batches."""
        return self.compiled.arrow_schema

    @property
    def rejects_schema(self) -> pa.Schema:
        """Arrow schema of dead-letter batches."""
        return DEAD_LETTER_SCHEMA

    def parse_ndjson(self, data: Bytes) -> ParseResult:
        """Parse newline-delimited JSON (LF or CRLF; blank lines skipped and counted)."""
        buf = as_uint8(data)
        self._use_threads()
        parsed = self.parse_lines_of(buf)
        assert parsed is not None
        return parsed[0]

    def parse_lines_of(
        self, buf: np.ndarray, *, base: int = 0, first_index: int = 0, max_messages: int | None = None
    ) -> tuple[ParseResult, np.ndarray] | None:
        """Internal (arenas): parse_ndjson of a read-only uint8 ``buf`` on the calling
        thread's Numba threads, framing as it parses, with dead-letter offsets and indices
        from ``base`` and ``first_index``. Returns the result and each message's start, or
        None, having parsed nothing, when ``buf`` holds more than ``max_messages`` lines."""
        nchunks = _threads_chunks(max(1, len(buf) >> 16))
        counts, before, last = count_lines(buf, 0, len(buf), nchunks)
        tail = last + 1 if last + 1 < len(buf) else -1
        n = int(counts[-1]) + (tail >= 0)
        if max_messages is not None and n > max_messages:
            return None
        starts = buffers.empty(n, np.int64)
        ends = buffers.empty(n, np.int64)
        work = self._take_workspace()
        try:
            cols = self._allocate(n, work)
            blank = parse_lines(
                buf,
                counts,
                before,
                tail,
                self.max_message_bytes,
                self.compiled.tables,
                cols,
                starts,
                ends,
                nchunks,
            )
            if blank:  # rare: drop the blank lines' rows before anything counts them
                lines = np.flatnonzero(cols.errors[tb.ERR_CODE] != BLANK_LINE)
                starts, ends = starts[lines], ends[lines]
                cols = tb.BatchColumns(  # np.take copies are C-contiguous, as the kernels want
                    state=np.take(cols.state, lines, axis=0),
                    ints=np.take(cols.ints, lines, axis=1),
                    floats=np.take(cols.floats, lines, axis=1),
                    spans=np.take(cols.spans, lines, axis=1),
                    errors=np.take(cols.errors, lines, axis=1),
                )
            return self._result(buf, starts, ends, cols, int(blank), base, first_index), starts
        finally:
            self._give_workspace(work)

    def parse_length_prefixed(self, data: Bytes) -> ParseResult:
        """Parse u32 big-endian length-prefixed messages; a last frame cut short is one
        message, rejected as ``truncated`` (its raw bytes start with its header)."""
        buf = as_uint8(data)
        self._use_threads()
        starts, ends, consumed = frame_length_prefixed(buf, 0, len(buf))
        if consumed == len(buf):
            return self.parse_spans(buf, starts, ends)
        starts = np.append(starts, consumed)
        ends = np.append(ends, len(buf))
        return self.parse_spans(buf, starts, ends, truncated=np.array([len(starts) - 1]))

    def parse_messages(self, messages: Sequence[bytes]) -> ParseResult:
        """Parse pre-framed messages; each is one JSON object and may contain newlines.

        Each is any bytes-like object; its bytes are the message, whatever its item size
        (``len`` of an ``array('I')`` or a cast memoryview counts items, not bytes)."""
        if set(map(type, messages)) <= {bytes, bytearray}:
            lengths = np.fromiter(map(len, messages), np.int64, len(messages))
        else:
            lengths = np.fromiter((memoryview(m).nbytes for m in messages), np.int64, len(messages))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        buf = np.frombuffer(b"".join(messages), np.uint8)
        self._use_threads()
        return self.parse_spans(buf, starts, ends)

    def parse_spans(
        self,
        buf: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        *,
        blank: int = 0,
        base: int = 0,
        first_index: int = 0,
        truncated: np.ndarray | None = None,
    ) -> ParseResult:
        """Parse messages buf[starts[i]:ends[i]]: the entry point for arenas and listeners.
        Messages whose index is in ``truncated`` are frames their producer ended early:
        rejected as such, whatever their bytes."""
        buf = as_uint8(buf)
        starts = np.ascontiguousarray(starts, np.int64)
        ends = np.ascontiguousarray(ends, np.int64)
        work = self._take_workspace()
        try:
            return self._parse_spans(buf, starts, ends, blank, base, first_index, work, truncated)
        finally:
            self._give_workspace(work)

    def _parse_spans(
        self,
        buf: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        blank: int,
        base: int,
        first_index: int,
        work: _Workspace,
        truncated: np.ndarray | None = None,
    ) -> ParseResult:
        cols = self._allocate(len(starts), work)
        parse_batch(buf, starts, ends, self.max_message_bytes, self.compiled.tables, cols, _threads_chunks(len(starts)))
        if truncated is not None and len(truncated):
            starts = self._cut_short(buf, starts, ends, truncated, cols)
        return self._result(buf, starts, ends, cols, blank, base, first_index)

    def _result(
        self,
        buf: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        cols: tb.BatchColumns,
        blank: int,
        base: int,
        first_index: int,
    ) -> ParseResult:
        """The accepted batch and the dead letters of parsed messages."""
        self._exact_float_fallback(buf, starts, cols)
        codes = cols.errors[tb.ERR_CODE]
        rejected = np.flatnonzero(codes)
        n = len(starts)
        rows = None if len(rejected) == 0 else np.flatnonzero(codes == OK)
        batch = build_batch(self.compiled, cols, buf, rows, n - len(rejected))
        rejects = build_rejects(
            self.compiled, cols, buf, starts, ends, rejected, base, first_index, self.max_message_bytes
        )
        counts = np.bincount(codes[rejected], minlength=len(ERROR_NAMES))
        error_counts = {ERROR_NAMES[k]: int(c) for k, c in enumerate(counts) if c}
        return ParseResult(batch, rejects, blank, error_counts)

    def _cut_short(
        self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, truncated: np.ndarray, cols: tb.BatchColumns
    ) -> np.ndarray:
        """The verdicts of frames whose producer stopped early (each span begins at the
        frame's own header): ``truncated`` at the point where it stopped, unless the header
        declared more than ``max_message_bytes``, which makes it ``too_large`` wherever it
        stopped, reported from its body as any too_large frame is. Returns the spans'
        starts, moved past the header for those."""
        errors = cols.errors
        moved = starts
        for i in truncated.tolist():
            s, e = int(starts[i]), int(ends[i])
            declared = int.from_bytes(buf[s : s + 4].tobytes(), "big") if e - s >= 4 else 0
            errors[tb.ERR_FIELD, i] = NO_FIELD
            if declared > self.max_message_bytes:
                if moved is starts:
                    moved = starts.copy()
                moved[i] = s + 4
                errors[tb.ERR_CODE, i] = TOO_LARGE
                errors[tb.ERR_POS, i] = 0
            else:
                errors[tb.ERR_CODE, i] = TRUNCATED
                errors[tb.ERR_POS, i] = e - s
        return moved

    def _use_threads(self) -> None:
        if self.threads is not None:
            numba.set_num_threads(self.threads)

    def _allocate(self, n: int, work: _Workspace | None = None) -> tb.BatchColumns:
        """Output buffers for n messages. Value columns are new (Arrow may keep them without
        copying); per-message bookkeeping comes from a reused workspace when one is given."""
        c = self.compiled
        k = len(c.columns)
        if work is None:
            work = _Workspace()
        state, spans, errors = work.views(k, c.n_spans, n)
        return tb.BatchColumns(
            state=state,
            ints=buffers.empty((c.n_ints, n), np.int64),  # zeroed by the kernel, in parallel
            floats=buffers.empty((c.n_floats, n), np.float64),
            spans=spans,
            errors=errors,
        )

    def _exact_float_fallback(self, buf: np.ndarray, starts: np.ndarray, cols: tb.BatchColumns) -> None:
        """Resolve the floats the kernel declined (subnormals, halfway cases) with float().

        These are rare by construction (Eisel-Lemire settles all but a sliver of inputs), so
        this loop runs over a handful of values per batch, not over messages.
        """
        for col in self.compiled.float_columns:
            state = cols.state[:, col.index]
            if state.max(initial=0) == tb.STATE_FLOAT_FALLBACK:  # the largest state: one pass
                for i in np.flatnonzero(state == tb.STATE_FLOAT_FALLBACK).tolist():
                    self._resolve_float(buf, starts, cols, col, i)

    def _resolve_float(self, buf: np.ndarray, starts: np.ndarray, cols: tb.BatchColumns, col: Column, i: int) -> None:
        """Settle float column ``col`` of message i with float(); out of range is its fault."""
        f = col.index
        a = cols.spans[col.span_slot, i, tb.SPAN_START]
        b = cols.spans[col.span_slot, i, tb.SPAN_END]
        text = bytes(buf[a:b])
        v = float(text)
        kept = _nearest_float32(text, v) if col.kind == tb.KIND_FLOAT32 else v
        bad = kept in (np.inf, -np.inf)
        lo, hi = self.compiled.tables.float_bounds[f]
        if not (bad or not (lo <= v <= hi)):  # min/max judge the number as written
            cols.floats[col.slot, i] = kept
            cols.state[i, f] = tb.STATE_VALUE
            return
        cols.state[i, f] = tb.STATE_ABSENT
        pos = a - starts[i]
        err = cols.errors[:, i]
        if err[tb.ERR_CODE] == OK or (err[tb.ERR_CODE] not in _SYNTAX_ERRORS and err[tb.ERR_POS] > pos):
            err[tb.ERR_CODE] = OUT_OF_RANGE
            err[tb.ERR_POS] = pos
            err[tb.ERR_FIELD] = f


def _nearest_float32(text: bytes, v: float) -> float:
    """The float32 nearest the literal ``text`` (whose float64 is ``v``), ties to even;
    infinite past float32's range.

    Only a float64 exactly halfway between two float32s can round wrongly through float64
    (see float32_halfway); there the exact decimal says which side the literal is on.
    """
    with np.errstate(over="ignore"):
        f = np.float32(v)
    if not float32_halfway(v):
        return float(f)
    x = Decimal(text.decode("ascii"))  # exact; compares exactly with a float
    if x == v:
        return float(f)  # a true tie, which numpy rounds to even
    up = x > v
    if (float(f) > v) == up:  # numpy's choice is already on the literal's side
        return float(f)
    return float(np.nextafter(f, np.float32(np.inf if up else -np.inf)))


def _default_limits():
    from engine.config import Limits

    return Limits()
