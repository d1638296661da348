"""The tunnel's log line names only where a connection went."""

from __future__ import annotations

import pytest
import trio

from keystore import Identity
from tests.test_tunnel import ADMIT_SERVICES
from tests.tunnels import Backend, TunnelWorld, capture_tunnel_logs, outcome_of, tunnel_lines


@pytest.mark.parametrize(
    ("pinned", "reason"),
    [(False, "not pinned"), (True, "no rule of the tunnel's policy admits visitor")],
    ids=["untrusted", "not admitted"],
)
async def test_a_refused_peer_line_names_no_service_it_never_reached(
    caplog: pytest.LogCaptureFixture, pinned: bool, reason: str
) -> None:
    capture_tunnel_logs(caplog)
    backend, world, visitor = Backend(), TunnelWorld(), Identity.generate("visitor")
    if pinned:
        world.server_trust.add_peer("visitor", visitor.public_key, ["visitors"])
    async with trio.open_nursery() as nursery:
        await backend.start(nursery)
        server = await world.start_server(nursery, backend.port, policy=ADMIT_SERVICES)
        client = await world.start_client(nursery, server.port, identity=visitor)
        app = await trio.open_tcp_stream("127.0.0.1", client.port)
        with trio.fail_after(5):
            assert await outcome_of(app) == (b"", "reset")
            while not tunnel_lines(caplog, "server") or not tunnel_lines(caplog, "client"):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert backend.accepted == 0
    (refused,) = tunnel_lines(caplog, "server")
    assert refused["outcome"] == "refused"
    assert reason in refused["reason"]
    assert "to" not in refused
    # The client end did reach the server end, and says so.
    (client_line,) = tunnel_lines(caplog, "client")
    assert client_line["to"] == f"127.0.0.1:{server.port}"


async def test_a_carried_connection_line_names_the_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_tunnel_logs(caplog)
    world, backend = TunnelWorld(), Backend()
    async with trio.open_nursery() as nursery:
        await world.start(nursery, backend)
        app = await world.open()
        await app.send_eof()
        with trio.fail_after(5):
            assert await outcome_of(app) == (b"bye", "eof")
            while not tunnel_lines(caplog, "server"):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (carried,) = tunnel_lines(caplog, "server")
    assert carried["to"] == f"127.0.0.1:{backend.port}"
