"""Fuzzing Quiver's JSON kernels against the strict reference decoder (tests/reference.py).

    python -m tests.fuzz --inputs 10000000 --seed 1 --jobs 2    # the long run: ~55 min on 2 cores
    python -m tests.fuzz --inputs 200000 --seed 7                 # a couple of minutes
    python -m tests.fuzz --seed 1 --start-batch 42 --batches 1    # replay one batch of a run

Inputs are made in batches (20,000 by default) from a mix of generators: valid messages
over a schema with every type and rule (FUZZ_YAML), the structure-aware mutations of
tests/strategies.py, havoc (stacked byte flips, inserts, deletes, duplicated ranges,
special tokens such as ``\\ud800``, ``1e400``, ``-0``, ``9223372036854775808``, deep
nesting, ill-formed and overlong UTF-8, CR/LF, NUL), values swapped for edge tokens,
splices of two messages, short messages aimed at one field's edge values, token soup,
random bytes, and messages at the depth and size limits.

Each batch goes to the engine's Parser in one call: ``parse_messages``, or for every fourth
batch ``parse_ndjson`` on the inputs joined by LF/CRLF/blank lines (framed on the reference
side by ``reference_frame``), under ``unknown_fields: ignore`` or, every third batch,
``reject``. Every message is then judged by the reference (``fuzz_judge``: ``judge``, plus
an answer where judge's internal cross-check raises, see tests/fuzz_cases/README.md). The
engine must accept exactly what the reference accepts, report a code in
``Verdict.allowed``, the same fault position and field for schema faults, the message
itself as dead-letter ``raw`` (a too_large one's first max_message_bytes + 1 bytes) (and the right offsets and blank-line count for NDJSON), and
every accepted value must be ``same_value`` (floats bit for bit). An engine exception, a
dead worker process (a segfault) or a parse call longer than ``--parse-timeout`` is a
failure too. Discrepancies the contract leaves open are listed in KNOWN_ISSUES and counted
apart (``--strict`` counts them as failures).

A batch depends only on (seed, batch index, batch size), so runs are reproducible and
``--start-batch K --batches 1`` replays one batch. A failing message is shrunk (whole
members and elements, then byte ranges, removed while the same failure persists) and
saved under tests/fuzz_cases/ as JSON, which the suite replays (tests/test_fuzz.py).
Hangs and dead processes are isolated by bisecting the batch in fresh processes.

Batches run in worker processes (``--jobs``, spawn context: Numba's OpenMP layer is not
fork-safe) watched by the parent; ``--jobs 0`` runs in this process (no watchdog). The
reference is pure Python and takes nearly all the time: about 1,300 to 1,500 inputs/s
per core.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np

from tests import strategies as S
from tests.reference import (
    _INT_RANGES,
    SYNTAX_CODES,
    FieldSpec,
    RefSchema,
    Verdict,
    _big_int,
    _bound,
    _has_surrogate,
    column_values,
    judge,
    same_value,
    scan_primary,
    syntax_verdict,
)

# ---------------------------------------------------------------------------------------------
# The schema: every type, every rule (min/max, enum, lengths, required, nullable), small limits

FUZZ_YAML = (
    """
streams:
  fuzz:
    format: ndjson
    unknown_fields: {unknown}
    fields:
"""
    + S.ALL_TYPES_FIELDS  # the property tests' schema, plus bounds and rules of every kind:
    + """      code: {{type: uint16, enum: [1, 2, 65535]}}
      big: {{type: int64, min: -1000000000000, max: 1000000000000}}
      unit: {{type: float32, min: -1, max: 1}}
      tag: {{type: binary, min_length: 1, max_length: 8}}
      since: {{type: "timestamp[us, tz=UTC]", min: "2000-01-01T00:00:00Z", max: "2100-01-01T00:00:00Z"}}
      born: {{type: date32, min: "1900-01-01", max: 40000}}
      name: {{type: string, nullable: false}}
limits: {{max_depth: 8, max_message_bytes: 4KiB}}
"""
)

SCHEMAS = ("ignore", "reject")
DEFAULT_BATCH = 20_000
CASES_DIR = Path(__file__).resolve().parent / "fuzz_cases"


def schema_yaml(name: str) -> str:
    return FUZZ_YAML.format(unknown=name)


def ref_schema(name: str) -> RefSchema:
    return RefSchema.from_yaml(schema_yaml(name))


def make_parser(name: str, threads: int | None = None):
    import engine

    cfg = engine.load_config(schema_yaml(name))
    return engine.Parser(cfg.streams["fuzz"], threads=threads)


# ---------------------------------------------------------------------------------------------
# Generators

VALUE_TOKENS = [
    # numbers at type and format edges
    "0", "-0", "-0.0", "0e0", "-0e-0", "0.0", "1", "-1", "1.0", "1e0", "1E+2", "0.1e1", "10", "-10", "11", "-11",
    "127", "128", "-128", "-129", "255", "256", "32767", "32768", "-32769", "65535", "65536",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "-18446744073709551616", "99999999999999999999",
    "1000000000000", "1000000000001", "-1000000000000", "-1000000000001", "1000000", "1000000.0000000001",
    "-1.5", "-1.5000000000000002", "-1.4999999999999998", "100", "1e6", "1e400", "-1e400", "1e-400", "-1e-400",
    "1e308", "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "4.9e-324",
    "5e-324", "2.4703282292062327e-324", "2.4703282292062328e-324", "2.2250738585072011e-308",
    "3.4028234663852886e38", "3.4028235e38", "3.4028235677973366e38", "3.4028236e38", "1.401298464324817e-45",
    "0.99999999", "1.00000001", "1.0000000596046448", "1.0000000596046449", "-1.0000000596046448",
    "0.30000000000000004", "9007199254740993", "9007199254740992.5", "1e23", "8.98846567431158e307",
    "1.00000000000000011102230246251565404236316680908203125", "123456789012345678901234567890e-10",
    "0." + "0" * 400 + "1e400", "1" + "0" * 400, "-" + "9" * 30, "1e99999999999999999999", "1e-99999999999999999999",
    "01", "-01", "00", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "1_0", "1.e5", "NaN", "Infinity", "-Infinity",
    # literals
    "true", "false", "null", "nul", "tru", "True", "TRUE", "nulll", "falsey",
    # strings: enums, lengths, escapes, surrogates
    '""', '"x"', '"y"', '"X"', '"click"', '"view"', '"purchase"', '"\\u00fcn\\u00ef"', '"ünï"', '"u\\u0308n"', '"a\\"b"',
    '"a\\u0022b"', '"clic"', '"clickk"', '"a"', '"ab"', '"abcde"', '"abcdef"', '"\U0001f600\U0001f600"',
    '"\\ud83d\\ude00"', '"\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00"', '"ééééé"', '"éééééé"',
    '"\\ud800"', '"\\udfff"', '"\\udc00\\ud800"', '"\\ud800\\u0041"', '"\\uD83D"', '"\\u0000"', '"\x00"', '"\x1f"',
    '"\x7f"', '"\\/"', '"\\b\\f\\n\\r\\t"', '"\\x41"', '"\\u00"', '"\\u004G"', '"\\"', '"\xef\xbb\xbf"', '"\u2028"',
    # dates and times
    '"1970-01-01"', '"1900-01-01"', '"1899-12-31"', '"2079-07-06"', '"2079-07-07"', '"0000-01-01"', '"9999-12-31"',
    '"2024-02-29"', '"2023-02-29"', '"2024-13-01"', '"2024-00-10"', '"2024-1-01"', '"+2024-01-01"', '"2024-01-01T00:00:00Z"',
    '"2000-01-01T00:00:00Z"', '"1999-12-31T23:59:59.999999Z"', '"1999-12-31T23:59:59.9999999Z"', '"2100-01-01T00:00:00Z"',
    '"2100-01-01T00:00:00.000001Z"', '"2099-12-31T23:00:00-01:00"', '"2100-01-01T01:00:00+01:00"',
    '"2024-01-01T00:00:60Z"', '"2024-01-01T24:00:00Z"', '"2024-01-01T23:59:59+24:00"', '"2024-01-01T23:59:59+23:59"',
    '"2024-01-01T00:00:00-00:60"', '"2024-01-01t00:00:00z"', '"2024-01-01 00:00:00Z"', '"2024-01-01T00:00:00"',
    '"2024-01-01T00:00Z"', '"2024-01-01T00:00:00.Z"', '"2024-01-01T00:00:00.123456789123Z"', '"2024-01-01T00:00:00+0100"',
    '"2262-04-11T23:47:16.854775807Z"', '"2262-04-11T23:47:16.854775808Z"', '"1677-09-21T00:12:43.145224192Z"',
    '"1677-09-21T00:12:43.145224191Z"', '"9999-12-31T23:59:59.999999999Z"', '"0001-01-01T00:00:00Z"',
    '"0000-01-01T00:00:00+00:01"', '"1970-01-01T00:00:00\u00a0Z"', '"1970-01-01T00:00:00.5\U0001f600Z"',
    "946684800000000", "946684799999999", "4102444800000000", "4102444800000001", "-25567", "-25568", "40000", "40001",
    "2147483647", "-2147483648", "9223372036854775807",
    # base64
    '"QUJD"', '"QUI="', '"QQ=="', '"QR=="', '"QUJD="', '"===="', '"QU JD"', '"QUJDRA=="', '"QUJDREVGR0g="',
    '"QUJDREVGR0hJ"', '"AAAAAAAAAAAA"', '"\\/\\/\\/\\/"', '"////"', '"++++"', '"-_-_"', '"QQ\\u003d\\u003d"', '"QUJ\\nD"',
    # containers
    "[]", "{}", "[1]", '{"a":1}', '{"a":1,"a":2}', '{"a":1,"\\u0061":2}', '[{"k":1,"k":1}]', "[[[[[[[[1]]]]]]]]",
    "[[[[[[[[[1]]]]]]]]]", '{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}', '{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}}',
    "[1,]", "[,1]", '{"a":1,}', "{,}", "[1 2]", "[", "]", "{", "}", '{"a"}', '{"a":}', "{1:2}", "[1e400]", '["\\ud800"]',
]  # fmt: skip
VALUE_TOKENS_B = [t.encode("utf-8") for t in VALUE_TOKENS]

FRAGMENTS = [
    b"\\ud800", b"\\udfff", b"\\udbff\\udfff", b"\\ud83d", b"\\ude00", b"\\u0000", b"\\u", b"\\", b"\\\\", b'\\"',
    b'"', b"'", b"\x00", b"\r", b"\n", b"\r\n", b"\t", b"\x0b", b"\x0c", b"\x1f", b"\x7f", b" ", b"\xc2\xa0",
    b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\xc0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"\x80", b"\xbf", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",
    b"\xfe", b"\xff", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"\xf4\x8f\xbf\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf",
    b"{", b"}", b"[", b"]", b",", b":", b"-", b"+", b".", b"e", b"E", b"0", b"9", b"/*", b"*/", b"//",
    b"[[[[", b"]]]]", b'{"k":', b'{"k":{"k":{"k":{"k":', b"}}}}", b"1e400", b"-0", b"9223372036854775808",
    b"null", b"true", b"NaN", b'"user_id":1,', b'"i8":', b'"extra":', b'"u64":-0,', b',"user_id":2',
]  # fmt: skip
GRAMMAR_TOKENS = [
    b"{", b"{", b"}", b"}", b"[", b"]", b",", b",", b":", b":", b'"', b'"k"', b'"user_id"', b'"i8"', b'"extra"',
    b'"s"', b'"ts_ns"', b'"day"', b'"blob"', b'"\\u0061"', b'"\\ud800"', b"1", b"0", b"-", b"1.5", b"1e5", b"-0",
    b"true", b"false", b"null", b" ", b"\t", b"\n", b"\r", b"\\", b"\xc3\xa9", b"\xff", b"x",
]  # fmt: skip
OVERLONG = [b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf"]

_EPOCH = dt.datetime(1970, 1, 1)
_TICKS = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def _ts_text(ticks: int, unit: str, rnd: random.Random) -> str:
    per = _TICKS[unit]
    secs, sub = divmod(ticks, per)
    t = _EPOCH + dt.timedelta(seconds=secs)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if per > 1 and (sub or rnd.random() < 0.3):
        text += "." + str(sub).rjust(len(str(per)) - 1, "0")
    return '"' + text + rnd.choice(["Z", "z", "+00:00"]) + '"'


def fuzz_value(spec: FieldSpec, rnd: random.Random) -> str:
    """A literal for one field, valid most of the time (rules included), never null."""
    t = spec.type
    if t in _INT_RANGES and spec.enum is not None and rnd.random() < 0.85:
        return str(rnd.choice(spec.enum))
    if t == "float32" and (spec.min is not None or spec.max is not None) and rnd.random() < 0.85:
        lo, hi = float(spec.min), float(spec.max)
        x = float(np.float32(rnd.choice([lo, hi, 0.0, rnd.uniform(lo, hi), rnd.uniform(lo, hi)])))
        x = min(max(x, lo), hi)
        return repr(x) if rnd.random() < 0.7 else f"{x:.17g}"
    if t == "binary" and (spec.min_length is not None or spec.max_length is not None) and rnd.random() < 0.85:
        n = rnd.randint(spec.min_length or 0, spec.max_length if spec.max_length is not None else 40)
        return '"' + base64.b64encode(rnd.randbytes(n)).decode("ascii") + '"'
    if t in ("timestamp", "date32") and (spec.min is not None or spec.max is not None) and rnd.random() < 0.85:
        lo = _bound(spec, spec.min) if spec.min is not None else -(2**31)
        hi = _bound(spec, spec.max) if spec.max is not None else 2**31 - 1
        v = rnd.choice([lo, hi, rnd.randint(lo, hi), rnd.randint(lo, hi)])
        if rnd.random() < 0.4:
            return str(v)
        if t == "date32":
            return '"' + (dt.date(1970, 1, 1) + dt.timedelta(days=v)).isoformat() + '"'
        return _ts_text(v, spec.unit, rnd)
    return S.value_text(spec, rnd)


def _key(name: str, rnd: random.Random) -> str:
    return S.encode_string(name, rnd, escape_rate=0.0 if rnd.random() < 0.9 else 0.5)


def gen_valid(fields: list[FieldSpec], rnd: random.Random, unknown: bool = True) -> S.Msg:
    """A message over ``fields`` (a subset of the schema), nearly always valid."""
    pairs = []
    for spec in fields:
        choice = rnd.choice(["value", "value", "value", "value", "null"])
        if choice == "null" and not spec.nullable:
            choice = "value"
        pairs.append((_key(spec.name, rnd), "null" if choice == "null" else fuzz_value(spec, rnd)))
    if unknown:
        used = {f.name for f in fields}
        for _ in range(rnd.choice([0, 0, 0, 1, 2])):
            k = S.rand_text(rnd, 0, 6)
            if k not in used:
                used.add(k)
                pairs.append((S.encode_string(k, rnd), S.json_text(rnd, depth=rnd.randint(0, 4), newlines=True)))
    rnd.shuffle(pairs)
    return S.Msg(pairs, rnd.getrandbits(32), rnd.random() < 0.3, S.ws(rnd), S.ws(rnd))


class Maker:
    """Builds one batch of fuzz inputs from a seeded Random."""

    def __init__(self, ref: RefSchema, rnd: random.Random):
        self.ref = ref
        self.rnd = rnd
        self.pool: list[bytes] = []
        self.kinds = [
            ("valid", 16, self.valid),
            ("structural", 12, self.structural),
            ("havoc", 22, self.havoc),
            ("revalue", 14, self.revalue),
            ("splice", 4, self.splice),
            ("targeted", 16, self.targeted),
            ("grammar", 5, self.grammar),
            ("random", 3, self.random_bytes),
            ("deep", 4, self.deep),
            ("size", 4, self.size),
        ]
        self.names = [k[0] for k in self.kinds]
        self.weights = [k[1] for k in self.kinds]
        self.funcs = [k[2] for k in self.kinds]

    def fields(self) -> list[FieldSpec]:
        rnd = self.rnd
        p = rnd.choice([1.0, 0.5, 0.25, 0.12, 0.05])
        return [f for f in self.ref.fields if (f.required and rnd.random() < 0.97) or rnd.random() < p]

    def sub_ref(self) -> RefSchema:
        fields = self.fields() or [self.rnd.choice(self.ref.fields)]
        return RefSchema(fields, "ignore", self.ref.max_depth, self.ref.max_message_bytes)

    def base(self) -> bytes:
        if len(self.pool) < 8 or self.rnd.random() < 0.1:
            return self.valid()
        return self.rnd.choice(self.pool)

    def make(self, n: int) -> tuple[list[bytes], list[str]]:
        names = self.rnd.choices(range(len(self.kinds)), self.weights, k=n)
        out = []
        for k in names:
            raw = self.funcs[k]()
            out.append(raw)
        return out, [self.names[k] for k in names]

    # -- the generators

    def valid(self) -> bytes:
        raw = gen_valid(self.fields(), self.rnd).render()
        self._remember(raw)
        return raw

    def structural(self) -> bytes:
        raw = S.gen_mutated(self.sub_ref(), self.rnd)
        self._remember(raw)
        return raw

    def _remember(self, raw: bytes) -> None:
        if len(self.pool) < 512:
            self.pool.append(raw)
        else:
            self.pool[self.rnd.randrange(512)] = raw

    def havoc(self) -> bytes:
        rnd = self.rnd
        b = bytearray(self.base())
        for _ in range(rnd.choice([1, 1, 1, 2, 2, 3, 4, 6, 8])):
            self._havoc_op(b)
        raw = bytes(b)
        if rnd.random() < 0.1:
            self._remember(raw)
        return raw

    def revalue(self) -> bytes:
        """A message with one to three values swapped for edge tokens or other fields' values."""
        b = bytearray(self.base())
        for _ in range(self.rnd.choice([1, 1, 2, 3])):
            self._replace_value(b)
        return bytes(b)

    def _havoc_op(self, b: bytearray) -> None:
        rnd = self.rnd
        n = len(b)
        i = rnd.randint(0, n)
        j = min(i, n - 1) if n else 0
        op = rnd.randrange(16)
        if op == 0 and n:
            b[j] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:
            b[j] = rnd.choice(S.INTERESTING_BYTES) if rnd.random() < 0.7 else rnd.randrange(256)
        elif op == 2:
            b.insert(i, rnd.choice(S.INTERESTING_BYTES) if rnd.random() < 0.7 else rnd.randrange(256))
        elif op == 3 and n:
            del b[j : j + rnd.choice([1, 1, 2, 3, 4, 8, 16])]
        elif op == 4 and n:
            a = rnd.randrange(n)
            b[i:i] = b[a : a + rnd.choice([1, 2, 4, 8, 16, 64])]
        elif op in (5, 6):
            b[i:i] = rnd.choice(FRAGMENTS)
        elif op in (7, 8, 9):
            self._replace_value(b)
        elif op == 10 and n:
            del b[rnd.randint(1, n) :]
        elif op == 11:
            b[i:i] = rnd.choice(OVERLONG + S.BAD_UTF8)
        elif op == 12 and n:  # change a digit, a letter's case, or a quote
            spots = [k for k in range(n) if 0x30 <= b[k] <= 0x39 or 0x41 <= (b[k] | 0x20) - 0x20 <= 0x5A]
            if spots:
                k = rnd.choice(spots)
                b[k] = rnd.choice(b"0123456789") if 0x30 <= b[k] <= 0x39 else b[k] ^ 0x20
        elif op == 13:  # insert a run of digits (numbers just past a type's range)
            b[i:i] = bytes(rnd.choice(b"0123456789") for _ in range(rnd.randint(1, 25)))
        elif op == 14 and n:  # swap two ranges
            a, c = sorted((rnd.randrange(n), rnd.randrange(n)))
            w = rnd.randint(1, 8)
            if c >= a + w:
                b[a : c + w] = b[c : c + w] + b[a + w : c] + b[a : a + w]
        else:  # whitespace, control bytes
            b[i:i] = rnd.choice([b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b"\x0b", b"\xc2\xa0", b" " * 8])

    def _replace_value(self, b: bytearray) -> None:
        """Replace the value after a random colon (outside strings) with a token."""
        rnd = self.rnd
        colons = _member_colons(b)
        if not colons:
            return
        a = rnd.choice(colons) + 1
        c = _value_end(b, a)
        if rnd.random() < 0.85:
            tok = rnd.choice(VALUE_TOKENS_B)
        else:
            tok = fuzz_value(rnd.choice(self.ref.fields), rnd).encode("utf-8")
        b[a:c] = tok

    def splice(self) -> bytes:
        rnd = self.rnd
        x, y = self.base(), self.base()
        if rnd.random() < 0.5:  # cut at structural characters
            cx = [k for k in range(len(x)) if x[k] in b',:{}[]"'] or [0]
            cy = [k for k in range(len(y)) if y[k] in b',:{}[]"'] or [0]
            return x[: rnd.choice(cx)] + y[rnd.choice(cy) :]
        return x[: rnd.randint(0, len(x))] + y[rnd.randint(0, len(y)) :]

    def targeted(self) -> bytes:
        """A short object aimed at field rules: a few keys, edge values."""
        rnd = self.rnd
        pairs = []
        for _ in range(rnd.choice([1, 1, 2, 3, 4])):
            spec = rnd.choice(self.ref.fields)
            r = rnd.random()
            if r < 0.6:
                v = rnd.choice(VALUE_TOKENS)
            elif r < 0.9:
                v = fuzz_value(spec, rnd)
            else:
                v = "null"
            pairs.append((_key(spec.name, rnd), v))
        if rnd.random() < 0.8:
            pairs.append(('"user_id"', rnd.choice(["1", "2", "9223372036854775807", "0", "-1", "1.0", "null", '"1"'])))
        if rnd.random() < 0.15:
            pairs.append((S.encode_string(S.rand_text(rnd, 0, 4), rnd), rnd.choice(VALUE_TOKENS)))
        rnd.shuffle(pairs)
        return S.Msg(pairs, rnd.getrandbits(32), rnd.random() < 0.3, S.ws(rnd), S.ws(rnd)).render()

    def grammar(self) -> bytes:
        rnd = self.rnd
        toks = [b"{"] if rnd.random() < 0.7 else []
        toks += [rnd.choice(GRAMMAR_TOKENS) for _ in range(rnd.randint(0, 24))]
        return b"".join(toks)

    def random_bytes(self) -> bytes:
        rnd = self.rnd
        head = rnd.choice([b"", b"", b"{", b'{"', b'{"user_id":'])
        return head + rnd.randbytes(rnd.choice([0, 1, 2, 3, 8, rnd.randint(0, 64)]))

    def deep(self) -> bytes:
        rnd = self.rnd
        d = self.ref.max_depth
        depth = rnd.choice([d - 2, d - 1, d - 1, d, d, d + 1, rnd.randint(1, 3 * d), rnd.randint(d, 400)])
        inner = S.nest(max(depth - 1, 0), rnd)
        if rnd.random() < 0.25:  # unbalanced
            cut = rnd.randint(0, len(inner))
            inner = inner[:cut] + inner[cut + 1 :]
        key = rnd.choice(['"extra"', '"k"', '"i8"', '"s"'])
        return ('{"user_id":1,' + key + ":" + inner + "}").encode("utf-8")

    def size(self) -> bytes:
        """A message padded with whitespace to the size limit, one byte either side."""
        rnd = self.rnd
        raw = self.base()
        want = self.ref.max_message_bytes + rnd.choice([-1, 0, 0, 1, 1, 2])
        pad = max(0, want - len(raw))
        at = rnd.choice([0, len(raw), max(raw.find(b"{") + 1, 0)])
        return raw[:at] + b" " * pad + raw[at:]


def _outside_strings(raw: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """(position, byte) of every byte outside string literals (quotes excluded)."""
    in_str = esc = False
    for k, c in enumerate(raw):
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:
                esc = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        else:
            yield k, c


def _member_colons(b: bytearray) -> list[int]:
    """Positions of the colons outside string literals."""
    return [k for k, c in _outside_strings(b) if c == 0x3A]


def _value_end(b: bytearray, a: int) -> int:
    """End of the (roughly well-formed) value that starts at or after b[a]."""
    n = len(b)
    while a < n and b[a] in b" \t\r\n":
        a += 1
    depth, in_str, esc = 0, False, False
    k = a
    while k < n:
        c = b[k]
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:
                esc = True
            elif c == 0x22:
                in_str = False
                if depth == 0:
                    return k + 1
        elif c == 0x22:
            in_str = True
        elif c in b"[{":
            depth += 1
        elif c in b"]}":
            if depth == 0:
                return k
            depth -= 1
            if depth == 0:
                return k + 1
        elif c == 0x2C and depth == 0:
            return k
        k += 1
    return n


def batch_plan(k: int) -> tuple[str, str]:
    """(schema name, framing) of batch k: reject every third batch, ndjson every fourth."""
    return ("reject" if k % 3 == 2 else "ignore"), ("ndjson" if k % 4 == 3 else "messages")


def make_batch(seed: int, k: int, size: int) -> tuple[list[bytes], list[str]]:
    """Batch k's inputs and generator names: a function of (seed, k, size) only."""
    rnd = random.Random(f"quiver-fuzz:{seed}:{k}:{size}")
    return Maker(ref_schema("ignore"), rnd).make(size)


def ndjson_chunk(inputs: list[bytes], k: int) -> bytes:
    """Join inputs into one NDJSON chunk: LF, CRLF or a blank line between, sometimes no final
    LF. Most inputs' own LFs become spaces (the rest split into several lines)."""
    rnd = random.Random(f"quiver-fuzz-join:{k}:{len(inputs)}")
    seps = rnd.choices([b"\n", b"\r\n", b"\n \t\n", b"\n\n", b"\r\r\n"], [70, 15, 5, 5, 5], k=len(inputs))
    parts = []
    for raw, sep in zip(inputs, seps, strict=True):
        parts.append(raw.replace(b"\n", b" ") if rnd.random() < 0.9 else raw)
        parts.append(sep)
    if parts and rnd.random() < 0.5:
        parts.pop()
    return b"".join(parts)


def reference_frame(data: bytes, max_len: int) -> tuple[list[bytes], list[int], int]:
    """(messages, their offsets, blank lines) of newline framing, as README.md specifies it:
    split at LF, drop one CR before it, skip lines of only space/tab/CR unless longer than
    max_len; a final line without LF is a message when it is not empty."""
    msgs, offs, blank = [], [], 0
    pos = 0
    n = len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        end = n if nl < 0 else nl
        line = data[pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) <= max_len and not line.strip(b" \t\r"):
            blank += 1
        else:
            msgs.append(line)
            offs.append(pos)
        if nl < 0:
            break
        pos = nl + 1
    return msgs, offs, blank


# ---------------------------------------------------------------------------------------------
# The oracle


class _Pairs(list):
    """An object as json.loads saw it: every (key, value), repeated keys included."""


def _bad_constant(name: str):
    raise ValueError(name)


def loads_verdict(raw: bytes, max_depth: int) -> bool:
    """Whether ``strict_loads(raw, max_depth, reject_duplicates=False)`` should accept raw,
    without its two blind spots: it checks lone surrogates and depth on the decoded dict,
    where a repeated key has already overwritten the first value (``{"a":"\\ud800","a":1}``
    passes), and it measures depth recursively (RecursionError from ~330 levels)."""
    try:
        text = raw.decode("utf-8")
        top = json.loads(text, parse_constant=_bad_constant, parse_int=_big_int, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        return False
    stack = [(top, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if _has_surrogate(v):
                return False
        elif isinstance(v, list):  # arrays and _Pairs objects
            if depth + 1 > max_depth:
                return False
            if isinstance(v, _Pairs):
                for key, x in v:
                    if _has_surrogate(key):
                        return False
                    stack.append((x, depth + 1))
            else:
                stack.extend((x, depth + 1) for x in v)
    return isinstance(top, _Pairs)


def fuzz_judge(ref: RefSchema, raw: bytes) -> Verdict:
    """``judge``, except where judge's internal cross-check (strict_loads against the
    scanner) raises because of strict_loads' blind spots (see ``loads_verdict``): when the
    scanner rejects the message and a corrected json.loads pass agrees, the verdict is the
    scanner's, as judge would have returned it; the Verdict is marked ``fallback``."""
    try:
        return judge(ref, raw)
    except (AssertionError, RecursionError):
        root, allowed, pos = syntax_verdict(raw, ref.max_depth)
        if root is not None or loads_verdict(raw, ref.max_depth):
            raise
    v = Verdict(False, code=scan_primary(raw, ref.max_depth), allowed=allowed, position=pos)
    v.fallback = True
    return v


# ---------------------------------------------------------------------------------------------
# Known, open discrepancies: counted apart, not failures (``--strict`` makes them failures)


# name -> (schema transform under which the engine's verdict is the reference's, description).
# Empty: the one class found so far (min/max of float32 fields: literal or rounded value?)
# was decided for the literal (README "Rules") and the reference follows it.
KNOWN_ISSUES: dict[str, tuple[Callable[[RefSchema], RefSchema], str]] = {}


# ---------------------------------------------------------------------------------------------
# Checking one batch


@dataclass
class Failure:
    """One disagreement (or crash) with the message that shows it."""

    kind: str  # verdict code position field raw value offset blank counts crash hang reference_error
    schema: str
    framing: str
    raw: bytes  # the message (framing "messages") or the NDJSON chunk (framing "ndjson")
    detail: str
    engine: str | None = None  # the engine's code (None: accepted)
    reference: str | None = None  # the reference's primary code (None: accepted)
    field: str | None = None
    original: bytes | None = None  # before shrinking
    found_by: str = ""
    batch: list[bytes] | None = None  # several pre-framed messages needed together (crash, hang)
    fatal: bool = False  # it killed or hung its process: replay in a fresh one

    def signature(self) -> tuple:
        return (self.kind, self.schema, self.framing, self.engine, self.reference, self.field)


Oracle = Callable[[RefSchema, bytes], Verdict]


def _show(raw: bytes, limit: int = 300) -> str:
    text = repr(raw)
    return text if len(text) <= limit else text[:limit] + f"... ({len(raw)} bytes)"


def compare(
    ref: RefSchema, schema: str, framing: str, msgs: list[bytes], verdicts: list, res, offsets=None, blank=None
) -> list[Failure]:
    """Every way the engine's ParseResult ``res`` departs from the reference's verdicts.

    ``verdicts[i]`` is a Verdict or the exception the reference raised (itself a failure,
    and that message is not compared)."""
    out: list[Failure] = []

    def fail(kind: str, i: int, detail: str, **kw: Any) -> None:
        out.append(Failure(kind, schema, framing, msgs[i] if i >= 0 else b"", detail, **kw))

    n = len(msgs)
    for i, v in enumerate(verdicts):
        if isinstance(v, BaseException):
            fail("reference_error", i, f"reference raised {type(v).__name__}: {v}")
    ok = [i for i, v in enumerate(verdicts) if isinstance(v, Verdict) and v.accepted]
    if (res.accepted + res.rejected, res.batch.num_rows, res.rejects.num_rows) != (n, res.accepted, res.rejected):
        fail("counts", -1, f"received {res.received}, rows {res.batch.num_rows}+{res.rejects.num_rows}, messages {n}")
    if sum(res.error_counts.values()) != res.rejected:
        fail("counts", -1, f"error_counts {res.error_counts} do not sum to {res.rejected}")
    if blank is not None and res.blank != blank:
        fail("blank", -1, f"engine counts {res.blank} blank lines, reference {blank}")
    rj = res.rejects.to_pydict()
    got = {i: k for k, i in enumerate(rj["index"])}
    for i, v in enumerate(verdicts):
        if not isinstance(v, Verdict):
            continue
        k = got.get(i)
        code = None if k is None else rj["error"][k]
        if v.accepted:
            if code is not None:
                fail("verdict", i, f"reference accepts, engine rejects: {code}", engine=code, field=rj["field"][k])
            continue
        if code is None:
            fail("verdict", i, f"reference rejects ({v.code}, {v.field}), engine accepts", reference=v.code)
            continue
        kw = {"engine": code, "reference": v.code}
        if code not in v.allowed:
            fail("code", i, f"engine says {code} ({rj['field'][k]}), reference allows {sorted(v.allowed)}", **kw)
            continue
        pos = rj["position"][k]
        expected_raw = msgs[i][: ref.max_message_bytes + 1] if code == "too_large" else msgs[i]
        if rj["raw"][k] != expected_raw:
            fail("raw", i, f"dead letter raw {_show(rj['raw'][k])}", **kw)
        if offsets is not None and rj["offset"][k] != offsets[i]:
            fail("offset", i, f"offset {rj['offset'][k]}, reference {offsets[i]}", **kw)
        if not 0 <= pos <= len(msgs[i]):
            fail("position", i, f"position {pos} outside the message", **kw)
        elif code not in SYNTAX_CODES and code != "too_large":
            if v.position is not None and pos != v.position:
                fail("position", i, f"{code} at byte {pos}, reference says byte {v.position}", **kw)
            if rj["field"][k] != v.field:
                fail("field", i, f"{code} field {rj['field'][k]!r}, reference {v.field!r}", field=v.field, **kw)
    if res.batch.num_rows == len(ok) and res.received == n:
        batch = res.batch
        for spec in ref.fields:
            col = column_values(batch.column(batch.schema.get_field_index(spec.name)), spec)
            for row, i in enumerate(ok):
                want = verdicts[i].row[spec.name]
                if not same_value(spec, col[row], want):
                    fail("value", i, f"field {spec.name} = {col[row]!r}, reference {want!r}", field=spec.name)
    return out


@dataclass
class BatchReport:
    k: int
    schema: str
    framing: str
    inputs: int = 0
    messages: int = 0
    accepted: int = 0
    codes: Counter = field(default_factory=Counter)  # reference primary codes
    kinds: Counter = field(default_factory=Counter)  # generators used
    failures: list[Failure] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # every failure by kind (kept or not)
    known: Counter = field(default_factory=Counter)  # known discrepancies (KNOWN_ISSUES) by name
    known_examples: dict = field(default_factory=dict)  # name -> one message
    fallbacks: int = 0  # verdicts fuzz_judge had to take from the scanner alone
    seconds: dict = field(default_factory=dict)


class Runner:
    """Parsers and reference schemas for both variants; checks batches in this process."""

    def __init__(
        self,
        seed: int,
        batch_size: int = DEFAULT_BATCH,
        oracle: Oracle = fuzz_judge,
        parse_timeout: float = 60.0,
        parsers: dict | None = None,
        threads: int | None = None,
        shrink_budget: int = 3000,
        strict: bool = False,
    ):
        self.seed = seed
        self.batch_size = batch_size
        self.oracle = oracle
        self.parse_timeout = parse_timeout
        self.refs = {s: ref_schema(s) for s in SCHEMAS}
        self.parsers = parsers or {s: make_parser(s, threads) for s in SCHEMAS}
        self.shrink_budget = shrink_budget
        self.known_refs = (
            {} if strict else {n: {s: t(r) for s, r in self.refs.items()} for n, (t, _) in KNOWN_ISSUES.items()}
        )

    def _judge_all(self, ref: RefSchema, msgs: list[bytes]) -> list:
        out = []
        for m in msgs:
            try:
                out.append(self.oracle(ref, m))
            except Exception as e:  # a reference bug: reported, never hidden
                out.append(e)
        return out

    def check(
        self, schema: str, framing: str, data: list[bytes] | bytes, phase: Callable[[str], None] | None = None
    ) -> tuple[list[Failure], list, Any]:
        """Parse ``data`` (messages, or one NDJSON chunk) in one call and compare."""
        parser, ref = self.parsers[schema], self.refs[schema]
        offsets = blank = None
        if framing == "ndjson":
            msgs, offsets, blank = reference_frame(data, ref.max_message_bytes)
        else:
            msgs = data
        if phase:
            phase("parse")
        t0 = time.perf_counter()
        try:
            res = parser.parse_ndjson(data) if framing == "ndjson" else parser.parse_messages(msgs)
        except Exception:
            batch = None if framing == "ndjson" else list(msgs)
            raw = data if framing == "ndjson" else (msgs[0] if len(msgs) == 1 else b"")
            return [Failure("crash", schema, framing, raw, traceback.format_exc(limit=6), batch=batch)], [], None
        took = time.perf_counter() - t0
        if phase:
            phase("judge")
        verdicts = self._judge_all(ref, msgs)
        fails = compare(ref, schema, framing, msgs, verdicts, res, offsets, blank)
        if took > self.parse_timeout:
            batch = None if framing == "ndjson" else list(msgs)
            raw = data if framing == "ndjson" else b""
            fails.append(Failure("hang", schema, framing, raw, f"one parse call took {took:.1f} s", batch=batch))
        return fails, verdicts, res

    def check_one(self, schema: str, framing: str, raw: bytes) -> list[Failure]:
        """Check one message (or one NDJSON chunk) on its own."""
        return self.check(schema, framing, raw if framing == "ndjson" else [raw])[0]

    def run_batch(self, k: int, size: int | None = None, phase: Callable[[str], None] | None = None) -> BatchReport:
        size = size or self.batch_size
        schema, framing = batch_plan(k)
        rep = BatchReport(k, schema, framing)
        t0 = time.perf_counter()
        inputs, kinds = make_batch(self.seed, k, size)
        rep.inputs = len(inputs)
        rep.kinds.update(kinds)
        data = ndjson_chunk(inputs, k) if framing == "ndjson" else inputs
        t1 = time.perf_counter()
        fails, verdicts, res = self.check(schema, framing, data, phase)
        if phase:
            phase("shrink")
        t2 = time.perf_counter()
        rep.messages = len(verdicts)
        for v in verdicts:
            if isinstance(v, Verdict):
                rep.codes[v.code or "accepted"] += 1
                rep.accepted += v.accepted
                rep.fallbacks += getattr(v, "fallback", False)
        unknown = []
        for f in fails:
            name = self.known_issue(f)
            if name is None:
                unknown.append(f)
            else:
                rep.known[name] += 1
                rep.known_examples.setdefault(name, f.raw)
        rep.counts.update(f.kind for f in unknown)
        rep.failures = self.shrink_all(unknown, k, size)
        rep.seconds = {"generate": t1 - t0, "check": t2 - t1, "shrink": time.perf_counter() - t2}
        return rep

    def known_issue(self, f: Failure) -> str | None:
        """The KNOWN_ISSUES entry that explains a verdict failure, if one does: the engine's
        verdict for the message alone is exactly the reference's under that entry's schema."""
        if f.kind not in ("verdict", "code", "position", "field") or not self.known_refs:
            return None
        res = self.parsers[f.schema].parse_messages([f.raw])
        for name, refs in self.known_refs.items():
            alt = refs[f.schema]
            try:
                v = self.oracle(alt, f.raw)
            except Exception:
                continue
            if not any(g.kind != "value" for g in compare(alt, f.schema, "messages", [f.raw], [v], res)):
                return name
        return None

    def shrink_all(self, fails: list[Failure], k: int, size: int, per_signature: int = 2) -> list[Failure]:
        """Keep a few failures per signature, each shrunk to a minimal message."""
        seen: Counter = Counter()
        kept = []
        for f in fails:
            f.found_by = f"seed {self.seed}, batch {k}, batch size {size}"
            sig = f.signature()
            seen[sig] += 1
            if seen[sig] > per_signature:
                continue
            if f.kind == "crash":
                f = self.isolate_crash(f)
            elif f.kind not in ("counts", "hang", "reference_error") and f.batch is None:
                f = self.shrink(f)
            kept.append(f)
        return kept

    def isolate_crash(self, f: Failure) -> Failure:
        """An exception in a batch: find one message (or line) that raises on its own."""
        msgs = f.raw.split(b"\n") if f.framing == "ndjson" else (f.batch or [f.raw])
        for m in msgs:
            got = [x for x in self.check_one(f.schema, f.framing, m) if x.kind == "crash"]
            if got:
                one = Failure("crash", f.schema, f.framing, m, got[0].detail, found_by=f.found_by)
                return self.shrink(one)
        return f  # only the whole batch raises: keep it whole

    def shrink(self, f: Failure) -> Failure:
        """Remove bytes from the message while a failure with the same signature persists."""
        sig = f.signature()
        budget = [self.shrink_budget]

        def still(raw: bytes) -> Failure | None:
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            for g in self.check_one(f.schema, f.framing, raw):
                if g.signature() == sig:
                    return g
            return None

        best = still(f.raw)
        if best is None:  # does not fail alone: keep the original (and say so)
            f.detail += " [does not reproduce on its own]"
            return f
        raw = f.raw
        progressed = True
        while progressed and budget[0] > 0:  # whole members and elements first
            progressed = False
            for cand in _structural_cuts(raw):
                g = still(cand)
                if g is not None:
                    raw, best, progressed = cand, g, True
                    break
        chunk = max(1, len(raw) // 2)
        while chunk >= 1 and budget[0] > 0:
            i = 0
            progressed = False
            while i < len(raw) and budget[0] > 0:
                cand = raw[:i] + raw[i + chunk :]
                g = still(cand)
                if g is not None:
                    raw, best, progressed = cand, g, True
                else:
                    i += chunk
            if not progressed:
                chunk //= 2
        best.original = f.raw
        best.found_by = f.found_by
        return best


def _structural_cuts(raw: bytes) -> list[bytes]:
    """Smaller versions of raw, biggest cut first: without one member of an object or one
    element of an array (with its comma), or without whitespace outside strings."""
    cuts: list[tuple[int, int]] = []
    stack: list[list[int]] = []
    spaces = []
    for k, c in _outside_strings(raw):
        if c in b"{[":
            stack.append([k])
        elif c == 0x2C and stack:
            stack[-1].append(k)
        elif c in b"}]" and stack:
            seps = stack.pop() + [k]
            for i in range(len(seps) - 1):
                if len(seps) == 2:
                    cuts.append((seps[0] + 1, seps[1]))
                elif i < len(seps) - 2:
                    cuts.append((seps[i] + 1, seps[i + 1] + 1))
                else:
                    cuts.append((seps[i], seps[i + 1]))
        elif c in b" \t\r\n":
            spaces.append(k)
    out = [raw[:a] + raw[b:] for a, b in sorted(cuts, key=lambda ab: ab[0] - ab[1]) if b > a]
    if spaces:
        drop = set(spaces)
        out.append(bytes(c for k, c in enumerate(raw) if k not in drop))
    return out


# ---------------------------------------------------------------------------------------------
# Saved cases


def save_case(f: Failure, save_dir: Path, status: str = "open") -> Path:
    """Write a failure as tests/fuzz_cases/<sha1 prefix>.json (see the README.md there)."""
    save_dir.mkdir(parents=True, exist_ok=True)
    key = f"{f.schema}:{f.framing}:".encode() + f.raw + b"".join(f.batch or [])
    path = save_dir / f"{hashlib.sha1(key).hexdigest()[:12]}.json"
    doc = {
        "status": status,
        "kind": f.kind,
        "schema": f.schema,
        "framing": f.framing,
        "raw_b64": base64.b64encode(f.raw).decode("ascii"),
        "raw": f.raw.decode("utf-8", "backslashreplace"),
        "engine": f.engine,
        "reference": f.reference,
        "field": f.field,
        "detail": f.detail,
        "found_by": f.found_by,
    }
    if f.fatal:
        doc["fatal"] = True
    if f.batch is not None:
        doc["batch_b64"] = [base64.b64encode(m).decode("ascii") for m in f.batch]
    if f.original is not None and f.original != f.raw:
        doc["original_b64"] = base64.b64encode(f.original).decode("ascii")
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_cases(save_dir: Path = CASES_DIR) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(save_dir.glob("*.json"))]


def case_data(doc: dict) -> list[bytes] | bytes:
    """What a saved case feeds the parser: its messages, or its NDJSON chunk."""
    if "batch_b64" in doc:
        return [base64.b64decode(m) for m in doc["batch_b64"]]
    raw = base64.b64decode(doc["raw_b64"])
    return raw if doc["framing"] == "ndjson" else [raw]


def replay_case(runner: Runner, doc: dict, timeout: float = 60.0) -> list[Failure]:
    """The failures a saved case still shows (empty: it passes). Hangs and cases that killed
    their process replay in a fresh process."""
    schema, framing, data = doc["schema"], doc["framing"], case_data(doc)
    if doc.get("fatal") or doc["kind"] == "hang":
        got = probe(schema, framing, data, timeout)
        return [] if got == "ok" else [Failure(doc["kind"], schema, framing, b"", got)]
    return runner.check(schema, framing, data)[0]


# ---------------------------------------------------------------------------------------------
# Worker processes (spawn) and the watching parent


def _worker_main(conn, seed: int, batch_size: int, parse_timeout: float, strict: bool) -> None:
    runner = Runner(seed, batch_size, parse_timeout=parse_timeout, strict=strict)
    runner.parsers["ignore"].warm()
    runner.parsers["reject"].warm()
    conn.send(("ready", None))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        k, size = msg

        def phase(name: str, k: int = k, size: int = size) -> None:
            conn.send((name, k))
            if name == "parse" and os.environ.get(SELFTEST_ENV):
                inputs, _ = make_batch(seed, k, size)
                _selftest_fault(inputs)

        conn.send(("done", runner.run_batch(k, size, phase)))


SELFTEST_ENV = "QUIVER_FUZZ_SELFTEST"  # "abort:MARKER" or "hang:MARKER" (tests of the watchdog)


def _selftest_fault(data: list[bytes] | bytes) -> None:
    """Die or hang, as a broken kernel would, when the inputs hold a marker (tests only)."""
    spec = os.environ.get(SELFTEST_ENV)
    if not spec:
        return
    what, _, marker = spec.partition(":")
    msgs = [data] if isinstance(data, bytes) else data
    if any(marker.encode() in m for m in msgs):
        if what == "hang":
            time.sleep(10**6)
        os.abort()


def _probe_main(conn, schema: str, framing: str, data: list[bytes] | bytes) -> None:
    parser = make_parser(schema)
    conn.send("ready")
    try:
        _selftest_fault(data)
        if framing == "ndjson":
            parser.parse_ndjson(data)
        else:
            parser.parse_messages(data)
    except Exception:
        conn.send("crash: " + traceback.format_exc(limit=6))
        return
    conn.send("ok")


def probe(schema: str, framing: str, data: list[bytes] | bytes, timeout: float) -> str:
    """Parse messages (or an NDJSON chunk) in a fresh process: 'ok', 'crash: ...' (an
    exception), 'died: ...' or 'hang'."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    p = ctx.Process(target=_probe_main, args=(there, schema, framing, data), daemon=True)
    p.start()
    there.close()
    try:
        if not here.poll(600) or here.recv() != "ready":
            return "died: before parsing"
        if not here.poll(timeout):
            return "hang" if p.is_alive() else f"died: exit code {p.exitcode}"
        return here.recv()
    except EOFError:
        p.join(5)
        return f"died: exit code {p.exitcode}"
    finally:
        if p.is_alive():
            p.kill()
        p.join(5)


def isolate_in_processes(schema: str, framing: str, inputs: list[bytes], k: int, timeout: float, log) -> list[bytes]:
    """Bisect inputs to a small subset that still hangs or kills a fresh process."""

    def bad(part: list[bytes]) -> bool:
        return probe(schema, framing, ndjson_chunk(part, k) if framing == "ndjson" else part, timeout) != "ok"

    cur = inputs
    while len(cur) > 1:
        half = len(cur) // 2
        a, b = cur[:half], cur[half:]
        if bad(a):
            cur = a
        elif bad(b):
            cur = b
        else:
            log(f"  bisect: needs inputs from both halves; keeping {len(cur)}")
            break
        log(f"  bisect: {len(cur)} inputs left")
    return cur


@dataclass
class Summary:
    inputs: int = 0
    messages: int = 0
    accepted: int = 0
    fallbacks: int = 0
    batches: int = 0
    codes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # by kind, including suppressed ones
    reported: list[Failure] = field(default_factory=list)
    known: Counter = field(default_factory=Counter)
    known_examples: dict = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def mismatches(self) -> int:
        return sum(c for k, c in self.failures.items() if k not in ("crash", "hang", "reference_error"))

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self, seed: int) -> str:
        rate = self.inputs / self.elapsed if self.elapsed else 0.0
        return (
            f"fuzz summary: {self.inputs} inputs ({self.messages} messages, {self.accepted} accepted) "
            f"in {self.elapsed:.0f} s ({rate:.0f} inputs/s), seed {seed}: {self.mismatches} mismatches, "
            f"{self.failures['crash']} crashes, {self.failures['hang']} hangs, "
            f"{self.failures['reference_error']} reference errors; "
            f"{sum(self.known.values())} known discrepancies ({', '.join(f'{k} {v}' for k, v in self.known.items()) or '-'}), "
            f"{self.fallbacks} scanner-only verdicts"
        )


def fuzz(
    inputs: int,
    seed: int,
    *,
    jobs: int = 1,
    batch_size: int = DEFAULT_BATCH,
    start_batch: int = 0,
    save_dir: Path | None = CASES_DIR,
    parse_timeout: float = 60.0,
    batch_timeout: float = 3600.0,
    oracle: Oracle = fuzz_judge,
    parsers: dict | None = None,
    max_cases: int = 3,
    strict: bool = False,
    log: Callable[[str], None] = print,
) -> Summary:
    """Run ``inputs`` fuzz inputs from batch ``start_batch`` on; return the summary."""
    nb = max(1, math.ceil(inputs / batch_size))
    sizes = [min(batch_size, inputs - j * batch_size) for j in range(nb)]
    todo = [(start_batch + j, max(1, s)) for j, s in enumerate(sizes)]
    summ = Summary()
    saved_per_sig: Counter = Counter()
    t_start = time.perf_counter()
    last_log = [0.0]

    def record(rep: BatchReport) -> None:
        summ.batches += 1
        summ.inputs += rep.inputs
        summ.messages += rep.messages
        summ.accepted += rep.accepted
        summ.fallbacks += rep.fallbacks
        summ.codes.update(rep.codes)
        summ.kinds.update(rep.kinds)
        for f in rep.failures:
            summ.reported.append(f)
            log(f"FAILURE {f.kind} [{f.schema}/{f.framing}] {f.detail}\n  message: {_show(f.raw)}\n  ({f.found_by})")
            sig = f.signature()
            saved_per_sig[sig] += 1
            if save_dir is not None and saved_per_sig[sig] <= max_cases:
                path = save_case(f, save_dir)
                summ.saved.append(path)
                log(f"  saved {path}")
        summ.failures.update(rep.counts)
        summ.known.update(rep.known)
        for name, raw in rep.known_examples.items():
            if name not in summ.known_examples:
                summ.known_examples[name] = raw
                log(f"known discrepancy {name} (counted apart): {_show(raw)}")
        now = time.perf_counter()
        summ.elapsed = now - t_start
        if now - last_log[0] > 5 or summ.batches == len(todo):
            last_log[0] = now
            rate = summ.inputs / summ.elapsed if summ.elapsed else 0
            left = (inputs - summ.inputs) / rate if rate else 0
            log(
                f"[{time.strftime('%H:%M:%S')}] batch {rep.k} ({rep.schema}/{rep.framing}) done: "
                f"{summ.inputs}/{inputs} inputs, {rate:.0f}/s, {sum(summ.failures.values())} failures, "
                f"{sum(summ.known.values())} known, "
                f"eta {left / 60:.0f} min"
            )

    if jobs <= 0:
        runner = Runner(seed, batch_size, oracle=oracle, parse_timeout=parse_timeout, parsers=parsers, strict=strict)
        for k, size in todo:
            record(runner.run_batch(k, size))
    else:
        _drive_workers(todo, seed, batch_size, jobs, parse_timeout, batch_timeout, strict, record, log)
    summ.failures = Counter({k: v for k, v in summ.failures.items() if v})
    summ.elapsed = time.perf_counter() - t_start
    return summ


def _drive_workers(todo, seed, batch_size, jobs, parse_timeout, batch_timeout, strict, record, log) -> None:
    ctx = mp.get_context("spawn")
    queue = list(reversed(todo))
    workers: dict = {}  # conn -> [process, current (k, size) or None, phase, deadline]

    def start() -> None:
        here, there = ctx.Pipe()
        p = ctx.Process(target=_worker_main, args=(there, seed, batch_size, parse_timeout, strict), daemon=True)
        p.start()
        there.close()
        workers[here] = [p, None, "start", time.monotonic() + 900]

    def assign(conn) -> None:
        w = workers[conn]
        if queue:
            w[1] = queue.pop()
            w[2], w[3] = "generate", time.monotonic() + batch_timeout
            conn.send(w[1])
        else:
            w[1] = None
            conn.send(None)
            w[0].join(30)
            del workers[conn]

    def lost(conn, why: str) -> None:
        p, job, phase, _ = workers.pop(conn)
        if p.is_alive():
            p.kill()
        p.join(5)
        if job is None:
            raise RuntimeError(f"fuzz worker failed to start ({why})")
        k, size = job
        schema, framing = batch_plan(k)
        kind = "hang" if why.startswith("timeout") and phase == "parse" else "crash"
        log(f"worker lost on batch {k} in phase {phase}: {why}; isolating in fresh processes")
        rep = BatchReport(k, schema, framing)
        if phase == "parse":
            inputs, _ = make_batch(seed, k, size)
            culprits = isolate_in_processes(schema, framing, inputs, k, parse_timeout, log)
            detail = f"{why} (phase {phase}); isolated {len(culprits)} of {len(inputs)} inputs"
        else:
            culprits, detail = [], f"{why} (phase {phase}): outside the parse call; replay the batch with --jobs 0"
        if framing == "ndjson":
            raw, batch = ndjson_chunk(culprits, k), None
        else:
            raw, batch = (culprits[0], None) if len(culprits) == 1 else (b"", culprits)
        where = f"seed {seed}, batch {k}, batch size {size}"
        rep.failures.append(Failure(kind, schema, framing, raw, detail, found_by=where, batch=batch, fatal=True))
        rep.counts[kind] += 1
        record(rep)
        if queue:
            start()

    for _ in range(min(jobs, len(todo))):
        start()
    while workers:
        now = time.monotonic()
        timeout = max(0.0, min(w[3] for w in workers.values()) - now)
        ready = wait(list(workers), timeout=min(timeout, 5.0))
        for conn in ready:
            try:
                tag, payload = conn.recv()
            except (EOFError, OSError):
                lost(conn, f"worker died, exit code {workers[conn][0].exitcode}")
                continue
            w = workers[conn]
            if tag == "ready":
                assign(conn)
            elif tag == "parse":
                w[2], w[3] = "parse", time.monotonic() + parse_timeout
            elif tag in ("judge", "shrink"):
                w[2], w[3] = tag, time.monotonic() + batch_timeout
            elif tag == "done":
                record(payload)
                assign(conn)
        now = time.monotonic()
        for conn in [c for c, w in workers.items() if w[3] < now]:
            lost(conn, f"timeout in phase {workers[conn][2]}")


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=200_000, help="inputs to run (default 200000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes; 0 runs in this process")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--start-batch", type=int, default=0, help="first batch index (to replay one batch)")
    ap.add_argument("--batches", type=int, default=None, help="run this many whole batches (overrides --inputs)")
    ap.add_argument(
        "--save-dir", type=Path, default=CASES_DIR, help="where failing cases go (default tests/fuzz_cases)"
    )
    ap.add_argument("--no-save", action="store_true", help="do not save failing cases")
    ap.add_argument("--parse-timeout", type=float, default=60.0, help="seconds one parse call may take")
    ap.add_argument("--strict", action="store_true", help="count the known discrepancies (KNOWN_ISSUES) as failures")
    args = ap.parse_args(argv)
    n = args.batches * args.batch_size if args.batches is not None else args.inputs

    def log(s: str) -> None:
        print(s, flush=True)

    log(
        f"fuzz: {n} inputs, seed {args.seed}, jobs {args.jobs}, batches of {args.batch_size} "
        f"from batch {args.start_batch}; python {sys.version.split()[0]}, pid {os.getpid()}"
    )
    summ = fuzz(
        n,
        args.seed,
        jobs=args.jobs,
        batch_size=args.batch_size,
        start_batch=args.start_batch,
        save_dir=None if args.no_save else args.save_dir,
        parse_timeout=args.parse_timeout,
        strict=args.strict,
        log=log,
    )
    total = sum(summ.codes.values()) or 1
    log("reference verdicts: " + ", ".join(f"{c} {v / total:.1%}" for c, v in summ.codes.most_common()))
    log("generators: " + ", ".join(f"{c} {v}" for c, v in summ.kinds.most_common()))
    if summ.saved:
        log("saved cases: " + " ".join(str(p) for p in summ.saved))
    log(summ.line(args.seed))
    return 0 if summ.ok else 1


if __name__ == "__main__":
    sys.exit(main())
