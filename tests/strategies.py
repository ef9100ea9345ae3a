"""Generators for Quiver's property tests: valid messages over a schema, and mutations.

Hypothesis draws one integer seed per message; a seeded ``random.Random`` then builds the
message. One draw per message keeps generation cheap enough to feed hundreds of messages
per example (drawing every character through hypothesis costs ~50 ms per message), and the
generators below weight their choices toward edge cases themselves (type bounds, halfway
floats, astral characters, escapes). Failures are reported with the exact message bytes.

A message is first a ``Msg``: ordered (key literal, value literal) pairs plus whitespace,
so structural mutations (repeat a key, nest too deep) act on the structure and byte
mutations on the rendering.
"""

from __future__ import annotations

import base64
import math
import random
import struct
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np
from hypothesis import strategies as st

from tests.reference import _INT_RANGES, FieldSpec, RefSchema

SEEDS = st.integers(0, 2**64 - 1)

# ---------------------------------------------------------------------------------------------
# strings

_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MUST_ESCAPE = {'"', "\\"} | {chr(c) for c in range(0x20)}
SPECIAL_CHARS = list('"\\/\b\f\n\r\t\x00\x01\x1f\x7f') + [
    "\u0080",
    "\u00e9",
    "\u07ff",
    "\u0800",
    "\ud7ff",
    "\ue000",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "\u2028",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
]


#: Every type Quiver has, with a rule of each kind: the field lines of a stream config
#: (a str.format template: braces doubled) shared by the property tests and the fuzzer.
ALL_TYPES_FIELDS = """\
      i8: {{type: int8}}
      i16: {{type: int16}}
      i32: {{type: int32}}
      i64: {{type: int64}}
      u8: {{type: uint8}}
      u16: {{type: uint16}}
      u32: {{type: uint32}}
      u64: {{type: uint64}}
      f64: {{type: float64}}
      f32: {{type: float32}}
      s: {{type: string}}
      ok: {{type: bool}}
      ts_s: {{type: "timestamp[s]"}}
      ts_ms: {{type: "timestamp[ms]"}}
      ts_us: {{type: "timestamp[us, tz=UTC]"}}
      ts_ns: {{type: "timestamp[ns]"}}
      day: {{type: date32}}
      blob: {{type: binary}}
      event: {{type: enum, enum: [click, view, purchase, "ünï", "a\\"b"]}}
      kind: {{type: string, enum: [x, y]}}
      extra: {{type: json}}
      user_id: {{type: int64, required: true, min: 1}}
      ua: {{type: string, min_length: 2, max_length: 5}}
      price: {{type: float64, min: -1.5, max: 1000000}}
      small: {{type: int32, min: -10, max: 10}}
"""


def rand_char(rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.45:
        return chr(rnd.randint(0x20, 0x7E))
    if r < 0.65:
        return rnd.choice(SPECIAL_CHARS)
    if r < 0.85:
        cp = rnd.randint(0x80, 0xFFFF)
        return chr(cp) if not 0xD800 <= cp <= 0xDFFF else "\u00e9"
    return chr(rnd.randint(0x10000, 0x10FFFF))


def rand_text(rnd: random.Random, lo: int = 0, hi: int = 12) -> str:
    return "".join(rand_char(rnd) for _ in range(rnd.randint(lo, hi)))


def encode_string(s: str, rnd: random.Random, escape_rate: float = 0.25) -> str:
    """A JSON string literal for s, escaping characters at random (always where required)."""
    out = ['"']
    for ch in s:
        if ch not in _MUST_ESCAPE and rnd.random() >= escape_rate:
            out.append(ch)
            continue
        cp = ord(ch)
        if ch in _SHORT and rnd.random() < 0.6:
            out.append(_SHORT[ch])
        elif cp >= 0x10000:
            v = cp - 0x10000
            out.append(_hex_escape(0xD800 + (v >> 10), rnd) + _hex_escape(0xDC00 + (v & 0x3FF), rnd))
        else:
            out.append(_hex_escape(cp, rnd))
    out.append('"')
    return "".join(out)


def _hex_escape(cp: int, rnd: random.Random) -> str:
    text = f"{cp:04x}"
    return "\\u" + (text.upper() if rnd.random() < 0.5 else text)


# ---------------------------------------------------------------------------------------------
# numbers

EDGE_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    1e-323,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    1.7976931348623157e308,
    0.1,
    1 / 3,
    9007199254740993.0,
    2.0**53,
    1e23,
    8.98846567431158e307,
    3.4028234663852886e38,
    1.401298464324817e-45,
]
FAMOUS_FLOATS = [
    "2.2250738585072011e-308",
    "2.2250738585072012e-308",
    "4.9406564584124654e-324",
    "2.4703282292062327e-324",
    "2.4703282292062328e-324",
    "1.7976931348623157e308",
    "1.7976931348623158e308",
    "1.7976931348623159e308",
    "9007199254740993",
    "9007199254740992.5",
    "0.1",
    "1e23",
    "8.98846567431158e307",
    "0e999999999999999999999999",
    "1e-999999999999999999999999",
    "0.000000000000000000000000000000000000000000001e45",
    "100000000000000000000000000000000000000000000000e-48",
    "1e309",
    "-1e309",
    "123456789012345678901234567890",
    "-0",
    "-0.0e-0",
    "1E+2",
    "3.4028235677973366e38",
    "3.4028235677973362e38",
    "7.0064923216240854e-46",
    "7.006492321624086e-46",
]
_FORMATS = ["repr", "repr", "%.17g", "%.25e", "%.40g", "%.16e", "%.0e", "%.3e", "%.20f"]


def rand_double(rnd: random.Random) -> float:
    """A finite double: edge values, uniformly random bit patterns, subnormals, 'nice' values."""
    r = rnd.random()
    if r < 0.15:
        x = rnd.choice(EDGE_FLOATS)
    elif r < 0.55:
        while True:
            x = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
            if math.isfinite(x):
                break
    elif r < 0.7:
        x = struct.unpack("<d", rnd.getrandbits(52).to_bytes(8, "little"))[0]  # subnormal
    else:
        x = rnd.randint(-(10**6), 10**6) / 10 ** rnd.randint(0, 8)
    return -x if rnd.random() < 0.2 else x


def format_double(x: float, rnd: random.Random) -> str:
    how = rnd.choice(_FORMATS)
    text = repr(x) if how == "repr" else how % x
    return text.replace("e", "E") if rnd.random() < 0.3 else text


def long_mantissa(rnd: random.Random) -> str:
    """A JSON number with up to ~800 significant digits and a random exponent."""
    digits = "0123456789"
    lead = rnd.choice(["0", "1", "9", "4", "12345678901234567890"])
    ip = lead if lead == "0" else lead + "".join(rnd.choice(digits) for _ in range(rnd.randint(0, 30)))
    text = ("-" if rnd.random() < 0.3 else "") + ip
    if rnd.random() < 0.8:
        n = rnd.choice([1, 5, 17, 18, 19, 20, 40, 100, 400, 800])
        frac = "".join(rnd.choice(digits) for _ in range(n))
        if rnd.random() < 0.3:
            frac = "0" * rnd.randint(1, 300) + frac
        text += "." + frac
    if rnd.random() < 0.6:
        exp = rnd.randint(-420, 420)
        sign = "-" if exp < 0 else rnd.choice(["", "+"])
        text += rnd.choice("eE") + sign + "0" * rnd.randint(0, 2) + str(abs(exp))
    return text


def decimal_text(d: Decimal) -> str:
    """A JSON number literal for a finite Decimal, all digits kept."""
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)) or "0"
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return ("-" if sign else "") + mant + f"e{len(ds) - 1 + exp}"


def halfway(rnd: random.Random) -> str:
    """The exact midpoint between two adjacent doubles, or a hair above or below it."""
    x = abs(rand_double(rnd))
    if x >= 1.7976931348623157e308:
        x = 1.0
    y = math.nextafter(x, math.inf)
    with localcontext() as ctx:
        ctx.prec = 2000
        mid = (Decimal(x) + Decimal(y)) / 2
        nudge = rnd.choice([0, 1, -1])
        if nudge:
            mid += nudge * Decimal(10) ** (mid.adjusted() - rnd.randint(17, 900))
    return ("-" if rnd.random() < 0.3 else "") + decimal_text(mid)


def halfway32(rnd: random.Random) -> str:
    """The exact midpoint between two adjacent float32s (subnormals included), or a nudge
    above or below it small enough that float64 lands on it: where rounding through
    float64 goes wrong. Always in range: past the largest float32 only the nudge below,
    which must round to the largest."""
    bits = rnd.choice([rnd.getrandbits(31) % 0x7F7FFFFF, rnd.randint(0, 5), 0x7F7FFFFF, 0x007FFFFF])
    x = struct.unpack("<f", bits.to_bytes(4, "little"))[0]
    with np.errstate(over="ignore"):
        y = float(np.nextafter(np.float32(x), np.float32(np.inf)))
    top = math.isinf(y)
    with localcontext() as ctx:
        ctx.prec = 2000
        mid = (Decimal(x) + Decimal(2.0**128 if top else y)) / 2
        nudge = -1 if top else rnd.choice([0, 1, -1])
        if nudge:
            mid += nudge * Decimal(10) ** (mid.adjusted() - rnd.randint(17, 60))
    return ("-" if rnd.random() < 0.3 else "") + decimal_text(mid)


def float_text(rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.45:
        return format_double(rand_double(rnd), rnd)
    if r < 0.7:
        return long_mantissa(rnd)
    if r < 0.92:
        return halfway(rnd)
    return rnd.choice(FAMOUS_FLOATS)


FLOAT_TEXT = SEEDS.map(lambda s: float_text(random.Random(s)))


def finite_float_text(rnd: random.Random, lo: float = -math.inf, hi: float = math.inf) -> str:
    for _ in range(100):
        t = float_text(rnd)
        if math.isfinite(float(t)) and lo <= float(t) <= hi:
            return t
    return repr(max(lo, min(hi, 0.0)))


def rand_int(rnd: random.Random, lo: int, hi: int) -> int:
    if rnd.random() < 0.35:
        return rnd.choice([x for x in (lo, hi, lo + 1, hi - 1, 0, 1, -1) if lo <= x <= hi])
    bits = rnd.randint(0, max(lo.bit_length(), hi.bit_length()))
    v = rnd.getrandbits(bits) if bits else 0
    if lo < 0 and rnd.random() < 0.5:
        v = -v
    return max(lo, min(hi, v))


def int_text(rnd: random.Random, lo: int, hi: int) -> str:
    v = rand_int(rnd, lo, hi)
    return "-0" if v == 0 and rnd.random() < 0.2 else str(v)


# ---------------------------------------------------------------------------------------------
# dates and times

_UNIT_YEARS = {"s": (1, 9999), "ms": (1, 9999), "us": (1, 9999), "ns": (1679, 2261)}
_DIM = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def rand_date(rnd: random.Random, y0: int = 1, y1: int = 9999) -> tuple[int, int, int]:
    y = rnd.choice([y0, y1, 1970, 2000, 1900, 2024, rnd.randint(y0, y1), rnd.randint(y0, y1)])
    m = rnd.randint(1, 12)
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    dim = 29 if m == 2 and leap else _DIM[m - 1]
    return y, m, rnd.choice([1, dim, rnd.randint(1, dim)])


def rfc3339_text(rnd: random.Random, unit: str) -> str:
    y0, y1 = _UNIT_YEARS[unit]
    y, m, d = rand_date(rnd, y0 + 1, y1 - 1)
    hh, mi, ss = rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59)
    text = f"{y:04d}-{m:02d}-{d:02d}{rnd.choice('TTt ')}{hh:02d}:{mi:02d}:{ss:02d}"
    nfrac = rnd.choice([0, 0, 1, 3, 6, 9, 12, 20])
    if nfrac:
        text += "." + "".join(rnd.choice("0123456789") for _ in range(nfrac))
    if rnd.random() < 0.4:
        text += rnd.choice(["Z", "z", "+00:00", "-00:00"])
    else:
        off = rnd.randint(-(23 * 60 + 59), 23 * 60 + 59)
        text += ("+" if off >= 0 else "-") + f"{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    return '"' + text + '"'


# ---------------------------------------------------------------------------------------------
# nested JSON values (for json fields and unknown keys)


def ws(rnd: random.Random, newlines: bool = False) -> str:
    if rnd.random() < 0.7:
        return ""
    pool = " \t\r\n" if newlines else " \t\r"
    return "".join(rnd.choice(pool) for _ in range(rnd.randint(1, 3)))


def json_text(rnd: random.Random, depth: int = 4, newlines: bool = False) -> str:
    """A random well-formed JSON value, nested at most ``depth`` containers deep."""
    r = rnd.random()
    if depth > 0 and r < 0.15:
        items = [json_text(rnd, depth - 1, newlines) for _ in range(rnd.randint(0, 4))]
        return (
            "["
            + ",".join(ws(rnd, newlines) + x + ws(rnd, newlines) for x in items)
            + ws(rnd, newlines) * (not items)
            + "]"
        )
    if depth > 0 and r < 0.3:
        keys = list(dict.fromkeys(rand_text(rnd, 0, 4) for _ in range(rnd.randint(0, 4))))
        parts = [
            ws(rnd, newlines)
            + encode_string(k, rnd)
            + ws(rnd, newlines)
            + ":"
            + ws(rnd, newlines)
            + json_text(rnd, depth - 1, newlines)
            + ws(rnd, newlines)
            for k in keys
        ]
        return "{" + ",".join(parts) + ws(rnd, newlines) * (not parts) + "}"
    if r < 0.45:
        return encode_string(rand_text(rnd), rnd)
    if r < 0.6:
        return float_text(rnd)
    if r < 0.75:
        return str(rand_int(rnd, -(10**30), 10**30))
    return rnd.choice(["true", "false", "null"])


# ---------------------------------------------------------------------------------------------
# field values


def value_text(spec: FieldSpec, rnd: random.Random) -> str:
    """A valid literal for one field (never null)."""
    t = spec.type
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        if spec.min is not None:
            lo = max(lo, int(spec.min))
        if spec.max is not None:
            hi = min(hi, int(spec.max))
        return int_text(rnd, lo, hi)
    if t == "float64":
        lo = -math.inf if spec.min is None else float(spec.min)
        hi = math.inf if spec.max is None else float(spec.max)
        return finite_float_text(rnd, lo, hi)
    if t == "float32":
        r = rnd.random()
        if r < 0.4:
            x = struct.unpack("<f", rnd.getrandbits(32).to_bytes(4, "little"))[0]
            return repr(x) if math.isfinite(x) else "1.5"
        if r < 0.6:
            return halfway32(rnd)
        return finite_float_text(rnd, -3.4e38, 3.4e38)
    if t == "bool":
        return rnd.choice(["true", "false"])
    if t == "json":
        return json_text(rnd, depth=rnd.randint(0, 6))
    if t == "timestamp":
        if rnd.random() < 0.4:
            return int_text(rnd, -(2**63), 2**63 - 1)
        return rfc3339_text(rnd, spec.unit)
    if t == "date32":
        y, m, d = rand_date(rnd)
        return f'"{y:04d}-{m:02d}-{d:02d}"'
    if t == "binary":
        data = rnd.randbytes(rnd.choice([0, 1, 2, 3, rnd.randint(0, 40)]))
        text = base64.b64encode(data).decode("ascii")
        return '"' + (text.replace("/", "\\/") if rnd.random() < 0.2 else text) + '"'
    if spec.enum is not None:
        return encode_string(str(rnd.choice(spec.enum)), rnd)
    if t == "string":
        lo = spec.min_length or 0
        hi = spec.max_length if spec.max_length is not None else 24
        return encode_string(rand_text(rnd, lo, hi), rnd)
    raise ValueError(t)


# ---------------------------------------------------------------------------------------------
# messages


@dataclass
class Msg:
    """One JSON object message as (key literal, value literal) pairs plus rendering choices."""

    pairs: list[tuple[str, str]]
    seed: int
    newlines: bool = False
    lead: str = ""
    trail: str = ""

    def render(self) -> bytes:
        rnd = random.Random(self.seed)
        nl = self.newlines
        body = ",".join(ws(rnd, nl) + k + ws(rnd, nl) + ":" + ws(rnd, nl) + v + ws(rnd, nl) for k, v in self.pairs)
        return (self.lead + "{" + (body or ws(rnd, nl)) + "}" + self.trail).encode("utf-8")


def gen_message(schema: RefSchema, rnd: random.Random, newlines: bool = False) -> Msg:
    """A message every strict parser must accept for ``schema``."""
    pairs = []
    for spec in schema.fields:
        choice = rnd.choice(["value", "value", "value", "absent", "null"])
        if spec.required and choice == "absent":
            choice = "value"
        if choice == "null" and not spec.nullable:
            choice = "value"
        if choice != "absent":
            value = "null" if choice == "null" else value_text(spec, rnd)
            pairs.append((encode_string(spec.name, rnd, escape_rate=0.0), value))
    if schema.unknown_fields == "ignore":
        used = {f.name for f in schema.fields}
        for _ in range(rnd.choice([0, 0, 1, 2, 3])):
            k = rand_text(rnd, 0, 6)
            if k not in used:
                used.add(k)
                pairs.append((encode_string(k, rnd), json_text(rnd, depth=rnd.randint(0, 5), newlines=newlines)))
    rnd.shuffle(pairs)
    return Msg(pairs, rnd.getrandbits(32), newlines, ws(rnd, newlines), ws(rnd, newlines))


def batch_seeds(max_size: int) -> st.SearchStrategy[list[int]]:
    """Per-message seeds for a batch of 1..max_size messages, sizes spread evenly.

    Half the time the list comes from hypothesis itself (which shrinks it message by
    message); otherwise a size and a base seed, so big batches are as common as small ones.
    """
    drawn = st.lists(SEEDS, min_size=1, max_size=max_size)
    spread = st.tuples(st.integers(1, max_size), SEEDS).map(lambda t: [t[1] * 1_000_003 + k for k in range(t[0])])
    return st.one_of(drawn, spread)


def messages(schema: RefSchema, newlines: bool = False, max_size: int = 100) -> st.SearchStrategy[list[bytes]]:
    """Lists of valid messages for ``schema``."""
    return batch_seeds(max_size).map(
        lambda seeds: [gen_message(schema, random.Random(s), newlines).render() for s in seeds]
    )


# ---------------------------------------------------------------------------------------------
# mutations

INTERESTING_BYTES = list(b'{}[]",:\\/ \t\r\n-+.0123456789eEtfnuTZ') + [
    0x00,
    0x01,
    0x08,
    0x1F,
    0x7F,
    0x80,
    0xBF,
    0xC0,
    0xC3,
    0xED,
    0xF4,
    0xF5,
    0xFF,
]
BAD_UTF8 = [
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
    b"\xbf",
    b"\xfe",
    b"\xff",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc3",
]
BAD_ESCAPES = [
    b"\\x",
    b"\\u12",
    b"\\u12G4",
    b"\\a",
    b"\\'",
    b"\\U0041",
    b"\\0",
    b"\\",
    b"\\u",
    b"\\ ",
    b"\\\n",
    b"\\u00e",
]
LONE_SURROGATES = [
    b"\\ud800",
    b"\\udfff",
    b"\\ud83dx",
    b"\\ude00",
    b"\\uDBFF\\uDBFF",
    b"\\ud800\\u0041",
    b"\\uDC00\\uD800",
    b"\\uD834",
]
COMMENTS = [b"/*c*/", b"//c", b"/**/", b"#c"]
BAD_VALUES = [
    "NaN", "Infinity", "-Infinity", "nul", "tru", "True", "None", ".5", "+1", "0x10", "1.", "1e", "-", "01", "-01", "00",
    "1_000", "'x'", '"\x00"', "undefined", "1.e5", ".e1", "--1", "1e+", "[1,]", '{"a":1,}', "[,1]", "{,}", '"\\x"', "[1 2]",
    '{"a" 1}', '{"a":}', "{1:2}", "[", "]", "{", '"abc', "\u00a0", "\ufeff1", "\u0661", "1 2", '"2024-01-01T00:00:60Z"',
    '"2023-02-29"', '"2024-13-01T00:00:00Z"', '"2024-01-01T00:00:00"', '"QQ="', '"QQ=="', '"Q"', '"QR=="', "1.0", "1e0",
    '"1"', "[]", "{}", "false",
]  # fmt: skip
EDGE_INTS = [
    -(2**63) - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**64),
    128,
    -129,
    256,
    65536,
    2**31,
    -(2**31) - 1,
    2**32,
    -1,
    11,
    -11,
    0,
    10**30,
]
MUTATIONS = [
    "none", "insert", "delete", "replace", "truncate", "dup_key", "dup_key_escaped", "nested_dup", "trailing_comma",
    "leading_zero", "comment", "control", "bad_escape", "bad_utf8", "lone_surrogate", "split_pair", "deep", "bad_value",
    "swap_value", "swap_key", "drop_pair", "edge_int", "two",
]  # fmt: skip


def string_body_positions(raw: bytes) -> list[int]:
    """Positions inside string literals of a well-formed message, at character starts."""
    out, in_str, esc = [], False, False
    for i, c in enumerate(raw):
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:
                out.append(i)
                esc = True
            elif c == 0x22:
                out.append(i)
                in_str = False
            elif c < 0x80 or c >= 0xC0:
                out.append(i)
        elif c == 0x22:
            in_str = True
    return out


def nest(depth: int, rnd: random.Random) -> str:
    """A value of exactly ``depth`` nested containers."""
    opens, closes = [], []
    for _ in range(depth):
        if rnd.random() < 0.5:
            opens.append("[")
            closes.append("]")
        else:
            opens.append('{"k":')
            closes.append("}")
    return "".join(opens) + rnd.choice(["1", '"x"', "null"]) + "".join(reversed(closes))


def _structural(m: Msg, kind: str, schema: RefSchema, rnd: random.Random) -> None:
    specs = schema.fields
    json_keys = [encode_string(f.name, rnd, 0.0) for f in specs if f.type == "json"] + ['"unknown~"']
    if kind == "dup_key" and m.pairs:
        k, _ = rnd.choice(m.pairs)
        spec = next((f for f in specs if encode_string(f.name, rnd, 0.0) == k), None)
        v = value_text(spec, rnd) if spec is not None else json_text(rnd, 2)
        m.pairs.insert(rnd.randint(0, len(m.pairs)), (k, v))
    elif kind == "dup_key_escaped":
        spec = rnd.choice(specs)
        m.pairs.insert(rnd.randint(0, len(m.pairs)), (encode_string(spec.name, rnd, 1.0), value_text(spec, rnd)))
    elif kind == "nested_dup":
        k = rand_text(rnd, 0, 3)
        inner = "{" + encode_string(k, rnd) + ":1," + encode_string(k, rnd, 1.0) + ":2}"
        inner = rnd.choice([inner, "[" + inner + "]", '{"z":[0,' + inner + "]}"])
        key = rnd.choice(json_keys)
        m.pairs = [p for p in m.pairs if p[0] != key] + [(key, inner)]
    elif kind == "deep":
        d = schema.max_depth
        depth = rnd.choice([rnd.randint(d - 3, d + 2), rnd.randint(1, d + 20)])
        key = rnd.choice(json_keys)
        m.pairs = [p for p in m.pairs if p[0] != key] + [(key, nest(depth, rnd))]
        rnd.shuffle(m.pairs)
    elif kind in ("bad_value", "swap_value", "edge_int") and m.pairs:
        i = rnd.randrange(len(m.pairs))
        if kind == "bad_value":
            v = rnd.choice(BAD_VALUES)
        elif kind == "swap_value":
            v = value_text(rnd.choice(specs), rnd)
        else:
            v = str(rnd.choice(EDGE_INTS))
        m.pairs[i] = (m.pairs[i][0], v)
    elif kind == "swap_key" and m.pairs:
        i = rnd.randrange(len(m.pairs))
        m.pairs[i] = (encode_string(rnd.choice(specs).name, rnd, 0.0), m.pairs[i][1])
    elif kind == "drop_pair" and m.pairs:
        del m.pairs[rnd.randrange(len(m.pairs))]


def _bytewise(raw: bytearray, kind: str, rnd: random.Random) -> None:
    strings = string_body_positions(bytes(raw))

    def pos(in_string: bool = False) -> int:
        if in_string and strings:
            return rnd.choice(strings)
        return rnd.randint(0, len(raw))

    def byte() -> int:
        return rnd.choice(INTERESTING_BYTES) if rnd.random() < 0.6 else rnd.randint(0, 255)

    if kind == "insert":
        raw.insert(pos(rnd.random() < 0.3), byte())
    elif kind == "delete" and raw:
        del raw[min(pos(), len(raw) - 1)]
    elif kind == "replace" and raw:
        raw[min(pos(), len(raw) - 1)] = byte()
    elif kind == "truncate":
        first = raw.find(b"{") + 1 or 1  # keep the opening brace: no whitespace-only message
        del raw[rnd.randint(first, max(first, len(raw) - 1)) :]
    elif kind == "trailing_comma":
        closers = [i for i, c in enumerate(raw) if c in b"]}"]
        if closers:  # a truncation before may have removed them all
            raw.insert(rnd.choice(closers), ord(","))
    elif kind == "leading_zero":
        inside = set(strings)
        starts = [
            i for i, c in enumerate(raw) if 0x30 <= c <= 0x39 and i not in inside and raw[i - 1] in b":[, \t\r\n-"
        ]
        if starts:
            raw.insert(rnd.choice(starts), ord("0"))
    elif kind == "comment":
        at = pos()
        raw[at:at] = rnd.choice(COMMENTS)
    elif kind == "control":
        raw.insert(pos(rnd.random() < 0.7), rnd.randint(0, 0x1F))
    elif kind == "bad_escape":
        at = pos(True)
        raw[at:at] = rnd.choice(BAD_ESCAPES)
    elif kind == "bad_utf8":
        at = pos(rnd.random() < 0.75)
        raw[at:at] = rnd.choice(BAD_UTF8)
    elif kind == "lone_surrogate":
        at = pos(True)
        raw[at:at] = rnd.choice(LONE_SURROGATES)
    elif kind == "split_pair":
        text = bytes(raw).lower()
        hits = [i for i in range(len(text) - 11) if text[i : i + 4] in (b"\\ud8", b"\\ud9", b"\\uda", b"\\udb")]
        if hits:
            cut = rnd.choice(hits) + rnd.choice([0, 6])
            del raw[cut : cut + 6]


def gen_mutated(schema: RefSchema, rnd: random.Random) -> bytes:
    """A valid message changed by one (sometimes two) random mutations."""
    m = gen_message(schema, rnd, newlines=True)
    kinds = [rnd.choice(MUTATIONS)]
    if kinds[0] == "two":
        kinds = [rnd.choice(MUTATIONS[:-1]), rnd.choice(MUTATIONS[:-1])]
    for kind in kinds:
        _structural(m, kind, schema, rnd)
    raw = bytearray(m.render())
    for kind in kinds:
        _bytewise(raw, kind, rnd)
    return bytes(raw)


def mutated_messages(schema: RefSchema, max_size: int = 100) -> st.SearchStrategy[list[bytes]]:
    """Lists of mutated messages for ``schema``."""
    return batch_seeds(max_size).map(lambda seeds: [gen_mutated(schema, random.Random(s)) for s in seeds])
