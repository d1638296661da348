"""One connection's unexpected error ends that connection, never the server.

``trio.serve_listeners`` runs every connection in one nursery: an exception
that escapes one handler would cancel all of them and end the server. These
tests make one connection raise what nothing expects, during its handshake
and after it, over real TCP, and check that the others are still served.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
import trio

from securesess import SecureListener, SecureStream, open_secure_stream
from securesess.stream.admission import handshake_first
from securesess.stream.containment import format_address
from tests.streams import Identities, serve_on_loopback

HOST = "127.0.0.1"


class _Bug(Exception):
    """What nothing in the server expects."""


async def _echo(stream: SecureStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def _echo_once(stream: trio.abc.Stream) -> bool:
    await stream.send_all(b"ping")
    return await stream.receive_some() == b"ping"


def _local_address(stream: SecureStream) -> str:
    transport = stream.transport_stream
    assert isinstance(transport, trio.SocketStream)
    host, port = transport.socket.getsockname()[:2]
    return format_address(host, port)


async def _connect(ids: Identities, port: int) -> SecureStream:
    return await open_secure_stream(
        HOST, port, identity=ids.client, trust=ids.client_trust, expect="server"
    )


def _assert_logged_once(caplog: pytest.LogCaptureFixture, address: str) -> None:
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert address in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert _Bug in _leaves(errors[0].exc_info[1])


def _leaves(exc: BaseException | None) -> set[type[BaseException]]:
    if isinstance(exc, BaseExceptionGroup):
        return {kind for inner in exc.exceptions for kind in _leaves(inner)}
    return set() if exc is None else {type(exc)}


async def _raise_bare() -> None:
    raise _Bug("a bug in the handler")


async def _raise_in_a_group() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_raise_bare)


@pytest.mark.parametrize("fail", [_raise_bare, _raise_in_a_group], ids=["bare", "in a nursery"])
async def test_an_error_in_a_handler_ends_only_its_connection(
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
    fail: Callable[[], Awaitable[None]],
) -> None:
    ids = Identities()

    async def handler(stream: SecureStream) -> None:
        while data := await stream.receive_some():
            if data == b"crash":
                await fail()
            await stream.send_all(data)

    port = await serve_on_loopback(nursery, handler, ids)
    with caplog.at_level(logging.INFO, logger="securesess"), trio.fail_after(10):
        async with await _connect(ids, port) as steady:
            assert await _echo_once(steady)
            doomed = await _connect(ids, port)
            address = _local_address(doomed)
            await doomed.send_all(b"crash")
            with pytest.raises(trio.BrokenResourceError):
                await doomed.receive_some()  # cut: the server closed it forcefully
            await doomed.aclose()
            # The connection open all along is still served, and so is a new one.
            assert await _echo_once(steady)
            async with await _connect(ids, port) as newcomer:
                assert await _echo_once(newcomer)
    _assert_logged_once(caplog, address)


class _BuggyTransport(trio.abc.HalfCloseableStream):
    """A transport that raises an unexpected error on its first receive, as
    the AEAD library did on every handshake after an upgrade."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = self.transport_stream = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await trio.lowlevel.checkpoint()
        raise _Bug("a bug under the handshake")

    async def aclose(self) -> None:
        await self.inner.aclose()


class _SecondConnectionIsBuggy(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self, inner: trio.SocketListener) -> None:
        self.inner = inner
        self.accepted = 0

    async def accept(self) -> trio.abc.Stream:
        stream = await self.inner.accept()
        self.accepted += 1
        return _BuggyTransport(stream) if self.accepted == 2 else stream

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_error_in_a_handshake_ends_only_its_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    ids = Identities()

    (tcp,) = await trio.open_tcp_listeners(0, host=HOST)
    port = tcp.socket.getsockname()[1]
    listener = SecureListener(
        _SecondConnectionIsBuggy(tcp), identity=ids.server, trust=ids.server_trust
    )
    serve_one = handshake_first(_echo, max_concurrent_handshakes=8)
    await nursery.start(trio.serve_listeners, serve_one, [listener])
    with caplog.at_level(logging.INFO, logger="securesess"), trio.fail_after(10):
        async with await _connect(ids, port) as steady:
            assert await _echo_once(steady)
            # The second connection's handshake fails on the server in a way
            # no handshake error covers: the client sees the connection end.
            transport = await trio.open_tcp_stream(HOST, port)
            doomed = SecureStream(
                transport, identity=ids.client, trust=ids.client_trust, expect="server"
            )
            address = _local_address(doomed)
            with pytest.raises(trio.BrokenResourceError):
                await doomed.do_handshake()
            await doomed.aclose()
            assert await _echo_once(steady)
            async with await _connect(ids, port) as newcomer:
                assert await _echo_once(newcomer)
    _assert_logged_once(caplog, address)


async def test_a_peer_that_breaks_its_stream_is_logged_in_one_line_not_as_an_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    # The handler lets the BrokenResourceError of a vanished peer escape, as
    # the simplest echo does: that is no bug, so no ERROR and no traceback,
    # and the peer's CLOSE reason cannot forge a second log line.
    ids = Identities()

    port = await serve_on_loopback(nursery, _echo, ids)
    with caplog.at_level(logging.INFO, logger="securesess"), trio.fail_after(10):
        leaving = await _connect(ids, port)
        address = _local_address(leaving)
        assert await _echo_once(leaving)
        await leaving.abort(1000, "bye\nERROR forged line")
        async with await _connect(ids, port) as newcomer:
            assert await _echo_once(newcomer)
        while not any("broke" in message for message in caplog.messages):
            await trio.sleep(0.01)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    (broke,) = [message for message in caplog.messages if "broke" in message]
    assert address in broke
    assert "PeerAborted: the peer closed the stream: bye\\nERROR forged line" in broke
    assert "\n" not in broke
