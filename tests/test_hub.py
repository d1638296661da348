"""The hub and its client, in one process over real loopback TCP.

The multi-process confinement tests are in test_confinement.py; these cover
the API, the errors and the hub's limits, quickly.
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from keystore import Identity, TrustStore, sign_certificate
from securesess import (
    HubTimeout,
    PeerAborted,
    PeerNotTrusted,
    PeerRejected,
    ProtocolViolation,
    SecureListener,
    SecureStream,
    serve_secure,
)
from securesess.constants import CloseCode
from securesess.errors import (
    AccessDenied,
    AlreadyMember,
    NoSuchSession,
    NotMember,
    SessionClosed,
    SessionTampered,
    VersionConflict,
)
from securesess.policy import Right
from securesess.sessions.client import HubConnection, Session, connect_hub
from securesess.sessions.events import Event, MemberJoined, MemberLeft, Message, VariableChanged
from securesess.sessions.hub import Hub
from securesess.sessions.sealing import ForgedContent
from securesess.sessions.wire import MAX_DATA, VERSION, ErrorCode, MessageReader, Op, pack
from securesess.testing import Delay, FaultyStream
from tests.hubs import PEERS, POLICY, FakeHub, HubWorld, RawClient
from tests.streams import Wrapped


@pytest.fixture
async def world(nursery: trio.Nursery) -> HubWorld:
    world = HubWorld()
    await world.start(nursery)
    return world


async def _messages(session: Session, count: int) -> list[Message]:
    """The next ``count`` messages, skipping membership and variable events."""
    found: list[Message] = []
    with trio.fail_after(10):
        async for event in session:
            if isinstance(event, Message):
                found.append(event)
                if len(found) == count:
                    break
    return found


async def _drain(session: Session, into: list[Event] | None = None) -> None:
    """Take events until the session ends (and raises, unless we left it)."""
    async for event in session:
        if into is not None:
            into.append(event)


async def _nothing_more(session: Session, marker: bytes) -> None:
    """The next message ``session`` gets is ``marker``: nothing else came first."""
    (message,) = await _messages(session, 1)
    assert message.data == marker


async def test_a_message_reaches_every_other_member_in_one_total_order(world: HubWorld) -> None:
    async with (
        world.connect("api") as api,
        world.connect("db") as db,
        world.connect("cache") as cache,
    ):
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        cache_s = await cache.join("orders")
        assert {m.name for m in cache_s.members} == {"api", "db", "cache"}

        async def burst(session: Session, tag: bytes) -> None:
            for i in range(50):
                await session.send(tag + b"%d" % i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(burst, api_s, b"a")
            nursery.start_soon(burst, db_s, b"d")
        seen = await _messages(cache_s, 100)
        ids = [message.id for message in seen]
        assert ids == sorted(ids)
        assert len(set(ids)) == 100
        for tag, sender in ((b"a", "api"), (b"d", "db")):
            mine = [m.data for m in seen if m.sender.name == sender]
            assert mine == [tag + b"%d" % i for i in range(50)]  # each sender's order kept
        # api and cache see db's messages in the same relative order.
        from_db = await _messages(api_s, 50)
        assert [m.id for m in from_db] == [m.id for m in seen if m.sender.name == "db"]
        # Nobody gets its own broadcast back: api's next message is cache's marker.
        await cache_s.send(b"marker")
        await _nothing_more(api_s, b"marker")


async def test_send_returns_the_id_the_receivers_see(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        sent = await api_s.send(b"hello")
        (got,) = await _messages(db_s, 1)
        assert got.id == sent
        assert sent.sender == api_s.me.id
        assert got.sender.fingerprint == api.me.fingerprint if api.me else False
        assert str(sent) == f"{sent.seq}@{api_s.me.id}"


async def test_a_direct_message_reaches_its_target_alone(world: HubWorld) -> None:
    async with (
        world.connect("api") as api,
        world.connect("db") as db,
        world.connect("cache") as cache,
    ):
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        cache_s = await cache.join("orders")
        await api_s.send(b"for db only", to=db_s.me)
        (got,) = await _messages(db_s, 1)
        assert got.data == b"for db only"
        assert got.direct
        await api_s.send(b"everyone")
        await _nothing_more(cache_s, b"everyone")
        with pytest.raises(NotMember, match="has no member 999"):
            await api_s.send(b"x", to=999)


async def test_variables_compare_and_set(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        assert api_s.get("leader") is None
        assert await api_s.set("leader", b"api", expect_version=0) == 1
        with pytest.raises(VersionConflict, match="at version 1, not 0") as conflict:
            await db_s.set("leader", b"db", expect_version=0)
        assert conflict.value.version == 1
        assert conflict.value.session == "orders"
        assert api_s.get("leader") == (b"api", 1)
        with trio.fail_after(5):
            async for event in db_s:
                if isinstance(event, VariableChanged):
                    break
        assert isinstance(event, VariableChanged)
        assert (event.key, event.value, event.version) == ("leader", b"api", 1)
        assert event.by is not None
        assert event.by.name == "api"
        assert db_s.get("leader") == (b"api", 1)
        assert await db_s.set("leader", b"db", expect_version=1) == 2
        # A newcomer gets the current values when it joins.
        async with world.connect("cache") as cache:
            cache_s = await cache.join("orders")
            assert cache_s.get("leader") == (b"db", 2)


WRITERS = (
    POLICY
    + """
[[rule]]
name = "writers"
groups = ["feeders"]
sessions = ["orders"]
rights = ["join", "set"]
"""
)


async def test_a_member_that_may_set_but_not_receive_learns_nothing_of_the_variables(
    nursery: trio.Nursery,
) -> None:
    world = HubWorld()
    await world.start(nursery, WRITERS)
    async with world.connect("api") as api, world.connect("feeder") as feeder:
        api_s = await api.join("orders", create=True)
        for value in (b"a", b"b", b"c"):
            await api_s.set("leader", value)
        feeder_s = await feeder.join("orders")
        assert Right.RECEIVE not in feeder_s.rights
        # A compare-and-set would tell whether it exists, and its version.
        for expected in (0, 3, 4):
            with pytest.raises(AccessDenied, match=r"compare-and-set .* needs the receive right"):
                await feeder_s.set("leader", b"f", expect_version=expected)
        # A blind write works; its answer says the same for a key set three
        # times and for a new one.
        assert await feeder_s.set("leader", b"f") == 0
        assert await feeder_s.set("brand-new", b"f") == 0
        assert feeder_s.variables == {}
        with trio.fail_after(5):
            changes = [
                event async for event in _first(api_s, 2) if isinstance(event, VariableChanged)
            ]
        assert [(c.key, c.value, c.version) for c in changes] == [
            ("leader", b"f", 4),
            ("brand-new", b"f", 1),
        ]


async def _first(session: Session, count: int) -> AsyncIterator[Event]:
    """The session's events until ``count`` variable changes have come."""
    seen = 0
    async for event in session:
        yield event
        if isinstance(event, VariableChanged):
            seen += 1
            if seen == count:
                return


async def test_joining_errors_are_typed_and_precise(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("auditor") as auditor:
        with pytest.raises(NoSuchSession, match="there is no session 'orders'"):
            await api.join("orders")
        with pytest.raises(
            AccessDenied, match=r"may not create.*\(join, receive\) come from rule 'auditors'"
        ):
            await auditor.join("orders", create=True)  # auditors may not create
        session = await api.join("orders", create=True)
        with pytest.raises(AlreadyMember):
            await api.join("orders")
        with pytest.raises(
            AccessDenied, match=r"rules about it \('services'\) do not cover"
        ) as denied:
            await api.join("billing", create=True)
        assert denied.value.session == "billing"
        await session.leave()
        with pytest.raises(NotMember):
            await session.send(b"after leaving")
        with pytest.raises(ValueError, match="control or invisible"):
            await api.join("bad\nname")


async def test_an_outsider_learns_nothing_about_which_sessions_exist(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("auditor") as auditor:
        await api.join("orders/secret", create=True)
        errors = []
        for name in ("orders/secret", "orders/none"):
            with pytest.raises(AccessDenied) as denied:
                await auditor.join(name)
            errors.append(str(denied.value).replace(name, "NAME"))
        assert errors[0] == errors[1]


async def test_rights_limit_what_a_member_does(world: HubWorld) -> None:
    async with (
        world.connect("api") as api,
        world.connect("auditor") as auditor,
        world.connect("feeder") as feeder,
    ):
        api_s = await api.join("orders", create=True)
        audit_s = await auditor.join("orders")
        feed_s = await feeder.join("orders")
        assert audit_s.rights == {"join", "receive"}
        with pytest.raises(AccessDenied, match=r"may not send in session 'orders'.*'auditors'"):
            await audit_s.send(b"x")
        with pytest.raises(AccessDenied, match="may not set"):
            await audit_s.set("k", b"v")
        with pytest.raises(AccessDenied, match="may not receive"):
            await api_s.send(b"x", to=feed_s.me)
        await feed_s.send(b"from the feeder")
        (got,) = await _messages(audit_s, 1)
        assert got.data == b"from the feeder"
        # The feeder has no receive right: it sees members come and go, never data.
        await api_s.set("k", b"v")
        await api_s.send(b"not for feeders")
        await api_s.leave()
        with trio.fail_after(5):
            event = await feed_s.receive()
            assert isinstance(event, MemberLeft)
            assert event.member.name == "api"
        assert feed_s.get("k") is None


async def test_leaving_stops_delivery_and_rejoining_is_a_new_member(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        first_id = db_s.me.id
        await db_s.leave()
        await db_s.leave()  # idempotent
        async for _ in db_s:
            raise AssertionError("a left session yields nothing")
        await api_s.send(b"while db is away")
        again = await db.join("orders")
        assert again.me.id != first_id
        await api_s.send(b"after db rejoined")
        await _nothing_more(again, b"after db rejoined")
        events = [e async for e in _take(api_s, 3)]
        assert isinstance(events[0], MemberJoined)
        assert events[0].member.id == first_id
        assert isinstance(events[1], MemberLeft)
        assert events[1].reason == "left"
        assert isinstance(events[2], MemberJoined)
        assert events[2].member.id == again.me.id


async def _take(session: Session, count: int) -> AsyncIterator[Event]:
    with trio.fail_after(5):
        for _ in range(count):
            yield await session.receive()


async def test_session_context_leaves_and_a_session_ends_with_its_last_member(
    world: HubWorld,
) -> None:
    assert world.hub is not None
    async with world.connect("api") as api:
        async with await api.join("orders", create=True) as session:
            await session.set("k", b"v")
            assert world.hub.sessions() == {"orders": [str(session.me).split(" ")[0]]}
        assert world.hub.sessions() == {}
        fresh = await api.join("orders", create=True)
        assert fresh.get("k") is None


async def test_an_admin_removes_members_and_closes_sessions(world: HubWorld) -> None:
    async with world.connect("ops") as ops, world.connect("api") as api, world.connect("db") as db:
        ops_s = await ops.join("orders", create=True)
        api_s = await api.join("orders")
        db_s = await db.join("orders")
        with pytest.raises(AccessDenied, match="may not admin"):
            await api_s.remove(db_s.me)
        await ops_s.remove(api_s.me, "misbehaving")
        with (
            trio.fail_after(5),
            pytest.raises(SessionClosed, match=r"removed by ops#.*misbehaving"),
        ):
            await _drain(api_s)
        with pytest.raises(SessionClosed):
            await api_s.send(b"x")
        await ops_s.close("maintenance")
        with trio.fail_after(5), pytest.raises(SessionClosed, match=r"closed by ops#.*maintenance"):
            await _drain(db_s)
        assert world.hub is not None
        assert world.hub.sessions() == {}


async def test_a_peer_no_rule_admits_is_refused_in_the_handshake(world: HubWorld) -> None:
    with pytest.raises(PeerRejected, match="no rule of the hub's policy admits visitor") as refused:
        async with world.connect("visitor"):
            pass
    assert refused.value.code == CloseCode.ACCESS_DENIED


async def test_a_reload_that_removes_a_right_ends_the_membership_at_once(world: HubWorld) -> None:
    assert world.hub is not None
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        # services lose "set": both memberships end; they may join again.
        world.hub.reload(policy=world.policy(POLICY.replace('"receive", "set"]', '"receive"]')))
        with trio.fail_after(5), pytest.raises(SessionClosed, match="no longer grants set"):
            await db_s.receive()
        again = await db.join("orders", create=True)
        assert again.rights == {"create", "join", "send", "receive"}
        with pytest.raises(SessionClosed):
            await api_s.send(b"stale membership")
        # db is no longer admitted at all: disconnected, and gone from the session.
        world.hub.reload(
            policy=world.policy(POLICY.replace('groups = ["services"]', 'names = ["api"]'))
        )
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await again.receive()
        assert world.hub.sessions() == {}


async def test_a_revoked_peer_is_refused_and_a_reload_disconnects_it(world: HubWorld) -> None:
    assert world.hub is not None
    async with world.connect("api") as api:
        session = await api.join("orders", create=True)
        trust = world.trust
        trust.revoke_key(world.identities["api"].public_key)
        world.hub.reload(trust=trust)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as broken:
            await session.receive()
        assert "revoked" in str(broken.value.__cause__ or broken.value)
    with pytest.raises(PeerRejected, match="revoked"):
        async with world.connect("api"):
            pass


async def test_a_member_that_stops_reading_is_removed_and_the_others_go_on(
    nursery: trio.Nursery,
) -> None:
    world = HubWorld()
    hub = await world.start(nursery, max_backlog=256 * 1024)
    message = b"x" * 16384
    count = 600  # ~10 MB: more than the kernel's socket buffers hold
    stalled = RawClient(await world.raw("cache"))
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        # In the session's epochs, so that it is sent everything, and then deaf.
        await stalled.stream.send_all(pack(Op.JOIN, 1, "orders", False))
        answer = await stalled.next()
        while answer is not None and answer[0] == Op.WELCOME:
            answer = await stalled.next()
        assert answer is not None
        assert answer[0] == Op.OK
        entry = world.entry("cache", "orders", answer[2][0])
        await stalled.stream.send_all(pack(Op.ENTER, 2, "orders", entry))
        db_s = await db.join("orders")

        async def send_all() -> None:
            for _ in range(count):
                await api_s.send(message)

        async with trio.open_nursery() as inner:
            inner.start_soon(send_all)
            got = await _messages(db_s, count)
        assert len(got) == count
        assert all(name.startswith(("api#", "db#")) for name in hub.sessions()["orders"])
    # The stalled member, reading at last, finds its membership ended with a reason.
    with trio.fail_after(10):
        async for reply in stalled.all():
            if reply[0] == Op.ENDED:
                assert reply[2] == ErrorCode.SESSION_CLOSED
                assert "fell too far behind" in reply[3]
                break
        else:
            raise AssertionError("the stalled member was never told it was removed")
    await stalled.stream.aclose()


async def test_a_session_the_application_neglects_is_ended_on_the_client(
    world: HubWorld,
) -> None:
    async with world.connect("api") as api, world.connect("db", max_backlog=64 * 1024) as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        for _ in range(20):
            await api_s.send(b"y" * 8192)
        received: list[Event] = []
        with trio.fail_after(5), pytest.raises(SessionClosed, match="fell too far behind"):
            await _drain(db_s, received)
        assert 0 < sum(isinstance(event, Message) for event in received) < 20
        with trio.fail_after(5):
            async for event in api_s:
                if isinstance(event, MemberLeft):
                    break
        assert isinstance(event, MemberLeft)
        assert event.member.name == "db"
        assert event.reason == "left"
        assert (await db.join("orders")).me.id != db_s.me.id  # may come back at once


async def test_a_cancelled_join_does_not_leave_a_membership_behind(world: HubWorld) -> None:
    assert world.hub is not None
    async with world.connect("api") as api:
        with trio.move_on_after(0):
            await api.join("orders", create=True)
        with trio.fail_after(5):
            while world.hub.sessions():
                await trio.sleep(0.01)
        session = await api.join("orders", create=True)
        assert len(session.members) == 1


async def test_requests_about_other_sessions_get_errors_and_nothing_else(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        raw = RawClient(await world.raw("cache"))
        forged = [
            pack(Op.SEND, 1, "orders", None, b"forged"),
            pack(Op.SEND, 2, "orders", db_s.me.id, b"forged direct"),
            pack(Op.SET, 3, "orders", "k", b"forged", None),
            pack(Op.REMOVE, 4, "orders", db_s.me.id, "forged"),
            pack(Op.CLOSE, 5, "orders", "forged"),
            pack(Op.LEAVE, 6, "orders"),
        ]
        await raw.stream.send_all(b"".join(forged))
        welcome = await raw.next()
        assert welcome is not None
        assert welcome[0] == Op.WELCOME
        answers = [await raw.next() for _ in forged]
        assert [answer[:2] if answer else None for answer in answers] == [
            [Op.ERROR, rid] for rid in range(1, 7)
        ]
        assert {answer[3] for answer in answers if answer} == {"not a member of session 'orders'"}
        # Forging a sender field is a protocol violation: the hub hangs up.
        await raw.stream.send_all(pack(Op.SEND, 7, "orders", None, b"x", api_s.me.id))
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as broken:
            await raw.drain()
        assert isinstance(broken.value.__cause__, PeerAborted)
        assert broken.value.__cause__.code == CloseCode.PROTOCOL_VIOLATION
        await api_s.send(b"still fine")
        await _nothing_more(db_s, b"still fine")


async def test_garbage_ends_that_connection_only(world: HubWorld) -> None:
    async with world.connect("api") as api:
        session = await api.join("orders", create=True)
        deep = b"\x92\x04" + b"\x91" * 400 + b"\xc0"  # nested past Python's recursion limit
        junk_list = (b"\xc1", b"\x92\x02", pack("text"), pack(Op.WELCOME, 1, []), b"\xdf" * 9, deep)
        for junk in junk_list:
            stream = await world.raw("db")
            await stream.send_all(junk if junk != b"\x92\x02" else pack(Op.JOIN))
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
                await RawClient(stream).drain()
            await stream.aclose()
        assert (await session.set("k", b"v")) == 1


async def test_a_hub_that_goes_away_breaks_its_sessions(nursery: trio.Nursery) -> None:
    world = HubWorld()
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                await world.start(inner)
                task_status.started()

    await nursery.start(serve)
    async with world.connect("api") as api:
        session = await api.join("orders", create=True)
        scope.cancel()
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await session.receive()
        with pytest.raises(trio.BrokenResourceError):
            await api.join("other", create=True)


_fields = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from(["orders", "lobby", ""]),
    lambda children: st.lists(children, max_size=4),
    max_leaves=8,
)
_requests = st.lists(
    st.tuples(st.sampled_from([*Op, 0, 99, 2**40]), st.lists(_fields, max_size=6)),
    min_size=1,
    max_size=8,
)


_WORLD = HubWorld({"api": ("services",), "db": ("services",)})


@given(requests=_requests)
async def test_whatever_a_client_sends_the_hub_answers_or_hangs_up_and_stays_whole(
    requests: list[tuple[int, list[object]]],
) -> None:
    world = _WORLD
    hub = Hub(identity=world.hub_identity, trust=world.trust, policy=world.policy())
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = SecureStream(
        client_transport, identity=world.identities["api"], trust=world.client_trust
    )
    server = SecureStream(
        server_transport, identity=world.hub_identity, trust=world.trust, server_side=True
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.handle, server)
        raw = RawClient(client)
        payload = pack(Op.HELLO, VERSION) + b"".join(pack(op, *fields) for op, fields in requests)
        await client.send_all(payload)
        await client.send_eof()
        answers: list[list[object]] = []
        with trio.fail_after(5):
            try:
                answers = await raw.drain()
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__
            else:
                cause = None
        if cause is not None:  # hung up: only ever for a protocol violation
            assert isinstance(cause, PeerAborted)
            assert cause.code == CloseCode.PROTOCOL_VIOLATION
        assert all(answer[0] in {Op.WELCOME, Op.OK, Op.ERROR, Op.ENDED} for answer in answers)
    # The connection is gone and so are its memberships: the hub holds nothing.
    assert hub.sessions() == {}


# -- regressions found in review ------------------------------------------------------


async def test_concurrent_senders_all_finish_when_the_outgoing_buffer_was_full(
    world: HubWorld,
) -> None:
    async with world.connect("api") as api:
        session = await api.join("orders", create=True)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.send, b"x" * MAX_DATA)  # fills the buffer alone
                for i in range(4):
                    nursery.start_soon(session.send, b"%d" % i)


async def test_every_concurrent_receiver_wakes(world: HubWorld) -> None:
    async with world.connect("api") as api, world.connect("db") as db:
        api_s = await api.join("orders", create=True)
        db_s = await db.join("orders")
        outcomes: list[object] = []

        async def receive() -> None:
            try:
                outcomes.append(await db_s.receive())
            except NotMember as exc:
                outcomes.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                await api_s.send(b"one")
                while not outcomes:
                    await trio.sleep(0.01)
                await db_s.leave()
        assert isinstance(outcomes[0], Message)
        assert isinstance(outcomes[1], NotMember)


async def test_a_cancelled_leave_still_leaves(world: HubWorld) -> None:
    assert world.hub is not None
    async with world.connect("api") as api:
        session = await api.join("orders", create=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.send, b"x" * MAX_DATA)  # fills the buffer
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0):
                await session.leave()
        with trio.fail_after(5):
            while world.hub.sessions():
                await trio.sleep(0.01)
        with pytest.raises(NoSuchSession):
            await api.join("orders")


async def test_a_malformed_answer_fails_the_request_instead_of_hanging() -> None:
    world = _WORLD
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = SecureStream(
        client_transport, identity=world.identities["api"], trust=world.client_trust
    )
    server = SecureStream(
        server_transport, identity=world.hub_identity, trust=world.trust, server_side=True
    )

    async def broken_hub() -> None:
        raw = RawClient(server)
        with contextlib.suppress(trio.BrokenResourceError):
            await answer_badly(raw)

    async def answer_badly(raw: RawClient) -> None:
        async for request in raw.all():
            if request[0] == Op.HELLO:
                await server.send_all(pack(Op.WELCOME, VERSION, ["hub", bytes(32), []]))
            else:
                await server.send_all(pack(Op.OK, request[1], "not a JOIN answer"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(broken_hub)
        async with HubConnection.over(client) as hub:
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="hub protocol"):
                await hub.join("orders")
        nursery.cancel_scope.cancel()


async def test_a_client_that_half_closes_still_gets_every_answer(world: HubWorld) -> None:
    for _ in range(10):
        raw = RawClient(await world.raw("api"))
        requests = pack(Op.JOIN, 1, "orders", True) + pack(Op.LEAVE, 2, "orders")
        await raw.stream.send_all(requests)
        await raw.stream.send_eof()
        with trio.fail_after(5):
            answers = await raw.drain()
        assert [answer[0] for answer in answers] == [Op.WELCOME, Op.OK, Op.OK]
        await raw.stream.aclose()


async def test_one_endless_message_is_refused_before_it_fills_memory(
    world: HubWorld, caplog: pytest.LogCaptureFixture
) -> None:
    raw = RawClient(await world.raw("api"))

    async def flood() -> None:
        # An array header announcing 8 elements, then 1 MiB values: 8 MiB in all.
        await raw.stream.send_all(b"\x98")
        for _ in range(8):
            await raw.stream.send_all(pack(b"\0" * (MAX_DATA - 16)))
        await raw.drain()

    # The hub hangs up (a CLOSE, or a reset if our data is still unread).
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        await flood()
    assert "a hub protocol message is over" in caplog.text


async def test_a_client_that_does_not_read_its_answers_stops_being_read(
    world: HubWorld,
) -> None:
    assert world.hub is not None
    async with world.connect("api") as api:
        session = await api.join("orders", create=True)
        await session.set("big", b"v" * 500_000)
        raw = RawClient(await world.raw("db"))
        pairs = pack(Op.JOIN, 1, "orders", False) + pack(Op.LEAVE, 2, "orders")
        with trio.move_on_after(2):
            for _ in range(200):  # each JOIN answer carries the 500 kB variable
                await raw.stream.send_all(pairs)
        queued = max(c.reply_bytes for c in world.hub._connections)
        assert queued < 4 << 20  # the 1 MiB limit, plus the answer that crossed it
        await raw.stream.aclose()


async def test_a_handshake_under_way_during_a_reload_meets_the_new_trust(
    world: HubWorld,
) -> None:
    assert world.hub is not None
    release = trio.Event()
    held: list[bytes] = []

    class HoldThirdMessage(Wrapped):
        """A TCP stream that holds the client's last handshake message until told."""

        sends = 0

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            self.sends += 1
            if self.sends == 2:
                held.append(bytes(data))
                await release.wait()
            await self.inner.send_all(data)

    tcp = await trio.open_tcp_stream("127.0.0.1", world.port)
    stream = SecureStream(
        HoldThirdMessage(tcp),
        identity=world.identities["api"],
        trust=world.client_trust,
        expect="hub",
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.do_handshake)
        with trio.fail_after(5):
            while not held:
                await trio.sleep(0.01)
        # A new trust store, as the CLI's reload builds: the handshake under
        # way still holds the old one.
        trust = TrustStore()
        for peer in world.trust:
            trust.add_peer(peer.name or "", peer.public_key, peer.groups)
        trust.revoke_key(world.identities["api"].public_key)
        world.hub.reload(trust=trust)
        release.set()
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="revoked"):
        await stream.receive_some()
    assert world.hub.sessions() == {}
    await stream.aclose()


async def test_a_reload_that_changes_a_peers_groups_makes_it_reconnect(world: HubWorld) -> None:
    assert world.hub is not None
    async with world.connect("db") as db:
        session = await db.join("orders", create=True)
        trust = TrustStore()
        for peer in world.trust:
            groups = {"auditors"} if peer.name == "db" else peer.groups
            trust.add_peer(peer.name or "", peer.public_key, groups)
        world.hub.reload(trust=trust)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="groups changed"):
            await session.receive()
    async with world.connect("db") as db:
        assert db.me is not None
        assert db.me.groups == {"auditors"}


async def test_a_handshake_held_across_a_reload_is_admitted_with_the_new_groups(
    nursery: trio.Nursery,
) -> None:
    # The attacker, pinned as api in "services", holds its last XX message
    # while the operator re-pins it as an auditor and reloads; it must not
    # then join with the rights of its old group.
    world = HubWorld()
    hub = await world.start(nursery)
    async with world.connect("db") as db:
        await db.join("orders", create=True)
        tcp = await trio.open_tcp_stream("127.0.0.1", world.port)
        # The negotiation frame and message 1 (32 bytes) go; message 3 waits.
        message_3 = 2 + len(b"Noise_XX_25519_AESGCM_SHA256") + 2 + 32
        stream = SecureStream(
            FaultyStream(tcp, send=[Delay(message_3, 0.5)]),
            identity=world.identities["api"],
            trust=world.client_trust,
            expect="hub",
        )
        with trio.fail_after(10):
            async with trio.open_nursery() as handshaking:
                handshaking.start_soon(stream.do_handshake)
                await trio.sleep(0.2)
                repinned = TrustStore()
                for name, identity in world.identities.items():
                    groups = ("auditors",) if name == "api" else PEERS[name]
                    repinned.add_peer(name, identity.public_key, groups)
                hub.reload(trust=repinned)
            async with HubConnection.over(stream) as api:
                assert api.me is not None
                assert api.me.groups == {"auditors"}
                orders = await api.join("orders")
                with pytest.raises(AccessDenied):
                    await orders.send(b"as a service")


def _nested_arrays(depth: int) -> bytes:
    """An 8-ary tree of empty MessagePack arrays: 1 byte per array on the wire."""
    return b"\x98" + _nested_arrays(depth - 1) * 8 if depth else b"\x90"


async def test_nested_arrays_in_a_request_are_refused_before_the_request_ends(
    world: HubWorld,
) -> None:
    # ~300 KB that would decode to ~300,000 lists; its first 4 KiB, a
    # request far from complete, which a hub that waits for the end of a
    # request before looking at it would keep as it grows.
    attack = pack(Op.SEND, 1, "orders", None)[:-1] + _nested_arrays(6)
    raw = await world.raw("api")
    await raw.send_all(attack[:4096])
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as raised:
        await RawClient(raw).drain()
    assert isinstance(raised.value.__cause__, PeerAborted)
    assert raised.value.__cause__.code == CloseCode.PROTOCOL_VIOLATION
    assert "nested arrays" in raised.value.__cause__.reason


def test_the_request_reader_holds_no_more_than_a_few_arrays_of_a_nested_request() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolViolation, match="nested arrays"):
            list(MessageReader().feed(b"\x92\x04" + _nested_arrays(6)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


async def _silent_hub(nursery: trio.Nursery, world: HubWorld, *, welcome: bool) -> int:
    """A server with the hub's key that reads requests and answers none of
    them (but HELLO, if ``welcome``): a stalled or malicious hub."""

    async def handler(stream: SecureStream) -> None:
        reader = MessageReader()
        while data := await stream.receive_some():
            for message in reader.feed(data):
                if welcome and message[0] == Op.HELLO:
                    me = stream.peer
                    fields = [me.name, me.public_key, sorted(me.groups)]
                    await stream.send_all(pack(Op.WELCOME, VERSION, fields))

    listeners: list[SecureListener] = await nursery.start(
        partial(
            serve_secure,
            handler,
            0,
            host="127.0.0.1",
            identity=world.hub_identity,
            trust=world.trust,
        )
    )
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port: int = transport.socket.getsockname()[1]
    return port


async def test_a_hub_that_never_welcomes_cannot_hang_the_client(nursery: trio.Nursery) -> None:
    world = HubWorld()
    port = await _silent_hub(nursery, world, welcome=False)
    started = trio.current_time()
    with trio.fail_after(10), pytest.raises(HubTimeout, match=r"no WELCOME within 0\.3 s"):
        async with world.connect("api", port=port, request_timeout=0.3):
            pass
    assert trio.current_time() - started < 5


async def test_a_hub_that_stops_answering_times_out_each_request(nursery: trio.Nursery) -> None:
    world = HubWorld()
    port = await _silent_hub(nursery, world, welcome=True)
    with trio.fail_after(10):
        async with world.connect("api", port=port, request_timeout=0.3) as hub:
            assert hub.me is not None
            assert hub.me.name == "api"
            with pytest.raises(HubTimeout, match=r"did not answer JOIN within 0\.3 s"):
                await hub.join("orders", create=True)
            # The connection stays usable; the abandoned join's LEAVE is
            # unanswered too, and a new join of that session says so.
            with pytest.raises(HubTimeout, match=r"did not answer the LEAVE of session 'orders'"):
                await hub.join("orders", create=True)
            with pytest.raises(HubTimeout, match=r"did not answer JOIN"):
                await hub.join("lobby", create=True)


async def test_a_hub_announcing_members_no_commit_brought_in_gets_the_session_left() -> None:
    # A malicious hub describes joining members with 60 KB of groups each.
    # Once members are in epochs, a member is only one a commit named, with
    # the static key the roster has: the first such JOINED ends the session,
    # before anything of it reaches the application or fills a backlog.
    groups = [f"g{n:03}" + "x" * 196 for n in range(300)]

    async def flood(stream: SecureStream) -> None:
        for n in range(10):
            member = [10 + n, f"m{n}", bytes(32), groups]
            await stream.send_all(pack(Op.JOINED, "orders", fake.seq + 1 + n, member))

    fake = FakeHub(HubWorld(), after_epoch=flood)

    events: list[Event] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake.run)
            async with HubConnection.over(fake.client, max_backlog=64 * 1024) as hub:
                session = await hub.join("orders")
                await trio.sleep(0.5)  # the flood arrives while nobody reads
                ended: SessionClosed | None = None
                try:
                    async for event in session:
                        events.append(event)
                except SessionClosed as exc:
                    ended = exc
            nursery.cancel_scope.cancel()
    assert isinstance(ended, SessionTampered)
    assert isinstance(ended.__cause__, ForgedContent)
    assert "no commit brought it in" in str(ended)
    assert events == []


async def test_connect_hub_insists_on_knowing_which_peer_is_the_hub(
    nursery: trio.Nursery,
) -> None:
    # The client trusts db too (a fellow service, pinned to vouch for it in
    # sessions); db listens and poses as the hub. Without expect=, the
    # client used to take it for the hub.
    world = HubWorld()
    impostor: list[SecureListener] = await nursery.start(
        partial(
            serve_secure,
            lambda stream: trio.sleep_forever(),
            0,
            host="127.0.0.1",
            identity=world.identities["db"],
            trust=world.trust,
        )
    )
    transport = impostor[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port = transport.socket.getsockname()[1]
    api, trust = world.identities["api"], world.client_trust
    with pytest.raises(TypeError, match="expect"):
        connect_hub("127.0.0.1", port, identity=api, trust=trust)
    with pytest.raises(ValueError, match="needs expect"):
        async with connect_hub("127.0.0.1", port, identity=api, trust=trust, expect=None):
            pass
    with trio.fail_after(10), pytest.raises(PeerNotTrusted, match="not the expected"):
        async with connect_hub("127.0.0.1", port, identity=api, trust=trust, expect="hub"):
            pass


async def test_a_peer_is_disconnected_when_its_certificate_expires(nursery: trio.Nursery) -> None:
    # Validity is checked at the handshake; a connection must not outlive it.
    world = HubWorld()
    ca = Ed25519PrivateKey.generate()
    world.trust.add_ca("ops", ca.public_key().public_bytes_raw())
    temp = Identity.generate("temp")
    now = int(time.time())
    temp = temp.with_certificate(
        sign_certificate(
            ca,
            subject_key=temp.public_key,
            name="temp",
            groups=["services"],
            serial=1,
            not_before=now - 60,
            not_after=now + 3,
        )
    )
    await world.start(nursery)
    with trio.fail_after(20):
        async with connect_hub(
            "127.0.0.1", world.port, identity=temp, trust=world.client_trust, expect="hub"
        ) as hub:
            session = await hub.join("orders", create=True)
            with pytest.raises((SessionClosed, trio.BrokenResourceError)) as ended:
                await session.receive()
    assert time.time() >= now + 4
    assert "certificate expired" in str(ended.value) + str(ended.value.__cause__)
