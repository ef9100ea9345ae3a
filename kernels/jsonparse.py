"""Strict RFC 8259 parsing of one JSON object per message into typed columns.

``parse_batch`` is the kernel: messages (byte spans of one buffer) in, ``BatchColumns``
out, prange over chunks of messages. Each chunk allocates its scratch once (decode buffer,
duplicate-key table, container stack), so nothing is allocated per message.

A message's verdict: a syntax fault (not one well-formed JSON object, bad UTF-8, nesting
too deep) wins; otherwise the first schema fault in document order; otherwise a missing
required field. Every value is validated even when its field is unknown, already faulty,
or declared ``json``.

Compile time: the per-message chain (``parse_message`` down to ``parse_field_value`` and the
typed field readers) is inlined by LLVM (``forceinline``), its small leaf helpers by Numba
(``inline="always"``). Numba's IR inliner deep-copies the callee's whole IR for every call
site, block by block, so inlining the large, already-inlined chain at that level made the
first (cold) compile about 2.5 minutes; LLVM's inliner gives the same code (measured: same
parse speed) in a fraction of that. For the same reason the chunk loop is a function of its
own (``_parse_chunk``) rather than the body of the parallel loop, whose parfor passes would
otherwise walk the whole inlined parser.
"""

import numpy as np
from numba import njit, prange

from kernels.bits import prefetch, trailing_zeros, unowned
from kernels.errors import (
    BLANK_LINE,
    DUPLICATE_FIELD,
    INT_OVERFLOW,
    INVALID_JSON,
    INVALID_UTF8,
    MISSING_REQUIRED,
    NO_FIELD,
    NOT_AN_OBJECT,
    NOT_IN_ENUM,
    OK,
    OUT_OF_RANGE,
    TOO_DEEP,
    TOO_LARGE,
    TYPE_MISMATCH,
    UNKNOWN_FIELD,
    UNKNOWN_KEY,
)
from kernels.framing import next_newline, trim_line
from kernels.numeric import (
    FLOAT_FALLBACK,
    FLOAT_OVERFLOW,
    float32_halfway,
    parse_float,
    parse_int64,
    parse_uint64,
    scan_number,
)
from kernels.status import (
    SEEN_BITS,
    ST_CODE,
    ST_DLEN,
    ST_ISINT,
    ST_LF_ENDS,
    ST_LONE_SURROGATE,
    ST_NCHARS,
    ST_OBJECTS,
    ST_POS,
    ST_REQUIRED,
    ST_SEEN,
    ST_SEM_CODE,
    ST_SEM_FIELD,
    ST_SEM_KEY_END,
    ST_SEM_KEY_LEN,
    ST_SEM_KEY_START,
    ST_SEM_POS,
    ST_SIZE,
)
from kernels.strings import (
    base64_decoded_length,
    bytes_equal,
    first_invalid_utf8,
    hash_bytes,
    scan_string,
    unescape,
)
from kernels.tables import (
    ERR_CODE,
    ERR_FIELD,
    ERR_KEY_END,
    ERR_KEY_LEN,
    ERR_KEY_START,
    ERR_POS,
    F_ENUM_FIRST,
    F_ENUM_LAST,
    F_FRAC_DIGITS,
    F_INT_ENUM_FIRST,
    F_INT_ENUM_LAST,
    F_INT_HI,
    F_INT_LO,
    F_KIND,
    F_MAX_LEN,
    F_MIN_LEN,
    F_NAME_END,
    F_NAME_PLAIN,
    F_NAME_START,
    F_NULLABLE,
    F_REQUIRED,
    F_SLOT,
    F_SPAN,
    F_UNIT,
    KIND_BINARY,
    KIND_BOOL,
    KIND_DATE,
    KIND_ENUM,
    KIND_FLOAT,
    KIND_FLOAT32,
    KIND_INT,
    KIND_JSON,
    KIND_STRING,
    KIND_TIMESTAMP,
    KIND_UINT64,
    SPAN_END,
    SPAN_LEN,
    SPAN_START,
    STATE_ABSENT,
    STATE_FLOAT_FALLBACK,
    STATE_NULL,
    STATE_VALUE,
)
from kernels.temporal import parse_date, parse_rfc3339
from kernels.validate import check_int_enum, check_length, check_range, enum_index

_KT_MSG = 0
_KT_OBJ = 1
_KT_HASH = 2
_KT_START = 3
_KT_END = 4
_LBRACE = 123
_RBRACE = 125
_LBRACKET = 91
_RBRACKET = 93
_QUOTE = 34
_AHEAD = 2  # messages
_AHEAD_LINES = 4  # 64-byte cache lines of it
_NO_COUNTS = np.zeros(1, np.int64)


@njit(nogil=True, cache=True, inline="always")
def skip_ws(buf, p, end, st):
    """First position at or after p that is not JSON whitespace (space, tab, LF, CR).

    Under newline framing (``st[ST_LF_ENDS]``) an LF ends the message instead of being
    whitespace in it, so a parse not told where its line ends stops at the LF rather than
    run on into the next line."""
    while p < end:
        c = buf[p]
        if c > 32 or (c != 32 and c != 10 and c != 13 and c != 9):  # one test for most bytes
            return p
        if c == 10 and st[ST_LF_ENDS] != 0:
            return p
        p += 1
    return p


@njit(nogil=True, cache=True, inline="always")
def _fail(st, code, pos):
    st[ST_CODE] = code
    st[ST_POS] = pos
    return -1


@njit(nogil=True, cache=True, inline="always")
def _schema_fault(st, code, pos, field):
    """Record a schema-level fault unless the message already has one (first one wins)."""
    if st[ST_SEM_CODE] == OK:
        st[ST_SEM_CODE] = code
        st[ST_SEM_POS] = pos
        st[ST_SEM_FIELD] = field


@njit(nogil=True, cache=True, inline="always")
def _literal(buf, p, end, st):
    """Check the literal true / false / null at p; return the position after it or -1."""
    c = buf[p]
    if c == 116:  # true
        if p + 4 <= end and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
            return p + 4
    elif c == 102:  # false
        if p + 5 <= end and buf[p + 1] == 97 and buf[p + 2] == 108 and buf[p + 3] == 115 and buf[p + 4] == 101:
            return p + 5
    elif c == 110:  # null
        if p + 4 <= end and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
            return p + 4
    return _fail(st, INVALID_JSON, p)


@njit(nogil=True, cache=True, inline="always")
def _decoded(buf, a, b, escaped, scratch, at):
    """The decoded text of string content buf[a:b] as (array, start, end): buf itself when
    there is no escape, else a copy decoded into scratch[at:]."""
    if not escaped:
        return buf, a, b
    o = unescape(buf, a, b, scratch, at)
    return scratch, at, o


@njit(nogil=True, cache=True)
def _has_escape(buf, a, b):
    for k in range(a, b):
        if buf[k] == 92:
            return True
    return False


@njit(nogil=True, cache=True)
def _key_seen(buf, a, b, escaped, i, obj, keys, scratch):
    """Insert key buf[a:b] of object ``obj`` of message i into the duplicate table; return
    True if the object already had an equal key (compared after decoding escapes).

    Entries of earlier messages count as empty, so the table is never cleared."""
    x, xa, xb = _decoded(buf, a, b, escaped, scratch, 0)
    h = hash_bytes(x, xa, xb)
    mask = keys.shape[0] - 1
    s = h & mask
    while True:
        if keys[s, _KT_MSG] != i:
            keys[s, _KT_MSG] = i
            keys[s, _KT_OBJ] = obj
            keys[s, _KT_HASH] = h
            keys[s, _KT_START] = a
            keys[s, _KT_END] = b
            return False
        if keys[s, _KT_OBJ] == obj and keys[s, _KT_HASH] == h:
            ya = keys[s, _KT_START]
            yb = keys[s, _KT_END]
            half = scratch.shape[0] // 2
            y, yc, yd = _decoded(buf, ya, yb, _has_escape(buf, ya, yb), scratch, half)
            if bytes_equal(x, xa, xb, y, yc, yd):
                return True
        s = (s + 1) & mask


@njit(nogil=True, cache=True)
def skip_value(buf, p, end, depth, max_depth, i, st, keys, scratch):
    """Validate any JSON value at p (``depth`` containers already open); return the position
    after it or -1. Checks duplicate keys in every object it meets.

    The container stack lives in st after ST_SIZE: opening bytes, then object serials.
    """
    stack = ST_SIZE
    objs = ST_SIZE + max_depth + 2
    sp = 0
    mode = 0  # 0: expect a value, 1: after a value, 2: expect a key
    while True:
        if mode == 0:
            p = skip_ws(buf, p, end, st)
            if p >= end:
                return _fail(st, INVALID_JSON, end)
            c = buf[p]
            if c == _LBRACE or c == _LBRACKET:
                if depth + sp + 1 > max_depth:
                    return _fail(st, TOO_DEEP, p)
                st[stack + sp] = c
                if c == _LBRACE:
                    st[ST_OBJECTS] += 1
                    st[objs + sp] = st[ST_OBJECTS]
                sp += 1
                p = skip_ws(buf, p + 1, end, st)
                if p >= end:
                    return _fail(st, INVALID_JSON, end)
                if (c == _LBRACE and buf[p] == _RBRACE) or (c == _LBRACKET and buf[p] == _RBRACKET):
                    p += 1
                    sp -= 1
                    mode = 1
                else:
                    mode = 2 if c == _LBRACE else 0
            elif c == _QUOTE:
                p = scan_string(buf, p, end, st)
                if p < 0:
                    return -1
                mode = 1
            elif c == 45 or 48 <= c <= 57:
                p = scan_number(buf, p, end, st)
                if p < 0:
                    return -1
                mode = 1
            else:
                p = _literal(buf, p, end, st)
                if p < 0:
                    return -1
                mode = 1
        elif mode == 1:
            if sp == 0:
                return p
            p = skip_ws(buf, p, end, st)
            if p >= end:
                return _fail(st, INVALID_JSON, end)
            c = buf[p]
            top = st[stack + sp - 1]
            if c == 44:  # ','
                p += 1
                mode = 2 if top == _LBRACE else 0
            elif (c == _RBRACE and top == _LBRACE) or (c == _RBRACKET and top == _LBRACKET):
                p += 1
                sp -= 1
            else:
                return _fail(st, INVALID_JSON, p)
        else:
            p = skip_ws(buf, p, end, st)
            if p >= end:
                return _fail(st, INVALID_JSON, end)
            if buf[p] != _QUOTE:
                return _fail(st, INVALID_JSON, p)
            q = scan_string(buf, p, end, st)
            if q < 0:
                return -1
            if _key_seen(buf, p + 1, q - 1, st[ST_DLEN] != q - p - 2, i, st[objs + sp - 1], keys, scratch):
                _schema_fault(st, DUPLICATE_FIELD, p, NO_FIELD)
            p = skip_ws(buf, q, end, st)
            if p >= end or buf[p] != 58:  # ':'
                return _fail(st, INVALID_JSON, min(p, end))
            p += 1
            mode = 0


@njit(nogil=True, cache=True, inline="always")
def match_field(x, a, b, fields, text, hint):
    """Index of the declared field named x[a:b] (decoded), or -1. Starts at ``hint``
    because producers usually send fields in the same order."""
    k = fields.shape[0]
    for j in range(k):
        f = hint + j
        if f >= k:
            f -= k
        if bytes_equal(x, a, b, text, fields[f, F_NAME_START], fields[f, F_NAME_END]):
            return f
    return -1


@njit(nogil=True, cache=True, inline="always")
def _store_int(v, f, i, p, fields, lists, state, ints, st):
    """Check an int64 value against field f's rules and store it."""
    code = check_range(v, fields[f, F_INT_LO], fields[f, F_INT_HI])
    if code == OK:
        code = check_int_enum(v, lists, fields[f, F_INT_ENUM_FIRST], fields[f, F_INT_ENUM_LAST])
    if code != OK:
        _schema_fault(st, code, p, f)
        return
    ints[fields[f, F_SLOT], i] = v
    state[i, f] = STATE_VALUE


@njit(nogil=True, cache=True, inline="always")
def _defer_float(p, q, f, i, fields, spans, state):
    """Leave float field f of message i to the exact fallback, with its literal's span."""
    s = fields[f, F_SPAN]
    spans[s, i, SPAN_START] = p
    spans[s, i, SPAN_END] = q
    state[i, f] = STATE_FLOAT_FALLBACK


@njit(nogil=True, cache=True, forceinline=True)
def _float_field(buf, p, q, f, i, fields, fbounds, state, floats, spans, st):
    """Interpret the number literal buf[p:q] for float field f of message i."""
    v, status = parse_float(buf, p, q)
    if status == FLOAT_OVERFLOW:
        _schema_fault(st, OUT_OF_RANGE, p, f)
        return
    if status == FLOAT_FALLBACK:
        _defer_float(p, q, f, i, fields, spans, state)
        return
    if fields[f, F_KIND] == KIND_FLOAT32:
        if float32_halfway(v):  # which float32 is nearest, only the exact text can say
            _defer_float(p, q, f, i, fields, spans, state)
            return
        if np.isinf(np.float32(v)):
            _schema_fault(st, OUT_OF_RANGE, p, f)
            return
    if check_range(v, fbounds[f, 0], fbounds[f, 1]) != OK:
        _schema_fault(st, OUT_OF_RANGE, p, f)
        return
    floats[fields[f, F_SLOT], i] = v
    state[i, f] = STATE_VALUE


@njit(nogil=True, cache=True, forceinline=True)
def _integer_field(buf, p, q, f, i, fields, ubounds, lists, state, ints, st):
    """Interpret the integer literal buf[p:q] for field f (integer, timestamp or date)."""
    if fields[f, F_KIND] == KIND_UINT64:
        u, code = parse_uint64(buf, p, q)
        if code == OK and (u < ubounds[f, 0] or u > ubounds[f, 1]):
            code = OUT_OF_RANGE
        if code == OK:  # the enum holds uint64 values as their int64 bits, as ints does
            code = check_int_enum(np.int64(u), lists, fields[f, F_INT_ENUM_FIRST], fields[f, F_INT_ENUM_LAST])
        if code != OK:
            _schema_fault(st, code, p, f)
            return
        ints[fields[f, F_SLOT], i] = np.int64(u)
        state[i, f] = STATE_VALUE
        return
    v, code = parse_int64(buf, p, q)
    if code != OK:
        _schema_fault(st, INT_OVERFLOW, p, f)
        return
    _store_int(v, f, i, p, fields, lists, state, ints, st)


@njit(nogil=True, cache=True, forceinline=True)
def _string_field(buf, p, q, f, i, fields, text, lists, state, ints, spans, st, scratch):
    """Interpret the string at buf[p:q] (quotes included) for field f of message i."""
    kind = fields[f, F_KIND]
    a = p + 1
    b = q - 1
    dlen = st[ST_DLEN]
    if kind == KIND_STRING:
        code = check_length(st[ST_NCHARS], fields[f, F_MIN_LEN], fields[f, F_MAX_LEN])
        if code != OK:
            _schema_fault(st, code, p, f)
            return
        s = fields[f, F_SPAN]
        spans[s, i, SPAN_START] = a
        spans[s, i, SPAN_END] = b
        spans[s, i, SPAN_LEN] = dlen
        state[i, f] = STATE_VALUE
        return
    x, xa, xb = _decoded(buf, a, b, dlen != b - a, scratch, 0)
    if kind == KIND_ENUM:
        k = enum_index(x, xa, xb, text, lists, fields[f, F_ENUM_FIRST], fields[f, F_ENUM_LAST])
        if k < 0:
            _schema_fault(st, NOT_IN_ENUM, p, f)
            return
        ints[fields[f, F_SLOT], i] = k
        state[i, f] = STATE_VALUE
    elif kind == KIND_BINARY:
        n = base64_decoded_length(x, xa, xb)
        if n < 0:
            _schema_fault(st, TYPE_MISMATCH, p, f)
            return
        code = check_length(n, fields[f, F_MIN_LEN], fields[f, F_MAX_LEN])
        if code != OK:
            _schema_fault(st, code, p, f)
            return
        s = fields[f, F_SPAN]
        spans[s, i, SPAN_START] = a
        spans[s, i, SPAN_END] = b
        spans[s, i, SPAN_LEN] = n
        state[i, f] = STATE_VALUE
    elif kind == KIND_TIMESTAMP:
        v, code = parse_rfc3339(x, xa, xb, fields[f, F_UNIT], fields[f, F_FRAC_DIGITS])
        if code != OK:
            _schema_fault(st, code, p, f)
            return
        _store_int(v, f, i, p, fields, lists, state, ints, st)
    else:  # KIND_DATE
        v, code = parse_date(x, xa, xb)
        if code != OK:
            _schema_fault(st, code, p, f)
            return
        _store_int(v, f, i, p, fields, lists, state, ints, st)


@njit(nogil=True, cache=True, forceinline=True)
def parse_field_value(
    buf, p, end, f, i, fields, fbounds, ubounds, text, lists, max_depth, state, ints, floats, spans, st, keys, scratch
):
    """Parse the value at p for declared field f of message i; return the position after it
    or -1 on a syntax fault. Schema faults are recorded in st and parsing goes on."""
    kind = fields[f, F_KIND]
    c = buf[p]
    if c == 110:  # null
        q = _literal(buf, p, end, st)
        if q < 0:
            return -1
        if fields[f, F_NULLABLE]:
            state[i, f] = STATE_NULL
        else:
            _schema_fault(st, MISSING_REQUIRED if fields[f, F_REQUIRED] else TYPE_MISMATCH, p, f)
        return q
    if kind == KIND_JSON:
        q = skip_value(buf, p, end, 1, max_depth, i, st, keys, scratch)
        if q < 0:
            return -1
        s = fields[f, F_SPAN]
        spans[s, i, SPAN_START] = p
        spans[s, i, SPAN_END] = q
        spans[s, i, SPAN_LEN] = q - p
        state[i, f] = STATE_VALUE
        return q
    if c == 45 or 48 <= c <= 57:
        if kind == KIND_FLOAT or kind == KIND_FLOAT32:
            q = scan_number(buf, p, end, st)
            if q < 0:
                return -1
            _float_field(buf, p, q, f, i, fields, fbounds, state, floats, spans, st)
            return q
        if kind == KIND_INT or kind == KIND_UINT64 or kind == KIND_TIMESTAMP or kind == KIND_DATE:
            q = scan_number(buf, p, end, st)
            if q < 0:
                return -1
            if st[ST_ISINT] == 1:
                _integer_field(buf, p, q, f, i, fields, ubounds, lists, state, ints, st)
            else:
                _schema_fault(st, TYPE_MISMATCH, p, f)
            return q
    elif c == _QUOTE:
        if (
            kind == KIND_STRING
            or kind == KIND_ENUM
            or kind == KIND_BINARY
            or kind == KIND_TIMESTAMP
            or kind == KIND_DATE
        ):
            q = scan_string(buf, p, end, st)
            if q < 0:
                return -1
            _string_field(buf, p, q, f, i, fields, text, lists, state, ints, spans, st, scratch)
            return q
    elif (c == 116 or c == 102) and kind == KIND_BOOL:
        q = _literal(buf, p, end, st)
        if q < 0:
            return -1
        ints[fields[f, F_SLOT], i] = 1 if c == 116 else 0
        state[i, f] = STATE_VALUE
        return q
    _schema_fault(st, TYPE_MISMATCH, p, f)
    return skip_value(buf, p, end, 1, max_depth, i, st, keys, scratch)


@njit(nogil=True, cache=True, forceinline=True)
def _object_members(
    buf, p, end, i, fields, fbounds, ubounds, text, lists, reject_unknown, max_depth,
    state, ints, floats, spans, st, keys, scratch,
):  # fmt: skip
    """Parse the members of the top-level object whose '{' is just before p; return the
    position after its '}' or -1."""
    p = skip_ws(buf, p, end, st)
    st[ST_SEEN] = 0
    if p < end and buf[p] == _RBRACE:
        return p + 1
    hint = 0
    nfields = fields.shape[0]
    seen = np.int64(0)  # declared fields met so far: kept in a register, not read back from state
    while True:
        if p >= end or buf[p] != _QUOTE:
            return _fail(st, INVALID_JSON, min(p, end))
        # fast path: the key is the next field in the usual order, written plainly
        f = -1
        ns = fields[hint, F_NAME_START]
        ne = fields[hint, F_NAME_END]
        q = p + 2 + ne - ns
        if (
            fields[hint, F_NAME_PLAIN]
            and q <= end
            and buf[q - 1] == _QUOTE
            and bytes_equal(buf, p + 1, q - 1, text, ns, ne)
        ):
            f = hint
            key_len = ne - ns
            escaped = False
        else:
            q = scan_string(buf, p, end, st)
            if q < 0:
                return -1
            key_len = st[ST_DLEN]
            escaped = key_len != q - p - 2
            x, xa, xb = _decoded(buf, p + 1, q - 1, escaped, scratch, 0)
            f = match_field(x, xa, xb, fields, text, hint)
        a = p + 1
        b = q - 1
        key_pos = p
        p = skip_ws(buf, q, end, st)
        if p >= end or buf[p] != 58:
            return _fail(st, INVALID_JSON, min(p, end))
        p = skip_ws(buf, p + 1, end, st)
        if p >= end:
            return _fail(st, INVALID_JSON, end)
        clean = st[ST_SEM_CODE] == OK  # to name the field of a fault found deep in its value
        if f >= 0:
            hint = f + 1 if f + 1 < nfields else 0
            if f < SEEN_BITS:
                bit = np.int64(1) << f
                again = (seen & bit) != 0
                seen |= bit
            else:
                again = state[i, f] != STATE_ABSENT
            if again:
                _schema_fault(st, DUPLICATE_FIELD, key_pos, f)
                p = skip_value(buf, p, end, 1, max_depth, i, st, keys, scratch)
            else:
                p = parse_field_value(
                    buf, p, end, f, i, fields, fbounds, ubounds, text, lists, max_depth,
                    state, ints, floats, spans, st, keys, scratch,
                )  # fmt: skip
        else:
            if reject_unknown and st[ST_SEM_CODE] == OK:
                _schema_fault(st, UNKNOWN_FIELD, key_pos, UNKNOWN_KEY)
                st[ST_SEM_KEY_START] = a
                st[ST_SEM_KEY_END] = b
                st[ST_SEM_KEY_LEN] = key_len
            elif _key_seen(buf, a, b, escaped, i, 0, keys, scratch):
                if st[ST_SEM_CODE] == OK:
                    st[ST_SEM_KEY_START] = a
                    st[ST_SEM_KEY_END] = b
                    st[ST_SEM_KEY_LEN] = key_len
                _schema_fault(st, DUPLICATE_FIELD, key_pos, UNKNOWN_KEY)
            p = skip_value(buf, p, end, 1, max_depth, i, st, keys, scratch)
        if clean and st[ST_SEM_CODE] != OK and st[ST_SEM_FIELD] == NO_FIELD:
            st[ST_SEM_FIELD] = f if f >= 0 else UNKNOWN_KEY
            st[ST_SEM_KEY_START] = a
            st[ST_SEM_KEY_END] = b
            st[ST_SEM_KEY_LEN] = key_len
        if p < 0:
            return -1
        p = skip_ws(buf, p, end, st)
        if p >= end:
            return _fail(st, INVALID_JSON, end)
        c = buf[p]
        if c == 44:
            p = skip_ws(buf, p + 1, end, st)
        elif c == _RBRACE:
            st[ST_SEEN] = seen
            return p + 1
        else:
            return _fail(st, INVALID_JSON, p)


@njit(nogil=True, cache=True, forceinline=True)
def parse_message(
    buf, s, e, line, max_message_bytes, i, fields, fbounds, ubounds, text, lists, reject_unknown,
    max_depth, state, ints, floats, spans, errors, st, keys, scratch,
):  # fmt: skip
    """Parse message i = buf[s:e] into column i of the outputs and set its verdict; return e.

    With ``line``, the message is the line starting at s (with '{') and its end is not known
    yet: the object is parsed with e only as a limit, stopping at any LF, and the line's LF
    must follow it. Then the return value is that LF's position, or -1 when the line needs
    an exact parse over its span instead (a syntax fault, anything but whitespace before the
    LF, too long); state may then hold values of this attempt that the caller must clear.
    Valid lines are so read once, with no pass that finds each LF before parsing.
    """
    st[ST_SEM_CODE] = OK
    st[ST_OBJECTS] = 0
    st[ST_LONE_SURROGATE] = -1
    lf = -1
    p = s if line else skip_ws(buf, s, e, st)
    if p < e and buf[p] == _LBRACE:
        q = _object_members(
            buf, p + 1, e, i, fields, fbounds, ubounds, text, lists, reject_unknown, max_depth,
            state, ints, floats, spans, st, keys, scratch,
        )  # fmt: skip
        if line:
            if q < 0:
                return -1
            n = buf.shape[0]
            lf = q
            while lf < n and (buf[lf] == 32 or buf[lf] == 9 or buf[lf] == 13):
                lf += 1
            if lf >= n or buf[lf] != 10:
                return -1
            e, _ = trim_line(buf, s, lf, max_message_bytes)  # never blank: it starts with '{'
            if e - s > max_message_bytes:
                return -1
        elif q >= 0:
            q = skip_ws(buf, q, e, st)
            if q != e:
                q = _fail(st, INVALID_JSON, q)
    else:
        q = skip_value(buf, p, e, 0, max_depth, i, st, keys, scratch)
        if q >= 0:
            q = skip_ws(buf, q, e, st)
            q = _fail(st, INVALID_JSON, q) if q != e else _fail(st, NOT_AN_OBJECT, p)
    _verdict(buf, s, e, q, i, fields, state, errors, st)
    return lf if line else e


@njit(nogil=True, cache=True, forceinline=True)
def _verdict(buf, s, e, q, i, fields, state, errors, st):
    """Set message i's verdict from its parse (q < 0: a syntax fault, in st)."""
    if q < 0 and st[ST_CODE] != INVALID_UTF8 and st[ST_CODE] != NOT_AN_OBJECT:
        # bytes that are not UTF-8 at all outrank every other fault
        bad = first_invalid_utf8(buf, s, e)
        if bad >= 0:
            _fail(st, INVALID_UTF8, bad)
    if q >= 0 or st[ST_CODE] == NOT_AN_OBJECT or st[ST_CODE] == TOO_DEEP:
        # a lone surrogate escape is the message's fault once the grammar is known good
        # (or good as far as nesting let the parse go)
        if st[ST_LONE_SURROGATE] >= 0:
            q = _fail(st, INVALID_UTF8, st[ST_LONE_SURROGATE])
    if q < 0:
        errors[ERR_CODE, i] = st[ST_CODE]
        errors[ERR_POS, i] = st[ST_POS] - s
        errors[ERR_FIELD, i] = NO_FIELD
        return
    if st[ST_SEM_CODE] == OK:
        missing = st[ST_REQUIRED] & ~st[ST_SEEN]
        if missing != 0:
            _schema_fault(st, MISSING_REQUIRED, e, np.int64(trailing_zeros(np.uint64(missing))))
        else:
            for f in range(SEEN_BITS, fields.shape[0]):
                if fields[f, F_REQUIRED] and state[i, f] == STATE_ABSENT:
                    _schema_fault(st, MISSING_REQUIRED, e, f)
                    break
    code = st[ST_SEM_CODE]
    errors[ERR_CODE, i] = code
    if code != OK:
        errors[ERR_POS, i] = st[ST_SEM_POS] - s
        errors[ERR_FIELD, i] = st[ST_SEM_FIELD]
        if st[ST_SEM_FIELD] == UNKNOWN_KEY:
            errors[ERR_KEY_START, i] = st[ST_SEM_KEY_START]
            errors[ERR_KEY_END, i] = st[ST_SEM_KEY_END]
            errors[ERR_KEY_LEN, i] = st[ST_SEM_KEY_LEN]


@njit(nogil=True, cache=True, inline="always")
def _key_rows(length):
    """Rows of a duplicate-key table for messages of up to ``length`` bytes: a power of two
    at least twice the keys such a message can hold, so probing always ends."""
    rows = 16
    while rows < 2 * (length // 4 + 2):
        rows *= 2
    return rows


@njit(nogil=True, cache=True, inline="always")
def _clear(state, ints, floats, spans, lo, hi):
    """Reset the outputs of messages lo..hi-1 before parsing them: no value, zeros (so no
    earlier batch's bytes show through null slots), empty spans.

    Each worker clears its own messages just before parsing them, in parallel and while
    they are about to be in cache, instead of a serial fill of every array beforehand."""
    for j in range(lo, hi):
        for f in range(state.shape[1]):
            state[j, f] = STATE_ABSENT
    for k in range(ints.shape[0]):
        for j in range(lo, hi):
            ints[k, j] = 0
    for k in range(floats.shape[0]):
        for j in range(lo, hi):
            floats[k, j] = 0.0
    for k in range(spans.shape[0]):
        for j in range(lo, hi):
            spans[k, j, SPAN_LEN] = 0


def parse_batch(buf, starts, ends, max_message_bytes, T, C, nchunks):
    """Parse messages buf[starts[i]:ends[i]] into C, in parallel over chunks of messages.

    Each message's state, value slots and span lengths are reset by the kernel; every other
    output is written where it is meaningful.
    """
    _parse(buf, True, starts, ends, _NO_COUNTS, _NO_COUNTS, -1, max_message_bytes, T, C, nchunks)


def parse_lines(buf, counts, before, tail, max_message_bytes, T, C, starts, ends, nchunks):
    """parse_batch for newline-delimited ``buf``, framing as it goes: a line that starts with
    '{' is parsed before its end is known and its LF is the byte after the object, so valid
    lines are read once (no framing pass, no search for each LF before parsing it).

    ``counts`` and ``before`` come from framing.count_lines over the same nchunks; ``tail``
    is where a last line without LF starts (-1: none). Line j's span goes to starts[j],
    ends[j] (CR trimmed); a blank line is marked BLANK_LINE in the verdicts and not parsed.
    Returns the number of blank lines.
    """
    return _parse(buf, False, starts, ends, counts, before, tail, max_message_bytes, T, C, nchunks)


@njit(nogil=True, parallel=True, cache=True)
def _parse(buf, framed, starts, ends, counts, before, tail, max_message_bytes, T, C, nchunks):
    """The kernel of parse_batch (``framed``) and parse_lines: prange over chunks, each
    parsed by ``_parse_chunk`` (one compiled body for both, so the message parser is
    compiled once). Returns the number of blank lines."""
    fields = T.fields
    nfields = fields.shape[0]
    required = np.int64(0)
    for f in range(min(nfields, SEEN_BITS)):
        if fields[f, F_REQUIRED]:
            required |= np.int64(1) << f
    n = starts.shape[0] if framed else buf.shape[0]  # messages, or bytes to frame
    blank = np.zeros(nchunks, np.int64)
    for c in prange(nchunks):
        if framed:
            i = c * n // nchunks
            last = (c + 1) * n // nchunks  # one past the chunk's last message
            s = 0
        else:  # the lines whose LF lies in the chunk's bytes, and the unterminated tail
            i = counts[c]
            last = counts[c + 1] + (1 if c == nchunks - 1 and tail >= 0 else 0)
            s = before[c] + 1
        tail_chunk = not framed and c == nchunks - 1 and tail >= 0
        blank[c] = _parse_chunk(
            buf, framed, starts, ends, i, last, s, tail_chunk, max_message_bytes, required,
            fields, T.float_bounds, T.uint_bounds, T.text, T.lists, T.reject_unknown, T.max_depth,
            C.state, C.ints, C.floats, C.spans, C.errors,
        )  # fmt: skip
    return blank.sum()


@njit(nogil=True, cache=True)
def _parse_chunk(
    buf, framed, starts, ends, i, last, s, tail_chunk, max_message_bytes, required,
    fields, fbounds, ubounds, text, lists, reject_unknown, max_depth, state, ints, floats, spans, errors,
):  # fmt: skip
    """Parse messages i..last-1 (framed: spans starts/ends; else: the lines from byte s, the
    last one unterminated when ``tail_chunk``). Returns the number of blank lines."""
    buf = unowned(buf)
    fields = unowned(fields)
    fbounds = unowned(fbounds)
    ubounds = unowned(ubounds)
    text = unowned(text)
    lists = unowned(lists)
    state = unowned(state)
    ints = unowned(ints)
    floats = unowned(floats)
    spans = unowned(spans)
    errors = unowned(errors)
    starts = unowned(starts)
    ends = unowned(ends)
    nfields = fields.shape[0]
    n = buf.shape[0]
    _clear(state, ints, floats, spans, i, last)
    st_owned = np.zeros(ST_SIZE + 2 * (max_depth + 2), np.int64)
    st = unowned(st_owned)
    st[ST_LF_ENDS] = 0 if framed else 1
    st[ST_REQUIRED] = required
    nb = 0
    nxt = s  # where the next line starts
    exact = False  # set to parse the line at s again over its exact span
    size = 256  # the longest message the chunk's scratch is sized for
    while i < last:
        # scratch for messages of up to ``size`` bytes: a decode buffer for two strings
        # and the duplicate-key table. A longer message ends the inner loop to size them
        # anew, so the owned arrays are never reassigned (and reference counted) per message
        scratch_owned = np.empty(2 * size + 16, np.uint8)
        keys_owned = np.full((_key_rows(size), 5), -1, np.int64)
        scratch = unowned(scratch_owned)
        keys = unowned(keys_owned)
        room = min(size, max_message_bytes)
        while i < last:
            line = False
            e = -1  # end of the span to parse (with line: only a limit); -1: nothing to parse
            if framed:
                s = starts[i]
                e = ends[i]
                if i + _AHEAD < last:
                    # a batch larger than the cache is read from memory: ask for the first
                    # lines of a message a little ahead, so parsing does not wait on each miss
                    ahead = starts[i + _AHEAD]
                    for line_ahead in range(_AHEAD_LINES):
                        prefetch(buf, ahead + 64 * line_ahead)
            else:
                tail_line = tail_chunk and i == last - 1
                if not exact and not tail_line and buf[s] == _LBRACE:
                    # the usual line: parsed up to its LF in one pass
                    line = True
                    e = min(n, s + room)
                else:
                    lf = n if tail_line else next_newline(buf, s, n)
                    nxt = lf + 1
                    e, is_blank = trim_line(buf, s, lf, max_message_bytes)
                    starts[i] = s
                    ends[i] = e
                    if is_blank:
                        errors[ERR_CODE, i] = BLANK_LINE
                        nb += 1
                        e = -1
            if e >= 0 and not line and e - s > max_message_bytes:
                errors[ERR_CODE, i] = TOO_LARGE
                errors[ERR_POS, i] = 0
                errors[ERR_FIELD, i] = NO_FIELD
                e = -1
            if e >= 0 and not line and e - s > size:
                size = max(e - s, 2 * size)
                break
            if e >= 0:
                lf = parse_message(
                    buf, s, e, line, max_message_bytes, i, fields, fbounds, ubounds, text, lists,
                    reject_unknown, max_depth, state, ints, floats, spans, errors, st, keys, scratch,
                )  # fmt: skip
                if line:
                    if lf < 0:  # forget the attempt: the exact parse decides
                        for f in range(nfields):
                            state[i, f] = STATE_ABSENT
                        for r in range(keys.shape[0]):
                            keys[r, _KT_MSG] = -1
                        exact = True
                        continue
                    starts[i] = s
                    line_end, _ = trim_line(buf, s, lf, max_message_bytes)
                    ends[i] = line_end
                    nxt = lf + 1
            exact = False
            i += 1
            s = nxt
        # keep the scratch alive (and owned) until its unowned views are done with
        scratch_owned[0] = keys_owned[0, 0]
    st_owned[0] = 0  # keeps the status vector owned until its unowned view is done with
    return nb
