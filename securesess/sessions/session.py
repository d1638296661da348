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
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, final

import trio

from securesess import names
from securesess.errors import (
    HubTimeout,
    LimitExceeded,
    NotMember,
    ProtocolViolation,
    SealingRefused,
    SessionClosed,
    SessionError,
    SessionTampered,
)
from securesess.policy import Right
from securesess.sessions import wire
from securesess.sessions.events import (
    Event,
    Member,
    MemberLeft,
    Message,
    MessageId,
    Variable,
    VariableChanged,
)
from securesess.sessions.sealing import (
    ForgedContent,
    GroupState,
    Kind,
    Opened,
    Roster,
    RosterEntry,
    SealingError,
    UnknownSender,
)
from securesess.sessions.wire import Op

__all__ = ["Session"]

log = logging.getLogger("securesess.client")

# How often one request is sealed again because a commit overtook it.
_RESEALS: Final = 8


class Carrier(Protocol):
    """What a session needs of the connection it was joined over (a
    :class:`~securesess.sessions.hub_connection.HubConnection`): so the
    session depends on this, not on the connection's module."""

    _max_backlog: int
    _max_session_state: int
    _timeout: float

    async def _request(
        self, op: Op, *fields: Any, join: str | None = None, settles: str | None = None
    ) -> Any: ...

    def _leave_quietly(self, name: str) -> None: ...

    def _post(self, op: Op, *fields: Any) -> None: ...

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> None: ...

    def _forget(self, session: Session) -> None: ...


# What one buffered event costs beyond its data (an estimate for the bound).
_EVENT_OVERHEAD: Final = 128


def member_from_fields(fields: object) -> Member:
    """A member as the hub describes it, checked (the client trusts no hub's shapes)."""
    if (
        type(fields) is not list
        or len(fields) != 4
        or type(fields[0]) is not int
        or type(fields[1]) not in (str, type(None))
        or type(fields[2]) is not bytes
        or len(fields[2]) != 32
        or type(fields[3]) is not list
        or not all(type(group) is str for group in fields[3])
    ):
        raise ProtocolViolation("the hub described a member malformedly")
    return Member(fields[0], fields[1], fields[2], frozenset(fields[3]))


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
        "_awaiting",
        "_backlog",
        "_committer",
        "_committing",
        "_connection",
        "_due",
        "_ended",
        "_epoch_changed",
        "_events",
        "_group",
        "_members",
        "_ready",
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
        group: Callable[[str, int], GroupState],
    ) -> None:
        if (
            len(reply) != 5
            or type(reply[0]) is not int
            or type(reply[1]) is not int
            or type(reply[2]) is not list
            or type(reply[3]) is not list
            or type(reply[4]) is not list
        ):
            raise ProtocolViolation("the hub's answer to JOIN is malformed")
        self._connection = connection
        self.name: Final = name
        self._members = {member.id: member for member in map(member_from_fields, reply[2])}
        # What the members and variables hold, for max_session_state.
        self._state = sum(map(_member_size, self._members.values()))
        me = self._members.get(reply[0])
        if me is None:
            raise ProtocolViolation("the hub's answer to JOIN does not list us as a member")
        self.me: Final = me
        self._seq: int = reply[1]
        self._variables: dict[str, Variable] = {}
        # The variables there are, by key and version: their values come
        # sealed again once this member is in an epoch (VALUE).
        self._awaiting: dict[str, int] = {}
        for entry in reply[3]:
            if (
                type(entry) is not list
                or len(entry) != 2
                or type(entry[0]) is not str
                or type(entry[1]) is not int
            ):
                raise ProtocolViolation("the hub's answer to JOIN has a malformed variable")
            self._awaiting[entry[0]] = entry[1]
        self._group: Final = group(name, me.id)
        # In an epoch, with every variable's value: join() returns then.
        self._ready = trio.Event()
        self._epoch_changed = trio.Event()
        self._committer: int | None = None
        # The latest DUE (epoch, members, entries), and whether a task makes its commit.
        self._due: tuple[int, list[int], list[bytes]] | None = None
        self._committing = False
        try:
            self.rights: Final = frozenset(Right(right) for right in reply[4])
        except ValueError:
            raise ProtocolViolation("the hub's answer to JOIN names an unknown right") from None
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
        seq = await self._sealed(Op.SEND, target, payload, to=target)
        if type(seq) is not int:
            raise ProtocolViolation("the hub's answer to SEND is malformed")
        return MessageId(seq, self.me.id)

    async def _sealed(
        self,
        op: Op,
        field: object,
        body: bytes,
        *more: object,
        to: int | None = None,
        key: str | None = None,
    ) -> Any:
        """Seal ``body`` under the current epoch and request ``op``; seal
        again under the next epoch if a commit overtook it on the way."""
        group = self._group
        for _ in range(_RESEALS):
            await self._wait_ready()
            epoch = group.epoch
            try:
                sealed = group.seal(body, to=to, key=key)
            except UnknownSender:
                assert to is not None, "only a recipient can be unknown"
                if to not in self._members:
                    raise NotMember(
                        f"session {self.name!r} has no member {to}", session=self.name
                    ) from None
                # A joiner the next commit brings in: wait for that epoch.
                await self._wait_epoch_after(epoch)
                continue
            try:
                return await self._connection._request(op, self.name, field, sealed, *more)
            except SealingRefused:
                if group.epoch == epoch:
                    await self._wait_epoch_after(epoch)
        raise SealingRefused(
            f"the hub refused what this member sealed {_RESEALS} times, over as many epochs",
            session=self.name,
        )

    async def _wait_ready(self) -> None:
        if not self._ready.is_set():
            with trio.move_on_after(self._connection._timeout):
                await self._ready.wait()
            self._check_open()
            if not self._ready.is_set():
                raise HubTimeout(
                    f"session {self.name!r} began no epoch with this member in "
                    f"{self._connection._timeout:g} s"
                )

    async def _wait_epoch_after(self, epoch: int) -> None:
        with trio.move_on_after(self._connection._timeout):
            while self._group.epoch == epoch and self._ended is None:
                await self._epoch_changed.wait()
        self._check_open()
        if self._group.epoch == epoch:
            raise HubTimeout(
                f"session {self.name!r} began no epoch after {epoch} in "
                f"{self._connection._timeout:g} s"
            )

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
        reply = await self._sealed(Op.SET, key, payload, expect_version, key=key)
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

    # -- what the hub relays, opened -----------------------------------------------
    # The reader calls these, in the hub's order, for events with a new seq.

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

    def _open(self, data: bytes, sender: int, kind: Kind, key: str | None = None) -> Opened | None:
        """Open content that the hub says ``sender`` sealed, or end the session."""
        try:
            opened = self._group.open(data, sender=sender)
            header = opened.header
            if header.kind is not kind or header.key != key:
                raise ForgedContent(f"a {kind.name.lower()} arrived sealed as something else")
            member = self._members.get(sender)
            roster = self._group.roster
            assert roster is not None, "content opened, so there is an epoch"
            if member is None or roster[sender].credential.static_key != member.public_key:
                raise ForgedContent(f"#{sender} sealed it as another identity than the hub names")
        except SealingError as error:
            self._tampered(error, f"a {kind.name.lower()}")
            return None
        return opened

    def _message(self, seq: int, sender: int, data: bytes, direct: bool) -> None:
        opened = self._open(data, sender, Kind.DIRECT if direct else Kind.MESSAGE)
        if opened is not None:
            message = Message(MessageId(seq, sender), self._members[sender], opened.body, direct)
            self._push(seq, message)

    def _variable(self, seq: int, key: str, value: bytes, version: int, by: int) -> None:
        opened = self._open(value, by, Kind.VARIABLE, key)
        if opened is not None:
            self._set_variable(key, opened.body, version)
            self._push(seq, VariableChanged(key, opened.body, version, self._members[by], seq))
            self._got_value(key, version)
            self._check_state()

    def _value(self, seq: int, key: str, value: bytes, version: int) -> None:
        """A value sealed again by the epoch's committer, for us who joined."""
        if self._committer is None:
            self._tampered(UnknownSender("no commit has brought us in"), "a variable's value")
            return
        opened = self._open(value, self._committer, Kind.VARIABLE, key)
        if opened is not None:
            self._seq = seq
            self._set_variable(key, opened.body, version)
            self._got_value(key, version)
            self._check_state()

    def _got_value(self, key: str, version: int) -> None:
        if key in self._awaiting and self._awaiting[key] <= version:
            del self._awaiting[key]
            self._check_ready()

    def _check_ready(self) -> None:
        if self._group.epoch and not self._awaiting:
            self._ready.set()

    def _epoch(self, seq: int, committer: int, data: bytes, reseals: bool) -> None:
        """A commit, in the session's order: the next epoch begins."""
        first = self._group.epoch == 0
        try:
            change = self._group.apply_commit(data)
            if change.committer != committer:
                raise ForgedContent(f"#{change.committer}'s commit arrived as #{committer}'s")
        except SealingError as error:
            self._tampered(error, "a commit")
            return
        self._seq = seq
        self._committer = committer
        if first and (not reseals or change.epoch == 1):
            # Nobody will seal the values again: the committer may not read
            # them, or it starts the epochs afresh because no member that
            # held them is left. What they were is lost to the session.
            self._awaiting.clear()
        if committer == self.me.id and change.added - {self.me.id}:
            for key, (value, version) in self._variables.items():
                sealed = self._group.seal(value, key=key)
                self._connection._post(Op.RESEAL, self.name, key, version, sealed)
        self._check_ready()
        self._epoch_changed.set()
        self._epoch_changed = trio.Event()

    def _commit_due(self, epoch: int, members: list[int], entries: list[bytes]) -> None:
        """The hub designated us to begin ``epoch`` with ``members``."""
        self._due = (epoch, members, entries)
        if not self._committing and self._ended is None:
            self._committing = True
            self._connection._spawn(self._commit_loop)

    async def _commit_loop(self) -> None:
        """Make and send the commit of the latest DUE, until none is left:
        a DUE that arrives meanwhile supersedes the ones before it."""
        try:
            while self._due is not None and self._ended is None:
                due, self._due = self._due, None
                commit = self._propose(*due)
                if commit is not None:
                    # Refused when the members changed meanwhile: a new DUE follows.
                    with contextlib.suppress(SealingRefused, HubTimeout):
                        await self._connection._request(Op.COMMIT, self.name, commit)
        except (SessionError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._committing = False

    def _propose(self, epoch: int, members: list[int], entries: list[bytes]) -> bytes | None:
        group = self._group
        if epoch != group.epoch + 1:
            log.warning("session %r: a commit of epoch %d is due at epoch %d", self.name, epoch,
                        group.epoch)  # fmt: skip
            return None
        known = dict(group.roster or {})
        try:
            for data in entries:
                entry = RosterEntry.decode(data)
                known[entry.member] = entry
            return group.propose(Roster(known[member] for member in members))
        except (SealingError, KeyError, ValueError) as error:
            log.warning("session %r: cannot commit epoch %d: %r", self.name, epoch, error)
            return None

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
        self._group.erase()
        self._due = None
        self._connection._forget(self)
        self._notify()
        self._ready.set()
        self._epoch_changed.set()

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
