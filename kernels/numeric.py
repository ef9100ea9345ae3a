"""JSON numbers: the RFC 8259 number grammar, exact int64/uint64 conversion, correctly
rounded float64 conversion.

Integers never wrap: a literal outside int64 (or uint64) is reported as an overflow.
Floats use Clinger's exact fast path, then the Eisel-Lemire algorithm (a port of Go's
strconv.eiselLemire64, which gives the correctly rounded result or says it cannot); the
rare literals it declines (subnormals, exact halfway ambiguities) are marked for an exact
fallback that the engine runs with Python's own ``float()``, so every accepted value is
bit-identical to ``float(text)``.
"""

import math

import numpy as np
from numba import njit

from kernels.bits import float64_from_bits, leading_zeros, load_u64, trailing_zeros
from kernels.errors import INT_OVERFLOW, INVALID_JSON, OK, OUT_OF_RANGE
from kernels.status import ST_CODE, ST_ISINT, ST_POS

# parse_float statuses
FLOAT_EXACT = 0
FLOAT_FALLBACK = 1  # the kernel could not prove the rounding: resolve with float(text)
FLOAT_OVERFLOW = 2  # the literal is beyond float64's range
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # halfway from float32's largest to 2**128: rounds up

_POW10_MIN = -348
_POW10_MAX = 347


def _powers_of_ten_table() -> tuple[np.ndarray, np.ndarray]:
    """128-bit mantissas of 10**q, normalised and rounded down, for q in [-348, 347]."""
    hi = np.empty(_POW10_MAX - _POW10_MIN + 1, np.uint64)
    lo = np.empty_like(hi)
    for q in range(_POW10_MIN, _POW10_MAX + 1):
        if q >= 0:
            v = 10**q
        else:
            d = 10**-q
            v = (1 << (d.bit_length() + 130)) // d
        n = v.bit_length()
        v = v >> (n - 128) if n > 128 else v << (128 - n)
        hi[q - _POW10_MIN] = v >> 64
        lo[q - _POW10_MIN] = v & ((1 << 64) - 1)
    return hi, lo


POW10_HI, POW10_LO = _powers_of_ten_table()
EXACT_POW10 = np.array([10.0**k for k in range(23)], np.float64)

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U3 = np.uint64(3)
_U9 = np.uint64(9)
_U10 = np.uint64(10)
_U32 = np.uint64(32)
_U52 = np.uint64(52)
_U53 = np.uint64(53)
_U63 = np.uint64(63)
_M32 = np.uint64(0xFFFFFFFF)
_M9 = np.uint64(0x1FF)
_EXP_SATURATED = 10**17  # exponent digits beyond this add nothing (and cannot overflow)
_MANT = np.uint64(0x000FFFFFFFFFFFFF)
_SIGN = np.uint64(0x8000000000000000)
_UMAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_UMAX_DIV10 = np.uint64(1844674407370955161)
_TWO53 = np.uint64(1 << 53)
_I64_MAX_DIV10 = 922337203685477580
_I64_MIN = -9223372036854775807 - 1


_DIGIT_HIGH = np.uint64(0xF0F0F0F0F0F0F0F0)
_DIGIT_ZEROS = np.uint64(0x3030303030303030)
_DIGIT_SIXES = np.uint64(0x0606060606060606)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_HIGHS = np.uint64(0x8080808080808080)
_BYTES_0_4 = np.uint64(0x000000FF000000FF)
_MUL_100_1000000 = np.uint64(100 + (1000000 << 32))
_MUL_1_10000 = np.uint64(1 + (10000 << 32))


@njit(nogil=True, cache=True, inline="always")
def _leading_digits(w):
    """How many of the 8 bytes of w, from the lowest, are ASCII digits before the first
    non-digit (8: all). SWAR: a carry can only disturb bytes above the first non-digit."""
    other = ((w & _DIGIT_HIGH) ^ _DIGIT_ZEROS) | (((w + _DIGIT_SIXES) & _DIGIT_HIGH) ^ _DIGIT_ZEROS)
    nonzero = (((other & _LOW7) + _LOW7) | other) & _HIGHS
    if nonzero == _U0:
        return 8
    return np.int64(trailing_zeros(nonzero) >> _U3)


@njit(nogil=True, cache=True, inline="always")
def _eight_digits_value(w):
    """The value of 8 ASCII digits loaded little-endian (the first digit in the lowest byte),
    in three multiplies (the fast_float method)."""
    w = w - _DIGIT_ZEROS
    w = w * _U10 + (w >> np.uint64(8))
    w = ((w & _BYTES_0_4) * _MUL_100_1000000 + ((w >> np.uint64(16)) & _BYTES_0_4) * _MUL_1_10000) >> _U32
    return np.int64(w & _M32)


@njit(nogil=True, cache=True, inline="always")
def _digits_value(buf, a, b):
    """The value of the ASCII digits buf[a:b] (at most 18 of them: no overflow)."""
    acc = 0
    k = a
    while k + 8 <= b:
        acc = acc * 100000000 + _eight_digits_value(load_u64(buf, k))
        k += 8
    while k < b:
        acc = acc * 10 + (buf[k] - 48)
        k += 1
    return acc


@njit(nogil=True, cache=True, inline="always")
def _skip_digits(buf, q, end):
    """The first position at or after q that is not an ASCII digit (or end)."""
    while q + 8 <= end:
        n = _leading_digits(load_u64(buf, q))
        q += n
        if n < 8:
            return q
    while q < end and 48 <= buf[q] <= 57:
        q += 1
    return q


@njit(nogil=True, cache=True, inline="always")
def scan_number(buf, p, end, st):
    """Check the RFC 8259 number grammar at ``p``; return the end of the literal or -1.

    Sets ``st[ST_ISINT]`` to 1 when the literal has neither fraction nor exponent.
    What follows the literal is the caller's business.
    """
    q = p
    if q < end and buf[q] == 45:  # '-'
        q += 1
    if q >= end:
        st[ST_CODE] = INVALID_JSON
        st[ST_POS] = q
        return -1
    c = buf[q]
    if c == 48:  # '0'
        q += 1
        if q < end and 48 <= buf[q] <= 57:  # leading zero
            st[ST_CODE] = INVALID_JSON
            st[ST_POS] = q
            return -1
    elif 49 <= c <= 57:
        q = _skip_digits(buf, q + 1, end)
    else:
        st[ST_CODE] = INVALID_JSON
        st[ST_POS] = q
        return -1
    st[ST_ISINT] = 1
    if q < end and buf[q] == 46:  # '.'
        q += 1
        if q >= end or not (48 <= buf[q] <= 57):
            st[ST_CODE] = INVALID_JSON
            st[ST_POS] = q
            return -1
        q = _skip_digits(buf, q + 1, end)
        st[ST_ISINT] = 0
    if q < end and (buf[q] == 101 or buf[q] == 69):  # 'e' 'E'
        q += 1
        if q < end and (buf[q] == 43 or buf[q] == 45):
            q += 1
        if q >= end or not (48 <= buf[q] <= 57):
            st[ST_CODE] = INVALID_JSON
            st[ST_POS] = q
            return -1
        q = _skip_digits(buf, q + 1, end)
        st[ST_ISINT] = 0
    return q


@njit(nogil=True, cache=True, inline="always")
def parse_int64(buf, a, b):
    """Value of the integer literal buf[a:b] (grammar already checked): (value, OK | INT_OVERFLOW)."""
    neg = buf[a] == 45
    p = a + 1 if neg else a
    nd = b - p
    if nd > 19:
        return 0, INT_OVERFLOW
    if nd < 19:
        acc = _digits_value(buf, p, b)
        return (-acc if neg else acc), OK
    acc = _digits_value(buf, p, b - 1)
    d = buf[b - 1] - 48
    if acc > _I64_MAX_DIV10:
        return 0, INT_OVERFLOW
    if acc == _I64_MAX_DIV10:
        if neg:
            if d > 8:
                return 0, INT_OVERFLOW
            if d == 8:
                return _I64_MIN, OK
        elif d > 7:
            return 0, INT_OVERFLOW
    acc = acc * 10 + d
    return (-acc if neg else acc), OK


@njit(nogil=True, cache=True)
def parse_uint64(buf, a, b):
    """Value of the integer literal buf[a:b] as uint64: (value, OK | OUT_OF_RANGE | INT_OVERFLOW).

    A negative literal other than -0 is out of range for an unsigned field.
    """
    neg = buf[a] == 45
    p = a + 1 if neg else a
    if neg:
        if b - p == 1 and buf[p] == 48:
            return _U0, OK
        return _U0, OUT_OF_RANGE
    nd = b - p
    if nd > 20:
        return _U0, INT_OVERFLOW
    acc = _U0
    for k in range(p, b):
        d = np.uint64(buf[k] - 48)
        if acc > _UMAX_DIV10 or (acc == _UMAX_DIV10 and d > np.uint64(5)):
            return _U0, INT_OVERFLOW
        acc = acc * _U10 + d
    return acc, OK


@njit(nogil=True, cache=True)
def _mul64(a, b):
    """Full 128-bit product of two uint64 values as (high, low)."""
    a_lo = a & _M32
    a_hi = a >> _U32
    b_lo = b & _M32
    b_hi = b >> _U32
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> _U32) + (p1 & _M32) + (p2 & _M32)
    lo = (p0 & _M32) | (mid << _U32)
    hi = p3 + (p1 >> _U32) + (p2 >> _U32) + (mid >> _U32)
    return hi, lo


@njit(nogil=True, cache=True)
def eisel_lemire(man, exp10, neg):
    """Correctly rounded float64 of man * 10**exp10, or (0.0, False) when it cannot be sure.

    ``man`` is a non-zero uint64. Declines subnormal and overflowing results too.
    """
    if exp10 < _POW10_MIN or exp10 > _POW10_MAX:
        return 0.0, False
    clz = leading_zeros(man)
    man = man << clz
    ret_exp2 = ((217706 * exp10) >> 16) + 64 + 1023 - np.int64(clz)
    idx = exp10 - _POW10_MIN
    x_hi, x_lo = _mul64(man, POW10_HI[idx])
    if (x_hi & _M9) == _M9 and (x_lo + man) < man:
        y_hi, y_lo = _mul64(man, POW10_LO[idx])
        merged_hi = x_hi
        merged_lo = x_lo + y_hi
        if merged_lo < x_lo:
            merged_hi += _U1
        if (merged_hi & _M9) == _M9 and merged_lo == _UMAX and (y_lo + man) < man:
            return 0.0, False
        x_hi = merged_hi
        x_lo = merged_lo
    msb = x_hi >> _U63
    ret_m = x_hi >> (msb + _U9)
    ret_exp2 -= np.int64(_U1 ^ msb)
    if x_lo == _U0 and (x_hi & _M9) == _U0 and (ret_m & _U3) == _U1:
        return 0.0, False
    ret_m += ret_m & _U1
    ret_m = ret_m >> _U1
    if (ret_m >> _U53) > _U0:
        ret_m = ret_m >> _U1
        ret_exp2 += 1
    if ret_exp2 <= 0 or ret_exp2 >= 0x7FF:
        return 0.0, False
    bits = (np.uint64(ret_exp2) << _U52) | (ret_m & _MANT)
    if neg:
        bits |= _SIGN
    return float64_from_bits(bits), True


@njit(nogil=True, cache=True)
def parse_float(buf, a, b):
    """Float64 of the number literal buf[a:b] (grammar already checked): (value, status).

    status is FLOAT_EXACT, FLOAT_FALLBACK (value undecided: use float(text)) or FLOAT_OVERFLOW.
    """
    neg = buf[a] == 45
    p = a + 1 if neg else a
    man = _U0
    nd = 0  # significant digits kept in man
    truncated = False
    exp_adj = 0
    while p < b and 48 <= buf[p] <= 57:
        d = buf[p] - 48
        if nd > 0 or d != 0:
            if nd < 19:
                man = man * _U10 + np.uint64(d)
                nd += 1
            else:
                exp_adj += 1
                truncated = truncated or d != 0
        p += 1
    if p < b and buf[p] == 46:
        p += 1
        while p < b and 48 <= buf[p] <= 57:
            d = buf[p] - 48
            if nd > 0 or d != 0:
                if nd < 19:
                    man = man * _U10 + np.uint64(d)
                    nd += 1
                    exp_adj -= 1
                else:
                    truncated = truncated or d != 0
            else:
                exp_adj -= 1
            p += 1
    exp = 0
    if p < b and (buf[p] == 101 or buf[p] == 69):
        p += 1
        eneg = False
        if buf[p] == 45:
            eneg = True
            p += 1
        elif buf[p] == 43:
            p += 1
        while p < b:
            # saturate far beyond any offset the literal's own digits can make up for (one
            # per digit), so a huge exponent stays huge without wrapping int64
            if exp < _EXP_SATURATED:
                exp = exp * 10 + (buf[p] - 48)
            p += 1
        if eneg:
            exp = -exp
    if man == _U0:
        return (-0.0 if neg else 0.0), FLOAT_EXACT
    e10 = exp + exp_adj
    if e10 + nd > 310:  # at least 1e309
        return 0.0, FLOAT_OVERFLOW
    if e10 < -343:  # below half the smallest subnormal: rounds to zero
        return (-0.0 if neg else 0.0), FLOAT_EXACT
    if not truncated and man <= _TWO53 and -22 <= e10 <= 22:
        v = np.float64(man)
        if e10 >= 0:
            v = v * EXACT_POW10[e10]
        else:
            v = v / EXACT_POW10[-e10]
        return (-v if neg else v), FLOAT_EXACT
    v, ok = eisel_lemire(man, e10, neg)
    if not ok:
        return 0.0, FLOAT_FALLBACK
    if truncated:
        v2, ok2 = eisel_lemire(man + _U1, e10, neg)
        if not ok2 or v2 != v:
            return 0.0, FLOAT_FALLBACK
    return v, FLOAT_EXACT


@njit(nogil=True, cache=True)
def float32_halfway(v):
    """Whether float64 ``v`` lies exactly halfway between two adjacent float32 values (or
    between FLT_MAX and 2**128, where rounding overflows).

    Rounding a decimal to float64 and then to float32 is wrong only there: every float32
    midpoint is a float64, so a literal whose float64 is not a midpoint has no midpoint
    between it and its float64, and both roundings agree. At a midpoint the float64 may
    stand for a literal a hair above or below it, which only the exact text can settle.
    """
    a = abs(v)
    if a == 0.0 or a > FLOAT32_OVERFLOW:
        return False
    _, e2 = math.frexp(a)  # a = m * 2**e2 with 0.5 <= m < 1
    e = max(e2 - 1, -126)  # float32's exponent at a (subnormals share -126)
    t = math.ldexp(a, 24 - e)  # a in units of half a float32 ulp: exact (a power of two)
    return t == math.floor(t) and np.int64(t) % 2 == 1
