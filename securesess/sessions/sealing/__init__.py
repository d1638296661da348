"""Sealing a session's content end to end, so the hub relays what it cannot read.

A session moves through *epochs*. Each epoch has a secret that one member
makes and wraps, with HPKE (RFC 9180), to the membership key of every
member of that epoch (a key made for that membership, signed with the
member's identity), in a signed :mod:`commit <securesess.sessions.sealing.commit>`;
the hub only orders commits among the session's messages. Members seal each
message under a key of their own derived from the epoch secret, and sign it
with their identity's Ed25519 key, so neither the hub nor another member can
read it (outside the epoch's members) or forge its sender.

Everything here is pure computation on bytes, like :mod:`handshake`: no event
loop, socket, file or clock. docs/protocol.md §10 specifies the bytes.
"""

from __future__ import annotations

from securesess.sessions.sealing.commit import Commit, make_commit
from securesess.sessions.sealing.content import Kind, Opened, SealedHeader
from securesess.sessions.sealing.errors import (
    ForgedContent,
    MalformedSealing,
    ReplayedContent,
    SealingError,
    StaleEpoch,
    UnknownSender,
    UntrustedMember,
    WrongSession,
)
from securesess.sessions.sealing.group import EpochChange, GroupState
from securesess.sessions.sealing.relay import Relay
from securesess.sessions.sealing.roster import Credential, Roster, RosterEntry
from securesess.sessions.sealing.schedule import EpochKeys

__all__ = [
    "Commit",
    "Credential",
    "EpochChange",
    "EpochKeys",
    "ForgedContent",
    "GroupState",
    "Kind",
    "MalformedSealing",
    "Opened",
    "Relay",
    "ReplayedContent",
    "Roster",
    "RosterEntry",
    "SealedHeader",
    "SealingError",
    "StaleEpoch",
    "UnknownSender",
    "UntrustedMember",
    "WrongSession",
    "make_commit",
]
