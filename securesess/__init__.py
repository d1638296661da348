"""securesess: mutually authenticated, encrypted channels and confined sessions on Trio."""

from keystore import Identity, Peer, TrustStore
from securesess._serve import SecureListener, open_secure_stream, serve_secure
from securesess._socket import wrap_socket
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
    "SecureListener",
    "SecureStream",
    "TruncatedStream",
    "TrustStore",
    "open_secure_stream",
    "serve_secure",
    "wrap_socket",
]
