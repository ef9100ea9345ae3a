"""Gathering variable-length values into Arrow offsets + data buffers, in parallel.

The parse kernel leaves, per string-like value, a span of the input and its output length;
the engine turns the lengths of the rows it keeps into offsets (a prefix sum), and these
kernels copy each value to its offset: raw bytes, decoded JSON string content, or decoded
base64. Rows are split into chunks so each worker allocates its scratch once.
"""

import numpy as np
from numba import njit, prange

from kernels.bits import load_u64, store_u64, unowned
from kernels.strings import base64_decode, unescape

COPY_RAW = 0  # bytes as they are (json text, dead-letter raw messages)
COPY_STRING = 1  # JSON string content: decode escapes where there are any
COPY_BASE64 = 2  # JSON string content holding base64 text: decode it


@njit(nogil=True, cache=True)
def _gather_rows(buf, span_start, span_end, rows, offsets, out, mode, lo, hi):
    """gather() for rows lo..hi-1; returns nothing, writes out."""
    if mode == COPY_BASE64:
        longest = 0
        for j in range(lo, hi):
            if offsets[j + 1] > offsets[j]:  # spans of empty rows are not meaningful
                longest = max(longest, span_end[rows[j]] - span_start[rows[j]])
        scratch = np.empty(longest + 8, np.uint8)
        for j in range(lo, hi):
            if offsets[j + 1] > offsets[j]:
                i = rows[j]
                a = span_start[i]
                b = span_end[i]
                escaped = False
                for k in range(a, b):
                    if buf[k] == 92:
                        escaped = True
                        break
                if escaped:
                    t = unescape(buf, a, b, scratch, 0)
                    base64_decode(scratch, 0, t, out, offsets[j])
                else:
                    base64_decode(buf, a, b, out, offsets[j])
        return
    for j in range(lo, hi):
        o = offsets[j]
        length = offsets[j + 1] - o
        if length > 0:
            i = rows[j]
            a = span_start[i]
            if mode == COPY_RAW or span_end[i] - a == length:
                # 8 bytes per step, then the tail (slicing would build array views per row)
                k = 0
                while k + 8 <= length:
                    store_u64(out, o + k, load_u64(buf, a + k))
                    k += 8
                while k < length:
                    out[o + k] = buf[a + k]
                    k += 1
            else:
                unescape(buf, a, span_end[i], out, o)


@njit(nogil=True, parallel=True, cache=True)
def gather(buf, span_start, span_end, rows, offsets, out, mode, nchunks):
    """Write the value of each row rows[j] (span span_start[i]:span_end[i] of buf) to
    out[offsets[j]:offsets[j+1]]; rows whose output length is zero are skipped."""
    m = rows.shape[0]
    buf = unowned(buf)
    out = unowned(out)
    span_start = unowned(span_start)
    span_end = unowned(span_end)
    rows = unowned(rows)
    offsets = unowned(offsets)
    for c in prange(nchunks):
        _gather_rows(buf, span_start, span_end, rows, offsets, out, mode, c * m // nchunks, (c + 1) * m // nchunks)


@njit(nogil=True, parallel=True, cache=True)
def gather_column(buf, state, span_start, span_end, span_len, rows, all_rows, mode, nchunks):
    """One string-like column in one call: (offsets, data) of the values of rows[j] (of
    every message when ``all_rows``), where ``state`` is 2 (a value); other rows are empty.

    Lengths, their prefix sum, the data buffer and the copy are one kernel call instead of
    half a dozen array operations, each with its own fixed cost per batch.
    """
    m = state.shape[0] if all_rows else rows.shape[0]
    offsets = np.empty(m + 1, np.int64)
    offsets[0] = 0
    total = 0
    for j in range(m):
        i = j if all_rows else rows[j]
        if state[i] == 2:  # tables.STATE_VALUE
            total += span_len[i]
        offsets[j + 1] = total
    data = np.empty(total, np.uint8)
    which_owned = np.arange(m) if all_rows else rows
    which = unowned(which_owned)
    out = unowned(data)
    at = unowned(offsets)
    source = unowned(buf)
    first = unowned(span_start)
    last = unowned(span_end)
    for c in prange(nchunks):
        _gather_rows(source, first, last, which, at, out, mode, c * m // nchunks, (c + 1) * m // nchunks)
    which_owned[0:0] = 0  # keep it alive (and owned) until its unowned view is done with
    return offsets, data
