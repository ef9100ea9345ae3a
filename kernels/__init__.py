"""Numba kernels: framing, strict JSON parsing, numbers, strings, validation, gathering.

Pure functions over numpy arrays, compiled with ``nogil=True`` and ``cache=True``; the
batch-level ones run ``parallel=True`` over chunks of messages.
"""
