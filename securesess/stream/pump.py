"""The pump between a sans-IO :class:`Connection` and a Trio transport.

trio's SSLStream drives ``ssl.SSLObject`` from one loop: call the object,
send what it wrote, receive what it wants. :class:`Pump` is that loop for
:class:`SecureStream`, once for the handshake and once per read of records,
with what is Trio's and not the protocol's: one status (OK / BROKEN /
CLOSED) that every operation passes, the one way a stream breaks, and the
transport's failures reported as Trio's errors chained ``from`` their
cause. Beside it, the guard that keeps two tasks from using one direction
at once.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Final, NoReturn, final

import trio

from securesess.errors import (
    HandshakeFailed,
    NegotiationFailed,
    PeerAborted,
    PeerRejected,
    ProtocolViolation,
    RecordAuthenticationFailed,
    TruncatedStream,
)
from securesess.stream.connection import Connection
from securesess.stream.events import (
    Data,
    EndOfStream,
    HandshakeComplete,
    NoCommonProtocol,
    PeerClosed,
    Refused,
)

__all__ = ["RECEIVE_SIZE", "Busy", "Pump", "Status"]

# How much to ask the transport for at once: several full records per read.
RECEIVE_SIZE: Final = 256 * 1024


class Status(enum.Enum):
    OK = "OK"
    BROKEN = "BROKEN"
    CLOSED = "CLOSED"


# Looking a member up on an Enum class costs more than a global, and every
# send and receive passes the gate.
_OK: Final = Status.OK


@final
class Busy:
    """Raises BusyResourceError when two tasks use one direction at once."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held


@final
class Pump:
    """Moves bytes between ``connection`` and ``stream``, behind one status."""

    __slots__ = ("connection", "handshaking", "status", "stream")

    def __init__(self, connection: Connection, stream: trio.abc.Stream) -> None:
        self.connection: Final = connection
        self.stream: Final = stream
        self.status = Status.OK
        # Until the handshake is over, a failure is a HandshakeFailed.
        self.handshaking = True

    def check(self) -> None:
        """The gate: raise unless the status is OK."""
        if self.status is _OK:
            return
        if self.status is Status.BROKEN:
            raise trio.BrokenResourceError("this SecureStream is broken")
        raise trio.ClosedResourceError("this SecureStream is closed")

    def fail(self, cause: BaseException, message: str | None = None) -> NoReturn:
        """The one way the stream breaks: mark it, and raise why ``from cause``.

        During the handshake that is a :class:`HandshakeFailed`; after it, a
        BrokenResourceError saying ``message`` (by default the cause's). A
        stream closed meanwhile by another task stays closed: that task's
        aclose() is why this one's I/O failed.
        """
        if self.status is Status.CLOSED:
            raise trio.ClosedResourceError("this SecureStream was closed") from cause
        self.status = Status.BROKEN
        if self.handshaking:
            raise HandshakeFailed("the connection failed during the handshake") from cause
        raise trio.BrokenResourceError(message or str(cause)) from cause

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except trio.Cancelled:
            # Part of a record may be on the wire: nothing can follow it.
            if self.status is Status.OK:
                self.status = Status.BROKEN
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.fail(exc, "the transport failed")

    async def receive(self) -> bytes | bytearray:
        try:
            return await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.fail(exc, "the transport failed")

    async def send_eof(self) -> None:
        """Half-close the transport too when it can be, so TCP half-close passes through."""
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            try:
                await self.stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.fail(exc, "the transport failed")

    async def wait_send_all_might_not_block(self) -> None:
        try:
            await self.stream.wait_send_all_might_not_block()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.fail(exc, "the transport failed")

    async def linger(self, seconds: float) -> None:
        """Half-close, then read and discard what the peer still sends, for up to ``seconds``.

        Over TCP, closing with unread data sends a reset, which can overtake
        the last record sent; lingering lets the peer read it.
        """
        stream = self.stream
        with (
            trio.move_on_after(seconds),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while await stream.receive_some(RECEIVE_SIZE):
                pass

    async def handshake(self) -> None:
        """Run the handshake to its end (the caller bounds it in time)."""
        connection = self.connection
        connection.start_handshake()
        while True:
            try:
                event = connection.next_event()
            finally:
                # What the connection queued goes out even when it then
                # failed: that is how a refusal reaches the peer.
                if outgoing := connection.data_to_send():
                    await self.send(outgoing)
            if event is None:
                connection.receive_data(await self.receive())
            elif isinstance(event, HandshakeComplete):
                return
            elif isinstance(event, Refused):
                raise PeerRejected(event.code, event.reason)
            elif isinstance(event, NoCommonProtocol):
                raise NegotiationFailed(event.offered, event.allowed)
            else:
                raise AssertionError(f"{event!r} during the handshake")

    async def next_data(self, limit: int) -> bytearray | None:
        """Data from the next run of DATA records, or None at the peer's END.

        Records are decrypted (and their nonces spent) only after the last
        point where this call can be cancelled, so a cancelled receive_some
        loses nothing.
        """
        connection = self.connection
        await trio.lowlevel.checkpoint_if_cancelled()
        awaited = False
        while True:
            try:
                event = connection.next_event(limit)
            except (ProtocolViolation, RecordAuthenticationFailed, TruncatedStream) as exc:
                self.fail(exc)
            if type(event) is Data:  # the common case first: this runs per read
                data: bytearray | None = event.data
                break
            if event is None:
                try:
                    received = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.fail(exc, "the transport failed")
                connection.receive_data(received)
                awaited = True
            elif isinstance(event, EndOfStream):
                data = None
                break
            elif isinstance(event, PeerClosed):
                self.fail(PeerAborted(event.code, event.reason))
            else:
                self.fail(ProtocolViolation(f"an unexpected {type(event).__name__} event"))
        if not awaited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data
