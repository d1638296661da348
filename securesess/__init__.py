"""securesess: mutually authenticated, encrypted channels and confined sessions on Trio."""

from keystore import Identity, Peer, TrustStore
from securesess._serve import SecureListener, open_secure_stream, serve_secure
from securesess._socket import wrap_socket
from securesess._stream import SecureStream
from securesess.client import HubConnection, Session, connect_hub
from securesess.errors import (
    AccessDenied,
    AlreadyMember,
    HandshakeFailed,
    HandshakeTimeout,
    LimitExceeded,
    NegotiationFailed,
    NoSuchSession,
    NotMember,
    PeerAborted,
    PeerNotTrusted,
    PeerRejected,
    PolicyError,
    ProtocolViolation,
    RecordAuthenticationFailed,
    RecordLimitReached,
    SessionClosed,
    SessionError,
    TruncatedStream,
    VersionConflict,
)
from securesess.events import (
    Member,
    MemberJoined,
    MemberLeft,
    Message,
    MessageId,
    Variable,
    VariableChanged,
)
from securesess.hub import Hub, serve_hub
from securesess.policy import Policy, Right

__all__ = [
    "AccessDenied",
    "AlreadyMember",
    "HandshakeFailed",
    "HandshakeTimeout",
    "Hub",
    "HubConnection",
    "Identity",
    "LimitExceeded",
    "Member",
    "MemberJoined",
    "MemberLeft",
    "Message",
    "MessageId",
    "NegotiationFailed",
    "NoSuchSession",
    "NotMember",
    "Peer",
    "PeerAborted",
    "PeerNotTrusted",
    "PeerRejected",
    "Policy",
    "PolicyError",
    "ProtocolViolation",
    "RecordAuthenticationFailed",
    "RecordLimitReached",
    "Right",
    "SecureListener",
    "SecureStream",
    "Session",
    "SessionClosed",
    "SessionError",
    "TruncatedStream",
    "TrustStore",
    "Variable",
    "VariableChanged",
    "VersionConflict",
    "connect_hub",
    "open_secure_stream",
    "serve_hub",
    "serve_secure",
    "wrap_socket",
]
