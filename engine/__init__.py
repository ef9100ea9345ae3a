"""Quiver: strict, fast NDJSON ingest into Apache Arrow.

The public API is small: ``load_config`` reads and validates a YAML config, ``Parser``
turns a stream's raw messages into Arrow record batches plus dead letters, and ``Engine``
serves a config (listeners, batching, live consumers) on the running event loop.
"""

from typing import TYPE_CHECKING, Any

from engine.config import Config, ConfigError, StreamConfig, load_config
from engine.parser import Parser, ParseResult

if TYPE_CHECKING:
    from engine.service import Engine

__all__ = ["Config", "ConfigError", "Engine", "ParseResult", "Parser", "StreamConfig", "load_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # the service pulls in uvicorn and Flight: load it only for those who use it
    if name == "Engine":
        from engine.service import Engine

        return Engine
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
