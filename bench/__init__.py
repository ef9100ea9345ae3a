"""Benchmarks for Quiver: seeded NDJSON corpora and parse-throughput comparisons with peers."""
