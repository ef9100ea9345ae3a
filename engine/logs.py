"""Structured logs: one line per event, ``time level logger event key=value ...``.

Log calls elsewhere name the event first and its facts as ``key=value`` pairs, so lines
can be grepped and parsed without a JSON dependency. uvicorn's own chatter is kept at
warning level unless Quiver runs at debug.
"""

from __future__ import annotations

import logging
import sys
import time


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging API)
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


def configure(level: str = "info") -> None:
    """Send Quiver's logs to stderr at ``level`` (debug, info, warning, error)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("quiver")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers[:] = [handler]
        uv.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
        uv.propagate = False
