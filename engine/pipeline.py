"""One stream's data path after the batcher: arena -> kernels -> outputs.

Flushed arenas arrive in order. Each is framed and parsed, then, on the loop, the
submissions that asked (HTTP requests, ``Engine.ingest``) get their counts, and the
batches go to the stream's topics. An arena of INLINE_BYTES or more is parsed on a worker
thread while the event loop keeps filling the next one, and so is any arena flushed
because it was full: its stream is sending as fast as arenas fill, and reading on while
the worker parses is worth more. A smaller arena flushed by linger_ms, the batch of a
steady stream, is parsed on the loop's own thread: handing it to a worker and back cost
more than its parse (at 50k msgs/s, 1.0 ms of end-to-end latency at p99, and the worker's
caches are cold every time), and the loop is held for about a millisecond. Reads held
up meanwhile date their window from the start of the hold, so linger_ms still bounds how
long a message waits; and when such batches would take more than a tenth of the loop's
time (a short linger_ms at a high rate) they go to a worker too (``LoopHolds``).

The arena returns to its pool as soon as it is parsed: no output batch points into it
(values are copied out by the gather kernels).

Durability: when the stream has a segment log, its batches and dead letters are appended
(on a worker thread, outside the kernel threads) before any consumer sees them, and a
submission's receipt is settled only once they are as durable as the stream's
``durability`` says: ``batch`` fsyncs every arena's output before settling, an interval
fsyncs on a timer and settles everything that fsync covered, ``none`` settles at once.

Threads and kernels: every stream shares the process's kernel threads (``KernelThreads``).
A batch alone in the kernels uses one thread per MiB of input, up to all of them; batches
that queue behind others split the threads and run side by side. Up to PIPELINE_DEPTH
arenas of one stream are past the batcher at once: parsed side by side, then published
strictly in order, each numbered from the counts of the ones before it (so a batch is
parsed with its dead letters numbered from 0, and renumbered when its turn comes). See
README "Threads".
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import anyio
import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.arena import LINES, TRUNCATED_FRAME, Arena, ArenaPool
from engine.arrow import DEAD_LETTER_SCHEMA
from engine.batcher import LOOP_HOLDS
from engine.config import PIPELINE_DEPTH
from engine.kernel_threads import PARALLEL_BYTES, KernelThreads
from engine.outputs.hub import Topic
from engine.outputs.segments import LogError, seq_of
from engine.parser import Parser, ParseResult, Tally, as_uint8
from kernels.errors import ERROR_NAMES, INTERNAL_ERROR
from kernels.framing import frame_length_prefixed, frame_lines

log = logging.getLogger("quiver.pipeline")

#: Arenas smaller than this are parsed on the event loop's own thread, not a worker's
#: (see the module doc); always less than 2 * PARALLEL_BYTES, so on one kernel thread.
INLINE_BYTES = PARALLEL_BYTES
#: Longest wait between retries of a segment write the disk refused.
STORAGE_RETRY_MAX_S = 2.0
#: Batches written but not yet fsynced are kept to be written again after a failed fsync;
#: past this many bytes of them the logs are fsynced, whatever the durability.
UNSYNCED_MAX_BYTES = 64 << 20


@dataclass
class StreamStats(Tally):
    """Running counts of one stream; ``received == accepted + rejected`` at every batch."""

    bytes: int = 0
    batches: int = 0
    discarded_partials: int = 0  # partial messages of broken connections (never messages)
    dropped: int = 0  # whole messages read that a shutdown out of time never parsed

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "blank": self.blank,
            "bytes": self.bytes,
            "batches": self.batches,
            "discarded_partials": self.discarded_partials,
            "dropped": self.dropped,
            "errors": dict(self.errors),
        }


class LatencyHistogram:
    """Cumulative-bucket histogram of seconds, the shape Prometheus exposes; one
    ``observe`` per arena, read at scrape time."""

    BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, int]]:
        """(upper bound, cumulative count) pairs, ending with +Inf."""
        out, total = [], 0
        for bound, n in zip((*map(str, self.BOUNDS), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass
class ArenaResult:
    """What the kernels made of one arena."""

    results: list[ParseResult]
    records: np.ndarray  # arena position where each message's record (frame header) begins
    rejected_index: np.ndarray  # arena-local index of every rejected message, ascending
    rejects: pa.Table  # numbered from the arena's start (``_numbered`` renumbers the batches)
    nbytes: int


class Pipeline:
    """Parses one stream's flushed arenas in order and publishes their batches."""

    def __init__(
        self,
        parser: Parser,
        pool: ArenaPool,
        batches: Topic,
        rejects: Topic,
        kernels: KernelThreads,
        durability: str | float = "none",
    ) -> None:
        self.parser = parser
        self.pool = pool
        self.batches = batches
        self.rejects = rejects
        self.stats = StreamStats()
        self._kernels = kernels
        self._queued: Callable[[], int] = lambda: 0  # flushed arenas not yet taken up (run)
        self._max_messages = parser.stream.batch.max_messages
        self.done = anyio.Event()
        self.widest = 1  # most kernel threads any batch has used
        self.internal_errors = 0  # arenas whose processing failed (their messages: dead letters)
        self.storage_errors = 0  # failed segment writes and fsyncs (each retried)
        self.latency = LatencyHistogram()  # flush -> published (parse, store, fan out), per arena
        self._abandoned = False
        # "none" | "batch" | seconds between fsyncs; only used when the topics have logs
        self.durability = durability
        self._durable = batches.log is not None and rejects.log is not None
        self._unsynced: list[Callable[..., None]] = []  # settlements waiting for an fsync
        # per topic, the batches written since the last good fsync, in seq order: a failed
        # fsync rewinds the log to that fsync, and these are written again
        self._kept: dict[str, list[pa.RecordBatch]] = {batches.name: [], rejects.name: []}
        self._kept_bytes = 0
        self._sync_lock = anyio.Lock()
        self._disk = anyio.CapacityLimiter(1)  # segment writes and fsyncs, never behind other work

    async def run(self, flushed: anyio.abc.ObjectReceiveStream[Arena]) -> None:
        """Process arenas until the batcher closes the queue, then close the topics."""
        try:
            async with anyio.create_task_group() as tg:
                if self._durable and isinstance(self.durability, float):
                    tg.start_soon(self._sync_every, self.durability)
                depth = anyio.Semaphore(min(PIPELINE_DEPTH, self.pool.count))
                self._queued = lambda: flushed.statistics().current_buffer_used
                async with flushed, anyio.create_task_group() as arenas:
                    turn = None  # set once the arena before has been published
                    async for arena in flushed:
                        await depth.acquire()
                        done = anyio.Event()
                        arenas.start_soon(self._process, arena, turn, done, depth)
                        turn = done
                await self._sync_now()  # what the last interval did not cover
                tg.cancel_scope.cancel()
        finally:
            self.batches.close()
            self.rejects.close()
            self.done.set()

    async def _sync_every(self, seconds: float) -> None:
        while True:
            await anyio.sleep(seconds)
            await self._sync_now()

    async def _sync_now(self) -> None:
        """fsync both logs, then settle the receipts whose batches that made durable."""
        if not self._durable:
            return
        async with self._sync_lock:  # the timer and the final sync never split a round
            with anyio.CancelScope(shield=True):  # taken receipts are always settled
                waiting, self._unsynced = self._unsynced, []
                stored = not self._abandoned and await self._on_disk(self._sync_logs)
                for settle in waiting:
                    settle(stored=stored)

    def _write_missing(self) -> None:
        """Worker thread: append every kept batch its log lacks, in seq order: the new ones,
        and any that a failed write or fsync took back (the log rewinds to its last good
        fsync and lowers ``next_seq``; see SegmentLog._abandon_active)."""
        for topic in (self.batches, self.rejects):
            assert topic.log is not None
            todo = [b for b in list(self._kept[topic.name]) if seq_of(b) >= topic.log.next_seq]
            if todo:
                topic.log.append(todo)

    def _store(self) -> None:
        """Worker thread: write this arena's batches (and whatever a failure took back);
        fsync under ``batch`` durability, or whenever the kept batches grow too large."""
        self._write_missing()
        if self.durability == "batch" or self._kept_bytes >= UNSYNCED_MAX_BYTES:
            self._sync_logs()

    def _sync_logs(self) -> None:
        """Worker thread: fsync both logs; then the batches the fsync covered are safe and
        no longer kept."""
        self._write_missing()
        for topic in (self.batches, self.rejects):
            assert topic.log is not None
            topic.log.sync()
        for topic in (self.batches, self.rejects):
            kept, durable = self._kept[topic.name], topic.log.next_seq
            k = 0
            while k < len(kept) and seq_of(kept[k]) < durable:
                k += 1
            del kept[:k]  # in place: the loop may be appending to it meanwhile
        self._kept_bytes = sum(b.nbytes for kept in self._kept.values() for b in list(kept))

    async def _on_disk(self, work: Callable[[], None]) -> bool:
        """Run segment writes or fsyncs on the disk thread, retrying while the disk refuses
        (full, failing). Meanwhile this stream stalls: its arenas fill, TCP producers are
        held back and POSTs get 503, but nothing is lost and nothing unstored is published.
        False when the work was given up: by ``abandon_storage`` (a shutdown that ran out
        of time), or because the log itself refuses it (a bug: logged, never retried)."""
        delay, failures = 0.05, 0
        while True:
            try:
                await anyio.to_thread.run_sync(work, limiter=self._disk)
            except LogError as exc:
                self.storage_errors += 1
                log.error("storage_refused stream=%s error=%s action=not_stored", self.parser.stream.name, exc)
                self._forget_kept()
                return False
            except (OSError, pa.ArrowException) as exc:
                failures += 1
                self.storage_errors += 1
                if self._abandoned:
                    log.error("storage_abandoned stream=%s error=%r", self.parser.stream.name, exc)
                    self._forget_kept()
                    return False
                if failures == 1:
                    log.error("storage_failed stream=%s error=%r action=retrying", self.parser.stream.name, exc)
                await anyio.sleep(delay)
                delay = min(2 * delay, STORAGE_RETRY_MAX_S)
                continue
            if failures:
                log.warning("storage_recovered stream=%s failed_attempts=%d", self.parser.stream.name, failures)
            return True

    def _forget_kept(self) -> None:
        """Given up on storing what is kept: hold no memory for it."""
        for kept in self._kept.values():
            kept.clear()
        self._kept_bytes = 0

    def abandon_storage(self) -> None:
        """Stop retrying failed segment writes (shutdown): what is left is published
        unstored, and the receipts waiting for it say so."""
        self._abandoned = True

    async def _process(self, arena: Arena, turn: anyio.Event | None, done: anyio.Event, depth: anyio.Semaphore) -> None:
        """Parse the arena (beside the one before it), then, in its turn, publish."""
        try:
            await self._process_in_turn(arena, turn)
        finally:
            done.set()
            depth.release()

    async def _process_in_turn(self, arena: Arena, turn: anyio.Event | None) -> None:
        t0 = anyio.current_time()
        opened, flushed = arena.opened_at, arena.flushed_at
        kernels = self._kernels
        try:
            on_loop = arena.lingered and arena.used < INLINE_BYTES and LOOP_HOLDS.has_room(t0)
            threads = await kernels.acquire(arena.used, self._queued)  # under INLINE_BYTES: one
            try:
                started = anyio.current_time()
                if on_loop:
                    out = self._parse(arena, threads)
                    LOOP_HOLDS.held(started, anyio.current_time())
                else:
                    out = await anyio.to_thread.run_sync(self._parse, arena, threads)
            finally:
                kernels.release(threads)
        finally:
            regions = arena.regions
            self.pool.release(arena)  # nothing below reads the arena's bytes
        t1 = anyio.current_time()
        if turn is not None:
            await turn.wait()
        first_index, base = self.stats.received, self.stats.bytes
        for r in out.results:
            if r.rejected:
                r.rejects = _numbered(r.rejects, first_index, base)
            self.stats.add(r)
        self.stats.bytes += out.nbytes
        self.stats.batches += len(out.results)
        accepted = self.batches.stamp([r.batch for r in out.results if r.batch.num_rows])
        rejected = self.rejects.stamp([r.rejects for r in out.results if r.rejects.num_rows])
        out.results = []  # the batches live on in the outputs only
        stored = True
        if self._durable:
            stored = False
            if not self._abandoned:
                self._kept[self.batches.name].extend(accepted)
                self._kept[self.rejects.name].extend(rejected)
                self._kept_bytes += sum(b.nbytes for b in accepted) + sum(b.nbytes for b in rejected)
                stored = await self._on_disk(self._store)
        for batch in accepted:
            await self.batches.publish(batch)
        for batch in rejected:
            await self.rejects.publish(batch)
        self.latency.observe(anyio.current_time() - flushed)
        # a receipt means "handed to the outputs, and as durable as the stream promises"
        if self._durable and isinstance(self.durability, float) and stored:
            self._unsynced.append(partial(self._settle, regions, out))
        else:
            self._settle(regions, out, stored=stored)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch stream=%s messages=%d bytes=%d fill_ms=%.2f queued_ms=%.2f parse_ms=%.2f publish_ms=%.2f",
                self.parser.stream.name,
                len(out.records),
                out.nbytes,
                1000 * (flushed - opened),
                1000 * (started - flushed),
                1000 * (t1 - started),
                1000 * (anyio.current_time() - t1),
            )

    def _parse(self, arena: Arena, threads: int) -> ArenaResult:
        """The arena's batches on ``threads`` kernel threads, or, should processing fail,
        every message of the arena as a dead letter with ``internal_error`` (the stream
        keeps going). Dead letters are numbered from the arena's start: message 0, byte 0."""
        try:
            numba.set_num_threads(threads)  # per calling thread in Numba
            self.widest = max(self.widest, threads)
            return self._parse_arena(arena)
        except Exception:  # a bug, not bad input: bad input is a dead letter already
            log.exception("batch_failed stream=%s messages_to=dead_letters", self.parser.stream.name)
            self.internal_errors += 1
            return self._all_rejected(arena)

    def _parse_arena(self, arena: Arena) -> ArenaResult:
        """Frame every region, parse in batches of at most max_messages."""
        buf = as_uint8(arena.data[: arena.used])
        if self._all_lines(arena):  # the usual arena: frame while parsing, one pass fewer
            parsed = self.parser.parse_lines_of(buf, max_messages=self._max_messages)
            if parsed is not None:
                result, records = parsed
                return self._arena_result([result], records, arena)
        starts, ends, records, blank, truncated = self._frame(buf, arena)
        results = []
        n = len(starts)
        for lo in range(0, max(n, 1), self._max_messages):
            hi = min(n, lo + self._max_messages)
            cut = truncated[(truncated >= lo) & (truncated < hi)] - lo
            r = self.parser.parse_spans(
                buf, starts[lo:hi], ends[lo:hi], blank=blank if lo == 0 else 0, first_index=lo, truncated=cut
            )
            results.append(r)
        return self._arena_result(results, records, arena)

    def _arena_result(self, results: list[ParseResult], records: np.ndarray, arena: Arena) -> ArenaResult:
        skipped = arena.skipped()
        if any(r.gap for r in arena.regions):  # gaps of both signs may cancel out in total
            results = [self._input_offsets(r, arena) for r in results]
        rejects = pa.Table.from_batches([r.rejects for r in results if r.rejected], schema=self.parser.rejects_schema)
        rejected_index = rejects.column("index").to_numpy() if rejects.num_rows else np.empty(0, np.int64)
        return ArenaResult(results, records, rejected_index, rejects, arena.used + skipped)

    @staticmethod
    def _input_offsets(result: ParseResult, arena: Arena) -> ParseResult:
        """Dead-letter offsets that count the input bytes framers skipped (the rest of an
        oversize message) before each message, not just the bytes the arena kept."""
        if not result.rejected:
            return result
        rejects = result.rejects
        at = rejects.column("offset").to_numpy()  # arena positions
        starts = np.array([r.start for r in arena.regions], np.int64)
        gaps = np.cumsum([r.gap for r in arena.regions])
        shift = gaps[np.maximum(np.searchsorted(starts, at, side="right") - 1, 0)]
        i = rejects.schema.get_field_index("offset")
        result.rejects = rejects.set_column(i, rejects.schema.field(i), pa.array(at + shift, pa.int64()))
        return result

    @staticmethod
    def _all_lines(arena: Arena) -> bool:
        """Whether the arena's bytes are all newline-delimited regions, back to back."""
        regions = arena.regions
        return (
            bool(regions)
            and regions[0].start == 0
            and regions[-1].end == arena.used
            and all(r.kind == LINES for r in regions)
        )

    def _all_rejected(self, arena: Arena) -> ArenaResult:
        """Dead letters of a whole arena that could not be processed. The messages are
        framed again (or, if framing is what failed, each region counts as one message) so
        that every one keeps its raw bytes and the counts still add up."""
        buf = as_uint8(arena.data[: arena.used])
        try:
            starts, ends, records, blank, _ = self._frame(buf, arena)
        except Exception:
            starts = np.array([r.start for r in arena.regions], np.int64)
            ends = np.array([r.end for r in arena.regions], np.int64)
            records, blank = starts, 0
        n = len(starts)
        raw = pa.array([bytes(buf[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)], pa.binary())
        rejects = pa.RecordBatch.from_arrays(
            [
                pa.array(np.arange(n, dtype=np.int64)),
                pa.array(starts, pa.int64()),  # arena-wide, as build_rejects gives it here
                pa.array([ERROR_NAMES[INTERNAL_ERROR]] * n, pa.string()),
                pa.nulls(n, pa.string()),  # the exception is in the log, not tied to a field
                pa.array(np.zeros(n, np.int64)),
                raw,
            ],
            schema=DEAD_LETTER_SCHEMA,
        )
        empty = pa.RecordBatch.from_arrays(
            [pa.array([], f.type) for f in self.parser.schema], schema=self.parser.schema
        )
        result = ParseResult(empty, rejects, blank, {ERROR_NAMES[INTERNAL_ERROR]: n} if n else {})
        return self._arena_result([result], records, arena)  # skipped bytes count, as anywhere

    def _frame(self, buf: np.ndarray, arena: Arena) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
        """Message spans of the arena, one framing kernel call per run of same-kind regions:
        (starts, ends, record starts, blank lines, indices of truncated frames). A record
        starts at its frame header."""
        runs: list[list[int]] = []
        for region in arena.regions:
            if runs and runs[-1][2] == region.kind:
                runs[-1][1] = region.end
            else:
                runs.append([region.start, region.end, region.kind])
        empty = np.empty(0, np.int64)
        if not runs:
            return empty, empty, empty, 0, empty
        all_starts, all_ends, all_records, blank, truncated, n = [], [], [], 0, [], 0
        chunks = max(1, min(numba.get_num_threads() * 4, arena.used >> 16))
        for start, end, kind in runs:
            if kind == LINES:
                s, e, b, _ = frame_lines(buf, start, end, True, chunks, self.parser.max_message_bytes)
                all_records.append(s)
                blank += b
            else:
                s, e, _ = frame_length_prefixed(buf, start, end)
                all_records.append(s - 4)
                if kind == TRUNCATED_FRAME:
                    truncated.extend(range(n, n + len(s)))
            all_starts.append(s)
            all_ends.append(e)
            n += len(s)
        cut = np.array(truncated, np.int64) if truncated else empty
        if len(runs) == 1:
            return all_starts[0], all_ends[0], all_records[0], blank, cut
        return np.concatenate(all_starts), np.concatenate(all_ends), np.concatenate(all_records), blank, cut

    @staticmethod
    def _settle(regions: list, out: ArenaResult, stored: bool = True) -> None:
        """Tell each owning submission how its messages fared (a few vector ops per region),
        and whether they reached the segment log as the durability promised."""
        owned = [r for r in regions if r.owner is not None]
        if not owned:
            return
        bounds = np.array([[r.start, r.end] for r in owned], np.int64)
        lo_hi = np.searchsorted(out.records, bounds)
        rej = np.searchsorted(out.rejected_index, lo_hi)
        for region, (lo, hi), (a, b) in zip(owned, lo_hi.tolist(), rej.tolist(), strict=True):
            first = []
            if b > a:
                k = min(b - a, region.owner.max_errors)
                for row in out.rejects.slice(a, k).select(["index", "error", "field", "position"]).to_pylist():
                    row["index"] -= lo
                    first.append(row)
            region.owner.settle(hi - lo, b - a, first, stored=stored)


def _numbered(rejects: pa.RecordBatch, first_index: int, base: int) -> pa.RecordBatch:
    """Dead letters numbered from their arena's start, renumbered stream-wide: ``index``
    from the stream's first message, ``offset`` from its first byte."""
    columns = rejects.columns
    columns[0] = pc.add(columns[0], first_index)
    columns[1] = pc.add(columns[1], base)
    return pa.RecordBatch.from_arrays(columns, schema=rejects.schema)
