"""A strict, slow, pure-Python reference for Quiver's NDJSON-to-Arrow contract (API_SPEC.md).

Two independent decoders live here, and the tests check that they agree:

* ``strict_loads`` wraps the standard library's ``json.loads`` and closes every door it
  leaves open (NaN/Infinity, lone surrogate escapes, duplicate keys, unbounded depth, BOM).
  It is the oracle for *whether* a message is well-formed JSON.
* ``scan_document`` is a small recursive-descent scanner over the raw bytes that reports the
  *first* fault in document order with its byte position, and keeps what the schema rules
  need: number literals as written, every key's position, raw value slices.

Where the contract leaves the order of two syntax faults open, the reference does not guess:
``judge`` returns the set of codes a correct engine may report (``Verdict.allowed``):

* encoding faults (ill-formed UTF-8 bytes, lone surrogate escapes) may be reported where
  they occur, or only once the grammar is known good (then a later grammar fault wins), or
  the whole message may be checked for UTF-8 before parsing (then ``invalid_utf8`` outranks
  an earlier grammar fault);
* a top-level value that does not start with ``{`` may be refused as ``not_an_object`` at
  once or only after it has been parsed.

Schema-level faults follow the contract exactly: first in document order, ``missing_required``
last. Interpretation choices the contract does not spell out, matched to the engine's
documented choices (kernels/temporal.py, kernels/numeric.py, kernels/strings.py):

* RFC 3339 accepts ``T``/``t``/space as separator and ``Z``/``z``; a malformed text is
  ``type_mismatch``, a well-formed but impossible date, time or offset (month 13, Feb 30,
  hour 24, second 60) and anything the unit's int64 cannot hold is ``out_of_range``.
* ``date32`` takes exactly ``YYYY-MM-DD`` (same split between the two codes) or, like a
  timestamp, an integer literal: days since the epoch, ``out_of_range`` outside int32.
* ``uint64`` accepts 0..2**64-1; a negative literal other than ``-0`` is ``out_of_range``, a
  larger one ``int_overflow``.
* ``binary`` is ``base64.b64decode(text, validate=True)`` of the decoded JSON string, whose
  length must be a multiple of 4 with at most two ``=`` (RFC 4648 padded form; Python alone
  would also take ``"QUJD="`` and ``"QUJD===="``); non-zero pad bits are tolerated; anything
  refused is ``type_mismatch``.
* ``float32`` is the float32 nearest the literal's exact decimal value, ties to even (not
  its float64 rounded again); one that rounds to infinity is ``out_of_range``.
* ``binary`` ``min_length``/``max_length`` count decoded bytes; ``min``/``max`` of dates and
  timestamps may be written as text; ``enum`` on an integer field lists allowed values.
* nesting depth counts the top-level object as 1.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import yaml

SYNTAX_CODES = frozenset({"invalid_json", "invalid_utf8", "too_deep", "not_an_object"})

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_I64_MIN, _I64_MAX = _INT_RANGES["int64"]
_UNIT_TICKS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_TS_TYPE = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")


class ReferenceReject(Exception):
    """A message the reference refuses; ``code`` is one of the contract's error codes."""

    def __init__(self, code: str, position: int | None = None, field: str | None = None):
        super().__init__(code)
        self.code = code
        self.position = position
        self.field = field


# ---------------------------------------------------------------------------------------------
# UTF-8 (Unicode Table 3-7: no overlongs, no encoded surrogates, nothing above U+10FFFF)


def utf8_length(raw: bytes, i: int) -> int:
    """Length of the well-formed UTF-8 sequence starting at raw[i], or 0 if there is none."""
    n = len(raw)
    b0 = raw[i]
    if b0 < 0x80:
        return 1
    if 0xC2 <= b0 <= 0xDF:
        need, lo, hi = 1, 0x80, 0xBF
    elif 0xE0 <= b0 <= 0xEF:
        need = 2
        lo = 0xA0 if b0 == 0xE0 else 0x80
        hi = 0x9F if b0 == 0xED else 0xBF
    elif 0xF0 <= b0 <= 0xF4:
        need = 3
        lo = 0x90 if b0 == 0xF0 else 0x80
        hi = 0x8F if b0 == 0xF4 else 0xBF
    else:
        return 0
    if i + need >= n:
        return 0
    if not lo <= raw[i + 1] <= hi:
        return 0
    for k in range(i + 2, i + 1 + need):
        if not 0x80 <= raw[k] <= 0xBF:
            return 0
    return need + 1


def first_bad_utf8(raw: bytes) -> int | None:
    """Byte offset of the first ill-formed UTF-8 sequence in raw, or None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return None


# ---------------------------------------------------------------------------------------------
# Oracle 1: json.loads, made strict


def _big_int(text: str) -> int:
    """int(text) without Python's 4300-digit guard (JSON puts no bound on literals)."""
    if len(text) < 4000:
        return int(text)
    return int(Decimal(text))


def _has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def _nesting(text: str) -> int:
    """The deepest container nesting of a well-formed JSON text, read off the text itself
    (iteratively: no recursion limit; and every value counts, even one that a repeated key
    later overwrote in the decoded dict)."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _surrogate_strings(v: Any) -> bool:
    """Whether any string (value or key) in a decoded JSON value holds a lone surrogate."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if _has_surrogate(x):
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def strict_loads(raw: bytes, max_depth: int = 64, reject_duplicates: bool = True) -> Any:
    """Decode one JSON text strictly (RFC 8259) or raise ReferenceReject(code).

    Codes: invalid_utf8 (bad raw UTF-8, or a lone surrogate escape), invalid_json (grammar,
    NaN/Infinity), duplicate_field (a repeated key in any object, when reject_duplicates),
    too_deep (more than max_depth nested containers), not_an_object (top level not an object).
    The order between different faults is not document order; use ``judge`` for that.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReferenceReject("invalid_utf8") from None
    dup = []

    def bad_constant(name: str) -> Any:
        raise ReferenceReject("invalid_json")

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out = {}
        for k, v in items:
            if k in out:
                dup.append(k)
                if _surrogate_strings(out[k]):  # about to be overwritten: check it now
                    surrogates.append(k)
            out[k] = v
        return out

    surrogates = []

    def hook_str(items):
        for k, _ in items:
            if _has_surrogate(k):
                surrogates.append(k)
        return pairs(items)

    try:
        value = json.loads(
            text,
            parse_constant=bad_constant,
            parse_int=_big_int,
            object_pairs_hook=hook_str,
        )
    except json.JSONDecodeError:
        raise ReferenceReject("invalid_json") from None
    except RecursionError:
        raise ReferenceReject("too_deep") from None
    if surrogates or _surrogate_strings(value):
        raise ReferenceReject("invalid_utf8")
    if _nesting(text) > max_depth:
        raise ReferenceReject("too_deep")
    if not isinstance(value, dict):
        raise ReferenceReject("not_an_object")
    if dup and reject_duplicates:
        raise ReferenceReject("duplicate_field")
    return value


# ---------------------------------------------------------------------------------------------
# Oracle 2: a document-order scanner over raw bytes


class _Fault(Exception):
    def __init__(self, code: str, pos: int):
        super().__init__(code, pos)
        self.code = code
        self.pos = pos


@dataclass
class Node:
    """One parsed JSON value: its kind, byte span, and what the schema rules need.

    ``value``: decoded str for strings, the literal text for numbers.
    ``items``: [(key, key_pos, Node)] for objects, [Node] for arrays.
    ``dup_pos``: position of the first repeated key anywhere inside, in document order.
    """

    kind: str
    start: int
    end: int
    value: Any = None
    items: list = field(default_factory=list)
    dup_pos: int | None = None
    dup_key: str | None = None


_PLAIN = re.compile(rb'[^"\\\x00-\x1f\x80-\xff]*')
_WS = re.compile(rb"[ \t\n\r]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_SHORT_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}


class _Scanner:
    """Recursive descent over bytes, raising _Fault at the first fault in document order.

    ``defer_encoding``: encoding faults (ill-formed UTF-8 bytes, lone surrogate escapes) are
    noted and parsing goes on; the first one is raised only when the grammar is good.
    ``eager``: refuse a top level that does not start with ``{`` before parsing it."""

    def __init__(self, raw: bytes, max_depth: int, defer_encoding: bool = False, eager: bool = False):
        self.raw = raw
        self.n = len(raw)
        self.max_depth = max_depth
        self.defer_encoding = defer_encoding
        self.eager = eager
        self.encoding_fault: int | None = None  # first deferred encoding fault

    def ws(self, i: int) -> int:
        return _WS.match(self.raw, i).end()

    def document(self) -> Node:
        i = self.ws(0)
        if i == self.n:
            raise _Fault("invalid_json", i)
        if self.eager and self.raw[i] != ord("{"):
            raise _Fault("not_an_object", i)
        node = self.value(i, 0)
        j = self.ws(node.end)
        if j != self.n:
            raise _Fault("invalid_json", j)
        if self.encoding_fault is not None:
            raise _Fault("invalid_utf8", self.encoding_fault)
        if node.kind != "object":
            raise _Fault("not_an_object", node.start)
        return node

    def value(self, i: int, depth: int) -> Node:
        raw = self.raw
        if i >= self.n:
            raise _Fault("invalid_json", i)
        c = raw[i]
        if c == ord("{") or c == ord("["):
            if depth + 1 > self.max_depth:
                raise _Fault("too_deep", i)
            return self.obj(i, depth + 1) if c == ord("{") else self.arr(i, depth + 1)
        if c == ord('"'):
            return self.string(i)
        if c == ord("-") or ord("0") <= c <= ord("9"):
            m = _NUMBER.match(raw, i)
            if m is None:
                raise _Fault("invalid_json", i)
            return Node("number", i, m.end(), value=m.group().decode("ascii"))
        for word, kind in ((b"true", "true"), (b"false", "false"), (b"null", "null")):
            if c == word[0]:
                if raw.startswith(word, i):
                    return Node(kind, i, i + len(word))
                raise _Fault("invalid_json", i)
        raise _Fault("invalid_json", i)

    def obj(self, i: int, depth: int) -> Node:
        raw = self.raw
        node = Node("object", i, i)
        seen: set[str] = set()
        j = self.ws(i + 1)
        if j < self.n and raw[j] == ord("}"):
            node.end = j + 1
            return node
        while True:
            if j >= self.n or raw[j] != ord('"'):
                raise _Fault("invalid_json", j)
            key = self.string(j)
            j = self.ws(key.end)
            if j >= self.n or raw[j] != ord(":"):
                raise _Fault("invalid_json", j)
            val = self.value(self.ws(j + 1), depth)
            if key.value in seen and node.dup_pos is None:
                node.dup_pos, node.dup_key = key.start, key.value
            seen.add(key.value)
            if val.dup_pos is not None and node.dup_pos is None:
                node.dup_pos, node.dup_key = val.dup_pos, val.dup_key
            node.items.append((key.value, key.start, val))
            j = self.ws(val.end)
            if j < self.n and raw[j] == ord(","):
                j = self.ws(j + 1)
                continue
            if j < self.n and raw[j] == ord("}"):
                node.end = j + 1
                return node
            raise _Fault("invalid_json", j)

    def arr(self, i: int, depth: int) -> Node:
        raw = self.raw
        node = Node("array", i, i)
        j = self.ws(i + 1)
        if j < self.n and raw[j] == ord("]"):
            node.end = j + 1
            return node
        while True:
            val = self.value(j, depth)
            if val.dup_pos is not None and node.dup_pos is None:
                node.dup_pos, node.dup_key = val.dup_pos, val.dup_key
            node.items.append(val)
            j = self.ws(val.end)
            if j < self.n and raw[j] == ord(","):
                j = self.ws(j + 1)
                continue
            if j < self.n and raw[j] == ord("]"):
                node.end = j + 1
                return node
            raise _Fault("invalid_json", j)

    def string(self, i: int) -> Node:
        raw, n = self.raw, self.n

        def utf8_fault(pos: int) -> None:
            if not self.defer_encoding:
                raise _Fault("invalid_utf8", pos)
            if self.encoding_fault is None:
                self.encoding_fault = pos

        j = i + 1
        while True:
            j = _PLAIN.match(raw, j).end()
            if j >= n:
                raise _Fault("invalid_json", j)
            c = raw[j]
            if c == ord('"'):
                if self.encoding_fault is not None:  # content is not decodable
                    return Node("string", i, j + 1, value=raw[i + 1 : j].decode("utf-8", "replace"))
                return Node("string", i, j + 1, value=self._decode(i + 1, j))
            if c == ord("\\"):
                if j + 1 >= n:
                    raise _Fault("invalid_json", j)
                e = raw[j + 1]
                if e in _SHORT_ESCAPES:
                    j += 2
                    continue
                if e != ord("u") or not _HEX4.fullmatch(raw, j + 2, j + 6):
                    raise _Fault("invalid_json", j)
                cp = int(raw[j + 2 : j + 6], 16)
                if 0xD800 <= cp <= 0xDBFF:
                    if raw.startswith(b"\\u", j + 6) and _HEX4.fullmatch(raw, j + 8, j + 12):
                        lo = int(raw[j + 8 : j + 12], 16)
                        if 0xDC00 <= lo <= 0xDFFF:
                            j += 12
                            continue
                    utf8_fault(j)
                    j += 6
                    continue
                if 0xDC00 <= cp <= 0xDFFF:
                    utf8_fault(j)
                j += 6
                continue
            if c < 0x20:
                raise _Fault("invalid_json", j)
            length = utf8_length(raw, j)
            if length == 0:
                utf8_fault(j)
                j += 1
            else:
                j += length

    def _decode(self, a: int, b: int) -> str:
        """Decode a string body already known to be well formed."""
        return json.loads(b'"' + self.raw[a:b] + b'"')


def scan_document(raw: bytes, max_depth: int = 64, defer_encoding: bool = False, eager: bool = False) -> Node:
    """Parse one message; raise ReferenceReject(code, position) at the first syntax fault."""
    try:
        return _Scanner(raw, max_depth, defer_encoding, eager).document()
    except _Fault as f:
        raise ReferenceReject(f.code, f.pos) from None
    except RecursionError:  # pragma: no cover - depth is bounded by max_depth
        raise ReferenceReject("too_deep") from None


def node_value(node: Node) -> Any:
    """Plain Python value of a node (ints exact, floats float(text))."""
    k = node.kind
    if k == "object":
        return {key: node_value(v) for key, _, v in node.items}
    if k == "array":
        return [node_value(v) for v in node.items]
    if k == "number":
        return number_value(node.value)
    if k == "string":
        return node.value
    return {"true": True, "false": False, "null": None}[k]


def is_int_literal(text: str) -> bool:
    return not any(c in text for c in ".eE")


def number_value(text: str) -> int | float:
    return _big_int(text) if is_int_literal(text) else float(text)


def syntax_verdict(raw: bytes, max_depth: int = 64) -> tuple[Node | None, frozenset[str], int | None]:
    """(root node or None, codes a correct engine may report, position of the first fault).

    The first fault in document order is always allowed. The contract does not rank syntax
    faults among themselves, so three other engine strategies are allowed too:
    encoding faults (bad UTF-8 bytes, lone surrogate escapes) checked only once the grammar
    is known good; the whole message checked for UTF-8 before parsing; a top level refused
    as ``not_an_object`` as soon as its first byte is not ``{``.
    A syntactically valid message gives (node, frozenset(), None).
    """
    try:
        node = scan_document(raw, max_depth)
    except ReferenceReject as r:
        primary, pos = r.code, r.position
    else:
        return node, frozenset(), None
    allowed = {primary}
    try:
        scan_document(raw, max_depth, defer_encoding=True)
    except ReferenceReject as r:
        allowed.add(r.code)
    else:  # pragma: no cover - would be a reference bug
        raise AssertionError(f"scanner variants disagree on {raw!r}")
    start = _WS.match(raw).end()
    if start < len(raw) and raw[start] != ord("{"):
        allowed.add("not_an_object")
    if first_bad_utf8(raw) is not None:
        allowed.add("invalid_utf8")
    return None, frozenset(allowed), pos


# ---------------------------------------------------------------------------------------------
# Schema


@dataclass
class FieldSpec:
    name: str
    type: str
    required: bool = False
    nullable: bool = True
    min: Any = None
    max: Any = None
    min_length: int | None = None
    max_length: int | None = None
    enum: list[str] | None = None
    unit: str | None = None
    tz: str | None = None


def _size(v: Any) -> int:
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*", str(v))
    if not m:
        raise ValueError(f"bad size {v!r}")
    mult = {None: 1, "B": 1, "KB": 1000, "MB": 10**6, "GB": 10**9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    return int(m.group(1)) * mult[m.group(2)]


@dataclass
class RefSchema:
    """The parts of a stream's config that decide what Quiver accepts."""

    fields: list[FieldSpec]
    unknown_fields: str = "ignore"
    max_depth: int = 64
    max_message_bytes: int = 1024**2

    @classmethod
    def from_yaml(cls, text: str, stream: str | None = None) -> RefSchema:
        """Build from the same YAML text engine.load_config reads."""
        doc = yaml.safe_load(text)
        streams = doc["streams"]
        name = stream if stream is not None else next(iter(streams))
        return cls.from_dict(streams[name], {**(doc.get("limits") or {}), **(streams[name].get("limits") or {})})

    @classmethod
    def from_dict(cls, stream: dict, limits: dict | None = None) -> RefSchema:
        limits = limits or {}
        specs = []
        for name, f in stream["fields"].items():
            t = str(f["type"]).strip()
            spec = FieldSpec(name=name, type=t)
            spec.required = bool(f.get("required", False))
            spec.nullable = bool(f.get("nullable", not spec.required))
            for k in ("min", "max", "min_length", "max_length", "enum"):
                setattr(spec, k, f.get(k))
            m = _TS_TYPE.match(t)
            if m:
                spec.type, spec.unit, spec.tz = "timestamp", m.group(1), m.group(2)
            if spec.type == "enum" and not spec.enum:
                raise ValueError(f"field {name}: enum type needs an enum list")
            specs.append(spec)
        return cls(
            fields=specs,
            unknown_fields=stream.get("unknown_fields", "ignore"),
            max_depth=int(limits.get("max_depth", 64)),
            max_message_bytes=_size(limits.get("max_message_bytes", 1024**2)),
        )

    def by_name(self) -> dict[str, FieldSpec]:
        return {f.name: f for f in self.fields}


@dataclass(frozen=True)
class JsonText:
    """Expected value of a ``json`` field: the raw text of the value in the message."""

    text: str


@dataclass
class Verdict:
    """What the reference decides for one message."""

    accepted: bool
    row: dict | None = None
    code: str | None = None  # the contract's code (primary one when several are allowed)
    allowed: frozenset = frozenset()  # every code a correct engine may report
    field: str | None = None
    position: int | None = None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, by counting (obviously right)."""

    def days_before_year(year: int) -> int:
        # days from 0000-01-01 to year-01-01 (year may be 0)
        y1 = year - 1
        if year == 0:
            return 0
        return 366 + y1 * 365 + y1 // 4 - y1 // 100 + y1 // 400

    cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]
    doy = cum[m - 1] + (d - 1) + (1 if m > 2 and _leap(y) else 0)
    return days_before_year(y) + doy - days_before_year(1970)


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _valid_date(y: int, m: int, d: int) -> bool:
    if not 1 <= m <= 12 or d < 1:
        return False
    dim = [31, 29 if _leap(y) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
    return d <= dim


def parse_date(text: str) -> int:
    """Days since epoch of exactly ``YYYY-MM-DD``; raise ReferenceReject otherwise."""
    m = _DATE.fullmatch(text) if text.isascii() else None
    if m is None:
        raise ReferenceReject("type_mismatch")
    y, mo, d = (int(g) for g in m.groups())
    if not _valid_date(y, mo, d):
        raise ReferenceReject("out_of_range")
    return days_from_civil(y, mo, d)


def parse_rfc3339(text: str, unit: str) -> int:
    """Epoch ticks (UTC) in ``unit`` of an RFC 3339 date-time, sub-unit digits floored."""
    m = _RFC3339.fullmatch(text) if text.isascii() else None
    if m is None:
        raise ReferenceReject("type_mismatch")
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups()[:6])
    frac, _z, sign, oh, om = m.groups()[6:]
    if not _valid_date(y, mo, d) or hh > 23 or mi > 59 or ss > 59:
        raise ReferenceReject("out_of_range")
    offset = 0
    if sign is not None:
        if int(oh) > 23 or int(om) > 59:
            raise ReferenceReject("out_of_range")
        offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
    secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset
    ticks = _UNIT_TICKS[unit]
    digits = len(str(ticks)) - 1
    sub = int((frac or "")[:digits].ljust(digits, "0") or "0")
    value = secs * ticks + sub
    if not _I64_MIN <= value <= _I64_MAX:
        raise ReferenceReject("out_of_range")
    return value


def _bound(spec: FieldSpec, b: Any) -> Any:
    """A min/max bound in the column's terms: date/time bounds may be written as text."""
    if isinstance(b, str) and spec.type == "date32":
        return parse_date(b)
    if isinstance(b, str) and spec.type == "timestamp":
        return parse_rfc3339(b, spec.unit)
    return b


def _check_bounds(spec: FieldSpec, v: float) -> None:
    if spec.min is not None and v < _bound(spec, spec.min):
        raise ReferenceReject("out_of_range")
    if spec.max is not None and v > _bound(spec, spec.max):
        raise ReferenceReject("out_of_range")
    if spec.enum is not None and spec.type not in ("string", "enum") and v not in spec.enum:
        raise ReferenceReject("not_in_enum")


_F32_MAX = Fraction(2**128 - 2**104)
_F32_HALF_PAST_MAX = Fraction(2**128 - 2**103)


def nearest_float32(text: str) -> float:
    """The float32 nearest the decimal ``text`` by exact arithmetic, ties to the even
    significand; +-inf from halfway past the largest float32 on."""
    v = float(text)
    if v == 0 or math.isinf(v):  # far past float32 either way (and maybe past Decimal's exponents)
        return v
    x = Fraction(Decimal(text))
    if abs(x) >= _F32_HALF_PAST_MAX:
        return math.copysign(math.inf, x)
    with np.errstate(over="ignore"):
        guess = np.float32(float(x))  # within one float32 of the answer, maybe past FLT_MAX
        if np.isinf(guess):
            guess = np.float32(math.copysign(float(_F32_MAX), x))
        nearby = [guess, np.nextafter(guess, np.float32(-np.inf)), np.nextafter(guess, np.float32(np.inf))]
    nearby = [c for c in nearby if np.isfinite(c)]

    def distance(c: np.float32) -> tuple[Fraction, int]:
        return abs(Fraction(float(c)) - x), struct.unpack("<I", struct.pack("<f", c))[0] & 1

    return float(min(nearby, key=distance))


def field_value(spec: FieldSpec, node: Node, raw: bytes) -> Any:
    """The column value for one field, or raise ReferenceReject(schema code)."""
    kind, t = node.kind, spec.type
    if kind == "null":
        if spec.nullable:
            return None
        raise ReferenceReject("missing_required" if spec.required else "type_mismatch")
    if t in _INT_RANGES:
        if kind != "number" or not is_int_literal(node.value):
            raise ReferenceReject("type_mismatch")
        v = _big_int(node.value)
        lo, hi = _INT_RANGES[t]
        if t == "uint64":
            if v > hi:
                raise ReferenceReject("int_overflow")
            if v < lo:
                raise ReferenceReject("out_of_range")
        else:
            if not _I64_MIN <= v <= _I64_MAX:
                raise ReferenceReject("int_overflow")
            if not lo <= v <= hi:
                raise ReferenceReject("out_of_range")
        _check_bounds(spec, v)
        return v
    if t in ("float64", "float32"):
        if kind != "number":
            raise ReferenceReject("type_mismatch")
        f = float(node.value)
        if math.isinf(f):
            raise ReferenceReject("out_of_range")
        # min/max apply to the number as written (its float64 value), before a float32
        # column rounds it: max 1 refuses 1.00000004, max 0.1 takes 0.1 (README "Rules")
        _check_bounds(spec, f)
        if t == "float32":
            f = nearest_float32(node.value)
            if math.isinf(f):
                raise ReferenceReject("out_of_range")
        return f
    if t == "bool":
        if kind not in ("true", "false"):
            raise ReferenceReject("type_mismatch")
        return kind == "true"
    if t == "json":
        return JsonText(raw[node.start : node.end].decode("utf-8"))
    if kind != "string":
        if t in ("timestamp", "date32") and kind == "number":
            if not is_int_literal(node.value):
                raise ReferenceReject("type_mismatch")
            v = _big_int(node.value)
            if not _I64_MIN <= v <= _I64_MAX:
                raise ReferenceReject("int_overflow")
            if t == "date32" and not -(2**31) <= v < 2**31:
                raise ReferenceReject("out_of_range")
            _check_bounds(spec, v)
            return v
        raise ReferenceReject("type_mismatch")
    s = node.value
    if t in ("string", "enum"):
        if spec.max_length is not None and len(s) > spec.max_length:
            raise ReferenceReject("too_long")
        if spec.min_length is not None and len(s) < spec.min_length:
            raise ReferenceReject("too_short")
        if spec.enum is not None and s not in [str(e) for e in spec.enum]:
            raise ReferenceReject("not_in_enum")
        return s
    if t == "binary":
        if len(s) % 4 or len(s) - len(s.rstrip("=")) > 2:  # RFC 4648 padded form; b64decode
            raise ReferenceReject("type_mismatch")  # alone also takes "QUJD=" and "QUJD===="
        try:
            data = base64.b64decode(s.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ReferenceReject("type_mismatch") from None
        if spec.max_length is not None and len(data) > spec.max_length:
            raise ReferenceReject("too_long")
        if spec.min_length is not None and len(data) < spec.min_length:
            raise ReferenceReject("too_short")
        return data
    if t not in ("date32", "timestamp"):  # pragma: no cover
        raise ValueError(f"reference does not know type {t!r}")
    v = parse_date(s) if t == "date32" else parse_rfc3339(s, spec.unit)
    _check_bounds(spec, v)
    return v


def judge(schema: RefSchema, raw: bytes) -> Verdict:
    """The reference's decision for one pre-framed message."""
    if len(raw) > schema.max_message_bytes:
        return Verdict(False, code="too_large", allowed=frozenset({"too_large"}))
    root, allowed, pos = syntax_verdict(raw, schema.max_depth)
    # Independent cross-check of the syntax verdict against json.loads.
    try:
        strict_loads(raw, schema.max_depth, reject_duplicates=False)
        loads_ok = True
    except ReferenceReject:
        loads_ok = False
    if loads_ok != (root is not None):
        raise AssertionError(f"reference oracles disagree on {raw!r}: scanner={sorted(allowed)}")
    if root is None:
        return Verdict(False, code=scan_primary(raw, schema.max_depth), allowed=allowed, position=pos)
    specs = schema.by_name()
    errors: list[tuple[int, str, str]] = []  # (position, code, field)
    seen: set[str] = set()
    row: dict[str, Any] = {}
    for key, kpos, val in root.items:
        if key in seen:
            errors.append((kpos, "duplicate_field", key))
        seen.add(key)
        if val.dup_pos is not None:
            errors.append((val.dup_pos, "duplicate_field", key))
        spec = specs.get(key)
        if spec is None:
            if schema.unknown_fields == "reject":
                errors.append((kpos, "unknown_field", key))
            continue
        try:
            row[key] = field_value(spec, val, raw)
        except ReferenceReject as r:
            errors.append((val.start, r.code, key))
    if errors:
        p, code, name = min(errors)
        return Verdict(False, code=code, allowed=frozenset({code}), field=name, position=p)
    for spec in schema.fields:
        if spec.name not in row:
            if spec.required:
                return Verdict(False, code="missing_required", allowed=frozenset({"missing_required"}), field=spec.name)
            row[spec.name] = None
    return Verdict(True, row={f.name: row[f.name] for f in schema.fields})


def scan_primary(raw: bytes, max_depth: int) -> str | None:
    """The first fault's code under inline UTF-8 checks and lazy top-level checks."""
    try:
        scan_document(raw, max_depth)
    except ReferenceReject as r:
        return r.code
    return None


def as_schema(config: Any) -> RefSchema:
    """Accept a RefSchema, YAML text (first stream), or a stream mapping dict."""
    if isinstance(config, RefSchema):
        return config
    if isinstance(config, str):
        return RefSchema.from_yaml(config)
    if isinstance(config, dict):
        if "streams" in config:
            name = next(iter(config["streams"]))
            stream = config["streams"][name]
            return RefSchema.from_dict(stream, {**(config.get("limits") or {}), **(stream.get("limits") or {})})
        return RefSchema.from_dict(config)
    raise TypeError(f"cannot build a reference schema from {type(config).__name__}")


def reference_parse(config: Any, messages: list[bytes]) -> tuple[list[dict], list[tuple[int, str]]]:
    """(accepted rows in input order, [(message index, error code)]) for pre-framed messages."""
    schema = as_schema(config)
    rows, rejects = [], []
    for i, raw in enumerate(messages):
        v = judge(schema, raw)
        if v.accepted:
            rows.append(v.row)
        else:
            rejects.append((i, v.code))
    return rows, rejects


# ---------------------------------------------------------------------------------------------
# Comparing Quiver's Arrow output with the reference


def float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def canonical(v: Any) -> Any:
    """A form of a decoded JSON value where == means 'same JSON value, floats bit-exact'."""
    if isinstance(v, bool) or v is None or isinstance(v, str | int):
        return (type(v).__name__, v)
    if isinstance(v, float):
        return ("float", float_bits(v))
    if isinstance(v, list):
        return ("list", tuple(canonical(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, canonical(x)) for k, x in v.items())))
    raise TypeError(type(v))


def column_values(col, spec: FieldSpec) -> list[Any]:
    """A column of Quiver's batch as the reference's value representation."""
    import pyarrow as pa

    if spec.type == "timestamp":
        return col.cast(pa.int64()).to_pylist()
    if spec.type == "date32":
        return col.cast(pa.int32()).to_pylist()
    if isinstance(col.type, pa.DictionaryType):
        col = col.dictionary_decode()
    return col.to_pylist()


def same_value(spec: FieldSpec, got: Any, want: Any) -> bool:
    """Exact equality in the reference's terms (float bits, json by re-parsing)."""
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, JsonText):
        if not isinstance(got, str):
            return False
        g = _loads_any(got)
        return g is not _BAD and canonical(g) == canonical(_loads_any(want.text))
    if isinstance(want, float):
        return isinstance(got, float) and float_bits(got) == float_bits(want)
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    return type(got) is type(want) and got == want


_BAD = object()


def _loads_any(text: str) -> Any:
    """Strictly decode any JSON value (not only objects), or _BAD."""
    try:
        return strict_loads(b'{"v":' + text.encode("utf-8") + b"}", 10**6)["v"]
    except ReferenceReject:
        return _BAD
