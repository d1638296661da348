"""SecureStream over real sockets: TCP through serve_secure/open_secure_stream,
Unix sockets, and wrapping stdlib sockets that already exist."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from handshake import HandshakeState, ProtocolNameError
from keystore import TrustStore
from securesess import (
    HandshakeFailed,
    NegotiationFailed,
    PeerRejected,
    SecureListener,
    SecureStream,
    open_secure_stream,
    wrap_socket,
)
from securesess.stream.frames import frame
from tests.streams import Identities, handshake_both, serve_on_loopback

Handler = Callable[[SecureStream], Awaitable[object]]


async def _echo(stream: SecureStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


async def test_tcp_echo_through_serve_secure(nursery: trio.Nursery) -> None:
    ids = Identities()
    seen: list[str | None] = []

    async def handler(stream: SecureStream) -> None:
        seen.append(stream.peer.name)
        await _echo(stream)

    port = await serve_on_loopback(nursery, handler, ids)
    with trio.fail_after(10):
        stream = await open_secure_stream(
            "127.0.0.1",
            port,
            identity=ids.client,
            trust=ids.client_trust,
            expect="server",
        )
        payload = bytes(range(256)) * 1000
        async with stream:
            await stream.send_all(payload)
            await stream.send_eof()
            received = bytearray()
            while data := await stream.receive_some():
                received += data
    assert received == payload
    assert seen == ["client"]
    assert stream.peer.name == "server"


async def test_an_untrusted_client_never_reaches_the_handler(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    ids = Identities()
    called = []

    async def handler(stream: SecureStream) -> None:
        called.append(stream)

    port = await serve_on_loopback(nursery, handler, ids)
    with caplog.at_level(logging.INFO, logger="securesess"), trio.fail_after(10):
        with pytest.raises(PeerRejected, match="is not pinned") as raised:
            await open_secure_stream(
                "127.0.0.1", port, identity=ids.stranger, trust=ids.client_trust, expect="server"
            )
        await trio.sleep(0.1)  # let the server log the refusal
    assert raised.value.code == 1
    assert called == []
    assert any(ids.stranger.fingerprint in message for message in caplog.messages)


async def test_a_stalled_client_does_not_block_others(nursery: trio.Nursery) -> None:
    ids = Identities()
    port = await serve_on_loopback(nursery, _echo, ids)
    with trio.fail_after(10):
        stalled = await trio.open_tcp_stream("127.0.0.1", port)
        await stalled.send_all(b"\x00")  # half a length field, then nothing
        stream = await open_secure_stream(
            "127.0.0.1", port, identity=ids.client, trust=ids.client_trust, expect="server"
        )
        await stream.send_all(b"still served")
        assert await stream.receive_some() == b"still served"
        await stream.aclose()
        await stalled.aclose()


async def test_busy_servers_say_so(nursery: trio.Nursery) -> None:
    ids = Identities()
    port = await serve_on_loopback(nursery, _echo, ids, max_concurrent_handshakes=1)
    with trio.fail_after(10):
        stalled = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(0.2)  # the stalled client now holds the only slot
        with pytest.raises(NegotiationFailed, match="too busy") as raised:
            await open_secure_stream(
                "127.0.0.1", port, identity=ids.client, trust=ids.client_trust, expect="server"
            )
        assert raised.value.busy
        await stalled.aclose()


async def test_garbage_does_not_disturb_the_server(nursery: trio.Nursery) -> None:
    ids = Identities()
    port = await serve_on_loopback(nursery, _echo, ids)
    with trio.fail_after(10):
        garbage = await trio.open_tcp_stream("127.0.0.1", port)
        await garbage.send_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        assert await garbage.receive_some() == b""  # the server hangs up
        stream = await open_secure_stream(
            "127.0.0.1", port, identity=ids.client, trust=ids.client_trust, expect="server"
        )
        await stream.send_all(b"ok")
        assert await stream.receive_some() == b"ok"
        await stream.aclose()


async def test_wrap_socket_on_a_unix_socketpair() -> None:
    ids = Identities()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = wrap_socket(left, identity=ids.client, trust=ids.client_trust, expect="server")
    server = wrap_socket(right, identity=ids.server, trust=ids.server_trust, server_side=True)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(b"over AF_UNIX")
        assert await server.receive_some() == b"over AF_UNIX"
        await server.aclose()
        assert await client.receive_some() == b""
        await client.aclose()
    assert left.fileno() == -1, "the SecureStream owns and closes the socket"


async def test_wrap_socket_on_connected_tcp_sockets() -> None:
    ids = Identities()
    listener = socket.create_server(("127.0.0.1", 0))
    client_sock = socket.create_connection(listener.getsockname())
    server_sock, _ = listener.accept()
    listener.close()
    client = wrap_socket(client_sock, identity=ids.client, trust=ids.client_trust, expect="server")
    server = wrap_socket(server_sock, identity=ids.server, trust=ids.server_trust, server_side=True)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await server.send_all(b"existing socket, now encrypted")
        assert await client.receive_some() == b"existing socket, now encrypted"
        await client.aclose()
        await server.aclose()


async def test_wrap_socket_takes_an_access_check() -> None:
    ids = Identities()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = wrap_socket(left, identity=ids.client, trust=ids.client_trust, expect="server")
    server = wrap_socket(
        right,
        identity=ids.server,
        trust=ids.server_trust,
        server_side=True,
        authorize=lambda peer: f"{peer.name} is off duty",
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(_refused, server.do_handshake))
            with pytest.raises(PeerRejected, match="is off duty") as refused:
                await client.do_handshake()
    assert refused.value.code == 3
    await client.aclose()
    await server.aclose()


async def _refused(handshake: Callable[[], Awaitable[None]]) -> None:
    with pytest.raises(HandshakeFailed, match="off duty"):
        await handshake()


async def test_wrap_socket_refuses_datagram_sockets() -> None:
    ids = Identities()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        pytest.raises(ValueError, match="stream socket"),
    ):
        wrap_socket(udp, identity=ids.client, trust=TrustStore())


async def test_any_trio_stream_over_a_unix_listener(nursery: trio.Nursery, tmp_path: Path) -> None:
    ids = Identities()
    path = str(tmp_path / "secure.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen()
    listener = SecureListener(
        trio.SocketListener(sock), identity=ids.server, trust=ids.server_trust
    )

    async def serve_one() -> None:
        stream = await listener.accept()
        await _echo(stream)
        await stream.aclose()

    nursery.start_soon(serve_one)
    with trio.fail_after(10):
        transport = await trio.open_unix_socket(path)
        client = SecureStream(
            transport, identity=ids.client, trust=ids.client_trust, expect="server"
        )
        await client.send_all(b"unix")
        assert await client.receive_some() == b"unix"
        await client.aclose()
    await listener.aclose()


@pytest.mark.parametrize(
    "protocol", ["Noise_XXpsk3_25519_AESGCM_SHA256", "Noise_IKpsk1_25519_ChaChaPoly_BLAKE2s"]
)
async def test_a_trusted_key_without_the_psk_never_reaches_the_handler(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    # The attacker holds a key the server trusts, but not the network key.
    ids = Identities()
    started: list[SecureStream] = []

    async def handler(stream: SecureStream) -> None:
        started.append(stream)

    port = await serve_on_loopback(nursery, handler, ids, psk=os.urandom(32))
    with caplog.at_level(logging.INFO, logger="securesess"), trio.fail_after(10):
        with pytest.raises(HandshakeFailed, match="another network key"):
            await open_secure_stream(
                "127.0.0.1",
                port,
                identity=ids.client,
                trust=ids.client_trust,
                expect="server",
                protocol=protocol,
                psk=os.urandom(32),
            )
        while not any("failed" in message for message in caplog.messages):
            await trio.sleep(0.01)
    assert started == []


async def test_ikpsk2_is_refused_by_name_for_it_admits_before_the_psk(
    nursery: trio.Nursery,
) -> None:
    ids = Identities()
    late = "Noise_IKpsk2_25519_AESGCM_SHA256"
    with pytest.raises(ProtocolNameError, match="after the initiator is admitted"):
        SecureStream(
            trio.testing.memory_stream_pair()[1],
            server_side=True,
            identity=ids.server,
            trust=ids.server_trust,
            protocol=late,
            psk=bytes(32),
        )
    # A client of another implementation that offers it anyway is told what
    # the server speaks instead, before any cryptography on the server.
    port = await serve_on_loopback(nursery, _echo, ids, psk=bytes(32))
    state = HandshakeState(
        late,
        initiator=True,
        prologue=b"securesess/1\n" + late.encode(),
        s=ids.client.private_bytes(),
        rs=ids.server.public_key,
        psks=[bytes(32)],
    )
    with trio.fail_after(10):
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        async with raw:
            await raw.send_all(frame(late.encode()) + frame(state.write_message()))
            answer = b""
            while chunk := await raw.receive_some():
                answer += chunk
    assert answer.startswith(b"\0\0")  # "not allowed", then the allowed names
    assert b"IKpsk1" in answer
    assert b"IKpsk2" not in answer
