"""YAML -> typed, validated configuration.

pydantic does the checking; this module owns the shape of a Quiver config and the wording
of its errors: every problem names its YAML key path and what was allowed, e.g.
``streams.events.fields.price.type: expected one of int8, ..., got 'flaot'``. Duplicate
keys in the YAML are errors too (PyYAML would silently keep the last one).
"""

from __future__ import annotations

import datetime
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def int_range(t: str) -> tuple[int, int]:
    """The smallest and largest value of integer type ``t``."""
    bits = int(t.lstrip("uint"))
    return (0, (1 << bits) - 1) if t[0] == "u" else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


FLOAT_TYPES = ("float32", "float64")
SIMPLE_TYPES = (*INT_TYPES, *FLOAT_TYPES, "bool", "string", "binary", "json", "enum", "date32")
TIME_UNITS = ("s", "ms", "us", "ns")
_STREAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([A-Za-z0-9_+\-/:]+))?\]$")
ALLOWED_TYPES_TEXT = ", ".join(SIMPLE_TYPES) + ", timestamp[s|ms|us|ns] or timestamp[UNIT, tz=ZONE]"


class ConfigError(ValueError):
    """A config that cannot be used; the message lists every problem with its key path."""


def parse_timestamp_type(text: str) -> tuple[str, str | None] | None:
    """(unit, tz) of a ``timestamp[...]`` type string, or None if it is not one."""
    m = _TIMESTAMP.match(text)
    return (m.group(1), m.group(2)) if m else None


class _Model(BaseModel):
    # no .inf or .nan anywhere: 'linger_ms: .inf' would hold a batch (and its POSTs) forever
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, v: Any, info: ValidationInfo) -> Any:
        """YAML 1.1 reads yes/no/on/off as booleans, and pydantic takes True for 1 wherever
        a number (or a number in a union) is expected: ``retention.max_age_s: yes`` would
        delete segments after a second. A boolean is taken only where one is declared."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(v, (datetime.date, datetime.time)):  # datetime is a date too
            raise ValueError(f"got {v}, which YAML reads as a date or time, not text: quote it ('{v}')")
        items = v if isinstance(v, list) else [v]
        if any(isinstance(x, bool) for x in items) and not _takes_bool(annotation):
            raise ValueError(
                f"a boolean is not allowed here; got {v!r} (YAML reads yes, no, on, off, true and false "
                "as booleans: quote the value if it is text)"
            )
        if v is not None and not isinstance(v, bool) and _is_flag(annotation):  # not 1 or 'yes'
            raise ValueError(f"expected true or false; got {v!r}")
        return v


def _takes_bool(annotation: Any) -> bool:
    return annotation is bool or any(_takes_bool(a) for a in typing.get_args(annotation))


def _is_flag(annotation: Any) -> bool:
    """``bool`` or ``bool | None``."""
    return annotation is bool or set(typing.get_args(annotation)) == {bool, type(None)}


Bound = int | float | str
_I64_MAX = (1 << 63) - 1


class FieldSpec(_Model):
    """One declared field: its Arrow type and the rules a value must pass."""

    type: str
    required: bool = False
    nullable: bool | None = None  # default: not required
    min: Bound | None = None
    max: Bound | None = None
    min_length: int | None = Field(default=None, ge=0, le=_I64_MAX)
    max_length: int | None = Field(default=None, ge=0, le=_I64_MAX)
    enum: list[str | int] | None = Field(default=None, min_length=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        v = v.strip()
        if v in SIMPLE_TYPES:
            return v
        ts = parse_timestamp_type(v)
        if ts is None:
            raise ValueError(f"expected one of {ALLOWED_TYPES_TEXT}; got {v!r}")
        unit, tz = ts
        if tz is not None:
            try:
                _check_timezone(tz)
            except Exception:  # pyarrow raises several types for bad zones
                raise ValueError(f"unknown time zone {tz!r} in {v!r}") from None
        return v

    @field_validator("min", "max")
    @classmethod
    def _bound_fits_type(cls, v: Bound | None, info: ValidationInfo) -> Bound | None:
        t = info.data.get("type")
        if v is None or t is None:
            return v
        if t in INT_TYPES:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"expected an integer bound for type {t}; got {v!r}")
        elif t in FLOAT_TYPES:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise ValueError(f"expected a number bound for type {t}; got {v!r}")
            try:
                float(v)
            except OverflowError:
                raise ValueError(f"expected a bound within float64's range for type {t}; got {v!r}") from None
        elif parse_timestamp_type(t) or t == "date32":
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise ValueError(f"expected an integer or an RFC 3339 / YYYY-MM-DD text bound for type {t}; got {v!r}")
        else:
            raise ValueError(f"min/max apply to numbers, timestamps and dates, not to type {t}")
        return v

    @field_validator("min_length", "max_length")
    @classmethod
    def _length_fits_type(cls, v: int | None, info: ValidationInfo) -> int | None:
        t = info.data.get("type")
        if v is not None and t is not None and t not in ("string", "binary"):
            raise ValueError(f"min_length/max_length apply to string and binary, not to type {t}")
        return v

    @field_validator("enum")
    @classmethod
    def _enum_fits_type(cls, v: list | None, info: ValidationInfo) -> list | None:
        t = info.data.get("type")
        if v is None or t is None:
            return v
        if t in ("string", "enum"):
            if not all(isinstance(x, str) for x in v):
                raise ValueError(f"expected a list of strings for type {t}")
        elif t in INT_TYPES:
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise ValueError(f"expected a list of integers for type {t}")
            lo, hi = int_range(t)
            outside = [x for x in v if not lo <= x <= hi]
            if outside:
                raise ValueError(f"enum value {outside[0]} is outside the range of {t} ({lo}..{hi})")
        else:
            raise ValueError(f"enum applies to string, enum and integer types, not to type {t}")
        if len(set(v)) != len(v):
            raise ValueError("enum values must be distinct")
        return v

    @model_validator(mode="after")
    def _enum_type_has_values(self) -> FieldSpec:
        if self.type == "enum" and not self.enum:
            raise ValueError("type enum needs an 'enum' list of its values")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is greater than max_length {self.max_length}")
        return self

    @property
    def is_nullable(self) -> bool:
        return (not self.required) if self.nullable is None else self.nullable


def _check_timezone(tz: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    pc.assume_timezone(pa.array([0], pa.timestamp("s")), tz)


class BatchSpec(_Model):
    """When a stream's arena is flushed into a batch: whichever limit is reached first."""

    max_messages: int = Field(default=65536, ge=1, le=1 << 26)
    max_bytes: ByteSize = Field(default=ByteSize(16 << 20), ge=1024)
    linger_ms: float = Field(default=20.0, ge=0)


class Limits(_Model):
    """Safety limits, each safe by default. A message over max_message_bytes is rejected
    as too_large; the others close (or refuse) the one connection that hits them."""

    max_message_bytes: ByteSize = Field(default=ByteSize(1 << 20), ge=16)
    max_depth: int = Field(default=64, ge=1, le=10000)
    max_connections: int = Field(default=10000, ge=1)  # per listener; beyond it: refused
    idle_timeout_s: float = Field(default=300.0, gt=0)  # a connection silent this long is closed
    message_timeout_s: float = Field(default=30.0, gt=0)  # a started message (or request) must end within
    max_header_bytes: ByteSize = Field(default=ByteSize(16 << 10), ge=1024)  # HTTP request line + headers
    max_body_bytes: ByteSize = Field(default=ByteSize(64 << 20), ge=1024)  # HTTP body, after gzip inflation
    max_stream_memory: ByteSize = Field(default=ByteSize(1 << 30), ge=1 << 20)  # arenas + queued output
    max_partial_bytes: ByteSize = Field(default=ByteSize(256 << 20), ge=1 << 20)  # unfinished messages, per listener


class IntervalDurability(_Model):
    """fsync every ``interval_ms``; acknowledgements wait for the fsync that covers them."""

    interval_ms: float = Field(gt=0, le=60_000)


class SegmentSpec(_Model):
    """When a stream's active segment file is closed and a new one started."""

    max_bytes: ByteSize = Field(default=ByteSize(64 << 20), ge=4096)
    max_age_s: float = Field(default=3600.0, gt=0)


class RetentionSpec(_Model):
    """How much of a stream's log is kept: closed segments beyond either limit are deleted
    (oldest first). ``null`` means no limit."""

    max_bytes: ByteSize | None = Field(default=ByteSize(1 << 30), ge=4096)
    max_age_s: float | None = Field(default=None, gt=0)


def _value_bytes(type_: str) -> int:
    """Fixed bytes per value of a column: the value, or a variable-width value's offset."""
    if type_ in ("int8", "uint8", "bool"):
        return 1
    if type_ in ("int16", "uint16"):
        return 2
    if type_ in ("int64", "uint64", "float64") or type_.startswith("timestamp"):
        return 8
    return 4  # 32-bit numbers, date32, enum indices, string/binary/json offsets


# index, offset, position (8 each), error/field/raw offsets (4 each), error and field text
_DEAD_LETTER_ROW_BYTES = 3 * 8 + 3 * 4 + 48
#: Arenas of one stream past the batcher at once (parsing, or parsed and waiting for their
#: turn to publish; engine.pipeline): two keep the cores busy through each other's serial
#: steps, and each one more is a batch more in memory (``StreamConfig.memory_bound``).
PIPELINE_DEPTH = 2


class StreamConfig(_Model):
    """One named stream: its format, fields and batching."""

    name: str = Field(default="", pattern=r"^([A-Za-z_][A-Za-z0-9_-]*)?$")
    format: Literal["ndjson"] = "ndjson"
    unknown_fields: Literal["ignore", "reject"] = "ignore"
    fields: dict[str, FieldSpec] = Field(min_length=1)
    batch: BatchSpec = BatchSpec()
    arenas: int = Field(default=4, ge=1, le=1024)
    limits: Limits | None = None  # per-stream override; else the config's limits
    slow_consumer: Literal["block", "disconnect"] = "block"
    consumer_queue: int = Field(default=16, ge=1, le=1 << 16)  # batches queued per consumer
    # with a data_dir: when appended batches are fsynced (and so when POSTs are answered)
    durability: Literal["none", "batch"] | IntervalDurability = "batch"
    segments: SegmentSpec = SegmentSpec()
    retention: RetentionSpec = RetentionSpec()

    def memory_bound(self) -> int:
        """The most bytes this stream's own buffers can hold: its arenas, plus, for its
        batches and its dead letters, ``consumer_queue`` queued batches and those being
        made (one per arena past the batcher, at most PIPELINE_DEPTH).
        A batch holds at most max_messages rows of fixed-width values and at most an
        arena's worth of variable-width data (strings are never longer than their input)."""
        from engine.arena import arena_capacity  # numpy-only; keeps config import light

        assert self.limits is not None
        capacity = arena_capacity(int(self.batch.max_bytes), int(self.limits.max_message_bytes))
        row = sum(_value_bytes(f.type) + 1 for f in self.fields.values())  # + validity, rounded up
        batch = self.batch.max_messages * row + capacity
        rejects = self.batch.max_messages * _DEAD_LETTER_ROW_BYTES + capacity
        being_made = min(PIPELINE_DEPTH, self.arenas)
        return self.arenas * capacity + (self.consumer_queue + being_made) * (batch + rejects)

    @field_validator("durability", mode="before")
    @classmethod
    def _durability_form(cls, v: Any) -> Any:
        if isinstance(v, dict) or v in ("none", "batch"):
            return v
        raise ValueError(f"expected none, batch or {{interval_ms: N}}; got {v!r}")


class TlsSpec(_Model):
    """Serve a listener over TLS with this certificate chain and private key (PEM files)."""

    cert: str = Field(min_length=1)
    key: str = Field(min_length=1)


class ListenSpec(_Model):
    """A listener (served by `quiver serve`)."""

    kind: Literal["tcp", "http", "flight"]
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(ge=0, le=65535)
    stream: str | None = None
    framing: Literal["newline", "length_prefixed"] = "newline"
    tls: TlsSpec | None = None

    @model_validator(mode="after")
    def _tcp_only_keys(self) -> ListenSpec:
        """A stream and a framing belong to a TCP listener; HTTP and Flight name the stream
        in each request, so there they would be silently ignored."""
        for key in ("stream", "framing"):
            if self.kind != "tcp" and key in self.model_fields_set:
                raise ValueError(f"{key} applies to tcp listeners only (an {self.kind} request names its stream)")
        return self


class AuthSpec(_Model):
    """HTTP and Flight clients must present ``Authorization: Bearer <token>``, the token
    being read from the environment variable ``token_env`` when the service starts."""

    token_env: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class KernelSpec(_Model):
    """Kernel threads: ``auto`` uses every core Numba sees."""

    threads: int | Literal["auto"] = "auto"

    def threads_here(self, available: int) -> int | None:
        """Threads to use on a machine where Numba sees ``available`` cores (None: all).
        A config may travel from a bigger machine: more threads than cores means all."""
        return None if self.threads == "auto" else min(int(self.threads), available)

    @field_validator("threads")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("expected 'auto' or a positive integer")
        return v


class Config(_Model):
    """A whole Quiver configuration."""

    streams: dict[str, StreamConfig] = Field(min_length=1)
    listen: list[ListenSpec] = []
    limits: Limits = Limits()
    kernels: KernelSpec = KernelSpec()
    data_dir: str | None = Field(default=None, min_length=1)  # durable segments; None: live only
    auth: AuthSpec | None = None  # None: HTTP and Flight are open to whoever can connect
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _name_streams(cls, data: Any) -> Any:
        """Give each stream its name (the key it is declared under)."""
        if isinstance(data, dict) and isinstance(data.get("streams"), dict):
            for k, s in data["streams"].items():
                if isinstance(s, dict) and "name" in s:
                    raise ValueError(f"streams.{k}.name: unknown key (a stream's name is the key it is declared under)")
                if not isinstance(k, str) or not _STREAM_NAME.fullmatch(k):
                    raise ValueError(
                        f"streams: a stream name starts with a letter or _ and holds only letters, digits, _ and -; "
                        f"got {k!r}"
                    )
            streams = {k: ({**s, "name": k} if isinstance(s, dict) else s) for k, s in data["streams"].items()}
            data = {**data, "streams": streams}
        return data

    @model_validator(mode="after")
    def _resolve(self) -> Config:
        """Streams take the config's limits, but for the keys their own ``limits`` set."""
        for name, s in self.streams.items():
            # key by key: a stream that sets only max_depth keeps the config's other limits
            written = {} if s.limits is None else {k: getattr(s.limits, k) for k in s.limits.model_fields_set}
            object.__setattr__(s, "limits", self.limits.model_copy(update=written))
            stored = {"durability", "segments", "retention"} & s.model_fields_set
            if self.data_dir is None and stored:
                key = sorted(stored)[0]
                raise ValueError(f"streams.{name}.{key}: applies only with a top-level data_dir (none is set)")
            if s.limits.max_message_bytes > s.batch.max_bytes:
                raise ValueError(
                    f"streams.{name}: limits.max_message_bytes ({int(s.limits.max_message_bytes)}) "
                    f"must not exceed batch.max_bytes ({int(s.batch.max_bytes)})"
                )
        for name, s in self.streams.items():
            need = s.memory_bound()
            if need > s.limits.max_stream_memory:
                raise ValueError(
                    f"streams.{name}.limits.max_stream_memory: the stream's buffers may take {need} bytes "
                    f"(arenas, and consumer_queue + {min(PIPELINE_DEPTH, s.arenas)} output batches of each "
                    f"topic: queued, and being made by arenas parsed side by side), over the ceiling of "
                    f"{int(s.limits.max_stream_memory)}; lower arenas, batch or consumer_queue, or raise the ceiling"
                )
        bound: dict[tuple[str, int], int] = {}
        for k, listener in enumerate(self.listen):
            if listener.kind == "tcp" and listener.stream not in self.streams:
                raise ValueError(f"listen.{k}.stream: expected one of {sorted(self.streams)}; got {listener.stream!r}")
            where = (listener.host, listener.port)
            # a wildcard host (every address) takes its port on 127.0.0.1 and the rest too
            clash = [
                other
                for (host, port), other in bound.items()
                if port == listener.port and (host == listener.host or {host, listener.host} & _ANY_HOST)
            ]
            if listener.port and clash:
                raise ValueError(f"listen.{k}.port: {where[0]}:{where[1]} is already taken by listen.{clash[0]}")
            bound[where] = k
        return self


_ANY_HOST = {"0.0.0.0", "::", ""}


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys, and keys that are not names."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.merged_pairs: dict[int, dict] = {}  # id(node) -> its pairs, merges resolved


_MERGE = "tag:yaml.org,2002:merge"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _pairs(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> tuple[dict, list]:
    """A mapping node's pairs without changing the node: (merged, written). ``merged`` holds
    what its merge key brings in, by key, the first of a list of sources winning (the YAML
    merge spec; PyYAML 6.0.4's own flattening lets the last win, and it rewrites a node in
    place, so an alias of it later looks as if its merged keys had been written there).
    ``written`` is the node's own pairs, in order. Each node is resolved once: a source used
    many times (an alias bomb) costs no more than its distinct keys."""
    merged: dict = {}
    written: list = []
    merges = 0
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            written.append((key_node, value_node))
            continue
        merges += 1
        if merges > 1:
            raise ConfigError(f"duplicate key '<<' at line {_line(key_node)}")
        if isinstance(value_node, yaml.MappingNode):
            sources = [value_node]
        elif isinstance(value_node, yaml.SequenceNode) and all(
            isinstance(v, yaml.MappingNode) for v in value_node.value
        ):
            sources = value_node.value
        else:
            raise ConfigError(f"a merge key (<<) takes a mapping or a list of mappings (line {_line(key_node)})")
        for source in reversed(sources):  # the first source goes in last, so it wins
            merged.update(_resolved(loader, source))
    return merged, written


def _resolved(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    """All of a mapping node's pairs, its own over merged ones, keyed by the key's text."""
    got = loader.merged_pairs.get(id(node))
    if got is None:
        merged, written = _pairs(loader, node)
        got = dict(merged)
        for key_node, value_node in written:
            got[_key_text(key_node)] = (key_node, value_node)
        loader.merged_pairs[id(node)] = got
    return got


def _key_text(key_node: yaml.Node) -> tuple[str, str]:
    if not isinstance(key_node, yaml.ScalarNode):
        raise ConfigError(f"a mapping key must be a name, not a list or mapping (line {_line(key_node)})")
    return key_node.tag, key_node.value


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    merged, written = _pairs(loader, node)
    mapping: dict = {}
    for own, pairs in ((False, list(merged.values())), (True, written)):
        for key_node, value_node in pairs:
            key_text = _key_text(key_node)[1]
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, str):  # yes/no/on/off/null and numbers: YAML 1.1 reads them so
                raise ConfigError(
                    f"key {key_text!r} at line {_line(key_node)} reads as {key!r} in YAML; quote it to use it as a name"
                )
            if own and key in mapping and mapping[key][1]:  # a merged value may be overridden
                raise ConfigError(f"duplicate key {key!r} at line {_line(key_node)}")
            mapping[key] = (loader.construct_object(value_node, deep=deep), own)
    return {key: value for key, (value, _) in mapping.items()}


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_errors(exc: ValidationError) -> str:
    found: dict[str, list[str]] = {}  # path -> what each union arm said (one for most)
    got: dict[str, str] = {}
    for err in exc.errors():
        if err["type"] == "literal_error" and isinstance(err.get("input"), dict):
            continue  # the other arm of a "word or mapping" union says what is wrong
        loc = [str(p) for p in err["loc"] if _is_key(p)]
        path = ".".join(loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _keys_at(tuple(p for p in err["loc"][:-1] if _is_key(p)))
            msg = "unknown key (check its spelling)" + (f"; expected one of {', '.join(allowed)}" if allowed else "")
        elif err["type"].startswith("byte_size"):
            msg = f"{msg}: expected a number of bytes, or a size such as 512KiB, 16MiB or 1GB"
        if err["type"] != "extra_forbidden" and "got" not in msg and not isinstance(err.get("input"), (dict, list)):
            got.setdefault(path, f"; got {err.get('input')!r}")
        if not loc and msg.startswith(("streams.", "streams:", "listen.")):
            path = msg  # a cross-field check that names its own key path
            msg = ""
        arms = found.setdefault(path, [])
        if msg not in arms:
            arms.append(msg)
    # one line per path: a union reports each arm separately ("a valid integer", "'auto'")
    lines = []
    for path, arms in found.items():
        if arms == [""]:
            lines.append(path)
            continue
        said = (
            arms[0]
            if len(arms) == 1
            else arms[0] + "".join(", or " + a.removeprefix("Input should be ") for a in arms[1:])
        )
        lines.append(f"{path}: {said}{got.get(path, '')}")
    return "\n".join(lines)


def _keys_at(loc: tuple) -> list[str]:
    """The keys a config may write at ``loc`` (a pydantic error location), for naming
    what was allowed next to an unknown key; [] if the walk loses its way."""
    model: Any = Config
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return []
            model = field.annotation
        elif typing.get_origin(model) in (dict, list):
            model = typing.get_args(model)[-1]  # a stream or field name, or a listener's index
        else:
            return []
        arms = [a for a in typing.get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)]
        if typing.get_origin(model) not in (dict, list) and arms:
            model = arms[0]  # X | None, or a word-or-mapping union: the mapping arm
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [k for k in model.model_fields if not (model is StreamConfig and k == "name")]
    return []


def _is_key(p: Any) -> bool:
    """Whether a pydantic loc element is a YAML key (not a union arm or validator tag)."""
    if isinstance(p, int):
        return True
    s = str(p)
    return not (s.endswith("]") and "[" in s) and s not in (
        "int",
        "float",
        "str",
        "literal",
        IntervalDurability.__name__,
    )


def load_config(source: str | os.PathLike[str]) -> Config:
    """Load and validate a config from a YAML file path or YAML text.

    Raises ConfigError naming every bad key path.
    """
    text: str
    origin: str
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and _looks_like_path(source)):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"cannot read config {path}: not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
            ) from None
        origin = str(path)
    else:
        text = str(source)
        origin = "<text>"
    too_deep = f"{origin}: nested too deeply (hundreds of levels of lists or mappings)"
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(too_deep) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with a 'streams' key at the top level")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: invalid config\n{_format_errors(exc)}") from None
    except RecursionError:
        raise ConfigError(too_deep) from None
    from engine.schema import compile_schema  # the rules that need the kernels' parsers

    for stream in config.streams.values():
        try:
            compile_schema(stream)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: invalid config\n{exc}") from None
    return config


def _looks_like_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml")) or os.path.exists(s)
