"""Field rules: numeric ranges, string lengths, enum membership.

Each check returns an error code (``OK`` when the value passes). The bounds already fold
in the column type's own range (int8 is [-128, 127] before any ``min``/``max``), so one
comparison pair enforces both.
"""

from numba import njit

from kernels.errors import NOT_IN_ENUM, OK, OUT_OF_RANGE, TOO_LONG, TOO_SHORT
from kernels.strings import bytes_equal


@njit(nogil=True, cache=True, inline="always")
def check_range(v, lo, hi):
    """OUT_OF_RANGE unless lo <= v <= hi (a NaN bound never occurs: config rejects it)."""
    if v < lo or v > hi:
        return OUT_OF_RANGE
    return OK


@njit(nogil=True, cache=True, inline="always")
def check_length(n, lo, hi):
    """TOO_SHORT / TOO_LONG for a length n outside [lo, hi]."""
    if n < lo:
        return TOO_SHORT
    if n > hi:
        return TOO_LONG
    return OK


@njit(nogil=True, cache=True, inline="always")
def enum_index(x, a, b, text, lists, first, last):
    """Index (from 0) of x[a:b] among enum strings first..last-1 (spans in lists), or -1."""
    for k in range(first, last):
        if bytes_equal(x, a, b, text, lists[2 * k], lists[2 * k + 1]):
            return k - first
    return -1


@njit(nogil=True, cache=True, inline="always")
def check_int_enum(v, lists, first, last):
    """NOT_IN_ENUM unless v is one of lists[first:last] (an empty list allows all)."""
    if first == last:
        return OK
    for k in range(first, last):
        if lists[k] == v:
            return OK
    return NOT_IN_ENUM
