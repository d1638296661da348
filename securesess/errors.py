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
    "HandshakeFailed",
    "HandshakeTimeout",
    "NegotiationFailed",
    "PeerAborted",
    "PeerNotTrusted",
    "PeerRejected",
    "ProtocolViolation",
    "RecordAuthenticationFailed",
    "TruncatedStream",
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


class PeerAborted(Exception):
    """The peer closed the stream with an error (a CLOSE record)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the peer closed the stream: {reason} (code {code})")
        self.code = code
        self.reason = reason
