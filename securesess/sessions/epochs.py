"""The session core's side of sealed sessions: entries, commits, values sealed again, and time.

The core never sees a message or a value, only their headers
(docs/protocol.md §10). Each session's
:class:`~securesess.sessions.sealing.Relay` orders its epochs: a member
takes part from its ENTER (its roster entry) and the first commit that
names it; content is ordered only under the current epoch, and the core
delivers it only to that epoch's members. Whenever a commit is due (a member
entered or left, or the epoch is used up) the designated member is sent a
DUE with what it needs to make it: the members now, and the entries the
current epoch does not hold. A member designated that does not commit
within ``commit_timeout`` is removed, so that the next one is designated:
one stalled member cannot keep a session's keys from changing.

Without a clock, epochs do not age and due commits never time out: the hub
passes one (its event loop's); tests of the order need none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

from securesess.policy import Right
from securesess.sessions import requests as rq
from securesess.sessions.outcome import (
    Client,
    Delivery,
    Limits,
    Member,
    Outcome,
    Refused,
    membership,
    ok,
)
from securesess.sessions.sealing import Kind, RosterEntry, SealingError
from securesess.sessions.sealing.commit import commit_size
from securesess.sessions.store import SessionState, SessionStore
from securesess.sessions.wire import MAX_SEALED, ErrorCode, Op, pack

__all__ = ["EpochOrder", "sequence"]


def sequence(
    session: SessionState[Member],
    data: bytes,
    sender: Member,
    kind: Kind,
    *,
    recipient: int | None = None,
    key: str | None = None,
) -> None:
    """Order sealed content, or refuse it (SEALING) as every member would."""
    try:
        session.relay.sequence_content(data, sender.id, kind=kind, recipient=recipient, key=key)
    except SealingError as error:
        raise Refused(ErrorCode.SEALING, str(error)) from None


@final
class EpochOrder:
    """The transitions of ENTER, COMMIT and RESEAL, and the DUE each change calls for."""

    __slots__ = ("_clock", "_dues", "_limits", "_store")

    def __init__(
        self,
        store: SessionStore[Member],
        limits: Limits,
        clock: Callable[[], float] | None,
    ) -> None:
        self._store: Final = store
        self._limits: Final = limits
        self._clock: Final = clock
        # The last DUE sent per session, so that one is sent once, and when.
        self._dues: Final[dict[str, tuple[tuple[int, ...], float]]] = {}

    def _now(self) -> float:
        return 0.0 if self._clock is None else self._clock()

    def forget(self, name: str) -> None:
        """Session ``name`` has ended."""
        self._dues.pop(name, None)

    def due(self, session: SessionState[Member], outcome: Outcome) -> None:
        """Tell the designated member that a commit is due, once per change."""
        relay = session.relay
        committer = relay.committer
        if committer is None:
            return
        members = sorted(relay.members)
        epoch, _ = relay.next_epoch()
        due = (epoch, committer, *members)
        last = self._dues.get(session.name)
        if last is not None and last[0] == due:
            return
        # The time it has had runs from when it was first designated: the
        # members changing under it again and again do not keep it there.
        since = last[1] if last is not None and last[0][:2] == due[:2] else self._now()
        self._dues[session.name] = (due, since)
        newcomers = [session.members[m].entry for m in members if m not in relay.roster]
        data = pack(Op.DUE, session.name, epoch, members, newcomers)
        outcome.deliveries.append(Delivery(data, [session.members[committer]]))

    def expire(self, outcome: Outcome) -> list[tuple[Member, str]]:
        """Make a commit due in every session whose epoch has lasted its
        time; the designated members that have let a due commit wait for
        ``commit_timeout``, and why they are to go (so that the next one is
        designated)."""
        if self._clock is None:
            return []
        now, timeout = self._clock(), self._limits.commit_timeout
        overdue = []
        for session in self._store:
            relay = session.relay
            if not relay.expire(now):
                continue
            self.due(session, outcome)
            _, sent = self._dues[session.name]
            committer = relay.committer
            if committer is not None and now - sent >= timeout:
                epoch, _ = relay.next_epoch()
                reason = f"made no commit of epoch {epoch} in {timeout:g} s"
                overdue.append((session.members[committer], reason))
        return overdue

    # -- requests -----------------------------------------------------------------------

    def _member(self, client: Client, name: str) -> tuple[Member, SessionState[Member]]:
        member = membership(client, name)
        session = self._store.get(name)
        assert session is not None, "a member's session exists until its last member leaves"
        return member, session

    def enter(self, client: Client, request: rq.Enter, outcome: Outcome) -> None:
        member, session = self._member(client, request.session)
        if member.entry is not None:
            raise Refused(ErrorCode.SEALING, f"{member} has entered {session.name!r} already")
        try:
            entry = RosterEntry.decode(request.entry)
            entry.check_binding(session.name)
        except SealingError as error:
            raise Refused(ErrorCode.SEALING, str(error)) from None
        peer = member.client.peer
        # The hub's trust knows the peer's keys; the members' trust checks
        # them again, so this only refuses early what they would refuse.
        if (
            entry.member != member.id
            or entry.credential.static_key != peer.public_key
            or (peer.signing_key is not None and entry.credential.signing_key != peer.signing_key)
        ):
            raise Refused(ErrorCode.SEALING, f"that roster entry is not {member}'s")
        entered = [m.entry for m in session.members.values() if m.entry is not None]
        size = commit_size(session.name, [len(e) for e in [*entered, request.entry]])
        if size > MAX_SEALED:
            # Every commit must name every member, in one request.
            raise Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} is full: with {member} its commits would be "
                f"{size} bytes, over {MAX_SEALED}",
            )
        member.entry = request.entry
        session.relay.joined(member.id, receives=member.receives)
        outcome.reply = ok(request.rid, None)
        self.due(session, outcome)

    def commit(self, client: Client, request: rq.Commit, outcome: Outcome) -> None:
        member, session = self._member(client, request.session)
        relay = session.relay
        continuing = bool(relay.members & relay.roster)
        try:
            commit = relay.sequence_commit(request.commit, member.id, now=self._now())
        except SealingError as error:
            raise Refused(ErrorCode.SEALING, str(error)) from None
        if not continuing and session.variables:
            # The epochs start again: nobody holds a key to the values any
            # more, so nobody could seal them again for a joiner.
            session.drop_variables()
        seq = session.sequence()
        # Whether the committer holds the variables' values and may set
        # them, to seal them again for the newcomers, who otherwise need not
        # wait for them.
        reseals = member.receives and Right.SET in member.grant
        data = pack(Op.EPOCH, session.name, seq, member.id, request.commit, reseals)
        members = session.members
        outcome.deliveries.append(Delivery(data, [members[m] for m in commit.roster]))
        outcome.reply = ok(request.rid, seq)
        # Those it brings in have joined, for the others, from now on: what
        # they send after this reaches them.
        for number in sorted(session.relay.newcomers):
            newcomer = members[number]
            if newcomer.announced:
                continue
            newcomer.announced = True
            others = [m for m in members.values() if m is not newcomer]
            if others:
                joined = pack(Op.JOINED, session.name, session.sequence(), newcomer.fields)
                outcome.deliveries.append(Delivery(joined, others))

    def reseal(self, client: Client, request: rq.Reseal, outcome: Outcome) -> None:
        """A variable's value sealed again by the epoch's committer, for the
        members its commit brought in (the value itself is not changed: the
        version stays, and the others are not told)."""
        member, session = self._member(client, request.session)
        relay, key, limit = session.relay, request.key, self._limits.max_variable_bytes
        if relay.committed_by != member.id or Right.SET not in member.grant:
            raise Refused(
                ErrorCode.SEALING,
                f"only epoch {relay.epoch}'s committer, with the set right, seals values again",
            )
        current = session.variables.get(key)
        if current is None or current.version != request.version:
            version = 0 if current is None else current.version
            raise Refused(
                ErrorCode.VERSION_CONFLICT,
                f"variable {key!r} of session {session.name!r} is at version {version}",
                version,
            )
        size = session.variable_bytes - len(current.value) + len(request.value)
        if size > limit:
            raise Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} would hold more than {limit} bytes of variables",
            )
        sequence(session, request.value, member, Kind.VARIABLE, key=key)
        session.reseal(key, request.value, size)
        seq = session.sequence()
        data = pack(Op.VALUE, session.name, seq, key, request.value, request.version)
        members = session.members
        recipients = [
            members[m] for m in sorted(relay.newcomers) if m in members and members[m].receives
        ]
        outcome.deliveries.append(Delivery(data, recipients))
        outcome.reply = ok(request.rid, seq)
