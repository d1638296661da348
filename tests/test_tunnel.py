"""The tunnel over loopback TCP: carrying, half-close, backpressure, refusals, limits, draining."""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from functools import partial
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore import Identity, TrustStore, sign_certificate
from securesess import open_secure_stream
from securesess.errors import NegotiationFailed, PeerRejected
from securesess.tunnel import TunnelClient, TunnelServer
from tests.tunnels import (
    Backend,
    TunnelWorld,
    capture_tunnel_logs,
    outcome_of,
    read_all,
    tunnel_lines,
)

ADMIT_SERVICES = """
[[rule]]
name = "services"
groups = ["services"]
"""


async def test_bytes_cross_both_ways_and_the_log_says_how_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world, backend = TunnelWorld(), Backend()
    data = os.urandom(3 << 20)
    async with trio.open_nursery() as nursery:
        await world.start(nursery, backend)
        app = await world.open()
        await app.send_all(data)
        await app.send_eof()
        assert await read_all(app) == data + b"bye"
        await app.aclose()
        with trio.fail_after(5):
            while len(tunnel_lines(caplog, "server")) + len(tunnel_lines(caplog, "client")) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    for end, peer in (("client", world.db), ("server", world.api)):
        (line,) = tunnel_lines(caplog, end)
        assert line["outcome"] == "closed"
        assert (line["peer"], line["key"]) == (peer.name, peer.fingerprint)
        assert (int(line["up"]), int(line["down"])) == (len(data), len(data) + 3)
        assert float(line["duration"]) >= 0
        assert "reason" not in line
    assert backend.accepted == 1


async def test_half_close_passes_through_in_both_directions() -> None:
    world = TunnelWorld()
    backend_saw: list[bytes] = []

    async def greet_first(stream: trio.SocketStream) -> None:
        # The service speaks, says it is done, and still listens.
        await stream.send_all(b"hello, I am done talking")
        await stream.send_eof()
        backend_saw.append(await read_all(stream))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend(greet_first))
        app = await world.open()
        with trio.fail_after(10):
            # The service's EOF reaches the application while it still sends...
            assert await read_all(app) == b"hello, I am done talking"
            await app.send_all(b"and I can still send")
            await app.send_eof()
            # ... and the application's EOF reaches the service.
            while not backend_saw:
                await trio.sleep(0.01)
        assert backend_saw == [b"and I can still send"]
        nursery.cancel_scope.cancel()


async def test_a_reader_that_stops_pushes_back_on_the_writer() -> None:
    """No buffer grows: the writer stalls once the kernel buffers along the way are full."""
    world = TunnelWorld()
    release = trio.Event()
    received = bytearray()

    async def slow_reader(stream: trio.SocketStream) -> None:
        await release.wait()
        received.extend(await read_all(stream))

    total = 256 << 20
    piece = os.urandom(1 << 20)
    sent = 0
    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend(slow_reader))
        app = await world.open()

        async def write() -> None:
            nonlocal sent
            while sent < total:
                await app.send_all(piece)
                sent += len(piece)
            await app.send_eof()

        nursery.start_soon(write)
        # Wait until the writer makes no progress for a while.
        last = -1
        with trio.fail_after(30):
            while sent != last:
                last = sent
                await trio.sleep(0.5)
        stalled_at = sent
        # Three TCP connections' kernel buffers (a few MiB each on loopback)
        # and one chunk per relay: far below what the writer had to send.
        assert stalled_at <= 32 << 20
        release.set()
        with trio.fail_after(60):
            while len(received) < total:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert len(received) == total
    assert received[: len(piece)] == piece
    assert received[-len(piece) :] == piece


async def test_a_backend_that_is_down_gives_a_clear_refusal_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    with trio.socket.socket() as placeholder:
        await placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, never listening: refused
        async with trio.open_nursery() as nursery:
            await world.start_server(nursery, dead_port)
            await world.start_client(nursery)
            app = await world.open()
            with trio.fail_after(3):
                data, how = await outcome_of(app)
            nursery.cancel_scope.cancel()
    assert (data, how) == (b"", "reset")
    (server,) = tunnel_lines(caplog, "server")
    (client,) = tunnel_lines(caplog, "client")
    assert server["outcome"] == client["outcome"] == "refused"
    assert server["reason"] == "the service behind the tunnel is unavailable: connection refused"
    assert client["reason"] == "server: " + server["reason"]


async def test_a_tunnel_server_that_is_down_gives_a_clear_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    with trio.socket.socket() as placeholder:
        await placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await world.start_client(nursery, dead_port)
            app = await world.open()
            with trio.fail_after(3):
                assert await outcome_of(app) == (b"", "reset")
            nursery.cancel_scope.cancel()
    (line,) = tunnel_lines(caplog, "client")
    assert line["outcome"] == "refused"
    assert line["reason"] == (
        f"cannot reach the tunnel server at 127.0.0.1:{dead_port}: connection refused"
    )
    # A warning, so that --log-level warning ("only the trouble") shows it.
    (record,) = [r for r in caplog.records if r.getMessage().startswith("connection=")]
    assert record.levelno == logging.WARNING


async def test_nobody_unauthenticated_or_refused_ever_reaches_the_backend(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world, backend = TunnelWorld(), Backend()
    visitor = Identity.generate("visitor")
    world.server_trust.add_peer("visitor", visitor.public_key, ["visitors"])  # trusted, no rule
    stranger = Identity.generate("api")  # same name as a trusted peer, another key
    async with trio.open_nursery() as nursery:
        await backend.start(nursery)
        server = await world.start_server(
            nursery, backend.port, policy=ADMIT_SERVICES, handshake_timeout=0.5
        )
        port = server.port
        # 1. Garbage instead of a handshake.
        garbage = await trio.open_tcp_stream("127.0.0.1", port)
        await garbage.send_all(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n" * 10)
        # 2. A connection that never says anything (cut by the handshake timeout).
        stalled = await trio.open_tcp_stream("127.0.0.1", port)
        # 3. A key nobody pinned, 4. a trusted peer no rule admits, both
        # through real tunnel client ends.
        for identity in (stranger, visitor):
            client = await world.start_client(nursery, port, identity=identity)
            app = await trio.open_tcp_stream("127.0.0.1", client.port)
            await app.send_all(b"SET key value\r\n")
            with trio.fail_after(5):
                assert await outcome_of(app) == (b"", "reset")
        # 5. A client that does not accept the server stops before revealing itself.
        with pytest.raises(PeerRejected, match="admits visitor"):
            await open_secure_stream(
                "127.0.0.1", port, identity=visitor, trust=world.client_trust, expect="db"
            )
        with trio.fail_after(5):
            assert await outcome_of(garbage) == (b"", "eof")
            assert await outcome_of(stalled) == (b"", "eof")
        assert backend.accepted == 0
        # The counter works: an admitted peer does reach the backend.
        await world.start_client(nursery, port)
        app = await world.open()
        await app.send_all(b"ping")
        await app.send_eof()
        assert await read_all(app) == b"pingbye"
        assert backend.accepted == 1
        nursery.cancel_scope.cancel()
    reasons = [line.get("reason", "") for line in tunnel_lines(caplog, "server")]
    assert any("not trusted" in reason or "not pinned" in reason for reason in reasons), reasons
    assert any("no rule of the tunnel's policy admits visitor" in reason for reason in reasons)
    assert any("did not complete within 0.5 s" in reason for reason in reasons)


class Tamperer:
    """A TCP proxy between the two tunnel ends that can flip a bit or cut the stream."""

    def __init__(self, target_port: int, *, flip_at: int | None = None, cut_at: int | None = None):
        self.target_port = target_port
        self.flip_at = flip_at
        self.cut_at = cut_at
        self.port = 0

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._proxy, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]

    async def _proxy(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with trio.open_nursery() as nursery:

            async def upstream() -> None:
                try:
                    await forward()
                except trio.BrokenResourceError:
                    await trio.aclose_forcefully(server)

            async def forward() -> None:
                seen = 0
                while received := await client.receive_some():
                    data = bytearray(received)
                    if self.flip_at is not None and seen <= self.flip_at < seen + len(data):
                        data[self.flip_at - seen] ^= 0x10
                    if self.cut_at is not None and seen + len(data) > self.cut_at:
                        await server.send_all(data[: self.cut_at - seen])
                        # Cut without a clean end of the secure stream.
                        await server.send_eof()
                        return
                    await server.send_all(data)
                    seen += len(data)
                await server.send_eof()

            async def downstream() -> None:
                try:
                    while data := await server.receive_some():
                        await client.send_all(data)
                    await client.send_eof()
                # Closed: upstream, its client gone, closed the server side
                # while this waited on it.
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await client.aclose()

            nursery.start_soon(upstream)
            nursery.start_soon(downstream)


@pytest.mark.parametrize(
    "fault", [{"flip_at": 200_000}, {"cut_at": 200_000}], ids=["flipped-bit", "cut"]
)
async def test_tampering_between_the_ends_never_delivers_altered_or_truncated_data_as_whole(
    fault: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    got: list[tuple[bytes, str]] = []

    async def record(stream: trio.SocketStream) -> None:
        got.append(await outcome_of(stream))

    backend = Backend(record)
    data = os.urandom(1 << 20)
    async with trio.open_nursery() as nursery:
        await backend.start(nursery)
        server = await world.start_server(nursery, backend.port)
        tamperer = Tamperer(server.port, **fault)
        await tamperer.start(nursery)
        await world.start_client(nursery, tamperer.port)
        app = await world.open()
        with trio.fail_after(10):
            try:
                await app.send_all(data)
                await app.send_eof()
            except trio.BrokenResourceError:
                pass  # the tunnel may reset the application while it still sends
            app_sees = await outcome_of(app)
            while not got:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (received, how) = got[0]
    # The backend got an unaltered prefix, then a reset, never a clean end.
    assert received == data[: len(received)]
    assert len(received) < len(data)
    assert how == "reset"
    assert app_sees[1] == "reset"
    (line,) = tunnel_lines(caplog, "server")
    assert line["outcome"] == "failed"
    expected = "authentication" if "flip_at" in fault else "without"
    assert expected in line["reason"], line["reason"]


async def test_connection_limits_refuse_the_one_too_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend(), max_connections=2)
        first, second = await world.open(), await world.open()
        for app in (first, second):
            await app.send_all(b"x")
            assert await app.receive_some() == b"x"
        third = await world.open()
        with trio.fail_after(5):
            assert await outcome_of(third) == (b"", "reset")
        # A slot frees up when a connection ends.
        await first.send_eof()
        assert await read_all(first) == b"bye"
        with trio.fail_after(5):
            while world.server is not None and world.server.connections > 1:
                await trio.sleep(0.01)
        fourth = await world.open()
        await fourth.send_all(b"y")
        assert await fourth.receive_some() == b"y"
        nursery.cancel_scope.cancel()
    refused = [line for line in tunnel_lines(caplog, "server") if line["outcome"] == "refused"]
    assert [line["reason"] for line in refused] == ["the tunnel is at its limit of 2 connections"]


async def test_the_client_end_has_a_limit_of_its_own() -> None:
    world = TunnelWorld()
    backend = Backend()
    async with trio.open_nursery() as nursery:
        await backend.start(nursery)
        await world.start_server(nursery, backend.port)
        await world.start_client(nursery, max_connections=1)
        first = await world.open()
        await first.send_all(b"x")
        assert await first.receive_some() == b"x"
        second = await world.open()
        with trio.fail_after(5):
            assert await outcome_of(second) == (b"", "reset")
        assert backend.accepted == 1
        nursery.cancel_scope.cancel()


async def test_draining_lets_open_connections_finish_and_refuses_new_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend())
        client = world.client
        assert client is not None
        app = await world.open()
        await app.send_all(b"before")
        assert await app.receive_some() == b"before"
        drained = trio.Event()

        async def drain() -> None:
            assert client is not None
            await client.drain(10)
            drained.set()

        nursery.start_soon(drain)
        await trio.sleep(0.1)
        with pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream("127.0.0.1", client.port)
        await app.send_all(b"during")  # the open connection still works
        assert await app.receive_some() == b"during"
        assert not drained.is_set()
        await app.send_eof()
        assert await read_all(app) == b"bye"
        with trio.fail_after(5):
            await drained.wait()
        nursery.cancel_scope.cancel()
    assert [line["outcome"] for line in tunnel_lines(caplog, "client")] == ["closed"]


def _assert_cut_by_the_server(caplog: pytest.LogCaptureFixture) -> None:
    """The one connection was cut by a stopping server end, and both ends' logs say so."""
    (server,) = tunnel_lines(caplog, "server")
    (client,) = tunnel_lines(caplog, "client")
    assert (server["outcome"], server["reason"]) == ("cut", "the tunnel is shutting down")
    assert client["outcome"] == "failed"
    assert client["reason"] == "server: the tunnel is shutting down"


async def test_a_drain_that_times_out_cuts_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    got: list[tuple[bytes, str]] = []

    async def record(stream: trio.SocketStream) -> None:
        got.append(await outcome_of(stream))

    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend(record))
        assert world.server is not None
        app = await world.open()
        await app.send_all(b"unfinished")
        with trio.fail_after(5):
            while world.server.connections == 0:
                await trio.sleep(0.01)
            await world.server.drain(0.2)
            assert await outcome_of(app) == (b"", "reset")
            while not got:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert got == [(b"unfinished", "reset")]
    _assert_cut_by_the_server(caplog)


async def test_revoking_a_peer_cuts_its_open_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend())
        server = world.server
        assert server is not None
        app = await world.open()
        await app.send_all(b"x")
        assert await app.receive_some() == b"x"
        # A new trust store, as a reload reads one from disk.
        trust = TrustStore()
        trust.add_peer("api", world.api.public_key, ["services"])
        trust.revoke_key(world.api.public_key)
        server.reload(trust=trust)
        with trio.fail_after(5):
            assert await outcome_of(app) == (b"", "reset")
        # And it cannot come back.
        again = await world.open()
        with trio.fail_after(5):
            assert await outcome_of(again) == (b"", "reset")
        nursery.cancel_scope.cancel()
    outcomes = [(line["outcome"], line["reason"]) for line in tunnel_lines(caplog, "server")]
    assert outcomes[0][0] == "cut"
    assert outcomes[0][1].startswith("no longer trusted")
    assert outcomes[1][0] == "refused"


async def test_bad_settings_are_refused_up_front() -> None:
    identity = Identity.generate("x")
    world = TunnelWorld()
    with pytest.raises(ValueError, match="max_connections"):
        TunnelServer(
            ("127.0.0.1", 1), identity=identity, trust=world.server_trust, max_connections=0
        )
    with pytest.raises(ValueError, match="connect_timeout"):
        TunnelClient(
            ("127.0.0.1", 1), identity=identity, trust=world.client_trust, connect_timeout=0
        )
    with pytest.raises(RuntimeError, match="not serving"):
        _ = TunnelClient(("127.0.0.1", 1), identity=identity, trust=world.client_trust).port


async def test_the_server_end_only_speaks_handshakes_the_client_finishes() -> None:
    """In IK the server's part ends with its own reply: a replayed first message
    would pass for the client, so the server end would dial the backend for nobody."""
    world, backend = TunnelWorld(), Backend()
    ik = "Noise_IK_25519_AESGCM_SHA256"
    with pytest.raises(ValueError, match=r"not Noise_IK_.*a replayed first message"):
        TunnelServer(("127.0.0.1", 1), identity=world.db, trust=world.server_trust, protocol=ik)
    async with trio.open_nursery() as nursery:
        await backend.start(nursery)
        server = await world.start_server(nursery, backend.port)
        with pytest.raises(NegotiationFailed):
            await open_secure_stream(
                "127.0.0.1", server.port, identity=world.api, trust=world.client_trust,
                expect=world.db.public_key, protocol=ik,
            )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert backend.accepted == 0


async def test_stopping_a_tunnel_end_cuts_its_connections_never_ends_them_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    got: list[tuple[bytes, str]] = []

    async def record(stream: trio.SocketStream) -> None:
        got.append(await outcome_of(stream))

    async with trio.open_nursery() as outer:
        backend = Backend(record)
        await backend.start(outer)
        async with trio.open_nursery() as server_nursery:
            server = await world.start_server(server_nursery, backend.port)
            await world.start_client(outer, server.port)
            app = await world.open()
            await app.send_all(b"half a request")
            with trio.fail_after(5):
                while server.connections == 0:
                    await trio.sleep(0.01)
            await trio.sleep(0.1)  # both relays are now waiting for more
            server_nursery.cancel_scope.cancel()
        with trio.fail_after(5):
            assert await outcome_of(app) == (b"", "reset")
            while not got:
                await trio.sleep(0.01)
        outer.cancel_scope.cancel()
    assert got == [(b"half a request", "reset")]
    _assert_cut_by_the_server(caplog)


async def test_a_refusal_reaches_an_application_that_speaks_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server end lingers after its CLOSE, so no reset overtakes the reason."""
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    with trio.socket.socket() as placeholder:
        await placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await world.start_server(nursery, dead_port)
            await world.start_client(nursery)

            async def talk_first() -> None:
                app = await world.open()
                try:
                    await app.send_all(os.urandom(100_000))
                    await outcome_of(app)
                except trio.BrokenResourceError:
                    pass
                await app.aclose()

            with trio.fail_after(20):
                async with trio.open_nursery() as apps:
                    for _ in range(10):
                        apps.start_soon(talk_first)
                while len(tunnel_lines(caplog, "client")) < 10:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    reasons = {(line["outcome"], line["reason"]) for line in tunnel_lines(caplog, "client")}
    assert reasons == {
        (
            "refused",
            "server: the service behind the tunnel is unavailable: connection refused",
        )
    }


async def test_a_name_that_does_not_resolve_is_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    async with trio.open_nursery() as nursery:
        client = TunnelClient(
            ("no-such-host.invalid", 7380),
            identity=world.api,
            trust=world.client_trust,
            connect_timeout=5,
        )
        await nursery.start(partial(client.serve, 0, host="127.0.0.1"))
        app = await trio.open_tcp_stream("127.0.0.1", client.port)
        with trio.fail_after(10):
            assert await outcome_of(app) == (b"", "reset")
        nursery.cancel_scope.cancel()
    (line,) = tunnel_lines(caplog, "client")
    assert line["outcome"] == "refused"
    assert line["reason"].startswith(
        "cannot reach the tunnel server at no-such-host.invalid:7380: "
    )
    assert "unknown error" not in line["reason"]


async def test_the_client_end_re_checks_its_server_on_reload() -> None:
    world = TunnelWorld()
    async with trio.open_nursery() as nursery:
        backend = Backend()
        await backend.start(nursery)
        server = await world.start_server(nursery, backend.port)
        by_key = await world.start_client(nursery, server.port, expect=world.db.public_key)
        by_name = await world.start_client(nursery, server.port)
        apps = []
        for end in (by_key, by_name):
            app = await trio.open_tcp_stream("127.0.0.1", end.port)
            await app.send_all(b"x")
            assert await app.receive_some() == b"x"
            apps.append(app)
        # A trust store that no longer pins db: the name no longer means
        # anything, but a key given as expect= is a pin of its own.
        for end in (by_key, by_name):
            end.reload(trust=TrustStore())
        await apps[0].send_all(b"still here")
        assert await apps[0].receive_some() == b"still here"
        with trio.fail_after(5):
            assert await outcome_of(apps[1]) == (b"", "reset")
        nursery.cancel_scope.cancel()


def _reset_socket(stream: trio.SocketStream) -> None:
    """Make closing ``stream`` send a TCP reset, as a crashing application's does."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_a_reset_after_a_half_close_ends_the_connection_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An application that sends its request and its FIN, then resets: no
    relay reads its leg any more, and the backend has nothing to write yet."""
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    backend_outcome: list[tuple[bytes, str]] = []
    answer_now = trio.Event()

    async def listen_then_think(stream: trio.SocketStream) -> None:
        request = await read_all(stream)
        await answer_now.wait()  # thinks for a while
        try:
            await stream.send_all(b"200 OK")
            # A write may go out before the reset comes back; a read sees it.
            await stream.receive_some()
        except trio.BrokenResourceError:
            backend_outcome.append((request, "reset"))
        else:
            backend_outcome.append((request, "answered"))

    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend(listen_then_think))
        app = await world.open()
        with trio.fail_after(10):
            await app.send_all(b"GET /slow")
            await app.send_eof()
            while world.server is None or not world.server.connections:
                await trio.sleep(0.01)
            await trio.sleep(0.2)  # the FIN has gone through both ends
            _reset_socket(app)
            await app.aclose()
            # Both ends let go before the backend has said anything.
            assert world.client is not None
            while world.client.connections or world.server.connections:
                await trio.sleep(0.01)
            answer_now.set()
            while not backend_outcome:
                await trio.sleep(0.01)
        assert backend_outcome == [(b"GET /slow", "reset")]
        [client_line] = tunnel_lines(caplog, "client")
        assert client_line["outcome"] == "failed"
        assert "application" in client_line["reason"]
        assert "reset" in client_line["reason"]
        nursery.cancel_scope.cancel()


async def test_an_idle_connection_is_cut_and_a_busy_one_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    async with trio.open_nursery() as nursery:
        await backend_start(world, nursery, idle_timeout=0.5)
        busy, idle = await world.open(), await world.open()
        with trio.fail_after(10):
            for stream in (busy, idle):
                await stream.send_all(b"ping")
                assert await stream.receive_some() == b"ping"
            started = trio.current_time()

            async def keep_busy() -> None:
                # One byte every 0.2 s keeps a connection alive past the timeout.
                for _ in range(8):
                    await trio.sleep(0.2)
                    await busy.send_all(b".")
                    assert await busy.receive_some() == b"."

            async with trio.open_nursery() as activity:
                activity.start_soon(keep_busy)
                assert await outcome_of(idle) == (b"", "reset")
                assert 0.5 <= trio.current_time() - started < 1.5
        [cut] = [line for line in tunnel_lines(caplog, "server") if line["outcome"] == "cut"]
        assert cut["reason"] == "idle for 0.5 s"
        await busy.aclose()
        await idle.aclose()
        nursery.cancel_scope.cancel()


async def backend_start(world: TunnelWorld, nursery: trio.Nursery, **options: Any) -> None:
    backend = Backend()
    await backend.start(nursery)
    await world.start_server(nursery, backend.port, **options)
    await world.start_client(nursery)


async def test_a_backend_that_resets_after_its_half_close_resets_the_application() -> None:
    """The mirror image: the service answers, sends its FIN, then resets
    while the application still has its side open."""
    world = TunnelWorld()
    reset_now = trio.Event()

    async def answer_then_crash(stream: trio.SocketStream) -> None:
        await stream.send_all(b"partial answer")
        await stream.send_eof()
        await reset_now.wait()
        _reset_socket(stream)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await world.start(nursery, Backend(answer_then_crash))
        app = await world.open()
        with trio.fail_after(10):
            assert await read_all(app) == b"partial answer"
            reset_now.set()
            # The application, silent, hears of it without writing anything.
            assert world.client is not None
            while world.client.connections:
                await trio.sleep(0.01)
            await trio.sleep(0.1)  # the reset's way from the tunnel end
            # After a FIN, Linux reports a reset to writes only.
            with pytest.raises(trio.BrokenResourceError):
                await app.send_all(b"are you there?")
        await app.aclose()
        nursery.cancel_scope.cancel()


async def test_a_connection_is_cut_when_the_peer_certificate_expires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world = TunnelWorld()
    ca = Ed25519PrivateKey.generate()
    world.server_trust.add_ca("ops", ca.public_key().public_bytes_raw())
    temp = Identity.generate("temp")
    now = int(time.time())
    certificate = sign_certificate(
        ca,
        subject_key=temp.public_key,
        name="temp",
        serial=1,
        not_before=now - 60,
        not_after=now + 2,
    )
    async with trio.open_nursery() as nursery:
        backend = Backend()
        await backend.start(nursery)
        await world.start_server(nursery, backend.port)
        await world.start_client(nursery, identity=temp.with_certificate(certificate))
        app = await world.open()
        with trio.fail_after(10):
            await app.send_all(b"ping")
            assert await app.receive_some() == b"ping"
            assert await outcome_of(app) == (b"", "reset")
            assert time.time() >= now + 3
            # The server end logs once it has closed (after lingering on the CLOSE).
            while not (lines := tunnel_lines(caplog, "server")):
                await trio.sleep(0.05)
        assert [(line["outcome"], line["reason"]) for line in lines] == [
            ("cut", "the peer's certificate expired")
        ]
        await app.aclose()
        nursery.cancel_scope.cancel()
