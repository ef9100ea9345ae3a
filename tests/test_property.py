"""Property tests: Quiver's Parser against the pure-Python reference (tests/reference.py).

* valid objects over a schema with every type: all accepted, every value exactly the
  reference's (floats bit for bit), through both newline framing and pre-framed messages;
* one random mutation per message: same verdict as the reference, same code whenever the
  reference's fault is syntax-level, counts that add up;
* float64/float32 literals (shortest, 17 and 25 digits, 800-digit mantissas, exact halfway
  points between doubles): bit-identical to ``float(text)``;
* integers in and beyond int64/uint64: exact inside, ``int_overflow`` beyond.

Each schema's Parser is built once per module; each example feeds a whole batch.
"""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from tests.reference import (
    SYNTAX_CODES,
    RefSchema,
    column_values,
    float_bits,
    judge,
    same_value,
)
from tests.strategies import ALL_TYPES_FIELDS, FLOAT_TEXT, messages, mutated_messages

ALL_TYPES_YAML = (
    """
streams:
  all:
    format: ndjson
    unknown_fields: {unknown}
    fields:
"""
    + ALL_TYPES_FIELDS
    + "limits: {{max_depth: 16}}\n"
)

NUMBERS_YAML = """
streams:
  nums:
    format: ndjson
    unknown_fields: ignore
    fields:
      f: {type: float64}
      g: {type: float32}
      i: {type: int64}
      u: {type: uint64}
"""

ARROW_TYPES = {
    "i8": pa.int8(),
    "i16": pa.int16(),
    "i32": pa.int32(),
    "i64": pa.int64(),
    "u8": pa.uint8(),
    "u16": pa.uint16(),
    "u32": pa.uint32(),
    "u64": pa.uint64(),
    "f64": pa.float64(),
    "f32": pa.float32(),
    "s": pa.string(),
    "ok": pa.bool_(),
    "ts_s": pa.timestamp("s"),
    "ts_ms": pa.timestamp("ms"),
    "ts_us": pa.timestamp("us", tz="UTC"),
    "ts_ns": pa.timestamp("ns"),
    "day": pa.date32(),
    "blob": pa.binary(),
    "event": pa.dictionary(pa.int32(), pa.string()),
    "kind": pa.dictionary(pa.int32(), pa.string()),
    "extra": pa.string(),
    "user_id": pa.int64(),
    "ua": pa.string(),
    "price": pa.float64(),
    "small": pa.int32(),
}

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class Subject:
    """One schema: the engine's Parser and the reference's view of the same YAML."""

    def __init__(self, yaml_text: str):
        cfg = engine.load_config(yaml_text)
        name = next(iter(cfg.streams))
        self.parser = engine.Parser(cfg.streams[name])
        self.ref = RefSchema.from_yaml(yaml_text)


@pytest.fixture(scope="module")
def all_types():
    return Subject(ALL_TYPES_YAML.format(unknown="ignore"))


@pytest.fixture(scope="module")
def all_types_strict():
    return Subject(ALL_TYPES_YAML.format(unknown="reject"))


@pytest.fixture(scope="module")
def numbers():
    return Subject(NUMBERS_YAML)


def check(subject: Subject, messages: list[bytes], res, *, strict_codes: bool = True) -> None:
    """Compare a ParseResult with the reference message by message; fail with details."""
    ref = subject.ref
    verdicts = [judge(ref, m) for m in messages]
    problems: list[str] = []
    n = len(messages)
    want_acc = [i for i, v in enumerate(verdicts) if v.accepted]
    if (res.received, res.accepted, res.rejected) != (n, len(want_acc), n - len(want_acc)):
        problems.append(
            f"counts received/accepted/rejected {res.received}/{res.accepted}/{res.rejected}, want {n}/{len(want_acc)}/{n - len(want_acc)}"
        )
    if res.received != res.accepted + res.rejected:
        problems.append("received != accepted + rejected")
    if res.batch.num_rows != res.accepted or res.rejects.num_rows != res.rejected:
        problems.append(f"batch rows {res.batch.num_rows}, reject rows {res.rejects.num_rows}")
    if sum(res.error_counts.values()) != res.rejected:
        problems.append(f"error_counts {res.error_counts} do not sum to {res.rejected}")
    rj = res.rejects.to_pydict()
    got_code = dict(zip(rj["index"], rj["error"], strict=True))
    got_raw = dict(zip(rj["index"], rj["raw"], strict=True))
    got_pos = dict(zip(rj["index"], rj["position"], strict=True))
    for i, v in enumerate(verdicts):
        if v.accepted and i in got_code:
            problems.append(f"#{i} {messages[i]!r}: reference accepts, Quiver rejects with {got_code[i]}")
        elif not v.accepted and i not in got_code:
            problems.append(f"#{i} {messages[i]!r}: reference rejects ({v.code}), Quiver accepts")
        elif not v.accepted:
            code = got_code[i]
            if got_raw[i] != messages[i]:
                problems.append(f"#{i}: dead letter raw {got_raw[i]!r} != message {messages[i]!r}")
            if not 0 <= got_pos[i] <= len(messages[i]):
                problems.append(f"#{i} {messages[i]!r}: fault position {got_pos[i]} outside the message")
            elif code == v.code and v.code not in SYNTAX_CODES and v.position is not None and got_pos[i] != v.position:
                problems.append(f"#{i} {messages[i]!r}: {code} at byte {got_pos[i]}, reference says byte {v.position}")
            if v.code in SYNTAX_CODES or v.code == "too_large":
                if code not in v.allowed:
                    problems.append(f"#{i} {messages[i]!r}: Quiver says {code}, reference allows {sorted(v.allowed)}")
            elif code in SYNTAX_CODES:
                problems.append(
                    f"#{i} {messages[i]!r}: Quiver says {code} (syntax), reference says {v.code} ({v.field})"
                )
            elif strict_codes and code != v.code:
                problems.append(f"#{i} {messages[i]!r}: Quiver says {code}, reference says {v.code} ({v.field})")
    if res.batch.num_rows == len(want_acc):
        batch = res.batch
        for spec in ref.fields:
            col = batch.column(batch.schema.get_field_index(spec.name))
            got = column_values(col, spec)
            for row, i in enumerate(want_acc):
                want = verdicts[i].row[spec.name]
                if not same_value(spec, got[row], want):
                    problems.append(f"#{i} {messages[i]!r}: field {spec.name} = {got[row]!r}, want {want!r}")
    assert not problems, f"{len(problems)} discrepancies:\n" + "\n".join(problems[:12])


def test_schema_types_are_exact(all_types):
    schema = all_types.parser.schema
    assert [f.name for f in schema] == list(ARROW_TYPES)
    for name, typ in ARROW_TYPES.items():
        assert schema.field(name).type == typ, name


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_valid_objects_ndjson(all_types, data):
    raws = data.draw(messages(all_types.ref, max_size=150))
    for r in raws:
        assert judge(all_types.ref, r).accepted, f"generator made an invalid message: {r!r}"
    blanks = data.draw(st.lists(st.integers(0, len(raws)), max_size=4))
    lines: list[bytes] = []
    for i, r in enumerate(raws):
        lines.extend(b"" for b in blanks if b == i)
        lines.append(r)
    lines.extend(b"" for b in blanks if b == len(raws))
    data_bytes = b"".join(line + b"\n" for line in lines)
    if lines[-1] and data.draw(st.booleans()):
        data_bytes = data_bytes[:-1]  # the last line may lack its newline
    kind = data.draw(st.sampled_from(["bytes", "memoryview", "numpy"]))
    if kind == "memoryview":
        data_bytes = memoryview(data_bytes)
    elif kind == "numpy":
        data_bytes = np.frombuffer(data_bytes, np.uint8)
    res = all_types.parser.parse_ndjson(data_bytes)
    assert res.blank == len(blanks)
    check(all_types, raws, res)
    assert res.batch.schema == all_types.parser.schema


@settings(SETTINGS, max_examples=40)
@given(messages(RefSchema.from_yaml(ALL_TYPES_YAML.format(unknown="ignore")), newlines=True, max_size=150))
def test_valid_objects_premade_messages(all_types, raws):
    res = all_types.parser.parse_messages(raws)
    check(all_types, raws, res)


_MUTATION_SCHEMA = RefSchema.from_yaml(ALL_TYPES_YAML.format(unknown="ignore"))


@settings(SETTINGS, max_examples=150)
@given(mutated_messages(_MUTATION_SCHEMA, max_size=150))
def test_mutations_same_verdict(all_types, all_types_strict, raws):
    check(all_types, raws, all_types.parser.parse_messages(raws), strict_codes=False)
    check(all_types_strict, raws, all_types_strict.parser.parse_messages(raws), strict_codes=False)


@settings(SETTINGS, max_examples=60)
@given(mutated_messages(_MUTATION_SCHEMA, max_size=150))
def test_mutations_through_newline_framing(all_types, raws):
    # one line per message: newlines become spaces, a line's trailing CR is dropped
    lines = [r.replace(b"\n", b" ").rstrip(b"\r") for r in raws]
    lines = [line for line in lines if line.strip(b" \t\r")]
    data = b"\n".join(lines)
    res = all_types.parser.parse_ndjson(data)
    assert res.blank == 0
    check(all_types, lines, res, strict_codes=False)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    rj = res.rejects.to_pydict()
    for i, off in zip(rj["index"], rj["offset"], strict=True):
        assert off == starts[i], (i, lines[i], off, starts[i])


@settings(SETTINGS, max_examples=80)
@given(st.lists(FLOAT_TEXT, min_size=1, max_size=200))
def test_float_literals_bit_exact(numbers, texts):
    raws = [b'{"f":' + t.encode() + b"}" for t in texts] + [b'{"g":' + t.encode() + b"}" for t in texts]
    res = numbers.parser.parse_messages(raws)
    check(numbers, raws, res)
    # independent of the reference: float64 values are exactly float(text)
    finite = [t for t in texts if abs(float(t)) != float("inf")]
    col = res.batch.column(res.batch.schema.get_field_index("f")).to_pylist()[: len(finite)]
    assert [float_bits(x) for x in col] == [float_bits(float(t)) for t in finite]


INTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(
        [-(2**63), 2**63 - 1, -(2**63) - 1, 2**63, 2**64 - 1, 2**64, 0, -1, 10**19, -(10**19), 99999999999999999999]
    ),
    st.integers(2**63, 2**70),
    st.integers(-(2**70), -(2**63) - 1),
    st.integers(10**19, 10**40),
)


@settings(SETTINGS, max_examples=60)
@given(st.lists(INTS, min_size=1, max_size=200))
def test_int64_exact_or_overflow(numbers, values):
    raws = [b'{"i":%d}' % v for v in values] + [b'{"u":%d}' % v for v in values]
    res = numbers.parser.parse_messages(raws)
    check(numbers, raws, res)
    rj = res.rejects.to_pydict()
    codes = dict(zip(rj["index"], rj["error"], strict=True))
    accepted = []
    for k, v in enumerate(values):
        if -(2**63) <= v < 2**63:
            assert k not in codes
            accepted.append(v)
        else:
            assert codes.get(k) == "int_overflow", (v, codes.get(k))
    assert res.batch.column(res.batch.schema.get_field_index("i")).to_pylist()[: len(accepted)] == accepted
