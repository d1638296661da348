"""The session core without Trio or a handshake: its transitions, and its promises."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from keystore import Peer
from securesess import ProtocolViolation
from securesess.policy import Policy, Right, Rule
from securesess.sessions import wire
from securesess.sessions.core import SessionCore
from securesess.sessions.outcome import Client, Limits, Member, Outcome
from securesess.sessions.requests import Close, Join, Leave, Remove, Send, Set
from securesess.sessions.store import MemoryStore
from securesess.sessions.wire import ErrorCode, Op, pack
from tests.sealed_core import SealedCore

EVERY = frozenset(Right)
# Who may do what: alice and bob everything, carol all but admin, dave only
# join and receive, eve join, send and set but not receive, mallory nothing.
RIGHTS = {
    "alice": EVERY,
    "bob": EVERY,
    "carol": EVERY - {Right.ADMIN},
    "dave": frozenset({Right.JOIN, Right.RECEIVE}),
    "eve": frozenset({Right.JOIN, Right.SEND, Right.SET}),
}
NAMES = [*RIGHTS, "mallory"]
SESSIONS = ["lobby", "ops"]
KEYS = ["colour", "size"]


def policy(rights: dict[str, frozenset[Right]] = RIGHTS) -> Policy:
    return Policy(
        Rule(name=name, sessions=("*",), rights=granted, names=frozenset({name}))
        for name, granted in rights.items()
    )


def peer(name: str) -> Peer:
    return Peer(name, bytes([NAMES.index(name) + 1]) * 32)


def unpack(data: bytes | None) -> list[Any]:
    assert data is not None
    message: list[Any] = msgpack.unpackb(data, raw=False)
    return message


def error(outcome: Outcome) -> ErrorCode | None:
    """The code of the ERROR that answers the request, or None for OK."""
    answer = unpack(outcome.reply)
    if answer[0] == Op.OK:
        assert outcome.refused is None
        return None
    assert answer[0] == Op.ERROR
    assert outcome.refused is not None
    assert answer[2] == outcome.refused.code
    return ErrorCode(answer[2])


@pytest.fixture
def core() -> SealedCore:
    return SealedCore(SessionCore(policy()))


def joined(core: SealedCore, name: str, session: str = "lobby") -> Client:
    client = core.connect(peer(name))
    assert error(core.handle(client, Join(1, session, True))) is None
    return client


# -- transitions ---------------------------------------------------------------------


def test_the_first_join_creates_the_session_and_answers_with_member_and_order(
    core: SealedCore,
) -> None:
    client = core.connect(peer("alice"))
    outcome = core.handle(client, Join(7, "lobby", True))
    rid, (member_id, seq, members, variables, rights) = unpack(outcome.reply)[1:]
    # Nothing has happened in the session yet: its first event is the commit.
    assert (rid, member_id, seq, variables) == (7, 1, 0, [])
    assert members == [[1, "alice", peer("alice").public_key, []]]
    assert rights == sorted(EVERY)
    assert outcome.joined is client.memberships["lobby"]
    assert outcome.deliveries == []  # the others see it join with its first commit
    assert core.sessions() == {"lobby": ["alice#1"]}


def test_a_broadcast_is_packed_once_for_every_member_that_receives(core: SealedCore) -> None:
    alice, bob, dave, eve = (joined(core, name) for name in ("alice", "bob", "dave", "eve"))
    sealed = core.seal(alice, "lobby", b"hi")
    outcome = core.handle(alice, Send(2, "lobby", None, sealed))
    assert error(outcome) is None
    [delivery] = outcome.deliveries
    # eve may not receive; alice sent it.
    assert delivery.recipients == [bob.memberships["lobby"], dave.memberships["lobby"]]
    # Each commit took a seq, and so did the JOINED that it made known.
    assert unpack(delivery.data) == [Op.MESSAGE, "lobby", 8, 1, sealed, False]
    assert unpack(outcome.reply) == [Op.OK, 2, 8]
    assert core.group(bob, "lobby").open(sealed, sender=1).body == b"hi"
    assert eve.memberships["lobby"] not in delivery.recipients


def test_a_direct_message_goes_to_its_target_alone(core: SealedCore) -> None:
    alice, bob, _ = (joined(core, name) for name in ("alice", "bob", "carol"))
    outcome = core.handle(alice, Send(2, "lobby", 2, core.seal(alice, "lobby", b"psst", to=2)))
    [delivery] = outcome.deliveries
    assert delivery.recipients == [bob.memberships["lobby"]]
    assert unpack(delivery.data)[-1] is True


def test_leaving_tells_the_others_and_ending_the_last_membership_ends_the_session(
    core: SealedCore,
) -> None:
    alice, bob = joined(core, "alice"), joined(core, "bob")
    member = alice.memberships["lobby"]
    outcome = core.handle(alice, Leave(3, "lobby"))
    assert [(ending.member, ending.notice) for ending in outcome.ended] == [(member, None)]
    left, due = outcome.deliveries
    assert left.recipients == [bob.memberships["lobby"]]
    assert unpack(left.data) == [Op.LEFT, "lobby", 4, 1, "left"]
    # bob, alone now, is to begin epoch 3 without alice; it holds its own entry.
    assert due.recipients == [bob.memberships["lobby"]]
    assert unpack(due.data) == [Op.DUE, "lobby", 3, [2], []]
    core.handle(bob, Leave(4, "lobby"))
    assert core.sessions() == {}
    assert error(core.handle(alice, Join(5, "lobby", False))) is ErrorCode.NO_SUCH_SESSION


def test_a_removed_member_is_told_and_the_others_see_it_leave(core: SealedCore) -> None:
    alice, bob, carol = (joined(core, name) for name in ("alice", "bob", "carol"))
    outcome = core.handle(alice, Remove(2, "lobby", 2, "spam"))
    [ending] = outcome.ended
    assert ending.member.client is bob
    assert unpack(ending.notice) == [
        Op.ENDED,
        "lobby",
        ErrorCode.SESSION_CLOSED,
        "removed by alice#1: spam",
    ]
    left, due = outcome.deliveries
    assert left.recipients == [alice.memberships["lobby"], carol.memberships["lobby"]]
    # A new epoch without bob, from alice, the longest present.
    assert due.recipients == [alice.memberships["lobby"]]
    assert error(core.handle(carol, Remove(3, "lobby", 1, ""))) is ErrorCode.ACCESS_DENIED


def test_closing_ends_every_membership_without_leave_events(core: SealedCore) -> None:
    alice, bob, carol = (joined(core, name) for name in ("alice", "bob", "carol"))
    outcome = core.handle(alice, Close(2, "lobby", "done"))
    assert outcome.deliveries == []
    notices = {ending.member.client.peer.name: ending.notice for ending in outcome.ended}
    assert notices["alice"] is None
    assert unpack(notices["bob"])[3] == "session closed by alice#1: done"
    assert [alice.memberships, bob.memberships, carol.memberships] == [{}, {}, {}]
    assert core.sessions() == {}


def test_variables_are_versioned_and_compare_and_set_conflicts_say_the_version(
    core: SealedCore,
) -> None:
    alice, bob = joined(core, "alice"), joined(core, "bob")
    value = core.seal(alice, "lobby", b"1", key="k")
    assert unpack(core.handle(alice, Set(2, "lobby", "k", value, None)).reply) == [Op.OK, 2, [1, 4]]
    outcome = core.handle(bob, Set(3, "lobby", "k", core.seal(bob, "lobby", b"2", key="k"), 0))
    assert unpack(outcome.reply)[2:] == [
        ErrorCode.VERSION_CONFLICT,
        "variable 'k' of session 'lobby' is at version 1, not 0",
        1,
    ]
    carol = joined(core, "carol")
    assert unpack(core.handle(carol, Join(4, "ops", True)).reply)[2][3] == []
    # A joiner is told which variables there are; their values come sealed again.
    answer = unpack(core.handle(core.connect(peer("dave")), Join(5, "lobby", False)).reply)
    assert answer[2][3] == [["k", 1]]


def test_a_member_that_may_not_receive_learns_no_versions(core: SealedCore) -> None:
    joined(core, "alice")
    eve = joined(core, "eve")
    value = core.seal(eve, "lobby", b"v", key="k")
    assert unpack(core.handle(eve, Set(2, "lobby", "k", value, None)).reply)[2] == [0, 4]
    assert error(core.handle(eve, Set(3, "lobby", "k", value, 1))) is ErrorCode.ACCESS_DENIED


def test_the_limits_bound_sessions_members_and_variable_bytes() -> None:
    limits = Limits(max_sessions=1, max_members=2, max_variable_bytes=10)
    core = SealedCore(SessionCore(policy(), limits=limits))
    alice = joined(core, "alice")
    assert error(core.handle(alice, Join(2, "ops", True))) is ErrorCode.LIMIT_EXCEEDED
    joined(core, "bob")
    bob = core.connect(peer("carol"))
    assert error(core.handle(bob, Join(3, "lobby", False))) is ErrorCode.LIMIT_EXCEEDED
    assert error(core.handle(alice, Set(4, "lobby", "key", b"12345678", None))) is (
        ErrorCode.LIMIT_EXCEEDED
    )
    with pytest.raises(ValueError, match="max_members must be at least 1"):
        Limits(max_members=0)


def test_disconnecting_ends_every_membership_of_the_client(core: SealedCore) -> None:
    alice, bob = joined(core, "alice"), joined(core, "bob")
    core.handle(alice, Join(2, "ops", True))
    outcome = core.disconnect(alice, "disconnected")
    assert {ending.member.session for ending in outcome.ended} == {"lobby", "ops"}
    left, due = outcome.deliveries
    assert left.recipients == due.recipients == [bob.memberships["lobby"]]
    assert core.sessions() == {"lobby": ["bob#2"]}


def test_evicting_a_member_tells_it_and_evicting_it_again_does_nothing(core: SealedCore) -> None:
    joined(core, "alice")
    bob = joined(core, "bob")
    member = bob.memberships["lobby"]
    outcome = core.evict(member, "fell too far behind")
    assert unpack(outcome.ended[0].notice)[3] == "fell too far behind"
    assert core.evict(member, "again") == Outcome()


def test_a_reload_ends_memberships_that_lost_a_right_and_widens_the_others(
    core: SealedCore,
) -> None:
    carol, dave = joined(core, "carol"), joined(core, "dave")
    core.policy = policy({**RIGHTS, "carol": frozenset({Right.JOIN}), "dave": EVERY})
    [ending] = core.regrant(carol).ended
    assert unpack(ending.notice)[3] == "the policy no longer grants receive, send, set"
    assert core.regrant(dave) == Outcome()
    assert Right.ADMIN in dave.memberships["lobby"].grant


def test_a_peer_without_rights_learns_nothing_of_a_session(core: SealedCore) -> None:
    joined(core, "alice")
    outcome = core.handle(core.connect(peer("mallory")), Join(1, "lobby", False))
    assert error(outcome) is ErrorCode.ACCESS_DENIED
    assert "no rule of the policy is about it" in unpack(outcome.reply)[3]


# -- the codec ---------------------------------------------------------------------


def test_requests_are_decoded_once_into_typed_values() -> None:
    message = unpack(pack(Op.SET, 9, "lobby", "k", b"v", None))
    assert wire.decode_request(message) == Set(9, "lobby", "k", b"v", None)
    assert wire.decode_hello([Op.HELLO, wire.VERSION]).version == wire.VERSION


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ([Op.JOIN, 1, "lobby", True], "the first message must be HELLO"),
        ([Op.HELLO, 99], "the client speaks hub protocol version 99"),
    ],
)
def test_a_first_message_other_than_our_hello_is_a_violation(
    message: list[Any], complaint: str
) -> None:
    with pytest.raises(ProtocolViolation, match=complaint):
        wire.decode_hello(message)


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ([Op.HELLO, 1], "a HELLO message is malformed: not a request a client may send"),
        ([Op.JOIN, 1, "lobby", 1], "a JOIN message is malformed: field 3 is a int"),
        ([Op.SEND, -1, "lobby", None, b""], "a SEND message is malformed: field 1 is out of range"),
        ([Op.LEAVE, 1, ""], "a LEAVE message is malformed: a session name is 1 to 255"),
        ([Op.SET, 1, "s", "\n", b"", None], "a SET message is malformed: a variable key may not"),
        ([Op.CLOSE, 1, "s", "x" * 201], "a CLOSE message is malformed: a reason is 1 to 200"),
    ],
)
def test_a_malformed_request_is_refused_with_the_field_it_breaks(
    message: list[Any], complaint: str
) -> None:
    with pytest.raises(ProtocolViolation, match=complaint):
        wire.decode_request(message)


def test_the_memory_store_gives_ids_and_versions_that_only_grow() -> None:
    store = MemoryStore[str]()
    session = store.create("lobby")
    assert [session.new_member_id() for _ in range(3)] == [1, 2, 3]
    assert [session.sequence() for _ in range(2)] == [1, 2]
    assert session.seq == 2
    assert [session.put("k", b"v", 2) for _ in range(2)] == [1, 2]
    assert session.variable_bytes == 2
    session.admit(1, "alice")
    session.discharge(1)
    assert store.get("lobby") is session
    assert len(store) == 1
    store.delete("lobby")
    assert store.get("lobby") is None
    assert list(store) == []


# -- the promises, as a state machine ---------------------------------------------------

RESTRICTED = {**RIGHTS, "carol": frozenset({Right.JOIN}), "dave": EVERY}
clients = st.sampled_from(range(len(NAMES)))
sessions = st.sampled_from(SESSIONS)
member_ids = st.integers(min_value=1, max_value=8)

# A membership as the model knows it: (session, member id).
Key = tuple[str, int]


class SessionPromises(RuleBasedStateMachine):
    """Drives a core with every request and every ending, against a model of what it promises."""

    def __init__(self) -> None:
        super().__init__()
        self.core = SessionCore(policy())
        # The members' clients, sealing: every join enters, every due commit is made.
        self.sealed = SealedCore(self.core)
        self.checked = 0
        self.rights = RIGHTS
        self.clients = [self.core.connect(peer(name)) for name in NAMES]
        # The model: each session's members (id -> client index, rights).
        self.members: dict[str, dict[int, tuple[int, frozenset[Right]]]] = {}
        self.versions: dict[str, dict[str, int]] = {}
        self.seq: dict[str, int] = {}
        self.ids_given: dict[str, set[int]] = {}
        # Every membership that ended, as the core's records.
        self.gone: list[Member] = []
        # Who made the latest request (None: the hub ended memberships itself).
        self.requester: Client | None = None
        self.last = ""

    # -- the model ---------------------------------------------------------------

    def membership(self, client: int, session: str) -> int | None:
        for member_id, (holder, _) in self.members.get(session, {}).items():
            if holder == client:
                return member_id
        return None

    def rights_of(self, session: str, member_id: int) -> frozenset[Right]:
        return self.members[session][member_id][1]

    def others(self, session: str, but: int | None = None) -> set[Key]:
        return {(session, m) for m in self.members.get(session, {}) if m != but}

    def receivers(self, session: str, but: int) -> set[Key]:
        return {
            (session, m)
            for m, (_, rights) in self.members[session].items()
            if m != but and Right.RECEIVE in rights
        }

    def end(self, session: str, member_id: int) -> list[tuple[str, set[Key]]]:
        """End a membership in the model; the LEFT event the others get, if any remain."""
        del self.members[session][member_id]
        if self.members[session]:
            return [(session, self.others(session))]
        # The session is gone: a new one of that name starts afresh.
        for table in (self.members, self.versions, self.seq, self.ids_given):
            table.pop(session, None)
        return []

    def leave_all(self, client: int, ended: set[Key]) -> list[tuple[str, set[Key]]]:
        """End every membership of ``client``; the LEFT events that follow."""
        events = []
        for session in list(self.members):
            member_id = self.membership(client, session)
            if member_id is not None:
                ended.add((session, member_id))
                events += self.end(session, member_id)
        return events

    # -- checking an outcome against the model -------------------------------------

    def verify(
        self,
        outcome: Outcome,
        expected: ErrorCode | None = None,
        ended: set[Key] | None = None,
        deliveries: list[tuple[str, set[Key]]] | None = None,
    ) -> None:
        if outcome.reply is not None:
            # "already a member", "no such session", ...: exactly when they should.
            assert error(outcome) == expected
        ending = {(e.member.session, e.member.id) for e in outcome.ended}
        assert ending == (ended or set())
        for e in outcome.ended:
            assert e.member not in self.gone, "a membership ends once"
            # The member is told why, unless it asked for the end itself.
            assert (e.notice is not None) == (e.member.client is not self.requester)
            self.gone.append(e.member)
        # One event per session at most, and no order between sessions; a DUE
        # (no event: a member is asked to commit) is checked with its EPOCH.
        wanted = dict(deliveries or [])
        events = [d for d in outcome.deliveries if unpack(d.data)[0] != Op.DUE]
        assert len(events) == len(wanted)
        for delivery in events:
            event = unpack(delivery.data)
            session = event[1]
            recipients = wanted.pop(session)
            # Sequence numbers strictly increase in each session.
            assert event[2] > self.seq.get(session, 0)
            self.seq[session] = event[2]
            if event[0] == Op.VARIABLE:
                assert event[5] > 0
            for member in delivery.recipients:
                # A member that ended gets nothing sequenced after it ended...
                assert all(member is not old for old in self.gone)
                # ...and nobody outside the member set gets anything at all.
                holder, rights = self.members[session][member.id]
                assert member.client is self.clients[holder]
                if event[0] in (Op.MESSAGE, Op.VARIABLE):
                    assert Right.RECEIVE in rights
            assert {(session, member.id) for member in delivery.recipients} == recipients
        if expected is None and outcome.reply is not None:
            answer = unpack(outcome.reply)[2]
            if isinstance(answer, int):  # SEND: the message's sequence number
                assert answer == self.seq[self.last]

    def request(self, client: int, request: Any) -> Outcome:
        self.requester = self.clients[client]
        self.last = request.session
        return self.sealed.handle(self.clients[client], request)

    def sealed_content(
        self, client: int, session: str, body: bytes, *, to: int | None = None,
        key: str | None = None,
    ) -> bytes:  # fmt: skip
        """``body`` sealed by ``client`` in ``session`` if it can, else as it is
        (the core refuses such a request before it looks at the content)."""
        group = self.sealed.groups.get((self.clients[client], session))
        if group is None or group.erased or (to is not None and to not in (group.roster or {})):
            return body
        return group.seal(body, to=to, key=key)

    def acting(
        self, client: int, request: Any, right: Right | None = None
    ) -> tuple[Outcome, int | None]:
        """Make a request that needs membership (and ``right``); the requester's id,
        or None when it was refused for lacking them (as it must be)."""
        outcome = self.request(client, request)
        member_id = self.membership(client, request.session)
        if member_id is None:
            self.verify(outcome, ErrorCode.NOT_MEMBER)
        elif right is not None and right not in self.rights_of(request.session, member_id):
            self.verify(outcome, ErrorCode.ACCESS_DENIED)
            member_id = None
        return outcome, member_id

    # -- rules -------------------------------------------------------------------------

    @rule(client=clients, session=sessions, create=st.booleans())
    def join(self, client: int, session: str, create: bool) -> None:
        rights = self.rights.get(NAMES[client], frozenset())
        outcome = self.request(client, Join(1, session, create))
        expected: ErrorCode | None = None
        if Right.JOIN not in rights and Right.CREATE not in rights:
            expected = ErrorCode.ACCESS_DENIED
        elif self.membership(client, session) is not None:
            expected = ErrorCode.ALREADY_MEMBER
        elif session not in self.members:
            if not create:
                expected = ErrorCode.NO_SUCH_SESSION
            elif Right.CREATE not in rights:
                expected = ErrorCode.ACCESS_DENIED
        elif Right.JOIN not in rights:
            expected = ErrorCode.ACCESS_DENIED
        if expected is not None:
            self.verify(outcome, expected)
            return
        member_id, seq = unpack(outcome.reply)[2][:2]
        # Member ids are never reused within a session.
        assert member_id not in self.ids_given.setdefault(session, set())
        self.ids_given[session].add(member_id)
        # The others hear of it with the commit that brings it in (checked
        # with the epochs); the answer's seq is the session's latest event.
        self.verify(outcome, None, set(), [])
        assert seq == self.seq.get(session, 0)
        self.members.setdefault(session, {})[member_id] = (client, rights)

    @rule(client=clients, session=sessions)
    def leave(self, client: int, session: str) -> None:
        outcome, member_id = self.acting(client, Leave(1, session))
        if member_id is None:
            return
        events = self.end(session, member_id)
        self.verify(outcome, None, {(session, member_id)}, events)

    @rule(client=clients, session=sessions, to=st.none() | member_ids)
    def send(self, client: int, session: str, to: int | None) -> None:
        data = self.sealed_content(client, session, b"data", to=to)
        outcome, member_id = self.acting(client, Send(1, session, to, data), Right.SEND)
        if member_id is None:
            return
        if to is None:
            recipients = self.receivers(session, member_id)
            self.verify(outcome, None, set(), [(session, recipients)])
            return
        if to not in self.members[session]:
            self.verify(outcome, ErrorCode.NO_SUCH_MEMBER)
            return
        if Right.RECEIVE not in self.rights_of(session, to):
            self.verify(outcome, ErrorCode.ACCESS_DENIED)
            return
        self.verify(outcome, None, set(), [(session, {(session, to)})])

    @rule(
        client=clients,
        session=sessions,
        key=st.sampled_from(KEYS),
        expected=st.none() | st.integers(min_value=0, max_value=3),
    )
    def set_variable(self, client: int, session: str, key: str, expected: int | None) -> None:
        value = self.sealed_content(client, session, b"value", key=key)
        outcome, member_id = self.acting(client, Set(1, session, key, value, expected))
        if member_id is None:
            return
        rights = self.rights_of(session, member_id)
        version = self.versions.get(session, {}).get(key, 0)
        if Right.SET not in rights or (expected is not None and Right.RECEIVE not in rights):
            self.verify(outcome, ErrorCode.ACCESS_DENIED)
            return
        if expected is not None and expected != version:
            self.verify(outcome, ErrorCode.VERSION_CONFLICT)
            assert unpack(outcome.reply)[4] == version
            return
        self.verify(outcome, None, set(), [(session, self.receivers(session, member_id))])
        # Variable versions only grow.
        new_version, seq = unpack(outcome.reply)[2]
        if Right.RECEIVE in rights:
            assert new_version == version + 1
        assert seq == self.seq[session]
        self.versions.setdefault(session, {})[key] = version + 1

    @rule(client=clients, session=sessions, target_id=member_ids)
    def remove(self, client: int, session: str, target_id: int) -> None:
        outcome, member_id = self.acting(
            client, Remove(1, session, target_id, "because"), Right.ADMIN
        )
        if member_id is None:
            return
        if target_id not in self.members[session]:
            self.verify(outcome, ErrorCode.NO_SUCH_MEMBER)
            return
        self.requester = None  # even an admin removing itself is told
        events = self.end(session, target_id)
        self.verify(outcome, None, {(session, target_id)}, events)

    @rule(client=clients, session=sessions)
    def close(self, client: int, session: str) -> None:
        outcome, member_id = self.acting(client, Close(1, session, "done"), Right.ADMIN)
        if member_id is None:
            return
        ended = self.others(session)
        for _, other in ended:
            self.end(session, other)
        self.verify(outcome, None, ended)

    @rule(client=clients)
    def disconnect(self, client: int) -> None:
        self.requester = self.clients[client]
        ended: set[Key] = set()
        events = self.leave_all(client, ended)
        outcome = self.core.disconnect(self.clients[client], "gone")
        self.verify(outcome, None, ended, events)
        self.sealed.settle(outcome)
        self.clients[client] = self.core.connect(peer(NAMES[client]))

    @precondition(lambda self: self.members)
    @rule(data=st.data())
    def evict(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(sorted(self.members)))
        member_id = data.draw(st.sampled_from(sorted(self.members[session])))
        holder = self.clients[self.members[session][member_id][0]]
        self.requester = None
        member = holder.memberships[session]
        events = self.end(session, member_id)
        outcome = self.core.evict(member, "behind")
        self.verify(outcome, None, {(session, member_id)}, events)
        self.sealed.settle(outcome)
        self.verify(self.core.evict(member, "behind"))

    @rule()
    def reload(self) -> None:
        self.rights = RESTRICTED if self.rights is RIGHTS else RIGHTS
        self.core.policy = policy(self.rights)
        self.requester = None
        for client, handle in enumerate(self.clients):
            ended: set[Key] = set()
            events = []
            new = self.rights.get(NAMES[client], frozenset())
            for session in list(self.members):
                member_id = self.membership(client, session)
                if member_id is None:
                    continue
                if self.rights_of(session, member_id) - new - {Right.CREATE}:
                    ended.add((session, member_id))
                    events += self.end(session, member_id)
                else:
                    self.members[session][member_id] = (client, new)
            outcome = self.core.regrant(handle)
            self.verify(outcome, None, ended, events)
            self.sealed.settle(outcome)

    @invariant()
    def every_epoch_holds_exactly_the_members(self) -> None:
        """Each commit the members made is ordered after the events before
        it, and reaches every member of its session, each in its roster."""
        for outcome in self.sealed.sealing_outcomes[self.checked :]:
            for delivery in outcome.deliveries:
                event = unpack(delivery.data)
                if event[0] not in (Op.EPOCH, Op.JOINED):
                    continue
                session = event[1]
                assert event[2] > self.seq.get(session, 0)
                self.seq[session] = event[2]
                recipients = {m.id for m in delivery.recipients}
                if event[0] == Op.EPOCH:
                    assert recipients == set(self.members[session])
                else:  # the newcomer it brought in, announced to everyone else
                    assert recipients == set(self.members[session]) - {event[3][0]}
        self.checked = len(self.sealed.sealing_outcomes)

    @invariant()
    def the_core_holds_the_model_members(self) -> None:
        assert self.core.sessions() == {
            session: [f"{NAMES[holder]}#{m}" for m, (holder, _) in members.items()]
            for session, members in self.members.items()
        }


SessionPromises.TestCase.settings = settings(
    max_examples=400, stateful_step_count=50, deadline=None
)
test_the_session_core_keeps_its_promises = SessionPromises.TestCase
