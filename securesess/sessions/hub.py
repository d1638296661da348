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
``max_backlog`` bytes is removed from the session (it gets ``ENDED``, the
others see it leave), so a slow member cannot stall the others or make the
hub's memory grow without bound. A client that does not read its replies
stops being read, which pushes back on it alone. What it relays is sealed:
the hub holds no key to it (:attr:`Hub.relayed` counts it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Final, Unpack, final

import trio

from keystore import Certificate, Peer, TrustStore, UntrustedPeerError
from securesess.constants import (
    CloseCode,
)
from securesess.errors import ProtocolViolation
from securesess.policy import Policy, readmission
from securesess.sessions import wire
from securesess.sessions.connection import HubConnection
from securesess.sessions.core import SessionCore
from securesess.sessions.delivery import Backlogs, Mailbox
from securesess.sessions.limits import HubArgs, HubLimits, ServeHubArgs
from securesess.sessions.outcome import Member, Outcome
from securesess.stream.expiry import until_expired
from securesess.stream.options import AdmissionLimits, SecureOptions, ServeArgs, merged, unexpected
from securesess.stream.secure_stream import SecureStream
from securesess.stream.serve import SecureListener, SecureServer

__all__ = ["Hub", "serve_hub"]

log = logging.getLogger("securesess.hub")

_REQUESTS_PER_TURN: Final = 64
# How often the hub makes what time does happen (SessionCore.expire).
_EPOCH_CHECK: Final = 1.0


@final
class Hub:
    """A session manager. Serve it with :meth:`serve` (or :func:`serve_hub`).

    Args:
        options: the hub's identity and whom it accepts (``trust``, which
            :meth:`reload` can replace), as :class:`SecureOptions`; its
            fields may be given as keyword arguments instead, or beside it.
            ``authorize`` is the policy's: the hub takes no other.
        policy: the access policy, a :class:`Policy` or a path to one.
        limits: what its sessions may hold and what it may queue
            (:class:`HubLimits`), or its fields as keyword arguments.

    Raises:
        ValueError: a limit or an option is out of range, or ``authorize``
            was given.
    """

    def __init__(
        self,
        options: SecureOptions | None = None,
        *,
        policy: Policy | str,
        limits: HubLimits | None = None,
        **keywords: Unpack[HubArgs],
    ) -> None:
        unexpected(keywords, SecureOptions, HubLimits)
        secure = merged(SecureOptions, options, keywords)
        if secure.authorize is not None:
            raise ValueError("a hub admits the peers its policy is about: it takes no authorize=")
        self.limits: Final = merged(HubLimits, limits, keywords)
        self.identity: Final = secure.identity
        self._trust = secure.trust
        if not isinstance(policy, Policy):
            policy = Policy.load(policy, trust=secure.trust)
        self._core: Final = SessionCore(policy, limits=self.limits, clock=trio.current_time)
        self.relayed: Final = self._core.relayed
        self._options = secure.replace(authorize=self.authorize)
        self._backlogs: Final = Backlogs[HubConnection](
            max_backlog=self.limits.max_backlog,
            max_connection=self.limits.max_connection_backlog,
            max_peer=self.limits.max_peer_backlog,
        )
        # Undelivered bytes per peer key, over all its connections.
        self._peer_backlog: Final = self._backlogs.peer
        self._mailboxes: dict[Member, Mailbox[HubConnection]] = {}
        self._connections: set[HubConnection] = set()
        self._server: SecureServer | None = None

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
        return () if self._server is None else tuple(self._server.listeners)

    @property
    def port(self) -> int:
        """The TCP port the hub listens on (after :meth:`serve` has started)."""
        if not self.listeners:
            raise RuntimeError("the hub is not serving yet")
        transport = self.listeners[0].transport_listener
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
        admission: AdmissionLimits | None = None,
        task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED,
        **keywords: Unpack[ServeArgs],
    ) -> None:
        """Listen on ``port`` until cancelled.

        ``admission`` (:class:`AdmissionLimits`) bounds the handshakes, as
        :func:`serve_secure`'s does; keyword arguments may give its fields,
        and :class:`SecureOptions` fields to serve with (``protocol``,
        ``psk``, ``handshake_timeout``, ...) on top of the hub's own.

        Raises:
            OSError: it cannot listen (the port is taken, say), bare, as
                :func:`serve_secure` raises it, not in an exception group.
        """
        unexpected(keywords, SecureOptions, AdmissionLimits)
        if "authorize" in keywords:
            raise ValueError("a hub admits the peers its policy is about: it takes no authorize=")
        self._options = merged(SecureOptions, self._options, keywords)
        server = SecureServer(
            self.handle, self._options, merged(AdmissionLimits, admission, keywords)
        )
        self._server = server
        listening = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(server.serve, port, host=host))
                listening = True
                nursery.start_soon(self._expire_epochs)
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

    async def _expire_epochs(self) -> None:
        while True:
            await trio.sleep(_EPOCH_CHECK)
            self._apply(self._core.expire())
            self._evict_laggards()

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
            self._options = self._options.replace(trust=trust)
            if self._server is not None:
                self._server.trust = trust
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
    options: SecureOptions | None = None,
    *,
    policy: Policy | str,
    limits: HubLimits | None = None,
    admission: AdmissionLimits | None = None,
    host: str | None = None,
    task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED,
    **keywords: Unpack[ServeHubArgs],
) -> None:
    """Run a hub on ``port`` until cancelled; ``await nursery.start(serve_hub, ...)``
    returns the :class:`Hub` (for its port, or to :meth:`Hub.reload` it).

    ``options``, ``policy`` and ``limits`` are :class:`Hub`'s, ``admission``
    :func:`serve_secure`'s; the fields of each may be keyword arguments.
    """
    unexpected(keywords, SecureOptions, HubLimits, AdmissionLimits)
    hub = Hub(
        merged(SecureOptions, options, keywords),
        policy=policy,
        limits=merged(HubLimits, limits, keywords),
    )
    await hub.serve(
        port,
        host=host,
        admission=merged(AdmissionLimits, admission, keywords),
        task_status=task_status,
    )
