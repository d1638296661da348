"""The one exception tree of the handshake package.

Errors are split by blame, the way h11 splits them:

* :class:`UsageError` — *we* called the API wrongly (wrong turn, missing key,
  message too long to send, ...). Retrying with a corrected call may work.
* :class:`PeerError` — the *other side* sent something that fails the protocol
  (bad authentication tag, truncated message, low-order key). The connection
  should be dropped.

Every error leaves the object that raised it unchanged, so callers never have
to reason about half-applied state. Messages never contain key material.
"""

from __future__ import annotations

__all__ = [
    "DecryptError",
    "HandshakeError",
    "HandshakeFinishedError",
    "HandshakeNotFinishedError",
    "InvalidBufferError",
    "InvalidKeyError",
    "InvalidNonceError",
    "InvalidPublicKeyError",
    "MalformedMessageError",
    "MessageTooLongError",
    "MissingKeyError",
    "MissingPskError",
    "NonceExhaustedError",
    "OneWayPatternError",
    "PeerError",
    "ProtocolNameError",
    "UnusedKeyError",
    "UsageError",
    "WrongTurnError",
]


class HandshakeError(Exception):
    """Base class of every error raised by :mod:`handshake`."""


# -- local: the API was misused -------------------------------------------------


class UsageError(HandshakeError):
    """The caller misused the API; the state object is unchanged."""


class ProtocolNameError(UsageError, ValueError):
    """A Noise protocol name is malformed or names something unsupported."""


class InvalidKeyError(UsageError, ValueError):
    """A key or PSK given to the API has the wrong length."""


class InvalidNonceError(UsageError, ValueError):
    """A nonce outside ``range(2**64)`` was given to SetNonce."""


class InvalidBufferError(UsageError, ValueError):
    """An output buffer for ``*_into`` is read-only or too small."""


class MissingKeyError(UsageError):
    """The pattern needs a key (``s`` or ``rs``) that was not supplied."""


class MissingPskError(MissingKeyError):
    """The protocol has psk modifiers but fewer PSKs were supplied."""


class UnusedKeyError(UsageError):
    """A key was supplied that the pattern never uses.

    Refused rather than ignored: passing ``rs`` to ``XX`` would otherwise look
    like pinning the peer's key while pinning nothing.
    """


class WrongTurnError(UsageError):
    """write_message() or read_message() was called out of turn."""


class HandshakeFinishedError(UsageError):
    """The handshake is already complete (or already split into transport)."""


class HandshakeNotFinishedError(UsageError):
    """into_transport() was called before the last handshake message."""


class MessageTooLongError(UsageError):
    """The message to send would exceed the Noise maximum of 65535 bytes."""


class NonceExhaustedError(UsageError):
    """The cipher's 64-bit nonce is used up; rekeying does not reset it."""


class OneWayPatternError(UsageError):
    """This side of a one-way pattern may not send (responder) or receive (initiator)."""


# -- remote: the peer broke the protocol ------------------------------------------


class PeerError(HandshakeError):
    """The peer's message fails the protocol; the state object is unchanged."""


class DecryptError(PeerError):
    """A message failed authentication (wrong key, tampered, replayed or reordered)."""


class MalformedMessageError(PeerError):
    """A message is too short for the keys it must carry, or too long to be Noise."""


class InvalidPublicKeyError(PeerError):
    """A Diffie-Hellman with the peer's key gave the all-zero (low-order) result."""
