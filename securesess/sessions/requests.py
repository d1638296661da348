"""What a client asks of a hub, as typed values: the wire codec decodes each request once.

The session core takes these and never looks at MessagePack, so every check
of shape, type and range happens in one place (``wire.decode_request``), and
a transition can trust its input. ``rid`` is the client's request id, which
the answer carries back.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Close",
    "Commit",
    "Enter",
    "Hello",
    "Join",
    "Leave",
    "Remove",
    "Request",
    "Reseal",
    "Send",
    "Set",
]


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message of a connection; ``version`` is the client's hub protocol."""

    version: int


@dataclass(frozen=True, slots=True)
class Join:
    rid: int
    session: str
    #: Create the session when it does not exist.
    create: bool


@dataclass(frozen=True, slots=True)
class Leave:
    rid: int
    session: str


@dataclass(frozen=True, slots=True)
class Send:
    rid: int
    session: str
    #: The member it is for, or ``None`` for every member that receives.
    to: int | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Set:
    rid: int
    session: str
    key: str
    value: bytes
    #: Compare-and-set: the version the variable must be at (0: unset).
    expected: int | None


@dataclass(frozen=True, slots=True)
class Remove:
    rid: int
    session: str
    member: int
    reason: str


@dataclass(frozen=True, slots=True)
class Close:
    rid: int
    session: str
    reason: str


@dataclass(frozen=True, slots=True)
class Enter:
    """A member's roster entry for its membership: its keys, for the next commit."""

    rid: int
    session: str
    entry: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit beginning the session's next epoch, from the member the hub designated."""

    rid: int
    session: str
    commit: bytes


@dataclass(frozen=True, slots=True)
class Reseal:
    """A variable's value sealed again under the current epoch, for its newcomers."""

    rid: int
    session: str
    key: str
    version: int
    value: bytes


#: A request after HELLO: each names a session and carries a request id.
Request = Join | Leave | Send | Set | Remove | Close | Enter | Commit | Reseal
