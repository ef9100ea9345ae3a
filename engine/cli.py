"""The ``quiver`` command line: ``serve``, ``convert``, ``export`` and ``check``.

A thin layer over the public API: it loads the config (the embedded default unless ``-c``
names one), then runs an ``Engine`` (serve) or a ``Parser`` (convert) and prints what
happened.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from engine.config import Config, ConfigError, load_config


def default_config_text() -> str:
    """The embedded default config (configs/default.yaml, shipped inside the package)."""
    packaged = resources.files("engine") / "default.yaml"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # running from a source checkout
    return (Path(__file__).resolve().parent.parent / "configs" / "default.yaml").read_text(encoding="utf-8")


def _load(path: str | None) -> Config:
    if path is None:
        return load_config(default_config_text())
    if not path:
        raise ConfigError("-c: expected a config file path; got ''")
    return load_config(Path(path))  # always a file here, whatever its name looks like


def _pick_stream(cfg: Config, name: str | None) -> str:
    if name is None:
        if len(cfg.streams) != 1:
            raise ConfigError(f"--stream: the config has several streams, name one of {sorted(cfg.streams)}")
        return next(iter(cfg.streams))
    if name not in cfg.streams:
        raise ConfigError(f"--stream: expected one of {sorted(cfg.streams)}; got {name!r}")
    return name


def _threads(cfg: Config) -> int | None:
    import numba

    return cfg.kernels.threads_here(numba.config.NUMBA_NUM_THREADS)


def _check_outputs(inputs: list[str], output: str, rejects: str | None) -> None:
    """Refuse outputs that would destroy an input or each other before anything is opened
    (opening an output truncates it: converting a file onto itself would read nothing)."""
    from engine.convert import output_format

    outs = [("-o", output)] + ([("--rejects", rejects)] if rejects else [])
    for _, out in outs:
        output_format(out)
    if rejects is not None and (rejects == output == "-" or _same_file(rejects, output)):
        raise ConfigError(f"--rejects: {rejects!r} is also the output (-o); give each its own file")
    for flag, out in outs:
        for given in inputs:
            if _same_file(out, given):
                raise ConfigError(f"{flag}: {out!r} is also an input; the output would overwrite it")


def _same_file(a: str, b: str) -> bool:
    if "-" in (a, b):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    for name, stream in cfg.streams.items():
        from engine.schema import compile_schema

        schema = compile_schema(stream).arrow_schema
        print(f"stream {name}: format {stream.format}, unknown fields {stream.unknown_fields}")
        print("  " + schema.to_string(show_schema_metadata=False).replace("\n", "\n  "))
        b = stream.batch
        print(
            f"  batch: {b.max_messages} messages / {int(b.max_bytes)} bytes / {b.linger_ms} ms, arenas: {stream.arenas}"
        )
        lim = stream.limits
        print(f"  limits: max_message_bytes {int(lim.max_message_bytes)}, max_depth {lim.max_depth}")
        if cfg.data_dir is not None:
            d = stream.durability if isinstance(stream.durability, str) else f"every {stream.durability.interval_ms} ms"
            print(f"  segments: {cfg.data_dir}/{name}, fsync: {d}")
    for listener in cfg.listen:
        target = f" -> {listener.stream} ({listener.framing})" if listener.kind == "tcp" else ""
        print(f"listen {listener.kind} {listener.host}:{listener.port}{target}")
    print("config ok")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import pyarrow as pa  # noqa: F401  (fail early if the install is broken)

    from engine.convert import LineConverter, open_batch_writer
    from engine.parser import Parser
    from engine.sample import sample_ndjson

    _check_outputs(args.inputs, args.output, args.rejects)
    cfg = _load(args.config)
    stream = cfg.streams[_pick_stream(cfg, args.stream)]
    parser = Parser(stream, threads=_threads(cfg))
    parser.warm()  # so the summary's MB/s measures conversion, not kernel loading
    if args.sample is not None:
        if args.sample < 1:
            raise ConfigError(f"--sample: expected a number of messages (1 or more); got {args.sample}")
        if args.inputs:
            raise ConfigError("give input files or --sample N, not both")
        inputs = [io.BytesIO(sample_ndjson(stream, args.sample, seed=args.seed))]
        total = inputs[0].getbuffer().nbytes
    else:
        if not args.inputs:
            raise ConfigError("no input: give files (or - for stdin), or --sample N")
        inputs = [sys.stdin.buffer if p == "-" else open(p, "rb") for p in args.inputs]  # noqa: SIM115
        total = sum(os.path.getsize(p) for p in args.inputs if p != "-") if "-" not in args.inputs else None
    out = open_batch_writer(args.output, parser.schema)
    rejects = open_batch_writer(args.rejects, parser.rejects_schema) if args.rejects else None
    progress = None
    if sys.stderr.isatty() and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=total, unit="B", unit_scale=True, desc=stream.name, file=sys.stderr)
    try:
        converter = LineConverter(
            parser,
            on_batch=out.write_batch,
            on_rejects=rejects.write_batch if rejects else (lambda batch: None),
            on_progress=progress.update if progress else None,
        )
        summary = converter.run(inputs)
        out.close()
        if rejects:
            rejects.close()
    except BaseException:
        out.discard()  # no partial file left looking like a result
        if rejects:
            rejects.discard()
        raise
    finally:
        if progress:
            progress.close()
        for f in inputs:
            if f is not sys.stdin.buffer:
                f.close()
    mb = summary.bytes_read / 1e6
    rate = mb / summary.seconds if summary.seconds else 0.0
    lines = [
        f"stream {stream.name}: {summary.received} messages, {summary.accepted} accepted, {summary.rejected} rejected"
        + (f", {summary.blank} blank lines skipped" if summary.blank else ""),
        f"read {mb:.1f} MB in {summary.seconds:.2f} s ({rate:.0f} MB/s) -> {args.output}",
    ]
    for code, count in summary.errors.most_common():
        lines.append(f"  rejected {code}: {count}")
    if summary.rejected and not args.rejects:
        lines.append("  (rejected messages were not kept: pass --rejects FILE to write them)")
    print("\n".join(lines), file=sys.stderr if args.output == "-" else sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Retained batches of a stream's segment log -> one file (the service may be running)."""
    from engine.convert import open_batch_writer
    from engine.outputs.segments import SEQ_KEY, LogError, SegmentLog, SeqOutOfRange

    for flag, seq in (("--from", args.from_seq), ("--to", args.to_seq)):
        if seq is not None and seq < 0:
            raise ConfigError(f"{flag}: expected a seq (0 or more); got {seq}")
    if args.from_seq is not None and args.to_seq is not None and args.from_seq > args.to_seq:
        raise ConfigError(f"--from {args.from_seq} is after --to {args.to_seq}")
    cfg = _load(args.config)
    if cfg.data_dir is None:
        raise ConfigError("data_dir: the config keeps no segments (set a top-level data_dir)")
    name = args.stream
    base = name.removesuffix(".rejects")
    if base not in cfg.streams:
        expected = sorted([*cfg.streams, *(f"{s}.rejects" for s in cfg.streams)])
        raise ConfigError(f"--stream: expected one of {expected}; got {name!r}")
    seglog = SegmentLog.open_readonly(Path(cfg.data_dir) / name)
    if args.from_seq is not None and args.from_seq < seglog.first_seq:
        # as a replay from there is refused (416): a silent start later would look complete
        raise LogError(
            f"{name}: seq {args.from_seq} is no longer retained (retained: {seglog.first_seq}.."
            f"{seglog.next_seq - 1}); export from {seglog.first_seq} or later"
        )
    writer = open_batch_writer(args.output, seglog.schema)  # IPC outputs keep each batch's seq
    batches = rows = 0
    first = last = None
    try:
        for batch in seglog.read(args.from_seq, args.to_seq):
            seq = batch.schema.metadata[SEQ_KEY]
            writer.write_batch(batch.replace_schema_metadata(None), custom_metadata={SEQ_KEY: seq})
            first = int(seq) if first is None else first
            last = int(seq)
            batches += 1
            rows += batch.num_rows
        writer.close()
    except LogError:
        writer.close()  # damage: every batch before it, as a whole file, then the error
        print(f"exported {batches} batches, {rows} rows before the damage -> {args.output}", file=sys.stderr)
        raise
    except SeqOutOfRange as exc:
        writer.discard()
        raise LogError(
            f"{name}: seq {exc.seq} was deleted by retention while it was being exported; "
            "export again, or a later range with --from"
        ) from None
    except BaseException:
        writer.discard()
        raise
    span = (
        f"seq {first}..{last}"
        if batches
        else f"nothing in the retained range {seglog.first_seq}..{seglog.next_seq - 1}"
    )
    print(f"exported {batches} batches ({span}), {rows} rows -> {args.output}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # the ready line reports start-up from here, imports included
    import anyio

    from engine import logs

    cfg = _load(args.config)
    logs.configure(args.log_level or cfg.log_level)
    _tune_glibc_malloc()
    _let_idle_kernel_threads_sleep()
    try:
        code, stops_left_running = anyio.run(_serve, cfg, started, backend="asyncio")
    finally:
        logs.flush()  # a failed start too: its log lines go out before main() reports it
    if stops_left_running:
        # a Flight stop still waits on a client that stopped reading; everything of ours is
        # closed and flushed, so end here instead of in interpreter teardown beside it
        _exit_now(code)
    return code


def _let_idle_kernel_threads_sleep() -> None:
    """Kernel threads that finish a batch sleep at once instead of spinning for the next.

    GNU OpenMP (Numba's ``omp`` layer) spins its idle threads by default, which pays on a
    machine of its own; the service shares its cores with the event loop and producers. At
    full speed on 2 cores, spinning cost 23% more CPU for 9% less throughput (median of 3
    runs each). Read when the OpenMP runtime loads (the first parallel batch, after this);
    an operator's own ``OMP_WAIT_POLICY`` stands.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# glibc malloc.h
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MALLOC_SETTINGS = {  # the environment variable an operator would set, and ours
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 256 << 10),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 32 << 20),
    "MALLOC_TOP_PAD_": (M_TOP_PAD, 16 << 20),
}


def _tune_glibc_malloc() -> None:
    """Large glibc blocks from mmap, given back when freed; the small ones' heap kept.

    A batch's column buffers come from Arrow's memory pool (engine/buffers.py), but numpy
    temporaries (the accepted rows of a batch with rejects, dead letters) and kernel scratch
    still come from glibc. glibc raises its mmap threshold each time a large block is freed
    (up to 32 MiB), after which blocks of that size come from the heap, where a burst of
    large batches leaves fragments that a steady stream never gives back: RSS steps up after
    every burst. A fixed threshold keeps large blocks in mmap, returned to the OS when freed.

    A fixed threshold also freezes the heap's trim threshold at 128 KiB, so the heap gave
    back its free top after almost every batch and faulted the same pages in again for the
    next. Keeping up to 32 MiB of free top (and growing it 16 MiB at a time) took full speed
    from 36 page faults per 1000 messages to 2, and CPU per message down by 6%. The process
    is ours, so this is set in ``quiver serve`` only, not in Engine; an operator's own
    ``MALLOC_*_`` variables (read by glibc at start) stand.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        for variable, (param, value) in MALLOC_SETTINGS.items():
            if variable not in os.environ:
                libc.mallopt(param, value)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


async def _serve(cfg: Config, started: float) -> tuple[int, int]:
    """Serve until SIGINT or SIGTERM: (exit code, Flight stops left running)."""
    import signal

    import anyio

    from engine.service import Engine

    failure: Exception | None = None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            ready, stop = anyio.Event(), anyio.Event()
            tg.start_soon(_watch_signals, signals, ready, stop)
            try:
                async with Engine(cfg) as eng:
                    ready.set()
                    # one write: with PYTHONUNBUFFERED, print() writes the line and its end
                    # apart, and the log thread may write between them to a shared file
                    line = f"quiver ready in {time.perf_counter() - started:.2f}s: " + "  ".join(eng.endpoints)
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                    await stop.wait()
            except Exception as exc:  # noqa: BLE001 - re-raised below, as itself
                # raised out of the task group it would come wrapped in an ExceptionGroup,
                # past main()'s handling of refusals (a locked data_dir, a missing token)
                failure = exc
            tg.cancel_scope.cancel()  # stopped (or failed) in time
    if failure is not None:
        raise failure
    return 0, eng.stops_left_running


async def _watch_signals(signals, ready, stop) -> None:  # noqa: ANN001 - anyio's own types
    """SIGINT or SIGTERM: during start-up (a cold kernel compile takes about a minute), exit 0 at
    once, since nothing was taken yet; once serving, stop (the drain may take up to
    shutdown_timeout and more); a second one during that drain means "now": exit 1 at once.
    Nothing durable is at risk either way: segments survive a kill -9, and a torn tail is
    repaired at the next start."""
    import signal

    log = logging.getLogger("quiver.cli")
    async for signum in signals:
        name = signal.Signals(signum).name
        if not ready.is_set():
            log.info("signal name=%s during start-up action=exiting now", name)
            _exit_now(0)
        if not stop.is_set():
            log.info("signal name=%s", name)
            stop.set()
            continue
        log.warning("signal name=%s again action=exiting now, the shutdown drain unfinished", name)
        _exit_now(1)


def _exit_now(code: int) -> None:
    from engine import logs

    logs.flush()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="quiver", description="Strict, fast NDJSON ingest into Apache Arrow.")
    sub = ap.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ingest service (listeners from the config)")
    serve.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides log_level")
    serve.set_defaults(run=cmd_serve)

    check = sub.add_parser("check", help="validate a config and print the resolved Arrow schemas")
    check.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
    check.set_defaults(run=cmd_check)

    conv = sub.add_parser("convert", help="convert NDJSON files to Arrow IPC or Parquet")
    conv.add_argument("inputs", nargs="*", metavar="INPUT", help="NDJSON files; - reads stdin")
    conv.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
    conv.add_argument("--stream", help="stream to use (needed when the config has several)")
    conv.add_argument(
        "-o",
        "--output",
        required=True,
        help="output: .arrow (IPC file), .arrows (IPC stream), .parquet, or - for stdout",
    )
    conv.add_argument("--rejects", help="write dead letters here (same formats)")
    conv.add_argument("--sample", type=int, metavar="N", help="convert N generated sample messages instead of files")
    conv.add_argument("--seed", type=int, default=0, help="seed for --sample")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    conv.set_defaults(run=cmd_convert)

    exp = sub.add_parser("export", help="write a stream's retained batches (from data_dir) to a file")
    exp.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
    exp.add_argument("--stream", required=True, help="stream name, or NAME.rejects for its dead letters")
    exp.add_argument("--from", dest="from_seq", type=int, metavar="SEQ", help="first seq (default: oldest retained)")
    exp.add_argument("--to", dest="to_seq", type=int, metavar="SEQ", help="last seq, inclusive (default: newest)")
    exp.add_argument("-o", "--output", required=True, help="output: .parquet, .arrow (IPC file), .arrows (IPC stream)")
    exp.set_defaults(run=cmd_export)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from engine.outputs.segments import LogError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        return _fail(f"quiver: {exc}", 2)
    except (LogError, OSError) as exc:
        return _fail(f"quiver: {exc}", 1)
    except MemoryError as exc:
        return _fail(f"quiver: out of memory ({exc}); lower the config's batch.max_bytes or arenas", 1)


def _fail(message: str, code: int) -> int:
    # one write: print() writes the text and its newline apart (with PYTHONUNBUFFERED), and
    # the log thread may write between them
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
