"""The connection protocol of docs/protocol.md, sans-IO.

Theory of operation
-------------------

:class:`Connection` is to :class:`SecureStream` what ``ssl.SSLObject`` is to
``trio.SSLStream``: every protocol decision, none of the I/O. It imports no
event loop, no socket and no clock; a pump drives it:

1. ``start_handshake()``, then repeatedly: ``next_event()``, send what
   ``data_to_send()`` returns, and when ``next_event()`` returned None (it
   needs more bytes), ``receive_data()`` what the transport read, ``b""``
   at the transport's end.
2. The handshake ends in an event: :class:`HandshakeComplete`, or for the
   initiator the responder's answer, :class:`Refused` or
   :class:`NoCommonProtocol` (which is "busy" when it lists nothing). Bad
   bytes raise a :class:`HandshakeFailed`; so does our own refusal of the
   peer, after the bytes that tell the peer (the allowed names, or a CLOSE
   record) were queued for ``data_to_send()``.
3. Then records: ``send_data()``, ``send_eof()`` and ``send_close()`` seal
   straight into the buffer the pump writes; ``next_event(max_bytes)``
   decrypts into the buffer :class:`Data` hands over, then yields
   :class:`EndOfStream` or :class:`PeerClosed`, after which nothing more
   is read: what follows either is discarded unread. A record that does not
   authenticate or parse raises the cause (:class:`RecordAuthenticationFailed`,
   :class:`ProtocolViolation`, :class:`TruncatedStream`).

Any exception out of ``next_event()`` ends the connection: calling it again
is a bug of the caller (RuntimeError), like h11's ERROR state.

A server that is at its limit answers a fresh connection with
``answer_busy()`` instead; ``answered`` says whether that is still possible,
that is whether this side has given out any handshake bytes yet.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final, final

from handshake import HandshakeState, NoiseProtocol, TransportState
from keystore import Identity, Peer
from securesess.constants import REKEY_AFTER_RECORDS
from securesess.errors import (
    ProtocolViolation,
    TruncatedStream,
)
from securesess.stream.answer import BUSY_ANSWER, admit, read_answer
from securesess.stream.authenticate import Authenticator
from securesess.stream.events import (
    Data,
    EndOfStream,
    Event,
    HandshakeComplete,
    NoCommonProtocol,
    PeerClosed,
)
from securesess.stream.frames import FrameReader
from securesess.stream.noise_exchange import Keys, NoiseExchange
from securesess.stream.protocols import check_psk
from securesess.stream.records import (
    RecordReader,
    RecordType,
    RecordWriter,
    close_body,
    parse_close,
)

__all__ = ["BUSY_ANSWER", "Connection"]

#: How much one Data event holds at most, by default: several full records.
_DATA_LIMIT: Final = 256 * 1024


class _State(enum.Enum):
    START = "START"  # nothing sent or received yet
    HANDSHAKE = "HANDSHAKE"  # negotiation and the Noise messages
    ACCEPT = "ACCEPT"  # initiator: waiting for ACCEPT or CLOSE
    OPEN = "OPEN"  # records
    DONE = "DONE"  # nothing more to read: an answer, a refusal, an error, END or CLOSE


# Looking a member up on an Enum class costs more than a global: the record
# path, run once per read, compares with this one.
_OPEN: Final = _State.OPEN


@final
class Connection:
    """One side of a securesess connection, sans-IO (see the module docstring).

    Args:
        identity: who we are; its key is our Noise static key.
        authenticator: decides on the peer's key and certificate.
        server_side: True for the responder.
        protocol: the initiator's one Noise protocol name, or the names a
            responder allows (defaults as :class:`SecureStream`).
        psk: a 32-byte network key, or None.
        rekey_after_records: the sending key's record budget.

    Raises:
        handshake.ProtocolNameError: ``protocol`` is not spoken, or does not match ``psk``.
        ValueError: a psk of the wrong size, or an ``IK`` name without a known server key.
        TypeError: an initiator given several names.
    """

    __slots__ = (
        "_answered",
        "_control",
        "_end_received",
        "_end_sent",
        "_eof",
        "_exchange",
        "_frames",
        "_out",
        "_peer",
        "_protocol",
        "_reader",
        "_rekey_after",
        "_server",
        "_state",
        "_transport",
        "_writer",
    )

    def __init__(
        self,
        *,
        identity: Identity,
        authenticator: Authenticator,
        server_side: bool = False,
        protocol: str | Sequence[str] | None = None,
        psk: bytes | None = None,
        rekey_after_records: int = REKEY_AFTER_RECORDS,
    ) -> None:
        check_psk(psk)
        if rekey_after_records < 2:
            raise ValueError("rekey_after_records must be at least 2 (the REKEY itself counts)")
        self._server = server_side
        self._rekey_after = rekey_after_records
        self._state = _State.START
        self._out = bytearray()
        self._answered = False
        self._frames = FrameReader()
        self._eof = False
        # Only until the keys exist: an open connection keeps none of the handshake.
        self._exchange: NoiseExchange | None = NoiseExchange(
            identity=identity,
            authenticator=authenticator,
            server_side=server_side,
            protocol=protocol,
            psk=psk,
            frames=self._frames,
            out=self._out,
        )
        self._peer: Peer | None = None
        self._protocol: NoiseProtocol | None = None
        self._transport: TransportState | None = None
        self._writer: RecordWriter | None = None
        self._reader: RecordReader | None = None
        # A control record (END, CLOSE, ...) that arrived behind data not yet handed out.
        self._control: tuple[int, bytearray] | None = None
        self._end_sent = False
        self._end_received = False

    # -- what the handshake established --------------------------------------------

    @property
    def server_side(self) -> bool:
        return self._server

    @property
    def answered(self) -> bool:
        """Whether this side has given out handshake bytes (until then a server may say busy)."""
        return self._answered

    @property
    def peer(self) -> Peer | None:
        """The authenticated peer, once the keys exist (the initiator: before ACCEPT)."""
        return self._peer

    @property
    def protocol(self) -> NoiseProtocol | None:
        return self._protocol

    @property
    def handshake_hash(self) -> bytes | None:
        return None if self._transport is None else self._transport.handshake_hash

    @property
    def confirmed(self) -> bool:
        """Whether the peer has proved it is live (see :attr:`SecureStream.confirmed`)."""
        if self._reader is None or self._protocol is None:
            return False
        if not self._server:
            return True
        # Message i is the initiator's when i is even: an odd count ends with its.
        return len(self._protocol.pattern.messages) % 2 == 1 or self._reader.records_read > 0

    @property
    def can_send(self) -> bool:
        """Whether records can be sealed: the connection was accepted, and no END or
        CLOSE went out. (An initiator has its keys before ACCEPT, but until then
        the server may still refuse it.)"""
        return self._writer is not None and self._exchange is None and not self._end_sent

    @property
    def end_sent(self) -> bool:
        """Whether END or CLOSE was sealed: no record may follow."""
        return self._end_sent

    @property
    def end_received(self) -> bool:
        return self._end_received

    # -- bytes in and out ----------------------------------------------------------

    def start_handshake(self) -> None:
        """Begin: the initiator queues its name and message 1; the responder waits for them."""
        if self._state is not _State.START:
            raise RuntimeError("the handshake has already started")
        self._handshake().start()
        self._state = _State.HANDSHAKE

    def answer_busy(self) -> bytes:
        """The responder's "busy" answer, in place of any handshake; the connection ends."""
        if not self._server or self._answered:
            raise RuntimeError("only a responder that has not answered yet can say busy")
        self._answered = True
        self._state = _State.DONE
        return BUSY_ANSWER

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes the transport read; ``b""`` when it ended. Call when next_event() is None."""
        if not data:
            self._eof = True
        else:
            self._frames.feed(data)

    def data_to_send(self) -> bytes:
        """The handshake bytes queued since the last call (records are returned when sealed)."""
        out = bytes(self._out)
        if out:
            self._answered = True
            self._out.clear()
        return out

    def next_event(self, max_bytes: int = _DATA_LIMIT) -> Event | None:
        """The next event, or None when more bytes are needed; ``max_bytes`` bounds a Data.

        Raises:
            HandshakeFailed: (or a subclass) during the handshake.
            RecordAuthenticationFailed, ProtocolViolation, TruncatedStream: after it.
            RuntimeError: the connection has ended.
        """
        state = self._state
        try:
            if state is _OPEN:
                return self._next_record_event(max_bytes)
            if state is not _State.DONE and state is not _State.START:
                return self._next_handshake_event()
        except BaseException:
            self._state = _State.DONE
            raise
        raise RuntimeError(f"no events in state {state.value}")

    # -- the handshake -------------------------------------------------------------

    def _next_handshake_event(self) -> Event | None:
        if self._state is _State.HANDSHAKE:
            exchange = self._handshake()
            outcome = exchange.step(self._eof)
            if outcome is None or isinstance(outcome, NoCommonProtocol):
                if outcome is not None:
                    self._state = _State.DONE
                return outcome
            if self._server:
                return self._accept(exchange.authenticator, outcome)
            # IK: the server's key was known in advance; check it now.
            key = outcome.noise.remote_static
            assert key is not None
            peer = outcome.peer if outcome.peer is not None else exchange.check_server(key)
            self._open(outcome.noise, peer)
            self._state = _State.ACCEPT
        return self._read_accept()

    def _handshake(self) -> NoiseExchange:
        if self._exchange is None:
            raise RuntimeError("the handshake is over")
        return self._exchange

    def _accept(self, authenticator: Authenticator, keys: Keys) -> HandshakeComplete:
        """The responder decides on the initiator and answers ACCEPT, or CLOSE and why."""
        peer = admit(authenticator, keys, self._out)
        self._out += self._open(keys.noise, peer).seal(RecordType.ACCEPT)
        self._state = _State.OPEN
        self._exchange = None
        return HandshakeComplete(peer)

    def _open(self, noise: HandshakeState, peer: Peer) -> RecordWriter:
        transport = noise.into_transport()
        self._protocol = noise.protocol
        self._transport = transport
        self._writer = RecordWriter(transport, self._rekey_after)
        self._reader = RecordReader(self._frames, transport)
        self._peer = peer
        return self._writer

    def _read_accept(self) -> Event | None:
        """The initiator reads the responder's first record: ACCEPT, or CLOSE and why."""
        reader = self._reader
        assert reader is not None
        assert self._peer is not None
        answer = read_answer(reader)
        if answer is None:
            if self._eof:
                raise self._handshake().closed_early(
                    "the server closed the connection without accepting"
                )
            return None
        if answer is not True:
            self._state = _State.DONE
            return answer
        self._state = _State.OPEN
        self._exchange = None
        return HandshakeComplete(self._peer)

    # -- records -------------------------------------------------------------------

    def send_data(self, data: memoryview) -> memoryview:
        """DATA records for ``data`` (at most ``records.BATCH`` bytes), sealed into one buffer.

        Raises:
            RecordLimitReached: the sending key has used its last nonce.
        """
        writer = self._writer
        if writer is None or self._end_sent:  # checked inline: this is the hot path
            raise RuntimeError("records are sent after the handshake and before the end")
        return writer.seal_data(data)

    def send_eof(self) -> memoryview:
        """The END record; nothing may be sent after it."""
        end = self._open_writer().seal(RecordType.END)
        self._end_sent = True
        return end

    def send_close(self, code: int, reason: str) -> memoryview:
        """A CLOSE record telling the peer why we give up; nothing may be sent after it."""
        close = self._open_writer().seal(RecordType.CLOSE, close_body(code, reason))
        self._end_sent = True
        return close

    def _open_writer(self) -> RecordWriter:
        writer = self._writer
        if writer is None or not self.can_send:
            raise RuntimeError("records are sent after the handshake and before the end")
        return writer

    def _next_record_event(self, max_bytes: int) -> Event | None:
        reader = self._reader
        assert reader is not None
        while True:
            control = self._control
            if control is not None:
                self._control = None
                return self._control_event(*control)
            result = reader.read(max_bytes)
            if result is None:
                if self._eof:
                    raise TruncatedStream("the connection ended without the peer's end of stream")
                return None
            # Deliver the data first; a control record after it waits its turn.
            data, self._control = result
            if data:
                return Data(data)

    def _control_event(self, record_type: int, body: bytearray) -> Event:
        # END ends the peer's direction and CLOSE the connection: either way,
        # whatever follows is discarded unread (protocol.md §4), never handed out.
        if record_type == RecordType.END:
            self._end_received = True
            self._state = _State.DONE
            return EndOfStream()
        if record_type == RecordType.CLOSE:
            self._state = _State.DONE
            aborted = parse_close(body)
            return PeerClosed(aborted.code, aborted.reason)
        raise ProtocolViolation(f"an unexpected {RecordType(record_type).name} record")
