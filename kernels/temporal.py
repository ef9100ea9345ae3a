"""Dates and timestamps: ``YYYY-MM-DD`` and RFC 3339 date-times to epoch integers.

RFC 3339 as written: a ``T`` (or ``t``, or a space, which the RFC allows) between date and
time, seconds always present, any number of fraction digits, and a mandatory offset
(``Z``/``z`` or ``+HH:MM``/``-HH:MM``); the result is the UTC instant. Fraction digits finer
than the column's unit are truncated toward the earlier instant; a value the column's unit
cannot hold is out of range. Leap seconds (``:60``) are out of range: Arrow timestamps
cannot represent them.
"""

from numba import njit

from kernels.errors import OK, OUT_OF_RANGE, TYPE_MISMATCH

_I64_MAX = 9223372036854775807
_I64_MIN = -9223372036854775807 - 1


@njit(nogil=True, cache=True)
def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(nogil=True, cache=True)
def _days_in_month(y, m):
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@njit(nogil=True, cache=True)
def _digits(x, a, n):
    """Value of n ASCII digits at x[a:], or -1."""
    v = 0
    for k in range(a, a + n):
        c = x[k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(nogil=True, cache=True)
def _date_fields(x, a):
    """(year, month, day) of the ``YYYY-MM-DD`` shape at x[a:a+10], or (-1, -1, -1)."""
    y = _digits(x, a, 4)
    m = _digits(x, a + 5, 2)
    d = _digits(x, a + 8, 2)
    if y < 0 or m < 0 or d < 0 or x[a + 4] != 45 or x[a + 7] != 45:
        return -1, -1, -1
    return y, m, d


@njit(nogil=True, cache=True)
def _valid_date(y, m, d):
    return 1 <= m <= 12 and 1 <= d <= _days_in_month(y, m)


@njit(nogil=True, cache=True)
def parse_date(x, a, b):
    """(days since epoch, code) of the text x[a:b], which must be exactly ``YYYY-MM-DD``."""
    if b - a != 10:
        return 0, TYPE_MISMATCH
    y, m, d = _date_fields(x, a)
    if y < 0:
        return 0, TYPE_MISMATCH
    if not _valid_date(y, m, d):
        return 0, OUT_OF_RANGE
    return days_from_civil(y, m, d), OK


@njit(nogil=True, cache=True)
def parse_rfc3339(x, a, b, unit, frac_digits):
    """(epoch value in ``unit`` ticks per second, code) of the RFC 3339 text x[a:b].

    ``frac_digits`` is log10(unit): how many fraction digits the unit keeps.
    """
    # the shape first (type_mismatch), then the values (out_of_range)
    if b - a < 20:
        return 0, TYPE_MISMATCH
    y, mo, d = _date_fields(x, a)
    if y < 0:
        return 0, TYPE_MISMATCH
    sep = x[a + 10]
    if sep != 84 and sep != 116 and sep != 32:  # T t space
        return 0, TYPE_MISMATCH
    hh = _digits(x, a + 11, 2)
    mi = _digits(x, a + 14, 2)
    ss = _digits(x, a + 17, 2)
    if hh < 0 or mi < 0 or ss < 0 or x[a + 13] != 58 or x[a + 16] != 58:
        return 0, TYPE_MISMATCH
    p = a + 19
    frac = 0
    kept = 0
    if x[p] == 46:  # '.'
        p += 1
        start = p
        while p < b and 48 <= x[p] <= 57:
            if kept < frac_digits:
                frac = frac * 10 + (x[p] - 48)
                kept += 1
            p += 1
        if p == start:
            return 0, TYPE_MISMATCH
    while kept < frac_digits:
        frac *= 10
        kept += 1
    if p >= b:
        return 0, TYPE_MISMATCH
    offset = 0
    oh = 0
    om = 0
    z = x[p]
    if z == 90 or z == 122:  # Z z
        p += 1
    elif z == 43 or z == 45:  # + -
        if b - p != 6 or x[p + 3] != 58:
            return 0, TYPE_MISMATCH
        oh = _digits(x, p + 1, 2)
        om = _digits(x, p + 4, 2)
        if oh < 0 or om < 0:
            return 0, TYPE_MISMATCH
        offset = oh * 3600 + om * 60
        if z == 45:
            offset = -offset
        p += 6
    else:
        return 0, TYPE_MISMATCH
    if p != b:
        return 0, TYPE_MISMATCH
    if not _valid_date(y, mo, d) or hh > 23 or mi > 59 or ss > 59 or oh > 23 or om > 59:
        return 0, OUT_OF_RANGE
    days = days_from_civil(y, mo, d)
    secs = days * 86400 + hh * 3600 + mi * 60 + ss - offset
    hi = _I64_MAX // unit
    lo = _I64_MIN // unit
    if secs > hi or (secs == hi and frac > _I64_MAX - hi * unit):
        return 0, OUT_OF_RANGE
    if secs < lo or (secs == lo and frac - unit < _I64_MIN - (lo + 1) * unit):
        return 0, OUT_OF_RANGE
    if secs == lo:
        return (secs + 1) * unit + (frac - unit), OK
    return secs * unit + frac, OK
