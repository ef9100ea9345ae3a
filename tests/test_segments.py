"""Segment logs on disk: append, roll, recover torn tails, retain, read from any seq."""

from __future__ import annotations

import os
import threading

import pyarrow as pa
import pytest

from engine.outputs.segments import EOS, LogError, SegmentLog, SegmentPolicy, SeqOutOfRange, seq_of, stamp

SCHEMA = pa.schema([("id", pa.int64()), ("tag", pa.dictionary(pa.int32(), pa.string())), ("s", pa.string())])
TAGS = pa.array(["a", "b", "c"])


def make_batch(first: int, n: int = 3) -> pa.RecordBatch:
    ids = pa.array(range(first, first + n), pa.int64())
    tags = pa.DictionaryArray.from_arrays(pa.array([i % 3 for i in range(n)], pa.int32()), TAGS)
    return pa.RecordBatch.from_arrays([ids, tags, pa.array([f"x{i}" * (i % 5) for i in range(n)])], schema=SCHEMA)


def append(log: SegmentLog, count: int, rows: int = 3) -> list[pa.RecordBatch]:
    out = []
    for _ in range(count):
        b = stamp(make_batch(log.next_seq * 100, rows), log.next_seq)
        log.append([b])
        out.append(b)
    return out


def ids(batches) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist()]


def test_append_and_read_back_with_plain_pyarrow(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    written = append(log, 5)
    log.close()
    files = sorted(tmp_path.glob("*.arrow"))
    assert [f.name for f in files] == [f"{0:020d}.arrow"]
    reader = pa.ipc.open_stream(str(files[0]))
    seqs, got = [], []
    while True:
        try:
            batch, meta = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            break
        seqs.append(int(meta[b"quiver.seq"]))
        got.append(batch)
    assert seqs == [0, 1, 2, 3, 4]
    assert ids(got) == ids(written)
    assert got[1].column("tag").to_pylist() == ["a", "b", "c"]


def test_numbering_resumes_after_reopen_in_a_new_segment(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    append(log, 3)
    log.close()
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    assert (log.first_seq, log.next_seq) == (0, 3)
    append(log, 2)
    log.close()
    assert len(list(tmp_path.glob("*.arrow"))) == 2
    assert [seq_of(b) for b in SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy()).read()] == [0, 1, 2, 3, 4]


def test_rolls_by_size_and_reads_across_segments(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_bytes=2000, retain_bytes=None))
    written = append(log, 40)
    assert len(log.segments()) > 3
    assert all(s.closed for s in log.segments()[:-1])
    got = list(log.read(7, 31))
    assert [seq_of(b) for b in got] == list(range(7, 32))
    assert ids(got) == ids(written[7:32])
    log.close()


def test_a_damaged_older_segment_is_read_up_to_the_damage_which_it_then_names(tmp_path):
    """Start-up checks only the newest segment: an older one damaged since is found by the
    reader, which still hands over every batch before the damage."""
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_bytes=2000, retain_bytes=None))
    append(log, 40)
    oldest = log.segments()[0]
    data = oldest.path.read_bytes()
    oldest.path.write_bytes(data[: len(data) * 2 // 3])  # its last third is gone
    cursor, got = log.cursor(0), []
    with pytest.raises(LogError, match=oldest.path.name):
        while True:
            got += cursor.read(log.next_seq, 64)
    assert [seq_of(b) for b in got] == list(range(len(got)))
    assert 0 < len(got) < oldest.next_seq
    log.close()


def test_rolls_by_age(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_age_s=0.0))
    append(log, 3)
    assert len(log.segments()) == 3


def test_cursor_follows_the_active_segment_and_its_roll(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_bytes=1500, retain_bytes=None))
    append(log, 2)
    cur = log.cursor(1)
    assert [seq_of(b) for b in cur.read(log.next_seq, 10)] == [1]
    append(log, 20)  # the cursor's segment rolls while it is open
    assert [seq_of(b) for b in cur.read(log.next_seq, 100)] == list(range(2, 22))
    assert cur.read(log.next_seq, 10) == []
    cur.close()


def test_cursor_range_checks(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    append(log, 2)
    log.cursor(2).close()  # the next one to be written: fine
    with pytest.raises(SeqOutOfRange) as exc:
        log.cursor(3)
    assert (exc.value.first, exc.value.next) == (0, 2)


def _one_segment(directory, batches: int):
    """A closed log of ``batches`` batches in one segment: (its path, its bytes, where the
    schema message ends, where each batch ends)."""
    log = SegmentLog.open(directory, SCHEMA, SegmentPolicy())
    append(log, batches)
    log.close()
    path = next(directory.glob("*.arrow"))
    ends = []
    with pa.OSFile(str(path)) as f:
        r = pa.ipc.open_stream(f)
        schema_end = f.tell()
        for _ in range(batches):
            r.read_next_batch()
            ends.append(f.tell())
    return path, path.read_bytes(), schema_end, ends


def test_every_torn_tail_is_truncated_to_whole_batches(tmp_path):
    path, data, schema_end, ends = _one_segment(tmp_path / "base", 4)
    step = max(1, len(data) // 150)
    for cut in [*range(0, len(data) - len(EOS), step), *[e - 1 for e in ends], *ends]:
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / path.name).write_bytes(data[:cut])
        log = SegmentLog.open(d, SCHEMA, SegmentPolicy())
        whole = sum(1 for e in ends if e <= cut)
        assert log.next_seq == whole, cut
        kept = list(log.read())
        assert [seq_of(b) for b in kept] == list(range(whole))
        # the repaired file is a complete IPC stream, and numbering goes on from there
        assert pa.ipc.open_stream(str(d / path.name)).read_all().num_rows == 3 * whole
        append(log, 1)
        log.close()
        assert [seq_of(b) for b in SegmentLog.open(d, SCHEMA, SegmentPolicy()).read()] == list(range(whole + 1))
    assert schema_end < ends[0]


def test_a_damaged_byte_in_a_torn_newest_segment_drops_only_what_follows_it(tmp_path):
    """A flipped byte in a length or type field reads as a huge allocation or an unknown
    type (not only ArrowInvalid): start-up must still cut the log back, never fail. The file
    has no end-of-stream marker, as after a crash, so the damage may be where it tore."""
    path, data, _, ends = _one_segment(tmp_path / "base", 3)
    torn = data[: -len(EOS)]
    for at in range(ends[0], len(torn)):
        for value in (0xFF, 0x7F):
            d = tmp_path / f"flip{at}_{value}"
            d.mkdir()
            (d / path.name).write_bytes(torn[:at] + bytes([value]) + torn[at + 1 :])
            log = SegmentLog.open(d, SCHEMA, SegmentPolicy())
            kept = list(log.read())
            assert log.next_seq >= 1 and [seq_of(b) for b in kept] == list(range(log.next_seq)), at
            log.close()


def test_a_cleanly_closed_newest_segment_damaged_later_keeps_its_seqs(tmp_path):
    """Ending with its end-of-stream marker, the file was closed whole: damage before the
    marker is a disk fault, not a torn write. Start-up must neither fail nor cut it back
    (that would drop acknowledged batches and hand their seqs out again); it keeps the file,
    resumes numbering past every seq it could hold, and a read stops at the damage, naming
    the file, after the batches before it."""
    path, data, _, ends = _one_segment(tmp_path / "base", 3)
    damaged = 0
    # (damage to the framing of the last batch itself reads like a torn write of it, and
    # is cut back: only whole messages between the damage and the marker tell them apart)
    for at in range(ends[0] - 40, ends[1], 3):
        d = tmp_path / f"flip{at}"
        d.mkdir()
        bad = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        (d / path.name).write_bytes(bad)
        log = SegmentLog.open(d, SCHEMA, SegmentPolicy())
        assert (d / path.name).read_bytes() == bad, at  # left as it was
        assert log.next_seq >= 3, at  # never below what was stored: no seq given out twice
        got = []
        if log.next_seq == 3:  # the flip hit a value: nothing to see
            got = list(log.read())
        else:
            damaged += 1
            with pytest.raises(LogError, match=path.name):
                for b in log.read():
                    got.append(b)
        assert [seq_of(b) for b in got] == list(range(len(got))), at
        first_new = log.next_seq
        append(log, 1)
        log.close()
        again = SegmentLog.open(d, SCHEMA, SegmentPolicy())  # the damaged file is now an older one
        assert again.next_seq == first_new + 1, at
        assert [seq_of(b) for b in again.read(first_new)] == [first_new], at
        again.close()
    assert damaged > 10


def test_a_cleanly_closed_newest_segment_with_a_damaged_schema_keeps_its_seqs(tmp_path):
    path, data, schema_end, _ = _one_segment(tmp_path, 3)
    path.write_bytes(bytes(8) + data[8:])  # its schema message's prefix zeroed
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    assert path.read_bytes()[:8] == bytes(8) and log.next_seq > 3
    with pytest.raises(LogError, match=path.name):
        list(log.read())
    log.close()


def test_a_middle_segment_with_a_damaged_schema_ends_a_read_naming_it(tmp_path):
    """The cursor opens each segment's stream as it reaches it: a schema message that no
    longer reads is damage like any other, after the batches before that file."""
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_bytes=2000, retain_bytes=None))
    append(log, 40)
    second = log.segments()[1]
    data = second.path.read_bytes()
    second.path.write_bytes(bytes(8) + data[8:])
    cursor, got = log.cursor(0), []
    with pytest.raises(LogError, match=second.path.name):
        while True:
            got += cursor.read(log.next_seq, 64)
    assert [seq_of(b) for b in got] == list(range(second.first_seq))
    log.close()


def test_first_seq_never_waits_behind_a_disk_write(tmp_path):
    """The event loop asks first_seq; a slow fsync holds the log's lock meanwhile."""
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    append(log, 2)
    got = []
    with log._lock:  # as an append or fsync in progress does
        asker = threading.Thread(target=lambda: got.append(log.first_seq), daemon=True)
        asker.start()
        asker.join(5)
    assert got == [0]


def test_garbage_after_the_last_batch_is_cut(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    append(log, 2)
    log.close()
    path = next(tmp_path.glob("*.arrow"))
    with open(path, "r+b") as f:
        f.seek(-len(EOS), os.SEEK_END)
        f.write(os.urandom(300))
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    assert log.next_seq == 2
    assert path.read_bytes().endswith(EOS)


def test_retention_deletes_only_closed_segments_oldest_first(tmp_path):
    policy = SegmentPolicy(max_bytes=1500, retain_bytes=4000)
    log = SegmentLog.open(tmp_path, SCHEMA, policy)
    append(log, 30)
    segs = log.segments()
    assert sum(s.nbytes for s in segs[:-1]) <= 4000 + segs[0].nbytes
    assert not segs[-1].closed
    assert log.first_seq == segs[0].first_seq > 0
    assert [seq_of(b) for b in log.read()] == list(range(log.first_seq, 30))
    with pytest.raises(SeqOutOfRange):
        log.cursor(0)
    # by age: everything closed goes, the active segment stays
    aged = SegmentLog.open(tmp_path / "aged", SCHEMA, SegmentPolicy(max_bytes=1500, retain_bytes=None, retain_age_s=60))
    append(aged, 10)
    assert len(aged.segments()) > 2
    deleted = aged.enforce_retention(now=10**12)
    assert deleted and len(aged.segments()) == 1 and not aged.segments()[0].closed
    assert aged.first_seq == aged.segments()[0].first_seq


def test_a_reader_keeps_a_segment_that_retention_deletes(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_bytes=1500, retain_bytes=None, retain_age_s=60))
    append(log, 10)
    cur = log.cursor(0)
    assert len(cur.read(log.next_seq, 1)) == 1
    first_end = log.segments()[0].next_seq
    log.enforce_retention(now=10**12)
    # the open segment stays readable, and what is left of it comes first; the next,
    # deleted one is then reported out of range
    rest = cur.read(log.next_seq, 100)
    assert [seq_of(b) for b in rest] == list(range(1, first_end)) and first_end > 1
    with pytest.raises(SeqOutOfRange):
        cur.read(log.next_seq, 100)


def test_a_changed_schema_is_refused(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    append(log, 1)
    log.close()
    with pytest.raises(LogError, match="different schema"):
        SegmentLog.open(tmp_path, pa.schema([("id", pa.int32())]), SegmentPolicy())


def test_changed_enum_values_are_refused(tmp_path):
    """The schema says dictionary<int32, string> whatever the values: stored indices read
    against reordered or extended values would be other values."""
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(), {"tag": TAGS})
    append(log, 2)
    log.close()
    for changed in (["c", "b", "a"], ["a", "b", "c", "d"], ["a", "b"]):
        with pytest.raises(LogError, match="different schema"):
            SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(), {"tag": pa.array(changed)})
    SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(), {"tag": TAGS}).close()  # unchanged: fine


def test_a_roll_cut_off_before_its_schema_does_not_hide_a_changed_schema(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(max_bytes=1))  # each batch rolls
    append(log, 3)
    log.close()
    newest = sorted(tmp_path.glob("*.arrow"))[-1]
    open(tmp_path / f"{int(newest.stem) + 1:020d}.arrow", "wb").close()  # kill -9 mid-roll: 0 bytes
    with pytest.raises(LogError, match="different schema"):
        SegmentLog.open(tmp_path, pa.schema([("id", pa.int32())]), SegmentPolicy())
    with pytest.raises(LogError, match="different schema"):
        SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy(), {"tag": pa.array(["b", "a", "c"])})


def test_readonly_open_repairs_nothing(tmp_path):
    log = SegmentLog.open(tmp_path, SCHEMA, SegmentPolicy())
    append(log, 3)  # still open: no end-of-stream marker yet
    path = next(tmp_path.glob("*.arrow"))
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\xff\xff\xff\xff\x10\x00")  # a message header cut short
    ro = SegmentLog.open_readonly(tmp_path)
    assert [seq_of(b) for b in ro.read()] == [0, 1, 2]
    assert path.stat().st_size == size + 6


def test_a_torn_tail_that_happens_to_end_like_the_end_marker_is_still_cut_back(tmp_path):
    """A batch cut short right after a bitmap of ones and its padding ends in the marker's
    eight bytes, ff ff ff ff 00 00 00 00: it is the last message, and it runs past the end
    of the file, so the tail is torn, not a closed file damaged later."""
    schema = pa.schema([("ok", pa.bool_()), ("n", pa.int64())])
    ones = pa.RecordBatch.from_arrays([pa.array([True] * 32), pa.array([7] * 32, pa.int64())], schema=schema)
    log = SegmentLog.open(tmp_path, schema, SegmentPolicy())
    for _ in range(3):
        log.append([stamp(ones, log.next_seq)])
    log.close()
    path = next(tmp_path.glob("*.arrow"))
    whole = path.read_bytes()[: -len(EOS)]  # three batches, no marker
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_batch(ones, custom_metadata={b"quiver.seq": b"3"})
    stream = sink.getvalue().to_pybytes()[: -len(EOS)]
    fourth = stream[stream.index(b"\xff\xff\xff\xff", 8) :]  # its record batch message
    cut = fourth.rindex(EOS) + len(EOS)  # after the bool column's ones and padding
    assert cut < len(fourth)  # the int64 column is not there yet: torn
    path.write_bytes(whole + fourth[:cut])
    log = SegmentLog.open(tmp_path, schema, SegmentPolicy())
    assert log.next_seq == 3 and [seq_of(b) for b in log.read()] == [0, 1, 2]
    log.close()
