"""securesess: mutually authenticated, encrypted channels and confined sessions on Trio."""

from keystore import Identity, Peer, TrustStore
from securesess._stream import SecureStream
from securesess.errors import (
    HandshakeFailed,
    HandshakeTimeout,
    NegotiationFailed,
    PeerAborted,
    PeerNotTrusted,
    PeerRejected,
    ProtocolViolation,
    RecordAuthenticationFailed,
    TruncatedStream,
)

__all__ = [
    "HandshakeFailed",
    "HandshakeTimeout",
    "Identity",
    "NegotiationFailed",
    "Peer",
    "PeerAborted",
    "PeerNotTrusted",
    "PeerRejected",
    "ProtocolViolation",
    "RecordAuthenticationFailed",
    "SecureStream",
    "TruncatedStream",
    "TrustStore",
]
