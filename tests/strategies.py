"""Hypothesis strategies for Quiver's property tests: valid messages over a schema, and
mutations of them.

A generated message is a ``Msg``: an ordered list of (key text, value text) pairs plus
the whitespace between tokens, so structural mutations (repeat a key, add a trailing comma,
nest a value too deep) can act on the structure and byte mutations on the rendering.
Formatting choices (escapes, whitespace) come from a hypothesis-controlled ``Random`` so one
draw covers many of them cheaply.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from hypothesis import strategies as st

from tests.reference import FieldSpec, RefSchema

_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MUST_ESCAPE = {'"', "\\"} | {chr(c) for c in range(0x20)}


def encode_string(s: str, rnd: random.Random, escape_rate: float = 0.3) -> str:
    """A JSON string literal for s, escaping characters at random (always where required)."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch not in _MUST_ESCAPE and rnd.random() >= escape_rate:
            out.append(ch)
            continue
        r = rnd.random()
        if ch in _SHORT and r < 0.6:
            out.append(_SHORT[ch])
        elif cp >= 0x10000:
            v = cp - 0x10000
            hi, lo = 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)
            out.append(_hex_escape(hi, rnd) + _hex_escape(lo, rnd))
        else:
            out.append(_hex_escape(cp, rnd))
    out.append('"')
    return "".join(out)


def _hex_escape(cp: int, rnd: random.Random) -> str:
    text = f"{cp:04x}"
    if rnd.random() < 0.5:
        text = text.upper()
    return "\\u" + text


# Characters: everything but surrogates, weighted toward the interesting ones.
CHARS = st.one_of(
    st.characters(exclude_categories=["Cs"]),
    st.sampled_from(list('"\\/\b\f\n\r\t\x00\x1f\x7f\u0080\u07ff\u0800\uffff\ufeff\u2028é') + ["\U00010000", "\U0010ffff", "\U0001f600"]),
)
TEXT = st.text(CHARS, max_size=16)

# ---------------------------------------------------------------------------------------------
# numbers

FINITE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.0, max_value=2.3e-308),  # subnormals and the normal boundary
    st.sampled_from(
        [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308, 0.1, 1 / 3, 9007199254740993.0, 2.0**53, 1e23, 8.98846567431158e307]
    ),
)
_FORMATS = ["repr", "%.17g", "%.25e", "%.40g", "%.16e", "%.0e", "%.3e", "%.20f", "%.330f"]


def _format(x: float, how: str) -> str:
    text = repr(x) if how == "repr" else how % x
    return text


@st.composite
def formatted_float(draw) -> str:
    x = draw(FINITE)
    text = _format(x, draw(st.sampled_from(_FORMATS)))
    if draw(st.booleans()):
        text = text.replace("e", "E")
    return text


@st.composite
def long_mantissa(draw) -> str:
    """A JSON number with up to ~800 significant digits and a random exponent."""
    sign = draw(st.sampled_from(["", "-"]))
    lead = draw(st.sampled_from(["0", "1", "9", "4", "12345678901234567890"]))
    int_digits = lead if lead == "0" else lead + draw(st.text("0123456789", max_size=30))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=800)))
    text = sign + int_digits + ("." + frac if frac else "")
    if draw(st.booleans()):
        exp = draw(st.integers(-420, 420))
        zeros = "0" * draw(st.integers(0, 3))
        esign = "-" if exp < 0 else draw(st.sampled_from(["", "+"]))
        text += draw(st.sampled_from(["e", "E"])) + esign + zeros + str(abs(exp))
    return text


def decimal_text(d: Decimal) -> str:
    """A JSON number literal for a finite Decimal, all digits kept."""
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)) or "0"
    adjusted = len(ds) - 1 + exp
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return ("-" if sign else "") + mant + f"e{adjusted}"


@st.composite
def halfway_float(draw) -> str:
    """The exact midpoint between two adjacent doubles, or a hair above or below it:
    the inputs where a sloppy parser rounds the wrong way."""
    x = abs(draw(FINITE))
    if x >= 1.7976931348623157e308:
        x = 1.0
    y = math.nextafter(x, math.inf)
    with localcontext() as ctx:
        ctx.prec = 2000
        mid = (Decimal(x) + Decimal(y)) / 2
        nudge = draw(st.sampled_from([0, 1, -1]))
        if nudge:
            mid += nudge * Decimal(10) ** (mid.adjusted() - draw(st.integers(17, 900)))
    text = decimal_text(mid)
    if draw(st.booleans()):
        text = "-" + text
    return text


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
]
FLOAT_TEXT = st.one_of(formatted_float(), long_mantissa(), halfway_float(), st.sampled_from(FAMOUS_FLOATS))


def finite_float_text(lo: float = -math.inf, hi: float = math.inf) -> st.SearchStrategy[str]:
    """FLOAT_TEXT restricted to texts whose float(text) is finite and inside [lo, hi]."""
    return FLOAT_TEXT.filter(lambda t: lo <= float(t) <= hi and not math.isinf(float(t)))


def int_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    edges = sorted({x for x in (lo, hi, lo + 1, hi - 1, 0, 1, -1) if lo <= x <= hi})
    ints = st.one_of(st.sampled_from(edges), st.integers(lo, hi))
    return ints.map(str) | (st.just("-0") if lo <= 0 <= hi else st.nothing())


# ---------------------------------------------------------------------------------------------
# dates and times

_UNIT_YEARS = {"s": (1, 9999), "ms": (1, 9999), "us": (1, 9999), "ns": (1678, 2261)}


@st.composite
def rfc3339_text(draw, unit: str) -> str:
    y0, y1 = _UNIT_YEARS[unit]
    when = draw(st.datetimes(min_value=dt.datetime(y0 + 1, 1, 1), max_value=dt.datetime(y1 - 1, 12, 31)))
    sep = draw(st.sampled_from(["T", "T", "t", " "]))
    text = f"{when.year:04d}-{when.month:02d}-{when.day:02d}{sep}{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    nfrac = draw(st.sampled_from([0, 0, 1, 3, 6, 9, 12, 20]))
    if nfrac:
        text += "." + "".join(str(draw(st.integers(0, 9))) for _ in range(nfrac))
    off = draw(st.one_of(st.sampled_from(["Z", "z", "+00:00", "-00:00"]), st.integers(-23 * 60 - 59, 23 * 60 + 59)))
    if isinstance(off, int):
        off = ("+" if off >= 0 else "-") + f"{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    return text + off


# ---------------------------------------------------------------------------------------------
# nested JSON values (for json fields and unknown keys)


@st.composite
def json_text(draw, max_leaves: int = 10) -> str:
    rnd = draw(st.randoms(use_true_random=False))
    value = draw(
        st.recursive(
            st.one_of(
                st.none(),
                st.booleans(),
                TEXT,
                st.integers(),
                st.integers(-(10**30), 10**30),
                FLOAT_TEXT.map(lambda t: ("num", t)),
            ),
            lambda kids: st.lists(kids, max_size=4) | st.lists(st.tuples(TEXT, kids), max_size=4).map(_unique_pairs),
            max_leaves=max_leaves,
        )
    )
    return render_value(value, rnd)


def _unique_pairs(pairs):
    seen, out = set(), []
    for k, v in pairs:
        if k not in seen:
            seen.add(k)
            out.append((k, v))
    return ("obj", out)


def ws(rnd: random.Random, newlines: bool = False) -> str:
    r = rnd.random()
    if r < 0.7:
        return ""
    pool = " \t\r\n" if newlines else " \t\r"
    return "".join(rnd.choice(pool) for _ in range(rnd.randint(1, 3)))


def render_value(v, rnd: random.Random, newlines: bool = False) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return encode_string(v, rnd)
    if isinstance(v, tuple) and v[0] == "num":
        return v[1]
    if isinstance(v, tuple) and v[0] == "obj":
        if not v[1]:
            return "{" + ws(rnd, newlines) + "}"
        parts = [ws(rnd, newlines) + encode_string(k, rnd) + ws(rnd, newlines) + ":" + ws(rnd, newlines) + render_value(x, rnd, newlines) + ws(rnd, newlines) for k, x in v[1]]
        return "{" + ",".join(parts) + "}"
    if isinstance(v, list):
        if not v:
            return "[" + ws(rnd, newlines) + "]"
        return "[" + ",".join(ws(rnd, newlines) + render_value(x, rnd, newlines) + ws(rnd, newlines) for x in v) + "]"
    raise TypeError(v)


# ---------------------------------------------------------------------------------------------
# field values


def value_text(spec: FieldSpec) -> st.SearchStrategy[str]:
    """Valid literal texts for one field (never null)."""
    t = spec.type
    if t.startswith(("int", "uint")):
        from tests.reference import _INT_RANGES

        lo, hi = _INT_RANGES[t]
        if spec.min is not None:
            lo = max(lo, int(spec.min))
        if spec.max is not None:
            hi = min(hi, int(spec.max))
        return int_text(lo, hi)
    if t == "float64":
        lo = -math.inf if spec.min is None else float(spec.min)
        hi = math.inf if spec.max is None else float(spec.max)
        return finite_float_text(lo, hi)
    if t == "float32":
        return st.one_of(
            st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
            finite_float_text(-3.4e38, 3.4e38),
        )
    if t == "bool":
        return st.sampled_from(["true", "false"])
    if t == "json":
        return json_text()
    if t == "timestamp":
        return st.one_of(int_text(-(2**63), 2**63 - 1), rfc3339_text(spec.unit))
    if t == "date32":
        return st.dates(min_value=dt.date(1, 1, 1)).map(lambda d: f'"{d.year:04d}-{d.month:02d}-{d.day:02d}"')
    if t == "binary":
        return st.builds(_binary_text, st.binary(max_size=40), st.randoms(use_true_random=False))
    if spec.enum is not None:
        return st.builds(encode_string, st.sampled_from([str(e) for e in spec.enum]), st.randoms(use_true_random=False))
    if t == "string":
        lo = spec.min_length or 0
        hi = spec.max_length if spec.max_length is not None else 24
        return st.builds(encode_string, st.text(CHARS, min_size=lo, max_size=hi), st.randoms(use_true_random=False))
    raise ValueError(t)


def _binary_text(data: bytes, rnd: random.Random) -> str:
    text = base64.b64encode(data).decode("ascii")
    if rnd.random() < 0.2:
        text = text.replace("/", "\\/")
    return '"' + text + '"'


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
    tail: list[str] = field(default_factory=list)

    def render(self) -> bytes:
        rnd = random.Random(self.seed)
        nl = self.newlines
        if not self.pairs:
            body = "{" + ws(rnd, nl) + "}"
        else:
            body = "{" + ",".join(ws(rnd, nl) + k + ws(rnd, nl) + ":" + ws(rnd, nl) + v + ws(rnd, nl) for k, v in self.pairs) + "}"
        return (self.lead + body + self.trail).encode("utf-8")


@st.composite
def message(draw, schema: RefSchema, newlines: bool = False) -> Msg:
    """A message every strict parser must accept for ``schema``."""
    rnd = draw(st.randoms(use_true_random=False))
    pairs = []
    for spec in schema.fields:
        choice = draw(st.sampled_from(["value", "value", "value", "absent", "null"]))
        if spec.required and choice == "absent":
            choice = "value"
        if choice == "null" and not spec.nullable:
            choice = "value"
        if choice == "absent":
            continue
        value = "null" if choice == "null" else draw(value_text(spec))
        pairs.append((encode_string(spec.name, rnd, escape_rate=0.0), value))
    names = {f.name for f in schema.fields}
    if schema.unknown_fields == "ignore":
        extra = draw(st.lists(st.tuples(TEXT, json_text(max_leaves=6)), max_size=3))
        used = set(names)
        for k, v in extra:
            if k not in used:
                used.add(k)
                pairs.append((encode_string(k, rnd), v))
    pairs = draw(st.permutations(pairs))
    lead = ws(rnd, newlines)
    trail = ws(rnd, newlines)
    return Msg(pairs=list(pairs), seed=rnd.getrandbits(32), newlines=newlines, lead=lead, trail=trail)


# ---------------------------------------------------------------------------------------------
# mutations

INTERESTING_BYTES = list(b'{}[]",:\\/ \t\r\n-+.0123456789eEtfnuTZ') + [0x00, 0x01, 0x08, 0x1F, 0x7F, 0x80, 0xBF, 0xC0, 0xC3, 0xED, 0xF4, 0xF5, 0xFF]
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
BAD_ESCAPES = [b"\\x", b"\\u12", b"\\u12G4", b"\\a", b"\\'", b"\\U0041", b"\\0", b"\\", b"\\u", b"\\ ", b"\\\n", b"\\u00e"]
LONE_SURROGATES = [b"\\ud800", b"\\udfff", b"\\ud83dx", b"\\ude00", b"\\uDBFF\\uDBFF", b"\\ud800\\u0041", b"\\uDC00\\uD800", b"\\uD834"]
COMMENTS = [b"/*c*/", b"//c", b"/**/", b"#c"]
BAD_VALUES = [
    "NaN", "Infinity", "-Infinity", "nul", "tru", "True", "None", ".5", "+1", "0x10", "1.", "1e", "-", "01", "-01", "00",
    "1_000", "'x'", '"\x00"', "undefined", "1.e5", ".e1", "--1", "1e+", "[1,]", '{"a":1,}', "[,1]", "{,}", '"\\x"', "[1 2]",
    '{"a" 1}', '{"a":}', "{1:2}", "[", "]", "{", '"abc', "\u00a0", "\ufeff1", "\u0661", "1 2",
]
MUTATIONS = [
    "none", "insert", "delete", "replace", "truncate", "dup_key", "dup_key_escaped", "nested_dup", "trailing_comma",
    "leading_zero", "comment", "control", "bad_escape", "bad_utf8", "lone_surrogate", "split_pair", "deep", "bad_value",
    "swap_value", "swap_key", "drop_pair", "edge_int",
]


def string_body_positions(raw: bytes) -> list[int]:
    """Positions inside string literals of a well-formed message, between characters."""
    out, in_str, esc = [], False, False
    for i, c in enumerate(raw):
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:
                esc = True
            elif c == 0x22:
                in_str = False
            elif c < 0x80 or c >= 0xC0:
                out.append(i)
        elif c == 0x22:
            in_str = True
    return out


def nest(depth: int, rnd: random.Random) -> str:
    opens, closes = [], []
    for _ in range(depth):
        if rnd.random() < 0.5:
            opens.append("[")
            closes.append("]")
        else:
            opens.append('{"k":')
            closes.append("}")
    return "".join(opens) + rnd.choice(["1", '"x"', "[]", "{}", "null"]) + "".join(reversed(closes))


@st.composite
def mutated(draw, schema: RefSchema) -> bytes:
    """A message derived from a valid one by one mutation (the reference judges the result)."""
    m = draw(message(schema, newlines=True))
    kind = draw(st.sampled_from(MUTATIONS))
    rnd = draw(st.randoms(use_true_random=False))
    specs = schema.fields
    if kind == "dup_key" and m.pairs:
        k, _ = draw(st.sampled_from(m.pairs))
        spec = next((f for f in specs if encode_string(f.name, rnd, 0.0) == k), None)
        v = draw(value_text(spec)) if spec is not None else draw(json_text(max_leaves=3))
        m.pairs.insert(draw(st.integers(0, len(m.pairs))), (k, v))
    elif kind == "dup_key_escaped":
        spec = draw(st.sampled_from(specs))
        m.pairs.insert(draw(st.integers(0, len(m.pairs))), (encode_string(spec.name, rnd, 1.0), draw(value_text(spec))))
    elif kind == "nested_dup":
        k = draw(TEXT)
        inner = "{" + encode_string(k, rnd) + ":1," + encode_string(k, rnd, 1.0) + ":2}"
        inner = draw(st.sampled_from([inner, "[" + inner + "]", '{"z":[0,' + inner + "]}"]))
        key = draw(st.sampled_from([encode_string(f.name, rnd, 0.0) for f in specs if f.type == "json"] + ['"unknown~"']))
        m.pairs = [(k2, v) for k2, v in m.pairs if k2 != key] + [(key, inner)]
    elif kind == "deep":
        depth = draw(st.one_of(st.integers(schema.max_depth - 4, schema.max_depth + 3), st.integers(1, schema.max_depth + 20)))
        key = draw(st.sampled_from([encode_string(f.name, rnd, 0.0) for f in specs if f.type == "json"] + ['"unknown~"']))
        m.pairs = [(k2, v) for k2, v in m.pairs if k2 != key] + [(key, nest(depth, rnd))]
    elif kind in ("bad_value", "swap_value", "edge_int") and m.pairs:
        i = draw(st.integers(0, len(m.pairs) - 1))
        if kind == "bad_value":
            v = draw(st.sampled_from(BAD_VALUES))
        elif kind == "swap_value":
            v = draw(value_text(draw(st.sampled_from(specs))))
        else:
            v = str(draw(st.sampled_from([-(2**63) - 1, 2**63, 2**64 - 1, 2**64, -(2**64), 128, -129, 256, 65536, 2**31, -(2**31) - 1, 2**32, -1, 10**30])))
        m.pairs[i] = (m.pairs[i][0], v)
    elif kind == "swap_key" and m.pairs:
        i = draw(st.integers(0, len(m.pairs) - 1))
        m.pairs[i] = (encode_string(draw(st.sampled_from(specs)).name, rnd, 0.0), m.pairs[i][1])
    elif kind == "drop_pair" and m.pairs:
        del m.pairs[draw(st.integers(0, len(m.pairs) - 1))]
    raw = bytearray(m.render())
    strings = string_body_positions(bytes(raw))

    def pos(in_string: bool = False) -> int:
        if in_string and strings:
            return draw(st.sampled_from(strings))
        return draw(st.integers(0, len(raw)))

    byte = st.one_of(st.sampled_from(INTERESTING_BYTES), st.integers(0, 255))
    if kind == "insert":
        raw.insert(pos(), draw(byte))
    elif kind == "delete" and raw:
        del raw[min(pos(), len(raw) - 1)]
    elif kind == "replace" and raw:
        raw[min(pos(), len(raw) - 1)] = draw(byte)
    elif kind == "truncate":
        first = raw.index(b"{") + 1
        del raw[draw(st.integers(first, max(first, len(raw) - 1))) :]
    elif kind == "trailing_comma":
        closers = [i for i, c in enumerate(raw) if c in b"]}"]
        if closers:
            raw.insert(draw(st.sampled_from(closers)), ord(","))
    elif kind == "leading_zero":
        digits = [i for i, c in enumerate(raw) if 0x30 <= c <= 0x39]
        if digits:
            raw.insert(draw(st.sampled_from(digits)), ord("0"))
    elif kind == "comment":
        at = pos()
        raw[at:at] = draw(st.sampled_from(COMMENTS))
    elif kind == "control":
        at = pos(in_string=draw(st.booleans()))
        raw.insert(at, draw(st.integers(0, 0x1F)))
    elif kind == "bad_escape":
        at = pos(in_string=True)
        raw[at:at] = draw(st.sampled_from(BAD_ESCAPES))
    elif kind == "bad_utf8":
        at = pos(in_string=draw(st.integers(0, 3)) > 0)
        raw[at:at] = draw(st.sampled_from(BAD_UTF8))
    elif kind == "lone_surrogate":
        at = pos(in_string=True)
        raw[at:at] = draw(st.sampled_from(LONE_SURROGATES))
    elif kind == "split_pair":
        text = bytes(raw)
        hits = [i for i in range(len(text) - 11) if text[i : i + 3].lower() in (b"\\ud",) and text[i + 3 : i + 4].lower() in b"89ab"]
        if hits:
            i = draw(st.sampled_from(hits))
            cut = i + 6 if draw(st.booleans()) else i
            del raw[cut : cut + 6]
    return bytes(raw)
