"""Where the session core keeps its sessions: a small interface, and the in-memory store.

The core's transitions read and change a session only through
:class:`SessionState`, and find, create and end sessions only through
:class:`SessionStore`, so a store shared by many hubs (Redis Cluster, say)
can implement the two without touching the transitions. Each method is one
step a shared store would make atomic: taking the next sequence number,
taking the next member id, writing a variable. What belongs to one
connection (which sessions it is in) is not here: a connection lives on one
hub, and the core keeps it beside its store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, Protocol, TypeVar, final

from securesess.sessions.events import Variable
from securesess.sessions.sealing.relay import Relay

__all__ = ["MemorySession", "MemoryStore", "SessionState", "SessionStore"]

M = TypeVar("M")


class SessionState(Protocol[M]):
    """One session: its members (``M`` is the core's member record), its order, its variables."""

    @property
    def name(self) -> str: ...

    @property
    def seq(self) -> int:
        """The sequence number of the session's latest event (0 before the first)."""
        ...

    @property
    def members(self) -> Mapping[int, M]:
        """The current members by id, in the order they joined."""
        ...

    @property
    def variables(self) -> Mapping[str, Variable]:
        """Each variable's value, sealed, and version."""
        ...

    @property
    def relay(self) -> Relay:
        """The session's epochs, as the hub orders them."""
        ...

    @property
    def variable_bytes(self) -> int:
        """Bytes of all the variables' keys and values."""
        ...

    def sequence(self) -> int:
        """Take the next sequence number: every event of the session gets one."""
        ...

    def new_member_id(self) -> int:
        """Take a member id never given before in this session."""
        ...

    def admit(self, member_id: int, member: M) -> None: ...

    def discharge(self, member_id: int) -> None: ...

    def reseal(self, key: str, value: bytes, size: int) -> None:
        """Replace ``key``'s value, at the same version: sealed again, not changed."""
        ...

    def drop_variables(self) -> None:
        """Forget every variable: sealed under epochs no member holds any more."""
        ...

    def put(self, key: str, value: bytes, size: int) -> int:
        """Write a variable, the variables now ``size`` bytes; return its new version."""
        ...


class SessionStore(Protocol[M]):
    """The sessions that exist, by name."""

    def get(self, name: str) -> SessionState[M] | None: ...

    def create(self, name: str) -> SessionState[M]: ...

    def delete(self, name: str) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[SessionState[M]]: ...


@final
class MemorySession(Generic[M]):
    __slots__ = (
        "_last_member_id",
        "_members",
        "_seq",
        "_variable_bytes",
        "_variables",
        "name",
        "relay",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.relay = Relay(name)
        self._members: dict[int, M] = {}
        # Member ids count per session, so they say nothing about other sessions.
        self._last_member_id = 0
        self._variables: dict[str, Variable] = {}
        self._variable_bytes = 0
        self._seq = 0

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def members(self) -> Mapping[int, M]:
        return self._members

    @property
    def variables(self) -> Mapping[str, Variable]:
        return self._variables

    @property
    def variable_bytes(self) -> int:
        return self._variable_bytes

    def sequence(self) -> int:
        self._seq += 1
        return self._seq

    def new_member_id(self) -> int:
        self._last_member_id += 1
        return self._last_member_id

    def admit(self, member_id: int, member: M) -> None:
        self._members[member_id] = member

    def discharge(self, member_id: int) -> None:
        del self._members[member_id]

    def reseal(self, key: str, value: bytes, size: int) -> None:
        self._variables[key] = Variable(value, self._variables[key].version)
        self._variable_bytes = size

    def drop_variables(self) -> None:
        self._variables.clear()
        self._variable_bytes = 0

    def put(self, key: str, value: bytes, size: int) -> int:
        current = self._variables.get(key)
        version = current.version + 1 if current is not None else 1
        self._variables[key] = Variable(value, version)
        self._variable_bytes = size
        return version


@final
class MemoryStore(Generic[M]):
    """Sessions in this process's memory: the hub's default."""

    __slots__ = ("_sessions",)

    def __init__(self) -> None:
        self._sessions: dict[str, MemorySession[M]] = {}

    def get(self, name: str) -> MemorySession[M] | None:
        return self._sessions.get(name)

    def create(self, name: str) -> MemorySession[M]:
        session = self._sessions[name] = MemorySession[M](name)
        return session

    def delete(self, name: str) -> None:
        del self._sessions[name]

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[MemorySession[M]]:
        return iter(self._sessions.values())
