"""The errors securesess raises, in Trio's vocabulary.

A handshake that fails raises a subclass of :class:`HandshakeFailed`, which is
itself a :class:`trio.BrokenResourceError`: code that only knows Trio streams
still handles it, and code that cares can tell a refusal from a timeout.

After the handshake, a broken stream raises plain
:class:`trio.BrokenResourceError` chained (``from``) to one of the *causes*
below, as :class:`trio.SSLStream` chains to :class:`ssl.SSLError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

__all__ = [
    "AccessDenied",
    "AlreadyMember",
    "HandshakeFailed",
    "HandshakeTimeout",
    "HubTimeout",
    "LimitExceeded",
    "NegotiationFailed",
    "NoSuchSession",
    "NotMember",
    "PeerAborted",
    "PeerNotTrusted",
    "PeerRejected",
    "PolicyError",
    "ProtocolViolation",
    "RecordAuthenticationFailed",
    "RecordLimitReached",
    "SealingRefused",
    "SessionClosed",
    "SessionError",
    "SessionTampered",
    "TruncatedStream",
    "VersionConflict",
]


class HandshakeFailed(trio.BrokenResourceError):
    """The secure handshake did not complete; ``__cause__`` says why when known."""


class PeerRejected(HandshakeFailed):
    """The peer completed the handshake and then refused us."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the peer refused this connection: {reason} (code {code})")
        self.code = code
        self.reason = reason


class PeerNotTrusted(HandshakeFailed):
    """The peer proved a key that is not trusted, or not the one expected."""

    def __init__(self, reason: str, *, fingerprint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fingerprint = fingerprint


class NegotiationFailed(HandshakeFailed):
    """The two sides have no protocol in common (or the responder is busy)."""

    def __init__(self, offered: Sequence[str], supported: Sequence[str]) -> None:
        self.offered = tuple(offered)
        self.supported = tuple(supported)
        if supported:
            message = (
                f"no protocol in common: offered {', '.join(offered)}; "
                f"the responder allows {', '.join(supported)}"
            )
        else:
            message = "the responder is too busy to take a handshake now; try again later"
        super().__init__(message)

    @property
    def busy(self) -> bool:
        return not self.supported


class HandshakeTimeout(HandshakeFailed):
    """The handshake took longer than its timeout."""


# -- causes of a broken stream after the handshake -----------------------------------


class TruncatedStream(Exception):
    """The transport ended without the peer's authenticated end-of-stream."""


class RecordAuthenticationFailed(Exception):
    """A record failed authentication: tampered, replayed, reordered or forged."""


class ProtocolViolation(Exception):
    """The peer sent something the wire protocol does not allow."""


class RecordLimitReached(Exception):
    """This side sent all the records its key allows (2**64-1, REKEY
    included): nothing more can be sealed, so the stream must be replaced."""


class PeerAborted(Exception):
    """The peer closed the stream with an error (a CLOSE record)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the peer closed the stream: {reason} (code {code})")
        self.code = code
        self.reason = reason


# -- access policy and sessions -------------------------------------------------------


class PolicyError(ValueError):
    """A policy that cannot be used; the message says which file and rule, and why."""


class SessionError(Exception):
    """The hub refused a session request. The hub logs the same message.

    ``session`` is the session's name.
    """

    def __init__(self, message: str, *, session: str | None = None) -> None:
        super().__init__(message)
        self.session = session


class AccessDenied(SessionError):
    """The policy does not grant the right; the message names the rules involved."""


class NoSuchSession(SessionError):
    """The session does not exist (and ``create`` was not asked, or not allowed)."""


class AlreadyMember(SessionError):
    """This connection is already a member of the session."""


class NotMember(SessionError):
    """This connection is not a member of the session (or the target member is gone)."""


class SessionClosed(SessionError):
    """We are no longer a member: removed by an admin or a policy reload, fell
    too far behind, or the session was closed. ``reason`` says which."""

    def __init__(self, message: str, *, session: str | None = None, reason: str = "") -> None:
        super().__init__(message, session=session)
        self.reason = reason or message


class SessionTampered(SessionClosed):
    """The hub delivered sealed content or a commit that this member refused:
    forged, altered, replayed, out of order, or from someone its trust does
    not vouch for. The session is left at once, and nothing of what was
    refused reached the application; ``__cause__`` is the refusal (a
    :class:`~securesess.sessions.sealing.SealingError`)."""


class SealingRefused(SessionError):
    """The hub would not order our sealed content or commit (docs/protocol.md
    §10.6): most often sealed under an epoch that a commit has just ended,
    which the session's requests handle by sealing again."""


class VersionConflict(SessionError):
    """A compare-and-set found another version; ``version`` is the current one (0: unset)."""

    def __init__(self, message: str, *, session: str | None = None, version: int = 0) -> None:
        super().__init__(message, session=session)
        self.version = version


class HubTimeout(trio.TooSlowError):
    """The hub did not answer within the client's ``request_timeout``.

    The request may still take effect: the answer, if it comes, is dropped.
    """


class LimitExceeded(SessionError):
    """A hub limit: too many sessions, members or variables, or data too large."""
