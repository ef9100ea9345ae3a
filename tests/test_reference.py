"""Self-tests of tests/reference.py: the oracle must be right before it judges the engine.

The reference has two independent decoders (json.loads made strict, and a byte scanner);
these tests pin both on known cases and check on random inputs that they agree, and check
the date/time/UTF-8 helpers against the standard library.
"""

import base64
import datetime as dt
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import (
    JsonText,
    ReferenceReject,
    RefSchema,
    days_from_civil,
    judge,
    parse_rfc3339,
    reference_parse,
    scan_document,
    strict_loads,
    syntax_verdict,
    utf8_length,
)

SCHEMA = RefSchema.from_yaml(
    """
streams:
  t:
    unknown_fields: ignore
    fields:
      i: {type: int64}
      u: {type: uint64}
      i8: {type: int8, min: -5}
      f: {type: float64}
      g: {type: float32}
      s: {type: string, max_length: 3}
      e: {type: enum, enum: [a, b]}
      b: {type: bool}
      j: {type: json}
      bin: {type: binary}
      d: {type: date32}
      ts: {type: "timestamp[ms]"}
      r: {type: int64, required: true}
limits: {max_depth: 4, max_message_bytes: 200}
"""
)

STRICT_CASES = [
    (b'{"a":1}', {"a": 1}),
    (b' \t\r\n{"a":[1,2.5,"x",true,false,null,{}]} \n', {"a": [1, 2.5, "x", True, False, None, {}]}),
    (b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}),
    (b'{"a":' + b"9" * 5000 + b"}", {"a": 10**5000 - 1}),
    (b'{"a":NaN}', "invalid_json"),
    (b'{"a":-Infinity}', "invalid_json"),
    (b'{"a":"\\udc00"}', "invalid_utf8"),
    (b'{"a\\ud800":1}', "invalid_utf8"),
    (b'{"a":"\xed\xa0\x80"}', "invalid_utf8"),
    (b'{"a":"\xc0\xaf"}', "invalid_utf8"),
    (b'\xef\xbb\xbf{"a":1}', "invalid_json"),
    (b'{"a":1}\x0c', "invalid_json"),
    (b'{"a":\xd9\xa1}', "invalid_json"),
    (b'{"a":1,"a":1}', "duplicate_field"),
    (b'{"a":[{"b":1,"b":2}]}', "duplicate_field"),
    (b'{"a":[[[[1]]]]}', "too_deep"),
    (b"[1]", "not_an_object"),
    (b'"x"', "not_an_object"),
]


@pytest.mark.parametrize(("raw", "want"), STRICT_CASES)
def test_strict_loads_known_cases(raw, want):
    if isinstance(want, str):
        with pytest.raises(ReferenceReject) as e:
            strict_loads(raw, max_depth=4)
        assert e.value.code == want
    else:
        assert strict_loads(raw, max_depth=4) == want


JUDGE_CASES = [
    (b'{"r":1,"i":-0}', {"i": 0, "r": 1}),
    (b'{"r":1,"u":18446744073709551615}', {"u": 2**64 - 1}),
    (b'{"r":1,"u":18446744073709551616}', "int_overflow"),
    (b'{"r":1,"u":-1}', "out_of_range"),
    (b'{"r":1,"u":-0}', {"u": 0}),
    (b'{"r":1,"i":-9223372036854775808}', {"i": -(2**63)}),
    (b'{"r":1,"i":9223372036854775808}', "int_overflow"),
    (b'{"r":1,"i":1.0}', "type_mismatch"),
    (b'{"r":1,"i":1e2}', "type_mismatch"),
    (b'{"r":1,"i8":-6}', "out_of_range"),
    (b'{"r":1,"i8":128}', "out_of_range"),
    (b'{"r":1,"f":1e309}', "out_of_range"),
    (b'{"r":1,"f":1e-400}', {"f": 0.0}),
    (b'{"r":1,"g":3.5e38}', "out_of_range"),
    (b'{"r":1,"g":0.1}', {"g": float(struct.unpack("<f", struct.pack("<f", 0.1))[0])}),
    (b'{"r":1,"s":"\\u00e9\\ud83d\\ude00x"}', {"s": "\u00e9\U0001f600x"}),
    (b'{"r":1,"s":"abcd"}', "too_long"),
    (b'{"r":1,"e":"c"}', "not_in_enum"),
    (b'{"r":1,"b":1}', "type_mismatch"),
    (b'{"r":1,"j":{"x":[1, 2]}}', {"j": JsonText('{"x":[1, 2]}')}),
    (b'{"r":1,"j":null}', {"j": None}),
    (b'{"r":1,"bin":"QUJD"}', {"bin": b"ABC"}),
    (b'{"r":1,"bin":"QUJ"}', "type_mismatch"),
    (b'{"r":1,"bin":"QUJD="}', "type_mismatch"),
    (b'{"r":1,"bin":"QUJD===="}', "type_mismatch"),
    (b'{"r":1,"bin":"QR=="}', {"bin": b"A"}),
    (b'{"r":1,"bin":"QU\\/D"}', {"bin": base64.b64decode("QU/D")}),
    (b'{"r":1,"d":"2024-02-29"}', {"d": days_from_civil(2024, 2, 29)}),
    (b'{"r":1,"d":"2023-02-29"}', "out_of_range"),
    (b'{"r":1,"d":"2023-2-28"}', "type_mismatch"),
    (b'{"r":1,"d":-3}', {"d": -3}),
    (b'{"r":1,"d":2147483648}', "out_of_range"),
    (b'{"r":1,"d":1.0}', "type_mismatch"),
    (b'{"r":1,"ts":"1970-01-01T00:00:01.0019+00:00"}', {"ts": 1001}),
    (b'{"r":1,"ts":"1969-12-31T23:59:59.9999Z"}', {"ts": -1}),
    (b'{"r":1,"ts":"1970-01-01T01:00:00+01:00"}', {"ts": 0}),
    (b'{"r":1,"ts":"1970-01-01T00:00:60Z"}', "out_of_range"),
    (b'{"r":1,"ts":"1970-01-01T00:00:00"}', "type_mismatch"),
    (b'{"r":1,"ts":12}', {"ts": 12}),
    (b'{"r":1,"ts":1.5}', "type_mismatch"),
    (b'{"i":1}', "missing_required"),
    (b'{"r":null}', "missing_required"),
    (b'{"r":1,"i":"x","i":2}', "type_mismatch"),
    (b'{"i":"x","r":1,"f":"y"}', "type_mismatch"),
    (b'{"r":1,"r":2}', "duplicate_field"),
    (b'{"r":1,"zz":[{"q":1,"q":2}]}', "duplicate_field"),
    (b'{"r":1,"zz":[[[[1]]]]}', "too_deep"),
    (b'{"r":1,"zz":[[[1]]]}', {"i": None}),
    (b'{"r":1,"s":"' + b"x" * 200 + b'"}', "too_large"),
]


@pytest.mark.parametrize(("raw", "want"), JUDGE_CASES)
def test_judge_known_cases(raw, want):
    v = judge(SCHEMA, raw)
    if isinstance(want, str):
        assert not v.accepted
        assert v.code == want
    else:
        assert v.accepted, v
        for k, x in want.items():
            if isinstance(x, float):
                assert struct.pack("<d", v.row[k]) == struct.pack("<d", x)
            else:
                assert v.row[k] == x


def test_rules_on_dates_binary_and_integer_enums():
    schema = RefSchema.from_yaml(
        """
streams:
  x:
    fields:
      d: {type: date32, min: "2000-01-01"}
      t: {type: "timestamp[s]", max: "2000-01-01T00:00:00Z"}
      b: {type: binary, max_length: 2}
      k: {type: uint16, enum: [1, 7]}
"""
    )
    assert judge(schema, b'{"d":"1999-12-31"}').code == "out_of_range"
    assert judge(schema, b'{"d":"2000-01-01","t":946684800}').accepted
    assert judge(schema, b'{"t":"2000-01-01T00:00:01Z"}').code == "out_of_range"
    assert judge(schema, b'{"b":"QUJD"}').code == "too_long"
    assert judge(schema, b'{"b":"QUI="}').row["b"] == b"AB"
    assert judge(schema, b'{"k":7}').row["k"] == 7
    assert judge(schema, b'{"k":2}').code == "not_in_enum"


def test_stream_limits_override_the_configs_key_by_key():
    schema = RefSchema.from_yaml(
        """
streams:
  x:
    fields: {u: {type: int64}}
    limits: {max_depth: 5}
limits: {max_depth: 3, max_message_bytes: 8MiB}
"""
    )
    assert (schema.max_depth, schema.max_message_bytes) == (5, 8 << 20)


def test_schema_first_fault_in_document_order_and_field():
    v = judge(SCHEMA, b'{"f":"no","i":"no","r":1}')
    assert (v.code, v.field) == ("type_mismatch", "f")
    v = judge(SCHEMA, b'{"i":1.5,"zz":{"a":1,"a":2},"r":1}')
    assert (v.code, v.field) == ("type_mismatch", "i")
    v = judge(SCHEMA, b'{"zz":{"a":1,"a":2},"i":1.5,"r":1}')
    assert (v.code, v.field) == ("duplicate_field", "zz")


def test_ambiguous_syntax_codes_are_sets():
    assert syntax_verdict(b"[1,")[1] == {"invalid_json", "not_an_object"}
    assert syntax_verdict(b'{"a":"\xe2\x82')[1] == {"invalid_json", "invalid_utf8"}
    assert syntax_verdict(b'{"a":x, "b":"\xff"}')[1] == {"invalid_json", "invalid_utf8"}
    assert syntax_verdict(b'{"a":"\\ud800\\x"}')[1] == {"invalid_json", "invalid_utf8"}
    assert syntax_verdict(b'{"a":"\\ud800"}')[1] == {"invalid_utf8"}
    assert syntax_verdict(b'{"a":01}')[1] == {"invalid_json"}
    assert syntax_verdict(b'{"a":"\\udfdd","b":[[[1]]]}', max_depth=3)[1] == {"invalid_utf8", "too_deep"}
    assert syntax_verdict(b'[1,"\\ud800"]')[1] == {"invalid_utf8", "not_an_object"}
    assert syntax_verdict(b'{"a":[[[1]]],"b":"\xff"}', max_depth=3)[1] == {"invalid_utf8", "too_deep"}
    assert syntax_verdict(b'{"a":[[[1]]],"b":"\\ud800"}', max_depth=3)[1] == {"too_deep"}


def test_reference_parse_shape():
    rows, rejects = reference_parse(SCHEMA, [b'{"r":1}', b"nope", b'{"r":2}'])
    assert [r["r"] for r in rows] == [1, 2]
    assert rejects == [(1, "invalid_json")]


def first_char_length(raw: bytes) -> int:
    """Length of the first UTF-8 character per Python's strict decoder, or 0."""
    for k in range(1, min(4, len(raw)) + 1):
        try:
            raw[:k].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return k
    return 0


def test_utf8_length_matches_python_decoder_on_all_two_byte_prefixes():
    for b0 in range(0x80, 0x100):
        for b1 in range(0x100):
            for tail in (b"\x80\x80", b"\xbf\xbf", b"\x80", b""):
                raw = bytes([b0, b1]) + tail
                assert utf8_length(raw, 0) == first_char_length(raw), raw


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=5))
def test_utf8_length_random(raw):
    assert utf8_length(raw, 0) == first_char_length(raw)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_days_from_civil_matches_datetime(d):
    assert days_from_civil(d.year, d.month, d.day) == (d - dt.date(1970, 1, 1)).days


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_rfc3339_matches_datetime(when, offset_min):
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    aware = when.replace(tzinfo=tz)
    text = aware.isoformat(timespec="microseconds")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    delta = aware - epoch
    us = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
    assert parse_rfc3339(text, "us") == us
    assert parse_rfc3339(text, "s") == us // 10**6
    assert parse_rfc3339(text, "ms") == us // 10**3


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=3), kids, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=5), st.booleans())
def test_scanner_value_matches_json_loads(obj, ascii_only):
    raw = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8")
    node = scan_document(raw, max_depth=10**6)
    assert node.kind == "object"
    assert strict_loads(raw, max_depth=10**6) == json.loads(raw)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4),
    st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(list(b'{}[]",:\\ -0.eE+tfnu\x00\x80\xc3\xed\xff')))),
)
def test_scanner_and_json_loads_agree_on_mutations(obj, edits):
    raw = bytearray(json.dumps(obj).encode("utf-8"))
    for pos, byte in edits:
        if raw and pos % 3 == 0:
            del raw[pos % len(raw)]
        else:
            raw.insert(pos % (len(raw) + 1), byte)
    raw = bytes(raw)
    try:
        strict_loads(raw, max_depth=6, reject_duplicates=False)
        ok = True
    except ReferenceReject:
        ok = False
    node, allowed, _ = syntax_verdict(raw, max_depth=6)
    assert ok == (node is not None), (raw, allowed)
