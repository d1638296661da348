"""A session joined over a hub connection: its members, variables and events, sealed end to end.

The hub orders and relays; it reads nothing. Every message and value is
sealed by its sender's :class:`~securesess.sessions.sealing.GroupState`
and opened by each receiver's, in the hub's order, with the epochs that
the members' commits begin (docs/protocol.md §10). The hub's word is taken
for the order and the membership, never for content or for who sent it:
anything that does not open, or opens as someone else's, ends the session
with :class:`SessionTampered` before the application sees it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from typing import Any, Final, final

import trio

from securesess import names
from securesess.errors import (
    HubTimeout,
    LimitExceeded,
    NotMember,
    ProtocolViolation,
    SessionClosed,
    SessionTampered,
)
from securesess.sessions import wire
from securesess.sessions.credentials import Credentials
from securesess.sessions.events import (
    Event,
    Member,
    MemberLeft,
    Message,
    MessageId,
    Variable,
    VariableChanged,
)
from securesess.sessions.join_answer import JoinAnswer
from securesess.sessions.sealed import Carrier, Sealing
from securesess.sessions.sealing import (
    SealingError,
)
from securesess.sessions.wire import Op

__all__ = ["Session"]

log = logging.getLogger("securesess.client")

# What one buffered event costs beyond its data (an estimate for the bound).
_EVENT_OVERHEAD: Final = 128


def _member_size(member: Member) -> int:
    return len(member.name or "") + sum(len(group) for group in member.groups) + _EVENT_OVERHEAD


def _variable_size(key: str, value: bytes) -> int:
    return len(key) + len(value) + _EVENT_OVERHEAD


@final
class Session:
    """A session joined over a :class:`HubConnection`; see :meth:`HubConnection.join`.

    Iterate it (``async for event in session``) for its events in the hub's
    order: :class:`Message`, :class:`MemberJoined`, :class:`MemberLeft`,
    :class:`VariableChanged`. Iteration ends after :meth:`leave`; it raises
    :class:`SessionClosed` once the hub has ended our membership, and
    :class:`trio.BrokenResourceError` if the connection is lost.
    """

    __slots__ = (
        "_backlog",
        "_connection",
        "_ended",
        "_events",
        "_members",
        "_sealing",
        "_seq",
        "_state",
        "_variables",
        "_wake",
        "me",
        "name",
        "rights",
    )

    def __init__(
        self,
        connection: Carrier,
        name: str,
        reply: list[Any],
        credentials: Credentials,
    ) -> None:
        answer = JoinAnswer.parse(reply)
        self._connection = connection
        self.name: Final = name
        self._members = answer.members
        # What the members and variables hold, for max_session_state.
        self._state = sum(map(_member_size, self._members.values()))
        self.me: Final = answer.me
        self._seq: int = answer.seq
        self._variables: dict[str, Variable] = {}
        group = credentials.group(name, answer.me.id)
        self._sealing: Final = Sealing(connection, group, answer.variables, credentials.describe)
        self.rights: Final = answer.rights
        self._events: deque[Event] = deque()
        self._backlog = 0
        self._wake = trio.Event()
        self._ended: BaseException | None = None

    def __repr__(self) -> str:
        state = "ended" if self._ended is not None else f"{len(self._members)} members"
        return f"<Session {self.name!r} as {self.me}: {state}>"

    @property
    def members(self) -> tuple[Member, ...]:
        """The session's current process set, as far as this member has heard."""
        return tuple(self._members.values())

    def member(self, member_id: int) -> Member | None:
        return self._members.get(member_id)

    @property
    def epoch(self) -> int:
        """The epoch whose keys this member seals and opens with (0: none yet)."""
        return self._sealing.group.epoch

    # -- talking -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended is not None:
            raise self._ended

    async def send(
        self, data: bytes | bytearray | memoryview, *, to: Member | int | None = None
    ) -> MessageId:
        """Send ``data`` to every other member that may receive, or ``to`` one member.

        Returns the message's id once the hub has given it its place in the
        session's order.

        Raises:
            AccessDenied: we may not send here (or the target may not receive).
            NotMember: we are not a member, or ``to`` is not.
            LimitExceeded: ``data`` is over 1 MiB.
        """
        self._check_open()
        payload = bytes(data)
        if len(payload) > wire.MAX_DATA:
            raise LimitExceeded(
                f"a message is at most {wire.MAX_DATA} bytes, not {len(payload)}", session=self.name
            )
        target = to.id if isinstance(to, Member) else to
        seq = await self._sealing.request(
            Op.SEND, target, payload, to=target, members=self._members, check_open=self._check_open
        )
        if type(seq) is not int:
            raise ProtocolViolation("the hub's answer to SEND is malformed")
        return MessageId(seq, self.me.id)

    def get(self, key: str) -> Variable | None:
        """A session variable's latest value and version, or None if it is unset."""
        return self._variables.get(key)

    @property
    def variables(self) -> dict[str, Variable]:
        return dict(self._variables)

    async def set(
        self, key: str, value: bytes | bytearray | memoryview, *, expect_version: int | None = None
    ) -> int:
        """Set a session variable; returns its new version (0 without the
        receive right, which the version would tell about others' changes).

        With ``expect_version``, only if the variable is at that version now
        (0: only if it is unset): a compare-and-set, which needs the receive
        right.

        Raises:
            VersionConflict: the variable is at another version (``.version``).
            AccessDenied: we may not set variables here.
        """
        self._check_open()
        names.check_variable_key(key)
        payload = bytes(value)
        if len(payload) > wire.MAX_DATA:
            raise LimitExceeded(
                f"a value is at most {wire.MAX_DATA} bytes, not {len(payload)}", session=self.name
            )
        if expect_version is not None and expect_version < 0:
            raise ValueError("expect_version is a version number, 0 or more")
        reply = await self._sealing.request(
            Op.SET,
            key,
            payload,
            expect_version,
            key=key,
            members=self._members,
            check_open=self._check_open,
        )
        if type(reply) is not list or len(reply) != 2 or not all(type(x) is int for x in reply):
            raise ProtocolViolation("the hub's answer to SET is malformed")
        if reply[0]:  # 0: we may not receive, and are not told the version
            self._set_variable(key, payload, reply[0])
            self._check_state()
        return int(reply[0])

    def _set_variable(self, key: str, value: bytes, version: int) -> None:
        # Our own SET's answer can overtake an earlier change queued for us.
        current = self._variables.get(key)
        if current is None or current.version < version:
            if current is not None:
                self._state -= _variable_size(key, current.value)
            self._variables[key] = Variable(value, version)
            self._state += _variable_size(key, value)

    def _add_member(self, member: Member) -> None:
        previous = self._members.get(member.id)
        if previous is not None:
            self._state -= _member_size(previous)
        self._members[member.id] = member
        self._state += _member_size(member)

    def _remove_member(self, member_id: int) -> Member | None:
        gone = self._members.pop(member_id, None)
        if gone is not None:
            self._state -= _member_size(gone)
        return gone

    def _check_state(self) -> None:
        """End the session locally if its members and variables hold too much:
        a hub could otherwise make us keep as many as it likes."""
        limit = self._connection._max_session_state
        if self._state > limit:
            self._end_locally(
                f"its members and variables hold more than {limit} bytes", "too large"
            )

    def _end_locally(self, why: str, reason: str) -> None:
        """End it as the hub ends a member: SessionClosed, and LEAVE without waiting."""
        self._finish(
            SessionClosed(f"left session {self.name!r}: {why}", session=self.name, reason=reason)
        )
        self._connection._leave_quietly(self.name)

    async def remove(self, member: Member | int, reason: str = "") -> None:
        """Remove another member from the session (needs the admin right)."""
        self._check_open()
        names.check_reason(reason)
        member_id = member.id if isinstance(member, Member) else member
        await self._connection._request(Op.REMOVE, self.name, member_id, reason)

    async def close(self, reason: str = "") -> None:
        """End the session for every member (needs the admin right)."""
        self._check_open()
        names.check_reason(reason)
        try:
            await self._connection._request(Op.CLOSE, self.name, reason)
        except HubTimeout:
            # Closed or not, this side must not keep a session it cannot
            # tell about: leave it without waiting, as an abandoned join does.
            self._connection._leave_quietly(self.name)
            self._finish(None)
            raise
        self._finish(None)

    async def leave(self) -> None:
        """Leave the session. Idempotent; iteration ends.

        The hub is told at once, even if this call is cancelled while it
        waits for the answer (a new join of the session waits for that answer).
        """
        if self._ended is not None:
            await trio.lowlevel.checkpoint()
            return
        self._finish(None)
        with contextlib.suppress(NotMember):
            await self._connection._request(Op.LEAVE, self.name, settles=self.name)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Leaving locally never fails; telling the hub may time out, which
        # must not hide an error of the body that is ending the block.
        quiet: tuple[type[BaseException], ...] = (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        )
        if exc_info[0] is not None:
            quiet += (HubTimeout,)
        with contextlib.suppress(*quiet):
            await self.leave()

    def _tampered(self, error: SealingError, what: str) -> None:
        """End the session: the hub delivered ``what``, which did not check out."""
        log.warning("left session %r: %s refused: %s", self.name, what, error)
        failure = SessionTampered(
            f"left session {self.name!r}: the hub delivered {what} that was refused: {error}",
            session=self.name,
            reason="tampered",
        )
        failure.__cause__ = error
        self._finish(failure)
        self._connection._leave_quietly(self.name)

    # -- events --------------------------------------------------------------------

    def __aiter__(self) -> Session:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except _Left:
            raise StopAsyncIteration from None

    async def receive(self) -> Event:
        """The next event. Raises what iteration raises (``_Left`` aside)."""
        while not self._events:
            if self._ended is not None:
                raise self._ended
            await self._wake.wait()
        event = self._events.popleft()
        self._backlog -= _size(event)
        await trio.lowlevel.checkpoint()
        return event

    def _push(self, seq: int, event: Event) -> None:
        if self._ended is not None or seq <= self._seq:
            return
        self._seq = seq
        self._events.append(event)
        self._backlog += _size(event)
        self._notify()
        limit = self._connection._max_backlog
        if self._backlog > limit:
            why = f"it fell too far behind (over {limit} bytes of events unread)"
            self._end_locally(why, "fell behind")

    def _finish(self, error: BaseException | None) -> None:
        """No more events: we left (``None``), or ``error`` ends the session."""
        if self._ended is not None:
            return
        self._ended = (
            error if error is not None else _Left(f"left session {self.name!r}", session=self.name)
        )
        if error is None:
            self._events.clear()
            self._backlog = 0
        self._sealing.end()
        self._connection._forget(self)
        self._notify()

    def _notify(self) -> None:
        # Whoever signals replaces the event, so that every waiter (there may
        # be several receivers) wakes, and none waits on a stale event.
        self._wake.set()
        self._wake = trio.Event()


class _Left(NotMember):
    """The session ended because we left it: iteration stops, ``receive`` raises."""


def _size(event: Event) -> int:
    """What ``event`` holds that came from the hub with it, for the backlog.

    Every name, group, reason and key counts, not only message bodies: a
    hub that sent members with megabytes of groups would otherwise fill
    memory while the backlog looked empty. (A message's sender is a member
    the session already holds, counted when it joined.)
    """
    if isinstance(event, Message):
        return len(event.data) + _EVENT_OVERHEAD
    if isinstance(event, VariableChanged):
        return len(event.key) + len(event.value) + _EVENT_OVERHEAD
    member = event.member
    size = len(member.name or "") + sum(len(group) for group in member.groups)
    if isinstance(event, MemberLeft):
        size += len(event.reason)
    return size + _EVENT_OVERHEAD
