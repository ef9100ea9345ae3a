"""Slots of the small int64 status vector that scanning kernels fill beside their return value.

Numba functions return one position (or -1 on a fault); the details a caller may need —
the fault's code and byte position, a string's decoded length, the first schema error of
the message — travel in one preallocated vector per worker chunk, so nothing is
allocated per message.
"""

ST_CODE = 0  # syntax fault code that made a scanner return -1
ST_POS = 1  # absolute byte position of that fault
ST_DLEN = 2  # scan_string: decoded UTF-8 byte length of the string's content
ST_NCHARS = 3  # scan_string: number of characters (code points) in the string
ST_ISINT = 4  # scan_number: 1 when the literal has no fraction and no exponent
ST_SEM_CODE = 5  # first schema-level error of the message (0: none yet)
ST_SEM_POS = 6  # its absolute byte position
ST_SEM_FIELD = 7  # its field index (or NO_FIELD / UNKNOWN_KEY)
ST_SEM_KEY_START = 8  # for UNKNOWN_KEY: the key's raw span
ST_SEM_KEY_END = 9
ST_OBJECTS = 10  # objects opened so far in the message (serial numbers for duplicate checks)
ST_LONE_SURROGATE = 11  # position of the message's first lone surrogate escape, or -1
ST_SEM_KEY_LEN = 12  # ... and its decoded length
ST_LF_ENDS = 13  # 1 under newline framing: an LF ends the message (never whitespace in it)
ST_SEEN = 14  # bit f set: declared field f (f < SEEN_BITS) appeared in the message
ST_REQUIRED = 15  # bit f set: declared field f (f < SEEN_BITS) is required
ST_SIZE = 16
SEEN_BITS = 63  # fields tracked in the ST_SEEN bitmask; later ones by their value state
