"""Building SecureStream pairs over in-memory transports we can watch and tamper
with, and serving on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
import trio.testing

from keystore import Identity, TrustStore
from securesess import SecureListener, SecureStream, serve_secure
from securesess.stream.frames import FrameReader

Filter = Callable[[bytes], bytes]


class Wrapped(trio.abc.Stream):
    """A stream that passes everything to ``inner``: subclasses change what they must."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def filtered_one_way_pair(
    data_filter: Filter, *, max_bytes: int | None = None
) -> tuple[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]:
    """A one-way memory stream whose bytes pass through ``data_filter``.

    ``max_bytes`` limits how much each pump moves, so ``max_bytes=1`` delivers
    a byte at a time.
    """
    send = trio.testing.MemorySendStream()
    receive = trio.testing.MemoryReceiveStream()

    def pump() -> None:
        while True:
            try:
                data = send.get_data_nowait(max_bytes)
            except trio.WouldBlock:
                return
            if not data:
                receive.put_eof()
                return
            receive.put_data(data_filter(bytes(data)))

    async def async_pump() -> None:
        pump()

    send.send_all_hook = async_pump
    send.close_hook = pump
    receive.receive_some_hook = async_pump
    return send, receive


def filtered_pair(
    client_to_server: Filter = bytes,
    server_to_client: Filter = bytes,
    *,
    max_bytes: int | None = None,
) -> tuple[trio.StapledStream[Any, Any], trio.StapledStream[Any, Any]]:
    up_send, up_receive = filtered_one_way_pair(client_to_server, max_bytes=max_bytes)
    down_send, down_receive = filtered_one_way_pair(server_to_client, max_bytes=max_bytes)
    return trio.StapledStream(up_send, down_receive), trio.StapledStream(down_send, up_receive)


class Identities:
    """A client and a server that trust each other, plus a stranger."""

    def __init__(self) -> None:
        self.client = Identity.generate("client")
        self.server = Identity.generate("server")
        self.stranger = Identity.generate("stranger")
        self.client_trust = TrustStore()
        self.client_trust.add_peer("server", self.server.public_key, groups=["backend"])
        self.server_trust = TrustStore()
        self.server_trust.add_peer("client", self.client.public_key, groups=["api", "ops"])

    def streams(
        self,
        transports: tuple[trio.abc.Stream, trio.abc.Stream],
        *,
        client: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
    ) -> tuple[SecureStream, SecureStream]:
        client_options = {"identity": self.client, "trust": self.client_trust, **(client or {})}
        server_options = {"identity": self.server, "trust": self.server_trust, **(server or {})}
        return (
            SecureStream(transports[0], **client_options),
            SecureStream(transports[1], server_side=True, **server_options),
        )


async def handshake_both(client: SecureStream, server: SecureStream) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


def frames_of(wire: bytes) -> list[bytes]:
    """Split captured wire bytes into frames (for checking what was sent)."""
    reader = FrameReader()
    reader.feed(wire)
    frames = []
    while (frame := reader.next_frame()) is not None:
        frames.append(bytes(frame))
    return frames


async def serve_on_loopback(
    nursery: trio.Nursery,
    handler: Callable[[SecureStream], Awaitable[object]],
    ids: Identities,
    **options: Any,
) -> int:
    """Start serve_secure as ``ids.server`` on a free loopback port; return the port."""
    listeners: list[SecureListener] = await nursery.start(
        partial(
            serve_secure,
            handler,
            0,
            identity=ids.server,
            trust=ids.server_trust,
            host="127.0.0.1",
            **options,
        )
    )
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port: int = transport.socket.getsockname()[1]
    return port
