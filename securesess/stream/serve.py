"""Listening and connecting: SecureListener, serve_secure, open_secure_stream.

These mirror trio's TLS helpers (``SSLListener``, ``serve_ssl_over_tcp``,
``open_ssl_over_tcp_stream``) with one difference that matters for a server:
``serve_secure`` runs each handshake *before* calling the handler, under a
timeout and a cap on how many run at once, so a handler only ever sees an
authenticated peer, and a stalled or garbage client costs one bounded task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, final

import trio

from keystore import Identity, Peer, TrustStore
from securesess.constants import (
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_HANDSHAKE_RATE,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_HANDSHAKES,
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    REKEY_AFTER_RECORDS,
)
from securesess.stream.admission import handshake_first
from securesess.stream.protocols import check_psk, server_protocols
from securesess.stream.secure_stream import SecureStream

__all__ = ["SecureListener", "open_secure_stream", "serve_secure"]


@final
class SecureListener(trio.abc.Listener[SecureStream]):
    """Wraps a listener so that :meth:`accept` returns server-side SecureStreams.

    The handshake runs on the stream's first use (or ``do_handshake()``), as
    with :class:`trio.SSLListener`. Options are those of :class:`SecureStream`.
    """

    def __init__(
        self,
        transport_listener: trio.abc.Listener[trio.abc.Stream],
        *,
        identity: Identity,
        trust: TrustStore,
        expect: bytes | str | None = None,
        protocol: str | Sequence[str] | None = None,
        psk: bytes | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        rekey_after_records: int = REKEY_AFTER_RECORDS,
        authorize: Callable[[Peer], str | None] | None = None,
    ) -> None:
        self.transport_listener = transport_listener
        self._options: dict[str, Any] = {
            "identity": identity,
            "trust": trust,
            "expect": expect,
            "protocol": protocol,
            "psk": psk,
            "handshake_timeout": handshake_timeout,
            "rekey_after_records": rekey_after_records,
            "authorize": authorize,
        }
        # Bad options fail here rather than on the first connection.
        check_psk(psk)
        server_protocols(protocol, with_psk=psk is not None)

    @property
    def trust(self) -> TrustStore:
        """Whom new connections accept; set it to apply a new trust store to them."""
        trust: TrustStore = self._options["trust"]
        return trust

    @trust.setter
    def trust(self, trust: TrustStore) -> None:
        self._options["trust"] = trust

    async def accept(self) -> SecureStream:
        transport = await self.transport_listener.accept()
        return SecureStream(transport, server_side=True, **self._options)

    async def aclose(self) -> None:
        await self.transport_listener.aclose()


async def serve_secure(
    handler: Callable[[SecureStream], Awaitable[object]],
    port: int,
    *,
    identity: Identity,
    trust: TrustStore,
    host: str | bytes | None = None,
    expect: bytes | str | None = None,
    protocol: str | Sequence[str] | None = None,
    psk: bytes | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    rekey_after_records: int = REKEY_AFTER_RECORDS,
    authorize: Callable[[Peer], str | None] | None = None,
    max_concurrent_handshakes: int = DEFAULT_MAX_CONCURRENT_HANDSHAKES,
    max_handshakes_per_source: int | None = DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    max_connections_per_peer: int | None = DEFAULT_MAX_CONNECTIONS_PER_PEER,
    handshake_rate: float | None = DEFAULT_HANDSHAKE_RATE,
    handshake_burst: int = DEFAULT_HANDSHAKE_BURST,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[SecureListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve authenticated connections on ``port`` until cancelled.

    Like :func:`trio.serve_ssl_over_tcp`: ``await nursery.start(serve_secure,
    ...)`` returns the listeners (port 0 picks a free port). Each connection
    is handshaken first; ``handler(stream)`` runs only for peers the trust
    store accepts, and the stream is closed (gracefully) when it returns.
    ``authorize`` (see :class:`SecureStream`) refuses trusted peers that an
    access policy does not admit. Refused and failed handshakes are logged
    on the ``securesess`` logger. An exception that escapes ``handler`` (or
    an unexpected one in a handshake) closes that connection alone, and is
    logged once at ERROR with the peer's address: the server goes on.
    When ``max_concurrent_handshakes`` are in progress, new clients get a
    "busy" answer at once instead of waiting; so does a source (an IPv4
    address or IPv6 /64) that has ``max_handshakes_per_source`` in progress,
    or that starts more than ``handshake_rate`` handshakes a second on
    average, beyond bursts of ``handshake_burst`` (None turns either limit
    off). A peer may hold ``max_connections_per_peer`` connections at once
    (see :func:`handshake_first`).
    """

    async def handle_then_close(stream: SecureStream) -> None:
        await handler(stream)
        with trio.move_on_after(handshake_timeout):
            await stream.aclose()

    serve_one = handshake_first(
        handle_then_close,
        max_concurrent_handshakes=max_concurrent_handshakes,
        max_handshakes_per_source=max_handshakes_per_source,
        max_connections_per_peer=max_connections_per_peer,
        handshake_rate=handshake_rate,
        handshake_burst=handshake_burst,
    )
    tcp_listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    listeners = [
        SecureListener(
            listener,
            identity=identity,
            trust=trust,
            expect=expect,
            protocol=protocol,
            psk=psk,
            handshake_timeout=handshake_timeout,
            rekey_after_records=rekey_after_records,
            authorize=authorize,
        )
        for listener in tcp_listeners
    ]
    await trio.serve_listeners(
        serve_one, listeners, handler_nursery=handler_nursery, task_status=task_status
    )


async def open_secure_stream(
    host: str | bytes,
    port: int,
    *,
    identity: Identity,
    trust: TrustStore,
    expect: bytes | str | None,
    protocol: str | None = None,
    psk: bytes | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    happy_eyeballs_delay: float | None = 0.25,
) -> SecureStream:
    """Connect over TCP and complete the handshake (like ``open_ssl_over_tcp_stream``).

    ``expect`` is required, as trio's TLS helper checks the host name: the
    server's pinned or certified name, or its raw public key. ``None``
    accepts any server the trust store accepts, which every service
    certified by the same CA is: say so only on purpose.

    Raises:
        OSError: the TCP connection could not be made.
        HandshakeFailed: (or a subclass) see :meth:`SecureStream.do_handshake`.
    """
    transport = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    try:
        stream = SecureStream(
            transport,
            identity=identity,
            trust=trust,
            expect=expect,
            protocol=protocol,
            psk=psk,
            handshake_timeout=handshake_timeout,
        )
    except BaseException:
        await trio.aclose_forcefully(transport)
        raise
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
