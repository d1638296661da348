"""SecureStream: a Noise-encrypted, mutually authenticated Trio stream.

Theory of operation
-------------------

A SecureStream wraps any Trio stream (TCP, Unix socket, pipes, memory) the
way :class:`trio.SSLStream` does, and speaks the wire protocol of
docs/protocol.md over it. As SSLStream leaves TLS to ``ssl.SSLObject``, it
leaves every protocol decision to a sans-IO
:class:`~securesess.stream.connection.Connection`, which a
:class:`~securesess.stream.pump.Pump` connects to the transport; what stays
here is Trio's stream contract: the handshake run once under its timeout,
one task per direction, cancellation, EOF and half-close. Its life has three parts:

1. **Handshake**, run exactly once: explicitly by :meth:`do_handshake` or
   implicitly by the first I/O call; concurrent callers wait for the one run.
   It negotiates the protocol name, exchanges the Noise messages, checks the
   peer against the trust store (and ``expect``), and ends with the
   responder's ACCEPT record or its refusal. The whole of it runs under
   ``handshake_timeout``. A failure raises a :class:`HandshakeFailed` subclass
   and leaves the stream broken.

2. **Records.** ``send_all`` cuts data into records of up to 65518 bytes,
   seals them into one buffer and hands the batch to the transport in a
   single call. ``receive_some`` reads large chunks, decrypts
   one record straight out of the chunk into a buffer that it returns, and
   keeps any bytes the caller did not ask for. Both directions rekey on the
   schedule of :class:`RecordWriter`.

3. **Closing.** ``send_eof`` sends the authenticated END record, so the peer
   can tell a clean end from a cut connection; ``aclose`` sends it too when it
   can, then closes the transport whatever happens.

Status follows SSLStream: OK, BROKEN (any failure, including a cancelled
send, which may have left half a record on the wire), or CLOSED. Every
operation passes one gate, ``Pump.check``. Failures after the
handshake surface as :class:`trio.BrokenResourceError` chained from the
precise cause (:class:`TruncatedStream`, :class:`RecordAuthenticationFailed`,
:class:`ProtocolViolation`, :class:`PeerAborted`, or, on our side,
:class:`RecordLimitReached`).
"""

from __future__ import annotations

import contextlib
import operator
from typing import Final, TypeVar, Unpack, final

import trio

from keystore import Peer
from securesess.errors import (
    HandshakeTimeout,
    RecordLimitReached,
)
from securesess.stream.authenticate import Authenticator
from securesess.stream.connection import Connection
from securesess.stream.options import SecureOptions, SecureOptionsArgs, merged, unexpected
from securesess.stream.pump import RECEIVE_SIZE, Busy, Pump, Status
from securesess.stream.records import BATCH

__all__ = ["SecureStream"]

_T = TypeVar("_T")


def _connection(options: SecureOptions, server_side: bool) -> Connection:
    """The sans-IO connection a SecureStream with ``options`` pumps."""
    authenticator = Authenticator(options.trust, expect=options.expect, authorize=options.authorize)
    return Connection(
        identity=options.identity,
        authenticator=authenticator,
        server_side=server_side,
        protocol=options.protocol,
        psk=options.psk,
        rekey_after_records=options.rekey_after_records,
    )


def _established(value: _T | None, what: str) -> _T:
    """What the handshake established, or NeedHandshakeError before it has."""
    if value is None:
        raise trio.NeedHandshakeError(f"{what} once the handshake completes")
    return value


@final
class SecureStream(trio.abc.HalfCloseableStream):
    """An encrypted, mutually authenticated stream over ``transport_stream``.

    Args:
        transport_stream: any :class:`trio.abc.Stream`; the SecureStream owns
            it from now on and closes it in :meth:`aclose`.
        options: who we are, whom we trust and how to speak
            (:class:`SecureOptions`); its keyword arguments may be given
            beside it or instead of it, and override it.
        server_side: True for the responder (the side that accepted).

    Raises:
        ValueError: an option is out of range, or ``protocol`` is not one
            securesess speaks, or does not match ``psk``.
    """

    __slots__ = (
        "_connection",
        "_handshake_done",
        "_handshake_started",
        "_pending",
        "_pump",
        "_receive_busy",
        "_send_busy",
        "options",
        "transport_stream",
    )

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        options: SecureOptions | None = None,
        *,
        server_side: bool = False,
        **keywords: Unpack[SecureOptionsArgs],
    ) -> None:
        unexpected(keywords, SecureOptions)
        self.options: Final = merged(SecureOptions, options, keywords)
        self._connection: Final = _connection(self.options, server_side)
        self.transport_stream: Final = transport_stream
        self._pump: Final = Pump(self._connection, transport_stream)
        self._handshake_started = False
        self._handshake_done = trio.Event()
        self._pending: bytearray | None = None
        self._send_busy = Busy("another task is already sending on this SecureStream")
        self._receive_busy = Busy("another task is already receiving on this SecureStream")

    def __repr__(self) -> str:
        side = "server" if self._connection.server_side else "client"
        known = self._connection.peer
        peer = f" peer={known}" if known is not None else ""
        return f"<SecureStream {side} {self._pump.status.value}{peer}>"

    # -- what the handshake established ------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The sans-IO protocol object this stream drives.

        For reading its state (``answered``: whether this side has sent
        handshake bytes yet), and for a server's ``answer_busy()`` in place of
        any handshake; feeding it bytes would desynchronise the stream.
        """
        return self._connection

    @property
    def peer(self) -> Peer:
        """The authenticated peer (name, public_key, fingerprint, groups).

        Raises:
            trio.NeedHandshakeError: the handshake has not completed yet.
        """
        return _established(self._connection.peer, "the peer is known")

    @property
    def confirmed(self) -> bool:
        """Whether the peer has proved it is live in this session, not a replay.

        Always true once a handshake has completed, except for the responder
        of a pattern whose last message it writes itself (``IK``,
        ``IKpsk1``): message 1 can be replayed by anyone who recorded it, so
        such a peer is confirmed only by its first record, which only the
        holder of its ephemeral key can encrypt. A server that acts for a
        peer before hearing from it can wait for this; ``serve_secure``
        displaces unconfirmed connections first when a peer has too many.
        """
        return self._handshake_done.is_set() and self._connection.confirmed

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash, unique to this session: a channel binding.

        Raises:
            trio.NeedHandshakeError: the handshake has not completed yet.
        """
        return _established(self._connection.handshake_hash, "the handshake hash exists")

    @property
    def protocol(self) -> str:
        """The negotiated Noise protocol name."""
        return _established(self._connection.protocol, "the protocol is known").name

    # -- the handshake ----------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the handshake now rather than on first I/O (it runs only once).

        Raises:
            PeerRejected: the responder refused us, with its reason.
            PeerNotTrusted: the peer's key is not trusted or not ``expect``.
            NegotiationFailed: no protocol in common, or the responder is busy.
            HandshakeTimeout: the handshake took longer than its timeout.
            HandshakeFailed: anything else (garbage, wrong psk, lost connection).
            trio.BrokenResourceError: an earlier handshake attempt failed.
        """
        self._pump.check()
        if self._handshake_done.is_set():
            await trio.lowlevel.checkpoint()
            return
        await self._ensure_handshake()

    async def _ensure_handshake(self) -> None:
        if self._handshake_done.is_set():
            return
        if self._handshake_started:
            await self._handshake_done.wait()
            self._pump.check()  # BROKEN if the run we waited for failed
            return
        self._handshake_started = True
        try:
            with trio.move_on_after(self.options.handshake_timeout) as deadline:
                await self._pump.handshake()
            if deadline.cancelled_caught:
                raise HandshakeTimeout(
                    f"the handshake did not complete within {self.options.handshake_timeout:g} s"
                )
        except BaseException:
            if self._pump.status is Status.OK:
                self._pump.status = Status.BROKEN
            raise
        finally:
            self._pump.handshaking = False
            self._handshake_done.set()

    # -- records ------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``.

        Raises:
            trio.BusyResourceError: another task is sending.
            trio.BrokenResourceError: the stream is broken (a cancelled
                send_all breaks it: part of a record may have been sent).
            trio.ClosedResourceError: the stream was closed, or EOF was sent.
        """
        with self._send_busy:
            self._pump.check()
            await self._ensure_handshake()
            connection = self._connection
            if connection.end_sent:
                raise trio.ClosedResourceError("EOF was already sent on this SecureStream")
            view = memoryview(data).cast("B")
            try:
                if len(view) <= BATCH:
                    if not view:
                        await trio.lowlevel.checkpoint()
                        return
                    await self._pump.send(connection.send_data(view))
                    return
                for start in range(0, len(view), BATCH):
                    await self._pump.send(connection.send_data(view[start : start + BATCH]))
            except RecordLimitReached as exc:
                self._pump.fail(exc)

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            self._pump.check()
            if self._connection.end_sent:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("EOF was already sent on this SecureStream")
            await self._pump.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Send the authenticated end of stream; the peer then reads b"".

        Sending EOF twice is a no-op. The transport is half-closed too when it
        can be, so TCP half-close passes through.
        """
        with self._send_busy:
            self._pump.check()
            await self._ensure_handshake()
            if self._connection.end_sent:
                await trio.lowlevel.checkpoint()
                return
            try:
                end = self._connection.send_eof()
            except RecordLimitReached as exc:
                self._pump.fail(exc)
            await self._pump.send(end)
            await self._pump.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive decrypted data: at most ``max_bytes``, b"" after the peer's EOF.

        Raises:
            trio.BusyResourceError: another task is receiving.
            trio.BrokenResourceError: the stream is broken; ``__cause__`` is a
                :class:`TruncatedStream`, :class:`RecordAuthenticationFailed`,
                :class:`ProtocolViolation` or :class:`PeerAborted` when the
                peer caused it.
            trio.ClosedResourceError: the stream was closed.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        with self._receive_busy:
            self._pump.check()
            if not self._handshake_done.is_set():
                await self._ensure_handshake()
            pending = self._pending
            if pending is None and not self._connection.end_received:
                pending = await self._pump.next_data(max_bytes or RECEIVE_SIZE)
            else:
                await trio.lowlevel.checkpoint()
            if pending is None:
                return b""  # the peer's END
            if max_bytes is None or max_bytes >= len(pending):
                self._pending = None
                return pending
            self._pending = pending
            chunk = bytes(pending[:max_bytes])
            del pending[:max_bytes]
            return chunk

    # -- closing --------------------------------------------------------------------

    async def abort(self, code: int, reason: str, *, linger: float = 0) -> None:
        """Tell the peer why we give up (a CLOSE record), then close.

        The peer's next receive fails with ``BrokenResourceError`` caused by
        :class:`PeerAborted` carrying ``code`` and ``reason``.

        ``linger`` > 0: after the CLOSE, half-close the transport and read
        and discard what the peer still sends, for up to that many seconds,
        before closing. Over TCP, closing with unread data sends a reset,
        which can overtake the CLOSE record; lingering lets the peer read
        the reason. It reads the transport directly: no other task may be
        receiving on this stream.
        """
        sent = False
        connection = self._connection
        if self._pump.status is Status.OK and connection.can_send and not self._send_busy.held:
            with trio.move_on_after(1):
                with contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, RecordLimitReached
                ):
                    await self._pump.send(connection.send_close(code, reason))
                    sent = True
        if sent and linger > 0:
            await self._pump.linger(linger)
        await self._close(end=False)  # no END after a CLOSE

    async def aclose(self) -> None:
        """Close the stream: send END if it can, then close the transport.

        Idempotent. Closes even when cancelled, gracefully only when it can be.
        """
        await self._close(end=True)

    async def _close(self, *, end: bool) -> None:
        if self._pump.status is Status.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        connection = self._connection
        graceful = (
            end
            and self._pump.status is Status.OK
            and self._handshake_done.is_set()
            and connection.can_send
            and not self._send_busy.held
        )
        self._pump.status = Status.CLOSED
        try:
            if graceful:
                with contextlib.suppress(
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    trio.BusyResourceError,
                    RecordLimitReached,
                ):
                    await self.transport_stream.send_all(connection.send_eof())
        finally:
            await self.transport_stream.aclose()
