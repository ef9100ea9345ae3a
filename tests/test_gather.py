"""gather_columns: every string-like column of a batch laid out as Arrow offsets + data in
one call, against a naive reference built from Python slices, ``json.loads`` and base64."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import tables as tb
from kernels.gather import COPY_BASE64, COPY_RAW, COPY_STRING, gather_columns

STATES = st.sampled_from([tb.STATE_VALUE, tb.STATE_NULL, tb.STATE_ABSENT])
#: a column: its copy mode and, per message, its text (for base64: the bytes) and state
columns = st.one_of(
    st.tuples(st.sampled_from([COPY_RAW, COPY_STRING]), st.lists(st.tuples(st.text(max_size=40), STATES), max_size=20)),
    st.tuples(st.just(COPY_BASE64), st.lists(st.tuples(st.binary(max_size=12), STATES), max_size=20)),
)


def _literal(mode: int, value: str | bytes, escape_slash: bool) -> bytes:
    """The JSON string literal of a value; base64 text may write '/' as the escape '\\/'."""
    if mode != COPY_BASE64:
        return json.dumps(value).encode()  # escapes non-ASCII and controls: \\uXXXX
    text = base64.b64encode(value).decode()
    return json.dumps(text).replace("/", "\\/" if escape_slash else "/").encode()


def _expected(mode: int, literal: bytes) -> bytes:
    if mode == COPY_RAW:
        return literal[1:-1]
    text = json.loads(literal)
    return base64.b64decode(text) if mode == COPY_BASE64 else text.encode("utf-8", "surrogatepass")


def _layout(cols: list[tuple[int, list]], n: int, escape_slash: bool):
    """One buffer holding every column's literals, message by message, with the state,
    spans and expected values the parse kernel would have left for them."""
    k = len(cols)
    buf = b""
    state = np.zeros((n, k + 1), np.int8)  # one more field than columns: fields are not slots
    spans = np.zeros((k, n, 3), np.int64)
    expected = [[b""] * n for _ in range(k)]
    for i in range(n):
        for c, (mode, items) in enumerate(cols):
            if i >= len(items):
                continue
            value, s = items[i]
            literal = _literal(mode, value, escape_slash)
            out = _expected(mode, literal)
            spans[c, i, tb.SPAN_START] = len(buf) + 1
            spans[c, i, tb.SPAN_END] = len(buf) + len(literal) - 1
            spans[c, i, tb.SPAN_LEN] = len(out)
            state[i, c + 1] = s
            if s == tb.STATE_VALUE:
                expected[c][i] = out
            buf += literal + b","
    return np.frombuffer(buf, np.uint8), state, spans, expected


@settings(max_examples=200, deadline=None)
@given(
    cols=st.lists(columns, max_size=3),
    keep=st.lists(st.booleans(), max_size=20),
    chunks=st.integers(1, 4),
    escape_slash=st.booleans(),
)
def test_gather_columns_matches_a_naive_reference(cols, keep, chunks, escape_slash):
    n = max((len(items) for _, items in cols), default=0)
    buf, state, spans, expected = _layout(cols, n, escape_slash)
    fields = np.arange(1, len(cols) + 1, dtype=np.int64)
    slots = np.arange(len(cols), dtype=np.int64)
    modes = np.array([mode for mode, _ in cols], np.int64)
    rows = np.array([i for i in range(n) if i < len(keep) and keep[i]], np.int64)
    for all_rows, which in ((True, list(range(n))), (False, rows.tolist())):
        offsets, data, bases = gather_columns(buf, state, spans, fields, slots, modes, rows, all_rows, chunks)
        for c in range(len(cols)):
            values = [expected[c][i] for i in which]
            assert offsets[c].tolist() == [0, *np.cumsum([len(v) for v in values], dtype=np.int64).tolist()]
            assert bytes(data[bases[c] : bases[c + 1]]) == b"".join(values)
        assert bases[-1] == len(data)


def test_a_column_of_2_gib_or_more_is_refused_before_its_data_is_allocated():
    """Arrow string offsets are int32: lengths adding past 2**31 - 1 must raise, not wrap."""
    state = np.full((3, 1), tb.STATE_VALUE, np.int8)
    spans = np.zeros((1, 3, 3), np.int64)
    spans[0, :, tb.SPAN_LEN] = [1 << 30, 1 << 30, 1]  # 2 GiB + 1 byte of (imaginary) values
    asked = []

    def allocate(shape, dtype):
        asked.append(shape)
        return np.empty(shape, dtype)

    one = np.zeros(1, np.int64)
    modes = np.array([COPY_RAW], np.int64)
    with pytest.raises(OverflowError, match="2 GiB"):
        gather_columns(np.zeros(0, np.uint8), state, spans, one, one, modes, one, True, 1, allocate)
    assert asked == [(1, 4)]  # the offsets only
    spans[0, 2, tb.SPAN_LEN] = 0  # exactly 2 GiB: its last offset is one past int32
    with pytest.raises(OverflowError):
        gather_columns(np.zeros(0, np.uint8), state, spans, one, one, modes, one, True, 1, allocate)
