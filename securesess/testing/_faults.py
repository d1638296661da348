"""Fault injection: a stream wrapper that damages bytes in chosen, repeatable ways.

A :class:`FaultyStream` sits between an endpoint and its transport, like a
bad network would. Each fault is placed at a byte *offset* of one direction
(the n-th byte this side sends, or receives), so a test can aim at a frame,
a field, or every position in turn, and get the same damage on every run:

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

How it works: each direction runs its bytes through a :class:`_Damage`,
which passes bytes on as they come, except while a range fault (drop,
duplicate, reorder) has not yet seen all the bytes it covers: it holds
those back until the range is complete or the stream ends, and a Delay
inside a range moves to the range's start. Aim ranges inside one message:
a range that runs past what a side sends before it waits for an answer
holds that message back, and the exchange stalls instead.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias, final

import trio

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
]

_LINGER_ZERO: Final = struct.pack("ii", 1, 0)


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
_Range: TypeAlias = Drop | Duplicate | Reorder
_Stop: TypeAlias = Truncate | Cut | Stall


def random_flips(count: int, *, end: int, start: int = 0, seed: int | str | bytes = 0) -> FlipBits:
    """``count`` single-bit flips at distinct offsets in ``[start, end)``, repeatable by seed."""
    chooser = random.Random(seed)
    offsets = sorted(chooser.sample(range(start, end), count))
    # One bit, the same in every byte: a failing test names the seed.
    return FlipBits(tuple(offsets), 1 << chooser.randrange(8))


def _span(fault: _Range) -> tuple[int, int]:
    size = 2 * fault.length if isinstance(fault, Reorder) else fault.length
    return fault.at, fault.at + size


def _check(faults: Sequence[Fault]) -> None:
    ranges = []
    for fault in faults:
        offsets = fault.offsets if isinstance(fault, FlipBits) else (fault.at,)
        if any(offset < 0 for offset in offsets):
            raise ValueError(f"{fault}: offsets start at 0")
        if isinstance(fault, Drop | Duplicate | Reorder):
            if fault.length < 1:
                raise ValueError(f"{fault}: length must be at least 1")
            ranges.append(_span(fault))
        if isinstance(fault, Delay) and not fault.seconds >= 0:
            raise ValueError(f"{fault}: seconds must be 0 or more")
    ranges.sort()
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start < end:
            raise ValueError("drop, duplicate and reorder ranges must not overlap")


# What a direction does next: bytes to pass on, a pause, or how it stops.
_Action: TypeAlias = bytes | Delay | Truncate | Cut | Stall


@final
class _Damage:
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
        spans = [_span(fault) for fault in self._ranges]
        stops = [f.at for f in faults if isinstance(f, Truncate | Cut | Stall)]
        # A range ends early where the stream stops: it need not wait for
        # bytes that will never be delivered.
        self._needs = [
            (start, min([stop, *(at for at in stops if at >= start)])) for start, stop in spans
        ]
        # Pauses and stops, by offset; at one offset, pauses come first. A
        # pause inside a range moves to its start: a range is passed on whole.
        self._marks: list[tuple[int, Delay | _Stop]] = sorted(
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
        self.stopped: _Stop | None = None

    def feed(self, data: bytes, *, eof: bool = False) -> list[_Action]:
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
        actions: list[_Action] = []
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

    def _act(self, mark: tuple[int, Delay | _Stop], actions: list[_Action]) -> None:
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
            first, last = _span(fault)
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


async def _reset(stream: trio.abc.Stream) -> None:
    """Close ``stream`` as abruptly as it allows: a TCP reset for a socket."""
    if isinstance(stream, trio.SocketStream):
        with contextlib.suppress(OSError, trio.ClosedResourceError):
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    await trio.aclose_forcefully(stream)


@final
class FaultyStream(trio.abc.HalfCloseableStream):
    """Wraps a stream; damages what passes through it as ``send`` and ``receive`` say.

    Put it where a network would be: ``SecureStream(FaultyStream(tcp, send=[Cut(100)]), ...)``
    makes the connection break just before this side's 101st byte. Offsets
    count the bytes this side sends (``send``) or receives (``receive``).

    What each side observes is what a real network fault would show:

    - after a :class:`Cut` on ``send``, the transport is closed abruptly (a
      TCP reset; a memory stream, which cannot be reset, just ends), and
      this side's sends fail; on ``receive``, this side's receive fails with
      :class:`trio.BrokenResourceError`;
    - after a :class:`Truncate`, the receiving side sees a clean end of
      stream; on ``send``, this side's later bytes are silently lost;
    - after a :class:`Stall`, nothing more arrives, and nothing ends.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        send: Iterable[Fault] = (),
        receive: Iterable[Fault] = (),
    ) -> None:
        self.transport_stream: Final = transport_stream
        self._send = _Damage(send)
        self._receive = _Damage(receive)
        self._incoming: list[_Action] = []
        self._receive_ended = False
        self._closed = trio.Event()
        #: Bytes this side sent and received, before any damage: a recording.
        self.sent = bytearray()
        self.received = bytearray()

    # -- sending ----------------------------------------------------------------------

    def _check_cut(self) -> None:
        if self._closed.is_set():
            raise trio.ClosedResourceError("this FaultyStream was closed")
        # A cut breaks the whole connection, both ways, as a reset does.
        if isinstance(self._send.stopped, Cut) or isinstance(self._receive.stopped, Cut):
            raise trio.BrokenResourceError("the connection was cut (a Cut fault)")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_cut()
        data = bytes(data)
        self.sent += data
        await self._act_sending(self._send.feed(data))

    async def send_eof(self) -> None:
        self._check_cut()
        await self._act_sending(self._send.feed(b"", eof=True))
        if self._send.stopped is None:
            transport = self.transport_stream
            if isinstance(transport, trio.abc.HalfCloseableStream):
                await transport.send_eof()

    async def _act_sending(self, actions: list[_Action]) -> None:
        for action in actions:
            if isinstance(action, bytes):
                try:
                    await self.transport_stream.send_all(action)
                except trio.ClosedResourceError:
                    self._check_cut()  # our own cut closed it under this send
                    raise
            elif isinstance(action, Delay):
                await trio.sleep(action.seconds)
            elif isinstance(action, Cut):
                await _reset(self.transport_stream)
            elif isinstance(action, Truncate):
                transport = self.transport_stream
                if isinstance(transport, trio.abc.HalfCloseableStream):
                    await transport.send_eof()
                else:
                    await transport.aclose()
        self._check_cut()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self._send.stopped is None:
            await self.transport_stream.wait_send_all_might_not_block()
        else:
            await trio.lowlevel.checkpoint()

    # -- receiving --------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed.is_set():
            raise trio.ClosedResourceError("this FaultyStream was closed")
        if isinstance(self._send.stopped, Cut):
            raise trio.BrokenResourceError("the connection was cut (a Cut fault)")
        while True:
            while self._incoming:
                action = self._incoming[0]
                if isinstance(action, bytes):
                    if max_bytes is None or len(action) <= max_bytes:
                        self._incoming.pop(0)
                        return action
                    self._incoming[0] = action[max_bytes:]
                    return action[:max_bytes]
                self._incoming.pop(0)
                if isinstance(action, Delay):
                    await trio.sleep(action.seconds)
                elif isinstance(action, Cut):
                    await _reset(self.transport_stream)
                    raise trio.BrokenResourceError("the connection was cut (a Cut fault)")
            if isinstance(self._receive.stopped, Stall):
                # Nothing more arrives; only closing this side ends the wait.
                await self._closed.wait()
                raise trio.ClosedResourceError("this FaultyStream was closed")
            if isinstance(self._receive.stopped, Truncate) or self._receive_ended:
                await trio.lowlevel.checkpoint()
                return b""
            self._check_cut()
            try:
                data = bytes(await self.transport_stream.receive_some(max_bytes))
            except trio.ClosedResourceError:
                self._check_cut()
                raise
            self.received += data
            self._receive_ended = not data
            self._incoming = self._receive.feed(data, eof=not data)

    async def aclose(self) -> None:
        self._closed.set()
        await self.transport_stream.aclose()
