"""kernels.numeric against naive Python references: number grammar, int64, float64, and
where float32 needs the exact text."""

from __future__ import annotations

import re
import struct
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.errors import INT_OVERFLOW, OK, OUT_OF_RANGE
from kernels.numeric import (
    FLOAT_EXACT,
    FLOAT_FALLBACK,
    FLOAT_OVERFLOW,
    float32_halfway,
    parse_float,
    parse_int64,
    parse_uint64,
    scan_number,
)
from kernels.status import ST_ISINT, ST_SIZE

NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _buf(text: str) -> np.ndarray:
    b = np.frombuffer(text.encode(), np.uint8)
    b.flags.writeable = False
    return b


def scan(text: str) -> tuple[int, bool]:
    status = np.zeros(ST_SIZE, np.int64)
    end = scan_number(_buf(text), 0, len(text), status)
    return end, bool(status[ST_ISINT])


def reference_scan(text: str) -> int:
    m = NUMBER.match(text.encode())
    if not m:
        return -1
    nxt = text[m.end() : m.end() + 1]
    if m.group(1) == b"0" and m.group(2) is None and m.group(3) is None and nxt.isdigit():
        return -1  # leading zero
    if (nxt == "." and m.group(2) is None and m.group(3) is None) or (nxt in ("e", "E") and m.group(3) is None):
        return -1  # a fraction or exponent without digits
    return m.end()


@given(st.text(alphabet="0123456789-+.eE", max_size=12))
@settings(max_examples=400, deadline=None)
def test_scan_number_matches_the_rfc_grammar(text):
    end, _ = scan(text)
    assert end == reference_scan(text)


def test_scan_number_marks_integer_literals():
    assert scan("-12") == (3, True)
    assert scan("1.0") == (3, False)
    assert scan("1e5") == (3, False)
    assert scan("01")[0] == -1 and scan("1.")[0] == -1 and scan("-")[0] == -1 and scan(".5")[0] == -1


def int64(text: str) -> tuple[int, int]:
    v, code = parse_int64(_buf(text), 0, len(text))
    return int(v), int(code)


@given(st.integers(min_value=-(2**70), max_value=2**70))
@settings(max_examples=400, deadline=None)
def test_int64_is_exact_or_overflows(n):
    v, code = int64(str(n))
    if -(2**63) <= n < 2**63:
        assert (v, code) == (n, OK)
    else:
        assert code == INT_OVERFLOW


def test_int64_edges():
    assert int64("9223372036854775807") == (2**63 - 1, OK)
    assert int64("-9223372036854775808") == (-(2**63), OK)
    assert int64("9223372036854775808")[1] == INT_OVERFLOW
    assert int64("-9223372036854775809")[1] == INT_OVERFLOW
    assert int64("-0") == (0, OK)


def test_uint64_edges():
    def u(text):
        v, code = parse_uint64(_buf(text), 0, len(text))
        return int(v), int(code)

    assert u("18446744073709551615") == (2**64 - 1, OK)
    assert u("18446744073709551616")[1] == INT_OVERFLOW
    assert u("-0") == (0, OK)
    assert u("-1")[1] == OUT_OF_RANGE


def float_bits(text: str) -> tuple[bytes | None, int]:
    v, status = parse_float(_buf(text), 0, len(text))
    return struct.pack("<d", v), int(status)


def check_float(text: str) -> None:
    bits, status = float_bits(text)
    ref = float(text)
    if status == FLOAT_OVERFLOW:
        assert ref in (float("inf"), float("-inf")), text
    elif status == FLOAT_EXACT:
        assert bits == struct.pack("<d", ref), text
    else:
        assert status == FLOAT_FALLBACK


EDGES = [
    "0", "-0", "0.0", "1", "0.1", "0.30000000000000004", "2.2250738585072011e-308", "2.2250738585072014e-308",
    "4.9406564584124654e-324", "2.4703282292062327e-324", "2.4703282292062328e-324", "1e308", "1.7976931348623157e308",
    "1.7976931348623158e308", "1.7976931348623159e308", "9007199254740993", "9007199254740992", "1e23", "8.5e-323",
    "123456789012345678901234567890e-20", "0.000000000000000000000000000001", "1" + "0" * 400 + "e-400",
    "3.141592653589793238462643383279502884197169399375105820974944", "7e-400", "1e400", "-1e400",
]  # fmt: skip


def test_float_edges():
    for text in EDGES:
        check_float(text)
    assert float_bits("1e400")[1] == FLOAT_OVERFLOW
    assert float_bits("7e-400") == (struct.pack("<d", 0.0), FLOAT_EXACT)


@given(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["%r", "%.17g", "%.25e", "%.16e", "%.40g", "%.3f"]),
)
@settings(max_examples=1500, deadline=None)
def test_formatted_doubles_round_trip_exactly(x, fmt):
    text = repr(x) if fmt == "%r" else fmt % x
    check_float(text.replace("inf", "1"))


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=10**25), st.integers(-360, 330))
@settings(max_examples=1500, deadline=None)
def test_long_mantissas_and_exponents(i, f, e):
    check_float(f"{i}.{f}e{e}")


def test_exponents_that_many_digits_make_up_for():
    # a seven-digit exponent offset by a million digits: the value is ordinary
    assert float_bits("0." + "0" * 1_000_001 + "1e1000005") == (struct.pack("<d", 1000.0), FLOAT_EXACT)
    check_float("1" + "0" * 1_000_000 + "e-1000000")  # 1.0, not out of range
    check_float("1e-99999999999999999999999")  # saturates, and still rounds to zero
    check_float("1e+99999999999999999999999")


def test_fallback_is_rare_on_ordinary_data():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(2000), rng.normal(0, 1e6, 2000), rng.uniform(0, 500, 2000).round(2)])
    statuses = [float_bits(repr(float(v)))[1] for v in values]
    assert statuses.count(FLOAT_FALLBACK) <= 6  # Eisel-Lemire settles virtually all of them


def naive_float32_halfway(v: float) -> bool:
    """Whether v is the exact mean of two adjacent float32s (2**128 counting as the one past
    the largest), found by exact arithmetic over the float32s around it."""
    with np.errstate(over="ignore"):
        f = np.float32(v)
        if np.isinf(f):
            f = np.float32(np.copysign(3.4028234663852886e38, v))
        around = [f, np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))]
    exact = sorted(Fraction(float(c)) if np.isfinite(c) else Fraction(int(np.sign(c)) * 2**128) for c in around)
    return any((a + b) / 2 == Fraction(v) for a, b in zip(exact, exact[1:], strict=False))


def _f32(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


@given(st.integers(0, 0x7F7FFFFF), st.sampled_from([-1, 0, 1]), st.booleans())
@settings(max_examples=1500, deadline=None)
def test_float32_halfway_finds_exactly_the_midpoints(bits, nudge, negative):
    low = _f32(bits)
    high = _f32(bits + 1) if bits < 0x7F7FFFFF else 2.0**128
    v = (low + high) / 2  # exact: float64 holds every float32 midpoint
    if nudge:
        v = float(np.nextafter(v, np.inf * nudge))
    v = -v if negative else v
    assert float32_halfway(v) == naive_float32_halfway(v)
    assert float32_halfway(v) == (nudge == 0)


def test_float32_halfway_edges():
    for v in [0.0, -0.0, 1.0, 0.1, 2.0**-150, 2.0**-149, 3 * 2.0**-150, 2.0**128 - 2.0**103, 2.0**128, 1e300, 5e-324]:
        assert float32_halfway(v) == naive_float32_halfway(v), v
