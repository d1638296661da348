"""What a session member sees: members, message ids, and the events of a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from keystore import fingerprint

__all__ = [
    "Event",
    "Member",
    "MemberJoined",
    "MemberLeft",
    "Message",
    "MessageId",
    "Variable",
    "VariableChanged",
]


@dataclass(frozen=True, slots=True)
class Member:
    """One process in a session's process set, as the hub authenticated it.

    ``id`` is the hub's number for this membership: unique for the hub's
    lifetime, so a process that leaves and joins again is a new member.
    ``name`` and ``groups`` come from its certificate or its pin.
    """

    id: int
    name: str | None
    public_key: bytes = field(repr=False)
    groups: frozenset[str] = frozenset()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def __str__(self) -> str:
        return f"{self.name or 'unnamed'}#{self.id} ({self.fingerprint})"


@dataclass(frozen=True, slots=True, order=True)
class MessageId:
    """A message's place in its session: ``seq`` orders every event of the
    session (the hub counts them), ``sender`` is the member id that sent it.

    Ids sort in the session's total order.
    """

    seq: int
    sender: int

    def __str__(self) -> str:
        return f"{self.seq}@{self.sender}"


@dataclass(frozen=True, slots=True)
class Message:
    """A message sent in the session; ``direct`` when it was sent to us alone."""

    id: MessageId
    sender: Member
    data: bytes
    direct: bool = False


@dataclass(frozen=True, slots=True)
class MemberJoined:
    member: Member
    seq: int


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """``reason`` says why: it left, disconnected, fell behind, was removed."""

    member: Member
    reason: str
    seq: int


class Variable(NamedTuple):
    """A session variable's value and version (1 for the first value)."""

    value: bytes
    version: int


@dataclass(frozen=True, slots=True)
class VariableChanged:
    key: str
    value: bytes
    version: int
    by: Member | None
    seq: int


Event = Message | MemberJoined | MemberLeft | VariableChanged
