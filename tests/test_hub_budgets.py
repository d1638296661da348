"""The hub's memory is bounded per connection and per peer, not only per membership.

A member whose undelivered backlog exceeds ``max_backlog`` is removed from
its session; but one connection may be in ``max_memberships`` sessions, and
one peer may open many connections. These tests keep a client that never
reads in several sessions, each under ``max_backlog``, and check that the
hub lets go of it once its connection (or its peer) holds too much.
"""

from __future__ import annotations

import pytest
import trio

from securesess.constants import CloseCode
from securesess.errors import PeerAborted
from securesess.sessions.events import Message
from securesess.sessions.session import Session
from securesess.sessions.wire import Op, pack
from tests.hubs import HubWorld, RawClient

MIB = 1 << 20
SESSIONS = [f"orders/{number}" for number in range(8)]
CHUNK = b"x" * (64 * 1024)


async def _stalled_member(world: HubWorld, name: str, sessions: list[str]) -> RawClient:
    """A connection in ``sessions`` (which have a member already, to commit
    their epochs) that reads until it is in each one's epoch, then nothing more."""
    stalled = RawClient(await world.raw(name))
    for rid, session in enumerate(sessions, 1):
        await stalled.stream.send_all(pack(Op.JOIN, rid, session, False))
    epochs = 0
    while epochs < len(sessions):
        message = await stalled.next()
        assert message is not None
        if message[0] == Op.OK and type(message[2]) is list:  # a JOIN's answer
            session = sessions[message[1] - 1]
            entry = world.entry(name, session, message[2][0])
            await stalled.stream.send_all(pack(Op.ENTER, 100 + message[1], session, entry))
        elif message[0] == Op.EPOCH:
            epochs += 1
    return stalled


async def _flood(sessions: list[Session], per_session: int) -> None:
    """``per_session`` bytes into each of ``sessions``, round-robin."""
    for _ in range(per_session // len(CHUNK)):
        for session in sessions:
            await session.send(CHUNK)


async def _cut_reason(stalled: RawClient) -> str:
    """Read what the hub had queued, to the CLOSE it ended with."""
    kinds: list[int] = []

    async def read_to_the_end() -> None:
        async for message in stalled.all():
            kinds.append(message[0])

    with pytest.raises(trio.BrokenResourceError) as broken:
        await read_to_the_end()
    assert Op.MESSAGE in kinds  # what was queued before the cut still came
    assert Op.ENDED not in kinds  # removed as a connection, not per session
    cause = broken.value.__cause__
    assert isinstance(cause, PeerAborted)
    assert cause.code == CloseCode.UNAVAILABLE
    return cause.reason


async def test_a_connection_in_many_sessions_that_never_reads_is_disconnected(
    nursery: trio.Nursery,
) -> None:
    world = HubWorld()
    # Each membership stays under max_backlog: 3 MiB each, less what the
    # socket buffers take; together they are far over the connection's 6.
    hub = await world.start(nursery, max_backlog=4 * MIB, max_connection_backlog=6 * MIB)
    with trio.fail_after(30):
        async with world.connect("api") as api:
            joined = [await api.join(name, create=True) for name in SESSIONS]
            stalled = await _stalled_member(world, "cache", SESSIONS)
            await _flood(joined, 3 * MIB)
        assert not any(
            name.startswith("cache#") for names in hub.sessions().values() for name in names
        )
        reason = await _cut_reason(stalled)
    assert reason == "fell too far behind (over 6291456 bytes undelivered on this connection)"
    assert not hub._peer_backlog  # every byte counted in is counted out
    await stalled.stream.aclose()


async def _cut_reason_if_any(stalled: RawClient) -> str | None:
    with trio.move_on_after(2):
        return await _cut_reason(stalled)
    return None


async def test_a_peer_whose_connections_together_hold_too_much_is_cut(
    nursery: trio.Nursery,
) -> None:
    world = HubWorld()
    hub = await world.start(
        nursery, max_backlog=4 * MIB, max_connection_backlog=64 * MIB, max_peer_backlog=8 * MIB
    )
    with trio.fail_after(30):
        async with world.connect("api") as api:
            joined = [await api.join(name, create=True) for name in SESSIONS]
            first = await _stalled_member(world, "cache", SESSIONS[:4])
            second = await _stalled_member(world, "cache", SESSIONS[4:])
            await _flood(joined, 3 * MIB)
        reasons = {await _cut_reason_if_any(first), await _cut_reason_if_any(second)}
    # Neither connection went over its own budget: the peer's total did.
    assert reasons - {None} == {"fell too far behind (over 8388608 bytes undelivered to this peer)"}
    assert sum(hub._peer_backlog.values()) <= 8 * MIB
    for stalled in (first, second):
        await stalled.stream.aclose()


async def test_over_the_peer_budget_the_connection_holding_the_most_goes_not_the_live_one(
    nursery: trio.Nursery,
) -> None:
    # Two stalled connections of cache hold most of its budget; a live one of
    # cache, reading all it gets, takes it over: the heaviest stalled one
    # must go, not the live one on its every event.
    world = HubWorld()
    hub = await world.start(
        nursery, max_backlog=16 * MIB, max_connection_backlog=64 * MIB, max_peer_backlog=12 * MIB
    )
    cache_key = world.identities["cache"].public_key
    with trio.fail_after(30):
        async with world.connect("api") as api, world.connect("cache") as cache:
            sessions = {
                name: await api.join(name, create=True) for name in ("orders/a", "orders/b")
            }
            stalled = [
                await _stalled_member(world, "cache", ["orders/a"]),
                await _stalled_member(world, "cache", ["orders/b"]),
            ]
            for _ in range(5 * MIB // len(CHUNK)):
                for session in sessions.values():
                    await session.send(CHUNK)
            await trio.sleep(0.2)  # what the sockets take, they have taken
            # Top the stalled ones up to just under the peer's budget.
            while hub._peer_backlog[cache_key] + 2 * len(CHUNK) < 12 * MIB:
                await sessions["orders/a"].send(CHUNK)
            assert hub._peer_backlog[cache_key] < 12 * MIB
            live = await cache.join("orders/c", create=True)
            feed = await api.join("orders/c")
            # One message to the live connection takes the peer over.
            await feed.send(b"y" * MIB)
            with trio.fail_after(5):
                async for event in live:
                    if isinstance(event, Message):
                        assert event.data == b"y" * MIB
                        break
            await feed.send(b"still here")
            async for event in live:
                if isinstance(event, Message):
                    assert event.data == b"still here"  # the live connection was never cut
                    break
        reasons = {await _cut_reason_if_any(each) for each in stalled}
    assert "fell too far behind (over 12582912 bytes undelivered to this peer)" in reasons
    for each in stalled:
        await each.stream.aclose()
