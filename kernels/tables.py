"""The array layout shared by engine/schema.py (which builds it) and the parse kernels.

A schema reaches the kernels as ``SchemaTables``: one entry per declared field in each
array, plus byte tables for names and enum values. A batch's results come back in
``BatchColumns``: one row per output slot, one column per message. Both are namedtuples of
arrays so Numba compiles one signature for every schema.
"""

from collections import namedtuple

# Field kinds: how the kernel reads a value and where it stores it.
KIND_INT = 0  # int8..int64 and uint8..uint32: int64 slot, bounds in int_lo/int_hi
KIND_UINT64 = 1  # uint64: int64 slot holding the bits, bounds in uint_lo/uint_hi
KIND_FLOAT = 2  # float64: float slot (+ span slot for the exact fallback)
KIND_FLOAT32 = 3  # float32: as float64, then checked to fit float32
KIND_BOOL = 4  # int64 slot, 0/1
KIND_STRING = 5  # span slot (decoded length)
KIND_ENUM = 6  # int64 slot holding the dictionary index
KIND_BINARY = 7  # span slot (base64 text, decoded length)
KIND_JSON = 8  # span slot (raw value text)
KIND_TIMESTAMP = 9  # int64 slot, ticks of `unit` per second
KIND_DATE = 10  # int64 slot, days since epoch

# Per-field value states in BatchColumns.state
STATE_ABSENT = 0
STATE_NULL = 1
STATE_VALUE = 2
STATE_FLOAT_FALLBACK = 3  # a float the kernel left for the exact fallback

SchemaTables = namedtuple(
    "SchemaTables",
    [
        "kind",  # int64[K]
        "slot",  # int64[K] row in ints / floats
        "span_slot",  # int64[K] row in span_start/span_end/span_len, or -1
        "required",  # uint8[K]
        "nullable",  # uint8[K]
        "int_lo",  # int64[K]
        "int_hi",  # int64[K]
        "uint_lo",  # uint64[K]
        "uint_hi",  # uint64[K]
        "float_lo",  # float64[K]
        "float_hi",  # float64[K]
        "min_len",  # int64[K] characters for strings, bytes for binary
        "max_len",  # int64[K]
        "unit",  # int64[K] timestamp ticks per second
        "frac_digits",  # int64[K] log10(unit)
        "name_bytes",  # uint8[*] UTF-8 field names, concatenated
        "name_off",  # int64[K+1]
        "enum_bytes",  # uint8[*] UTF-8 enum strings, concatenated
        "enum_off",  # int64[V+1] offsets of each enum string
        "enum_first",  # int64[K+1] field f's strings are enum_first[f]:enum_first[f+1]
        "int_enum",  # int64[*] allowed integers
        "int_enum_first",  # int64[K+1] field f's integers are int_enum_first[f]:[f+1]
        "options",  # int64[2]: reject_unknown, max_depth
    ],
)
OPT_REJECT_UNKNOWN = 0
OPT_MAX_DEPTH = 1

BatchColumns = namedtuple(
    "BatchColumns",
    [
        "state",  # uint8[K, n]
        "ints",  # int64[Ki, n]
        "floats",  # float64[Kf, n]
        "span_start",  # int64[Ks, n]
        "span_end",  # int64[Ks, n]
        "span_len",  # int64[Ks, n] decoded/output byte length
        "error",  # int64[n] error code (0: accepted)
        "error_field",  # int64[n] field index, NO_FIELD or UNKNOWN_KEY
        "error_pos",  # int64[n] byte position of the fault inside the message
        "error_key_start",  # int64[n] unknown key span (absolute), for UNKNOWN_KEY
        "error_key_end",  # int64[n]
    ],
)
