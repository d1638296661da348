"""The wire protocol's close codes, and the default of every limit, in one public place.

Each default is the value an entry point uses when it is not told otherwise;
the modules that apply a limit import it from here, so an operator reading
this page reads what runs. SECURITY.md explains what each limit bounds.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "DEFAULT_CLIENT_BACKLOG",
    "DEFAULT_CLIENT_SESSION_STATE",
    "DEFAULT_COMMIT_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_EPOCH_MESSAGES",
    "DEFAULT_EPOCH_SECONDS",
    "DEFAULT_HANDSHAKE_BURST",
    "DEFAULT_HANDSHAKE_RATE",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_CONCURRENT_HANDSHAKES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_PEER",
    "DEFAULT_MAX_CONNECTION_BACKLOG",
    "DEFAULT_MAX_HANDSHAKES_PER_SOURCE",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_MEMBERSHIPS",
    "DEFAULT_MAX_PEER_BACKLOG",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_VARIABLES",
    "DEFAULT_MAX_VARIABLE_BYTES",
    "DEFAULT_REQUEST_TIMEOUT",
    "REKEY_AFTER_RECORDS",
    "CloseCode",
]


class CloseCode(enum.IntEnum):
    """Why a CLOSE record ended a connection (docs/protocol.md, section 5)."""

    NOT_TRUSTED = 1
    NOT_EXPECTED = 2
    ACCESS_DENIED = 3
    PROTOCOL_VIOLATION = 4
    SHUTTING_DOWN = 5
    #: The service behind the responder cannot be reached, or it is at its limit.
    UNAVAILABLE = 6
    #: The connection the sender relays (a tunnel's plain leg) ended abnormally.
    RELAY_FAILED = 7
    #: The sender ended a connection that carried nothing for too long.
    IDLE = 8


# -- a connection ---------------------------------------------------------------------

#: Seconds the whole handshake may take, from the first byte to ACCEPT.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: A sender rekeys at the latest after this many records under one key.
REKEY_AFTER_RECORDS: Final = 2**20

# -- a server's admission ---------------------------------------------------------------

#: Handshakes a server runs at once; more clients are told "busy".
DEFAULT_MAX_CONCURRENT_HANDSHAKES: Final = 256
#: Handshakes one source (an IPv4 address or IPv6 /64) may have in progress
#: once half the slots are taken: one source then holds at most 128 of the
#: 256, and taking them all needs at least 5 sources.
DEFAULT_MAX_HANDSHAKES_PER_SOURCE: Final = 32
#: Established connections one peer (one static key) may hold at once. At
#: the limit, a new connection takes the place of the peer's oldest one that
#: has not proved it is live (see SecureStream.confirmed: in practice, one
#: opened by a replayed IK message 1), or is refused if all have.
DEFAULT_MAX_CONNECTIONS_PER_PEER: Final = 256
#: Handshakes a second each source may start, on average.
DEFAULT_HANDSHAKE_RATE: Final = 50.0
#: Handshakes a source may start at once, after a quiet spell: a client
#: that opens a pool of connections at start-up stays within it.
DEFAULT_HANDSHAKE_BURST: Final = 200

# -- a hub ------------------------------------------------------------------------------

#: Sessions a hub holds at once.
DEFAULT_MAX_SESSIONS: Final = 10_000
#: Sessions one connection may be a member of.
DEFAULT_MAX_MEMBERSHIPS: Final = 1_000
#: Members per session.
DEFAULT_MAX_MEMBERS: Final = 10_000
#: Variables per session.
DEFAULT_MAX_VARIABLES: Final = 1_000
#: Bytes of variable keys and values per session.
DEFAULT_MAX_VARIABLE_BYTES: Final = 4 << 20
#: Undelivered bytes a member may have queued before the hub removes it.
DEFAULT_MAX_BACKLOG: Final = 8 << 20
#: Undelivered bytes of all one connection's memberships before the hub
#: disconnects it: without it, a connection in many sessions that never
#: reads would hold ``max_memberships`` times ``max_backlog``.
DEFAULT_MAX_CONNECTION_BACKLOG: Final = 32 << 20
#: Undelivered bytes of all one peer's connections (one key) before the hub
#: disconnects the one of them that holds the most.
DEFAULT_MAX_PEER_BACKLOG: Final = 64 << 20

# -- a hub's client ---------------------------------------------------------------------

#: Bytes of events a session may hold unread before it is ended locally.
DEFAULT_CLIENT_BACKLOG: Final = 16 << 20
#: Bytes of members and variables a session may hold before it is ended
#: locally: room for the hub's default limits (10,000 members, 4 MiB of
#: variables), and a bound on what a hub could make a client keep.
DEFAULT_CLIENT_SESSION_STATE: Final = 32 << 20
#: Seconds a client waits for the hub's WELCOME and for each answer.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0

# -- a tunnel end -----------------------------------------------------------------------

#: Connections one tunnel end carries at once; more are refused.
DEFAULT_MAX_CONNECTIONS: Final = 1024
#: How long a tunnel end waits for a TCP connection to the far side.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: How long a connection may carry nothing, either way, before it is cut
#: (stunnel's default too): long enough for an idle pool, short enough that
#: connections whose ends vanished without a word do not pile up for ever.
DEFAULT_IDLE_TIMEOUT: Final = 12 * 3600.0

# -- a sealed session -----------------------------------------------------------------

#: Content one epoch of a sealed session carries before the hub makes a new
#: epoch due, its members unchanged: a bound on what any one key seals.
DEFAULT_EPOCH_MESSAGES: Final = 1 << 20
#: Seconds one epoch lasts at most before the hub makes a new one due: a
#: bound on how long a stolen epoch secret reads what follows.
DEFAULT_EPOCH_SECONDS: Final = 3600.0
#: Seconds the designated member has to commit a due epoch before the hub
#: removes it from the session: a member that stalls would otherwise keep
#: every joiner out, and every removed member's keys in use.
DEFAULT_COMMIT_TIMEOUT: Final = 10.0
