"""Message framing: newline-delimited and 4-byte big-endian length-prefixed.

Newline framing finds every LF in parallel, trims one CR before it (CRLF producers), and
skips lines that hold only JSON whitespace, counting them. A line without its LF at the
end of the input is a message only when the input is ``final``; otherwise it is the tail a
stream carries over to its next read.
"""

import numpy as np
from numba import njit, prange

from kernels.bits import load_u64, popcount, trailing_zeros

_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)


@njit(nogil=True, cache=True)
def _count_newlines(buf, lo, hi):
    """Number of LF bytes in buf[lo:hi], 8 bytes per step (SWAR: a plain loop does not
    vectorise under Numba and runs 3x slower)."""
    k = 0
    p = lo
    while p + 8 <= hi:
        x = load_u64(buf, p) ^ _NEWLINES
        k += np.int64(popcount(~(((x & _LOW7) + _LOW7) | x) & _HIGHS))  # exactly the LF bytes
        p += 8
    while p < hi:
        if buf[p] == 10:
            k += 1
        p += 1
    return k


@njit(nogil=True, cache=True)
def _last_newline(buf, lo, hi):
    """Position of the last LF in buf[lo:hi], or -1; searched backwards."""
    p = hi - 1
    while p >= lo:
        if buf[p] == 10:
            return p
        p -= 1
    return -1


@njit(nogil=True, cache=True)
def _is_blank(buf, s, e):
    for p in range(s, e):
        c = buf[p]
        if c != 32 and c != 9 and c != 13:
            return False
    return True


@njit(nogil=True, parallel=True, cache=True)
def count_lines(buf, start, end, nchunks):
    """The first pass of newline framing, over nchunks equal byte chunks of buf[start:end]:
    (counts, before, last).

    Chunk c holds the LFs counts[c]..counts[c+1]-1 (counts is a prefix sum), and its first
    line starts after before[c], the last LF before the chunk (start - 1 when none); last
    is the position of the last LF of all (start - 1 when none). A line belongs to the
    chunk holding its LF, wherever it starts.
    """
    n = end - start
    counts = np.zeros(nchunks + 1, np.int64)
    last = np.empty(nchunks, np.int64)
    for c in prange(nchunks):
        lo = start + c * n // nchunks
        hi = start + (c + 1) * n // nchunks
        counts[c + 1] = _count_newlines(buf, lo, hi)
        last[c] = _last_newline(buf, lo, hi)
    before = np.empty(nchunks, np.int64)
    prev = start - 1
    for c in range(nchunks):
        counts[c + 1] += counts[c]
        before[c] = prev
        if last[c] >= 0:
            prev = last[c]
    return counts, before, prev


@njit(nogil=True, cache=True, inline="always")
def next_newline(buf, p, hi):
    """Position of the first LF in buf[p:hi], or -1; 8 bytes per step."""
    while p + 8 <= hi:
        x = load_u64(buf, p) ^ _NEWLINES
        found = (x - _ONES) & ~x & _HIGHS  # the lowest mark is the first LF (borrows go up)
        if found != np.uint64(0):
            return p + np.int64(trailing_zeros(found) >> np.uint64(3))
        p += 8
    while p < hi:
        if buf[p] == 10:
            return p
        p += 1
    return -1


@njit(nogil=True, cache=True, inline="always")
def trim_line(buf, s, e, max_len):
    """(end, blank) of the line buf[s:e] (its LF excluded): one CR before the LF trimmed;
    blank when it holds only JSON whitespace and is not longer than max_len."""
    if e > s and buf[e - 1] == 13:
        e -= 1
    return e, (s == e or buf[s] != 123) and e - s <= max_len and _is_blank(buf, s, e)  # most start with '{'


@njit(nogil=True, cache=True, inline="always")
def _line(buf, s, e, j, starts, ends, max_len):
    """Record line j = buf[s:e] (its LF excluded); return 1 if it is blank (then marked
    with end -1), else 0."""
    e, blank = trim_line(buf, s, e, max_len)
    starts[j] = s
    ends[j] = -1 if blank else e
    return 1 if blank else 0


@njit(nogil=True, parallel=True, cache=True)
def frame_lines(buf, start, end, final, nchunks, max_len):
    """Split buf[start:end] into lines: (starts, ends, blank_lines, consumed).

    ``consumed`` is where the unframed tail begins (``end`` when ``final``). A line longer
    than ``max_len`` is always a message (rejected later as too large), even when blank:
    whether a long run of blanks counts must not depend on where reads happened to split.

    Two passes over the bytes, each parallel over byte chunks: count each chunk's LFs (and
    find its last one), then write each line's span where the counts say it goes.
    """
    n = end - start
    counts, before, prev = count_lines(buf, start, end, nchunks)
    nlines = counts[nchunks]
    tail = final and end > prev + 1
    total = nlines + (1 if tail else 0)
    starts = np.empty(total, np.int64)
    ends = np.empty(total, np.int64)
    blank = np.zeros(nchunks + 1, np.int64)
    for c in prange(nchunks):
        lo = start + c * n // nchunks
        hi = start + (c + 1) * n // nchunks
        j = counts[c]
        s = before[c] + 1
        nb = 0
        e = next_newline(buf, lo, hi)
        while e >= 0:
            nb += _line(buf, s, e, j, starts, ends, max_len)
            j += 1
            s = e + 1
            e = next_newline(buf, s, hi)
        blank[c] = nb
    if tail:
        blank[nchunks] = _line(buf, prev + 1, end, nlines, starts, ends, max_len)
    nblank = blank.sum()
    consumed = end if final else prev + 1
    if nblank == 0:
        return starts, ends, 0, consumed
    keep_starts = np.empty(total - nblank, np.int64)
    keep_ends = np.empty(total - nblank, np.int64)
    k = 0
    for j in range(total):
        if ends[j] >= 0:
            keep_starts[k] = starts[j]
            keep_ends[k] = ends[j]
            k += 1
    return keep_starts, keep_ends, nblank, consumed


@njit(nogil=True, cache=True)
def frame_length_prefixed(buf, start, end):
    """Split buf[start:end] into u32 big-endian length-prefixed frames:
    (starts, ends, consumed). ``consumed`` is where an incomplete last frame begins."""
    n = 0
    p = start
    while p + 4 <= end:
        length = (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | buf[p + 3]
        if p + 4 + length > end:
            break
        n += 1
        p += 4 + length
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    p = start
    for k in range(n):
        length = (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | buf[p + 3]
        starts[k] = p + 4
        ends[k] = p + 4 + length
        p += 4 + length
    return starts, ends, p


@njit(nogil=True, cache=True)
def scan_length_prefixed(buf, start, end, max_len):
    """Count the whole frames at the front of buf[start:end] whose body is at most
    ``max_len`` bytes: (stop, count). ``stop`` is where a partial frame or the header of
    an oversize one begins. Serial and allocation-free: connections call it once per read
    to find how much of the read can move into an arena."""
    n = 0
    p = start
    while p + 4 <= end:
        length = (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | buf[p + 3]
        if length > max_len or p + 4 + length > end:
            break
        n += 1
        p += 4 + length
    return p, n


@njit(nogil=True, cache=True)
def scan_lines(buf, start, end, skip_first):
    """What a newline framer needs of one read, in one call: (first, last, count).

    ``first``: the position after the first LF when ``skip_first`` (the rest of an oversize
    line is being dropped; -1 when there is none), else ``start``; ``count``: the LFs in buf[first:end]; ``last``:
    the position of the last of them (-1 when ``count`` is 0). The last LF is searched
    backwards, so only the count walks the whole read.
    """
    first = start
    if skip_first:
        first = -1
        for p in range(start, end):
            if buf[p] == 10:
                first = p + 1
                break
        if first < 0:
            return -1, -1, 0
    last = _last_newline(buf, first, end)
    if last < 0:
        return first, -1, 0
    return first, last, _count_newlines(buf, first, last + 1)
