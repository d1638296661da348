"""The session manager ("hub"): named sessions whose data stays inside their member set.

Theory of operation
-------------------

Every client connection is a :class:`SecureStream`, so by the time the hub
sees a request it knows the peer's key, name and groups, and the access
policy has already admitted it (the handshake refuses peers no rule is
about). Each connection has two tasks:

* a **reader** that decodes requests (``securesess.sessions.wire``) and hands
  each one to the session core (``securesess.sessions.core``), which decides
  synchronously, to completion, before the next, and returns what to send to
  whom; the reader queues it. All session state lives in this one Trio
  thread and no request ever waits while holding it, so there are no locks,
  a session's events get their sequence numbers in one total order, and
  "removed" takes effect between two requests: nothing enqueued after that
  point reaches the removed member.
* a **writer** that sends what was queued for the connection: first the
  replies, then, round-robin, up to a quantum from each membership's queue,
  batched into one ``send_all`` (``securesess.sessions.delivery``).

The core packs a broadcast once and the hub appends the same bytes object to
each recipient's queue, so fan-out costs one append per member. Senders never
wait for recipients: a member whose undelivered backlog exceeds
``max_backlog`` bytes is removed from the session (it gets ``ENDED``,
the others see it leave), so a slow member cannot stall the others or make
the hub's memory grow without bound. A client that does not read its
replies stops being read (its reader waits), which pushes back on it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from functools import partial
from typing import Any, Final, final

import trio

from keystore import Certificate, Identity, Peer, TrustStore, UntrustedPeerError
from securesess.constants import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_CONNECTION_BACKLOG,
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_MEMBERSHIPS,
    DEFAULT_MAX_PEER_BACKLOG,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_VARIABLE_BYTES,
    DEFAULT_MAX_VARIABLES,
    CloseCode,
)
from securesess.errors import ProtocolViolation
from securesess.policy import Policy, readmission
from securesess.sessions import wire
from securesess.sessions.connection import HubConnection
from securesess.sessions.core import SessionCore
from securesess.sessions.delivery import Backlogs, Mailbox
from securesess.sessions.outcome import Limits, Member, Outcome
from securesess.stream.expiry import until_expired
from securesess.stream.secure_stream import SecureStream
from securesess.stream.serve import SecureListener, serve_secure

__all__ = [
    "Hub",
    "serve_hub",
]

log = logging.getLogger("securesess.hub")

_REQUESTS_PER_TURN: Final = 64
# The keywords of serve_hub that are the Hub's, not serve_secure's.
_LIMITS: Final = frozenset(
    {"max_backlog", "max_connection_backlog", "max_peer_backlog"}
    | {limit.name for limit in fields(Limits)}
)


@final
class Hub:
    """A session manager. Serve it with :meth:`serve` (or :func:`serve_hub`).

    Args:
        identity: the hub's identity.
        trust: whom it accepts; :meth:`reload` can replace it.
        policy: the access policy, a :class:`Policy` or a path to one.
        max_backlog: undelivered bytes per member before it is removed.
        max_connection_backlog: undelivered bytes of all one connection's
            memberships before it is disconnected.
        max_peer_backlog: undelivered bytes of all one peer's connections
            before the one that goes over is disconnected.
        max_sessions: sessions the hub holds at once.
        max_memberships: sessions one connection may be a member of.
        max_members: members per session.
        max_variables: variables per session.
        max_variable_bytes: bytes of keys and values per session.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        trust: TrustStore,
        policy: Policy | str,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_connection_backlog: int = DEFAULT_MAX_CONNECTION_BACKLOG,
        max_peer_backlog: int = DEFAULT_MAX_PEER_BACKLOG,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_memberships: int = DEFAULT_MAX_MEMBERSHIPS,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_variables: int = DEFAULT_MAX_VARIABLES,
        max_variable_bytes: int = DEFAULT_MAX_VARIABLE_BYTES,
    ) -> None:
        for name, value in (
            ("max_backlog", max_backlog),
            ("max_connection_backlog", max_connection_backlog),
            ("max_peer_backlog", max_peer_backlog),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        limits = Limits(
            max_sessions=max_sessions,
            max_memberships=max_memberships,
            max_members=max_members,
            max_variables=max_variables,
            max_variable_bytes=max_variable_bytes,
        )
        self.identity: Final = identity
        self._trust = trust
        if not isinstance(policy, Policy):
            policy = Policy.load(policy, trust=trust)
        self._core: Final = SessionCore(policy, limits=limits)
        self._backlogs: Final = Backlogs[HubConnection](
            max_backlog=max_backlog,
            max_connection=max_connection_backlog,
            max_peer=max_peer_backlog,
        )
        # Undelivered bytes per peer key, over all its connections.
        self._peer_backlog: Final = self._backlogs.peer
        self._mailboxes: dict[Member, Mailbox[HubConnection]] = {}
        self._connections: set[HubConnection] = set()
        self._listeners: list[SecureListener] = []

    def __repr__(self) -> str:
        return (
            f"<Hub {self.identity.fingerprint}: {len(self._connections)} connection(s), "
            f"{len(self._core)} session(s)>"
        )

    # -- what an operator can look at ------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._core.policy

    @property
    def listeners(self) -> Sequence[SecureListener]:
        return tuple(self._listeners)

    @property
    def port(self) -> int:
        """The TCP port the hub listens on (after :meth:`serve` has started)."""
        if not self._listeners:
            raise RuntimeError("the hub is not serving yet")
        transport = self._listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        return int(transport.socket.getsockname()[1])

    def sessions(self) -> dict[str, list[str]]:
        """Each session's name and its members (``name#id``), for logs and tests."""
        return self._core.sessions()

    # -- serving -----------------------------------------------------------------

    def authorize(self, peer: Peer) -> str | None:
        """The handshake's last check: refuse peers no rule of the policy is about."""
        return self.policy.refusal(peer)

    async def serve(
        self,
        port: int,
        *,
        host: str | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED,
        **options: Any,
    ) -> None:
        """Listen on ``port`` until cancelled; ``options`` go to :func:`serve_secure`.

        Raises:
            OSError: it cannot listen (the port is taken, say), bare, as
                :func:`serve_secure` raises it, not in an exception group.
        """
        listening = False
        try:
            async with trio.open_nursery() as nursery:
                self._listeners = await nursery.start(
                    partial(
                        serve_secure,
                        self.handle,
                        port,
                        host=host,
                        identity=self.identity,
                        trust=self._trust,
                        authorize=self.authorize,
                        handshake_timeout=handshake_timeout,
                        **options,
                    )
                )
                listening = True
                for problem in self.policy.problems:
                    log.warning("policy %s: %s", self.policy.source, problem)
                task_status.started(self)
        except BaseExceptionGroup as group:
            failure = group.exceptions[0]
            if not listening and len(group.exceptions) == 1 and isinstance(failure, OSError):
                raise failure from None
            raise

    async def handle(self, stream: SecureStream) -> None:
        """Serve one client over an authenticated ``stream`` until it goes away.

        :meth:`serve` calls this for each connection; tests and custom
        servers may call it with any handshaken server-side SecureStream.
        """
        await stream.do_handshake()
        # Check again against the current trust and policy: a reload may have
        # happened while this handshake ran against the previous ones (and a
        # stream may not have come through serve() at all). No await between
        # this check and joining self._connections, which reload() walks.
        # The peer is who the current trust store says it is: a name and
        # groups re-pinned during the handshake apply from the start.
        peer = stream.peer
        try:
            peer = self._trust.verify(peer.public_key, peer.certificate)
        except UntrustedPeerError as exc:
            refusal: str | None = f"not trusted: {exc}"
            code = CloseCode.NOT_TRUSTED
        else:
            refusal, code = self.policy.refusal(peer), CloseCode.ACCESS_DENIED
        if refusal is not None:
            log.info("refused %s: %s", peer, refusal)
            await stream.abort(code, refusal)
            return
        connection = HubConnection(stream, self._core.connect(peer))
        self._connections.add(connection)
        log.info("%s connected", connection.peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connection.write_loop, self._backlogs)
                if connection.peer.certificate is not None:
                    nursery.start_soon(self._expire, connection, connection.peer.certificate)
                with connection.reader_scope:
                    await self._read_loop(connection)
                await connection.stop_writer()
                nursery.cancel_scope.cancel()
        finally:
            self._connections.discard(connection)
            self._apply(self._core.disconnect(connection.client, "disconnected"))
            self._evict_laggards()
            await connection.shut()
            reason = connection.close[1] if connection.close else "disconnected"
            log.info("%s gone: %s", connection.peer, reason)

    async def _expire(self, connection: HubConnection, certificate: Certificate) -> None:
        """Disconnect a peer when the certificate it was admitted by expires."""
        await until_expired(certificate)
        if connection in self._connections:
            log.info("%s: its certificate expired", connection.peer)
            self._disconnect(connection, "its certificate expired")

    async def _read_loop(self, connection: HubConnection) -> None:
        reader = wire.MessageReader()
        greeted = False
        stream, client = connection.stream, connection.client
        try:
            while True:
                data = await stream.receive_some(wire.RECEIVE_SIZE)
                if not data:
                    return
                for handled, message in enumerate(reader.feed(data), 1):
                    if connection.unread:
                        await connection.wait_for_room()
                    elif handled % _REQUESTS_PER_TURN == 0:
                        # A chunk can hold thousands of requests: let the
                        # other connections have a turn between them.
                        await trio.lowlevel.checkpoint()
                    if not greeted:
                        connection.reply(self._core.welcome(client, wire.decode_hello(message)))
                        greeted = True
                        continue
                    self._apply(self._core.handle(client, wire.decode_request(message)), connection)
                    self._evict_laggards()
        except ProtocolViolation as exc:
            log.warning("%s broke the hub protocol: %s", connection.peer, exc)
            connection.close = (CloseCode.PROTOCOL_VIOLATION, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    # -- doing what the core decided -------------------------------------------------

    def _apply(self, outcome: Outcome, requester: HubConnection | None = None) -> None:
        """Queue what ``outcome`` says, in the order :mod:`securesess.sessions.core` gives."""
        mailboxes, backlogs = self._mailboxes, self._backlogs
        for ending in outcome.ended:
            mailbox = mailboxes.pop(ending.member)
            backlogs.discard(mailbox)
            if ending.notice is not None:
                mailbox.outbox.reply(ending.notice)
        if outcome.joined is not None:
            assert requester is not None, "only a request joins"
            mailboxes[outcome.joined] = Mailbox(outcome.joined, requester)
        enqueue = backlogs.enqueue
        for delivery in outcome.deliveries:
            data = delivery.data
            for member in delivery.recipients:
                enqueue(mailboxes[member], data)
        if outcome.reply is not None:
            assert requester is not None, "only a request has an answer"
            requester.reply(outcome.reply)

    def _evict_laggards(self) -> None:
        overflowing, lagging = self._backlogs.overflowing, self._backlogs.lagging
        while overflowing:
            connection = overflowing.pop()
            if connection in self._connections and connection.close is None:
                reason = self._backlogs.excess(connection)
                if reason is not None:
                    self._cut_behind(connection, reason)
            # Over the peer's budget, the connection that holds the most goes
            # first, not the one that went over: stalled connections of a key
            # must not get its live ones cut on their every event.
            key = connection.peer_key
            while (reason := self._backlogs.peer_excess(key)) is not None:
                heaviest = max(
                    (other for other in self._connections
                     if other.peer_key == key and other.close is None),
                    key=lambda other: other.backlog,
                    default=None,
                )  # fmt: skip
                if heaviest is None:
                    break
                self._cut_behind(heaviest, reason)
        while lagging:
            mailbox = lagging.pop()
            if mailbox.active:
                limit = self._backlogs.max_backlog
                reason = f"fell too far behind (over {limit} bytes undelivered)"
                self._apply(self._core.evict(mailbox.member, reason))

    # -- reloading ---------------------------------------------------------------

    def reload(self, *, policy: Policy | None = None, trust: TrustStore | None = None) -> None:
        """Apply a new policy and/or trust store without dropping anyone it still admits.

        Connections whose peer the new trust store refuses (revoked, expired,
        unpinned) or that no rule admits are closed with ACCESS_DENIED;
        memberships that lost a right end with SESSION_CLOSED, and the member
        may join again with its new rights. Rights gained apply at once.
        """
        if trust is not None:
            self._trust = trust
            for listener in self._listeners:
                listener.trust = trust
        if policy is not None:
            self._core.policy = policy
            for problem in policy.problems:
                log.warning("policy %s: %s", policy.source, problem)
        for connection in list(self._connections):
            refusal = readmission(connection.peer, self._trust, self.policy)
            if refusal is not None:
                self._disconnect(connection, refusal)
            else:
                self._apply(self._core.regrant(connection.client))
        self._evict_laggards()

    def _cut_behind(self, connection: HubConnection, reason: str) -> None:
        log.info("%s: %s", connection.peer, reason)
        self._disconnect(connection, reason, CloseCode.UNAVAILABLE)

    def _disconnect(
        self, connection: HubConnection, reason: str, code: CloseCode = CloseCode.ACCESS_DENIED
    ) -> None:
        # Leave every session now, not when the connection's task gets to it.
        self._apply(self._core.disconnect(connection.client, "disconnected: " + reason))
        connection.end(code, reason)


async def serve_hub(
    port: int,
    *,
    identity: Identity,
    trust: TrustStore,
    policy: Policy | str,
    host: str | None = None,
    task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run a hub on ``port`` until cancelled; ``await nursery.start(serve_hub, ...)``
    returns the :class:`Hub` (for its port, or to :meth:`Hub.reload` it).

    ``options`` are :class:`Hub`'s limits and :func:`serve_secure`'s options.
    """
    limits = {key: options.pop(key) for key in _LIMITS & options.keys()}
    hub = Hub(identity=identity, trust=trust, policy=policy, **limits)
    await hub.serve(port, host=host, task_status=task_status, **options)
