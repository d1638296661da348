"""What sealing refuses, each a :class:`SealingError`.

None of these messages quotes key material or plaintext: they name the
session, the epoch and member numbers, which the hub sees anyway.
"""

from __future__ import annotations

__all__ = [
    "ForgedContent",
    "MalformedSealing",
    "ReplayedContent",
    "SealingError",
    "StaleEpoch",
    "UnknownSender",
    "UntrustedMember",
    "WrongSession",
]


class SealingError(Exception):
    """Sealed content, a commit or a roster was refused: nothing of it was used."""


class MalformedSealing(SealingError):
    """The bytes are not a well-formed sealed content, commit or roster."""


class WrongSession(SealingError):
    """The bytes belong to another session, or to another epoch than claimed."""


class StaleEpoch(SealingError):
    """Content of an epoch that is over, or not yet begun, for this member."""


class UnknownSender(SealingError):
    """The claimed sender is not a member of the epoch the content names."""


class ForgedContent(SealingError):
    """The content does not open under its sender's key, or its signature is
    not its sender's: it was altered, or made by someone else."""


class ReplayedContent(SealingError):
    """The sender's counter did not move forward: a copy of earlier content."""


class UntrustedMember(SealingError):
    """A roster names a member whose keys this member's trust does not vouch for."""
