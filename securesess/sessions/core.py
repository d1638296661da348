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

Sessions are sealed end to end: ENTER, COMMIT and RESEAL, and the epochs'
order, are :mod:`securesess.sessions.epochs`.

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
from collections.abc import Callable
from typing import Any, Final, final

from keystore import Peer
from securesess.policy import Policy, Right
from securesess.sessions import requests as rq
from securesess.sessions.epochs import EpochOrder, sequence
from securesess.sessions.outcome import (
    Client,
    Delivery,
    Ending,
    Limits,
    Member,
    Outcome,
    Refused,
    Relayed,
    membership,
    ok,
)
from securesess.sessions.sealing import Kind
from securesess.sessions.store import MemoryStore, SessionState, SessionStore
from securesess.sessions.variables import admit_set
from securesess.sessions.wire import VERSION, ErrorCode, Op, pack

__all__ = ["SessionCore"]

log = logging.getLogger("securesess.hub")


@final
class SessionCore:
    """The session manager's state and transitions (see the module's docstring)."""

    def __init__(
        self,
        policy: Policy,
        *,
        limits: Limits | None = None,
        store: SessionStore[Member] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        #: Where grants and denials come from; a reload assigns a new one.
        self.policy = policy
        self.limits: Final = limits if limits is not None else Limits()
        self._store: Final[SessionStore[Member]] = store if store is not None else MemoryStore()
        self._epochs: Final = EpochOrder(self._store, self.limits, clock)
        #: What it has ordered of sealed content, for the operator.
        self.relayed: Final = Relayed()
        self._transitions: Final[dict[type, Callable[[Client, Any, Outcome], None]]] = {
            rq.Join: self._join,
            rq.Leave: self._leave,
            rq.Send: self._send,
            rq.Set: self._set,
            rq.Remove: self._remove,
            rq.Close: self._close,
            rq.Enter: self._epochs.enter,
            rq.Commit: self._epochs.commit,
            rq.Reseal: self._epochs.reseal,
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
        else:
            self.relayed.count(request)
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
        """What time makes happen (:meth:`EpochOrder.expire`); the hub calls it every second."""
        outcome = Outcome()
        for member, reason in self._epochs.expire(outcome):
            self._drop(member, reason, outcome, notify=ErrorCode.SESSION_CLOSED)
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
            self._epochs.forget(session.name)
            log.info("session %r ended: its last member left", session.name)
        elif announce:
            # The others heard of it only once a commit brought it in.
            if member.announced:
                seq = session.sequence()
                data = pack(Op.LEFT, session.name, seq, member.id, reason)
                self._announce(session, data, outcome)
            self._epochs.due(session, outcome)

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

    # -- requests ----------------------------------------------------------------------

    _membership = staticmethod(membership)

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
        # The others see it join (JOINED) with the commit that brings it in:
        # what they send from then on reaches it.
        seq = session.seq
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
        members = [m.fields for m in session.members.values() if m.announced or m is member]
        outcome.reply = ok(request.rid, [member.id, seq, members, variables, sorted(grant.rights)])
        log.info(
            "%s joined %r with %s (from %s)",
            member,
            name,
            ", ".join(sorted(grant.rights)),
            ", ".join(repr(rule) for rule in grant.rules),
        )

    def _leave(self, client: Client, request: rq.Leave, outcome: Outcome) -> None:
        self._drop(self._membership(client, request.session), "left", outcome)
        outcome.reply = ok(request.rid, None)

    def _send(self, client: Client, request: rq.Send, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.SEND)
        session = self._session(member.session)
        if request.to is None:
            sequence(session, request.data, member, Kind.MESSAGE)
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
            sequence(session, request.data, member, Kind.DIRECT, recipient=target.id)
            seq = session.sequence()
            data = pack(Op.MESSAGE, session.name, seq, member.id, request.data, True)
            outcome.deliveries.append(Delivery(data, [target]))
        outcome.reply = ok(request.rid, seq)
        self._epochs.due(session, outcome)

    def _set(self, client: Client, request: rq.Set, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.SET)
        session = self._session(member.session)
        size = admit_set(session, member, request, self.limits)
        key, value = request.key, request.value
        sequence(session, value, member, Kind.VARIABLE, key=key)
        version = session.put(key, value, size)
        seq = session.sequence()
        data = pack(Op.VARIABLE, session.name, seq, key, value, version, member.id)
        self._broadcast(session, data, outcome, skip=member)
        # The new version would say how often the variable was set before.
        outcome.reply = ok(request.rid, [version if member.receives else 0, seq])
        self._epochs.due(session, outcome)

    def _remove(self, client: Client, request: rq.Remove, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.ADMIN)
        target = self._target(member, request.member)
        reason = f"removed by {member}: {request.reason}"
        self._drop(target, reason, outcome, notify=ErrorCode.SESSION_CLOSED)
        outcome.reply = ok(request.rid, None)

    def _close(self, client: Client, request: rq.Close, outcome: Outcome) -> None:
        member = self._membership(client, request.session)
        self._require(member, Right.ADMIN)
        reason = f"session closed by {member}: {request.reason}"
        # Nobody stays to be told who left: skip the LEFT events.
        for other in list(self._session(member.session).members.values()):
            if other is not member:
                self._drop(other, reason, outcome, notify=ErrorCode.SESSION_CLOSED, announce=False)
        self._drop(member, "closed the session", outcome, announce=False)
        outcome.reply = ok(request.rid, None)
