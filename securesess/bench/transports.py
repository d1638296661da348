"""The four transports under test, behind one interface.

Each transport serves on loopback and connects to itself through the public
API a real program would use (``serve_tcp``/``open_tcp_stream``,
``serve_ssl_over_tcp``/``open_ssl_over_tcp_stream``,
``serve_secure``/``open_secure_stream``), so the benchmark measures the code
paths applications run, handshake and authorization included.

A transport is rebuilt from a credentials directory (:func:`write_credentials`)
so that worker processes can construct the same transports as the parent.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, final

import trio

from keystore import Identity, TrustStore
from securesess import open_secure_stream, serve_secure
from securesess.bench import tls

__all__ = [
    "HOST",
    "LABELS",
    "NOISE",
    "TRANSPORTS",
    "Handler",
    "Transport",
    "load_transport",
    "write_credentials",
]

HOST: Final = "127.0.0.1"
#: Transport names, in the order of the report's columns.
TRANSPORTS: Final = ("tcp", "tls", "noise-aesgcm", "noise-chachapoly")
#: The SecureStream transports, which the report compares with the baselines.
NOISE: Final = ("noise-aesgcm", "noise-chachapoly")
LABELS: Final = {
    "tcp": "raw TCP",
    "tls": "TLS 1.3",
    "noise-aesgcm": "AESGCM",
    "noise-chachapoly": "ChaChaPoly",
}
_PROTOCOLS: Final = {
    "noise-aesgcm": "Noise_XX_25519_AESGCM_SHA256",
    "noise-chachapoly": "Noise_XX_25519_ChaChaPoly_SHA256",
}

#: Runs on each server-side stream once its handshake has completed.
Handler = Callable[[trio.abc.Stream], Awaitable[None]]


def write_credentials(directory: Path) -> None:
    """Create the TLS certificates and the Noise identities in ``directory``."""
    tls.write_credentials(directory, HOST)
    for role in ("server", "client"):
        path = directory / f"noise-{role}.key"
        path.write_bytes(Identity.generate(role).private_bytes())
        path.chmod(0o600)


def _port(listener: trio.abc.Listener[Any]) -> int:
    if not isinstance(listener, trio.SocketListener):
        raise TypeError(f"expected a SocketListener, got {listener!r}")
    port: int = listener.socket.getsockname()[1]
    return port


class Transport(abc.ABC):
    """One way of carrying a stream between two ends on loopback."""

    @abc.abstractmethod
    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on a free loopback port (passed to ``task_status``) until cancelled.

        ``handler`` gets each connection once the server side of the handshake
        (authorization included) has completed, and the connection is closed
        when it returns.
        """

    @abc.abstractmethod
    async def connect(self, port: int) -> trio.abc.Stream:
        """A client stream to ``port`` whose handshake has completed on this end."""


@final
class RawTcp(Transport):
    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=HOST))
            task_status.started(_port(listeners[0]))

    async def connect(self, port: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream(HOST, port)


@final
class Tls(Transport):
    def __init__(self, directory: Path) -> None:
        self._server_context = tls.server_context(directory)
        self._client_context = tls.client_context(directory)

    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # SSLStream handshakes lazily; finish it (client certificate checked)
        # before the handler runs, as serve_secure does.
        async def handshake_first(stream: trio.SSLStream[trio.SocketStream]) -> None:
            await stream.do_handshake()
            await handler(stream)

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(
                    trio.serve_ssl_over_tcp,
                    handshake_first,
                    0,
                    self._server_context,
                    host=HOST,
                )
            )
            task_status.started(_port(listeners[0].transport_listener))

    async def connect(self, port: int) -> trio.abc.Stream:
        stream = await trio.open_ssl_over_tcp_stream(HOST, port, ssl_context=self._client_context)
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream


@final
class Secure(Transport):
    def __init__(self, directory: Path, protocol: str) -> None:
        self._protocol = protocol
        self._server = Identity.from_private_bytes(
            (directory / "noise-server.key").read_bytes(), "server"
        )
        self._client = Identity.from_private_bytes(
            (directory / "noise-client.key").read_bytes(), "client"
        )
        self._server_trust = TrustStore()
        self._server_trust.add_peer("client", self._client.public_key)
        self._client_trust = TrustStore()
        self._client_trust.add_peer("server", self._server.public_key)

    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(
                    serve_secure,
                    handler,
                    0,
                    identity=self._server,
                    trust=self._server_trust,
                    host=HOST,
                    # The handshake rate measures handshakes, not the limit
                    # that keeps one source from starting too many.
                    handshake_rate=None,
                )
            )
            task_status.started(_port(listeners[0].transport_listener))

    async def connect(self, port: int) -> trio.abc.Stream:
        # Returns once the server's ACCEPT arrived: it has authorized us too.
        return await open_secure_stream(
            HOST,
            port,
            identity=self._client,
            trust=self._client_trust,
            expect=self._server.public_key,
            protocol=self._protocol,
        )


def load_transport(name: str, directory: Path) -> Transport:
    """The transport called ``name`` (one of :data:`TRANSPORTS`), with its credentials."""
    if name == "tcp":
        return RawTcp()
    if name == "tls":
        return Tls(directory)
    if name in _PROTOCOLS:
        return Secure(directory, _PROTOCOLS[name])
    raise ValueError(f"unknown transport {name!r}; expected one of {', '.join(TRANSPORTS)}")
