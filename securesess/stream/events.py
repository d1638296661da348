"""The events a :class:`~securesess.stream.connection.Connection` reports: small frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from keystore import Peer

__all__ = [
    "Data",
    "EndOfStream",
    "Event",
    "HandshakeComplete",
    "NoCommonProtocol",
    "PeerClosed",
    "Refused",
]


@final
@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake succeeded: the initiator read ACCEPT, or the responder queued it."""

    peer: Peer


@final
@dataclass(frozen=True, slots=True)
class Refused:
    """The responder refused us after the handshake, with a CLOSE record."""

    code: int
    reason: str


@final
@dataclass(frozen=True, slots=True)
class NoCommonProtocol:
    """The responder does not allow the name we offered; ``allowed`` is empty if it is busy."""

    offered: tuple[str, ...]
    allowed: tuple[str, ...]

    @property
    def busy(self) -> bool:
        return not self.allowed


@final
@dataclass(frozen=True, slots=True)
class Data:
    """Decrypted stream data; the receiver owns the buffer."""

    data: bytearray


@final
@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer's authenticated END: it sends nothing more."""


@final
@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer gave up on the stream with a CLOSE record."""

    code: int
    reason: str


Event = HandshakeComplete | Refused | NoCommonProtocol | Data | EndOfStream | PeerClosed
