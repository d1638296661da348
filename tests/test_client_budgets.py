"""The hub client bounds what a hub can make it hold, and how long it waits.

A hub is trusted with the sessions' data, not with the client's memory: a
malicious or broken one could describe members and variables without end,
or send answers of nested arrays that decode to many times their size.
Each test plays such a hub over a real SecureStream, from its side.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import msgpack.fallback
import pytest
import trio
import trio.testing

from securesess import SecureStream
from securesess.errors import (
    HubTimeout,
    LimitExceeded,
    ProtocolViolation,
    SessionClosed,
    SessionTampered,
)
from securesess.sessions.client import HubConnection
from securesess.sessions.wire import MAX_ANSWER, MAX_ANSWER_ARRAYS, MessageReader, Op, pack
from tests.hubs import FakeHub, HubWorld
from tests.streams import Wrapped

Scenario = Callable[[SecureStream, list[Any]], Awaitable[None]]


async def _play_hub(
    world: HubWorld,
    on_join: Scenario | None = None,
    *,
    fake: FakeHub | None = None,
    **options: Any,
) -> list[object]:
    """Run a client that joins "orders" against a hub that answers the join
    by ``on_join(stream, join_request)``, or against ``fake``; what the
    client saw."""
    fake = fake if fake is not None else FakeHub(world, on_join)
    seen: list[object] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake.run)
            try:
                async with HubConnection.over(fake.client, **options) as connection:
                    session = await connection.join("orders")
                    async for event in session:
                        seen.append(event)
            except (SessionClosed, LimitExceeded, trio.BrokenResourceError) as exc:
                seen.append(exc)
            nursery.cancel_scope.cancel()
    return seen


async def test_a_hub_describing_members_without_end_gets_the_session_left() -> None:
    # Members no commit brought in: the first one ends the session.
    world = HubWorld()

    async def members_without_end(stream: SecureStream) -> None:
        for n in range(5000):  # each read at once: the backlog stays empty
            member = [10 + n, f"member-{n}", bytes(32), ["g" * 100]]
            await stream.send_all(pack(Op.JOINED, "orders", fake.seq + 1 + n, member))
        await trio.sleep_forever()

    fake = FakeHub(world, after_epoch=members_without_end)
    seen = await _play_hub(world, fake=fake, max_session_state=256 * 1024)
    [ended] = seen
    assert isinstance(ended, SessionTampered)
    assert "no commit brought it in" in str(ended)


async def test_a_hub_setting_variables_without_end_gets_the_session_left() -> None:
    # The hub in league with a member (db), which seals each value: what
    # the hub alone sends does not even open.
    world = HubWorld()

    async def variables_without_end(stream: SecureStream) -> None:
        for n in range(5000):
            key = f"key-{n}"
            value = fake.seal(b"v" * 1000, key=key)
            await stream.send_all(pack(Op.VARIABLE, "orders", fake.seq + 1 + n, key, value, 1, 2))
        await trio.sleep_forever()

    fake = FakeHub(world, after_epoch=variables_without_end, accomplice=True)
    seen = await _play_hub(world, fake=fake, max_session_state=256 * 1024)
    assert isinstance(seen[-1], SessionClosed)
    assert len(seen) < 300


async def test_a_join_answer_bigger_than_the_client_keeps_is_refused() -> None:
    world = HubWorld()
    key = world.identities["api"].public_key

    async def huge_answer(stream: SecureStream, request: list[Any]) -> None:
        members = [[1, "api", key, ["services"]]] + [
            [2 + n, f"m{n}", bytes(32), ["g" * 200]] for n in range(2000)
        ]
        answer = [1, 1, members, [], ["join", "receive"]]
        await stream.send_all(pack(Op.OK, request[1], answer))
        await trio.sleep_forever()

    seen = await _play_hub(world, huge_answer, max_session_state=64 * 1024)
    assert len(seen) == 1
    assert isinstance(seen[0], LimitExceeded)
    assert "max_session_state" in str(seen[0])


def test_an_answer_of_nested_empty_arrays_is_refused_before_it_is_decoded() -> None:
    # 4 MiB of empty arrays in one answer would decode to some 256 MiB.
    count = (1 << 20) - 1  # the longest array an answer may have
    chunk = b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count
    attack = b"\x93" + bytes([Op.OK, 1]) + b"\x94" + chunk * 4
    assert len(attack) < MAX_ANSWER
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolViolation, match="more than 131072 arrays"):
            list(MessageReader(MAX_ANSWER).feed(attack))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


class _SlowLink(Wrapped):
    """A transport that sends 64 KiB every 50 ms: about 1.3 MB/s."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), 65536):
            await trio.sleep(0.05)
            await self.inner.send_all(view[start : start + 65536])


async def test_big_requests_over_a_slow_link_do_not_time_out_while_they_go_out(
    nursery: trio.Nursery,
) -> None:
    # Each 1 MiB SEND takes ~0.8 s to go out, under the 1.2 s timeout; three
    # sent at once take ~2.5 s. The answer is awaited from when a request
    # has gone out, not from when it was queued behind the others.
    world = HubWorld()
    await world.start(nursery)
    transport = await trio.open_tcp_stream("127.0.0.1", world.port)
    stream = SecureStream(
        _SlowLink(transport),
        identity=world.identities["api"],
        trust=world.client_trust,
        expect="hub",
    )
    ids: list[int] = []
    with trio.fail_after(20):
        async with HubConnection.over(stream, request_timeout=1.2) as hub:
            session = await hub.join("orders", create=True)

            async def send_one() -> None:
                ids.append((await session.send(b"x" * (1 << 20))).seq)

            async with trio.open_nursery() as senders:
                for _ in range(3):
                    senders.start_soon(send_one)
    # Consecutive: nothing else happened in the session meanwhile.
    first = min(ids)
    assert sorted(ids) == [first, first + 1, first + 2]


async def test_a_timeout_while_leaving_does_not_hide_the_error_that_ended_the_block() -> None:
    async def answer_the_join_only(stream: SecureStream, request: list[Any]) -> None:
        await stream.send_all(fake.answer(request))

    fake = FakeHub(HubWorld(), answer_the_join_only)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake.run)
            async with HubConnection.over(fake.client, request_timeout=0.3) as connection:
                with pytest.raises(KeyError, match="the body's own error"):
                    async with await connection.join("orders"):
                        raise KeyError("the body's own error")
                # Without an error in the body, the timeout is the news.
                with pytest.raises(HubTimeout):
                    async with await connection.join("orders/2"):
                        pass
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("unpacker", ["c", "pure python"])
def test_a_big_answer_under_the_array_cap_decodes_however_it_is_cut(
    unpacker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # msgpack's pure-Python unpacker decodes an unfinished message again on
    # each feed: its arrays must not be counted once per feed.
    if unpacker == "pure python":
        monkeypatch.setattr(msgpack, "Unpacker", msgpack.fallback.Unpacker)
    members = [[n, f"m{n}", bytes(32), ["g"]] for n in range(MAX_ANSWER_ARRAYS // 2 - 8)]
    message = pack(Op.OK, 1, [1, 1, members, [], ["join"]])
    for piece in (len(message), 1 << 18):  # the pure-Python one re-decodes: few feeds
        reader = MessageReader(MAX_ANSWER)
        decoded = [
            got
            for start in range(0, len(message), piece)
            for got in reader.feed(message[start : start + piece])
        ]
        assert len(decoded) == 1
        assert len(decoded[0][2][2]) == len(members)
