"""A recorded IK message 1, replayed, holds a bounded number of connections.

In ``IK`` the responder admits the initiator on message 1, which anyone who
recorded it can send again: each copy finishes the server's side of the
handshake in the real client's name. Such a connection never proves it is
live (its first record cannot be forged), so ``serve_secure`` counts it
against the peer's ``max_connections_per_peer`` and displaces it first.
These tests replay one captured message over real TCP, from the attacker's
side, and check the bound and that the real client is never locked out.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from securesess import PeerAborted, SecureStream
from tests.streams import Identities, serve_on_loopback

HOST = "127.0.0.1"
IK = "Noise_IK_25519_ChaChaPoly_SHA256"
XX = "Noise_XX_25519_ChaChaPoly_SHA256"
LIMIT = 8


async def _record_message_1(ids: Identities) -> bytes:
    """What an IK client sends first (its protocol name and message 1)."""
    client_end, wire = trio.testing.memory_stream_pair()
    client = SecureStream(
        client_end, identity=ids.client, trust=ids.client_trust, expect="server", protocol=IK
    )
    captured = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        # The client then waits for message 2, which never comes.
        while len(captured) < 2 + len(IK) + 2 + 96:
            captured += await wire.receive_some()
        nursery.cancel_scope.cancel()
    return bytes(captured)


class _Server:
    """An echo server that counts the handlers running for the client."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started = 0

    async def handle(self, stream: SecureStream) -> None:
        self.started += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        finally:
            self.running -= 1


async def _connect(
    ids: Identities, port: int, *, source: str = HOST, protocol: str = IK
) -> SecureStream:
    """The real client, from ``source`` (another loopback address: another host)."""
    transport = await trio.open_tcp_stream(HOST, port, local_address=source)
    stream = SecureStream(
        transport, identity=ids.client, trust=ids.client_trust, expect="server", protocol=protocol
    )
    await stream.do_handshake()
    return stream


async def _replay(port: int, message: bytes, count: int) -> list[trio.SocketStream]:
    replays = []
    for _ in range(count):
        stream = await trio.open_tcp_stream(HOST, port)
        await stream.send_all(message)
        replays.append(stream)
    return replays


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    """Whether the server has ended this connection (read to its end)."""
    with trio.move_on_after(5):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def _echo(stream: SecureStream) -> None:
    await stream.send_all(b"ping")
    assert await stream.receive_some() == b"ping"


async def test_a_replayed_ik_message_holds_at_most_the_peer_limit(nursery: trio.Nursery) -> None:
    ids = Identities()
    message = await _record_message_1(ids)
    server = _Server()
    port = await serve_on_loopback(
        nursery, server.handle, ids, max_connections_per_peer=LIMIT, handshake_rate=None
    )
    with trio.fail_after(30):
        replays = await _replay(port, message, 5 * LIMIT)
        # Each copy passes for the client, but only LIMIT are kept: those
        # beyond it, from the same source, are refused.
        assert all([await _closed_by_server(stream) for stream in replays[LIMIT:]])
        assert server.started == server.running == LIMIT
        # The real client, from its own address, still gets in, and stays:
        # its new connections displace the replays, never each other.
        live = []
        for _ in range(LIMIT):
            live.append(await _connect(ids, port, source="127.0.0.2"))
            await _echo(live[-1])  # live now: no replay can take its place
        assert all([await _closed_by_server(stream) for stream in replays[:LIMIT]])
        assert server.running == LIMIT
        for replay in replays:
            await replay.aclose()
        for stream in live:
            await stream.aclose()


async def test_replays_never_displace_a_real_connection_that_has_not_spoken_yet(
    nursery: trio.Nursery,
) -> None:
    # A real IK connection is unconfirmed until its client's first record;
    # replays from elsewhere, at the limit, must not take its place.
    ids = Identities()
    message = await _record_message_1(ids)
    server = _Server()
    port = await serve_on_loopback(
        nursery, server.handle, ids, max_connections_per_peer=4, handshake_rate=None
    )
    with trio.fail_after(30):
        quiet = await _connect(ids, port, source="127.0.0.2")
        replays = await _replay(port, message, 8)
        await trio.sleep(0.2)
        await _echo(quiet)  # still there, and served
        # An XX client proves it is live at once; it displaces a replay.
        async with await _connect(ids, port, protocol=XX) as fresh:
            await _echo(fresh)
        for replay in replays:
            await replay.aclose()
        await quiet.aclose()


async def test_a_peer_at_its_limit_of_live_connections_is_refused_with_a_reason(
    nursery: trio.Nursery,
) -> None:
    ids = Identities()
    server = _Server()
    port = await serve_on_loopback(nursery, server.handle, ids, max_connections_per_peer=2)
    with trio.fail_after(10):
        live = [await _connect(ids, port) for _ in range(2)]
        for stream in live:
            await stream.send_all(b"ping")
            assert await stream.receive_some() == b"ping"
        extra = await _connect(ids, port)
        with pytest.raises(trio.BrokenResourceError) as refused:
            await extra.receive_some()
        cause = refused.value.__cause__
        assert isinstance(cause, PeerAborted)
        assert cause.code == 6
        assert "already has 2 connections" in cause.reason
        await extra.aclose()
        # The two it has are served still; one gone makes room again.
        await live[0].aclose()
        while server.running > 1:
            await trio.sleep(0.01)
        async with await _connect(ids, port) as again:
            await again.send_all(b"ping")
            assert await again.receive_some() == b"ping"
        await live[1].aclose()


async def test_confirmed_says_whether_the_peer_proved_it_is_live() -> None:
    ids = Identities()
    client_end, server_end = trio.testing.memory_stream_pair()
    client = SecureStream(
        client_end, identity=ids.client, trust=ids.client_trust, expect="server", protocol=IK
    )
    server = SecureStream(server_end, identity=ids.server, trust=ids.server_trust, server_side=True)
    states = [(client.confirmed, server.confirmed)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    # The client read the server's ACCEPT; message 1 could be a replay.
    states.append((client.confirmed, server.confirmed))
    await client.send_all(b"x")
    assert await server.receive_some() == b"x"
    states.append((client.confirmed, server.confirmed))
    assert states == [(False, False), (True, False), (True, True)]
