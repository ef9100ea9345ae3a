"""The parsing files of JSONTestSuite (github.com/nst/JSONTestSuite, MIT; tests/data/
json_test_suite) through the engine: every ``y_`` document accepted and kept as written,
every ``n_`` document rejected, and every ``i_`` (implementation-defined) one decided as the
reference decides.

A message must be an object, so each document is the value of a ``json`` field, which keeps
any JSON value as its text and validates it fully. Two ``y_`` files hold duplicate keys,
which Quiver rejects by design (README, "What strict means"). The suite's three largest
files are deep nesting, built here instead of stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from tests.reference import as_schema, judge

SUITE = Path(__file__).parent / "data" / "json_test_suite"
YAML = """
streams:
  suite:
    unknown_fields: ignore
    fields:
      j: {type: json}
"""
DUPLICATE_KEYS = {"y_object_duplicated_key.json", "y_object_duplicated_key_and_value.json"}
GENERATED = {
    "n_structure_100000_opening_arrays.json": b"[" * 100_000,
    "n_structure_open_array_object.json": b'[{"":' * 50_000 + b"\n",
    "i_structure_500_nested_arrays.json": b"[" * 500 + b"]" * 500,
}


def _documents() -> dict[str, bytes]:
    docs = {p.name: p.read_bytes() for p in sorted(SUITE.glob("*.json"))}
    return {**docs, **GENERATED}


DOCS = _documents()
NAMES = sorted(DOCS)


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[bool, str | None, str | None]]:
    """name -> (accepted, kept text or None, error code or None), from one parse_messages call."""
    parser = engine.Parser(engine.load_config(YAML).streams["suite"])
    result = parser.parse_messages([b'{"j":' + DOCS[n] + b"}" for n in NAMES])
    assert result.accepted + result.rejected == len(NAMES)
    rejects = result.rejects
    rejected = dict(zip(rejects.column("index").to_pylist(), rejects.column("error").to_pylist(), strict=True))
    kept = iter(result.batch.column("j").to_pylist())
    return {n: (i not in rejected, None if i in rejected else next(kept), rejected.get(i)) for i, n in enumerate(NAMES)}


def test_the_suite_is_all_there():
    assert len(DOCS) == 326
    assert sum(n.startswith("y_") for n in DOCS) == 95
    assert sum(n.startswith("n_") for n in DOCS) == 196


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("y_") and n not in DUPLICATE_KEYS])
def test_y_documents_are_accepted_as_written(verdicts, name):
    accepted, kept, code = verdicts[name]
    assert accepted, code
    # a null is the column's null; anything else is kept as its text, outer whitespace trimmed
    assert kept == (None if DOCS[name].strip() == b"null" else DOCS[name].strip(b" \t\r\n").decode("utf-8"))


@pytest.mark.parametrize("name", sorted(DUPLICATE_KEYS))
def test_duplicate_keys_are_rejected_by_design(verdicts, name):
    assert verdicts[name][2] == "duplicate_field"


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("n_")])
def test_n_documents_are_rejected(verdicts, name):
    accepted, _, code = verdicts[name]
    assert not accepted
    assert code in {"invalid_json", "invalid_utf8", "too_deep"}


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("i_")])
def test_i_documents_are_decided_as_the_reference_decides(verdicts, name):
    want = judge(as_schema(YAML), b'{"j":' + DOCS[name] + b"}")
    accepted, _, code = verdicts[name]
    assert accepted == want.accepted
    if not accepted:
        assert code in want.allowed
