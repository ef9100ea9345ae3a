"""Sample NDJSON for any stream, generated from its declared fields.

``quiver convert --sample N`` uses it to demonstrate a config with nothing but the package,
and ``Parser.warm`` to load every kernel: valid messages of every declared type, plus a few
broken ones (about one in a hundred) so the dead-letter output has something to show. This
is demo data, not part of the ingest path.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random

from engine.config import INT_TYPES, FieldSpec, StreamConfig, parse_timestamp_type

_WORDS = ("alpha", "bravo", "café", "delta", "écho", "foxtrot", "golf", "hôtel", "india", "日本")
_BROKEN = (
    b'{"ts": 1700000000000, "user_id": 0, "event": "click"}',  # below min
    b'{"ts": 1700000000000, "user_id": 12, "event": "click",}',  # trailing comma
    b'{"user_id": 12, "event": "view"}',  # missing ts
    b'{"ts": 1700000000000, "user_id": 99999999999999999999}',  # int64 overflow
    b'{"ts": 1700000000000, "user_id": 5, "event": "hover"}',  # not in enum
    b'["not", "an", "object"]',
)


def _value(spec: FieldSpec, rng: random.Random, now_ms: int) -> object:
    t = spec.type
    lo = spec.min if isinstance(spec.min, (int, float)) and not isinstance(spec.min, bool) else None
    hi = spec.max if isinstance(spec.max, (int, float)) and not isinstance(spec.max, bool) else None
    if spec.enum:
        return rng.choice(spec.enum)
    if t in INT_TYPES:
        bits = int(t.removeprefix("u").removeprefix("int"))
        a = lo if lo is not None else (0 if t.startswith("u") else -(2 ** (bits - 1)))
        b = hi if hi is not None else min(2 ** (bits - 1) - 1, 10**9)
        return rng.randint(int(a), int(max(a, b)))
    if t in ("float32", "float64"):
        a = lo if lo is not None else 0.0
        b = hi if hi is not None else a + 1000.0
        return round(rng.uniform(a, b), 2)
    if t == "bool":
        return rng.random() < 0.5
    if t == "string":
        n = spec.max_length or 40
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))[: max(n, spec.min_length or 0)]
    if t == "binary":
        return base64.b64encode(rng.randbytes(rng.randint(0, 12))).decode()
    if t == "json":
        return {"k": rng.randint(0, 9), "tags": rng.sample(_WORDS, 2), "nested": {"ok": True}}
    if t == "date32":
        return (dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 365))).isoformat()
    unit, _ = parse_timestamp_type(t)
    ms = now_ms + rng.randint(0, 3_600_000)
    if rng.random() < 0.5:
        return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return ms * {"s": 1, "ms": 1000, "us": 1000_000, "ns": 1000_000_000}[unit] // 1000


def sample_ndjson(stream: StreamConfig, n: int, seed: int = 0, broken_every: int = 100) -> bytes:
    """``n`` NDJSON lines for ``stream``; every ``broken_every``-th one is invalid (0: none)."""
    rng = random.Random(seed)
    now_ms = 1_700_000_000_000
    lines = []
    for i in range(n):
        if broken_every and i % broken_every == broken_every - 1:
            lines.append(_BROKEN[(i // broken_every) % len(_BROKEN)])
            continue
        msg = {}
        for name, spec in stream.fields.items():
            if spec.required or rng.random() < 0.8:
                msg[name] = _value(spec, rng, now_ms)
        lines.append(json.dumps(msg, ensure_ascii=rng.random() < 0.5).encode())
    return b"\n".join(lines) + b"\n"
