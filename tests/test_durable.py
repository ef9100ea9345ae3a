"""Durable streams end to end: sequence numbers, replay seams, restarts, HTTP and Flight
replay, acknowledgements under each durability, export."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from engine import Engine, load_config
from engine.cli import main
from engine.outputs.segments import LogError, SeqOutOfRange, seq_of
from tests.live import SERVICE_YAML, column, message

pytestmark = pytest.mark.anyio


def durable_config(data_dir: Path, durability: str = "batch", extra: str = ""):
    text = SERVICE_YAML.replace(
        "    arenas: 3\n",
        f"    arenas: 3\n    durability: {durability}\n    segments: {{max_bytes: 16KiB}}\n{extra}",
    )
    return load_config(text + f"data_dir: {data_dir}\n")


def submission(first: int, n: int, bad_every: int = 0) -> bytes:
    lines = [b"{bad" if bad_every and (first + i) % bad_every == 0 else message(first + i) for i in range(n)]
    return b"\n".join(lines) + b"\n"


async def read_until(sub, last_seq: int) -> list[pa.RecordBatch]:
    out = []
    with anyio.fail_after(30):
        async for batch in sub:
            out.append(batch)
            if seq_of(batch) >= last_seq:
                break
    return out


async def test_seqs_survive_a_restart_and_replay_from_earliest(tmp_path):
    cfg = durable_config(tmp_path)
    async with Engine(cfg) as eng:
        for k in range(5):
            await eng.ingest("events", submission(k * 100, 100, bad_every=7))
        first_run = eng.topics()["events"].next_seq
        rejects_run = eng.topics()["events.rejects"].next_seq
    assert first_run >= 5 and rejects_run >= 5
    async with Engine(cfg) as eng:
        assert eng.topics()["events"].next_seq == first_run  # numbering resumes
        await eng.ingest("events", submission(500, 100))
        got = await read_until(eng.subscribe("events", "earliest"), first_run)
        bad = await read_until(eng.subscribe("events.rejects", 0), rejects_run - 1)
    assert [seq_of(b) for b in got] == list(range(first_run + 1))
    assert sorted(column(got, "seq")) == [s for s in range(600) if s >= 500 or s % 7]
    assert len(column(bad, "index")) == len([s for s in range(500) if s % 7 == 0])


async def test_replay_joins_live_with_no_gap_and_no_duplicate_under_ingest(tmp_path):
    cfg = durable_config(tmp_path, extra="    consumer_queue: 2\n")
    total = 60
    ref_batches: list[pa.RecordBatch] = []
    replays: dict[int, list] = {}

    async def consume(sub, into):
        async for batch in sub:
            into.append(batch)

    async def replay_from(eng, start):
        await anyio.sleep(0.05 * start)
        seq = max(0, eng.topics()["events"].next_seq - 1 - start)
        replays[seq] = []
        await consume(eng.subscribe("events", seq), replays[seq])

    # consumers outside the engine: they end when it stops and ends the topics
    async with anyio.create_task_group() as tg, Engine(cfg) as eng:
        tg.start_soon(consume, eng.subscribe("events"), ref_batches)  # sees every batch live
        for start in (1, 3, 7, 12):
            tg.start_soon(replay_from, eng, start)
        for k in range(total):
            await eng.ingest("events", submission(k * 50, 50))
            await anyio.sleep(0.002)
        await anyio.sleep(0.7)  # every replay has started before the engine stops
    expected = {seq_of(b): column([b], "seq") for b in ref_batches}
    assert sorted(expected) == list(range(len(ref_batches)))
    assert sorted(s for v in expected.values() for s in v) == list(range(total * 50))
    for start, batches in replays.items():
        seqs = [seq_of(b) for b in batches]
        assert seqs == list(range(start, len(ref_batches))), start  # contiguous to the end
        assert all(column([b], "seq") == expected[seq_of(b)] for b in batches)


async def test_a_consumer_reconnecting_at_last_plus_one_sees_every_batch_once(tmp_path):
    cfg = durable_config(tmp_path)
    async with Engine(cfg) as eng:
        for k in range(10):
            await eng.ingest("events", submission(k * 40, 40))
        seen: list[pa.RecordBatch] = []
        nxt = 0
        while nxt < eng.topics()["events"].next_seq:
            sub = eng.subscribe("events", nxt)
            got = await read_until(sub, min(nxt + 2, eng.topics()["events"].next_seq - 1))
            sub.close()  # the consumer goes away, then comes back
            seen.extend(got)
            nxt = seq_of(got[-1]) + 1
            if nxt < 12:  # more arrives while it is away
                await eng.ingest("events", submission(1000 + nxt * 40, 40))
        total = eng.topics()["events"].next_seq
    assert [seq_of(b) for b in seen] == list(range(total))
    ids = column(seen, "seq")
    assert len(ids) == len(set(ids))


async def test_out_of_range_start_is_refused(tmp_path):
    async with Engine(durable_config(tmp_path)) as eng:
        await eng.ingest("events", submission(0, 10))
        nxt = eng.topics()["events"].next_seq
        with pytest.raises(SeqOutOfRange):
            eng.subscribe("events", nxt + 1)
        eng.subscribe("events", nxt).close()  # the next batch: fine


async def test_live_only_streams_still_number_their_batches(tmp_path):
    async with Engine(load_config(SERVICE_YAML)) as eng:
        sub = eng.subscribe("events")
        await eng.ingest("events", submission(0, 10))
        await eng.ingest("events", submission(10, 10))
        got = await read_until(sub, 1)
        assert [seq_of(b) for b in got] == [0, 1]
        with pytest.raises(SeqOutOfRange):  # nothing is retained without a data_dir
            eng.subscribe("events", 0)


async def test_a_data_dir_serves_one_process_at_a_time(tmp_path):
    cfg = durable_config(tmp_path)
    async with Engine(cfg):
        with pytest.raises(LogError, match="in use"):
            async with Engine(cfg):
                pass


@pytest.mark.parametrize("durability", ["none", "batch", "{interval_ms: 30}"])
async def test_post_acknowledgements_under_each_durability(tmp_path, durability):
    cfg = durable_config(tmp_path, durability)
    async with Engine(cfg) as eng:
        url = f"{eng.http[0].url}/v1/streams/events"

        def post(body: bytes) -> dict:
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")) as r:
                return json.load(r)

        receipts = [await anyio.to_thread.run_sync(post, submission(k * 30, 30, bad_every=11)) for k in range(4)]
        log = eng.topics()["events"].log
        assert log is not None and log.next_seq == eng.topics()["events"].next_seq
    assert sum(r["accepted"] + r["rejected"] for r in receipts) == 120
    assert sum(r["rejected"] for r in receipts) == len([s for s in range(120) if s % 11 == 0])
    async with Engine(cfg) as eng:
        got = await read_until(eng.subscribe("events", 0), eng.topics()["events"].next_seq - 1)
    assert sorted(column(got, "seq")) == [s for s in range(120) if s % 11]


async def test_http_replay_with_seq_metadata_and_range_errors(tmp_path):
    async with Engine(durable_config(tmp_path)) as eng:
        for k in range(4):
            await eng.ingest("events", submission(k * 20, 20))
        nxt = eng.topics()["events"].next_seq
        base = f"{eng.http[0].url}/v1/streams/events/arrow"

        def read(query: str, count: int) -> tuple[list, list, str]:
            with urllib.request.urlopen(base + query, timeout=10) as r:
                reader = pa.ipc.open_stream(r)
                got, seqs = [], []
                while len(seqs) < count:
                    batch, meta = reader.read_next_batch_with_custom_metadata()
                    if batch.num_rows:
                        got.append(batch)
                        seqs.append(int(meta[b"quiver.seq"]))
                return got, seqs, r.headers["Quiver-Start-Seq"]

        got, seqs, start = await anyio.to_thread.run_sync(read, "?from=earliest", nxt)
        assert seqs == list(range(nxt)) and start == "0"
        assert sorted(column(got, "seq")) == list(range(80))
        _, seqs, start = await anyio.to_thread.run_sync(read, f"?from={nxt - 1}", 1)
        assert seqs == [nxt - 1] and start == str(nxt - 1)

        def status(query: str) -> tuple[int, dict]:
            try:
                urllib.request.urlopen(base + query, timeout=10)
            except urllib.error.HTTPError as exc:
                return exc.code, json.load(exc)
            raise AssertionError("expected an error")

        code, body = await anyio.to_thread.run_sync(status, f"?from={nxt + 5}")
        assert code == 416 and (body["first_seq"], body["next_seq"]) == (0, nxt)
        code, _ = await anyio.to_thread.run_sync(status, "?from=yesterday")
        assert code == 400
        code, _ = await anyio.to_thread.run_sync(status, "?from=%D9%A3")  # an Arabic-Indic 3
        assert code == 400

        def listing() -> dict:
            with urllib.request.urlopen(f"{eng.http[0].url}/v1/streams", timeout=10) as r:
                return json.load(r)["streams"][0]

        listing = await anyio.to_thread.run_sync(listing)
        assert listing["seq"]["arrow"] == {"first": 0, "next": nxt} and listing["durability"] == "batch"


async def test_flight_replay_ticket_and_retained_range(tmp_path):
    async with Engine(durable_config(tmp_path)) as eng:
        for k in range(3):
            await eng.ingest("events", submission(k * 20, 20))
        nxt = eng.topics()["events"].next_seq
        url = eng.flight[0].url

        def fetch() -> tuple[dict, list, list]:
            client = fl.connect(url)
            info = client.get_flight_info(fl.FlightDescriptor.for_path("events"))
            meta = json.loads(info.app_metadata)
            reader = client.do_get(fl.Ticket(json.dumps({"stream": "events", "from": 1}).encode()))
            chunks, metas = [], []
            while len(chunks) < nxt - 1:
                chunk = reader.read_chunk()
                chunks.append(chunk.data)
                metas.append(chunk.app_metadata.to_pybytes() if chunk.app_metadata else None)
            client.close()
            return meta, chunks, metas

        meta, chunks, metas = await anyio.to_thread.run_sync(fetch)
    assert meta == {"first_seq": 0, "next_seq": nxt}
    # the first chunk carries the enum dictionaries and no app_metadata (see flight.py)
    assert metas == [None, *[str(s).encode() for s in range(2, nxt)]]
    assert sorted(column(chunks, "seq")) == list(range(20, 60))
    assert column(chunks, "kind")[:2] == ["a", "b"]


def _small_segments_config(tmp_path: Path) -> tuple[Path, Path]:
    """A config file whose events roll every 4 KiB (so a few batches make several
    segments), and its data_dir."""
    cfg_path = tmp_path / "q.yaml"
    data_dir = tmp_path / "data"
    text = SERVICE_YAML.replace("    arenas: 3\n", "    arenas: 3\n    segments: {max_bytes: 4KiB}\n")
    cfg_path.write_text(text + f"data_dir: {data_dir}\n")
    return cfg_path, data_dir


async def test_export_writes_retained_batches(tmp_path, capsys):
    cfg_path, data_dir = _small_segments_config(tmp_path)
    async with Engine(load_config(cfg_path)) as eng:
        for k in range(8):
            await eng.ingest("events", submission(k * 50, 50, bad_every=13))
        nxt = eng.topics()["events"].next_seq
    assert len(list((data_dir / "events").glob("*.arrow"))) > 1
    out = tmp_path / "all.parquet"
    assert main(["export", "-c", str(cfg_path), "--stream", "events", "-o", str(out)]) == 0
    assert sorted(pq.read_table(out).column("seq").to_pylist()) == [s for s in range(400) if s % 13]
    part = tmp_path / "part.arrow"
    assert main(["export", "-c", str(cfg_path), "--stream", "events", "--from", "2", "--to", "4", "-o", str(part)]) == 0
    reader = pa.ipc.open_file(part)
    seqs = [int(reader.get_batch_with_custom_metadata(i)[1][b"quiver.seq"]) for i in range(reader.num_record_batches)]
    assert seqs == [2, 3, 4]
    assert "seq 2..4" in capsys.readouterr().err
    rej = tmp_path / "rejects.parquet"
    assert main(["export", "-c", str(cfg_path), "--stream", "events.rejects", "-o", str(rej)]) == 0
    assert pq.read_table(rej).num_rows == len([s for s in range(400) if s % 13 == 0])
    assert nxt > 4
    oldest = sorted((data_dir / "events").glob("*.arrow"))[0]
    oldest.unlink()  # as retention does
    gone = tmp_path / "gone.arrow"
    assert main(["export", "-c", str(cfg_path), "--stream", "events", "--from", "0", "-o", str(gone)]) == 1
    assert "seq 0 is no longer retained" in capsys.readouterr().err and not gone.exists()


async def test_export_keeps_what_came_before_damage_and_reads_past_a_roll_in_progress(tmp_path, capsys):
    cfg_path, data_dir = _small_segments_config(tmp_path)
    async with Engine(load_config(cfg_path)) as eng:
        for k in range(8):
            await eng.ingest("events", submission(k * 50, 50))
        nxt = eng.topics()["events"].next_seq
    files = sorted((data_dir / "events").glob("*.arrow"))
    assert len(files) > 2
    # a roll another process is in the middle of: the newest segment has no schema yet
    (data_dir / "events" / f"{nxt:020d}.arrow").write_bytes(b"")
    out = tmp_path / "all.arrow"
    assert main(["export", "-c", str(cfg_path), "--stream", "events", "-o", str(out)]) == 0
    assert sorted(pa.ipc.open_file(out).read_all().column("seq").to_pylist()) == list(range(400))
    # damage in the second segment: the export is an error, with every batch before it kept
    second = files[1].read_bytes()
    files[1].write_bytes(second[: len(second) // 2])
    part = tmp_path / "part.arrow"
    assert main(["export", "-c", str(cfg_path), "--stream", "events", "-o", str(part)]) == 1
    err = capsys.readouterr().err
    assert files[1].name in err and "before the damage" in err
    kept = pa.ipc.open_file(part).read_all().column("seq").to_pylist()
    assert 0 < len(kept) < 400 and kept == sorted(kept) == list(range(len(kept)))


async def test_an_http_consumer_reconnecting_at_last_plus_one_sees_every_batch_once(tmp_path):
    """Over the real HTTP Arrow stream: read a little, hang up, reconnect with
    ``from=<last seq + 1>`` while producers keep going; every batch exactly once."""
    async with Engine(durable_config(tmp_path)) as eng:
        base = f"{eng.http[0].url}/v1/streams/events/arrow"

        def read(start: str, count: int) -> list[tuple[int, list]]:
            with urllib.request.urlopen(f"{base}?from={start}", timeout=10) as r:
                reader = pa.ipc.open_stream(r)
                got = []
                while len(got) < count:
                    batch, meta = reader.read_next_batch_with_custom_metadata()
                    if batch.num_rows:
                        got.append((int(meta[b"quiver.seq"]), batch.column("seq").to_pylist()))
                return got  # leaving the block hangs up mid-stream

        seen: list[tuple[int, list]] = []
        start = "earliest"
        for k in range(8):
            await eng.ingest("events", submission(k * 30, 30))
            await eng.ingest("events", submission(1000 + k * 30, 30))
            seen += await anyio.to_thread.run_sync(read, start, 2 if k < 7 else 16 - len(seen))
            start = str(seen[-1][0] + 1)
        total = eng.topics()["events"].next_seq
    assert [s for s, _ in seen] == list(range(total)) == list(range(16))
    ids = [i for _, rows in seen for i in rows]
    assert sorted(ids) == sorted([*range(240), *range(1000, 1240)])
