"""Shared fixtures: parsers are built once per schema (their kernels compile once per process)."""

from __future__ import annotations

import pytest

import engine

ALL_TYPES_YAML = """
streams:
  all:
    unknown_fields: ignore
    fields:
      i8:   {type: int8}
      i64:  {type: int64, min: -1000000000000, max: 1000000000000}
      u64:  {type: uint64}
      u16:  {type: uint16, enum: [1, 2, 65535]}
      f64:  {type: float64}
      f32:  {type: float32}
      pos:  {type: float64, min: 0, max: 100}
      b:    {type: bool}
      s:    {type: string, min_length: 1, max_length: 5}
      e:    {type: string, enum: [red, "gr\\u00fcn", blue]}
      bin:  {type: binary, max_length: 8}
      j:    {type: json}
      d:    {type: date32}
      ts:   {type: "timestamp[ms]"}
      tus:  {type: "timestamp[us, tz=UTC]", min: "2000-01-01T00:00:00Z"}
      req:  {type: int64, required: true}
limits: {max_message_bytes: 4KiB, max_depth: 8}
"""


@pytest.fixture(scope="session")
def all_types_parser() -> engine.Parser:
    return engine.Parser(engine.load_config(ALL_TYPES_YAML).streams["all"])


@pytest.fixture(scope="session")
def events_config() -> engine.Config:
    from engine.cli import default_config_text

    return engine.load_config(default_config_text())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn, inside the engine, runs on asyncio
