"""Fault injection: a stream wrapper that damages bytes in chosen, repeatable ways.

A :class:`FaultyStream` sits between an endpoint and its transport, like a
bad network would, and applies the faults of :mod:`securesess.testing._faults`
to each direction (:mod:`securesess.testing._damage`).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from typing import Final, final

import trio

from securesess.testing._damage import Action, Damage
from securesess.testing._faults import Cut, Delay, Fault, Stall, Truncate

__all__ = ["FaultyStream"]

_LINGER_ZERO: Final = struct.pack("ii", 1, 0)


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
        self._send = Damage(send)
        self._receive = Damage(receive)
        self._incoming: list[Action] = []
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

    async def _act_sending(self, actions: list[Action]) -> None:
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
