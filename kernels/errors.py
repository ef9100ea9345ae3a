"""Dead-letter error codes: the stable numbers kernels write and the names users see.

Codes are small integers so kernels can store one per message in an int8 array; the
names are part of Quiver's public contract (documented in README.md) and never change.
Syntax-level codes (the message is not one well-formed JSON object) outrank schema-level
codes when a message has several faults.
"""

OK = 0
INVALID_JSON = 1
NOT_AN_OBJECT = 2
MISSING_REQUIRED = 3
TYPE_MISMATCH = 4
OUT_OF_RANGE = 5
NOT_IN_ENUM = 6
TOO_LONG = 7
TOO_SHORT = 8
INVALID_UTF8 = 9
INT_OVERFLOW = 10
DUPLICATE_FIELD = 11
UNKNOWN_FIELD = 12
TOO_DEEP = 13
TOO_LARGE = 14
INTERNAL_ERROR = 15
TRUNCATED = 16  # set by the engine, not the kernels: a frame its producer ended early

ERROR_NAMES: tuple[str, ...] = (
    "ok",
    "invalid_json",
    "not_an_object",
    "missing_required",
    "type_mismatch",
    "out_of_range",
    "not_in_enum",
    "too_long",
    "too_short",
    "invalid_utf8",
    "int_overflow",
    "duplicate_field",
    "unknown_field",
    "too_deep",
    "too_large",
    "internal_error",
    "truncated",
)

#: Not an error: the verdict of a line holding only whitespace, which is skipped and counted,
#: never a message (only parse_lines writes it; the engine drops such lines before reporting).
BLANK_LINE = 127

# Field index markers stored beside an error code.
NO_FIELD = -1  # the fault is not tied to a field (syntax, top level)
UNKNOWN_KEY = -2  # the fault is an unknown key; its span is stored separately
