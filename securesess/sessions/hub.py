"""The session manager ("hub"): named sessions whose data stays inside their member set.

Theory of operation
-------------------

Every client connection is a :class:`SecureStream`, so by the time the hub
sees a request it knows the peer's key, name and groups, and the access
policy has already admitted it (the handshake refuses peers no rule is
about). Each connection has two tasks:

* a **reader** that parses requests (``securesess.sessions.wire``) and handles
  each one synchronously, to completion, before the next. All session state
  lives in this one Trio thread and no request ever waits while holding it,
  so there are no locks, a session's events get their sequence numbers in
  one total order, and "removed" takes effect between two requests: nothing
  enqueued after that point reaches the removed member.
* a **writer** that sends what was queued for the connection: first the
  replies, then, round-robin, up to a quantum from each membership's queue,
  batched into one ``send_all``.

A broadcast is packed once and the same bytes object is appended to each
recipient's queue, so fan-out costs one append per member. Senders never
wait for recipients: a member whose undelivered backlog exceeds
``max_backlog`` bytes is removed from the session (it gets ``ENDED``,
the others see it leave), so a slow member cannot stall the others or make
the hub's memory grow without bound. A client that does not read its
replies stops being read (its reader waits), which pushes back on it alone.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final, final

import trio

from keystore import Certificate, Identity, Peer, TrustStore, UntrustedPeerError
from securesess.errors import ProtocolViolation
from securesess.policy import Grant, Policy, Right, readmission
from securesess.sessions import wire
from securesess.sessions.wire import ErrorCode, Op, pack
from securesess.stream.expiry import until_expired
from securesess.stream.records import CloseCode
from securesess.stream.secure_stream import DEFAULT_HANDSHAKE_TIMEOUT, SecureStream
from securesess.stream.serve import SecureListener, serve_secure

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_CONNECTION_BACKLOG",
    "DEFAULT_MAX_PEER_BACKLOG",
    "Hub",
    "serve_hub",
]

log = logging.getLogger("securesess.hub")

#: Undelivered bytes a member may have queued before the hub removes it.
DEFAULT_MAX_BACKLOG: Final = 8 << 20
#: Undelivered bytes of all one connection's memberships before the hub
#: disconnects it: without it, a connection in many sessions that never
#: reads would hold ``max_memberships`` times ``max_backlog``.
DEFAULT_MAX_CONNECTION_BACKLOG: Final = 32 << 20
#: Undelivered bytes of all one peer's connections (one key) before the hub
#: disconnects the connection that went over.
DEFAULT_MAX_PEER_BACKLOG: Final = 64 << 20
DEFAULT_MAX_SESSIONS: Final = 10_000
DEFAULT_MAX_MEMBERSHIPS: Final = 1_000
DEFAULT_MAX_MEMBERS: Final = 10_000
DEFAULT_MAX_VARIABLES: Final = 1_000
DEFAULT_MAX_VARIABLE_BYTES: Final = 4 << 20
# Replies a client has not read before the hub stops reading its requests.
_REPLY_LIMIT: Final = 1 << 20
# What the writer takes from one membership's queue per turn, and per send.
_QUANTUM: Final = 64 * 1024
_BATCH: Final = 1 << 20
_ABORT_TIMEOUT: Final = 1.0
# How long a client that closed its side gets to read what is still due to it.
_DRAIN_TIMEOUT: Final = 10.0
_REQUESTS_PER_TURN: Final = 64
_LIMITS: Final = frozenset(
    {
        "max_backlog",
        "max_connection_backlog",
        "max_peer_backlog",
        "max_sessions",
        "max_memberships",
        "max_members",
        "max_variables",
        "max_variable_bytes",
    }
)


class _Refused(Exception):
    """A request the hub answers with ERROR: the code and the sentence."""

    def __init__(self, code: ErrorCode, message: str, *extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _peer_fields(peer: Peer) -> list[Any]:
    return [peer.name, peer.public_key, sorted(peer.groups)]


@final
class _Member:
    __slots__ = (
        "active",
        "backlog",
        "connection",
        "fields",
        "grant",
        "id",
        "queue",
        "receives",
        "scheduled",
        "session",
    )

    def __init__(self, member_id: int, connection: _Connection, session: _Session, grant: Grant):
        self.id = member_id
        self.connection = connection
        self.session = session
        self.grant = grant
        self.receives = Right.RECEIVE in grant
        self.fields: Final = [member_id, *_peer_fields(connection.peer)]
        self.queue: deque[bytes] = deque()
        self.backlog = 0
        self.scheduled = False
        self.active = True

    def __str__(self) -> str:
        return f"{self.connection.peer.name or 'unnamed'}#{self.id}"


@final
class _Session:
    __slots__ = ("member_ids", "members", "name", "seq", "variable_bytes", "variables")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[int, _Member] = {}
        # Member ids count per session, so they say nothing about other sessions.
        self.member_ids = itertools.count(1)
        self.variables: dict[str, tuple[bytes, int]] = {}
        self.variable_bytes = 0
        self.seq = 0


@final
class _Connection:
    __slots__ = (
        "backlog",
        "close",
        "closing",
        "draining",
        "memberships",
        "peer",
        "reader_scope",
        "ready",
        "replies",
        "reply_bytes",
        "room",
        "stream",
        "wake",
        "writer_done",
    )

    def __init__(self, stream: SecureStream, peer: Peer) -> None:
        self.stream = stream
        #: As the trust store knew it when the hub admitted it (the stream's
        #: ``peer`` is as it was when the handshake checked it).
        self.peer: Final = peer
        self.memberships: dict[str, _Member] = {}
        #: Undelivered bytes of all its memberships.
        self.backlog = 0
        self.replies: deque[bytes] = deque()
        self.reply_bytes = 0
        self.ready: deque[_Member] = deque()
        self.wake = trio.Event()
        self.room = trio.Event()
        self.reader_scope = trio.CancelScope()
        self.writer_done = trio.Event()
        # The connection is ending: the writer stops after its current send,
        # or, draining, once it has sent everything queued.
        self.closing = False
        self.draining = False
        # Why the hub ends this connection, if it does: (close code, reason).
        self.close: tuple[CloseCode, str] | None = None

    def reply(self, data: bytes) -> None:
        self.replies.append(data)
        self.reply_bytes += len(data)
        self.wake.set()


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
            ("max_sessions", max_sessions),
            ("max_memberships", max_memberships),
            ("max_members", max_members),
            ("max_variables", max_variables),
            ("max_variable_bytes", max_variable_bytes),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        self.identity: Final = identity
        self._trust = trust
        self._policy = policy if isinstance(policy, Policy) else Policy.load(policy, trust=trust)
        self._max_backlog = max_backlog
        self._max_connection_backlog = max_connection_backlog
        self._max_peer_backlog = max_peer_backlog
        # Undelivered bytes per peer key, over all its connections.
        self._peer_backlog: Counter[bytes] = Counter()
        self._overflowing: list[_Connection] = []
        self._max_sessions = max_sessions
        self._max_memberships = max_memberships
        self._max_members = max_members
        self._max_variables = max_variables
        self._max_variable_bytes = max_variable_bytes
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._lagging: list[_Member] = []
        self._listeners: list[SecureListener] = []
        self._handlers: Final[dict[int, Callable[[_Connection, list[Any]], None]]] = {
            Op.JOIN: self._join,
            Op.LEAVE: self._leave,
            Op.SEND: self._send,
            Op.SET: self._set,
            Op.REMOVE: self._remove,
            Op.CLOSE: self._close,
        }

    def __repr__(self) -> str:
        return (
            f"<Hub {self.identity.fingerprint}: {len(self._connections)} connection(s), "
            f"{len(self._sessions)} session(s)>"
        )

    # -- what an operator can look at ------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._policy

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
        return {
            name: [str(member) for member in session.members.values()]
            for name, session in self._sessions.items()
        }

    # -- serving -----------------------------------------------------------------

    def authorize(self, peer: Peer) -> str | None:
        """The handshake's last check: refuse peers no rule of the policy is about."""
        return self._policy.refusal(peer)

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
                for problem in self._policy.problems:
                    log.warning("policy %s: %s", self._policy.source, problem)
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
            refusal, code = self._policy.refusal(peer), CloseCode.ACCESS_DENIED
        if refusal is not None:
            log.info("refused %s: %s", peer, refusal)
            await stream.abort(code, refusal)
            return
        connection = _Connection(stream, peer)
        self._connections.add(connection)
        log.info("%s connected", connection.peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, connection)
                if connection.peer.certificate is not None:
                    nursery.start_soon(self._expire, connection, connection.peer.certificate)
                with connection.reader_scope:
                    await self._read_loop(connection)
                # Let a send in progress finish: cancelling it would cut a
                # record in half and leave no way to send the CLOSE record.
                # After a clean end of input, first send every answer due.
                if connection.close is None:
                    connection.draining = True
                else:
                    connection.closing = True
                connection.wake.set()
                with trio.move_on_after(_DRAIN_TIMEOUT if connection.draining else _ABORT_TIMEOUT):
                    await connection.writer_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._connections.discard(connection)
            for member in list(connection.memberships.values()):
                self._drop(member, "disconnected")
            self._evict_laggards()
            with trio.CancelScope(shield=True), trio.move_on_after(_ABORT_TIMEOUT):
                if connection.close is not None:
                    await stream.abort(*connection.close)
                else:
                    await stream.aclose()
            reason = connection.close[1] if connection.close else "disconnected"
            log.info("%s gone: %s", connection.peer, reason)

    async def _expire(self, connection: _Connection, certificate: Certificate) -> None:
        """Disconnect a peer when the certificate it was admitted by expires."""
        await until_expired(certificate)
        if connection in self._connections:
            log.info("%s: its certificate expired", connection.peer)
            self._disconnect(connection, "its certificate expired")

    def _end(self, connection: _Connection, code: CloseCode, reason: str) -> None:
        if connection.close is None:
            connection.close = (code, reason)
        connection.reader_scope.cancel()

    async def _read_loop(self, connection: _Connection) -> None:
        reader = wire.MessageReader()
        greeted = False
        stream = connection.stream
        try:
            while True:
                data = await stream.receive_some(wire.RECEIVE_SIZE)
                if not data:
                    return
                for handled, message in enumerate(reader.feed(data), 1):
                    if connection.reply_bytes > _REPLY_LIMIT:
                        # The client is not reading its answers: stop reading it.
                        connection.room = trio.Event()
                        await connection.room.wait()
                    elif handled % _REQUESTS_PER_TURN == 0:
                        # A chunk can hold thousands of requests: let the
                        # other connections have a turn between them.
                        await trio.lowlevel.checkpoint()
                    if not greeted:
                        self._hello(connection, message)
                        greeted = True
                        continue
                    handler = self._handlers.get(message[0])
                    if handler is None:
                        raise wire.field_error(message, "not a request a client may send")
                    try:
                        handler(connection, message)
                    except _Refused as refused:
                        log.info("refused %s: %s", connection.peer, refused.message)
                        connection.reply(
                            pack(
                                Op.ERROR, message[1], refused.code, refused.message, *refused.extra
                            )
                        )
                    self._evict_laggards()
        except ProtocolViolation as exc:
            log.warning("%s broke the hub protocol: %s", connection.peer, exc)
            connection.close = (CloseCode.PROTOCOL_VIOLATION, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _write_loop(self, connection: _Connection) -> None:
        stream = connection.stream
        replies = connection.replies
        ready = connection.ready
        try:
            while not connection.closing:
                if not replies and not ready:
                    if connection.draining:
                        return
                    connection.wake = trio.Event()
                    await connection.wake.wait()
                    continue
                chunks: list[bytes] = []
                size = connection.reply_bytes
                chunks.extend(replies)
                replies.clear()
                connection.reply_bytes = 0
                connection.room.set()
                while ready and size < _BATCH:
                    member = ready.popleft()
                    if not member.active:
                        continue
                    queue = member.queue
                    taken = 0
                    while queue and taken < _QUANTUM:
                        item = queue.popleft()
                        chunks.append(item)
                        taken += len(item)
                    member.backlog -= taken
                    self._delivered(connection, taken)
                    size += taken
                    if queue:
                        ready.append(member)
                    else:
                        member.scheduled = False
                await stream.send_all(b"".join(chunks))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            connection.reader_scope.cancel()
        finally:
            connection.writer_done.set()

    # -- delivery ----------------------------------------------------------------

    def _enqueue(self, member: _Member, data: bytes) -> None:
        member.queue.append(data)
        member.backlog += len(data)
        connection = member.connection
        connection.backlog += len(data)
        key = connection.peer.public_key
        self._peer_backlog[key] += len(data)
        if member.backlog > self._max_backlog:
            self._lagging.append(member)
        elif (
            connection.backlog > self._max_connection_backlog
            or self._peer_backlog[key] > self._max_peer_backlog
        ):
            self._overflowing.append(connection)
        if not member.scheduled:
            member.scheduled = True
            member.connection.ready.append(member)
            member.connection.wake.set()

    def _broadcast(self, session: _Session, data: bytes, *, skip: _Member | None = None) -> None:
        """Queue ``data`` for every member that receives, but ``skip``."""
        for member in session.members.values():
            if member.receives and member is not skip:
                self._enqueue(member, data)

    def _announce(self, session: _Session, data: bytes, *, skip: _Member | None = None) -> None:
        """Queue a membership event for every member: joining is enough to see them."""
        for member in session.members.values():
            if member is not skip:
                self._enqueue(member, data)

    def _delivered(self, connection: _Connection, size: int) -> None:
        """``size`` undelivered bytes of ``connection`` are sent, or dropped."""
        connection.backlog -= size
        key = connection.peer.public_key
        self._peer_backlog[key] -= size
        if not self._peer_backlog[key]:
            del self._peer_backlog[key]

    def _evict_laggards(self) -> None:
        while self._overflowing:
            connection = self._overflowing.pop()
            if connection in self._connections and connection.close is None:
                if connection.backlog > self._max_connection_backlog:
                    reason = (
                        f"fell too far behind (over {self._max_connection_backlog} bytes "
                        "undelivered on this connection)"
                    )
                elif self._peer_backlog[connection.peer.public_key] > self._max_peer_backlog:
                    reason = (
                        f"fell too far behind (over {self._max_peer_backlog} bytes "
                        "undelivered to this peer)"
                    )
                else:  # a membership ended since, and took its backlog with it
                    continue
                log.info("%s: %s", connection.peer, reason)
                self._disconnect(connection, reason, CloseCode.UNAVAILABLE)
        while self._lagging:
            member = self._lagging.pop()
            if member.active:
                limit = self._max_backlog
                self._drop(
                    member,
                    f"fell too far behind (over {limit} bytes undelivered)",
                    notify=ErrorCode.SESSION_CLOSED,
                )

    def _drop(
        self,
        member: _Member,
        reason: str,
        *,
        notify: ErrorCode | None = None,
        announce: bool = True,
    ) -> None:
        """End a membership now: nothing queued or sent later reaches it.

        ``notify`` tells the member (ENDED with that code); ``announce`` tells
        the others (LEFT), which a session being closed can skip.
        """
        session = member.session
        member.active = False
        member.queue.clear()
        self._delivered(member.connection, member.backlog)
        member.backlog = 0
        del member.connection.memberships[session.name]
        del session.members[member.id]
        if notify is not None:
            member.connection.reply(pack(Op.ENDED, session.name, notify, reason))
        log.info("%s left %r: %s", member, session.name, reason)
        if not session.members:
            del self._sessions[session.name]
            log.info("session %r ended: its last member left", session.name)
            return
        if announce:
            session.seq += 1
            self._announce(session, pack(Op.LEFT, session.name, session.seq, member.id, reason))

    # -- requests ----------------------------------------------------------------

    def _hello(self, connection: _Connection, message: list[Any]) -> None:
        if message[0] != Op.HELLO:
            raise wire.field_error(message, "the first message must be HELLO")
        wire.expect_shape(message, wire.INT)
        if message[1] != wire.VERSION:
            raise ProtocolViolation(
                f"the client speaks hub protocol version {message[1]}; this hub speaks "
                f"{wire.VERSION}"
            )
        connection.reply(pack(Op.WELCOME, wire.VERSION, _peer_fields(connection.peer)))

    def _membership(self, connection: _Connection, name: str) -> _Member:
        member = connection.memberships.get(name)
        if member is None:
            raise _Refused(ErrorCode.NOT_MEMBER, f"not a member of session {name!r}")
        return member

    def _require(self, member: _Member, right: Right) -> None:
        if right not in member.grant:
            message = self._policy.denial(member.connection.peer, member.session.name, right)
            raise _Refused(ErrorCode.ACCESS_DENIED, message)

    def _join(self, connection: _Connection, message: list[Any]) -> None:
        wire.expect_shape(message, wire.INT, wire.STR, wire.BOOL)
        rid = wire.expect_id(message, 1)
        name = wire.expect_name(message, 2)
        create = message[3]
        peer = connection.peer
        grant = self._policy.grant(peer, name)
        # Rights first, existence second: a peer that may not join a session
        # learns nothing, not even whether it exists.
        if Right.JOIN not in grant and Right.CREATE not in grant:
            raise _Refused(ErrorCode.ACCESS_DENIED, self._policy.denial(peer, name, Right.JOIN))
        if name in connection.memberships:
            raise _Refused(ErrorCode.ALREADY_MEMBER, f"already a member of session {name!r}")
        session = self._sessions.get(name)
        if session is None:
            if not create:
                raise _Refused(ErrorCode.NO_SUCH_SESSION, f"there is no session {name!r}")
            if Right.CREATE not in grant:
                raise _Refused(
                    ErrorCode.ACCESS_DENIED, self._policy.denial(peer, name, Right.CREATE)
                )
            if len(self._sessions) >= self._max_sessions:
                raise _Refused(ErrorCode.LIMIT_EXCEEDED, "the hub holds its maximum of sessions")
        elif Right.JOIN not in grant:
            raise _Refused(ErrorCode.ACCESS_DENIED, self._policy.denial(peer, name, Right.JOIN))
        elif len(session.members) >= self._max_members:
            raise _Refused(ErrorCode.LIMIT_EXCEEDED, f"session {name!r} is full")
        if len(connection.memberships) >= self._max_memberships:
            raise _Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"this connection is already in {self._max_memberships} sessions",
            )
        if session is None:
            session = self._sessions[name] = _Session(name)
            log.info("%s created session %r", peer, name)
        member = _Member(next(session.member_ids), connection, session, grant)
        session.seq += 1
        self._announce(session, pack(Op.JOINED, name, session.seq, member.fields))
        session.members[member.id] = member
        connection.memberships[name] = member
        variables = (
            [[key, value, version] for key, (value, version) in session.variables.items()]
            if member.receives
            else []
        )
        connection.reply(
            pack(
                Op.OK,
                rid,
                [
                    member.id,
                    session.seq,
                    [other.fields for other in session.members.values()],
                    variables,
                    sorted(grant.rights),
                ],
            )
        )
        log.info(
            "%s joined %r with %s (from %s)",
            member,
            name,
            ", ".join(sorted(grant.rights)),
            ", ".join(repr(rule) for rule in grant.rules),
        )

    def _leave(self, connection: _Connection, message: list[Any]) -> None:
        wire.expect_shape(message, wire.INT, wire.STR)
        rid = wire.expect_id(message, 1)
        member = self._membership(connection, wire.expect_name(message, 2))
        self._drop(member, "left")
        connection.reply(pack(Op.OK, rid, None))

    def _send(self, connection: _Connection, message: list[Any]) -> None:
        wire.expect_shape(message, wire.INT, wire.STR, wire.OPTIONAL_INT, wire.BYTES)
        rid = wire.expect_id(message, 1)
        member = self._membership(connection, wire.expect_name(message, 2))
        self._require(member, Right.SEND)
        session = member.session
        target_id = message[3]
        data = message[4]
        if target_id is None:
            session.seq += 1
            self._broadcast(
                session,
                pack(Op.MESSAGE, session.name, session.seq, member.id, data, False),
                skip=member,
            )
        else:
            target = session.members.get(target_id)
            if target is None:
                raise _Refused(
                    ErrorCode.NO_SUCH_MEMBER,
                    f"session {session.name!r} has no member {target_id}",
                )
            if not target.receives:
                raise _Refused(
                    ErrorCode.ACCESS_DENIED,
                    f"{target} may not receive in session {session.name!r}",
                )
            session.seq += 1
            self._enqueue(
                target, pack(Op.MESSAGE, session.name, session.seq, member.id, data, True)
            )
        connection.reply(pack(Op.OK, rid, session.seq))

    def _set(self, connection: _Connection, message: list[Any]) -> None:
        wire.expect_shape(message, wire.INT, wire.STR, wire.STR, wire.BYTES, wire.OPTIONAL_INT)
        rid = wire.expect_id(message, 1)
        member = self._membership(connection, wire.expect_name(message, 2))
        key = wire.expect_key(message, 3)
        value = message[4]
        expected = message[5]
        self._require(member, Right.SET)
        session = member.session
        if expected is not None and not member.receives:
            # Whether it conflicts would tell whether the variable exists,
            # and its version: what only the receive right may learn.
            raise _Refused(
                ErrorCode.ACCESS_DENIED,
                f"a compare-and-set in session {session.name!r} needs the receive right",
            )
        current = session.variables.get(key)
        version = current[1] if current is not None else 0
        if expected is not None and expected != version:
            raise _Refused(
                ErrorCode.VERSION_CONFLICT,
                f"variable {key!r} of session {session.name!r} is at version {version}, "
                f"not {expected}",
                version,
            )
        if current is None and len(session.variables) >= self._max_variables:
            raise _Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} already has {self._max_variables} variables",
            )
        # Bounded in bytes too: every JOIN answer carries all the variables.
        size = session.variable_bytes + len(key) + len(value)
        if current is not None:
            size -= len(key) + len(current[0])
        if size > self._max_variable_bytes:
            raise _Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} would hold more than "
                f"{self._max_variable_bytes} bytes of variables",
            )
        version += 1
        session.variables[key] = (value, version)
        session.variable_bytes = size
        session.seq += 1
        self._broadcast(
            session,
            pack(Op.VARIABLE, session.name, session.seq, key, value, version, member.id),
            skip=member,
        )
        # The new version would say how often the variable was set before.
        connection.reply(pack(Op.OK, rid, [version if member.receives else 0, session.seq]))

    def _remove(self, connection: _Connection, message: list[Any]) -> None:
        wire.expect_shape(message, wire.INT, wire.STR, wire.INT, wire.STR)
        rid = wire.expect_id(message, 1)
        member = self._membership(connection, wire.expect_name(message, 2))
        self._require(member, Right.ADMIN)
        target = member.session.members.get(message[3])
        if target is None:
            raise _Refused(
                ErrorCode.NO_SUCH_MEMBER,
                f"session {member.session.name!r} has no member {message[3]}",
            )
        reason = wire.expect_reason(message, 4)
        self._drop(target, f"removed by {member}: {reason}", notify=ErrorCode.SESSION_CLOSED)
        connection.reply(pack(Op.OK, rid, None))

    def _close(self, connection: _Connection, message: list[Any]) -> None:
        wire.expect_shape(message, wire.INT, wire.STR, wire.STR)
        rid = wire.expect_id(message, 1)
        member = self._membership(connection, wire.expect_name(message, 2))
        self._require(member, Right.ADMIN)
        reason = f"session closed by {member}: {wire.expect_reason(message, 3)}"
        # Nobody stays to be told who left: skip the LEFT events.
        for other in list(member.session.members.values()):
            if other is not member:
                self._drop(other, reason, notify=ErrorCode.SESSION_CLOSED, announce=False)
        self._drop(member, "closed the session", announce=False)
        connection.reply(pack(Op.OK, rid, None))

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
            self._policy = policy
            for problem in policy.problems:
                log.warning("policy %s: %s", policy.source, problem)
        for connection in list(self._connections):
            peer = connection.peer
            refusal = readmission(peer, self._trust, self._policy)
            if refusal is not None:
                self._disconnect(connection, refusal)
                continue
            for member in list(connection.memberships.values()):
                grant = self._policy.grant(peer, member.session.name)
                # Create only matters to join: a member does not lose it.
                lost = member.grant.rights - grant.rights - {Right.CREATE}
                if lost:
                    self._drop(
                        member,
                        f"the policy no longer grants {', '.join(sorted(lost))}",
                        notify=ErrorCode.SESSION_CLOSED,
                    )
                else:
                    member.grant = grant
                    member.receives = Right.RECEIVE in grant
        self._evict_laggards()

    def _disconnect(
        self, connection: _Connection, reason: str, code: CloseCode = CloseCode.ACCESS_DENIED
    ) -> None:
        # Leave every session now, not when the connection's task gets to it.
        for member in list(connection.memberships.values()):
            self._drop(member, "disconnected: " + reason)
        self._end(connection, code, reason)


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
