"""A hub's limits, as one frozen value: what its sessions hold, and what it queues.

The session core enforces the first five (:class:`Limits`); the hub's
delivery the three backlogs. ``Hub`` and ``serve_hub`` take one
:class:`HubLimits`, or its fields as keyword arguments beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, final

from securesess.constants import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_CONNECTION_BACKLOG,
    DEFAULT_MAX_PEER_BACKLOG,
)
from securesess.sessions.outcome import Limits
from securesess.stream.options import SecureOptionsArgs, ServeArgs

__all__ = ["HubArgs", "HubLimits", "HubLimitsArgs", "ServeHubArgs"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class HubLimits(Limits):
    """What a hub's sessions may hold, and what it may queue undelivered.

    Args:
        max_sessions: sessions the hub holds at once.
        max_memberships: sessions one connection may be a member of.
        max_members: members per session.
        max_variables: variables per session.
        max_variable_bytes: bytes of keys and values per session.
        commit_timeout: seconds a member designated to commit a sealed
            session's next epoch has, before it is removed from it.
        max_backlog: undelivered bytes per member before it is removed.
        max_connection_backlog: undelivered bytes of all one connection's
            memberships before it is disconnected.
        max_peer_backlog: undelivered bytes of all one peer's connections
            before the one of them that holds the most is disconnected.

    Raises:
        ValueError: a limit is below 1.
    """

    max_backlog: int = DEFAULT_MAX_BACKLOG
    max_connection_backlog: int = DEFAULT_MAX_CONNECTION_BACKLOG
    max_peer_backlog: int = DEFAULT_MAX_PEER_BACKLOG


class HubLimitsArgs(TypedDict, total=False):
    """The fields of :class:`HubLimits`, as keyword arguments beside one."""

    max_sessions: int
    max_memberships: int
    max_members: int
    max_variables: int
    max_variable_bytes: int
    commit_timeout: float
    max_backlog: int
    max_connection_backlog: int
    max_peer_backlog: int


class HubArgs(SecureOptionsArgs, HubLimitsArgs, total=False):
    """The keyword arguments of ``Hub``: its connection options and its limits."""


class ServeHubArgs(ServeArgs, HubLimitsArgs, total=False):
    """The keyword arguments of ``serve_hub``: options, admission and hub limits."""
