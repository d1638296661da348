"""The fault-injection kit itself: each fault does exactly what it says, however bytes arrive."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from securesess.testing import (
    Cut,
    Delay,
    Drop,
    Duplicate,
    Fault,
    FaultyStream,
    FlipBits,
    Reorder,
    Stall,
    Truncate,
    random_flips,
)


def reference(data: bytes, faults: list[Fault], on: str) -> tuple[bytes, str]:
    """What the far side should receive, computed on the whole stream at once.

    A memory stream cannot be reset: a cut on the sending side shows as an
    end of stream there (over TCP it is a reset; see the test below).
    """
    out = bytearray(data)
    for fault in faults:
        if isinstance(fault, FlipBits):
            for offset in fault.offsets:
                if offset < len(out):
                    out[offset] ^= fault.mask
    stops = [f for f in faults if isinstance(f, Truncate | Cut | Stall) and f.at <= len(data)]
    stop = min(stops, key=lambda f: f.at, default=None)
    end = len(data) if stop is None else stop.at
    ranges = sorted(
        (f for f in faults if isinstance(f, Drop | Duplicate | Reorder)), key=lambda f: f.at
    )
    pieces = []
    position = 0
    for fault in ranges:
        if fault.at >= end:
            break
        pieces.append(out[position : fault.at])
        size = 2 * fault.length if isinstance(fault, Reorder) else fault.length
        piece = out[fault.at : min(fault.at + size, end)]
        if isinstance(fault, Duplicate):
            pieces.append(piece + piece)
        elif isinstance(fault, Reorder) and len(piece) == size:
            pieces.append(piece[fault.length :] + piece[: fault.length])
        elif isinstance(fault, Reorder):
            pieces.append(piece)
        position = min(fault.at + size, end)
    pieces.append(out[position:end])
    how = "eof" if stop is None or isinstance(stop, Truncate) else type(stop).__name__.lower()
    if how == "cut" and on == "send":
        how = "eof"
    return b"".join(pieces), how


async def deliver(
    data: bytes, faults: list[Fault], chunks: list[int], *, on: str = "send"
) -> tuple[bytes, str]:
    """Send ``data`` in ``chunks`` through a FaultyStream; what arrives, and how it ends."""
    left, right = trio.testing.memory_stream_pair()
    sender: trio.abc.HalfCloseableStream = left
    receiver: trio.abc.HalfCloseableStream = right
    if on == "send":
        sender = FaultyStream(left, send=faults)
    else:
        receiver = FaultyStream(right, receive=faults)
    got = bytearray()
    how = "eof"

    async def send() -> None:
        position = 0
        try:
            for size in [*chunks, len(data)]:
                if position >= len(data):
                    break
                await sender.send_all(data[position : position + size])
                position += size
            await sender.send_eof()
        except trio.BrokenResourceError:
            pass

    async def receive() -> None:
        nonlocal how
        try:
            while chunk := await receiver.receive_some(7):
                got.extend(chunk)
        except trio.BrokenResourceError:
            how = "cut"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.move_on_after(60) as stalled:
            await receive()
        if stalled.cancelled_caught:
            how = "stall"
        nursery.cancel_scope.cancel()
    return bytes(got), how


def faults_strategy(size: int) -> st.SearchStrategy[list[Fault]]:
    offset = st.integers(0, size + 2)
    point = st.one_of(
        st.builds(FlipBits, offset, st.integers(1, 255)),
        st.builds(Delay, offset, st.floats(0, 1)),
    )
    ranged = st.one_of(
        st.builds(Drop, offset, st.integers(1, 9)),
        st.builds(Duplicate, offset, st.integers(1, 9)),
        st.builds(Reorder, offset, st.integers(1, 9)),
    )
    stop = st.one_of(st.builds(Truncate, offset), st.builds(Cut, offset), st.builds(Stall, offset))

    def no_overlap(faults: list[Drop | Duplicate | Reorder]) -> bool:
        spans = sorted(
            (f.at, f.at + (2 * f.length if isinstance(f, Reorder) else f.length)) for f in faults
        )
        return all(a[1] <= b[0] for a, b in itertools.pairwise(spans))

    return st.builds(
        lambda p, r, s: [*p, *r, *s],
        st.lists(point, max_size=4),
        st.lists(ranged, max_size=3).filter(no_overlap),
        st.lists(stop, max_size=1),
    )


@given(
    data=st.binary(min_size=0, max_size=80),
    faults=faults_strategy(80),
    chunks=st.lists(st.integers(1, 30), max_size=10),
    on=st.sampled_from(["send", "receive"]),
)
def test_faults_do_the_same_however_the_bytes_are_chunked(
    data: bytes, faults: list[Fault], chunks: list[int], on: str
) -> None:
    expected = reference(data, faults, on)
    got = trio.run(
        partial(deliver, data, faults, chunks, on=on),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert got == expected


async def test_a_cut_on_tcp_is_a_reset_for_the_peer_and_fails_later_sends() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    client = FaultyStream(await trio.open_tcp_stream("127.0.0.1", port), send=[Cut(5)])
    server = await listener.accept()
    with pytest.raises(trio.BrokenResourceError, match="cut"):
        await client.send_all(b"0123456789")
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"more")
    assert await server.receive_some() == b"01234"
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()
    await server.aclose()
    await listener.aclose()


async def test_delays_pause_delivery_by_the_time_given(
    autojump_clock: trio.testing.MockClock,
) -> None:
    data, how = b"", ""
    start = trio.current_time()
    data, how = await deliver(b"abcdef", [Delay(3, 2.5), Delay(3, 0.5)], [6])
    assert (data, how) == (b"abcdef", "eof")
    assert trio.current_time() - start == pytest.approx(3.0)


async def test_the_stream_records_what_passed_before_damage() -> None:
    left, right = trio.testing.memory_stream_pair()
    faulty = FaultyStream(left, send=[FlipBits(0)], receive=[Drop(0)])
    await faulty.send_all(b"abc")
    assert await right.receive_some() == b"`bc"
    await right.send_all(b"xyz")
    assert await faulty.receive_some() == b"yz"
    assert (bytes(faulty.sent), bytes(faulty.received)) == (b"abc", b"xyz")


def test_random_flips_are_repeatable_and_in_range() -> None:
    first = random_flips(10, start=5, end=100, seed="run-1")
    assert first == random_flips(10, start=5, end=100, seed="run-1")
    assert first != random_flips(10, start=5, end=100, seed="run-2")
    assert len(set(first.offsets)) == 10
    assert all(5 <= offset < 100 for offset in first.offsets)


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ([Drop(0, 4), Duplicate(3)], "must not overlap"),
        ([Drop(-1)], "offsets start at 0"),
        ([Reorder(4, 0)], "length must be at least 1"),
        ([Delay(1, -1)], "seconds"),
    ],
)
def test_impossible_faults_are_refused(faults: list[Fault], message: str) -> None:
    left, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match=message):
        FaultyStream(left, send=faults)
    with pytest.raises(ValueError, match="mask"):
        FlipBits(3, 0)
