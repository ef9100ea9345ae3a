"""Quiver: strict, fast NDJSON ingest into Apache Arrow.

The public API is small: ``load_config`` reads and validates a YAML config, ``Parser``
turns a stream's raw messages into Arrow record batches plus dead letters.
"""

from engine.config import Config, ConfigError, StreamConfig, load_config
from engine.parser import Parser, ParseResult

__all__ = ["Config", "ConfigError", "ParseResult", "Parser", "StreamConfig", "load_config"]
__version__ = "0.1.0"
