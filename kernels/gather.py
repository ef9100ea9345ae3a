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
from kernels.tables import SPAN_END, SPAN_LEN, SPAN_START, STATE_VALUE

COPY_RAW = 0  # bytes as they are (json text, dead-letter raw messages)
COPY_STRING = 1  # JSON string content: decode escapes where there are any
COPY_BASE64 = 2  # JSON string content holding base64 text: decode it
INT32_MAX = (1 << 31) - 1  # the largest Arrow string offset
COLUMN_TOO_LARGE = "a string column of this batch exceeds 2 GiB: use smaller batches"


@njit(nogil=True, cache=True, inline="always")
def _copy_value(buf, a, b, out, o, length, mode, scratch):
    """Write the value buf[a:b] (``length`` bytes once copied or decoded) to out[o:]."""
    if mode == COPY_BASE64:
        escaped = False
        for k in range(a, b):
            if buf[k] == 92:
                escaped = True
                break
        if escaped:
            t = unescape(buf, a, b, scratch, 0)
            base64_decode(scratch, 0, t, out, o)
        else:
            base64_decode(buf, a, b, out, o)
    elif mode == COPY_RAW or b - a == length:
        # 8 bytes per step (slicing would build array views per row); a value of 8 bytes
        # or more ends with one word that overlaps the last step instead of a byte loop
        if length >= 8:
            k = 0
            while k + 8 < length:
                store_u64(out, o + k, load_u64(buf, a + k))
                k += 8
            store_u64(out, o + length - 8, load_u64(buf, a + length - 8))
        else:
            for k in range(length):
                out[o + k] = buf[a + k]
    else:
        unescape(buf, a, b, out, o)


@njit(nogil=True, cache=True, inline="always")
def _copy_words(buf, a, out, o, length):
    """Copy buf[a:a+length] to out[o:] in whole 32-byte steps, so past the value's end by up
    to 31 bytes: the caller makes sure both arrays have room, and that whatever is written
    past the end belongs to a value it writes later (a fixed step count mispredicts less
    than a byte- or word-exact loop: most values take one or two steps)."""
    k = 0
    while k < length:
        store_u64(out, o + k, load_u64(buf, a + k))
        store_u64(out, o + k + 8, load_u64(buf, a + k + 8))
        store_u64(out, o + k + 16, load_u64(buf, a + k + 16))
        store_u64(out, o + k + 24, load_u64(buf, a + k + 24))
        k += 32


@njit(nogil=True, cache=True, inline="always")
def _longest_span(span_start, span_end, rows, all_rows, offsets, lo, hi):
    """The longest input span among rows lo..hi that have a value: a worker's base64 scratch."""
    longest = 0
    for j in range(lo, hi):
        if offsets[j + 1] > offsets[j]:  # spans of empty rows are not meaningful
            i = j if all_rows else rows[j]
            longest = max(longest, span_end[i] - span_start[i])
    return longest


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
        lo = c * m // nchunks
        hi = (c + 1) * m // nchunks
        longest = 0
        if mode == COPY_BASE64:
            longest = _longest_span(span_start, span_end, rows, False, offsets, lo, hi)
        scratch = np.empty(longest + 8, np.uint8)
        for j in range(lo, hi):
            o = offsets[j]
            length = offsets[j + 1] - o
            if length > 0:
                i = rows[j]
                _copy_value(buf, span_start[i], span_end[i], out, o, length, mode, scratch)


def gather_columns(buf, state, spans, fields, slots, modes, rows, all_rows, nchunks, allocate=np.empty):
    """Every string-like column of a batch in one call: (offsets, data, bases).

    Column c holds field ``fields[c]`` whose spans are in slot ``slots[c]`` of ``spans``
    (SPAN_START, SPAN_END, SPAN_LEN), copied by ``modes[c]``. Its values for rows[j] (every
    message when ``all_rows``) are data[bases[c] + offsets[c, j] : bases[c] + offsets[c, j + 1]];
    rows without a value (state other than 2) are empty. Offsets are Arrow's int32, counted
    from each column's base; a column of 2 GiB or more raises OverflowError.

    ``allocate(shape, dtype)`` makes the offsets and data, which become Arrow buffers (the
    engine passes its pool allocator, engine.buffers.empty).
    """
    k = fields.shape[0]
    m = state.shape[0] if all_rows else rows.shape[0]
    offsets = allocate((k, m + 1), np.int32)
    bases = np.zeros(k + 1, np.int64)
    _column_sizes(state, spans, fields, slots, rows, all_rows, offsets, bases)
    if k and np.diff(bases).max() > INT32_MAX:
        raise OverflowError(COLUMN_TOO_LARGE)
    data = allocate(int(bases[k]), np.uint8)
    if m:
        _gather_columns(buf, spans, slots, modes, rows, all_rows, offsets, bases, data, nchunks)
    return offsets, data, bases


@njit(nogil=True, cache=True)
def _column_sizes(state, spans, fields, slots, rows, all_rows, offsets, bases):
    """Offsets of each column's values (from 0) and each column's base in the data.

    A column past 2 GiB wraps its int32 offsets; its base (int64) tells the caller."""
    k = fields.shape[0]
    m = offsets.shape[1] - 1
    for c in range(k):
        f = fields[c]
        s = slots[c]
        total = 0
        offsets[c, 0] = 0
        for j in range(m):
            i = j if all_rows else rows[j]
            if state[i, f] == STATE_VALUE:
                total += spans[s, i, SPAN_LEN]
            offsets[c, j + 1] = total
        bases[c + 1] = bases[c] + total


@njit(nogil=True, parallel=True, cache=True)
def _gather_columns(buf, spans, slots, modes, rows, all_rows, offsets, bases, data, nchunks):
    """Copy every value to its place (see gather_columns), one pass over the messages.

    One pass copies all of a message's values while its bytes are in cache: on a batch
    larger than the cache, a pass per column missed once per value.
    """
    k = slots.shape[0]
    m = offsets.shape[1] - 1
    out = unowned(data)
    at = unowned(offsets)
    source = unowned(buf)
    span = unowned(spans)
    for chunk in prange(nchunks):
        lo = chunk * m // nchunks
        hi = (chunk + 1) * m // nchunks
        longest = 0
        for c in range(k):
            if modes[c] == COPY_BASE64:
                s = slots[c]
                longest = max(
                    longest, _longest_span(span[s, :, SPAN_START], span[s, :, SPAN_END], rows, all_rows, at[c], lo, hi)
                )
        scratch = np.empty(longest + 8, np.uint8)
        n_source = source.shape[0]
        for j in range(lo, hi):
            i = j if all_rows else rows[j]
            for c in range(k):
                o = at[c, j]
                length = at[c, j + 1] - o
                if length > 0:
                    s = slots[c]
                    a = span[s, i, SPAN_START]
                    b = span[s, i, SPAN_END]
                    # a plain copy may run past the value into the next row's place in this
                    # column, which this worker fills next; never past its last row's end
                    reach = (length + 31) & ~31
                    if (
                        (modes[c] == COPY_RAW or (modes[c] == COPY_STRING and b - a == length))
                        and o + reach <= at[c, hi]
                        and a + reach <= n_source
                    ):
                        _copy_words(source, a, out, bases[c] + o, length)
                    else:
                        _copy_value(source, a, b, out, bases[c] + o, length, modes[c], scratch)
