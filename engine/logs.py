"""Structured logs: one line per event, ``time level logger event key=value ...``.

Log calls elsewhere name the event first and its facts as ``key=value`` pairs, so lines
can be grepped and parsed without a JSON dependency. uvicorn's own chatter is kept at
warning level unless Quiver runs at debug.

A log call never blocks the event loop on stderr. Records go to a bounded queue that a
writer thread empties onto file descriptor 2. Written in place, a line waits on whatever
reads stderr: a pipe its reader does not drain (a supervisor, a test harness reading only
at the end) fills at 64 KiB, and then every connection that logs its close would freeze
the service. When the queue is full, records are dropped and counted, and the next line
written says how many (``logs_dropped``).
"""

from __future__ import annotations

import logging
import os
import queue
import time
from logging.handlers import QueueHandler, QueueListener

#: Records queued for the writer before new ones are dropped (about 2 MB of lines).
QUEUE_RECORDS = 10_000

_writer: _Writer | None = None


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging API)
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


class _Enqueue(QueueHandler):
    """Hands records to the writer thread; a full queue drops them (counted), never waits."""

    def __init__(self, records: queue.Queue) -> None:
        super().__init__(records)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _FdLines(logging.Handler):
    """Writes each record as one line with ``os.write``: no Python-level stream lock, which a
    write blocked on a full pipe would hold into interpreter shutdown."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def createLock(self) -> None:  # noqa: N802 (logging API)
        # one writer thread emits; a lock held by a write blocked on a full pipe would
        # hang logging.shutdown() at exit
        self.lock = None  # type: ignore[assignment]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass  # stderr is gone: nowhere left to say so


class _Writer(QueueListener):
    def __init__(self, records: queue.Queue, handler: _FdLines, source: _Enqueue) -> None:
        super().__init__(records, handler)
        self.source = source
        self._reported = 0

    def handle(self, record: logging.LogRecord) -> None:
        dropped = self.source.dropped
        if dropped != self._reported:
            note = f"logs_dropped count={dropped - self._reported} reason=stderr was not read as fast as lines came"
            super().handle(
                logging.makeLogRecord({"name": "quiver.logs", "levelno": 30, "levelname": "WARNING", "msg": note})
            )
            self._reported = dropped
        super().handle(record)


def configure(level: str = "info") -> None:
    """Send Quiver's logs to stderr at ``level`` (debug, info, warning, error)."""
    global _writer
    if _writer is None:
        records: queue.Queue = queue.Queue(QUEUE_RECORDS)
        lines = _FdLines(2)
        lines.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        _writer = _Writer(records, lines, _Enqueue(records))
        _writer.start()  # a daemon thread: it never holds the process open
    handler = _writer.source
    root = logging.getLogger("quiver")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers[:] = [handler]
        uv.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
        uv.propagate = False


def flush(timeout: float = 2.0) -> None:
    """Wait until every queued line is written, or ``timeout`` passes (stderr may be a pipe
    that nobody reads; the process exits anyway, and those lines are lost)."""
    writer = _writer
    if writer is None:
        return
    deadline = time.monotonic() + timeout
    while writer.queue.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.005)
