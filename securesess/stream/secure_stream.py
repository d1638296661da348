"""SecureStream: a Noise-encrypted, mutually authenticated Trio stream.

Theory of operation
-------------------

A SecureStream wraps any Trio stream (TCP, Unix socket, pipes, memory) the
way :class:`trio.SSLStream` does, and speaks the wire protocol of
docs/protocol.md over it. Its life has three parts:

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
operation passes one gate, :meth:`_check_status`. Failures after the
handshake surface as :class:`trio.BrokenResourceError` chained from the
precise cause (:class:`TruncatedStream`, :class:`RecordAuthenticationFailed`,
:class:`ProtocolViolation`, :class:`PeerAborted`, or, on our side,
:class:`RecordLimitReached`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import operator
from collections.abc import Callable, Sequence
from typing import Final, NoReturn, final

import trio

from handshake import HandshakeState, NoiseProtocol, PeerError, Token, TransportState
from keystore import Identity, Peer, TrustStore, UntrustedPeerError, fingerprint
from securesess.errors import (
    HandshakeFailed,
    HandshakeTimeout,
    NegotiationFailed,
    PeerNotTrusted,
    PeerRejected,
    ProtocolViolation,
    RecordAuthenticationFailed,
    RecordLimitReached,
    TruncatedStream,
)
from securesess.stream.frames import MAX_FRAME, FrameReader, frame
from securesess.stream.payload import CERTIFICATE, decode_payload, encode_payload
from securesess.stream.protocols import check_psk, client_protocol, prologue, server_protocols
from securesess.stream.records import (
    BATCH,
    REKEY_AFTER_RECORDS,
    CloseCode,
    RecordReader,
    RecordType,
    RecordWriter,
    close_body,
    parse_close,
)

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "SecureStream"]

log = logging.getLogger("securesess")

DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
# How much to ask the transport for at once: several full records per read.
_RECEIVE_SIZE: Final = 256 * 1024
_MAX_NAME: Final = 255


class _Status(enum.Enum):
    OK = "OK"
    BROKEN = "BROKEN"
    CLOSED = "CLOSED"


class _Refusal(Exception):
    """Internal: why we refuse a peer, as sent in a CLOSE record."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Busy:
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
class SecureStream(trio.abc.HalfCloseableStream):
    """An encrypted, mutually authenticated stream over ``transport_stream``.

    Args:
        transport_stream: any :class:`trio.abc.Stream`; the SecureStream owns
            it from now on and closes it in :meth:`aclose`.
        identity: who we are; its key is our Noise static key.
        trust: whom we accept. A responder refuses any initiator it does not
            trust; an initiator refuses a responder it does not trust.
        server_side: True for the responder (the side that accepted).
        expect: the peer we insist on: its 32-byte public key (accepted even
            if not in ``trust``: that is pinning) or its name in ``trust``.
        protocol: the initiator's Noise protocol name (default
            ``Noise_XX_25519_AESGCM_SHA256``; an ``IK`` name needs ``expect``),
            or the names a responder allows (default: XX and IK with every
            cipher and hash).
        psk: a 32-byte network key; both sides must hold it, and only the psk
            protocols are spoken.
        handshake_timeout: seconds the whole handshake may take.
        rekey_after_records: the sending key's budget: a REKEY record goes
            out at the latest as the budget's last record (at least 2, since
            the REKEY counts).
        authorize: a last check on a peer the trust store accepted (an access
            policy, say): it returns None to admit the peer, or the reason to
            refuse it, which the peer is told (close code ACCESS_DENIED).

    Raises:
        handshake.ProtocolNameError: (a ValueError) ``protocol`` is not one
            securesess speaks, or does not match ``psk``.
    """

    __slots__ = (
        "_allowed",
        "_answered",
        "_authorize",
        "_control",
        "_end_received",
        "_end_sent",
        "_expect",
        "_frames",
        "_handshake_done",
        "_handshake_started",
        "_handshake_timeout",
        "_identity",
        "_offer",
        "_peer",
        "_pending",
        "_protocol",
        "_psk",
        "_reader",
        "_receive_busy",
        "_rekey_after",
        "_send_busy",
        "_server_side",
        "_status",
        "_transport",
        "_trust",
        "_writer",
        "transport_stream",
    )

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        identity: Identity,
        trust: TrustStore,
        server_side: bool = False,
        expect: bytes | str | None = None,
        protocol: str | Sequence[str] | None = None,
        psk: bytes | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        rekey_after_records: int = REKEY_AFTER_RECORDS,
        authorize: Callable[[Peer], str | None] | None = None,
    ) -> None:
        check_psk(psk)
        if isinstance(expect, bytes | bytearray | memoryview):
            expect = bytes(expect)
            if len(expect) != 32:
                raise ValueError(f"an expected public key is 32 bytes, got {len(expect)}")
        if handshake_timeout <= 0 or math.isnan(handshake_timeout):
            raise ValueError("handshake_timeout must be positive")
        if rekey_after_records < 2:
            raise ValueError("rekey_after_records must be at least 2 (the REKEY itself counts)")

        self.transport_stream: Final = transport_stream
        self._identity = identity
        self._trust = trust
        self._server_side = server_side
        self._expect = expect
        self._psk = psk
        self._handshake_timeout = handshake_timeout
        self._rekey_after = rekey_after_records
        self._authorize = authorize
        if server_side:
            self._allowed = server_protocols(protocol, with_psk=psk is not None)
        else:
            self._offer = client_protocol(
                protocol if isinstance(protocol, str) or protocol is None else None,
                with_psk=psk is not None,
            )
            if protocol is not None and not isinstance(protocol, str):
                raise TypeError("a client offers one protocol name (a str)")
            if self._offer.pattern.needs_remote_static(True) and self._expected_key() is None:
                raise ValueError(
                    f"{self._offer.name} needs the server's key in advance: pass expect= "
                    "its public key or the name of a pinned peer"
                )

        self._status = _Status.OK
        # Whether this side has sent handshake bytes: until then, a server
        # may still turn the client away with a clean "busy".
        self._answered = False
        self._frames = FrameReader()
        self._handshake_started = False
        self._handshake_done = trio.Event()
        self._protocol: NoiseProtocol | None = None
        self._transport: TransportState | None = None
        self._writer: RecordWriter | None = None
        self._reader: RecordReader | None = None
        self._peer: Peer | None = None
        self._pending: bytearray | None = None
        # A control record (END, CLOSE, ...) that arrived behind data not yet read.
        self._control: tuple[int, bytearray] | None = None
        self._end_sent = False
        self._end_received = False
        self._send_busy = _Busy("another task is already sending on this SecureStream")
        self._receive_busy = _Busy("another task is already receiving on this SecureStream")

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        peer = f" peer={self._peer}" if self._peer is not None else ""
        return f"<SecureStream {side} {self._status.value}{peer}>"

    # -- what the handshake established ------------------------------------------------

    @property
    def peer(self) -> Peer:
        """The authenticated peer (name, public_key, fingerprint, groups).

        Raises:
            trio.NeedHandshakeError: the handshake has not completed yet.
        """
        if self._peer is None:
            raise trio.NeedHandshakeError("the peer is known once the handshake completes")
        return self._peer

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
        if self._reader is None or not self._handshake_done.is_set():
            return False
        if not self._server_side or self._protocol is None:
            return True
        # Message i is the initiator's when i is even: an odd count ends with its.
        return len(self._protocol.pattern.messages) % 2 == 1 or self._reader.records_read > 0

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash, unique to this session: a channel binding.

        Raises:
            trio.NeedHandshakeError: the handshake has not completed yet.
        """
        if self._transport is None:
            raise trio.NeedHandshakeError("the handshake hash exists once the handshake completes")
        return self._transport.handshake_hash

    @property
    def protocol(self) -> str:
        """The negotiated Noise protocol name."""
        if self._protocol is None:
            raise trio.NeedHandshakeError("the protocol is known once the handshake completes")
        return self._protocol.name

    # -- status ---------------------------------------------------------------------

    def _check_status(self) -> None:
        if self._status is _Status.OK:
            return
        if self._status is _Status.BROKEN:
            raise trio.BrokenResourceError("this SecureStream is broken")
        raise trio.ClosedResourceError("this SecureStream is closed")

    def _broken(self, cause: BaseException) -> trio.BrokenResourceError | trio.ClosedResourceError:
        """Mark the stream broken; return the error to raise ``from cause``.

        A stream closed meanwhile by another task stays closed: that task's
        aclose() is why this one's I/O failed.
        """
        if self._status is _Status.CLOSED:
            return trio.ClosedResourceError("this SecureStream was closed")
        self._status = _Status.BROKEN
        return trio.BrokenResourceError(str(cause))

    # -- transport I/O, with Trio's error conventions ---------------------------------

    async def _transport_send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.transport_stream.send_all(data)
        except trio.Cancelled:
            # Part of a record may be on the wire: nothing can follow it.
            if self._status is _Status.OK:
                self._status = _Status.BROKEN
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._transport_failed(exc)

    def _transport_failed(self, exc: BaseException) -> NoReturn:
        if self._status is _Status.CLOSED:
            raise trio.ClosedResourceError("this SecureStream was closed") from exc
        self._status = _Status.BROKEN
        raise trio.BrokenResourceError("the transport failed") from exc

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
        self._check_status()
        if self._handshake_done.is_set():
            await trio.lowlevel.checkpoint()
            return
        await self._ensure_handshake()

    async def _ensure_handshake(self) -> None:
        if self._handshake_done.is_set():
            return
        if self._handshake_started:
            await self._handshake_done.wait()
            self._check_status()  # BROKEN if the run we waited for failed
            return
        self._handshake_started = True
        try:
            with trio.move_on_after(self._handshake_timeout) as deadline:
                if self._server_side:
                    await self._respond()
                else:
                    await self._initiate()
            if deadline.cancelled_caught:
                raise HandshakeTimeout(
                    f"the handshake did not complete within {self._handshake_timeout:g} s"
                )
        except BaseException:
            if self._status is _Status.OK:
                self._status = _Status.BROKEN
            raise
        finally:
            self._handshake_done.set()

    async def _read_handshake_frame(self, limit: int = MAX_FRAME) -> bytes:
        while (data := self._frames.next_frame()) is None:
            length = self._frames.next_length()
            if length is not None and length > limit:
                # Judge by the length field: no need to wait for the bytes.
                raise HandshakeFailed(f"a {length}-byte frame where at most {limit} fit")
            received = await self._handshake_receive()
            if not received:
                raise self._closed_early("the peer closed the connection during the handshake")
            self._frames.feed(received)
        return bytes(data)

    async def _handshake_receive(self) -> bytes | bytearray:
        try:
            return await self.transport_stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._handshake_transport_failed(exc)

    async def _handshake_send(self, data: bytes | bytearray | memoryview) -> None:
        self._answered = True
        try:
            await self.transport_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._handshake_transport_failed(exc)

    def _closed_early(self, what: str) -> HandshakeFailed:
        # A server that holds another PSK cannot decrypt our PSK message, and
        # can say nothing we could authenticate: it just hangs up.
        if self._psk is not None and not self._server_side:
            what += " (as a server with another network key, psk, does)"
        return HandshakeFailed(what)

    def _handshake_transport_failed(self, exc: BaseException) -> NoReturn:
        if self._status is _Status.CLOSED:
            raise trio.ClosedResourceError("this SecureStream was closed") from exc
        raise HandshakeFailed("the connection failed during the handshake") from exc

    def _expected_key(self) -> bytes | None:
        if isinstance(self._expect, bytes):
            return self._expect
        if isinstance(self._expect, str):
            peer = self._trust.peer_by_name(self._expect)
            return None if peer is None else peer.public_key
        return None

    def _new_state(self, protocol: NoiseProtocol, *, initiator: bool) -> HandshakeState:
        return HandshakeState(
            protocol.name,
            initiator=initiator,
            prologue=prologue(protocol.name),
            s=self._identity.keypair,
            rs=self._expected_key() if protocol.pattern.needs_remote_static(initiator) else None,
            psks=[self._psk] if self._psk is not None else [],
        )

    def _authenticate(self, public_key: bytes, certificate: bytes | None) -> Peer:
        """The peer that proved ``public_key`` (and showed ``certificate``), if we accept it.

        Raises:
            _Refusal: with the close code and reason to give the peer.
        """
        peer = self._trusted(public_key, certificate)
        if self._authorize is not None:
            try:
                reason = self._authorize(peer)
            except Exception:
                # A broken policy hook must refuse, not take the server down.
                log.exception("authorize= raised for %s; refusing it", peer)
                reason = "the server could not decide whether to admit this peer"
            if reason is not None:
                raise _Refusal(CloseCode.ACCESS_DENIED, reason)
        return peer

    def _trusted(self, public_key: bytes, certificate: bytes | None) -> Peer:
        expected = self._expect
        if isinstance(expected, bytes):
            # An explicit key is a pin of its own, trusted or not; only a
            # revocation overrides it.
            if public_key != expected:
                raise _Refusal(CloseCode.NOT_EXPECTED, "the peer's key is not the expected one")
            if self._trust.is_revoked(public_key):
                raise _Refusal(CloseCode.NOT_TRUSTED, f"key {fingerprint(public_key)} is revoked")
            return self._trust.peer_by_key(public_key) or Peer(None, public_key)
        try:
            peer = self._trust.verify(public_key, certificate)
        except UntrustedPeerError as exc:
            raise _Refusal(CloseCode.NOT_TRUSTED, str(exc)) from None
        if expected is not None and peer.name != expected:
            raise _Refusal(
                CloseCode.NOT_EXPECTED, f"the peer is {peer.name!r}, not the expected {expected!r}"
            )
        return peer

    def _finish(self, state: HandshakeState, peer: Peer) -> None:
        transport = state.into_transport()
        self._protocol = state.protocol
        self._transport = transport
        self._writer = RecordWriter(transport, self._rekey_after)
        self._reader = RecordReader(self._frames, transport)
        self._peer = peer

    def _payload(self, state: HandshakeState, index: int) -> bytes:
        """Our certificate rides in the message that carries our static key."""
        certificate = self._identity.certificate
        if certificate is not None and Token.S in state.protocol.pattern.messages[index]:
            return encode_payload({CERTIFICATE: certificate.encoded})
        return b""

    async def _exchange(
        self, state: HandshakeState, index: int, first_message: bytes | None = None
    ) -> tuple[Peer | None, bytes | None]:
        """Run the Noise messages from number ``index`` on.

        Returns the server as checked mid-handshake (initiator only) and the
        certificate the peer showed, if any.
        """
        peer: Peer | None = None
        certificate: bytes | None = None
        while not state.is_finished:
            if state.is_my_turn:
                await self._handshake_send(frame(state.write_message(self._payload(state, index))))
                index += 1
                continue
            message = (
                first_message if first_message is not None else await self._read_handshake_frame()
            )
            first_message = None
            known = state.remote_static
            try:
                fields = decode_payload(state.read_message(message))
            except (PeerError, ProtocolViolation) as exc:
                raise HandshakeFailed(f"the peer's handshake message is invalid: {exc}") from exc
            index += 1
            certificate = fields.get(CERTIFICATE, certificate)
            if not self._server_side and known is None and state.remote_static is not None:
                # Check the server before our next message reveals who we are.
                peer = self._check_server(state.remote_static, certificate)
        return peer, certificate

    def _check_server(self, public_key: bytes, certificate: bytes | None) -> Peer:
        try:
            return self._authenticate(public_key, certificate)
        except _Refusal as refusal:
            raise PeerNotTrusted(
                f"the server is not trusted: {refusal.reason}", fingerprint=fingerprint(public_key)
            ) from None

    async def _initiate(self) -> None:
        protocol = self._offer
        state = self._new_state(protocol, initiator=True)
        name = protocol.name.encode("ascii")
        await self._handshake_send(
            frame(name) + frame(state.write_message(self._payload(state, 0)))
        )

        response = await self._read_handshake_frame()
        if not response:
            allowed = (await self._read_handshake_frame()).decode("ascii", "replace")
            raise NegotiationFailed([protocol.name], [n for n in allowed.split(",") if n])
        peer, certificate = await self._exchange(state, 1, response)
        if peer is None:
            # IK: the server's key was known in advance; check it now.
            assert state.remote_static is not None
            peer = self._check_server(state.remote_static, certificate)
        self._finish(state, peer)
        assert self._reader is not None
        record_type, body = await self._first_record(self._reader)
        if record_type == RecordType.CLOSE:
            try:
                aborted = parse_close(body)
            except ProtocolViolation as exc:
                raise HandshakeFailed(f"the server refused with a malformed reason: {exc}") from exc
            raise PeerRejected(aborted.code, aborted.reason)
        if record_type != RecordType.ACCEPT:
            raise HandshakeFailed("the server's first record was not ACCEPT")

    async def _first_record(self, reader: RecordReader) -> tuple[int, bytearray]:
        while True:
            try:
                result = reader.read(0)
            except (ProtocolViolation, RecordAuthenticationFailed) as exc:
                raise HandshakeFailed(str(exc)) from exc
            if result is not None:
                data, control = result
                if data:
                    raise HandshakeFailed("the server sent data before accepting")
                if control is not None:
                    return control
                continue  # a REKEY: read on
            received = await self._handshake_receive()
            if not received:
                raise self._closed_early("the server closed the connection without accepting")
            self._frames.feed(received)

    async def _respond(self) -> None:
        try:
            raw_name = await self._read_handshake_frame(limit=_MAX_NAME)
        except HandshakeFailed as exc:
            raise HandshakeFailed("the client's first frame is not a protocol name") from exc
        if not raw_name.isascii():
            raise HandshakeFailed("the client's first frame is not a protocol name")
        name = raw_name.decode("ascii")
        if name not in self._allowed:
            await self._handshake_send(b"\0\0" + frame(",".join(self._allowed).encode("ascii")))
            raise NegotiationFailed([name], self._allowed)
        protocol = NoiseProtocol.parse(name)
        state = self._new_state(protocol, initiator=False)
        _, certificate = await self._exchange(state, 0)
        client_key = state.remote_static
        assert client_key is not None  # XX and IK both carry the client's key
        try:
            peer = self._authenticate(client_key, certificate)
        except _Refusal as refusal:
            writer = RecordWriter(state.into_transport())
            body = close_body(refusal.code, refusal.reason)
            await self._handshake_send(writer.seal(RecordType.CLOSE, body))
            raise PeerNotTrusted(
                f"refused the client: {refusal.reason}", fingerprint=fingerprint(client_key)
            ) from None
        self._finish(state, peer)
        assert self._writer is not None
        await self._handshake_send(self._writer.seal(RecordType.ACCEPT))

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
            self._check_status()
            await self._ensure_handshake()
            if self._end_sent:
                raise trio.ClosedResourceError("EOF was already sent on this SecureStream")
            writer = self._writer
            assert writer is not None
            view = memoryview(data).cast("B")
            try:
                if len(view) <= BATCH:
                    if not view:
                        await trio.lowlevel.checkpoint()
                        return
                    await self._transport_send(writer.seal_data(view))
                    return
                for start in range(0, len(view), BATCH):
                    await self._transport_send(writer.seal_data(view[start : start + BATCH]))
            except RecordLimitReached as exc:
                raise self._broken(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            self._check_status()
            if self._end_sent:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("EOF was already sent on this SecureStream")
            try:
                await self.transport_stream.wait_send_all_might_not_block()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._transport_failed(exc)

    async def send_eof(self) -> None:
        """Send the authenticated end of stream; the peer then reads b"".

        Sending EOF twice is a no-op. The transport is half-closed too when it
        can be, so TCP half-close passes through.
        """
        with self._send_busy:
            self._check_status()
            await self._ensure_handshake()
            if self._end_sent:
                await trio.lowlevel.checkpoint()
                return
            assert self._writer is not None
            try:
                end = self._writer.seal(RecordType.END)
            except RecordLimitReached as exc:
                raise self._broken(exc) from exc
            await self._transport_send(end)
            self._end_sent = True
            if isinstance(self.transport_stream, trio.abc.HalfCloseableStream):
                try:
                    await self.transport_stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._transport_failed(exc)

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
            if self._status is not _Status.OK:
                self._check_status()
            if not self._handshake_done.is_set():
                await self._ensure_handshake()
            pending = self._pending
            if pending is None and not self._end_received:
                pending = await self._next_data(max_bytes or _RECEIVE_SIZE)
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

    async def _next_data(self, limit: int) -> bytearray | None:
        """Data from the next run of DATA records, or None at the peer's END.

        Records are decrypted (and their nonces spent) only after the last
        point where this call can be cancelled, so a cancelled receive_some
        loses nothing.
        """
        reader = self._reader
        assert reader is not None
        await trio.lowlevel.checkpoint_if_cancelled()
        awaited = False
        while True:
            control = self._control
            if control is not None:
                self._control = None
                if control[0] == RecordType.END:
                    self._end_received = True
                    data = None
                    break
                raise self._unexpected(*control)
            try:
                result = reader.read(limit)
            except (ProtocolViolation, RecordAuthenticationFailed) as exc:
                raise self._broken(exc) from exc
            if result is None:
                try:
                    received = await self.transport_stream.receive_some(_RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._transport_failed(exc)
                awaited = True
                if not received:
                    truncated = TruncatedStream(
                        "the connection ended without the peer's end of stream"
                    )
                    raise self._broken(truncated) from truncated
                self._frames.feed(received)
                continue
            # Deliver the data first; a control record after it waits its turn.
            data, self._control = result
            if data:
                break
        if not awaited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    def _unexpected(
        self, record_type: int, body: bytearray
    ) -> trio.BrokenResourceError | trio.ClosedResourceError:
        cause: Exception
        if record_type == RecordType.CLOSE:
            try:
                cause = parse_close(body)
            except ProtocolViolation as exc:
                cause = exc
        else:
            cause = ProtocolViolation(f"an unexpected {RecordType(record_type).name} record")
        error = self._broken(cause)
        error.__cause__ = cause
        return error

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
        if self._status is _Status.OK and self._writer is not None and not self._send_busy.held:
            with trio.move_on_after(1):
                with contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, RecordLimitReached
                ):
                    await self._transport_send(
                        self._writer.seal(RecordType.CLOSE, close_body(code, reason))
                    )
                    sent = True
        self._end_sent = True  # no END after a CLOSE
        if sent and linger > 0:
            transport = self.transport_stream
            with (
                trio.move_on_after(linger),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                if isinstance(transport, trio.abc.HalfCloseableStream):
                    await transport.send_eof()
                while await transport.receive_some(_RECEIVE_SIZE):
                    pass
        await self.aclose()

    async def aclose(self) -> None:
        """Close the stream: send END if it can, then close the transport.

        Idempotent. Closes even when cancelled, gracefully only when it can be.
        """
        if self._status is _Status.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        graceful = (
            self._status is _Status.OK
            and self._handshake_done.is_set()
            and self._writer is not None
            and not self._end_sent
            and not self._send_busy.held
        )
        self._status = _Status.CLOSED
        try:
            if graceful:
                assert self._writer is not None
                with contextlib.suppress(
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    trio.BusyResourceError,
                    RecordLimitReached,
                ):
                    await self.transport_stream.send_all(self._writer.seal(RecordType.END))
        finally:
            await self.transport_stream.aclose()
