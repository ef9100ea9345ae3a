"""Durable segments: one topic's batches on disk, in order, numbered by sequence.

A topic's log is a directory of segment files, ``<first_seq:020d>.arrow``. Each file is a
plain Arrow IPC stream (``pa.ipc.open_stream(path)`` reads it) whose record batch messages
carry their sequence number as custom metadata ``quiver.seq``. Only the newest segment is
appended to; it rolls (end-of-stream marker, fsync) when it reaches ``max_bytes`` or
``max_age_s``, and closed segments are never written again: retention deletes whole closed
segments, oldest first, by total size and age.

Why IPC *stream* files rather than the IPC file format: a stream needs no footer, so every
batch is readable the moment it is written and a crash leaves a readable prefix. On open,
the newest segment is read back batch by batch (each one fully validated, sequence numbers
contiguous); a torn tail (a batch cut short by a crash) is truncated after the last whole
batch and the file is closed with an end-of-stream marker. Numbering resumes after the last
whole batch, and new batches go to a new segment, so no file is ever appended to after a
restart. A newest segment that already ends with its marker but cannot be read up to it was
damaged after it closed: it is left as it is and numbering skips every seq it could hold.

Everything here blocks: the pipeline calls ``append``/``sync`` on a worker thread, and
readers (``cursor``) run on worker threads too. One lock orders writers, rolls and
retention; readers open their own file handles, so a segment deleted under a reader stays
readable until the reader moves on (POSIX unlink semantics).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

log = logging.getLogger("quiver.segments")

SEQ_KEY = b"quiver.seq"
SUFFIX = ".arrow"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # IPC end-of-stream marker
#: No record batch message is shorter: its 8-byte prefix, and flatbuffer metadata with a
#: node, buffers and the ``quiver.seq`` key. Bounds the batches a damaged stretch can hold.
MIN_MESSAGE_BYTES = 64


class SeqOutOfRange(LookupError):
    """A requested sequence number is not retained (or not written yet)."""

    def __init__(self, seq: int, first: int, next_: int) -> None:
        super().__init__(f"sequence {seq} is outside the retained range [{first}, {next_})")
        self.seq, self.first, self.next = seq, first, next_


class LogError(RuntimeError):
    """The segment directory cannot be used as it is (say why and which path)."""


def seq_of(batch: pa.RecordBatch) -> int:
    """The sequence number stamped on a published batch (its schema metadata)."""
    return int(batch.schema.metadata[SEQ_KEY])


def stamp(batch: pa.RecordBatch, seq: int) -> pa.RecordBatch:
    """The same batch (no copy) with ``quiver.seq`` in its schema metadata."""
    return batch.replace_schema_metadata({SEQ_KEY: str(seq).encode()})


@dataclass
class Segment:
    first_seq: int
    path: Path
    next_seq: int  # one past its last batch
    nbytes: int
    modified: float  # wall-clock time of its last write (retention by age)
    closed: bool
    created: float = 0.0  # when it was started (rolling by age)
    # the prefix an fsync has confirmed (a closed or recovered segment: all of it)
    synced_bytes: int = -1
    synced_next_seq: int = -1

    def __post_init__(self) -> None:
        if self.synced_bytes < 0:
            self.synced_bytes, self.synced_next_seq = self.nbytes, self.next_seq


@dataclass(frozen=True)
class SegmentPolicy:
    """When segments roll and how long closed ones are kept (None: no limit)."""

    max_bytes: int = 64 << 20
    max_age_s: float = 3600.0
    retain_bytes: int | None = 1 << 30
    retain_age_s: float | None = None


def _schema_of(path: Path) -> pa.Schema | None:
    """A segment's schema, or None if it has none (yet) or is gone."""
    try:
        with pa.OSFile(str(path)) as f:
            return pa.ipc.open_stream(f).schema
    except (pa.ArrowException, OSError):
        return None


class SegmentLog:
    """The on-disk log of one topic (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        schema: pa.Schema,
        policy: SegmentPolicy,
        dictionaries: dict[str, pa.Array] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.schema = schema.remove_metadata()
        # the values of dictionary (enum) columns: the schema alone does not hold them, and
        # stored indices read against other values would be other values
        self.dictionaries = dictionaries or {}
        self.policy = policy
        self._lock = threading.Lock()
        self._segments: list[Segment] = []
        self._next_seq = 0
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._fd = -1  # for fsync of the active segment
        self._dirty = False
        self._closed = False

    # -- opening and recovery -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        schema: pa.Schema,
        policy: SegmentPolicy,
        dictionaries: dict[str, pa.Array] | None = None,
    ) -> SegmentLog:
        """Open (creating the directory) and recover: truncate a torn tail, resume numbering.
        Stored batches whose schema or enum values differ from ``schema`` and
        ``dictionaries`` refuse the open (LogError)."""
        self = cls(directory, schema, policy, dictionaries)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._scan(repair=True)
        self.enforce_retention()
        return self

    @classmethod
    def open_readonly(cls, directory: str | os.PathLike[str]) -> SegmentLog:
        """Read a log another process may be writing: nothing is repaired or deleted, and a
        torn tail simply ends the readable range."""
        path = Path(directory)
        if not path.is_dir():
            raise LogError(f"{path}: no such segment directory")
        files = _segment_files(path)
        # the newest segment may be a roll's, its schema not written yet, and retention may
        # delete the oldest at any moment: the schema is the newest one that can be read
        schema = next((s for _, p in reversed(files) if (s := _schema_of(p)) is not None), None)
        if schema is None:
            raise LogError(f"{path}: holds no segments")
        self = cls(path, schema, SegmentPolicy())
        self._scan(repair=False)
        self._closed = True  # no appends
        return self

    def _scan(self, repair: bool) -> None:
        files = _segment_files(self.directory)
        for (first, path), nxt in zip(files, files[1:], strict=False):
            try:
                st = path.stat()
            except FileNotFoundError:  # (read-only) another process's retention deleted it
                continue
            self._segments.append(Segment(first, path, nxt[0], st.st_size, st.st_mtime, True))
        if not files:
            return
        first, path = files[-1]
        if repair and len(files) > 1 and _schema_of(path) is None:
            # a roll cut off before the new segment got its schema (kill -9): the one before
            # still says what the stored batches are
            self._check_stored(files[-2][1])
        last = self._recover(first, path, repair)
        self._segments.append(last)
        self._next_seq = last.next_seq

    def _recover(self, first: int, path: Path, repair: bool) -> Segment:
        """Read the newest segment back; returns it closed, its torn tail (if any) cut off."""
        good_end, seq = 0, first
        schema: pa.Schema | None = None
        with pa.OSFile(str(path)) as f:
            size = f.size()
            try:
                reader = pa.ipc.open_stream(f)
                schema = reader.schema
                good_end = f.tell()
                while True:
                    batch, meta = reader.read_next_batch_with_custom_metadata()
                    if meta is None or int(meta.get(SEQ_KEY, b"-1")) != seq:
                        break  # not the batch that must come next: treat the rest as torn
                    batch.validate(full=True)
                    if repair and seq == first:
                        self._check_dictionaries(batch, path)
                    seq += 1
                    good_end = f.tell()
            except StopIteration:
                pass
            except (pa.ArrowException, OSError, ValueError):
                # a torn or damaged message: everything from it on is dropped (damage in a
                # length can also read as a huge allocation or an unknown type)
                pass
        if schema is not None and repair and not schema.equals(self.schema, check_metadata=False):
            raise self._changed(path)
        ended = _tail(path, len(EOS)) == EOS
        # the end marker, with whole messages past the damage leading up to it: a file
        # closed whole and damaged since. (A torn tail can end in the marker's bytes too,
        # a bitmap of ones and its padding, but there the failed message is the last one,
        # and it runs past the end of the file.)
        if (
            ended
            and good_end + len(EOS) < size == path.stat().st_size
            and _whole_messages_before_the_end(path, good_end, size - len(EOS))
        ):
            return self._damaged(first, path, seq, good_end, size, repair)
        clean = ended and size == good_end + len(EOS)
        if repair and not clean:
            if schema is None:  # not even the schema survived: rewrite an empty segment
                good_end = 0
            with open(path, "r+b") as f:
                f.truncate(good_end)
                f.seek(good_end)
                if good_end == 0:
                    f.write(_empty_stream(self.schema))
                else:
                    f.write(EOS)
                f.flush()
                os.fsync(f.fileno())
            log.warning("segment_repaired path=%s kept_batches=%d dropped_bytes=%d", path, seq - first, size - good_end)
        st = path.stat()
        return Segment(first, path, seq, st.st_size, st.st_mtime, True)

    def _damaged(self, first: int, path: Path, seq: int, good_end: int, size: int, repair: bool) -> Segment:
        """The newest segment ends with its end-of-stream marker, so it was closed whole, yet
        it cannot be read up to that marker: a disk fault or an edit, not a torn write. Cutting
        it back, as a torn tail is, would drop batches that were acknowledged and give their
        seqs out again, so the file is kept as it is, read like any damaged segment (up to the
        damage, then an error naming it), and numbering resumes past every seq the unreadable
        bytes could hold."""
        upper = seq + max(1, (size - len(EOS) - good_end) // MIN_MESSAGE_BYTES)
        if repair:
            log.error(
                "segment_damaged path=%s readable_batches=%d unreadable_bytes=%d skipped_seqs=%d..%d",
                path,
                seq - first,
                size - len(EOS) - good_end,
                seq,
                upper - 1,
            )
        st = path.stat()
        return Segment(first, path, upper, st.st_size, st.st_mtime, True)

    def _changed(self, path: Path) -> LogError:
        return LogError(
            f"{path}: its batches have a different schema than the stream's fields now declare; "
            f"move {self.directory} away (or restore the old fields) before starting"
        )

    def _check_dictionaries(self, batch: pa.RecordBatch, path: Path) -> None:
        for name, values in self.dictionaries.items():
            i = batch.schema.get_field_index(name)
            if i >= 0 and not batch.column(i).dictionary.equals(values):
                raise self._changed(path)  # enum values added, removed or reordered

    def _check_stored(self, path: Path) -> None:
        """The schema and enum values of a closed segment against the stream's."""
        try:
            with pa.OSFile(str(path)) as f:
                reader = pa.ipc.open_stream(f)
                if not reader.schema.equals(self.schema, check_metadata=False):
                    raise self._changed(path)
                self._check_dictionaries(reader.read_next_batch(), path)
        except (StopIteration, pa.ArrowException, OSError):
            pass  # no batch to compare (or unreadable: replay reports that where it is)

    # -- writing --------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended batch gets."""
        return self._next_seq

    @property
    def first_seq(self) -> int:
        """The oldest retained sequence number (== next_seq when nothing is retained).
        Lock-free, as ``nbytes``: the event loop asks it (listings, subscriptions, Flight
        infos) and must never wait behind an fsync that holds the lock."""
        return self._first_of(list(self._segments))

    @property
    def nbytes(self) -> int:
        """Bytes of segment files on disk. Lock-free (it only reads a list snapshot), so a
        metrics scrape on the event loop never waits behind a slow disk write."""
        return sum(s.nbytes for s in list(self._segments))

    def append(self, batches: Sequence[pa.RecordBatch], sync: bool = False) -> None:
        """Write batches numbered ``next_seq, next_seq + 1, ...`` (their stamps must agree);
        with ``sync`` they are on disk (fsync) when this returns."""
        with self._lock:
            if self._closed:
                raise LogError(f"{self.directory}: log is closed")
            for batch in batches:
                seq = self._next_seq
                meta = batch.schema.metadata
                if meta is not None and SEQ_KEY in meta and int(meta[SEQ_KEY]) != seq:
                    raise LogError(f"{self.directory}: batch stamped {int(meta[SEQ_KEY])} appended as {seq}")
                if self._writer is None or self._should_roll():
                    self._roll(seq)
                assert self._writer is not None and self._sink is not None
                active = self._segments[-1]
                try:
                    self._writer.write_batch(batch, custom_metadata={SEQ_KEY: str(seq).encode()})
                except OSError:
                    self._abandon_active(keep_unsynced=True)
                    raise
                active.nbytes = self._sink.tell()
                active.next_seq = self._next_seq = seq + 1
                active.modified = time.time()
                self._dirty = True
            if sync:
                self._sync_locked()

    def _abandon_active(self, keep_unsynced: bool) -> None:
        """After a failed write or fsync: close the active segment cut back to its last
        whole batch (``keep_unsynced``, once an fsync confirms them) or to its last
        confirmed fsync, and leave the next append to start a new segment. ``next_seq``
        goes back with it, so the caller writes again whatever the log lost, in order.

        After a failed fsync the kernel may have dropped the dirty pages while a second
        fsync reports success (Linux), so nothing written since the last good fsync is
        trusted: it is cut off and must be written again.
        """
        active = self._segments[-1]
        sink, self._writer, self._sink = self._sink, None, None
        fd, self._fd, self._dirty = self._fd, -1, False
        active.closed = True
        with contextlib.suppress(OSError, pa.ArrowException):
            if sink is not None:
                sink.close()  # the writer is dropped unclosed: its EOS would follow torn bytes
        with contextlib.suppress(OSError):
            if fd >= 0:
                os.close(fd)
        if keep_unsynced and active.next_seq > active.synced_next_seq:
            try:
                self._cut(active, active.nbytes)
                active.synced_bytes, active.synced_next_seq = active.nbytes, active.next_seq
                return
            except OSError:
                pass  # not even that is sure to be on disk: fall back to the last good fsync
        active.next_seq = self._next_seq = active.synced_next_seq
        if active.next_seq == active.first_seq:  # no confirmed batch: drop the file
            self._segments.pop()
            with contextlib.suppress(OSError):
                active.path.unlink()
            return
        try:
            self._cut(active, active.synced_bytes)
        except OSError:  # the cursor and recovery both stop at next_seq / the last whole batch
            log.warning("segment_truncate_failed path=%s keep_batches_until=%d", active.path, active.next_seq)

    @staticmethod
    def _cut(segment: Segment, good: int) -> None:
        """Truncate a segment file to ``good`` bytes (whole batches), end it, fsync it."""
        with open(segment.path, "r+b") as f:
            f.truncate(good)
            f.seek(good)
            f.write(EOS)
            f.flush()
            os.fsync(f.fileno())
        segment.nbytes = good + len(EOS)

    def sync(self) -> None:
        """fsync what was appended since the last sync (nothing when nothing was). If the
        fsync fails, the log rewinds to its last good fsync (see ``_abandon_active``)."""
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        if not self._dirty or self._fd < 0:
            self._dirty = False
            return
        active = self._segments[-1]
        try:
            os.fsync(self._fd)
        except OSError:
            self._abandon_active(keep_unsynced=False)
            raise
        active.synced_bytes, active.synced_next_seq = active.nbytes, active.next_seq
        self._dirty = False

    def _should_roll(self) -> bool:
        active = self._segments[-1]
        age = time.time() - active.created
        return active.nbytes >= self.policy.max_bytes or age >= self.policy.max_age_s

    def _roll(self, seq: int) -> None:
        """Close the active segment (if any) and start a new one whose first batch is ``seq``."""
        self._close_active()
        if self._segments and self._segments[-1].first_seq == seq:
            self._segments.pop()  # an empty segment left by recovery: its file is reused
        path = self.directory / f"{seq:020d}{SUFFIX}"
        sink = pa.OSFile(str(path), "wb")  # the schema is written with the first batch
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            with contextlib.suppress(OSError, pa.ArrowException):
                sink.close()
            raise
        # every resource is held: only now does the log's state change
        self._sink, self._fd = sink, fd
        self._writer = pa.ipc.new_stream(sink, self.schema)
        now = time.time()
        self._segments.append(Segment(seq, path, seq, 0, now, False, now, synced_bytes=0, synced_next_seq=seq))
        _sync_dir(self.directory)  # the new file's name survives a crash too
        self._enforce_retention_locked()

    def _close_active(self) -> None:
        if self._writer is None:
            return
        active = self._segments[-1]
        try:
            self._writer.close()  # end-of-stream marker
            assert self._sink is not None
            active.nbytes = self._sink.tell()
            os.fsync(self._fd)
        except (OSError, pa.ArrowException):
            self._abandon_active(keep_unsynced=False)
            raise
        sink, fd = self._sink, self._fd
        self._writer, self._sink, self._fd, self._dirty = None, None, -1, False
        active.closed = True
        active.synced_bytes, active.synced_next_seq = active.nbytes, active.next_seq
        with contextlib.suppress(OSError, pa.ArrowException):
            sink.close()
        with contextlib.suppress(OSError):
            os.close(fd)

    def close(self) -> None:
        """Close the active segment (end-of-stream marker, fsync). Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True  # even if the disk fails now: no append may follow
                self._close_active()

    # -- retention ------------------------------------------------------------------------

    def enforce_retention(self, now: float | None = None) -> list[Path]:
        """Delete closed segments beyond the size or age limits; returns what was deleted."""
        with self._lock:
            return self._enforce_retention_locked(now)

    def _enforce_retention_locked(self, now: float | None = None) -> list[Path]:
        p = self.policy
        now = time.time() if now is None else now
        total = sum(s.nbytes for s in self._segments)
        deleted = []
        # never the newest segment: it is active, or it holds where numbering resumes
        while len(self._segments) > 1 and self._segments[0].closed:
            oldest = self._segments[0]
            too_big = p.retain_bytes is not None and total > p.retain_bytes
            too_old = p.retain_age_s is not None and now - oldest.modified > p.retain_age_s
            if not (too_big or too_old):
                break
            with contextlib.suppress(FileNotFoundError):
                oldest.path.unlink()
            total -= oldest.nbytes
            deleted.append(oldest.path)
            self._segments.pop(0)
        if deleted:
            log.info(
                "segments_deleted dir=%s count=%d first_seq=%d", self.directory, len(deleted), self._first_locked()
            )
        return deleted

    def _first_locked(self) -> int:
        return self._first_of(self._segments)

    def _first_of(self, segments: list[Segment]) -> int:
        for s in segments:
            if s.next_seq > s.first_seq:
                return s.first_seq
        return self._next_seq

    # -- reading --------------------------------------------------------------------------

    def segments(self) -> list[Segment]:
        with self._lock:
            return [Segment(**vars(s)) for s in self._segments]

    def cursor(self, from_seq: int) -> LogCursor:
        """A reader positioned at ``from_seq`` (raises SeqOutOfRange if it is not retained)."""
        first, nxt = self.first_seq, self._next_seq
        if not first <= from_seq <= nxt:
            raise SeqOutOfRange(from_seq, first, nxt)
        return LogCursor(self, from_seq)

    def read(self, from_seq: int | None = None, to_seq: int | None = None) -> Iterator[pa.RecordBatch]:
        """Every retained batch with ``from_seq <= seq <= to_seq`` (stamped), in order."""
        start = self.first_seq if from_seq is None else max(from_seq, self.first_seq)
        end = self._next_seq if to_seq is None else min(to_seq + 1, self._next_seq)
        if start >= end:
            return
        cursor = LogCursor(self, start)
        try:
            while cursor.pos < end:
                yield from cursor.read(end, 64)
        finally:
            cursor.close()

    def _segment_for(self, seq: int) -> Segment | None:
        with self._lock:
            i = bisect.bisect_right([s.first_seq for s in self._segments], seq) - 1
            if i >= 0 and self._segments[i].first_seq <= seq < self._segments[i].next_seq:
                return self._segments[i]  # the live record: a reader sees it close
            return None


class LogCursor:
    """Reads one log forward from a sequence number, one segment file at a time."""

    def __init__(self, log: SegmentLog, from_seq: int) -> None:
        self.log = log
        self.pos = from_seq
        self._file: pa.NativeFile | None = None
        self._reader: pa.ipc.RecordBatchStreamReader | None = None
        self._segment: Segment | None = None

    def read(self, until_seq: int, max_batches: int) -> list[pa.RecordBatch]:
        """Up to ``max_batches`` batches from ``pos``, all with seq < ``until_seq`` (which
        must already be written). Raises SeqOutOfRange if retention deleted them, and
        LogError at a damaged batch (after returning the ones before it)."""
        out: list[pa.RecordBatch] = []
        while self.pos < until_seq and len(out) < max_batches:
            seg = self._segment
            try:
                if self._reader is None or (seg is not None and seg.closed and self.pos >= seg.next_seq):
                    self._open(self.pos)
                assert self._reader is not None and self._segment is not None
                try:
                    batch, meta = self._reader.read_next_batch_with_custom_metadata()
                    seq = int(meta[SEQ_KEY])
                except (pa.ArrowException, StopIteration, OSError, ValueError, KeyError, TypeError) as exc:
                    # only the newest segment is checked at start: an older one damaged since
                    # (a disk fault, a hand edit) ends the read here
                    raise LogError(f"{self._segment.path}: batch {self.pos} cannot be read: {exc!r}") from None
                if seq > self.pos:
                    raise LogError(f"{self._segment.path}: expected batch {self.pos}, found {seq}")
            except (LogError, SeqOutOfRange):
                if out:
                    return out  # what came before it first; the next call raises again
                raise
            if seq < self.pos:
                continue  # skipping to the start position inside the first segment
            out.append(stamp(batch, seq))
            self.pos += 1
        return out

    def _open(self, seq: int) -> None:
        self.close()
        segment = self.log._segment_for(seq)
        if segment is None:
            raise SeqOutOfRange(seq, self.log.first_seq, self.log.next_seq)
        try:
            self._file = pa.OSFile(str(segment.path))
        except (FileNotFoundError, pa.ArrowIOError):
            raise SeqOutOfRange(seq, self.log.first_seq, self.log.next_seq) from None
        try:
            self._reader = pa.ipc.open_stream(self._file)
        except (pa.ArrowException, OSError, ValueError) as exc:  # its schema message is damaged
            self.close()
            raise LogError(f"{segment.path}: batch {seq} cannot be read: {exc!r}") from None
        # an active segment's end moves; pos never passes what the writer has finished,
        # and the writer marks the segment closed before it starts the next one
        self._segment = segment

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._reader = None, None


def _segment_files(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for p in directory.iterdir():
        if p.suffix == SUFFIX and p.stem.isdigit() and p.is_file():
            out.append((int(p.stem), p))
    out.sort()
    return out


def _whole_messages_before_the_end(path: Path, start: int, end: int) -> bool:
    """Whether, somewhere from ``start`` on, IPC messages follow one another by their own
    framing and the last of them ends exactly at ``end``. Messages start at multiples of 8;
    a walk tries each such offset that holds a continuation marker."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
    except OSError:
        return False
    marker = b"\xff\xff\xff\xff"
    at = data.find(marker)
    while at >= 0:
        if (start + at) % 8 == 0:
            pos, walked = at, 0
            while pos < len(data) and (nxt := _message_end(data, pos)) is not None and nxt <= len(data):
                pos, walked = nxt, walked + 1
            if walked and pos == len(data):
                return True
        at = data.find(marker, at + 1)
    return False


def _message_end(data: bytes, at: int) -> int | None:
    """Where the IPC message at ``data[at:]`` ends by its own framing (continuation marker,
    metadata length, the flatbuffer ``Message.bodyLength``); None if that does not read."""
    if data[at : at + 4] != b"\xff\xff\xff\xff" or len(data) < at + 8:
        return None
    size = int.from_bytes(data[at + 4 : at + 8], "little", signed=True)
    meta = data[at + 8 : at + 8 + size]
    if size < 8 or size % 8 or len(meta) < size:
        return None
    try:
        root = int.from_bytes(meta[0:4], "little")  # the Message table
        vtable = root - int.from_bytes(meta[root : root + 4], "little", signed=True)
        if not 0 <= vtable < size - 4 or root + 4 > size:
            return None
        vt_size = int.from_bytes(meta[vtable : vtable + 2], "little")
        body_length = 0
        if vt_size > 10:  # field 3, bodyLength (int64), is present
            field = int.from_bytes(meta[vtable + 10 : vtable + 12], "little")
            if field:
                body_length = int.from_bytes(meta[root + field : root + field + 8], "little", signed=True)
    except (IndexError, ValueError):
        return None
    if body_length < 0 or body_length % 8:
        return None
    return at + 8 + size + body_length


def _tail(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read(n)


def _empty_stream(schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, schema).close()
    return sink.getvalue().to_pybytes()


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
