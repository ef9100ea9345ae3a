"""gather_column: one string-like column laid out as Arrow offsets + data, against a naive
reference built from Python slices and ``json.loads``."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import tables as tb
from kernels.gather import COPY_RAW, COPY_STRING, gather_column

values = st.lists(
    st.tuples(st.text(max_size=12), st.sampled_from([tb.STATE_VALUE, tb.STATE_NULL, tb.STATE_ABSENT])), max_size=25
)


def _layout(items: list[tuple[str, int]]):
    """A buffer of JSON string literals and each one's content span and decoded length."""
    buf, start, end, length, state = b"", [], [], [], []
    for text, s in items:
        literal = json.dumps(text).encode()  # escapes non-ASCII and controls: \\uXXXX
        start.append(len(buf) + 1)
        end.append(len(buf) + len(literal) - 1)
        length.append(len(text.encode("utf-8", "surrogatepass")))
        state.append(s)
        buf += literal + b","
    arrays = [np.array(x, np.int64) for x in (start, end, length)]
    return np.frombuffer(buf, np.uint8), np.array(state, np.int8), *arrays


@settings(max_examples=200, deadline=None)
@given(items=values, keep=st.lists(st.booleans(), max_size=25), chunks=st.integers(1, 4))
def test_gather_column_matches_a_naive_reference(items, keep, chunks):
    buf, state, start, end, length = _layout(items)
    n = len(items)
    rows = np.array([i for i in range(n) if i < len(keep) and keep[i]], np.int64)
    for all_rows, which in ((True, range(n)), (False, rows.tolist())):
        for mode in (COPY_RAW, COPY_STRING):
            offsets, data = gather_column(
                buf, state, start, end, length if mode == COPY_STRING else end - start, rows, all_rows, mode, chunks
            )
            expected = []
            for i in which:
                if state[i] != tb.STATE_VALUE:
                    expected.append(b"")
                elif mode == COPY_RAW:
                    expected.append(bytes(buf[start[i] : end[i]]))
                else:
                    expected.append(json.loads(bytes(buf[start[i] - 1 : end[i] + 1])).encode("utf-8", "surrogatepass"))
            assert offsets.tolist() == [0, *np.cumsum([len(e) for e in expected], dtype=np.int64).tolist()]
            assert bytes(data) == b"".join(expected)
