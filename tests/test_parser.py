"""engine.Parser end to end: values, nulls, every error code with its field and position,
counts, framing variants and the exact-float fallback."""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
import threading

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from kernels import tables as tb
from kernels.errors import BLANK_LINE
from kernels.framing import count_lines, frame_lines
from kernels.jsonparse import parse_batch, parse_lines

REQ = '"req": 1'


def one(parser, body: str | bytes):
    data = body.encode() if isinstance(body, str) else body
    return parser.parse_messages([data])


def accepted_row(parser, body: str) -> dict:
    r = one(parser, body)
    assert r.rejected == 0, r.rejects.to_pylist()
    return r.batch.to_pylist()[0]


def rejected(parser, body: str | bytes) -> dict:
    r = one(parser, body)
    assert r.accepted == 0 and r.rejected == 1
    return r.rejects.to_pylist()[0]


def test_every_type_is_decoded_exactly(all_types_parser):
    msg = {
        "i8": -128, "i64": -5, "u64": 18446744073709551615, "u16": 65535, "f64": 0.1, "f32": 1.5,
        "pos": 99.5, "b": False, "s": "h\u00e9\u00e9\u00e9o", "e": "gr\u00fcn",
        "bin": base64.b64encode(b"\x00\xffab").decode(), "j": {"a": [1, 2.5, None, "x"], "b": {}},
        "d": "2024-02-29", "ts": "2024-01-02T03:04:05.678901+01:00", "tus": 978307200000001, "req": 7,
    }  # fmt: skip
    row = accepted_row(all_types_parser, json.dumps(msg))
    assert row["i8"] == -128 and row["i64"] == -5 and row["u64"] == 2**64 - 1 and row["u16"] == 65535
    assert struct.pack("<d", row["f64"]) == struct.pack("<d", 0.1)
    assert row["f32"] == 1.5 and row["pos"] == 99.5 and row["b"] is False
    assert row["s"] == "h\u00e9\u00e9\u00e9o" and row["e"] == "gr\u00fcn"
    assert row["bin"] == b"\x00\xffab"
    assert json.loads(row["j"]) == msg["j"]
    assert row["d"] == dt.date(2024, 2, 29)
    assert row["ts"] == dt.datetime(2024, 1, 2, 2, 4, 5, 678000)  # to UTC, truncated to ms
    assert row["tus"] == dt.datetime(2001, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc)
    assert row["req"] == 7


def test_json_field_keeps_the_raw_text_as_sent(all_types_parser):
    row = accepted_row(all_types_parser, '{"j": [1 , {"k" :"v\\n"}] , "req": 1}')
    assert row["j"] == '[1 , {"k" :"v\\n"}]'
    assert accepted_row(all_types_parser, '{"j": "text", "req": 1}')["j"] == '"text"'


def test_absent_and_null_become_arrow_nulls(all_types_parser):
    row = accepted_row(all_types_parser, '{"i8": null, "s": null, "j": null, "req": 1}')
    assert row["i8"] is None and row["s"] is None and row["j"] is None and row["f64"] is None


@pytest.mark.parametrize(
    ("body", "error", "field", "position"),
    [
        ('{"req": 1,}', "invalid_json", None, 10),
        ('{"req": 01}', "invalid_json", None, 9),
        ('{"req": 1} x', "invalid_json", None, 11),
        ('{"req": NaN}', "invalid_json", None, 8),
        ("{'req': 1}", "invalid_json", None, 1),
        ('{"req": 1 /* c */}', "invalid_json", None, 10),
        ('{"s": "a\tb", "req": 1}', "invalid_json", None, 8),
        ('{"s": "\\x", "req": 1}', "invalid_json", None, 7),
        ('{"req": 1', "invalid_json", None, 9),
        ("[1, 2]", "not_an_object", None, 0),
        ('"text"', "not_an_object", None, 0),
        ('{"i8": 1}', "missing_required", "req", 9),
        ('{"req": null}', "missing_required", "req", 8),
        ('{"req": "1"}', "type_mismatch", "req", 8),
        ('{"req": 1.0}', "type_mismatch", "req", 8),
        ('{"req": 1e3}', "type_mismatch", "req", 8),
        ('{"b": 1, "req": 1}', "type_mismatch", "b", 6),
        ('{"i8": null, "s": 5, "req": 1}', "type_mismatch", "s", 18),
        ('{"i8": 128, "req": 1}', "out_of_range", "i8", 7),
        ('{"i64": 1000000000001, "req": 1}', "out_of_range", "i64", 8),
        ('{"u64": -1, "req": 1}', "out_of_range", "u64", 8),
        ('{"pos": -0.5, "req": 1}', "out_of_range", "pos", 8),
        ('{"f64": 1e309, "req": 1}', "out_of_range", "f64", 8),
        ('{"f32": 1e39, "req": 1}', "out_of_range", "f32", 8),
        ('{"tus": "1999-12-31T23:59:59Z", "req": 1}', "out_of_range", "tus", 8),
        ('{"d": "2023-02-29", "req": 1}', "out_of_range", "d", 6),
        ('{"ts": "2024-01-01T23:59:60Z", "req": 1}', "out_of_range", "ts", 7),
        ('{"u16": 3, "req": 1}', "not_in_enum", "u16", 8),
        ('{"e": "green", "req": 1}', "not_in_enum", "e", 6),
        ('{"s": "toolong", "req": 1}', "too_long", "s", 6),
        ('{"s": "", "req": 1}', "too_short", "s", 6),
        ('{"bin": "AAAAAAAAAAAA", "req": 1}', "too_long", "bin", 8),
        ('{"bin": "not base64!", "req": 1}', "type_mismatch", "bin", 8),
        ('{"ts": "2024-01-01T00:00:00", "req": 1}', "type_mismatch", "ts", 7),
        ('{"s": "\\ud800", "req": 1}', "invalid_utf8", None, 7),
        ('{"s": "\\udc00\\ud800", "req": 1}', "invalid_utf8", None, 7),
        ('{"req": 9223372036854775808}', "int_overflow", "req", 8),
        ('{"req": -9223372036854775809}', "int_overflow", "req", 8),
        ('{"u64": 18446744073709551616, "req": 1}', "int_overflow", "u64", 8),
        ('{"req": 1, "req": 2}', "duplicate_field", "req", 11),
        ('{"req": 1, "\\u0072eq": 2}', "duplicate_field", "req", 11),
        ('{"x": 1, "x": 2, "req": 1}', "duplicate_field", "x", 9),
        ('{"j": {"a": 1, "a": 2}, "req": 1}', "duplicate_field", "j", 15),
        ('{"zz": [{"a": 1, "a": 2}], "req": 1}', "duplicate_field", "zz", 17),
        ('{"j": [[[[[[[[1]]]]]]]], "req": 1}', "too_deep", None, 13),
        ('{"x": {"y": [{"z": [[[[[1]]]]]}]}, "req": 1}', "too_deep", None, 23),
    ],
)
def test_each_fault_is_reported_with_code_field_and_position(all_types_parser, body, error, field, position):
    r = rejected(all_types_parser, body)
    assert (r["error"], r["field"], r["position"]) == (error, field, position)
    assert r["raw"] == body.encode()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"s": "\xc0\xaf", "req": 1}',  # overlong
        b'{"s": "\xed\xa0\x80", "req": 1}',  # encoded surrogate
        b'{"s": "\xf4\x90\x80\x80", "req": 1}',  # above U+10FFFF
        b'{"s": "\xe2\x82", "req": 1}',  # truncated
        b'{"s": "\xff", "req": 1}',
        b'{"\xc3": 1, "req": 1}',  # in a key
        b'{"j": ["\x80"], "req": 1}',  # in a nested value
    ],
)
def test_invalid_utf8_is_rejected_everywhere(all_types_parser, raw):
    assert rejected(all_types_parser, raw)["error"] == "invalid_utf8"


def test_syntax_faults_outrank_schema_faults(all_types_parser):
    assert rejected(all_types_parser, '{"i8": 999, "req": 1,}')["error"] == "invalid_json"
    # among schema faults the first in the document wins; missing_required comes last
    assert rejected(all_types_parser, '{"s": "", "i8": 999}')["error"] == "too_short"


def test_unknown_fields_rejected_when_configured():
    p = engine.Parser(
        engine.load_config("streams:\n  s:\n    unknown_fields: reject\n    fields: {a: {type: int64}}\n").streams["s"]
    )
    r = p.parse_ndjson(b'{"a": 1}\n{"a": 1, "z\\u00e9": [1]}\n{"a": 2}\n')
    assert r.accepted == 2 and r.rejects.to_pylist()[0]["error"] == "unknown_field"
    assert r.rejects.to_pylist()[0]["field"] == "z\u00e9"  # the key, decoded


def test_escaped_keys_match_declared_fields(all_types_parser):
    row = accepted_row(all_types_parser, '{"\\u0069\\u0038": 5, "\\u0072eq": 1}')
    assert row["i8"] == 5 and row["req"] == 1


def test_string_lengths_count_characters(all_types_parser):
    assert accepted_row(all_types_parser, '{"s": "\u00e9\u00e9\u00e9\u00e9\u00e9", "req": 1}')["s"] == "\u00e9" * 5
    assert accepted_row(all_types_parser, '{"s": "\\ud83d\\ude00", "req": 1}')["s"] == "\U0001f600"


@pytest.mark.parametrize(
    "literal",
    ["2.2250738585072011e-308", "9007199254740993", "1e23", "4.9e-324", "2.4703282292062328e-324",
     "1.7976931348623157e308", "0.1000000000000000055511151231257827021181583404541015625", "-0.0", "123456789e-340"],
)  # fmt: skip
def test_floats_are_bit_identical_to_python(all_types_parser, literal):
    row = accepted_row(all_types_parser, f'{{"f64": {literal}, "req": 1}}')
    assert struct.pack("<d", row["f64"]) == struct.pack("<d", float(literal))


def test_fallback_floats_still_obey_rules(all_types_parser):
    # -4.9e-324 needs the exact fallback, and is below min 0
    r = rejected(all_types_parser, '{"pos": -4.9e-324, "req": 1}')
    assert (r["error"], r["field"], r["position"]) == ("out_of_range", "pos", 8)


def test_counts_offsets_and_blank_lines(all_types_parser):
    data = b'{"req": 1}\r\n\n   \n{"req": "x"}\n{"req": 2}'
    r = all_types_parser.parse_ndjson(data)
    assert (r.received, r.accepted, r.rejected, r.blank) == (3, 2, 1, 2)
    dead = r.rejects.to_pylist()[0]
    assert dead["index"] == 1 and dead["offset"] == data.index(b'{"req": "x"}')
    assert r.batch.column("req").to_pylist() == [1, 2]
    assert r.rejects.schema == all_types_parser.rejects_schema
    assert r.error_counts == {"type_mismatch": 1}


def test_inputs_that_are_not_one_contiguous_run_of_bytes(all_types_parser):
    data = b'{"req": 1}\n{"req": 2}\n'
    strided = np.repeat(np.frombuffer(data, np.uint8), 2)[::2]  # a strided uint8 array: copied
    assert all_types_parser.parse_ndjson(strided).accepted == 2
    with pytest.raises(TypeError, match="contiguous buffer"):
        all_types_parser.parse_ndjson(memoryview(data)[::2])
    with pytest.raises(TypeError, match="1-D uint8 array"):
        all_types_parser.parse_ndjson(np.frombuffer(data, np.int8))


def test_empty_input_gives_empty_batches(all_types_parser):
    r = all_types_parser.parse_ndjson(b"")
    assert r.received == 0 and r.batch.schema == all_types_parser.schema and r.rejects.num_rows == 0


def test_pre_framed_messages_may_span_lines(all_types_parser):
    r = all_types_parser.parse_messages([b'{\n "req": 1\n}', b"", b'{"req":\r\n2}'])
    assert r.batch.column("req").to_pylist() == [1, 2]
    assert r.rejects.column("error").to_pylist() == ["invalid_json"]


def test_length_prefixed_framing(all_types_parser):
    msgs = [b'{"req": 1}', b'{"req": "bad"}', b'{"req": 3}']
    data = b"".join(len(m).to_bytes(4, "big") + m for m in msgs) + b'\x00\x00\x00\x09{"re'
    r = all_types_parser.parse_length_prefixed(data)
    assert r.batch.column("req").to_pylist() == [1, 3]
    assert r.rejects.column("error").to_pylist() == ["type_mismatch", "truncated"]
    cut = r.rejects.slice(1).to_pylist()[0]
    assert (cut["index"], cut["offset"], cut["position"], cut["field"]) == (
        3,
        46,
        8,
        None,
    )  # 14 + 18 + 14 bytes before it
    assert cut["raw"] == b'\x00\x00\x00\x09{"re'  # header included: what came, as it came


@pytest.mark.parametrize("tail", [b"\x00\x00", b'\x00\x00\x00\x20{"req": 1}'])
def test_a_frame_cut_short_is_truncated_even_when_its_bytes_would_parse(all_types_parser, tail):
    """A partial header, or a body that is a whole JSON object but shorter than its header
    says: the producer stopped early, so the message is not what it meant to send."""
    r = all_types_parser.parse_length_prefixed(b'\x00\x00\x00\x0a{"req": 1}' + tail)
    assert r.batch.column("req").to_pylist() == [1]
    assert r.rejects.column("error").to_pylist() == ["truncated"]
    assert r.rejects.column("position").to_pylist() == [len(tail)]
    assert r.error_counts == {"truncated": 1}


def test_a_cut_short_frame_declared_over_the_limit_is_too_large():
    p = engine.Parser(
        engine.load_config(
            "streams:\n  s:\n    fields: {a: {type: string}}\nlimits: {max_message_bytes: 64}\n"
        ).streams["s"]
    )
    r = p.parse_length_prefixed(b"\x00\x01\x00\x00" + b"x" * 1000)  # declares 65,536 bytes
    cut = r.rejects.to_pylist()
    assert [(d["error"], d["offset"], d["position"], d["raw"]) for d in cut] == [("too_large", 4, 0, b"x" * 65)]


def test_too_large_messages_are_rejected():
    p = engine.Parser(
        engine.load_config(
            "streams:\n  s:\n    fields: {a: {type: string}}\nlimits: {max_message_bytes: 64}\n"
        ).streams["s"]
    )
    big = b'{"a": "' + b"x" * 100 + b'"}'
    r = p.parse_ndjson(b'{"a": "ok"}\n' + big + b"\n")
    assert r.accepted == 1 and r.rejects.to_pylist()[0]["error"] == "too_large"
    assert r.rejects.to_pylist()[0]["raw"] == big[:65]  # max_message_bytes + 1, as the service keeps


def _one_field_parser(fields: str) -> engine.Parser:
    return engine.Parser(engine.load_config("streams:\n  s:\n    fields:\n" + fields).streams["s"])


def _outcomes(parser: engine.Parser, *bodies: str) -> list:
    """Each message's value of its one field, or its error code."""
    out = []
    for body in bodies:
        r = one(parser, body)
        col = r.batch.column(0)
        if pa.types.is_timestamp(col.type):  # as ticks: datetime has no nanoseconds
            col = col.cast(pa.int64())
        out.append(r.rejects.column("error")[0].as_py() if r.rejected else col[0].as_py())
    return out


def test_uint64_enum_is_enforced_over_the_whole_range():
    top = 2**64 - 1
    p = _one_field_parser(f"      x: {{type: uint64, enum: [1, {top}]}}\n")
    assert _outcomes(p, '{"x":1}', f'{{"x":{top}}}', '{"x":2}', f'{{"x":{top - 1}}}', '{"x":0}') == [
        1,
        top,
        "not_in_enum",
        "not_in_enum",
        "not_in_enum",
    ]


def test_bounds_past_the_types_range_leave_nothing_to_accept():
    # folded with the type's own range, such a bound admits no value; stored as written it
    # would overflow the kernel's int64 tables
    for fields in (
        "      x: {type: int32, min: 99999999999999999999}\n",
        "      x: {type: int64, max: -99999999999999999999}\n",
        "      x: {type: uint64, min: 99999999999999999999}\n",
        "      x: {type: 'timestamp[s]', max: -99999999999999999999}\n",
    ):
        assert _outcomes(_one_field_parser(fields), '{"x":0}', '{"x":5}') == ["out_of_range"] * 2, fields


def test_nanosecond_text_bounds_keep_every_digit():
    p = _one_field_parser(
        "      t: {type: 'timestamp[ns]', min: '2024-01-01T00:00:00.000000500Z', max: '2024-01-01T00:00:00.000000999Z'}\n"
    )
    base = 1704067200 * 10**9
    got = _outcomes(
        p,
        '{"t":"2024-01-01T00:00:00.000000400Z"}',
        f'{{"t":{base + 499}}}',
        '{"t":"2024-01-01T00:00:00.000000500Z"}',
        '{"t":"2024-01-01T00:00:00.000000999Z"}',
        f'{{"t":{base + 1000}}}',
    )
    assert got[:2] == ["out_of_range"] * 2 and got[4] == "out_of_range"
    assert got[2:4] == [base + 500, base + 999]


def test_many_messages_with_rejects_keep_input_order(all_types_parser):
    lines = [f'{{"req": {i}, "i8": {i % 200}}}' for i in range(20000)]
    r = all_types_parser.parse_ndjson("\n".join(lines).encode())
    expect = [i for i in range(20000) if i % 200 <= 127]
    assert r.batch.column("req").to_pylist() == expect
    assert r.rejects.column("index").to_pylist() == [i for i in range(20000) if i % 200 > 127]
    assert r.received == 20000


def test_zero_copy_when_every_message_is_accepted(all_types_parser):
    r = all_types_parser.parse_ndjson(b'{"req": 1, "i64": 2}\n{"req": 3, "i64": 4}\n')
    req = r.batch.column("req")
    arr = np.frombuffer(req.buffers()[1], np.int64)[: len(req)]
    assert arr.tolist() == [1, 3] and req.buffers()[0] is None  # no validity bitmap needed


def test_parallel_calls_from_python_threads_agree(all_types_parser):
    data = "\n".join(f'{{"req": {i}, "s": "v{i % 1000}", "f64": {i}.25}}' for i in range(30000)).encode()
    expected = all_types_parser.parse_ndjson(data).batch
    results: list[pa.RecordBatch] = []

    def work() -> None:
        for _ in range(3):
            results.append(all_types_parser.parse_ndjson(data).batch)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and all(b.equals(expected) for b in results)


def test_thread_count_does_not_change_results(all_types_parser):
    data = "\n".join(f'{{"req": {i}, "s": "x", "i8": {i % 300 - 150}}}' for i in range(5000)).encode()
    one_thread = engine.Parser(all_types_parser.stream, threads=1).parse_ndjson(data)
    default = all_types_parser.parse_ndjson(data)
    assert one_thread.batch.equals(default.batch) and one_thread.rejects.equals(default.rejects)


def test_warm_parses_a_sample_without_side_effects(all_types_parser):
    all_types_parser.warm()
    assert all_types_parser.parse_ndjson(b'{"req": 5}').batch.column("req").to_pylist() == [5]


FRAMING_YAML = """
streams:
  s:
    format: ndjson
    fields:
      a: {type: int64}
      s: {type: string}
      b: {type: bool}
"""


LINES = [b'{"a":1,"s":"x"}', b'{"a":"x"}', b'{"s":"\\u00e9t\xc3\xa9","a":-7}', b"", b"  ", b"\r", b'{"a":', b"[1]"]
LINES += [b'{"a":1,"a":2}', b'{"b":true,"zz":[1,{"k":2}]}', b'{"s":"' + b"y" * 40 + b'"}', b"\t{}\t"]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.sampled_from(LINES), max_size=30),
    sep=st.sampled_from([b"\n", b"\r\n"]),
    terminated=st.booleans(),
    nchunks=st.integers(1, 7),
)
def test_parse_lines_equals_framing_then_parsing(lines, sep, terminated, nchunks):
    """parse_ndjson frames inside the parse kernel, over byte chunks (several only for large
    inputs); on any chunking it must give what framing first and parsing after gives."""
    parser = engine.Parser(engine.load_config(FRAMING_YAML).streams["s"])
    data = sep.join(lines) + (sep if terminated and lines else b"")
    buf = np.frombuffer(data, np.uint8)
    tables, limit = parser.compiled.tables, parser.max_message_bytes
    starts, ends, blank, _ = frame_lines(buf, 0, len(buf), True, 1, limit)
    expected = parser._allocate(len(starts))
    parse_batch(buf, starts, ends, limit, tables, expected, 1)

    counts, before, last = count_lines(buf, 0, len(buf), nchunks)
    tail = last + 1 if last + 1 < len(buf) else -1
    n = int(counts[-1]) + (tail >= 0)
    got_starts, got_ends = np.empty(n, np.int64), np.empty(n, np.int64)
    got = parser._allocate(n)
    assert parse_lines(buf, counts, before, tail, limit, tables, got, got_starts, got_ends, nchunks) == blank
    lines_kept = got.errors[tb.ERR_CODE] != BLANK_LINE
    assert got_starts[lines_kept].tolist() == starts.tolist()
    assert got_ends[lines_kept].tolist() == ends.tolist()
    codes = expected.errors[tb.ERR_CODE]
    assert got.errors[tb.ERR_CODE, lines_kept].tolist() == codes.tolist()
    faults = got.errors[:, lines_kept][:, codes != 0]  # field and position are set for faults only
    assert (
        faults[[tb.ERR_FIELD, tb.ERR_POS]].tolist()
        == expected.errors[:, codes != 0][[tb.ERR_FIELD, tb.ERR_POS]].tolist()
    )
    assert got.state[lines_kept].tolist() == expected.state.tolist()
    value = (expected.state == tb.STATE_VALUE).T
    assert (got.ints[:, lines_kept] == expected.ints)[value[[0, 2]]].all()
    assert (got.spans[:, lines_kept] == expected.spans)[value[[1]]].all()


def test_wide_schemas_check_required_and_duplicate_fields_past_the_63rd():
    """Required and duplicate checks hold for every declared field of a wide schema, not
    only for the first few dozen (a per-message bitmask of seen fields would stop at 63 or
    64: a kernel optimisation that was measured, gained nothing and was not kept)."""
    names = [f"f{k}" for k in range(70)]
    required = {0, 62, 63, 69}
    fields = "".join(
        f"      {n}: {{type: int64, required: {'true' if k in required else 'false'}}}\n" for k, n in enumerate(names)
    )
    wide = "streams:\n  wide:\n    format: ndjson\n    batch: {max_messages: 1024, max_bytes: 1MiB}\n    fields:\n"
    cfg = engine.load_config(wide + fields)
    parser = engine.Parser(cfg.streams["wide"])

    def body(keys: list[int], extra: str = "") -> str:
        return "{" + ", ".join(f'"f{k}": {k}' for k in keys) + extra + "}"

    full = sorted(required | {5, 64, 65})
    assert accepted_row(parser, body(full)) == {n: (k if k in full else None) for k, n in enumerate(names)}
    for gone in sorted(required):  # the lowest missing required field is named, either side
        row = rejected(parser, body([k for k in full if k != gone]))
        assert (row["error"], row["field"]) == ("missing_required", f"f{gone}")
    row = rejected(parser, body([k for k in full if k not in (62, 69)]))
    assert row["field"] == "f62"
    for again in (5, 62, 63, 65):
        row = rejected(parser, body(full, f', "f{again}": 1'))
        assert (row["error"], row["field"]) == ("duplicate_field", f"f{again}")
    row = rejected(parser, body([k for k in full if k not in (63, 64)], ', "f64": null'))  # null: present
    assert (row["error"], row["field"]) == ("missing_required", "f63")


def _verdicts(result) -> list[tuple[str, str | None, int]]:
    return [(d["error"], d["field"], d["position"]) for d in result.rejects.to_pylist()]


@pytest.mark.parametrize(
    "lines",
    [
        # the object ends, then something other than whitespace before the LF
        [b'{"req": 1} x', b'{"req": 1}{}', b'{"req": 1} \t\r'],
        # an LF inside the object ends the line there: both halves are messages
        [b'{"req":', b"1}", b'{"req": 1,', b'"s": "a"}'],
        # a failed attempt must not leave duplicate-key entries or values behind
        [b'{"x": 1, "x": 2, "req": 1', b'{"x": 1, "req": 1}', b'{"req": 1, "i8": 5, "s": "a"'],
        # longer than the scratch a chunk starts with (it is resized mid-chunk)
        [b'{"req": 1, "s": "' + b"\xc3\xa9" * 400 + b'", "x": "' + b"\\u00e9" * 300 + b'"}'],
        [b'{"req": 1, "j": {"k": [' + b"1," * 900 + b'1]}, "j2": 1, "j2": 2}', b'{"req": 2}'],
        # leading whitespace, CR runs and a missing required field
        [b'  {"req": 1}', b'{"req": 1}\r\r', b'{"i8": 1}', b"{}", b"[]"],
    ],
)
def test_newline_framing_gives_each_line_the_verdict_it_has_alone(all_types_parser, lines):
    """parse_ndjson reads a line once, not knowing where it ends until its object does; the
    verdicts, values and spans must be those of the line parsed on its own."""
    data = b"\n".join(lines) + b"\n"
    together = all_types_parser.parse_ndjson(data)
    alone = all_types_parser.parse_messages(lines)
    assert together.received == alone.received == len(lines)
    assert _verdicts(together) == _verdicts(alone)
    assert together.batch.equals(alone.batch)
    offsets = np.cumsum([0] + [len(x) + 1 for x in lines[:-1]])
    assert together.rejects.column("offset").to_pylist() == [
        int(offsets[i]) for i in together.rejects["index"].to_pylist()
    ]
    assert together.rejects.column("raw").to_pylist() == [lines[i] for i in together.rejects["index"].to_pylist()]


def test_fields_past_the_seen_bitmask_still_catch_duplicates_and_missing_required():
    """The first 63 declared fields are tracked in a bitmask while parsing; later ones by
    their value state. Both must find a duplicate and a missing required field."""
    names = [f"f{k}" for k in range(70)]
    fields = "\n".join(f"      {n}: {{type: int64, required: true}}" for n in names)
    batch = "    batch: {max_messages: 64, max_bytes: 1MiB}\n"
    cfg = engine.load_config(f"streams:\n  wide:\n    format: ndjson\n{batch}    fields:\n{fields}\n")
    parser = engine.Parser(cfg.streams["wide"])
    full = {n: k for k, n in enumerate(names)}
    good = json.dumps(full).encode()
    no_low = json.dumps({n: v for n, v in full.items() if n != "f5"}).encode()
    no_high = json.dumps({n: v for n, v in full.items() if n != "f66"}).encode()
    dup_low = good[:-1] + b', "f3": 1}'
    dup_high = good[:-1] + b', "f68": 1}'
    for res in (parser.parse_ndjson(b"\n".join([good, no_low, no_high, dup_low, dup_high])),
                parser.parse_messages([good, no_low, no_high, dup_low, dup_high])):  # fmt: skip
        assert res.accepted == 1
        assert [(d["error"], d["field"]) for d in res.rejects.to_pylist()] == [
            ("missing_required", "f5"),
            ("missing_required", "f66"),
            ("duplicate_field", "f3"),
            ("duplicate_field", "f68"),
        ]
        assert res.batch.column("f69").to_pylist() == [69]


def test_the_kernel_clears_reused_outputs(all_types_parser):
    """Outputs come uncleared (a reused workspace, pool memory): the kernel resets each
    message's state, value slots and span lengths, so nothing of an earlier batch shows."""
    msgs = [b'{"req": 1}', b'{"req": 2, "i64": 5, "s": "ab", "f64": null}']
    buf = np.frombuffer(b"".join(msgs), np.uint8)
    ends = np.cumsum([len(m) for m in msgs]).astype(np.int64)
    starts = ends - np.array([len(m) for m in msgs])
    cols = all_types_parser._allocate(len(msgs))
    for a in (cols.state, cols.ints, cols.floats, cols.spans):
        a.fill(7)
    compiled = all_types_parser.compiled
    parse_batch(buf, starts, ends, all_types_parser.max_message_bytes, compiled.tables, cols, 2)
    by_name = {c.name: c for c in compiled.columns}
    state = {name: cols.state[:, c.index].tolist() for name, c in by_name.items()}
    assert state["req"] == [tb.STATE_VALUE] * 2 and state["i64"] == [tb.STATE_ABSENT, tb.STATE_VALUE]
    assert state["f64"] == [tb.STATE_ABSENT, tb.STATE_NULL] and state["b"] == [tb.STATE_ABSENT] * 2
    assert cols.ints[by_name["i64"].slot].tolist() == [0, 5]
    assert cols.floats[by_name["f64"].slot].tolist() == [0.0, 0.0]
    assert cols.spans[by_name["s"].span_slot, :, tb.SPAN_LEN].tolist() == [0, 2]


def test_parse_messages_takes_each_item_s_bytes_whatever_its_item_size():
    """len() of an array('I') or a cast memoryview counts items: framing by it split
    messages apart and lost the last ones."""
    import array

    parser = engine.Parser(engine.load_config("streams:\n  s:\n    fields: {ts: {type: int64}}\n").streams["s"])
    items = [
        memoryview(b'{"ts": 1}   ').cast("I"),
        b'{"ts": 2}',
        bytearray(b'{"ts":3}'),
        np.frombuffer(b'{"ts":4}', np.uint8),
        array.array("I", b'{"ts": 5}   '),
        np.frombuffer(b'{"ts": 6}   ', np.uint32),
    ]
    r = parser.parse_messages(items)
    assert (r.accepted, r.rejected) == (6, 0)
    assert r.batch.column("ts").to_pylist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(TypeError, match="bytes-like"):
        parser.parse_messages([b"{}", None])


def test_parser_arguments_are_checked_where_they_are_given():
    cfg = engine.load_config("streams:\n  s:\n    fields: {ts: {type: int64}}\n")
    with pytest.raises(TypeError, match=r"streams\['events'\]"):
        engine.Parser(cfg)
    with pytest.raises(ValueError, match="threads: expected 1 or more; got 0"):
        engine.Parser(cfg.streams["s"], threads=0)
    many = engine.Parser(cfg.streams["s"], threads=10_000)  # all there are, as kernels.threads
    assert many.parse_ndjson(b'{"ts":1}\n').accepted == 1
