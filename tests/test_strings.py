"""kernels.strings against Python: string validation and decoding, base64."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.errors import INVALID_JSON, INVALID_UTF8
from kernels.status import ST_CODE, ST_DLEN, ST_LONE_SURROGATE, ST_NCHARS, ST_SIZE
from kernels.strings import base64_decode, base64_decoded_length, first_invalid_utf8, scan_string, unescape


def _buf(raw: bytes) -> np.ndarray:
    b = np.frombuffer(raw, np.uint8)
    b.flags.writeable = False
    return b


def kernel_decode(raw: bytes):
    """(decoded bytes, nchars) or the error code, for a JSON string literal raw."""
    status = np.zeros(ST_SIZE, np.int64)
    status[ST_LONE_SURROGATE] = -1
    buf = _buf(raw)
    end = scan_string(buf, 0, len(raw), status)
    if end < 0:
        # as parse_message does: bytes that are not UTF-8 outrank grammar faults
        if status[ST_CODE] != INVALID_UTF8 and first_invalid_utf8(buf, 0, len(raw)) >= 0:
            return INVALID_UTF8
        return int(status[ST_CODE])
    if status[ST_LONE_SURROGATE] >= 0:
        return INVALID_UTF8
    assert end == len(raw)
    out = np.zeros(len(raw), np.uint8)
    n = unescape(buf, 1, len(raw) - 1, out, 0)
    assert n == status[ST_DLEN]
    return bytes(out[:n]), int(status[ST_NCHARS])


def reference_decode(raw: bytes):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    try:
        value = json.loads(text)
    except ValueError:
        return INVALID_JSON
    if not isinstance(value, str):
        return INVALID_JSON
    try:
        return value.encode("utf-8"), len(value)
    except UnicodeEncodeError:  # a lone surrogate escape
        return INVALID_UTF8


@given(st.text())
@settings(max_examples=500, deadline=None)
def test_any_text_round_trips_both_escaped_and_raw(s):
    for raw in (json.dumps(s).encode(), json.dumps(s, ensure_ascii=False).encode("utf-8", "surrogatepass")):
        assert kernel_decode(raw) == reference_decode(raw)


ESCAPES = st.sampled_from(["\\n", "\\t", '\\"', "\\\\", "\\/", "\\b", "\\f", "\\r", "\\u00e9", "\\ud83d\\ude00",
                           "\\ud800", "\\udc00", "\\x", "\\u12", "\\U0041", "\t", "\x01", "a", "\u00e9"])  # fmt: skip


@given(st.lists(ESCAPES, max_size=6))
@settings(max_examples=500, deadline=None)
def test_escape_sequences_match_a_strict_reference(parts):
    raw = ('"' + "".join(parts) + '"').encode()
    assert kernel_decode(raw) == reference_decode(raw)


@given(st.binary(max_size=8))
@settings(max_examples=800, deadline=None)
def test_raw_bytes_are_valid_utf8_exactly_when_python_says_so(b):
    raw = b'"' + b.replace(b'"', b"").replace(b"\\", b"") + b'"'
    assert kernel_decode(raw) == reference_decode(raw)


def test_classic_invalid_utf8():
    for seq in [
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xe2\x82",
        b"\x80",
    ]:
        assert kernel_decode(b'"' + seq + b'"') == INVALID_UTF8
    assert kernel_decode(b'"unterminated') == INVALID_JSON


@given(st.binary(max_size=20))
@settings(max_examples=300, deadline=None)
def test_base64_matches_python(b):
    text = base64.b64encode(b)
    buf = _buf(text)
    n = base64_decoded_length(buf, 0, len(text))
    assert n == len(b)
    out = np.zeros(n + 4, np.uint8)
    assert base64_decode(buf, 0, len(text), out, 0) == n
    assert bytes(out[:n]) == b


STRICT_BASE64 = re.compile(rb"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@given(st.text(alphabet="ABCab+/=!- 09", max_size=12))
@settings(max_examples=300, deadline=None)
def test_base64_validation_is_strict_rfc4648(text):
    raw = text.encode()
    # Python's validate=True still tolerates excess padding ("0000="): RFC 4648 does not
    expected = len(base64.b64decode(raw, validate=True)) if STRICT_BASE64.fullmatch(raw) else -1
    assert base64_decoded_length(_buf(raw), 0, len(raw)) == expected
