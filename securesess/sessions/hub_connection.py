"""One connection to a hub, and the sessions joined over it: :class:`HubConnection`.

One :class:`HubConnection` carries any number of sessions. A reader task
parses what the hub sends and routes it: replies to the request waiting for
them, events to their session's buffer. A writer task sends requests in
batches, so a cancelled caller never leaves half a request on the wire (a
cancelled ``send_all`` would break the stream for everyone).

Every request, and the hub's WELCOME, is awaited for at most
``request_timeout`` seconds (30 by default): a hub that stalls, or one that
is not a hub, cannot hang a client forever. A request's answer is awaited
from when the request has gone out; until then it waits as long as the
writer makes progress, so a slow link is no timeout. A request that times
out raises :class:`HubTimeout`; the connection stays usable, and a late
answer is dropped.

Each session buffers at most ``max_backlog`` bytes of events that the
application has not yet taken, and keeps at most ``max_session_state``
bytes of members and variables (what the hub says they are). A session
over either is ended locally, exactly as the hub ends a member that falls
behind on the network: its iterator raises :class:`SessionClosed` after
the events it already has, and the client leaves the session. The reader itself never blocks, so one
neglected session cannot stall the others, or the replies.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, final

import trio

from keystore import Peer
from securesess import names
from securesess.constants import (
    DEFAULT_CLIENT_BACKLOG,
    DEFAULT_CLIENT_SESSION_STATE,
    DEFAULT_REQUEST_TIMEOUT,
)
from securesess.errors import (
    AlreadyMember,
    HubTimeout,
    LimitExceeded,
    ProtocolViolation,
    SessionError,
)
from securesess.sessions import wire
from securesess.sessions.credentials import Credentials
from securesess.sessions.request_queue import RequestQueue
from securesess.sessions.routing import EVENTS, error_from, peer_from, route_event
from securesess.sessions.session import Session
from securesess.sessions.wire import Op, pack
from securesess.stream.secure_stream import SecureStream

__all__ = ["HubConnection"]


@final
class _Reply:
    __slots__ = ("abandoned", "done", "error", "join", "settles", "value")

    def __init__(self, join: str | None = None, settles: str | None = None) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        # For a JOIN: the session name, so an abandoned join can be undone.
        self.join = join
        # A session name whose membership this answer settles (see _settling).
        self.settles = settles

    def open_session(self, connection: HubConnection, answer: list[Any]) -> None:
        """The JOIN this answers succeeded: register the session now, as its
        events may follow in this very batch."""
        assert self.join is not None, "only a JOIN opens a session"
        session = Session(connection, self.join, answer, connection._credentials)
        self.value = session
        connection._sessions[session.name] = session
        limit = connection._max_session_state
        if session._state <= limit and not self.abandoned:
            return
        if not self.abandoned:
            self.error = LimitExceeded(
                f"session {session.name!r} has members and variables of more than "
                f"{limit} bytes (max_session_state)",
                session=session.name,
            )
        # The hub made us a member of more than we keep, or the caller gave
        # up on this join: undo it; that LEAVE's answer settles the name.
        session._finish(None)
        connection._leave_quietly(session.name)
        self.settles = None


@final
class HubConnection:
    """A connection to a hub. Get one from :func:`connect_hub` (or :meth:`over`).

    ``peer`` is the hub as the handshake authenticated it; ``me`` is how the
    hub sees us (our name, key and groups from our certificate or pin).
    """

    def __init__(
        self,
        stream: SecureStream,
        *,
        max_backlog: int = DEFAULT_CLIENT_BACKLOG,
        max_session_state: int = DEFAULT_CLIENT_SESSION_STATE,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        if max_session_state < 1:
            raise ValueError("max_session_state must be at least 1")
        self._max_session_state = max_session_state
        if request_timeout is not None and not request_timeout > 0:
            raise ValueError("request_timeout must be positive (or None: wait for ever)")
        self._timeout = math.inf if request_timeout is None else request_timeout
        self.stream: Final = stream
        # Checked before the handshake's peer is known: a client without a
        # signing key can speak to no sealed session.
        self._credentials: Final = Credentials(stream.options.identity, stream.options.trust)
        self._max_backlog = max_backlog
        self._reader = wire.MessageReader(wire.MAX_ANSWER)
        self._rids = itertools.count(1)
        self._replies: dict[int, _Reply] = {}
        self._sessions: dict[str, Session] = {}
        # Sessions whose membership we are undoing without waiting (an
        # abandoned join, a session that fell behind): a new join waits for it.
        self._settling: dict[str, trio.Event] = {}
        self._requests = RequestQueue(self._timeout, self._raise_failure)
        self._failure: BaseException | None = None
        self._welcome = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.me: Peer | None = None

    def __repr__(self) -> str:
        state = "closed" if self._failure is not None else f"{len(self._sessions)} sessions"
        return f"<HubConnection to {self.peer}: {state}>"

    @property
    def peer(self) -> Peer:
        return self.stream.peer

    @property
    def sessions(self) -> dict[str, Session]:
        return dict(self._sessions)

    @classmethod
    @contextlib.asynccontextmanager
    async def over(
        cls,
        stream: SecureStream,
        *,
        max_backlog: int = DEFAULT_CLIENT_BACKLOG,
        max_session_state: int = DEFAULT_CLIENT_SESSION_STATE,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> AsyncIterator[HubConnection]:
        """Speak the hub protocol over ``stream`` (a client-side SecureStream).

        Raises:
            HubTimeout: no WELCOME within ``request_timeout`` seconds.
        """
        connection = cls(
            stream,
            max_backlog=max_backlog,
            max_session_state=max_session_state,
            request_timeout=request_timeout,
        )
        single: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                connection._nursery = nursery
                nursery.start_soon(connection._read_loop)
                nursery.start_soon(connection._write_loop)
                try:
                    connection._requests.queue(pack(Op.HELLO, wire.VERSION))
                    with trio.move_on_after(connection._timeout):
                        await connection._welcome.wait()
                    connection._raise_failure()
                    if not connection._welcome.is_set():
                        raise HubTimeout(
                            f"the hub sent no WELCOME within {connection._timeout:g} s"
                        )
                    yield connection
                finally:
                    connection._fail(trio.ClosedResourceError("the hub connection was closed"))
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Our tasks never raise, so anything here came from the body:
            # hand it on as it was raised, not wrapped (and, raised outside
            # this handler, without the group as its context).
            if len(group.exceptions) != 1:
                raise
            single = group.exceptions[0]
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()
        if single is not None:
            raise single

    # -- sessions ------------------------------------------------------------------

    async def join(self, name: str, *, create: bool = False) -> Session:
        """Join session ``name`` (creating it if ``create`` and it does not exist).

        Raises:
            AccessDenied: the policy does not let us (the message names the rules).
            NoSuchSession: it does not exist and ``create`` is false.
            AlreadyMember: this connection is already a member.
            LimitExceeded: too many sessions or members.
        """
        names.check_session_name(name)
        with trio.move_on_after(self._timeout):
            while name in self._settling:
                await self._settling[name].wait()
        if name in self._settling:
            raise HubTimeout(
                f"the hub did not answer the LEAVE of session {name!r} within {self._timeout:g} s"
            )
        if name in self._sessions:
            raise AlreadyMember(f"already a member of session {name!r}", session=name)
        session = await self._request(Op.JOIN, name, create, join=name)
        assert isinstance(session, Session)
        try:
            # Our keys for the next commit; we are in once one brings us in.
            sealing = session._sealing
            await self._request(Op.ENTER, name, sealing.group.entry.encode())
            await sealing.wait_ready(session._check_open)
        except BaseException:
            if session._ended is None:
                session._finish(None)
                self._leave_quietly(name)
            raise
        return session

    def _forget(self, session: Session) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]

    def _settle(self, name: str) -> None:
        self._settling.setdefault(name, trio.Event())

    def _settled(self, name: str) -> None:
        event = self._settling.pop(name, None)
        if event is not None:
            event.set()

    def _leave_quietly(self, name: str) -> None:
        """Leave without waiting for the answer (from the reader, which cannot wait)."""
        self._settle(name)
        self._post(Op.LEAVE, name, settles=name)

    def _post(self, op: Op, *fields: Any, settles: str | None = None) -> None:
        """Send a request whose answer nobody waits for."""
        rid = next(self._rids)
        reply = self._replies[rid] = _Reply(settles=settles)
        reply.abandoned = True
        self._requests.queue(pack(op, rid, *fields))

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task`` (it raises nothing) while the connection lasts."""
        if self._nursery is not None and self._failure is None:
            self._nursery.start_soon(task)

    # -- requests ------------------------------------------------------------------

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _request(
        self, op: Op, *fields: Any, join: str | None = None, settles: str | None = None
    ) -> Any:
        """Send a request and wait for its answer.

        ``settles``: the request undoes a membership; it is queued without
        waiting for room, and a new join of that session waits for its answer
        even if this call is cancelled.
        """
        self._raise_failure()
        requests = self._requests
        if settles is None:
            await requests.wait_for_room()
        rid = next(self._rids)
        reply = self._replies[rid] = _Reply(join, settles)
        if settles is not None:
            self._settle(settles)
        requests.queue(pack(op, rid, *fields))
        end = requests.queued_total
        try:
            # One deadline for the whole request, moved on as it goes out and
            # once it is out: the answer gets the full timeout from then.
            with trio.move_on_after(self._timeout) as deadline:
                await requests.until_sent(end, deadline)
                deadline.deadline = trio.current_time() + self._timeout
                await reply.done.wait()
            if requests.sent_total < end:
                raise HubTimeout(f"the hub took none of our requests for {self._timeout:g} s")
            if not reply.done.is_set():
                raise HubTimeout(f"the hub did not answer {op.name} within {self._timeout:g} s")
        except BaseException:
            reply.abandoned = True
            if join is not None and not reply.done.is_set():
                self._settle(join)
                reply.settles = join
            raise
        if reply.error is not None:
            if isinstance(reply.error, SessionError):
                # Every session request names its session first.
                reply.error.session = fields[0]
            raise reply.error
        return reply.value

    async def _write_loop(self) -> None:
        try:
            await self._requests.write(self.stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(exc)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(wire.RECEIVE_SIZE)
                if not data:
                    raise trio.BrokenResourceError("the hub closed the connection")
                for message in self._reader.feed(data):
                    self._dispatch(message)
        except ProtocolViolation as exc:
            error = trio.BrokenResourceError(f"the hub broke the hub protocol: {exc}")
            error.__cause__ = exc
            self._fail(error)
            if self._nursery is not None:
                self._nursery.start_soon(self.stream.abort, 4, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(exc)

    def _fail(self, error: BaseException) -> None:
        """The connection is over: wake everyone waiting on it with ``error``."""
        if self._failure is not None:
            return
        self._failure = error
        self._welcome.set()
        self._requests.fail()
        for reply in self._replies.values():
            reply.error = error
            reply.done.set()
        for event in self._settling.values():
            event.set()
        self._settling.clear()
        for session in list(self._sessions.values()):
            session._finish(error)

    # -- what the hub says ---------------------------------------------------------

    def _dispatch(self, message: list[Any]) -> None:
        op = message[0]
        if op in EVENTS:
            route_event(self._sessions, message)
        elif op in (Op.OK, Op.ERROR):
            self._answer(message)
        elif op == Op.WELCOME and self.me is None:
            wire.expect_shape(message, wire.INT, wire.LIST)
            if message[1] != wire.VERSION:
                raise wire.field_error(message, f"the hub speaks version {message[1]}")
            self.me = peer_from(message[2])
            self._welcome.set()
        else:
            raise wire.field_error(message, "not something a hub sends now")

    def _answer(self, message: list[Any]) -> None:
        if len(message) < 3 or type(message[1]) is not int:
            raise wire.field_error(message, "no request id")
        reply = self._replies.get(message[1])
        if reply is None:
            raise wire.field_error(message, "it answers no request of ours")
        if message[0] == Op.OK:
            wire.expect_shape(message, wire.INT, (int, list, type(None)))
            reply.value = message[2]
            if reply.join is not None:
                if type(message[2]) is not list:
                    raise wire.field_error(message, "the answer to JOIN is not a list")
                reply.open_session(self, message[2])
        else:
            reply.error = error_from(message)
        # Only now, valid: a malformed answer leaves the request to _fail.
        del self._replies[message[1]]
        if reply.settles is not None:
            self._settled(reply.settles)
        reply.done.set()
