"""Per-connection reassembly: turn arbitrary reads into appends of whole messages.

A TCP read or an HTTP body chunk ends anywhere, usually mid-message. A framer hands the
whole messages of each read to its sink (a producer's ``Outbox``) as one region, in at most
one copy, and keeps the unfinished last message back until its rest arrives. Framing is
synchronous, so a read is framed in the callback that delivered it. It finds message
boundaries with one vectorised newline mask or, for length-prefixed frames, a frame walk
(one serial kernel call per read): there is no per-message Python work.

A message longer than ``max_message_bytes`` is never buffered whole: once a prefix longer
than the limit has arrived, that prefix goes to the sink as a message the kernels reject
as ``too_large``, so the dead letter shows how it began, and the rest is skipped. How
many input bytes were skipped goes with the framer's next append (its ``gap``), so that
dead-letter offsets and byte counts still count the input, not just what was kept; when no
message follows them (the producer ended or broke while or just after skipping), they go on
as an append of no messages. Bytes a framer adds (the LF that ends an unterminated last
line, the header of a cut-off frame) are taken back the same way, as a negative gap.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import numpy as np

from engine.arena import CHUNK_BYTES, FRAMES, LINES, TRUNCATED_FRAME
from engine.batcher import StreamClosed
from kernels.framing import scan_length_prefixed, scan_lines

__all__ = ["CHUNK_BYTES", "FrameFramer", "LineFramer", "PartialBudget", "warm_framing"]


def _readonly(data: bytes | memoryview) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    buf.flags.writeable = False  # one kernel signature whatever the caller passed
    return buf


def warm_framing() -> None:
    """Load (or compile) the kernels framers call, before any connection needs them."""
    buf = _readonly(b"\x00\x00\x00\x02{}\n")
    scan_length_prefixed(buf, 0, len(buf), 16)
    scan_lines(buf, 0, len(buf), False)


class PartialBudget:
    """The bytes of unfinished messages that all connections of one listener may hold at
    once (``limits.max_partial_bytes``). Each connection keeps at most one partial message
    (up to ``max_message_bytes``), but ten thousand connections, each a megabyte into a
    message, would hold ten gigabytes: the connection whose partial takes the total past
    the budget is closed instead (its partial discarded and counted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def update(self, before: int, after: int) -> bool:
        """A connection's partial went from ``before`` to ``after`` bytes; False if the
        listener is now over its budget (the caller closes that connection)."""
        self.held += after - before
        return self.held <= self.limit or after <= before


class MessageSink(Protocol):
    def put(self, parts: tuple, kind: int, count: int, gap: int = 0) -> None:
        """Take ``count`` whole messages of framing ``kind``: the concatenation of ``parts``,
        which may view a buffer the framer's caller reuses once ``feed`` returns. They came
        ``gap`` skipped input bytes after what the last call took."""


class LineFramer:
    """Newline-delimited messages. An unterminated last line at a clean end is a message."""

    def __init__(self, sink: MessageSink, max_message_bytes: int) -> None:
        self.sink = sink
        self._max = max_message_bytes
        self._carry = bytearray()
        self._skipping = False  # inside an oversize line: drop bytes up to its LF
        self._gap = 0  # input bytes skipped since the last append
        self.handed = 0  # messages handed to the sink so far

    def _put(self, parts: tuple, count: int) -> None:
        self.sink.put(parts, LINES, count, self._gap)
        self._gap = 0
        self.handed += count

    @property
    def pending_bytes(self) -> int:
        return len(self._carry)

    @property
    def in_message(self) -> bool:
        """Whether a message has begun and not ended (what a read deadline bounds)."""
        return bool(self._carry) or self._skipping

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for lo in range(0, len(view), CHUNK_BYTES):
            self._feed(view[lo : lo + CHUNK_BYTES])

    def _feed(self, chunk: memoryview) -> None:
        first, last, lines = scan_lines(_readonly(chunk), 0, len(chunk), self._skipping)
        if first < 0:
            self._gap += len(chunk)
            return  # still inside the oversize line
        if self._skipping:
            self._gap += first - 1  # to its LF, which the LF appended after its prefix stands for
            self._skipping = False
        if not lines:
            self._carry += chunk[first:]
        else:
            self._put((self._carry, chunk[first : last + 1]), lines)
            self._carry.clear()
            self._carry += chunk[last + 1 :]
        keep = self._max + 2
        if len(self._carry) >= keep:
            # max + 2 bytes without an LF: even after a CR is trimmed the line is too large,
            # so its first max + 2 bytes and an LF go on as a line the kernels reject as
            # too_large (a line that long is a message even when blank), and its dead
            # letter keeps the first max + 1 bytes, as it does of any too_large message
            skipped = len(self._carry) - keep
            self._put((self._carry[:keep], b"\n"), 1)
            self._gap = skipped
            self._carry = bytearray()
            self._skipping = True

    def finish(self) -> None:
        """The producer is done: its unterminated last line, if any, is a message."""
        if self._carry and not self._skipping:
            self._put((self._carry, b"\n"), 1)
            self._gap = -1  # that LF is not input: counts resume one byte back
        self._carry.clear()
        self._hand_on_gap()

    def discard(self) -> int:
        """The connection broke: drop the partial message; returns the bytes dropped."""
        n = len(self._carry)
        self._carry = bytearray()  # a fresh one: a failed append may still view the old
        with contextlib.suppress(StreamClosed):  # closing: nothing is counted any more
            self._hand_on_gap()
        return n

    def _hand_on_gap(self) -> None:
        """The input ended: skipped bytes that no message follows go on by themselves."""
        if self._skipping:
            self._gap -= 1  # the LF after the kept prefix stood for one that never came
            self._skipping = False
        if self._gap:
            self._put((), 0)


class FrameFramer:
    """u32 big-endian length-prefixed messages. A frame cut short at a clean end is passed
    on (header included) as one message, which is rejected as ``truncated``."""

    def __init__(self, sink: MessageSink, max_message_bytes: int) -> None:
        self.sink = sink
        self._max = max_message_bytes
        self._carry = bytearray()  # the frame being completed, header first
        self._skip = 0  # body bytes of an oversize frame still to drop
        self._gap = 0  # input bytes skipped since the last append
        self.handed = 0  # messages handed to the sink so far

    def _put(self, parts: tuple, count: int, kind: int = FRAMES) -> None:
        self.sink.put(parts, kind, count, self._gap)
        self._gap = 0
        self.handed += count

    @property
    def pending_bytes(self) -> int:
        return len(self._carry)

    @property
    def in_message(self) -> bool:
        """Whether a frame has begun and not ended (what a read deadline bounds)."""
        return bool(self._carry) or self._skip > 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for lo in range(0, len(view), CHUNK_BYTES):
            self._feed(view[lo : lo + CHUNK_BYTES])

    def _feed(self, view: memoryview) -> None:
        pos, n = 0, len(view)
        buf = None
        while pos < n:
            if self._skip:
                k = min(self._skip, n - pos)
                self._skip -= k
                self._gap += k  # counted as they arrive: a producer may break off first
                pos += k
            elif self._carry:
                pos = self._complete(view, pos)
            else:
                if buf is None:
                    buf = _readonly(view)
                stop, count = scan_length_prefixed(buf, pos, n, self._max)
                if count:
                    self._put((view[pos:stop],), count)
                pos = stop
                if pos < n:
                    pos = self._complete(view, pos)

    def _complete(self, view: memoryview, pos: int) -> int:
        """Move the bytes of the current frame from ``view[pos:]`` into the carry; once it
        is whole (or, when oversize, once its kept prefix is), hand it on."""
        carry = self._carry
        if len(carry) < 4:
            take = min(4 - len(carry), len(view) - pos)
            carry += view[pos : pos + take]
            pos += take
            if len(carry) < 4:
                return pos
        length = int.from_bytes(carry[:4], "big")
        keep = min(length, self._max + 1)  # an oversize frame keeps max + 1 bytes
        take = min(4 + keep - len(carry), len(view) - pos)
        carry += view[pos : pos + take]
        pos += take
        if len(carry) == 4 + keep:
            carry[:4] = keep.to_bytes(4, "big")
            self._carry = bytearray()
            self._skip = length - keep
            self._put((carry,), 1)
        return pos

    def finish(self) -> None:
        if self._carry:
            # a truncated frame: re-framed whole (its own header becomes its first bytes).
            # The header added is not input: the message's offset and every count after it
            # are taken four bytes back, from the region's start
            self._gap -= 4
            self._put((len(self._carry).to_bytes(4, "big"), self._carry), 1, TRUNCATED_FRAME)
        self._carry.clear()
        self._skip = 0
        self._hand_on_gap()

    def discard(self) -> int:
        n = len(self._carry)
        self._carry = bytearray()
        with contextlib.suppress(StreamClosed):  # closing: nothing is counted any more
            self._hand_on_gap()
        return n

    def _hand_on_gap(self) -> None:
        """The input ended: skipped bytes that no message follows go on by themselves."""
        if self._gap:
            self._put((), 0)
