"""Two tunnel ends and a backend on loopback TCP, for the tunnel tests."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio

from keystore import Identity, TrustStore
from securesess.policy import Policy
from securesess.tunnel import TunnelClient, TunnelServer

Handler = Callable[[trio.SocketStream], Awaitable[object]]


async def echo_until_eof(stream: trio.SocketStream) -> None:
    """Echo everything; after the client's EOF, say goodbye and half-close."""
    try:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.send_all(b"bye")
        await stream.send_eof()
    except trio.BrokenResourceError:
        pass  # reset by the tunnel: what some tests are about


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some():
        chunks.append(bytes(chunk))
    return b"".join(chunks)


async def outcome_of(stream: trio.abc.ReceiveStream) -> tuple[bytes, str]:
    """What ``stream`` receives, and how it ended: "eof" or "reset"."""
    chunks = []
    try:
        while chunk := await stream.receive_some():
            chunks.append(bytes(chunk))
    except trio.BrokenResourceError:
        return b"".join(chunks), "reset"
    return b"".join(chunks), "eof"


class Backend:
    """A plain TCP service that counts the connections it gets."""

    def __init__(self, handler: Handler = echo_until_eof) -> None:
        self.handler = handler
        self.accepted = 0
        self.port = 0

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        await self.handler(stream)

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(
            partial(trio.serve_tcp, self._serve_one, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]


class TunnelWorld:
    """``api`` runs the client end, ``db`` the server end; each pins the other."""

    def __init__(self) -> None:
        self.api, self.db = Identity.generate("api"), Identity.generate("db")
        self.client_trust, self.server_trust = TrustStore(), TrustStore()
        self.client_trust.add_peer("db", self.db.public_key)
        self.server_trust.add_peer("api", self.api.public_key, ["services"])
        self.server: TunnelServer | None = None
        self.client: TunnelClient | None = None

    async def start_server(
        self,
        nursery: trio.Nursery,
        backend_port: int,
        *,
        policy: str | None = None,
        **options: Any,
    ) -> TunnelServer:
        parsed = None if policy is None else Policy.parse(policy, trust=self.server_trust)
        server = TunnelServer(
            ("127.0.0.1", backend_port),
            identity=self.db,
            trust=self.server_trust,
            policy=parsed,
            **options,
        )
        await nursery.start(partial(server.serve, 0, host="127.0.0.1"))
        self.server = server
        return server

    async def start_client(
        self,
        nursery: trio.Nursery,
        server_port: int | None = None,
        *,
        identity: Identity | None = None,
        **options: Any,
    ) -> TunnelClient:
        if server_port is None:
            assert self.server is not None
            server_port = self.server.port
        client = TunnelClient(
            ("127.0.0.1", server_port),
            identity=identity or self.api,
            trust=self.client_trust,
            expect=options.pop("expect", "db"),
            **options,
        )
        await nursery.start(partial(client.serve, 0, host="127.0.0.1"))
        self.client = client
        return client

    async def start(
        self, nursery: trio.Nursery, backend: Backend, **server_options: Any
    ) -> TunnelClient:
        await backend.start(nursery)
        await self.start_server(nursery, backend.port, **server_options)
        return await self.start_client(nursery)

    async def open(self) -> trio.SocketStream:
        """A plain connection to the client end, as an application makes one."""
        assert self.client is not None
        return await trio.open_tcp_stream("127.0.0.1", self.client.port)


def tunnel_lines(caplog: pytest.LogCaptureFixture, end: str) -> list[dict[str, str]]:
    """The per-connection log lines of one end, parsed from logfmt."""
    lines = []
    for record in caplog.records:
        if record.name != "securesess.tunnel" or not record.getMessage().startswith("connection="):
            continue
        fields = parse_logfmt(record.getMessage())
        if fields["end"] == end:
            lines.append(fields)
    return lines


_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_logfmt(line: str) -> dict[str, str]:
    return {
        key: json.loads(value) if value.startswith('"') else value
        for key, value in _FIELD.findall(line)
    }


def capture_tunnel_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="securesess.tunnel")
