"""Config loading: every shipped config loads; every error names its YAML key path."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import engine
from engine.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert ROOT / "configs" / "default.yaml" in CONFIGS
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads_and_compiles(path):
    cfg = engine.load_config(path)
    for name, stream in cfg.streams.items():
        assert stream.name == name
        assert stream.limits is not None
        schema = engine.Parser(stream).schema
        assert schema.names == list(stream.fields)


def test_default_config_is_the_embedded_one(events_config):
    from engine.cli import default_config_text

    assert default_config_text() == (ROOT / "configs" / "default.yaml").read_text()
    assert set(events_config.streams) == {"events"}
    assert all(listener.host == "127.0.0.1" for listener in events_config.listen)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        engine.load_config(text)
    return str(exc.value)


BASE = "streams:\n  events:\n    fields:\n"


def test_misspelled_type_names_path_and_allowed_values():
    msg = _error(BASE + "      price: {type: flaot}\n")
    assert "streams.events.fields.price.type: expected one of int8" in msg
    assert "float64" in msg and "got 'flaot'" in msg


def test_unknown_key_names_its_path():
    msg = _error(BASE + "      price: {type: float64, mni: 0}\n")
    assert "streams.events.fields.price.mni: unknown key" in msg


def test_literal_choice_error_says_what_was_allowed():
    msg = _error(BASE + "      a: {type: int64}\n    unknown_fields: maybe\n")
    assert "streams.events.unknown_fields" in msg and "'ignore' or 'reject'" in msg and "maybe" in msg


def test_rule_that_does_not_fit_the_type():
    msg = _error(BASE + "      ua: {type: string, min: 3}\n")
    assert "streams.events.fields.ua.min" in msg and "not to type string" in msg
    msg = _error(BASE + "      n: {type: int64, max_length: 3}\n")
    assert "streams.events.fields.n.max_length" in msg


def test_sizes_accept_units_and_reject_nonsense():
    cfg = engine.load_config(
        BASE + "      a: {type: int64}\n    batch: {max_bytes: 16MiB}\nlimits: {max_message_bytes: 64KiB}\n"
    )
    assert cfg.streams["events"].batch.max_bytes == 16 * 1024 * 1024
    assert cfg.streams["events"].limits.max_message_bytes == 64 * 1024
    msg = _error(BASE + "      a: {type: int64}\n    batch: {max_bytes: lots}\n")
    assert "streams.events.batch.max_bytes" in msg


def test_message_limit_must_fit_the_batch():
    msg = _error(BASE + "      a: {type: int64}\n    batch: {max_bytes: 1MiB}\nlimits: {max_message_bytes: 2MiB}\n")
    assert "streams.events" in msg and "max_message_bytes" in msg


def test_duplicate_yaml_keys_are_errors():
    msg = _error(BASE + "      a: {type: int64}\n      a: {type: string}\n")
    assert "duplicate key 'a'" in msg


def test_enum_type_needs_values_and_timezones_are_checked():
    assert "needs an 'enum' list" in _error(BASE + "      e: {type: enum}\n")
    assert "unknown time zone" in _error(BASE + "      t: {type: 'timestamp[ms, tz=Mars/Base]'}\n")


def test_tcp_listener_must_name_a_stream():
    msg = _error(BASE + "      a: {type: int64}\nlisten:\n  - {kind: tcp, port: 0, stream: nope}\n")
    assert "listen.0.stream" in msg and "nope" in msg


def test_min_greater_than_max_is_refused():
    assert "streams.events.fields.a.min: 5 is greater than max 1" in _error(
        BASE + "      a: {type: int64, min: 5, max: 1}\n"
    )


def _compile_error(fields: str) -> str:
    """The error load_config gives, from its line naming the key on."""
    msg = _error(BASE + fields)
    assert msg.startswith("<text>: invalid config\n")
    return msg.split("\n", 1)[1]


def test_text_bounds_are_read_as_values_are_and_checked_against_each_other():
    # a timestamp[ns] bound keeps all nine fraction digits; past int64 nanoseconds it is
    # named, not an overflow; min > max is caught when both are text too
    msg = _compile_error("      t: {type: 'timestamp[ns]', min: '2300-01-01T00:00:00Z'}\n")
    assert msg.startswith("streams.events.fields.t.min:") and "out of range" in msg
    msg = _compile_error("      t: {type: 'timestamp[ms]', max: '20240101T000000Z'}\n")
    assert msg.startswith("streams.events.fields.t.max: expected an RFC 3339 date-time")
    msg = _compile_error("      d: {type: date32, min: '2024-02-30'}\n")
    assert msg.startswith("streams.events.fields.d.min:") and "out of range" in msg
    msg = _compile_error("      t: {type: 'timestamp[s]', min: '2024-01-02T00:00:00Z', max: '2024-01-01T00:00:00Z'}\n")
    assert msg.startswith("streams.events.fields.t.min:") and "greater than max" in msg


def test_integer_enum_values_must_fit_the_type():
    msg = _error(BASE + "      x: {type: int8, enum: [1, 300]}\n")
    assert "streams.events.fields.x.enum" in msg and "300 is outside the range of int8" in msg
    msg = _error(BASE + "      x: {type: uint64, enum: [-1]}\n")
    assert "streams.events.fields.x.enum" in msg and "-1 is outside the range of uint64" in msg


def test_missing_file_and_bad_yaml():
    with pytest.raises(ConfigError, match="cannot read config"):
        engine.load_config(Path("/nonexistent/quiver.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        engine.load_config("streams: [\n")


def test_stream_limits_override_the_global_ones():
    cfg = engine.load_config(
        BASE
        + "      a: {type: int64}\n    limits: {max_depth: 3}\n  other:\n    fields: {b: {type: bool}}\n"
        + "limits: {max_depth: 9, max_message_bytes: 2MiB}\n"
    )
    assert cfg.streams["events"].limits.max_depth == 3
    assert cfg.streams["other"].limits.max_depth == 9
    # key by key: what the stream does not set comes from the config's limits, not defaults
    assert int(cfg.streams["events"].limits.max_message_bytes) == 2 << 20


def test_arrow_types_are_exactly_the_declared_ones(all_types_parser):
    s = all_types_parser.schema
    assert s.field("i8").type == pa.int8()
    assert s.field("u64").type == pa.uint64()
    assert s.field("f32").type == pa.float32()
    assert s.field("e").type == pa.dictionary(pa.int32(), pa.string())
    assert s.field("bin").type == pa.binary()
    assert s.field("j").type == pa.string()
    assert s.field("d").type == pa.date32()
    assert s.field("ts").type == pa.timestamp("ms")
    assert s.field("tus").type == pa.timestamp("us", tz="UTC")
    assert not s.field("req").nullable and s.field("i8").nullable


def test_a_stream_whose_buffers_could_outgrow_its_memory_ceiling_is_refused():
    fields = "      a: {type: int64}\n      s: {type: string}\n"
    ok = engine.load_config(BASE + fields + "    batch: {max_bytes: 8MiB}\n    arenas: 4\n")
    bound = ok.streams["events"].memory_bound()
    # arenas, plus consumer_queue (16) + 2 batches and dead-letter batches (queued, and two
    # arenas parsed side by side): max_messages rows of fixed-width values (int64 + validity,
    # string offset + validity; a dead letter's 84 bytes) and up to an arena of
    # variable-width data each
    arena = 8 << 20
    batches = (65536 * (9 + 5) + arena) + (65536 * 84 + arena)
    assert bound == 4 * arena + 18 * batches
    one = engine.load_config(BASE + fields + "    batch: {max_bytes: 8MiB}\n    arenas: 1\n")
    assert one.streams["events"].memory_bound() == arena + 17 * batches  # one arena: one being made
    msg = _error(BASE + fields + "    batch: {max_bytes: 8MiB}\n    arenas: 4\nlimits: {max_stream_memory: 256MiB}\n")
    assert "streams.events.limits.max_stream_memory" in msg and str(bound) in msg and "consumer_queue + 2" in msg
    fits = engine.load_config(
        BASE
        + fields
        + "    batch: {max_bytes: 8MiB}\n    arenas: 4\n    consumer_queue: 2\nlimits: {max_stream_memory: 256MiB}\n"
    )
    assert fits.streams["events"].memory_bound() <= 256 << 20


def test_connection_limits_have_safe_defaults_and_are_checked():
    limits = engine.load_config(BASE + "      a: {type: int64}\n").limits
    assert (limits.message_timeout_s, limits.max_header_bytes, limits.max_connections) == (30.0, 16 << 10, 10000)
    assert "limits.message_timeout_s" in _error(BASE + "      a: {type: int64}\nlimits: {message_timeout_s: 0}\n")
    assert "limits.max_header_bytes" in _error(BASE + "      a: {type: int64}\nlimits: {max_header_bytes: 10}\n")


def test_config_files_that_are_not_utf8_or_use_odd_yaml_keys(tmp_path):
    raw = tmp_path / "latin1.yaml"
    raw.write_bytes(b"streams:\n  ev:\n    fields: {caf\xe9: {type: int64}}\n")
    assert "not UTF-8 (byte 0xe9 at offset" in _error(raw)
    assert "a mapping key must be a name, not a list or mapping (line 2)" in _error(
        "streams:\n  ? [a]\n  : {fields: {a: {type: int64}}}\n"
    )
    # YAML 1.1 reads these keys as booleans, null or numbers: a name must be quoted
    for key, reads in (("on", "True"), ("off", "False"), ("null", "None"), ("1.5", "1.5")):
        msg = _error(BASE + f"      {key}: {{type: bool}}\n")
        assert f"key {key!r} at line 4 reads as {reads} in YAML; quote it" in msg, msg
    assert engine.load_config(BASE + "      'on': {type: bool}\n").streams["events"].fields["on"].type == "bool"


def test_yaml_merge_keys_work_and_explicit_keys_override_them():
    cfg = engine.load_config(
        BASE + "      a: &num {type: int64, min: 0}\n      b: {<<: *num, min: 5}\n      c: {<<: *num}\n"
    )
    f = cfg.streams["events"].fields
    assert (f["b"].type, f["b"].min, f["c"].min) == ("int64", 5, 0)
    assert "duplicate key 'min'" in _error(BASE + "      b: {<<: {type: int64}, min: 5, min: 6}\n")


def test_yaml_merge_keys_follow_the_merge_spec():
    # of a list of sources the first wins (PyYAML 6.0.4 itself lets the last win)
    cfg = engine.load_config(
        BASE + "      a: &req {type: int64, required: true}\n      b: &opt {type: string, required: false}\n"
        "      c: {<<: [*req, *opt]}\n      d: {<<: [*opt, *req], required: true}\n"
    )
    f = cfg.streams["events"].fields
    assert (f["c"].type, f["c"].required, f["d"].type, f["d"].required) == ("int64", True, "string", True)
    # a merge whose source merges in turn, used again by alias: its keys stay merged ones
    cfg = engine.load_config(
        BASE + "      a: {<<: &i32 {<<: &base {type: int64}, type: int32}, required: true}\n      b: *i32\n"
    )
    assert (cfg.streams["events"].fields["a"].type, cfg.streams["events"].fields["b"].type) == ("int32", "int32")
    # two merge keys in one mapping are a duplicate key like any other
    assert "duplicate key '<<'" in _error(BASE + "      a: &x {type: int64}\n      c: {<<: *x, <<: *x}\n")
    assert "a merge key (<<) takes a mapping" in _error(BASE + "      c: {<<: 5, type: int64}\n")


def test_a_merge_key_bomb_costs_only_its_distinct_keys():
    levels = ["      l0: &l0 {type: int64, min: 0}"]
    for k in range(1, 12):  # each level merges the one below nine times: 9**11 pairs if expanded
        levels.append(f"      l{k}: &l{k} {{<<: [{', '.join([f'*l{k - 1}'] * 9)}]}}")
    cfg = engine.load_config(BASE + "\n".join(levels) + "\n")
    assert cfg.streams["events"].fields["l11"].type == "int64"


def test_stream_names_are_checked_where_they_are_written():
    assert "a stream name starts with a letter" in _error("streams:\n  '':\n    fields: {a: {type: int64}}\n")
    assert "streams.ev.name: unknown key" in _error("streams:\n  ev:\n    name: x\n    fields: {a: {type: int64}}\n")


def test_listener_keys_that_only_tcp_uses_and_clashing_ports():
    fields = BASE + "      a: {type: int64}\n"
    msg = _error(fields + "listen:\n  - {kind: http, port: 0, stream: events}\n")
    assert "listen.0" in msg and "stream applies to tcp listeners only" in msg
    msg = _error(fields + "listen:\n  - {kind: flight, port: 0, framing: length_prefixed}\n")
    assert "framing applies to tcp listeners only" in msg
    msg = _error(fields + "listen:\n  - {kind: http, port: 8080}\n  - {kind: flight, port: 8080}\n")
    assert "listen.1.port: 127.0.0.1:8080 is already taken by listen.0" in msg
    assert "listen.0.host" in _error(fields + "listen:\n  - {kind: http, host: '', port: 0}\n")


def test_numeric_rules_beyond_what_the_tables_hold_are_config_errors():
    msg = _error(BASE + "      p: {type: float64, min: " + "9" * 400 + "}\n")
    assert "streams.events.fields.p.min" in msg and "within float64's range" in msg
    assert "streams.events.fields.s.max_length" in _error(
        BASE + "      s: {type: string, max_length: " + "9" * 20 + "}\n"
    )


def test_min_length_greater_than_max_length_is_refused():
    msg = _error(BASE + "      s: {type: string, min_length: 5, max_length: 2}\n")
    assert "streams.events.fields.s" in msg and "min_length 5 is greater than max_length 2" in msg


def test_deep_nesting_is_a_config_error_not_a_recursion_traceback():
    for nested in ("[" * 1000 + "]" * 1000, "{a: " * 1000 + "1" + "}" * 1000):
        assert "nested too deeply" in _error(BASE + "      a: {type: int64}\nx: " + nested + "\n")


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("{type: int64, min: yes}", "fields.a.min"),
        ("{type: float64, max: no}", "fields.a.max"),
        ("{type: date32, max: off}", "fields.a.max"),
        ("{type: int8, enum: [2, true]}", "fields.a.enum"),
        ("{type: string, max_length: on}", "fields.a.max_length"),
    ],
)
def test_yaml_booleans_are_not_taken_for_numbers(rule, path):
    """YAML 1.1 reads yes/no/on/off as booleans, and pydantic would take True for 1: a
    bound, an enum value or a size would change silently."""
    msg = _error(BASE + f"      a: {rule}\n")
    assert f"streams.events.{path}: a boolean is not allowed here" in msg and "quote the value" in msg


def test_yaml_booleans_are_not_taken_for_numbers_in_settings_either():
    for extra, path in (
        ("    arenas: yes\n", "streams.events.arenas"),
        ("    batch: {linger_ms: on}\n", "streams.events.batch.linger_ms"),
        ("limits: {max_depth: yes}\n", "limits.max_depth"),
        ("listen: [{kind: http, port: yes}]\n", "listen.0.port"),
        ("kernels: {threads: yes}\n", "kernels.threads"),
    ):
        assert f"{path}: a boolean is not allowed here" in _error(BASE + "      a: {type: int64}\n" + extra)
    for flag in ("1", "'yes'"):  # and a flag takes only true or false
        assert "fields.a.required: expected true or false" in _error(
            BASE + f"      a: {{type: int64, required: {flag}}}\n"
        )
    engine.load_config(BASE + "      a: {type: int64, required: true, nullable: false, min: 0, max: 5}\n")


def test_an_unknown_key_says_which_keys_are_allowed_there():
    fields = BASE + "      a: {type: int64}\n"
    for extra, line in (
        ("    batch: {max_msgs: 5}\n", "streams.events.batch.max_msgs: unknown key (check its spelling); "
         "expected one of max_messages, max_bytes, linger_ms"),
        ("listen: [{kind: http, port: 0, hots: x}]\n", "listen.0.hots: unknown key (check its spelling); "
         "expected one of kind, host, port, stream, framing, tls"),
        ("    durability: {interval_ms: 5, x: 1}\ndata_dir: d\n", "streams.events.durability.x: unknown key "
         "(check its spelling); expected one of interval_ms"),
        ("bogus: 1\n", "bogus: unknown key (check its spelling); expected one of streams, listen, limits"),
    ):  # fmt: skip
        assert line in _error(fields + extra)
    assert "fields.a.requird: unknown key (check its spelling); expected one of type, required," in _error(
        BASE + "      a: {type: int64, requird: true}\n"
    )


def test_one_line_per_key_saying_what_was_allowed():
    fields = BASE + "      a: {type: int64}\n"
    msg = _error(fields + "kernels: {threads: AUTO}\n")
    assert msg.count("kernels.threads") == 1 and "a valid integer" in msg and "'auto'" in msg
    msg = _error(BASE + "      a: {type: 'timestamp[ms]', min: 2024-01-01}\n")  # unquoted: a YAML date
    assert msg.count("fields.a.min") == 1 and "quote it ('2024-01-01')" in msg
    msg = _error(fields + "    batch: {max_bytes: abc}\n")
    assert "batch.max_bytes" in msg and "a size such as 512KiB, 16MiB or 1GB; got 'abc'" in msg


def test_infinite_or_nan_settings_and_a_wildcard_host_clash_are_refused():
    fields = BASE + "      a: {type: int64}\n"
    # a linger of forever would hold a batch, and the POSTs waiting on it, for good
    assert "streams.events.batch.linger_ms: Input should be a finite number; got inf" in _error(
        fields + "    batch: {linger_ms: .inf}\n"
    )
    assert "limits.idle_timeout_s: Input should be a finite number" in _error(
        fields + "limits: {idle_timeout_s: .nan}\n"
    )
    # 0.0.0.0 listens on 127.0.0.1 too: the second bind would fail at start
    clash = "listen: [{kind: http, host: 127.0.0.1, port: 7499}, {kind: flight, host: 0.0.0.0, port: 7499}]\n"
    assert "listen.1.port: 0.0.0.0:7499 is already taken by listen.0" in _error(fields + clash)
    engine.load_config(fields + clash.replace("0.0.0.0", "127.0.0.2"))
