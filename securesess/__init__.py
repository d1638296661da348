"""securesess: mutually authenticated, encrypted channels and confined sessions on Trio."""

from keystore import Identity, Peer, TrustStore
from securesess.constants import CloseCode
from securesess.errors import (
    AccessDenied,
    AlreadyMember,
    HandshakeFailed,
    HandshakeTimeout,
    HubTimeout,
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
    SealingRefused,
    SessionClosed,
    SessionError,
    SessionTampered,
    TruncatedStream,
    VersionConflict,
)
from securesess.policy import Policy, Right
from securesess.sessions.client import HubConnection, Session, connect_hub
from securesess.sessions.events import (
    Member,
    MemberJoined,
    MemberLeft,
    Message,
    MessageId,
    Variable,
    VariableChanged,
)
from securesess.sessions.hub import Hub, serve_hub
from securesess.sessions.limits import HubLimits
from securesess.stream.options import AdmissionLimits, SecureOptions
from securesess.stream.secure_stream import SecureStream
from securesess.stream.serve import SecureListener, open_secure_stream, serve_secure
from securesess.stream.sockets import wrap_socket

__all__ = [
    "AccessDenied",
    "AdmissionLimits",
    "AlreadyMember",
    "CloseCode",
    "HandshakeFailed",
    "HandshakeTimeout",
    "Hub",
    "HubConnection",
    "HubLimits",
    "HubTimeout",
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
    "SealingRefused",
    "SecureListener",
    "SecureOptions",
    "SecureStream",
    "Session",
    "SessionClosed",
    "SessionError",
    "SessionTampered",
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
