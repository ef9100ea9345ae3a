"""Output memory: the numpy arrays that become a batch's Arrow buffers, from Arrow's pool.

A batch's column buffers live as long as its consumers hold the batch, so they cannot be
recycled by hand like the per-message bookkeeping (parser._Workspace). Taken from numpy or
from inside a kernel they come from glibc malloc, which serves large blocks from fresh
mmap pages: a 50 MB column took 30 ms of page faults to fill, as long as parsing the
bytes behind it. Arrow's default pool (mimalloc in the pyarrow wheels) keeps freed blocks
for reuse, so the same buffer costs about 0.3 ms once a first batch has been freed, and
pyarrow's own buffers share the pool. Arrays returned here are writable, 64-byte aligned
(Arrow's alignment) and hold their pool buffer alive through ``.base``.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa


def empty(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised array from Arrow's default memory pool."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int | np.integer) else shape
    nbytes = math.prod(shape) * dtype.itemsize
    return np.frombuffer(pa.allocate_buffer(nbytes), dtype).reshape(shape)
