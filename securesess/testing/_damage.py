"""How one direction of a :class:`~securesess.testing.FaultyStream` applies its faults.

Each direction runs its bytes through a :class:`Damage`, which passes bytes
on as they come, except while a range fault (drop, duplicate, reorder) has
not yet seen all the bytes it covers: it holds those back until the range
is complete or the stream ends, and a Delay inside a range moves to the
range's start. Aim ranges inside one message: a range that runs past what a
side sends before it waits for an answer holds that message back, and the
exchange stalls instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import TypeAlias, final

from securesess.testing._faults import (
    Cut,
    Delay,
    Drop,
    Duplicate,
    Fault,
    FlipBits,
    Reorder,
    Stall,
    StopFault,
    Truncate,
    span,
)

__all__ = ["Action", "Damage"]


def _check(faults: Sequence[Fault]) -> None:
    ranges = []
    for fault in faults:
        offsets = fault.offsets if isinstance(fault, FlipBits) else (fault.at,)
        if any(offset < 0 for offset in offsets):
            raise ValueError(f"{fault}: offsets start at 0")
        if isinstance(fault, Drop | Duplicate | Reorder):
            if fault.length < 1:
                raise ValueError(f"{fault}: length must be at least 1")
            ranges.append(span(fault))
        if isinstance(fault, Delay) and not fault.seconds >= 0:
            raise ValueError(f"{fault}: seconds must be 0 or more")
    ranges.sort()
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start < end:
            raise ValueError("drop, duplicate and reorder ranges must not overlap")


# What a direction does next: bytes to pass on, a pause, or how it stops.
Action: TypeAlias = bytes | Delay | Truncate | Cut | Stall


@final
class Damage:
    """Applies faults to one direction's bytes, in order, as they come."""

    def __init__(self, faults: Iterable[Fault]) -> None:
        faults = list(faults)
        _check(faults)
        self._flips: dict[int, int] = {}
        for fault in faults:
            if isinstance(fault, FlipBits):
                for offset in fault.offsets:
                    self._flips[offset] = self._flips.get(offset, 0) ^ fault.mask
        self._ranges = sorted(
            (f for f in faults if isinstance(f, Drop | Duplicate | Reorder)), key=lambda f: f.at
        )
        spans = [span(fault) for fault in self._ranges]
        stops = [f.at for f in faults if isinstance(f, Truncate | Cut | Stall)]
        # A range ends early where the stream stops: it need not wait for
        # bytes that will never be delivered.
        self._needs = [
            (start, min([stop, *(at for at in stops if at >= start)])) for start, stop in spans
        ]
        # Pauses and stops, by offset; at one offset, pauses come first. A
        # pause inside a range moves to its start: a range is passed on whole.
        self._marks: list[tuple[int, Delay | StopFault]] = sorted(
            (
                (
                    next((a for a, b in spans if a < f.at < b), f.at)
                    if isinstance(f, Delay)
                    else f.at,
                    f,
                )
                for f in faults
                if isinstance(f, Delay | Truncate | Cut | Stall)
            ),
            key=lambda mark: (mark[0], not isinstance(mark[1], Delay)),
        )
        self._held = bytearray()  # bytes from self._done on, not yet passed on
        self._done = 0  # stream offset of self._held[0]
        self.stopped: StopFault | None = None

    def feed(self, data: bytes, *, eof: bool = False) -> list[Action]:
        """What to do with ``data``, the next bytes of the stream (and whether it ends)."""
        if self.stopped is not None:
            return []
        self._held += data
        end = self._done + len(self._held)
        ready = end
        if not eof:
            # Hold back a range that has begun but is not complete.
            for start, stop in self._needs:
                if start < end < stop:
                    ready = min(ready, start)
        actions: list[Action] = []
        while self._done < ready and self.stopped is None:
            mark = next((m for m in self._marks if self._done <= m[0] < ready), None)
            upto = ready if mark is None else mark[0]
            if upto > self._done:
                actions.append(self._damaged(upto))
            if mark is not None:
                self._act(mark, actions)
        # A stop right where the bytes so far end takes effect now, not when
        # a next byte comes: the sender may be waiting for an answer.
        while self.stopped is None and (eof or not self._held):
            mark = next((m for m in self._marks if m[0] == self._done), None)
            if mark is None or (not eof and isinstance(mark[1], Delay)):
                break
            self._act(mark, actions)
        return [action for action in actions if action != b""]

    def _act(self, mark: tuple[int, Delay | StopFault], actions: list[Action]) -> None:
        self._marks.remove(mark)
        actions.append(mark[1])
        if not isinstance(mark[1], Delay):
            self.stopped = mark[1]

    def _damaged(self, upto: int) -> bytes:
        """Pass on the held bytes up to stream offset ``upto``, damaged."""
        size = upto - self._done
        chunk = bytearray(self._held[:size])
        del self._held[:size]
        start = self._done
        self._done = upto
        for offset, mask in self._flips.items():
            if start <= offset < upto:
                chunk[offset - start] ^= mask
        # Range faults, from the last to the first, so earlier positions hold.
        for fault in reversed(self._ranges):
            first, last = span(fault)
            if first < start or first >= upto:
                continue
            last = min(last, upto)
            piece = chunk[first - start : last - start]
            if isinstance(fault, Drop):
                chunk[first - start : last - start] = b""
            elif isinstance(fault, Duplicate):
                chunk[first - start : last - start] = piece + piece
            elif len(piece) == 2 * fault.length:
                chunk[first - start : last - start] = piece[fault.length :] + piece[: fault.length]
        return bytes(chunk)
