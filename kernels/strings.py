"""JSON strings: validation (escapes, surrogates, UTF-8), decoding, and base64 text.

``scan_string`` is the single place that decides whether a string is well formed: every
escape, every ``\\uXXXX`` surrogate pair, every raw UTF-8 sequence (no overlongs, no
encoded surrogates, nothing above U+10FFFF, nothing truncated). Later passes trust it and
decode with ``unescape`` without checking again.
"""

import numpy as np
from numba import njit

from kernels.bits import load_u64, string_special16, trailing_zeros
from kernels.errors import INVALID_JSON, INVALID_UTF8
from kernels.status import ST_CODE, ST_DLEN, ST_LONE_SURROGATE, ST_NCHARS, ST_POS


def _class_table() -> np.ndarray:
    """Byte classes inside a string: 0 plain ASCII, 1 quote, 2 backslash, 3 control, 4 non-ASCII."""
    t = np.zeros(256, np.uint8)
    t[:0x20] = 3
    t[0x22] = 1
    t[0x5C] = 2
    t[0x80:] = 4
    return t


STRING_CLASS = _class_table()


@njit(nogil=True, cache=True)
def _hex4(buf, p):
    """Value of four hex digits at p, or -1."""
    v = 0
    for k in range(p, p + 4):
        c = buf[k]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@njit(nogil=True, cache=True)
def _low_surrogate_at(buf, p, end):
    """The low surrogate of a ``\\uDC00``..``\\uDFFF`` escape at p, or -1."""
    if p + 6 > end or buf[p] != 92 or buf[p + 1] != 117:
        return -1
    lo = _hex4(buf, p + 2)
    return lo if 0xDC00 <= lo <= 0xDFFF else -1


@njit(nogil=True, cache=True)
def _fail(st, code, pos):
    st[ST_CODE] = code
    st[ST_POS] = pos
    return -1


@njit(nogil=True, cache=True)
def _utf8_length(buf, p, end):
    """Length of the valid UTF-8 sequence starting at p (a byte >= 0x80), or 0 if invalid."""
    c = buf[p]
    if 0xC2 <= c <= 0xDF:
        if p + 1 < end and 0x80 <= buf[p + 1] <= 0xBF:
            return 1 + 1
        return 0
    if 0xE0 <= c <= 0xEF:
        if p + 2 >= end:
            return 0
        c1 = buf[p + 1]
        lo = 0xA0 if c == 0xE0 else 0x80
        hi = 0x9F if c == 0xED else 0xBF
        if lo <= c1 <= hi and 0x80 <= buf[p + 2] <= 0xBF:
            return 3
        return 0
    if 0xF0 <= c <= 0xF4:
        if p + 3 >= end:
            return 0
        c1 = buf[p + 1]
        lo = 0x90 if c == 0xF0 else 0x80
        hi = 0x8F if c == 0xF4 else 0xBF
        if lo <= c1 <= hi and 0x80 <= buf[p + 2] <= 0xBF and 0x80 <= buf[p + 3] <= 0xBF:
            return 4
        return 0
    return 0


@njit(nogil=True, cache=True, forceinline=True, _nrt=False)
def scan_string(buf, p, end, st):
    """Validate the JSON string whose opening quote is at p; return the position after its
    closing quote, or -1 with the fault in st.

    On success ``st[ST_DLEN]`` is the decoded UTF-8 byte length and ``st[ST_NCHARS]`` the
    number of characters. Decoded length equals raw length exactly when there is no escape.
    A lone surrogate escape is not a grammar fault: its position goes to
    ``st[ST_LONE_SURROGATE]`` (when none was seen before) and the caller decides.
    """
    q = p + 1
    dlen = 0
    nchars = 0
    while True:
        while q + 16 <= end:  # the last 15 bytes before end go one at a time, below
            special = string_special16(buf, q)
            if special != np.uint64(0):
                k = np.int64(trailing_zeros(special))  # plain bytes before it
                q += k
                dlen += k
                nchars += k
                break
            q += 16
            dlen += 16
            nchars += 16
        if q >= end:
            return _fail(st, INVALID_JSON, end)
        c = buf[q]
        if c == 34:  # the closing quote: the usual special byte
            st[ST_DLEN] = dlen
            st[ST_NCHARS] = nchars
            return q + 1
        cls = STRING_CLASS[c]
        if cls == 0:
            q += 1
            dlen += 1
            nchars += 1
        elif cls == 1:
            st[ST_DLEN] = dlen
            st[ST_NCHARS] = nchars
            return q + 1
        elif cls == 2:
            if q + 1 >= end:
                return _fail(st, INVALID_JSON, end)
            e = buf[q + 1]
            if e == 117:  # 'u'
                if q + 6 > end:
                    return _fail(st, INVALID_JSON, q)
                cp = _hex4(buf, q + 2)
                if cp < 0:
                    return _fail(st, INVALID_JSON, q)
                if 0xD800 <= cp <= 0xDBFF and _low_surrogate_at(buf, q + 6, end) >= 0:
                    dlen += 4
                    q += 12
                else:
                    if 0xD800 <= cp <= 0xDFFF and st[ST_LONE_SURROGATE] < 0:
                        # not UTF-8 representable; reported once the grammar is known good
                        st[ST_LONE_SURROGATE] = q
                    dlen += 1 if cp < 0x80 else (2 if cp < 0x800 else 3)
                    q += 6
                nchars += 1
            elif e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110 or e == 114 or e == 116:
                q += 2
                dlen += 1
                nchars += 1
            else:
                return _fail(st, INVALID_JSON, q)
        elif cls == 3:
            return _fail(st, INVALID_JSON, q)
        else:
            n = _utf8_length(buf, q, end)
            if n == 0:
                return _fail(st, INVALID_UTF8, q)
            q += n
            dlen += n
            nchars += 1


@njit(nogil=True, cache=True)
def unescape(buf, a, b, out, o):
    """Decode the validated string content buf[a:b] into out[o:]; return the end offset in out."""
    q = a
    while q < b:
        c = buf[q]
        if c != 92:
            out[o] = c
            o += 1
            q += 1
            continue
        e = buf[q + 1]
        if e == 117:
            cp = _hex4(buf, q + 2)
            q += 6
            if 0xD800 <= cp <= 0xDBFF:
                lo = _low_surrogate_at(buf, q, b)
                if lo >= 0:  # a lone surrogate (a rejected message) decodes to 3 bytes
                    q += 6
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            if cp < 0x80:
                out[o] = cp
                o += 1
            elif cp < 0x800:
                out[o] = 0xC0 | (cp >> 6)
                out[o + 1] = 0x80 | (cp & 0x3F)
                o += 2
            elif cp < 0x10000:
                out[o] = 0xE0 | (cp >> 12)
                out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
                out[o + 2] = 0x80 | (cp & 0x3F)
                o += 3
            else:
                out[o] = 0xF0 | (cp >> 18)
                out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
                out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
                out[o + 3] = 0x80 | (cp & 0x3F)
                o += 4
        else:
            if e == 98:
                out[o] = 8
            elif e == 102:
                out[o] = 12
            elif e == 110:
                out[o] = 10
            elif e == 114:
                out[o] = 13
            elif e == 116:
                out[o] = 9
            else:  # " \ /
                out[o] = e
            o += 1
            q += 2
    return o


@njit(nogil=True, cache=True, inline="always")
def bytes_equal(x, a, b, y, c, d):
    """x[a:b] == y[c:d]; 8 bytes at a time where both arrays have 8 more bytes to read."""
    n = b - a
    if n != d - c:
        return False
    if a + n + 8 <= x.shape[0] and c + n + 8 <= y.shape[0]:
        k = 0
        while k + 8 <= n:
            if load_u64(x, a + k) != load_u64(y, c + k):
                return False
            k += 8
        if k == n:
            return True
        tail = (np.uint64(1) << np.uint64(8 * (n - k))) - np.uint64(1)  # the n - k bytes left
        return ((load_u64(x, a + k) ^ load_u64(y, c + k)) & tail) == np.uint64(0)
    for k in range(n):
        if x[a + k] != y[c + k]:
            return False
    return True


@njit(nogil=True, cache=True)
def hash_bytes(x, a, b):
    """FNV-1a over x[a:b] (wrapping int64 arithmetic)."""
    h = -3750763034362895579
    for k in range(a, b):
        h = (h ^ np.int64(x[k])) * 1099511628211
    return h


def _base64_table() -> np.ndarray:
    t = np.full(256, 255, np.uint8)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for i, c in enumerate(alphabet):
        t[c] = i
    return t


BASE64_VALUE = _base64_table()


@njit(nogil=True, cache=True)
def base64_decoded_length(x, a, b):
    """Decoded length of padded standard base64 text x[a:b], or -1 if it is not that.

    RFC 4648 with padding: only the standard alphabet, length a multiple of 4, ``=`` only
    as the last one or two characters. Non-zero pad bits are tolerated, as Python does.
    """
    n = b - a
    if n % 4 != 0:
        return -1
    if n == 0:
        return 0
    pad = 0
    if x[b - 1] == 61:
        pad = 2 if x[b - 2] == 61 else 1
    for k in range(a, b - pad):
        if BASE64_VALUE[x[k]] == 255:
            return -1
    return n // 4 * 3 - pad


@njit(nogil=True, cache=True)
def base64_decode(x, a, b, out, o):
    """Decode base64 text x[a:b] (already checked) into out[o:]; return the end offset."""
    k = a
    while k < b:
        v0 = np.int64(BASE64_VALUE[x[k]])
        v1 = np.int64(BASE64_VALUE[x[k + 1]])
        out[o] = (v0 << 2) | (v1 >> 4)
        o += 1
        if x[k + 2] == 61:
            break
        v2 = np.int64(BASE64_VALUE[x[k + 2]])
        out[o] = ((v1 & 0xF) << 4) | (v2 >> 2)
        o += 1
        if x[k + 3] == 61:
            break
        v3 = np.int64(BASE64_VALUE[x[k + 3]])
        out[o] = ((v2 & 0x3) << 6) | v3
        o += 1
        k += 4
    return o


@njit(nogil=True, cache=True)
def first_invalid_utf8(buf, s, e):
    """Position of the first byte of buf[s:e] that is not valid UTF-8, or -1."""
    p = s
    while p < e:
        if buf[p] < 0x80:
            p += 1
        else:
            n = _utf8_length(buf, p, e)
            if n == 0:
                return p
            p += n
    return -1
