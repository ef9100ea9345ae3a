"""kernels.strings against Python: string validation and decoding, base64."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from kernels.bits import string_special16
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


@njit(cache=True)
def _special16_masks(buf):
    out = np.empty(len(buf) - 15, np.uint64)
    for i in range(len(buf) - 15):
        out[i] = string_special16(buf, i)
    return out


def test_string_special16_marks_exactly_the_bytes_a_string_scan_stops_at():
    rng = np.random.default_rng(5)
    raw = bytes(range(256)) * 2 + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    masks = _special16_masks(_buf(raw))
    stop = [c in (0x22, 0x5C) or c < 0x20 or c >= 0x80 for c in raw]
    expected = [sum(1 << k for k in range(16) if stop[i + k]) for i in range(len(raw) - 15)]
    assert masks.tolist() == expected


@pytest.mark.parametrize("special", [b"\\n", b"\\u00e9", b"\\x", b"\x01", b"\x7f", "é".encode(), b"\xc3", b"\xff"])
def test_a_special_byte_at_every_offset_of_a_long_string(special):
    # 16-byte steps and the byte-at-a-time tail (the last 15 bytes) each meet it, or the
    # closing quote, somewhere; DEL (0x7f) is not special
    for at in range(40):
        for after in (0, 1, 7, 8, 15, 16, 17, 30):
            raw = b'"' + b"a" * at + special + b"b" * after + b'"'
            assert kernel_decode(raw) == reference_decode(raw), raw
            assert kernel_decode(raw[:-1]) == reference_decode(raw[:-1]), raw[:-1]  # truncated


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
