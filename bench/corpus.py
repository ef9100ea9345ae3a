"""Seeded generators of realistic NDJSON corpora for the Quiver benchmarks.

This module owns the benchmark *data*: three corpora whose fields match the example configs in
``configs/examples`` (one stream per file, named like the corpus):

* ``clickstream`` -- ~185 bytes/message, 8 flat fields (epoch-ms ``ts``, ``user_id``,
  ``session``, ``event`` enum, ``url``, nullable ``price``, ``ok``, ``ua``).
* ``logs`` -- application logs: RFC 3339 ``ts`` string, ``level`` enum, ``service``, ``host``,
  free-text ``msg`` with JSON escapes, an optional ``trace_id`` and a nested ``context`` object
  (kept as raw JSON text by Quiver's ``json`` type).
* ``metrics`` -- host metrics: epoch-us ``ts``, ``host``, ``region`` enum and 22 int64 / int32 /
  float64 fields, some nullable.

Every message is valid for its config, so every peer in ``bench.parse`` accepts every row and
outputs can be compared.  The data exercises what real producers emit: escaped quotes, ``\\n``
and ``\\uXXXX`` escapes, raw UTF-8, ``\\/`` escaped slashes (PHP encoders), 17-significant-digit
floats, integer literals in float fields, exponents, nulls, absent optional keys, int64 ids
beyond 2**53, several RFC 3339 styles and per-producer key orders.  Inside ``context`` each key
keeps a single JSON type, so pyarrow's schema inference can read the corpus too.

Determinism: output depends only on ``(kind, n, seed)`` (and numpy's PCG64 stream, which numpy
keeps stable).  Rows are made in chunks of ``CHUNK_ROWS``, each with its own RNG seeded from
``(seed, kind, chunk index)``, so ``generate(k, n, s)`` is a byte prefix of ``generate(k, m, s)``
for ``n <= m``.

Speed: per-row Python formatting (repr of floats especially) costs microseconds per message, so
rows are assembled column-wise instead.  Every field is rendered by numpy into a fixed-width
``uint8`` matrix (one row per message, unused cells NUL), the matrices and literal key text are
concatenated side by side, and the NUL padding is deleted in one pass (JSON text never contains
NUL).  Full-precision float literals come from per-seed pools of ``repr()`` strings, because
shortest round-trip formatting cannot be vectorised.

CLI: ``python -m bench.corpus clickstream 1000000 -o clickstream.ndjson [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["CHUNK_ROWS", "KINDS", "generate", "main"]

#: Rows per generation chunk; part of the determinism contract (changing it changes the bytes).
CHUNK_ROWS = 32768

#: Distinct values in each full-precision float pool (see module docstring).
_FLOAT_POOL = 65536

#: 2024-11-26T00:00:00Z, a fixed origin so corpora never depend on the wall clock.
_BASE_MS = 1_732_579_200_000
_BASE_US = _BASE_MS * 1000

_U64 = np.uint64
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

Part = str | np.ndarray
"""A piece of a row: literal text (same for all rows) or an ``(n, width)`` uint8 matrix."""


# --------------------------------------------------------------------------------------------
# column renderers: each returns an (n, width) uint8 matrix, NUL where a row is shorter
# --------------------------------------------------------------------------------------------


def _js(text: str, ascii_only: bool = False) -> str:
    """JSON-escape ``text`` without the surrounding quotes (pools are escaped once, up front)."""
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


def _pool(strings: Sequence[str]) -> np.ndarray:
    """Encode a list of strings as a ``(len, width)`` matrix; index it to pick values per row."""
    encoded = [s.encode("utf-8") for s in strings]
    width = max(1, max(len(b) for b in encoded))
    return np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)


def _digits(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as decimal ASCII, right-aligned, NUL-padded, as tight as possible."""
    x = np.asarray(values, dtype=np.int64)
    if x.size and int(x.min()) < 0:
        raise ValueError("_digits renders non-negative integers only")
    width = len(str(int(x.max()))) if x.size else 1
    out = np.zeros((x.size, width), dtype=np.uint8)
    for col in range(width - 1, -1, -1):
        digit = (x % 10).astype(np.uint8) + 48
        out[:, col] = np.where(x > 0, digit, 0) if col < width - 1 else digit
        x = x // 10
    return out


def _fixed(units: np.ndarray, decimals: int) -> np.ndarray:
    """``units / 10**decimals`` rendered exactly like Python's ``repr`` of that float.

    Division by a power of ten is correctly rounded, so the shortest round-trip literal is the
    decimal with trailing zeros trimmed (but one kept after the point): 1999 -> ``19.99``,
    1580 -> ``15.8``, 6500 -> ``65.0``.
    """
    units = np.asarray(units, dtype=np.int64)
    scale = 10**decimals
    frac = _digits(units % scale + scale)[:, 1:]  # leading "1" keeps the zeros, then drop it
    trailing = np.ones(len(units), dtype=bool)
    for col in range(decimals - 1, 0, -1):
        trailing &= frac[:, col] == ord("0")
        frac[trailing, col] = 0
    return _cat(len(units), _digits(units // scale), ".", frac)


def _hex(rng: np.random.Generator, n: int, width: int = 16) -> np.ndarray:
    """Random lowercase hex ids (session / request / trace ids) as an ``(n, width)`` matrix."""
    return _HEX_DIGITS[rng.integers(0, 16, size=(n, width))]


def _hash_hex(keys: np.ndarray) -> np.ndarray:
    """16-hex-digit ids derived from keys via SplitMix64, so equal keys give equal ids."""
    x = keys.astype(np.uint64) + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    x = x ^ (x >> _U64(31))
    shifts = np.arange(60, -1, -4, dtype=np.uint64)
    return _HEX_DIGITS[((x[:, None] >> shifts) & _U64(0xF)).astype(np.intp)]


def _float_pool(values: np.ndarray) -> np.ndarray:
    """``repr`` literals of full-precision floats (15-17 significant digits, maybe exponents)."""
    return _pool([repr(v) for v in values.tolist()])


def _lit(n: int, text: str) -> np.ndarray:
    """Literal text repeated on every row, without copying it ``n`` times."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return np.broadcast_to(raw, (n, raw.size))


def _cat(n: int, *parts: Part) -> np.ndarray:
    """Place parts side by side: the row layout reads like the JSON it produces."""
    return np.concatenate([_lit(n, p) if isinstance(p, str) else p for p in parts], axis=1)


def _choose(which: np.ndarray, options: Sequence[Part]) -> np.ndarray:
    """Row ``i`` takes ``options[which[i]]`` (e.g. a number or ``null``)."""
    n = len(which)
    mats = [_lit(n, o) if isinstance(o, str) else o for o in options]
    out = np.zeros((n, max(m.shape[1] for m in mats)), dtype=np.uint8)
    for k, m in enumerate(mats):
        rows = which == k
        out[rows, : m.shape[1]] = m[rows]
    return out


def _scatter(n: int, pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Merge matrices rendered for disjoint row subsets ``(rows, matrix)`` into one."""
    out = np.zeros((n, max(m.shape[1] for _, m in pieces)), dtype=np.uint8)
    for rows, m in pieces:
        out[rows, : m.shape[1]] = m
    return out


def _optional(present: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Blank out a whole ``,"key":value`` piece on rows where the key is absent."""
    piece = np.array(piece)
    piece[~present] = 0
    return piece


def _pick(rng: np.random.Generator, n: int, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Draw ``n`` indices into ``weights`` (normalised here, so tables list raw weights)."""
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _zipf(k: int, s: float) -> np.ndarray:
    """Zipf-like popularity, as seen for pages and user agents in real traffic."""
    return 1.0 / np.arange(1, k + 1, dtype=np.float64) ** s


def _text(mat: np.ndarray) -> bytes:
    """Drop the NUL padding: what remains is the NDJSON text, rows in order."""
    return np.ascontiguousarray(mat).tobytes().translate(None, b"\0")


# --------------------------------------------------------------------------------------------
# clickstream
# --------------------------------------------------------------------------------------------

_CLICK_EVENTS = ("view", "click", "add_to_cart", "purchase")
_CLICK_EVENT_WEIGHTS = (0.55, 0.30, 0.10, 0.05)
_NULL_PRICE_P = (0.05, 0.9, 0.0, 0.0)  # per event: clicks mostly carry no price

#: (user agent, weight, ascii_only escaping).  Mostly short app/bot agents plus a few full
#: browser strings; several carry quotes, raw UTF-8 or \\u escapes on purpose.
_UAS: tuple[tuple[str, float, bool], ...] = (
    ("ShopApp/5.2.1 (iOS 17.4)", 20, False),
    ("ShopApp/5.2.0 (Android 14)", 16, False),
    ("okhttp/4.12.0", 7, False),
    ("curl/8.5.0", 4, False),
    ("python-requests/2.32.3", 4, False),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 5, False),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        + "Chrome/131.0.0.0 Safari/537.36",
        8,
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        + "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        4,
        False,
    ),
    ('ShopApp/5.1.9 (Android 13; Galaxy "S23" Ultra)', 6, False),
    ("Café-Crawler/2.0 (+https://exemple.fr/café)", 3, True),
    ("Café-Crawler/2.0 (+https://exemple.fr/café)", 2, False),
    ("Mozilla/5.0 (compatible; ЯндексБот/3.0)", 2, False),
    ('SmartTV/1.0 (Bravia™; "Living room")', 2, True),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", 3, False),
)

_CATEGORIES = ("shoes", "outdoor", "kitchen", "toys", "books", "garden", "audio", "sale")
_REFS = ("home", "search", "email", "ads", "reco")
_SORTS = ("price_asc", "price_desc", "new", "popular")
_TERMS = ("running+shoes", "tent", "caf%C3%A9+mug", "lego", "headphones", "gift+card")
_URL_KIND_WEIGHTS = (40, 15, 12, 8, 10, 3, 3, 2, 4)


def _click_urls(rng: np.random.Generator, k: int = 4096) -> list[str]:
    """A shop's page inventory as relative paths (what client-side trackers send).

    A few percent come from a PHP producer that escapes slashes as ``\\/``.
    """
    pids = rng.integers(1000, 999_999, size=k).tolist()
    kinds = _pick(rng, k, _URL_KIND_WEIGHTS).tolist()
    pages = rng.integers(2, 40, size=k).tolist()
    urls: list[str] = []
    for i, (kind, pid, page) in enumerate(zip(kinds, pids, pages, strict=True)):
        cat = _CATEGORIES[i % len(_CATEGORIES)]
        urls.append(
            (
                f"/p/{pid}",
                f"/p/{pid}?ref={_REFS[i % len(_REFS)]}",
                f"/c/{cat}",
                f"/c/{cat}?page={page}&sort={_SORTS[i % len(_SORTS)]}",
                f"/search?q={_TERMS[i % len(_TERMS)]}",
                "/cart",
                f"/checkout/step-{page % 4 + 1}",
                "/",
                f"https://shop.example.com/p/{pid}".replace("/", "\\/"),
            )[kind]
        )
    return urls


def _clickstream_pools(rng: np.random.Generator) -> dict:
    """Per-seed inventories shared by all chunks: pages, user agents, discounted prices."""
    urls = _click_urls(rng)
    cents = np.maximum(100, (np.exp(rng.normal(3.0, 1.0, _FLOAT_POOL)) * 100).astype(np.int64))
    discount = np.array([0.9, 0.85, 0.8, 0.75, 0.7])[rng.integers(0, 5, _FLOAT_POOL)]
    return {
        "urls": _pool(urls),
        "url_weights": _zipf(len(urls), 0.9),
        "uas": _pool([_js(ua, ascii_only) for ua, _, ascii_only in _UAS]),
        "ua_weights": [w for _, w, _ in _UAS],
        "discounted": _float_pool(cents / 100 * discount),  # 16-17 significant digits
    }


def _click_price(rng: np.random.Generator, pools: dict, events: np.ndarray) -> np.ndarray:
    """Price literals: mostly x.99-style prices, some discounted full-precision floats, some
    integer literals (valid in a float field), and nulls (mostly on clicks)."""
    n = len(events)
    dollars = np.maximum(1, np.exp(rng.normal(3.0, 1.0, size=n)).astype(np.int64))
    endings = np.array([99, 49, 0, 95, 50])[_pick(rng, n, (50, 15, 15, 10, 10))]
    discounted = pools["discounted"][rng.integers(0, _FLOAT_POOL, size=n)]
    style = _pick(rng, n, (78, 15, 7))  # two-decimal, discounted, integer literal
    style[rng.random(n) < np.asarray(_NULL_PRICE_P)[events]] = 3
    return _choose(style, [_fixed(dollars * 100 + endings, 2), discounted, _digits(dollars), "null"])


def _clickstream_chunk(rng: np.random.Generator, pools: dict, start: int, n: int, seed: int) -> np.ndarray:
    """Render clickstream messages for global row indices ``start .. start+n-1``."""
    idx = np.arange(start, start + n, dtype=np.int64)
    ts = _BASE_MS + idx * 37 + rng.integers(0, 500, size=n)  # slightly out of order
    small = 1 + np.exp(rng.normal(9.0, 1.5, size=n)).astype(np.int64)
    snowflake = rng.integers(10**17, 2**63 - 1, size=n, dtype=np.int64)  # beyond 2**53
    users = np.where(rng.random(n) < 0.08, snowflake, small)
    window = (ts // 1_800_000).astype(np.uint64)  # a session lasts at most 30 minutes
    session = _hash_hex(users.astype(np.uint64) ^ (window * _U64(0x9E3779B1)) ^ _U64(seed))
    events = _pick(rng, n, _CLICK_EVENT_WEIGHTS)
    return _cat(
        n,
        '{"ts":',
        _digits(ts),
        ',"user_id":',
        _digits(users),
        ',"session":"s_',
        session,
        '","event":"',
        _pool(_CLICK_EVENTS)[events],
        '","url":"',
        pools["urls"][_pick(rng, n, pools["url_weights"])],
        '","price":',
        _click_price(rng, pools, events),
        ',"ok":',
        _pool(("true", "false"))[(rng.random(n) >= 0.98).astype(np.intp)],
        ',"ua":"',
        pools["uas"][_pick(rng, n, pools["ua_weights"])],
        '"}\n',
    )


# --------------------------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------------------------

_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")

#: (service, weight, ts style, key order).  ts style: 0 = microseconds + "Z",
#: 1 = milliseconds + "Z", 2 = microseconds + "+00:00", 3 = seconds in local time + "+01:00".
#: Key order 1 is a legacy producer that writes level first and the payload before the host.
_SERVICES: tuple[tuple[str, float, int, int], ...] = (
    ("gateway", 25, 0, 0),
    ("checkout", 15, 0, 0),
    ("search-api", 15, 1, 0),
    ("auth", 10, 1, 0),
    ("inventory", 10, 2, 0),
    ("payments", 8, 0, 0),
    ("recommender", 7, 2, 0),
    ("email-worker", 5, 3, 1),
    ("billing-legacy", 5, 3, 1),
)
_HOSTS_PER_SERVICE = 12
_API_PATHS = (
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v2/search",
    "/api/v1/users/me",
    "/healthz",
    "/api/v1/payments/authorize",
)
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
_STATUSES = ("200", "201", "204", "304", "400", "401", "404", "429", "500", "503")
_STATUS_WEIGHTS = (70, 5, 5, 5, 3, 2, 5, 2, 2, 1)
_ROLES = ('["buyer"]', '["buyer","seller"]', '["admin"]', '["buyer","beta","staff"]')
_ROLE_WEIGHTS = (60, 20, 5, 15)
_TOPICS = ("orders", "clicks", "payments.v2", "inventory-updates")
_PROVIDERS = ("password", "google", "apple", "sso")
_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")

_Cols = Mapping[str, np.ndarray]


class _RowSubset(Mapping[str, np.ndarray]):
    """The rows of a template, taken from each column only when the template reads it."""

    def __init__(self, cols: _Cols, rows: np.ndarray) -> None:
        self._cols, self._rows = cols, rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name][self._rows]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


_Template = Callable[[int, _Cols], tuple[np.ndarray, np.ndarray]]
"""Renders ``(msg, context)`` matrices for ``n`` rows from per-row random columns."""


def _t_http(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, c["method"], " ", c["path"], " ", c["status"], " in ", c["ms"], "ms")
    ctx = _cat(
        n,
        '{"request_id":"',
        c["rid"],
        '","http":{"method":"',
        c["method"],
        '","path":"',
        c["path"],
        '","status":',
        c["status"],
        ',"latency_ms":',
        c["ms"],
        '},"user":{"id":',
        c["uid"],
        ',"roles":',
        c["roles"],
        "}}",
    )
    return msg, ctx


def _t_batch(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, "processed batch of ", c["count"], ' events from \\"', c["topic"], '\\"')
    ctx = _cat(
        n,
        '{"batch":{"id":',
        c["oid"],
        ',"sizes":[',
        c["a"],
        ",",
        c["b"],
        ",",
        c["d"],
        '],"partitions":[0,1,2]},"ok":true}',
    )
    return msg, ctx


def _t_login(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, "user ", c["uid"], " logged in via ", c["provider"])
    ctx = _cat(
        n,
        '{"user":{"id":',
        c["uid"],
        ',"roles":',
        c["roles"],
        '},"ip":"10.',
        c["o1"],
        ".",
        c["o2"],
        ".",
        c["o3"],
        '","mfa":',
        c["flag"],
        "}",
    )
    return msg, ctx


def _t_cache(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, "cache ", c["hitmiss"], " for key order:", c["oid"])
    ctx = _cat(
        n, '{"cache":{"name":"orders","hit":', c["flag"], ',"ttl_s":', c["a"], '},"tags":["redis","', c["region"], '"]}'
    )
    return msg, ctx


def _t_sql(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(
        n, "executing query: SELECT id, total FROM orders WHERE user_id = ", c["uid"], " AND note <> '\\t' LIMIT 50"
    )
    ctx = _cat(
        n,
        '{"db":{"host":"pg-',
        c["shard"],
        '","rows":',
        c["b"],
        ',"elapsed_ms":',
        c["ms"],
        '},"params":["',
        c["uid"],
        '","open"]}',
    )
    return msg, ctx


def _t_retry(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, 'retrying request to \\"payments\\" (attempt ', c["attempt"], "/5)")
    ctx = _cat(
        n, '{"request_id":"', c["rid"], '","retry":{"attempt":', c["attempt"], ',"max":5,"backoff_ms":[100,200,400]}}'
    )
    return msg, ctx


def _t_slow(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, "slow query took ", c["ms"], "ms on C:\\\\data\\\\pg\\\\orders")
    ctx = _cat(n, '{"db":{"host":"pg-', c["shard"], '","rows":', c["b"], ',"elapsed_ms":', c["ms"], "}}")
    return msg, ctx


def _t_exception(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(
        n,
        'unhandled exception in checkout:\\nTraceback (most recent call last):\\n  File \\"/app/cart.py\\", line ',
        c["line"],
        ", in add\\nKeyError: 'sku'",
    )
    ctx = _cat(
        n,
        '{"request_id":"',
        c["rid"],
        '","error":{"type":"KeyError","frames":[{"file":"/app/cart.py","line":',
        c["line"],
        '},{"file":"/app/api.py","line":118}]}}',
    )
    return msg, ctx


def _t_unicode(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(
        n, "échec de connexion à la base \\u00abpaiements\\u00bb (tentative ", c["attempt"], ") \\u2014 délai dépassé"
    )
    ctx = _cat(
        n,
        '{"error":{"type":"ConnectionError","frames":[{"file":"/app/db.py","line":',
        c["line"],
        '}]},"db":{"host":"pg-',
        c["shard"],
        '","rows":0,"elapsed_ms":',
        c["ms"],
        "}}",
    )
    return msg, ctx


def _t_oom(n: int, c: _Cols) -> tuple[np.ndarray, np.ndarray]:
    msg = _cat(n, "out of memory: killed process ", c["pid"], ' (\\"java\\")')
    ctx = _cat(n, '{"pid":', c["pid"], ',"rss_bytes":', c["big"], ',"tags":["oom","', c["region"], '"]}')
    return msg, ctx


#: (template, level index, weight)
_LOG_TEMPLATES: tuple[tuple[_Template, int, float], ...] = (
    (_t_http, 1, 45),
    (_t_batch, 1, 10),
    (_t_login, 1, 8),
    (_t_cache, 0, 12),
    (_t_sql, 0, 8),
    (_t_retry, 2, 6),
    (_t_slow, 2, 5),
    (_t_exception, 3, 3),
    (_t_unicode, 3, 2.5),
    (_t_oom, 4, 0.5),
)


def _logs_pools(rng: np.random.Generator) -> dict:
    """Static lookup tables (no randomness needed: fleets and vocabularies are fixed)."""
    del rng
    return {
        "service": _pool([name for name, _, _, _ in _SERVICES]),
        "host": _pool(
            [f"{name}-{k:02d}.prod.internal" for name, _, _, _ in _SERVICES for k in range(1, _HOSTS_PER_SERVICE + 1)]
        ),
        "level": _pool(_LEVELS),
        "method": _pool(_METHODS),
        "path": _pool(_API_PATHS),
        "status": _pool(_STATUSES),
        "roles": _pool(_ROLES),
        "topic": _pool(_TOPICS),
        "provider": _pool(_PROVIDERS),
        "region": _pool(_REGIONS),
        "flag": _pool(("true", "false")),
        "hitmiss": _pool(("hit", "miss")),
    }


def _logs_columns(rng: np.random.Generator, pools: dict, n: int) -> _Cols:
    """Per-row random values every template may use (each template reads a subset)."""
    flag = (rng.random(n) >= 0.7).astype(np.intp)  # 0 -> true / hit
    return {
        "rid": _hex(rng, n),
        "uid": _digits(1 + np.exp(rng.normal(10.0, 2.0, size=n)).astype(np.int64)),
        "oid": _digits(rng.integers(10**6, 10**10, size=n)),
        "ms": _fixed(np.maximum(1, np.exp(rng.normal(3.0, 1.2, size=n)) * 1000).astype(np.int64), 3),
        "status": pools["status"][_pick(rng, n, _STATUS_WEIGHTS)],
        "method": pools["method"][rng.integers(0, len(_METHODS), size=n)],
        "path": pools["path"][rng.integers(0, len(_API_PATHS), size=n)],
        "roles": pools["roles"][_pick(rng, n, _ROLE_WEIGHTS)],
        "topic": pools["topic"][rng.integers(0, len(_TOPICS), size=n)],
        "provider": pools["provider"][rng.integers(0, len(_PROVIDERS), size=n)],
        "region": pools["region"][rng.integers(0, len(_REGIONS), size=n)],
        "flag": pools["flag"][flag],
        "hitmiss": pools["hitmiss"][flag],
        "a": _digits(rng.integers(1, 5000, size=n)),
        "b": _digits(rng.integers(0, 5000, size=n)),
        "d": _digits(rng.integers(0, 5000, size=n)),
        "count": _digits(rng.integers(3, 15000, size=n)),
        "o1": _digits(rng.integers(0, 256, size=n)),
        "o2": _digits(rng.integers(0, 256, size=n)),
        "o3": _digits(rng.integers(1, 255, size=n)),
        "shard": _digits(rng.integers(0, 3, size=n)),
        "attempt": _digits(rng.integers(1, 6, size=n)),
        "line": _digits(rng.integers(10, 900, size=n)),
        "pid": _digits(rng.integers(100, 4_000_000, size=n)),
        "big": _digits(rng.integers(2**30, 2**36, size=n)),
    }


def _zpad(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as zero-padded decimal ASCII of exactly ``width`` digits."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(values, dtype=np.int64)[:, None] // powers) % 10 + 48).astype(np.uint8)


def _rfc3339(ts_us: np.ndarray, frac_digits: int, offset_hours: int = 0) -> list[Part]:
    """RFC 3339 local date-time parts (no zone suffix) for epoch microseconds.

    Dates are formatted once per distinct day and the clock is built with integer arithmetic,
    which is far cheaper than ``np.datetime_as_string`` per row.
    """
    local = ts_us + offset_hours * 3_600_000_000
    days, clock = np.divmod(local, 86_400_000_000)
    uniq, inverse = np.unique(days, return_inverse=True)
    dates = _pool([f"{np.datetime64(int(d), 'D')}T" for d in uniq.tolist()])[inverse]
    secs, micros = np.divmod(clock, 1_000_000)
    parts: list[Part] = [dates, _zpad(secs // 3600, 2), ":", _zpad(secs // 60 % 60, 2), ":", _zpad(secs % 60, 2)]
    if frac_digits:
        parts += [".", _zpad(micros // 10 ** (6 - frac_digits), frac_digits)]
    return parts


def _logs_ts(rng: np.random.Generator, idx: np.ndarray, style: np.ndarray) -> np.ndarray:
    """RFC 3339 timestamps in the style of each row's producer (see ``_SERVICES``)."""
    n = len(idx)
    ts_us = _BASE_US + idx * 850 + rng.integers(0, 2000, size=n)
    return _choose(
        style,
        [
            _cat(n, *_rfc3339(ts_us, 6), "Z"),
            _cat(n, *_rfc3339(ts_us, 3), "Z"),
            _cat(n, *_rfc3339(ts_us, 6), "+00:00"),
            _cat(n, *_rfc3339(ts_us, 0, 1), "+01:00"),
        ],
    )


def _logs_chunk(rng: np.random.Generator, pools: dict, start: int, n: int, seed: int) -> np.ndarray:
    """Render log messages for global row indices ``start .. start+n-1``."""
    del seed
    idx = np.arange(start, start + n, dtype=np.int64)
    svc = _pick(rng, n, [w for _, w, _, _ in _SERVICES])
    ts = _logs_ts(rng, idx, np.array([s for _, _, s, _ in _SERVICES])[svc])
    host = pools["host"][svc * _HOSTS_PER_SERVICE + rng.integers(0, _HOSTS_PER_SERVICE, n)]
    tpl = _pick(rng, n, [w for _, _, w in _LOG_TEMPLATES])
    level = pools["level"][np.array([lv for _, lv, _ in _LOG_TEMPLATES])[tpl]]
    trace = _optional(rng.random(n) < 0.4, _cat(n, ',"trace_id":"', _hex(rng, n), _hex(rng, n), '"'))
    cols = _logs_columns(rng, pools, n)
    msgs, ctxs = [], []
    for k, (template, _, _) in enumerate(_LOG_TEMPLATES):
        rows = np.flatnonzero(tpl == k)
        if rows.size:
            msg, ctx = template(rows.size, _RowSubset(cols, rows))
            msgs.append((rows, msg))
            ctxs.append((rows, ctx))
    msg, ctx, service = _scatter(n, msgs), _scatter(n, ctxs), pools["service"][svc]
    legacy = np.array([o for _, _, _, o in _SERVICES])[svc] == 1
    modern = ~legacy

    def layout(rows: np.ndarray, legacy_order: bool) -> np.ndarray:
        m = int(rows.sum())
        if legacy_order:
            return _cat(
                m,
                '{"level":"',
                level[rows],
                '","ts":"',
                ts[rows],
                '","msg":"',
                msg[rows],
                '","context":',
                ctx[rows],
                ',"service":"',
                service[rows],
                '","host":"',
                host[rows],
                '"',
                trace[rows],
                "}\n",
            )
        return _cat(
            m,
            '{"ts":"',
            ts[rows],
            '","level":"',
            level[rows],
            '","service":"',
            service[rows],
            '","host":"',
            host[rows],
            '","msg":"',
            msg[rows],
            '"',
            trace[rows],
            ',"context":',
            ctx[rows],
            "}\n",
        )

    return _scatter(n, [(modern, layout(modern, False)), (legacy, layout(legacy, True))])


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

_METRIC_HOSTS = 500
_METRIC_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-south-1")
_GIB = 1 << 30


def _metrics_pools(rng: np.random.Generator) -> dict:
    """Per-seed fleet (host names, region, memory size, JVM / sensor presence) and the pools
    of full-precision float literals for GC pauses and error rates."""
    region = rng.integers(0, len(_METRIC_REGIONS), size=_METRIC_HOSTS)
    err = np.exp(rng.normal(-9.5, 1.5, size=_FLOAT_POOL))  # many < 1e-4: exponent literals
    return {
        "hosts": _pool([f"node-{k:04d}.{_METRIC_REGIONS[r]}.example.net" for k, r in enumerate(region.tolist())]),
        "regions": _pool(_METRIC_REGIONS),
        "region": region,
        "mem_total": np.array([8, 16, 32, 64, 128])[rng.integers(0, 5, _METRIC_HOSTS)] * _GIB,
        "jvm": rng.random(_METRIC_HOSTS) < 0.8,
        "sensor": rng.random(_METRIC_HOSTS) < 0.9,
        "gc": _float_pool(np.exp(rng.normal(1.0, 1.0, size=_FLOAT_POOL))),
        "err": _float_pool(np.where(rng.random(_FLOAT_POOL) < 0.1, 0.0, err)),
    }


def _metrics_chunk(rng: np.random.Generator, pools: dict, start: int, n: int, seed: int) -> np.ndarray:
    """Render metrics samples for global row indices ``start .. start+n-1``."""
    del seed
    idx = np.arange(start, start + n, dtype=np.int64)
    ts = _BASE_US + idx * 20_000 + rng.integers(0, 1000, size=n)
    host = (idx * 7919 + rng.integers(0, 3, size=n)) % _METRIC_HOSTS
    # CPU shares and load in hundredths: _fixed() keeps them short decimal literals.
    user = (rng.beta(2, 5, size=n) * 7000).astype(np.int64)
    system = (rng.beta(2, 8, size=n) * 2000).astype(np.int64)
    iowait = (rng.beta(1, 20, size=n) * 1000).astype(np.int64)
    idle = 10000 - user - system - iowait
    load1 = rng.gamma(2.0, 80.0, size=n).astype(np.int64)
    load5 = (load1 * rng.uniform(0.8, 1.1, size=n)).astype(np.int64)
    load15 = (load5 * rng.uniform(0.85, 1.05, size=n)).astype(np.int64)
    total = pools["mem_total"][host]
    used = (total * rng.uniform(0.2, 0.95, size=n)).astype(np.int64)
    rss = (used * rng.uniform(0.3, 0.9, size=n)).astype(np.int64)
    cache = ((total - used) * rng.uniform(0.1, 0.9, size=n)).astype(np.int64)
    swap = np.where(rng.random(n) < 0.85, 0, rng.integers(1, 4 * _GIB, size=n))
    swap_null = (rng.random(n) < 0.05).astype(np.intp)  # hosts without swap report null
    uptime = rng.integers(60, 90 * 86400, size=n)
    counter = [
        _digits(uptime * rng.uniform(lo, hi, size=n)) for lo, hi in ((1e4, 1e6), (1e4, 2e6), (1e5, 1e7), (1e5, 1e7))
    ]
    gc = _choose((~pools["jvm"][host]).astype(np.intp), [pools["gc"][rng.integers(0, _FLOAT_POOL, size=n)], "null"])
    temp = np.maximum(0, rng.normal(550, 80, size=n)).astype(np.int64)
    temp_c = _choose((~pools["sensor"][host]).astype(np.intp), [_fixed(temp, 1), "null"])
    return _cat(
        n,
        '{"ts":',
        _digits(ts),
        ',"host":"',
        pools["hosts"][host],
        '","region":"',
        pools["regions"][pools["region"][host]],
        '","cpu_user":',
        _fixed(user, 2),
        ',"cpu_system":',
        _fixed(system, 2),
        ',"cpu_iowait":',
        _fixed(iowait, 2),
        ',"cpu_idle":',
        _fixed(idle, 2),
        ',"load1":',
        _fixed(load1, 2),
        ',"load5":',
        _fixed(load5, 2),
        ',"load15":',
        _fixed(load15, 2),
        ',"mem_total":',
        _digits(total),
        ',"mem_used":',
        _digits(used),
        ',"mem_rss":',
        _digits(rss),
        ',"mem_cache":',
        _digits(cache),
        ',"swap_used":',
        _choose(swap_null, [_digits(swap), "null"]),
        ',"disk_read_bytes":',
        counter[0],
        ',"disk_write_bytes":',
        counter[1],
        ',"net_rx_bytes":',
        counter[2],
        ',"net_tx_bytes":',
        counter[3],
        ',"open_fds":',
        _digits(rng.integers(20, 65000, size=n)),
        ',"threads":',
        _digits(rng.integers(4, 4000, size=n)),
        ',"gc_pause_ms":',
        gc,
        ',"error_rate":',
        pools["err"][rng.integers(0, _FLOAT_POOL, size=n)],
        ',"temp_c":',
        temp_c,
        ',"uptime_s":',
        _digits(uptime),
        "}\n",
    )


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------

_ChunkFn = Callable[[np.random.Generator, dict, int, int, int], np.ndarray]
_PoolFn = Callable[[np.random.Generator], dict]

_KINDS: dict[str, tuple[int, _PoolFn, _ChunkFn]] = {
    "clickstream": (1, _clickstream_pools, _clickstream_chunk),
    "logs": (2, _logs_pools, _logs_chunk),
    "metrics": (3, _metrics_pools, _metrics_chunk),
}

#: Corpus names accepted by :func:`generate` (each matches ``configs/examples/<name>.yaml``).
KINDS: tuple[str, ...] = tuple(_KINDS)


def generate(kind: str, n: int, seed: int = 0) -> bytes:
    """Return ``n`` newline-terminated NDJSON messages of corpus ``kind``, deterministic for
    ``seed``.

    The result is plain ``bytes`` so it can be handed unchanged to every parser under test.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown corpus {kind!r}; expected one of {', '.join(KINDS)}")
    if n < 0 or seed < 0:
        raise ValueError("n and seed must be non-negative")
    kind_id, make_pools, make_chunk = _KINDS[kind]
    pools = make_pools(np.random.default_rng([seed, kind_id, 0xF00D]))
    parts: list[bytes] = []
    for chunk_no, start in enumerate(range(0, n, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, kind_id, chunk_no])
        # Always draw a full chunk (then cut it) so a shorter corpus is a prefix of a longer one.
        rows = make_chunk(rng, pools, start, CHUNK_ROWS, seed)
        parts.append(_text(rows[: n - start]))
    return b"".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: write a corpus to a file (or stdout) and report its size on stderr."""
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description="Write a seeded NDJSON benchmark corpus.")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("n", type=lambda s: int(float(s)), help="number of messages (1e6 is fine)")
    ap.add_argument("-o", "--output", type=Path, help="output file (default: stdout)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = generate(args.kind, args.n, args.seed)
    elapsed = time.perf_counter() - t0
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        args.output.write_bytes(data)
    per_msg = len(data) / args.n if args.n else 0.0
    print(
        f"{args.kind}: {args.n} messages, {len(data)} bytes ({per_msg:.1f} B/msg), generated in {elapsed:.2f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
