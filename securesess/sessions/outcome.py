"""What the session core works with and hands back: clients, members, limits, outcomes.

Plain records, no behaviour: :mod:`securesess.sessions.core` changes them,
the hub reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Final, final

from keystore import Peer
from securesess.constants import (
    DEFAULT_COMMIT_TIMEOUT,
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_MEMBERSHIPS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_VARIABLE_BYTES,
    DEFAULT_MAX_VARIABLES,
)
from securesess.policy import Grant, Right
from securesess.sessions import requests as rq
from securesess.sessions.wire import ErrorCode, Op, pack

__all__ = [
    "Client",
    "Delivery",
    "Ending",
    "Limits",
    "Member",
    "Outcome",
    "Refused",
    "Relayed",
    "membership",
    "ok",
]


def ok(rid: int, value: object) -> bytes:
    """The OK answer to request ``rid``."""
    return pack(Op.OK, rid, value)


class Refused(Exception):
    """A request the hub answers with ERROR: the code and the sentence."""

    def __init__(self, code: ErrorCode, message: str, *extra: Any) -> None:
        super().__init__(message)
        self.code: Final = code
        self.message: Final = message
        self.extra: Final = extra


@dataclass(frozen=True, slots=True)
class Limits:
    """What the sessions of one core may hold. Each must be at least 1.

    (:class:`~securesess.sessions.limits.HubLimits` adds a hub's delivery
    limits to these.)
    """

    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_memberships: int = DEFAULT_MAX_MEMBERSHIPS
    max_members: int = DEFAULT_MAX_MEMBERS
    max_variables: int = DEFAULT_MAX_VARIABLES
    max_variable_bytes: int = DEFAULT_MAX_VARIABLE_BYTES
    #: Seconds a designated member has to commit a due epoch.
    commit_timeout: float = DEFAULT_COMMIT_TIMEOUT

    def __post_init__(self) -> None:
        for limit in fields(self):
            if getattr(self, limit.name) < 1:
                raise ValueError(f"{limit.name} must be at least 1")


@final
@dataclass(slots=True)
class Relayed:
    """What the hub has ordered of sealed sessions: content (messages,
    values) and its bytes, and commits. It holds no key to any of it."""

    contents: int = 0
    content_bytes: int = 0
    commits: int = 0

    def count(self, request: rq.Request) -> None:
        """``request`` was ordered."""
        if isinstance(request, rq.Send):
            self.contents += 1
            self.content_bytes += len(request.data)
        elif isinstance(request, rq.Set | rq.Reseal):
            self.contents += 1
            self.content_bytes += len(request.value)
        elif isinstance(request, rq.Commit):
            self.commits += 1


@final
class Client:
    """One connection, as the core knows it: the peer, and its memberships by session."""

    __slots__ = ("fields", "memberships", "peer")

    def __init__(self, peer: Peer) -> None:
        self.peer: Final = peer
        self.fields: Final = [peer.name, peer.public_key, sorted(peer.groups)]
        self.memberships: dict[str, Member] = {}


@final
class Member:
    """One membership: a client in a session, with the rights the policy grants it there."""

    __slots__ = ("announced", "client", "entry", "fields", "grant", "id", "receives", "session")

    def __init__(self, member_id: int, client: Client, session: str, grant: Grant) -> None:
        self.id: Final = member_id
        self.client: Final = client
        self.session: Final = session
        self.grant = grant
        self.receives = Right.RECEIVE in grant
        self.fields: Final = [member_id, *client.fields]
        #: Its roster entry (ENTER), once it has sent one: until then it is
        #: in no epoch, and sealed content neither comes from nor goes to it.
        self.entry: bytes | None = None
        #: Whether the others have been told it joined: once a commit named it.
        self.announced = False

    def __str__(self) -> str:
        return f"{self.client.peer.name or 'unnamed'}#{self.id}"


@final
@dataclass(slots=True)
class Delivery:
    """One event, packed once, for each of ``recipients``' queues."""

    data: bytes
    recipients: list[Member]


@final
@dataclass(frozen=True, slots=True)
class Ending:
    member: Member
    #: The ENDED message for the member's client, if it is to be told.
    notice: bytes | None


@final
@dataclass(slots=True)
class Outcome:
    """What a transition asks the hub to do, in the order of :mod:`securesess.sessions.core`."""

    reply: bytes | None = None
    #: Why the request was refused, when ``reply`` is an ERROR.
    refused: Refused | None = None
    joined: Member | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    ended: list[Ending] = field(default_factory=list)


def membership(client: Client, name: str) -> Member:
    """``client``'s membership of session ``name``, or NOT_MEMBER."""
    member = client.memberships.get(name)
    if member is None:
        raise Refused(ErrorCode.NOT_MEMBER, f"not a member of session {name!r}")
    return member
