"""Name negotiation and the Noise messages (docs/protocol.md §2, §3), sans-IO.

:class:`NoiseExchange` is the first part of a
:class:`~securesess.stream.connection.Connection`: from the initiator's
offer to the end of the Noise handshake, reading frames from the
connection's :class:`FrameReader` and writing them into its output buffer.
It ends with the keys (:class:`Keys`), or with the responder's refusal of
the name (:class:`NoCommonProtocol`), or raises :class:`HandshakeFailed`.
What follows the keys, ACCEPT or CLOSE, is the connection's.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, final

from handshake import HandshakeState, NoiseProtocol, PeerError, Token
from keystore import Identity, Peer, fingerprint
from securesess.errors import HandshakeFailed, NegotiationFailed, PeerNotTrusted, ProtocolViolation
from securesess.stream.authenticate import Authenticator, Refusal
from securesess.stream.events import NoCommonProtocol
from securesess.stream.frames import MAX_FRAME, FrameReader, frame
from securesess.stream.payload import CERTIFICATE, decode_payload, encode_payload
from securesess.stream.protocols import client_protocol, prologue, server_protocols

__all__ = ["Keys", "NoiseExchange"]

_MAX_NAME: Final = 255
_NOT_A_NAME: Final = "the client's first frame is not a protocol name"


@final
@dataclass(frozen=True, slots=True)
class Keys:
    """A finished Noise handshake and what it told us about the peer."""

    noise: HandshakeState
    #: The responder as the initiator checked it mid-handshake; None otherwise.
    peer: Peer | None
    certificate: bytes | None


class _Stage(enum.Enum):
    NAME = "NAME"  # responder: waiting for the protocol name
    ANSWER = "ANSWER"  # initiator: waiting for message 2 or a refusal
    ALLOWED = "ALLOWED"  # initiator: refused; waiting for the allowed names
    MESSAGES = "MESSAGES"  # the Noise messages after the first


@final
class NoiseExchange:
    """One side's negotiation and Noise messages, over the connection's buffers."""

    __slots__ = (
        "_allowed",
        "_authenticator",
        "_certificate",
        "_frames",
        "_identity",
        "_index",
        "_noise",
        "_offer",
        "_out",
        "_peer",
        "_psk",
        "_server",
        "_stage",
    )

    def __init__(
        self,
        *,
        identity: Identity,
        authenticator: Authenticator,
        server_side: bool,
        protocol: str | Sequence[str] | None,
        psk: bytes | None,
        frames: FrameReader,
        out: bytearray,
    ) -> None:
        self._identity = identity
        self._authenticator = authenticator
        self._server = server_side
        self._psk = psk
        self._frames = frames
        self._out = out
        self._allowed: tuple[str, ...] = ()
        self._offer: NoiseProtocol | None = None
        if server_side:
            self._allowed = server_protocols(protocol, with_psk=psk is not None)
        else:
            if protocol is not None and not isinstance(protocol, str):
                raise TypeError("a client offers one protocol name (a str)")
            offer = client_protocol(protocol, with_psk=psk is not None)
            if offer.pattern.needs_remote_static(True) and authenticator.expected_key() is None:
                raise ValueError(
                    f"{offer.name} needs the server's key in advance: pass expect= "
                    "its public key or the name of a pinned peer"
                )
            self._offer = offer
        self._stage = _Stage.NAME
        self._noise: HandshakeState | None = None
        self._index = 0  # the number of the next Noise message
        self._certificate: bytes | None = None
        self._peer: Peer | None = None

    def start(self) -> None:
        """The initiator sends its name and message 1 back to back, without waiting."""
        if self._offer is not None:
            noise = self._begin(self._offer)
            name = frame(self._offer.name.encode("ascii"))
            self._out += name + frame(noise.write_message(self._payload()))
            self._index = 1
            self._stage = _Stage.ANSWER

    def step(self, eof: bool) -> Keys | NoCommonProtocol | None:
        """Go as far as the received frames allow: None when more are needed.

        Raises:
            HandshakeFailed: (or a subclass) bad bytes, an untrusted server,
                a name we do not allow (after queueing the allowed names).
        """
        while True:
            stage = self._stage
            if stage is _Stage.MESSAGES:
                noise = self._noise
                assert noise is not None
                if noise.is_finished:
                    # Let the handshake state go with the keys: a stream
                    # keeps only its transport from here on.
                    self._noise = None
                    return Keys(noise, self._peer, self._certificate)
                if noise.is_my_turn:
                    self._out += frame(noise.write_message(self._payload()))
                    self._index += 1
                    continue
            if stage is _Stage.NAME:
                try:
                    raw = self._next_frame(eof, _MAX_NAME)
                except HandshakeFailed as exc:
                    raise HandshakeFailed(_NOT_A_NAME) from exc
            else:
                raw = self._next_frame(eof)
            if raw is None:
                return None
            if stage is _Stage.NAME:
                self._read_name(raw)
            elif stage is _Stage.ALLOWED:
                assert self._offer is not None
                names = raw.decode("ascii", "replace").split(",")
                return NoCommonProtocol((self._offer.name,), tuple(n for n in names if n))
            elif stage is _Stage.ANSWER and not raw:
                # A Noise message is never empty: this is a refusal.
                self._stage = _Stage.ALLOWED
            else:
                self._read_message(raw)
                self._stage = _Stage.MESSAGES

    @property
    def authenticator(self) -> Authenticator:
        return self._authenticator

    def check_server(self, public_key: bytes) -> Peer:
        """The responder, if the initiator accepts it.

        Raises:
            PeerNotTrusted: it is not trusted, or not the expected one.
        """
        try:
            return self._authenticator(public_key, self._certificate)
        except Refusal as refusal:
            raise PeerNotTrusted(
                f"the server is not trusted: {refusal.reason}", fingerprint=fingerprint(public_key)
            ) from None

    def closed_early(self, what: str) -> HandshakeFailed:
        # A server that holds another PSK cannot decrypt our PSK message, and
        # can say nothing we could authenticate: it just hangs up.
        if self._psk is not None and not self._server:
            what += " (as a server with another network key, psk, does)"
        return HandshakeFailed(what)

    def _next_frame(self, eof: bool, limit: int = MAX_FRAME) -> bytes | None:
        # Judge by the length field first, whether or not the bytes are all
        # here: a frame over the limit is refused unread and unanswered.
        length = self._frames.next_length()
        if length is not None and length > limit:
            raise HandshakeFailed(f"a {length}-byte frame where at most {limit} fit")
        data = self._frames.next_frame()
        if data is not None:
            return bytes(data)
        if eof:
            raise self.closed_early("the peer closed the connection during the handshake")
        return None

    def _read_name(self, raw: bytes) -> None:
        if not raw.isascii():
            raise HandshakeFailed(_NOT_A_NAME)
        name = raw.decode("ascii")
        if name not in self._allowed:
            self._out += b"\0\0" + frame(",".join(self._allowed).encode("ascii"))
            raise NegotiationFailed([name], self._allowed)
        self._begin(NoiseProtocol.parse(name))
        self._stage = _Stage.MESSAGES

    def _begin(self, protocol: NoiseProtocol) -> HandshakeState:
        initiator = not self._server
        needs_key = protocol.pattern.needs_remote_static(initiator)
        self._noise = HandshakeState(
            protocol.name,
            initiator=initiator,
            prologue=prologue(protocol.name),
            s=self._identity.keypair,
            rs=self._authenticator.expected_key() if needs_key else None,
            psks=[self._psk] if self._psk is not None else [],
        )
        return self._noise

    def _payload(self) -> bytes:
        """Our certificate rides in the message that carries our static key."""
        certificate = self._identity.certificate
        assert self._noise is not None
        tokens = self._noise.protocol.pattern.messages[self._index]
        if certificate is not None and Token.S in tokens:
            return encode_payload({CERTIFICATE: certificate.encoded})
        return b""

    def _read_message(self, message: bytes) -> None:
        noise = self._noise
        assert noise is not None
        known = noise.remote_static
        try:
            fields = decode_payload(noise.read_message(message))
        except (PeerError, ProtocolViolation) as exc:
            raise HandshakeFailed(f"the peer's handshake message is invalid: {exc}") from exc
        self._index += 1
        self._certificate = fields.get(CERTIFICATE, self._certificate)
        if not self._server and known is None and noise.remote_static is not None:
            # Check the server before our next message reveals who we are.
            self._peer = self.check_server(noise.remote_static)
