"""The array layout shared by engine/schema.py (which builds it) and the parse kernels.

A schema reaches the kernels as a handful of packed arrays (``SchemaTables``): one row per
declared field in ``fields`` (int64 columns named F_*), float and uint64 bounds beside it,
and two pools — ``text`` for field names and enum strings, ``lists`` for enum string spans
and allowed integers. A batch's results come back in ``BatchColumns``. Few, packed arrays
matter: every array a Numba function receives costs reference counting on each call.
"""

from collections import namedtuple

# Field kinds: how the kernel reads a value and where it stores it.
KIND_INT = 0  # int8..int64 and uint8..uint32: int64 slot, bounds in F_INT_LO/F_INT_HI
KIND_UINT64 = 1  # uint64: int64 slot holding the bits, bounds in uint_bounds
KIND_FLOAT = 2  # float64: float slot (+ span slot for the exact fallback)
KIND_FLOAT32 = 3  # float32: as float64, then checked to fit float32
KIND_BOOL = 4  # int64 slot, 0/1
KIND_STRING = 5  # span slot (decoded length)
KIND_ENUM = 6  # int64 slot holding the dictionary index
KIND_BINARY = 7  # span slot (base64 text, decoded length)
KIND_JSON = 8  # span slot (raw value text)
KIND_TIMESTAMP = 9  # int64 slot, ticks of F_UNIT per second
KIND_DATE = 10  # int64 slot, days since epoch

# Columns of SchemaTables.fields
F_KIND = 0
F_SLOT = 1  # row in ints / floats, or -1
F_SPAN = 2  # row in spans, or -1
F_REQUIRED = 3
F_NULLABLE = 4
F_INT_LO = 5
F_INT_HI = 6
F_MIN_LEN = 7  # characters for strings, bytes for binary
F_MAX_LEN = 8
F_UNIT = 9  # timestamp ticks per second
F_FRAC_DIGITS = 10  # log10(F_UNIT)
F_NAME_START = 11  # the field's UTF-8 name is text[F_NAME_START:F_NAME_END]
F_NAME_END = 12
F_ENUM_FIRST = 13  # enum string k is text[lists[2k]:lists[2k+1]], k in [F_ENUM_FIRST, F_ENUM_LAST)
F_ENUM_LAST = 14
F_INT_ENUM_FIRST = 15  # allowed integers are lists[F_INT_ENUM_FIRST:F_INT_ENUM_LAST]
F_INT_ENUM_LAST = 16
F_NAME_PLAIN = 17  # 1 when the name needs no JSON escaping (it can be matched byte for byte)
F_COLUMNS = 18

# Per-field value states in BatchColumns.state
STATE_ABSENT = 0
STATE_NULL = 1
STATE_VALUE = 2
STATE_FLOAT_FALLBACK = 3  # a float the kernel left for the exact fallback

# Last index of BatchColumns.spans: one write stream per span slot, not three, and the
# gather reads start and end from one cache line
SPAN_START = 0
SPAN_END = 1
SPAN_LEN = 2  # decoded / output byte length

# Rows of BatchColumns.errors
ERR_CODE = 0  # 0: accepted
ERR_FIELD = 1  # field index, NO_FIELD or UNKNOWN_KEY
ERR_POS = 2  # byte position of the fault inside the message
ERR_KEY_START = 3  # unknown key span (absolute), for UNKNOWN_KEY
ERR_KEY_END = 4
ERR_KEY_LEN = 5  # its decoded length
ERR_ROWS = 6

SchemaTables = namedtuple(
    "SchemaTables",
    [
        "fields",  # int64[K, F_COLUMNS]
        "float_bounds",  # float64[K, 2] min, max
        "uint_bounds",  # uint64[K, 2] min, max
        "text",  # uint8[*] names and enum strings
        "lists",  # int64[*] enum string spans and allowed integers
        "reject_unknown",  # bool
        "max_depth",  # int
    ],
)

BatchColumns = namedtuple(
    "BatchColumns",
    [
        "state",  # uint8[n, K]: a message's field states side by side, one write stream
        "ints",  # int64[Ki, n]
        "floats",  # float64[Kf, n]
        "spans",  # int64[Ks, n, 3]: a value's start, end and length side by side
        "errors",  # int64[ERR_ROWS, n]
    ],
)
