"""The session core: sessions, members, rights, variables and each session's order, without I/O.

Theory of operation
-------------------

The hub owns the connections and the bytes; this object owns what they
mean. The hub hands it a client (:meth:`SessionCore.connect`) and then each
of that client's requests, already decoded (``securesess.sessions.requests``);
each transition runs to completion and returns an :class:`Outcome`, the
things to do, which the hub does in this order:

* ``ended``: memberships that are over. Nothing queued for them may still
  be delivered, and ``notice`` (an ENDED message), if any, goes to the
  member's client with its answers.
* ``joined``: a membership that begins, for which the hub makes a queue.
* ``deliveries``: events for members' queues. A broadcast is packed once
  and its recipients listed, so the hub appends the same bytes object to
  each queue.
* ``reply``: the answer to the requester (OK or ERROR).

Sessions are sealed end to end (docs/protocol.md §10): the core never sees
a message or a value, only their headers. Each session's
:class:`~securesess.sessions.sealing.Relay` orders its epochs: a member
takes part from its ENTER (its roster entry) and the first commit that
names it; content is ordered only under the current epoch and delivered
only to its members. Whenever a commit is due (a member entered or left,
or the epoch is used up) the designated member is sent a DUE with what it
needs to make it: the members now, and the entries it has not seen.

Every event of a session takes the session's next sequence number when it
is made, and its recipients are the members at that moment: a member that
has ended is in no later delivery, which is how "removed" takes effect
between two requests. Memberships also end from outside a request: a client
gone (:meth:`~SessionCore.disconnect`), a member too far behind
(:meth:`~SessionCore.evict`), a reload that took rights away
(:meth:`~SessionCore.regrant`).

Rights come from the policy (:attr:`SessionCore.policy`, which a reload
replaces); sessions live in a :class:`~securesess.sessions.store.SessionStore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final, final

from keystore import Peer
from securesess.policy import Policy, Right
from securesess.sessions import requests as rq
from securesess.sessions.outcome import (
    Client,
    Delivery,
    Ending,
    Limits,
    Member,
    Outcome,
    Refused,
)
from securesess.sessions.sealing import Kind, RosterEntry, SealingError
from securesess.sessions.store import MemoryStore, SessionState, SessionStore
from securesess.sessions.wire import VERSION, ErrorCode, Op, pack

__all__ = ["SessionCore"]

log = logging.getLogger("securesess.hub")


def _ok(rid: int, value: object) -> bytes:
    return pack(Op.OK, rid, value)


@final
class SessionCore:
    """The session manager's state and transitions (see the module's docstring)."""

    def __init__(
        self,
        policy: Policy,
        *,
        limits: Limits | None = None,
        store: SessionStore[Member] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: Where grants and denials come from; a reload assigns a new one.
        self.policy = policy
        self.limits: Final = limits if limits is not None else Limits()
        self._store: Final[SessionStore[Member]] = store if store is not None else MemoryStore()
        # For the epochs' age (Relay.expire): any monotonic clock, in seconds.
        self._clock: Final = clock
        # The last DUE sent per session, so that one is sent once.
        self._dues: Final[dict[str, tuple[object, ...]]] = {}
        self._transitions: Final[dict[type, Callable[[Client, Any, Outcome], None]]] = {
            rq.Join: self._join,
            rq.Leave: self._leave,
            rq.Send: self._send,
            rq.Set: self._set,
            rq.Remove: self._remove,
            rq.Close: self._close,
            rq.Enter: self._enter,
            rq.Commit: self._commit,
            rq.Reseal: self._reseal,
        }

    def __len__(self) -> int:
        return len(self._store)

    def sessions(self) -> dict[str, list[str]]:
        """Each session's name and its members (``name#id``), for logs and tests."""
        return {
            session.name: [str(member) for member in session.members.values()]
            for session in self._store
        }

    def connect(self, peer: Peer) -> Client:
        return Client(peer)

    def welcome(self, client: Client, hello: rq.Hello) -> bytes:
        """The answer to a client's (decoded, so valid) HELLO."""
        return pack(Op.WELCOME, VERSION, client.fields)

    def handle(self, client: Client, request: rq.Request) -> Outcome:
        """Decide ``client``'s request: what to answer and what to deliver.

        A refused request changes nothing: every transition checks all it
        refuses for before it changes a session, so the ERROR answer is the
        whole outcome.
        """
        outcome = Outcome()
        try:
            self._transitions[type(request)](client, request, outcome)
        except Refused as refused:
            log.info("refused %s: %s", client.peer, refused.message)
            outcome.reply = pack(
                Op.ERROR, request.rid, refused.code, refused.message, *refused.extra
            )
            outcome.refused = refused
        return outcome

    # -- memberships ending from outside a request --------------------------------

    def disconnect(self, client: Client, reason: str) -> Outcome:
        """End every membership of ``client``: it is gone, or being sent away."""
        outcome = Outcome()
        for member in list(client.memberships.values()):
            self._drop(member, reason, outcome)
        return outcome

    def evict(self, member: Member, reason: str) -> Outcome:
        """End ``member`` (if it still is one) for something the hub saw, such as a backlog."""
        outcome = Outcome()
        if member.client.memberships.get(member.session) is member:
            self._drop(member, reason, outcome, notify=ErrorCode.SESSION_CLOSED)
        return outcome

    def regrant(self, client: Client) -> Outcome:
        """Apply the current policy to ``client``'s memberships after a reload.

        A membership that lost a right ends (the member may join again with
        its new rights); rights gained apply at once.
        """
        outcome = Outcome()
        for member in list(client.memberships.values()):
            grant = self.policy.grant(client.peer, member.session)
            # Create only matters to join: a member does not lose it.
            lost = member.grant.rights - grant.rights - {Right.CREATE}
            if lost:
                reason = f"the policy no longer grants {', '.join(sorted(lost))}"
                self._drop(member, reason, outcome, notify=ErrorCode.SESSION_CLOSED)
            else:
                member.grant = grant
                member.receives = Right.RECEIVE in grant
                self._session(member.session).relay.receives(member.id, member.receives)
        return outcome

    def expire(self) -> Outcome:
        """Make a commit due in every session whose epoch is too old (the
        hub calls this from time to time)."""
        outcome = Outcome()
        now = self._clock()
        for session in self._store:
            if session.relay.expire(now):
                self._due(session, outcome)
        return outcome

    def _drop(
        self,
        member: Member,
        reason: str,
        outcome: Outcome,
        *,
        notify: ErrorCode | None = None,
        announce: bool = True,
    ) -> None:
        """End a membership now: it is in no delivery made after this.

        ``notify`` tells the member (ENDED with that code); ``announce`` tells
        the others (LEFT), which a session being closed can skip.
        """
        session = self._session(member.session)
        del member.client.memberships[session.name]
        session.discharge(member.id)
        session.relay.left(member.id)
        notice = None if notify is None else pack(Op.ENDED, session.name, notify, reason)
        outcome.ended.append(Ending(member, notice))
        log.info("%s left %r: %s", member, session.name, reason)
        if not session.members:
            self._store.delete(session.name)
            self._dues.pop(session.name, None)
            log.info("session %r ended: its last member left", session.name)
        elif announce:
            seq = session.sequence()
            self._announce(session, pack(Op.LEFT, session.name, seq, member.id, reason), outcome)
            self._due(session, outcome)

    def _due(self, session: SessionState[Member], outcome: Outcome) -> None:
        """Tell the designated member that a commit is due, once per change.

        The DUE names the members the commit must hold, and carries the
        entries of those the current epoch does not (its members hold the
        others, in its roster).
        """
        relay = session.relay
        committer = relay.committer
        if committer is None:
            return
        members = sorted(relay.members)
        epoch, _ = relay.next_epoch()
        due = (epoch, committer, *members)
        if self._dues.get(session.name) == due:
            return
        self._dues[session.name] = due
        newcomers = [session.members[m].entry for m in members if m not in relay.roster]
        data = pack(Op.DUE, session.name, epoch, members, newcomers)
        outcome.deliveries.append(Delivery(data, [session.members[committer]]))

    # -- what members see ------------------------------------------------------------

    def _session(self, name: str) -> SessionState[Member]:
        session = self._store.get(name)
        assert session is not None, "a member's session exists until its last member leaves"
        return session

    @staticmethod
    def _announce(session: SessionState[Member], data: bytes, outcome: Outcome) -> None:
        """A membership event, for every member: joining is enough to see them."""
        outcome.deliveries.append(Delivery(data, list(session.members.values())))

    @staticmethod
    def _broadcast(
        session: SessionState[Member], data: bytes, outcome: Outcome, skip: Member
    ) -> None:
        """Content (a message, a variable), for every member of the current
        epoch that receives, but ``skip``: only they hold its keys."""
        roster = session.relay.roster
        recipients = [
            m for m in session.members.values() if m.receives and m is not skip and m.id in roster
        ]
        outcome.deliveries.append(Delivery(data, recipients))

    @staticmethod
    def _sequence(
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

    # -- requests ----------------------------------------------------------------------

    def _membership(self, client: Client, name: str) -> Member:
        member = client.memberships.get(name)
        if member is None:
            raise Refused(ErrorCode.NOT_MEMBER, f"not a member of session {name!r}")
        return member

    def _require(self, member: Member, right: Right) -> None:
        if right not in member.grant:
            message = self.policy.denial(member.client.peer, member.session, right)
            raise Refused(ErrorCode.ACCESS_DENIED, message)

    def _target(self, member: Member, target_id: int) -> Member:
        target = self._session(member.session).members.get(target_id)
        if target is None:
            raise Refused(
                ErrorCode.NO_SUCH_MEMBER, f"session {member.session!r} has no member {target_id}"
            )
        return target

    def _join(self, client: Client, request: rq.Join, outcome: Outcome) -> None:
        name, peer, limits = request.session, client.peer, self.limits
        grant = self.policy.grant(peer, name)
        # Rights first, existence second: a peer that may not join a session
        # learns nothing, not even whether it exists.
        if Right.JOIN not in grant and Right.CREATE not in grant:
            raise Refused(ErrorCode.ACCESS_DENIED, self.policy.denial(peer, name, Right.JOIN))
        if name in client.memberships:
            raise Refused(ErrorCode.ALREADY_MEMBER, f"already a member of session {name!r}")
        session = self._store.get(name)
        if session is None:
            if not request.create:
                raise Refused(ErrorCode.NO_SUCH_SESSION, f"there is no session {name!r}")
            if Right.CREATE not in grant:
                raise Refused(ErrorCode.ACCESS_DENIED, self.policy.denial(peer, name, Right.CREATE))
            if len(self._store) >= limits.max_sessions:
                raise Refused(ErrorCode.LIMIT_EXCEEDED, "the hub holds its maximum of sessions")
        elif Right.JOIN not in grant:
            raise Refused(ErrorCode.ACCESS_DENIED, self.policy.denial(peer, name, Right.JOIN))
        elif len(session.members) >= limits.max_members:
            raise Refused(ErrorCode.LIMIT_EXCEEDED, f"session {name!r} is full")
        if len(client.memberships) >= limits.max_memberships:
            raise Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"this connection is already in {limits.max_memberships} sessions",
            )
        if session is None:
            session = self._store.create(name)
            log.info("%s created session %r", peer, name)
        member = Member(session.new_member_id(), client, name, grant)
        seq = session.sequence()
        self._announce(session, pack(Op.JOINED, name, seq, member.fields), outcome)
        session.admit(member.id, member)
        client.memberships[name] = member
        outcome.joined = member
        # Their values are sealed under epochs the joiner was not in: it gets
        # them sealed again once it is in one (RESEAL, VALUE).
        variables = (
            [[key, version] for key, (_, version) in session.variables.items()]
            if member.receives
            else []
        )
        members = [other.fields for other in session.members.values()]
        outcome.reply = _ok(request.rid, [member.id, seq, members, variables, sorted(grant.rights)])
        log.info(
            "%s joined %r with %s (from %s)",
            member,
            name,
            ", ".join(sorted(grant.rights)),
            ", ".join(repr(rule) for rule in grant.rules),
        )

    def _leave(self, client: Client, request: rq.Leave, outcome: Outcome) -> None:
        self._drop(self._membership(client, request.session), "left", outcome)
        outcome.reply = _ok(request.rid, None)

    def _send(self, client: Client, request: rq.Send, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.SEND)
        session = self._session(member.session)
        if request.to is None:
            self._sequence(session, request.data, member, Kind.MESSAGE)
            seq = session.sequence()
            data = pack(Op.MESSAGE, session.name, seq, member.id, request.data, False)
            self._broadcast(session, data, outcome, skip=member)
        else:
            target = self._target(member, request.to)
            if not target.receives:
                raise Refused(
                    ErrorCode.ACCESS_DENIED,
                    f"{target} may not receive in session {session.name!r}",
                )
            self._sequence(session, request.data, member, Kind.DIRECT, recipient=target.id)
            seq = session.sequence()
            data = pack(Op.MESSAGE, session.name, seq, member.id, request.data, True)
            outcome.deliveries.append(Delivery(data, [target]))
        outcome.reply = _ok(request.rid, seq)
        self._due(session, outcome)

    def _set(self, client: Client, request: rq.Set, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.SET)
        session = self._session(member.session)
        key, value, expected, limits = request.key, request.value, request.expected, self.limits
        if expected is not None and not member.receives:
            # Whether it conflicts would tell whether the variable exists,
            # and its version: what only the receive right may learn.
            raise Refused(
                ErrorCode.ACCESS_DENIED,
                f"a compare-and-set in session {session.name!r} needs the receive right",
            )
        current = session.variables.get(key)
        version = current.version if current is not None else 0
        if expected is not None and expected != version:
            raise Refused(
                ErrorCode.VERSION_CONFLICT,
                f"variable {key!r} of session {session.name!r} is at version {version}, "
                f"not {expected}",
                version,
            )
        # A member that may not receive is judged at the limits as if the key
        # were new: that an overwrite fits where a new key would not would
        # tell it which keys exist, and how long their values are.
        as_new = current is None or not member.receives
        if as_new and len(session.variables) >= limits.max_variables:
            raise Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} already has {limits.max_variables} variables",
            )
        # Bounded in bytes too: every JOIN answer carries all the variables.
        grown = session.variable_bytes + len(key) + len(value)
        size = grown if current is None else grown - len(key) - len(current.value)
        if (grown if as_new else size) > limits.max_variable_bytes:
            raise Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} would hold more than "
                f"{limits.max_variable_bytes} bytes of variables",
            )
        self._sequence(session, value, member, Kind.VARIABLE, key=key)
        version = session.put(key, value, size)
        seq = session.sequence()
        data = pack(Op.VARIABLE, session.name, seq, key, value, version, member.id)
        self._broadcast(session, data, outcome, skip=member)
        # The new version would say how often the variable was set before.
        outcome.reply = _ok(request.rid, [version if member.receives else 0, seq])
        self._due(session, outcome)

    def _remove(self, client: Client, request: rq.Remove, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.ADMIN)
        target = self._target(member, request.member)
        reason = f"removed by {member}: {request.reason}"
        self._drop(target, reason, outcome, notify=ErrorCode.SESSION_CLOSED)
        outcome.reply = _ok(request.rid, None)

    def _close(self, client: Client, request: rq.Close, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.ADMIN)
        reason = f"session closed by {member}: {request.reason}"
        # Nobody stays to be told who left: skip the LEFT events.
        for other in list(self._session(member.session).members.values()):
            if other is not member:
                self._drop(other, reason, outcome, notify=ErrorCode.SESSION_CLOSED, announce=False)
        self._drop(member, "closed the session", outcome, announce=False)
        outcome.reply = _ok(request.rid, None)

    # -- epochs ------------------------------------------------------------------------

    def _enter(self, client: Client, request: rq.Enter, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        session = self._session(member.session)
        if member.entry is not None:
            raise Refused(ErrorCode.SEALING, f"{member} has entered {session.name!r} already")
        try:
            entry = RosterEntry.decode(request.entry)
            entry.check_binding(session.name)
        except SealingError as error:
            raise Refused(ErrorCode.SEALING, str(error)) from None
        peer = client.peer
        # The hub's trust knows the peer's keys; the members' trust checks
        # them again, so this only refuses early what they would refuse.
        if (
            entry.member != member.id
            or entry.credential.static_key != peer.public_key
            or (peer.signing_key is not None and entry.credential.signing_key != peer.signing_key)
        ):
            raise Refused(ErrorCode.SEALING, f"that roster entry is not {member}'s")
        member.entry = request.entry
        session.relay.joined(member.id, receives=member.receives)
        outcome.reply = _ok(request.rid, None)
        self._due(session, outcome)

    def _commit(self, client: Client, request: rq.Commit, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        session = self._session(member.session)
        try:
            commit = session.relay.sequence_commit(request.commit, member.id, now=self._clock())
        except SealingError as error:
            raise Refused(ErrorCode.SEALING, str(error)) from None
        seq = session.sequence()
        # Whether the committer holds the variables' values, to seal them
        # again for the newcomers: they need not wait for them otherwise.
        data = pack(Op.EPOCH, session.name, seq, member.id, request.commit, member.receives)
        members = session.members
        outcome.deliveries.append(Delivery(data, [members[m] for m in commit.roster]))
        outcome.reply = _ok(request.rid, seq)
        log.info("%s began epoch %d of %r", member, commit.epoch, session.name)

    def _reseal(self, client: Client, request: rq.Reseal, outcome: Outcome) -> None:
        """A variable's value sealed again by the epoch's committer, for the
        members its commit brought in (the value itself is not changed: the
        version stays, and the others are not told)."""
        member = self._membership(client, request.session)
        session = self._session(member.session)
        relay, key = session.relay, request.key
        if relay.committed_by != member.id:
            raise Refused(
                ErrorCode.SEALING, f"only epoch {relay.epoch}'s committer seals values again"
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
        if size > self.limits.max_variable_bytes:
            raise Refused(
                ErrorCode.LIMIT_EXCEEDED,
                f"session {session.name!r} would hold more than "
                f"{self.limits.max_variable_bytes} bytes of variables",
            )
        self._sequence(session, request.value, member, Kind.VARIABLE, key=key)
        session.reseal(key, request.value, size)
        seq = session.sequence()
        data = pack(Op.VALUE, session.name, seq, key, request.value, request.version)
        recipients = [
            session.members[m]
            for m in sorted(relay.newcomers)
            if m in session.members and session.members[m].receives
        ]
        outcome.deliveries.append(Delivery(data, recipients))
        outcome.reply = _ok(request.rid, seq)
