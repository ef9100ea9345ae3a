"""Framers: whole messages out of arbitrary reads, one region per read, oversize cut short."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.arena import FRAMES, LINES, TRUNCATED_FRAME
from engine.framer import CHUNK_BYTES, FrameFramer, LineFramer
from kernels.framing import frame_length_prefixed, frame_lines, scan_length_prefixed, scan_lines


class Sink:
    """Records each append as the bytes it would copy into an arena."""

    def __init__(self) -> None:
        self.appends: list[tuple[bytes, int, int]] = []
        self.gaps: list[int] = []  # each append's gap: input bytes skipped before it

    def put(self, parts, kind, count, gap=0):
        self.appends.append((b"".join(bytes(p) for p in parts), kind, count))
        self.gaps.append(gap)

    def data(self) -> bytes:
        return b"".join(d for d, _, _ in self.appends)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _lines_of(data: bytes) -> list[bytes]:
    buf = np.frombuffer(data, np.uint8)
    starts, ends, _, _ = frame_lines(buf, 0, len(buf), True, 1, 1 << 30)
    return [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _frame_lines_reference(data: bytes, final: bool, max_len: int):
    """frame_lines by the definition: split at LF, trim one CR, drop short blank lines."""
    spans, blank, s = [], 0, 0
    for p, c in enumerate(data):
        if c == 10:
            spans.append((s, p))
            s = p + 1
    consumed = s
    if final:
        if s < len(data):
            spans.append((s, len(data)))
        consumed = len(data)
    kept = []
    for s, e in spans:
        if e > s and data[e - 1] == 13:
            e -= 1
        if e - s <= max_len and all(c in b" \t\r" for c in data[s:e]):
            blank += 1
        else:
            kept.append((s, e))
    return kept, blank, consumed


LINE_BYTES = [b"\n", b"\r", b" ", b"\t", b"{", b"}", b"x", b"\r\n", b"{}"]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from(LINE_BYTES), max_size=80).map(b"".join),
    final=st.booleans(),
    nchunks=st.integers(1, 7),
    max_len=st.integers(0, 6),
    lead=st.integers(0, 3),
)
def test_frame_lines_matches_a_naive_reference(data, final, nchunks, max_len, lead):
    buf = np.frombuffer(b"\n" * lead + data, np.uint8)  # framing a slice of a larger buffer
    starts, ends, blank, consumed = frame_lines(buf, lead, len(buf), final, nchunks, max_len)
    kept, expected_blank, expected_consumed = _frame_lines_reference(data, final, max_len)
    assert list(zip((starts - lead).tolist(), (ends - lead).tolist(), strict=True)) == kept
    assert (blank, consumed - lead) == (expected_blank, expected_consumed)


messages = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")), max_size=30)
cuts = st.lists(st.integers(0, 10_000), max_size=12)


@settings(max_examples=150, deadline=None)
@given(msgs=messages, cut=cuts, terminated=st.booleans())
def test_line_framer_appends_whole_lines_whatever_the_reads(msgs, cut, terminated):
    data = b"\n".join(msgs) + (b"\n" if terminated and msgs else b"")
    sink = Sink()
    framer = LineFramer(sink, max_message_bytes=1000)
    for piece in _splits(data, cut):
        framer.feed(piece)
        # every append but the closing one ends at a line boundary
        assert all(d.endswith(b"\n") for d, _, _ in sink.appends)
    framer.finish()
    assert all(kind == LINES for _, kind, _ in sink.appends)
    assert _lines_of(sink.data()) == _lines_of(data)


def test_line_framer_counts_lines_per_append():
    sink = Sink()
    framer = LineFramer(sink, 100)
    framer.feed(b'{"a":1}\n{"a":2}\n{"a"')
    framer.feed(b":3}\n")
    assert [(d, c) for d, _, c in sink.appends] == [(b'{"a":1}\n{"a":2}\n', 2), (b'{"a":3}\n', 1)]


def test_oversize_line_keeps_a_prefix_and_skips_to_its_end():
    sink = Sink()
    framer = LineFramer(sink, max_message_bytes=16)
    framer.feed(b'{"ok":1}\n{"big":"' + b"x" * 30)
    framer.feed(b"y" * 5000)  # never buffered: the framer is already skipping
    assert framer.pending_bytes == 0
    framer.feed(b'zz"}\n{"ok":2}\n')
    framer.finish()
    first, prefix, last = sink.appends
    assert first == (b'{"ok":1}\n', LINES, 1) and last == (b'{"ok":2}\n', LINES, 1)
    # the first max + 2 bytes as one line: too_large even if a CR were trimmed
    assert prefix == ((b'{"big":"' + b"x" * 30)[:18] + b"\n", LINES, 1)
    # the rest of the big line, but for the LF its prefix got, is the next append's gap
    big_line = b'{"big":"' + b"x" * 30 + b"y" * 5000 + b'zz"}'
    assert sink.gaps == [0, 0, len(big_line) - 18]


@pytest.mark.parametrize("line", [b"abcd\r\r", b" " * 10])
def test_oversize_needs_max_plus_two_bytes_and_survives_blanks(line):
    sink = Sink()
    framer = LineFramer(sink, max_message_bytes=4)
    framer.feed(line[:5])  # max + 1 bytes: "abcd\r" + LF would be a 4-byte line
    assert sink.appends == []
    framer.feed(line[5:])
    framer.finish()
    # the line's end never came: the LF given to its prefix is taken back
    assert sink.appends == [(line[:6] + b"\n", LINES, 1), (b"", LINES, 0)] and sink.gaps == [0, len(line) - 7]


def test_long_input_is_appended_in_bounded_pieces():
    sink = Sink()
    framer = LineFramer(sink, 1000)
    data = b'{"k":"' + b"v" * 90 + b'"}\n'
    framer.feed(data * 10_000)
    assert max(len(d) for d, _, _ in sink.appends) <= CHUNK_BYTES + 1000
    assert sink.data() == data * 10_000 and sum(c for _, _, c in sink.appends) == 10_000


def test_broken_connection_discards_its_partial_message():
    sink = Sink()
    framer = LineFramer(sink, 100)
    framer.feed(b'{"a":1}\n{"a":')
    assert framer.discard() == 5
    framer.finish()
    assert sink.data() == b'{"a":1}\n'


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.sampled_from([b'{"a":1}', b"x" * 40, b"", b" ", b"y" * 17, b"z" * 18]), max_size=12),
    terminated=st.booleans(),
    cut=cuts,
    end=st.sampled_from(["finish", "discard"]),
)
def test_line_framer_accounts_for_every_input_byte(lines, terminated, cut, end):
    """What the arena gets plus the gaps (skipped bytes, and the LF a framer adds taken back)
    plus what a broken connection drops is the input, to the byte: dead-letter offsets and
    byte counts depend on it, also when the input ends inside or right after a skipped line."""
    data = b"\n".join(lines) + (b"\n" if terminated and lines else b"")
    sink = Sink()
    framer = LineFramer(sink, max_message_bytes=16)
    for piece in _splits(data, cut):
        framer.feed(piece)
    dropped = framer.discard() if end == "discard" else framer.finish() or 0
    assert len(sink.data()) + sum(sink.gaps) + dropped == len(data)


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@settings(max_examples=150, deadline=None)
@given(msgs=st.lists(st.binary(max_size=60), max_size=25), cut=cuts)
def test_frame_framer_appends_whole_frames_whatever_the_reads(msgs, cut):
    data = b"".join(_frame(m) for m in msgs)
    sink = Sink()
    framer = FrameFramer(sink, max_message_bytes=1000)
    for piece in _splits(data, cut):
        framer.feed(piece)
    framer.finish()
    assert sink.data() == data
    assert sum(c for _, _, c in sink.appends) == len(msgs)
    assert all(kind == FRAMES for _, kind, _ in sink.appends)


@pytest.mark.parametrize("step", [1, 3, 7, 1 << 20])
def test_oversize_frame_keeps_max_plus_one_bytes_then_resyncs(step):
    big = b"B" * 100
    data = _frame(b"first") + _frame(big) + _frame(b"after")
    sink = Sink()
    framer = FrameFramer(sink, max_message_bytes=10)
    for lo in range(0, len(data), step):
        framer.feed(data[lo : lo + step])
    framer.finish()
    out = np.frombuffer(sink.data(), np.uint8)
    s, e, consumed = frame_length_prefixed(out, 0, len(out))
    assert consumed == len(out)
    assert [bytes(out[a:b]) for a, b in zip(s, e, strict=True)] == [b"first", big[:11], b"after"]
    assert sum(sink.gaps) == len(big) - 11 and sink.gaps[-1] == len(big) - 11  # before "after"


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.sampled_from([b"", b"ok", b"B" * 11, b"C" * 40]), max_size=8),
    keep=st.integers(0, 400),
    cut=cuts,
    end=st.sampled_from(["finish", "discard"]),
)
def test_frame_framer_accounts_for_every_input_byte(bodies, keep, cut, end):
    """As for lines: an oversize frame's skipped body counts as it arrives (a producer may
    break off first), and a cut-off frame's added header is taken back."""
    data = b"".join(_frame(b) for b in bodies)[:keep]
    sink = Sink()
    framer = FrameFramer(sink, max_message_bytes=10)
    for piece in _splits(data, cut):
        framer.feed(piece)
    dropped = framer.discard() if end == "discard" else framer.finish() or 0
    assert len(sink.data()) + sum(sink.gaps) + dropped == len(data)


def test_truncated_frame_at_the_end_is_one_message_with_its_header():
    sink = Sink()
    framer = FrameFramer(sink, 100)
    framer.feed(_frame(b"ok") + b"\x00\x00\x00\x09abc")
    framer.finish()
    out = np.frombuffer(sink.data(), np.uint8)
    s, e, _ = frame_length_prefixed(out, 0, len(out))
    assert [bytes(out[a:b]) for a, b in zip(s, e, strict=True)] == [b"ok", b"\x00\x00\x00\x09abc"]
    assert [kind for _, kind, count in sink.appends if count] == [FRAMES, TRUNCATED_FRAME]  # rejected as such


def test_scan_length_prefixed_matches_a_naive_walk():
    rnd = random.Random(7)
    for _ in range(200):
        bodies = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 30))) for _ in range(rnd.randrange(0, 8))]
        data = b"".join(_frame(b) for b in bodies)
        data = data[: rnd.randrange(0, len(data) + 1)]
        limit = rnd.randrange(0, 32)
        p, n = 0, 0
        while p + 4 <= len(data):
            length = int.from_bytes(data[p : p + 4], "big")
            if length > limit or p + 4 + length > len(data):
                break
            p, n = p + 4 + length, n + 1
        buf = np.frombuffer(data, np.uint8)
        assert scan_length_prefixed(buf, 0, len(data), limit) == (p, n)


def _scan_lines_reference(data: bytes, skip_first: bool) -> tuple[int, int, int]:
    first = 0
    if skip_first:
        nl = data.find(b"\n")
        if nl < 0:
            return -1, -1, 0
        first = nl + 1
    last = data.rfind(b"\n", first)
    return first, last, data.count(b"\n", first)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80).map(lambda b: b.replace(b"a", b"\n")), skip=st.booleans())
def test_scan_lines_matches_a_naive_reference(data, skip):
    buf = np.frombuffer(data, np.uint8)
    assert scan_lines(buf, 0, len(buf), skip) == _scan_lines_reference(data, skip)
