"""The faults: what a :class:`~securesess.testing.FaultyStream` does to the bytes, and where.

Each fault is placed at a byte *offset* of one direction (the n-th byte
this side sends, or receives), so a test can aim at a frame, a field, or
every position in turn, and get the same damage on every run:

========================  =======================================================
:class:`FlipBits`         XOR bytes at the offsets with a mask (default: the low bit)
:class:`Drop`             remove ``length`` bytes
:class:`Duplicate`        deliver ``length`` bytes twice
:class:`Reorder`          swap ``length`` bytes with the ``length`` bytes after them
:class:`Delay`            pause for ``seconds`` before the byte at the offset
:class:`Truncate`         a clean end of stream (FIN) instead of the byte at the offset
:class:`Cut`              break the connection (a reset) instead of the byte at the offset
:class:`Stall`            deliver nothing from the offset on, and never end
========================  =======================================================

How a direction applies them is :mod:`securesess.testing._damage`; the
stream wrapper that puts them between an endpoint and its transport is
:mod:`securesess.testing._faulty_stream`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "Cut",
    "Delay",
    "Drop",
    "Duplicate",
    "Fault",
    "FlipBits",
    "RangeFault",
    "Reorder",
    "Stall",
    "StopFault",
    "Truncate",
    "random_flips",
    "span",
]


@dataclass(frozen=True, slots=True)
class FlipBits:
    """XOR the byte at each offset in ``at`` with ``mask``."""

    at: int | tuple[int, ...]
    mask: int = 0x01

    def __post_init__(self) -> None:
        if not 1 <= self.mask <= 0xFF:
            raise ValueError("mask must be 1 to 255: a flip that changes nothing is no fault")

    @property
    def offsets(self) -> tuple[int, ...]:
        return (self.at,) if isinstance(self.at, int) else self.at


@dataclass(frozen=True, slots=True)
class Drop:
    """Remove the ``length`` bytes at ``at``."""

    at: int
    length: int = 1


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Deliver the ``length`` bytes at ``at`` twice in a row."""

    at: int
    length: int = 1


@dataclass(frozen=True, slots=True)
class Reorder:
    """Swap the ``length`` bytes at ``at`` with the ``length`` bytes after them."""

    at: int
    length: int = 1


@dataclass(frozen=True, slots=True)
class Delay:
    """Pause ``seconds`` before delivering the byte at ``at``."""

    at: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Truncate:
    """End the stream cleanly (as a FIN) just before the byte at ``at``."""

    at: int


@dataclass(frozen=True, slots=True)
class Cut:
    """Break the connection (as a reset) just before the byte at ``at``."""

    at: int


@dataclass(frozen=True, slots=True)
class Stall:
    """Deliver nothing from ``at`` on, and never end: the peer waits."""

    at: int


Fault: TypeAlias = FlipBits | Drop | Duplicate | Reorder | Delay | Truncate | Cut | Stall
# The faults that cover a range of bytes, and those that end a direction.
RangeFault: TypeAlias = Drop | Duplicate | Reorder
StopFault: TypeAlias = Truncate | Cut | Stall


def random_flips(count: int, *, end: int, start: int = 0, seed: int | str | bytes = 0) -> FlipBits:
    """``count`` single-bit flips at distinct offsets in ``[start, end)``, repeatable by seed."""
    chooser = random.Random(seed)
    offsets = sorted(chooser.sample(range(start, end), count))
    # One bit, the same in every byte: a failing test names the seed.
    return FlipBits(tuple(offsets), 1 << chooser.randrange(8))


def span(fault: RangeFault) -> tuple[int, int]:
    """The stream offsets ``fault`` covers: from its first byte to just past its last."""
    size = 2 * fault.length if isinstance(fault, Reorder) else fault.length
    return fault.at, fault.at + size
