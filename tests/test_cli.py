"""The quiver command: check and convert, run as a real subprocess and in process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
streams:
  ev:
    fields:
      id:   {type: int64, required: true}
      name: {type: string}
    batch: {max_messages: 3, max_bytes: 1KiB}
limits: {max_message_bytes: 200}
"""


@pytest.fixture()
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def _read(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".arrows":
        return pa.ipc.open_stream(path.read_bytes()).read_all()
    return pa.ipc.open_file(path).read_all()


def test_check_prints_the_resolved_schema(capsys):
    assert main(["check", "-c", str(ROOT / "configs/examples/logs.yaml")]) == 0
    out = capsys.readouterr().out
    assert "stream logs" in out and "config ok" in out and "timestamp" in out


def test_check_reports_bad_config_with_key_path(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("streams:\n  ev:\n    fields:\n      price: {type: flaot}\n")
    assert main(["check", "-c", str(bad)]) == 2
    assert "streams.ev.fields.price.type" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".arrow", ".arrows", ".parquet"])
def test_convert_files_across_arena_refills(small_config, tmp_path, suffix, capsys):
    # 1 KiB arena, 3 messages per batch: many refills, lines split across reads and files
    lines = [f'{{"id": {i}, "name": "n{i}"}}' for i in range(200)]
    lines[17] = '{"id": "x"}'
    lines[50] = '{"id": 50, "name": "' + "y" * 300 + '"}'  # longer than max_message_bytes
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    first.write_text("\n".join(lines[:120]))  # no final newline: still a message
    second.write_text("\r\n".join(lines[120:]) + "\r\n\r\n")
    out, rej = tmp_path / f"out{suffix}", tmp_path / "rej.arrow"
    assert (
        main(["convert", "-q", "-c", str(small_config), str(first), str(second), "-o", str(out), "--rejects", str(rej)])
        == 0
    )
    table = _read(out)
    assert table.column("id").to_pylist() == [i for i in range(200) if i not in (17, 50)]
    dead = _read(rej).to_pylist()
    assert [(d["index"], d["error"]) for d in dead] == [(17, "type_mismatch"), (50, "too_large")]
    data = first.read_bytes()
    assert dead[0]["offset"] == data.index(b'{"id": "x"}') and dead[0]["raw"] == b'{"id": "x"}'
    summary = capsys.readouterr().out
    assert "200 messages, 198 accepted, 2 rejected" in summary and "rejected too_large: 1" in summary


def test_convert_line_longer_than_the_arena_is_skipped(small_config, tmp_path):
    huge = '{"id": 1, "name": "' + "z" * 200_000 + '"}'
    src = tmp_path / "in.ndjson"
    src.write_text('{"id": 0}\n' + huge + '\n{"id": 2}\n')
    out, rej = tmp_path / "o.arrow", tmp_path / "r.arrow"
    assert main(["convert", "-q", "-c", str(small_config), str(src), "-o", str(out), "--rejects", str(rej)]) == 0
    assert _read(out).column("id").to_pylist() == [0, 2]
    dead = _read(rej).to_pylist()
    assert len(dead) == 1 and dead[0]["error"] == "too_large" and dead[0]["index"] == 1
    assert dead[0]["raw"].startswith(b'{"id": 1, "name": "zzz') and len(dead[0]["raw"]) < len(huge)


def test_the_command_as_installed_carries_the_embedded_default(tmp_path):
    # outside the checkout, `python -m engine.cli` is the installed package (in CI, the
    # wheel): its default config must have been shipped inside it. `check` compiles no kernel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "check"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stream events" in proc.stdout and "config ok" in proc.stdout


def test_convert_sample_on_the_embedded_default_from_a_subprocess(tmp_path):
    out, rej = tmp_path / "events.arrow", tmp_path / "rejects.arrow"
    # this checkout's code, whatever the working directory: an installed copy of the package
    # would have a Numba cache of its own and compile every kernel again (5 min in CI)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "convert", "--sample", "3000", "-o", str(out), "--rejects", str(rej)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    accepted, rejected = _read(out).num_rows, _read(rej).num_rows
    assert accepted + rejected == 3000 and rejected == 30
    assert f"3000 messages, {accepted} accepted, 30 rejected" in proc.stdout


def test_convert_reads_stdin(small_config, tmp_path):
    out = tmp_path / "o.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "convert", "-q", "-c", str(small_config), "-", "-o", str(out)],
        input=b'{"id": 1}\n{"id": 2, "name": "b"}\n',
        capture_output=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).to_pylist() == [{"id": 1, "name": None}, {"id": 2, "name": "b"}]


def test_convert_refuses_unknown_stream(small_config, tmp_path, capsys):
    assert (
        main(["convert", "-c", str(small_config), "--stream", "nope", "--sample", "1", "-o", str(tmp_path / "x.arrow")])
        == 2
    )
    assert "--stream: expected one of ['ev']" in capsys.readouterr().err


def test_convert_refuses_outputs_that_would_destroy_inputs_or_each_other(small_config, tmp_path, capsys):
    src = tmp_path / "in.arrow"  # NDJSON under a name an output could have
    src.write_bytes(b'{"id": 1, "name": "a"}\n')
    alias = tmp_path / "sub" / ".." / "in.arrow"
    (tmp_path / "sub").mkdir()
    cases = [
        (["-o", str(alias)], "-o:", "is also an input"),
        (["-o", str(tmp_path / "o.arrow"), "--rejects", str(src)], "--rejects:", "is also an input"),
        (["-o", "-", "--rejects", "-"], "--rejects:", "is also the output"),
        (["-o", str(tmp_path / "o.arrow"), "--rejects", str(tmp_path / "o.arrow")], "--rejects:", "also the output"),
        (["-o", str(tmp_path / "o.csv")], "o.csv:", "expected an output ending in .arrow, .arrows or .parquet"),
        (["-o", str(tmp_path / "o.arrow"), "--rejects", str(tmp_path / "r")], "/r:", "expected an output ending"),
    ]
    for extra, where, what in cases:
        assert main(["convert", "-q", "-c", str(small_config), str(src), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert where in err and what in err, (extra, err)
    assert src.read_bytes() == b'{"id": 1, "name": "a"}\n'  # untouched
    assert not (tmp_path / "o.arrow").exists()  # refused before anything was opened


def test_a_conversion_that_fails_leaves_no_output_and_says_why(tmp_path, capsys):
    """Parquet has no seconds unit: a valid timestamp[s] past +-9.2e15 s (an epoch in ns sent
    to a seconds field) overflows milliseconds. The run fails with the reason, and neither
    output exists, where a footerless file would look like a result."""
    config = tmp_path / "ts.yaml"
    config.write_text('streams:\n  ev:\n    fields:\n      ts: {type: "timestamp[s]"}\n')
    src = tmp_path / "in.ndjson"
    src.write_bytes(b'{"ts": 1732579200}\n{"ts": 1732579200000000000}\n{"ts": "x"}\n')
    out, rejects = tmp_path / "o.parquet", tmp_path / "r.parquet"
    assert main(["convert", "-q", "-c", str(config), str(src), "-o", str(out), "--rejects", str(rejects)]) == 1
    err = capsys.readouterr().err
    assert "Parquet stores timestamp[s] in milliseconds" in err and "1732579200000000000" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson", "ts.yaml"]
    # the same input converts to Arrow IPC, which keeps seconds
    assert main(["convert", "-q", "-c", str(config), str(src), "-o", str(tmp_path / "o.arrow")]) == 0
    assert _read(tmp_path / "o.arrow").column("ts").cast(pa.int64()).to_pylist() == [1732579200, 1732579200000000000]


def test_config_paths_are_files_whatever_their_name(tmp_path, capsys):
    assert main(["check", "-c", str(tmp_path / "missing.conf")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    assert main(["check", "-c", ""]) == 2
    assert "-c: expected a config file path" in capsys.readouterr().err
    other = tmp_path / "quiver.conf"
    other.write_text("streams:\n  ev:\n    fields: {a: {type: int64}}\nkernels: {threads: 4096}\n")
    assert main(["check", "-c", str(other)]) == 0
    # a config from a bigger machine: more kernel threads than cores means all of them
    assert main(["convert", "-q", "-c", str(other), "--sample", "5", "-o", str(tmp_path / "x.arrow")]) == 0


def test_nonsense_counts_and_ranges_are_usage_errors(small_config, tmp_path, capsys):
    out = str(tmp_path / "x.arrow")
    assert main(["convert", "-q", "-c", str(small_config), "--sample", "0", "-o", out]) == 2
    assert "--sample: expected a number of messages" in capsys.readouterr().err
    for flags, said in (
        (["--from", "2", "--to", "1"], "--from 2 is after --to 1"),
        (["--from", "-5"], "--from: expected a seq"),
    ):
        assert main(["export", "-c", str(small_config), "--stream", "ev", *flags, "-o", out]) == 2
        assert said in capsys.readouterr().err
