"""Helpers for testing code that uses securesess, in the style of trio.testing.

- :func:`secure_stream_pair`: a connected, handshaken pair in memory.
- :class:`FaultyStream` and its faults: put a bad network between two
  endpoints (flipped bits, dropped, duplicated or reordered bytes, delays,
  truncation, cuts, stalls) at chosen byte offsets, and record what passed.
"""

from securesess.testing._faults import (
    Cut,
    Delay,
    Drop,
    Duplicate,
    Fault,
    FlipBits,
    Reorder,
    Stall,
    Truncate,
    random_flips,
)
from securesess.testing._faulty_stream import FaultyStream
from securesess.testing._pairs import secure_stream_pair

__all__ = [
    "Cut",
    "Delay",
    "Drop",
    "Duplicate",
    "Fault",
    "FaultyStream",
    "FlipBits",
    "Reorder",
    "Stall",
    "Truncate",
    "random_flips",
    "secure_stream_pair",
]
