"""Listening and connecting: SecureListener, serve_secure, open_secure_stream.

These mirror trio's TLS helpers (``SSLListener``, ``serve_ssl_over_tcp``,
``open_ssl_over_tcp_stream``) with one difference that matters for a server:
``serve_secure`` runs each handshake *before* calling the handler, under a
timeout and a cap on how many run at once, so a handler only ever sees an
authenticated peer, and a stalled or garbage client costs one bounded task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Unpack, final

import trio

from keystore import TrustStore
from securesess.stream.admission import OnFailure, handshake_first, log_failure
from securesess.stream.options import (
    AdmissionLimits,
    SecureOptions,
    SecureOptionsArgs,
    ServeArgs,
    merged,
    unexpected,
)
from securesess.stream.protocols import server_protocols
from securesess.stream.secure_stream import SecureStream

__all__ = ["SecureListener", "SecureServer", "open_secure_stream", "serve_secure"]


@final
class SecureListener(trio.abc.Listener[SecureStream]):
    """Wraps a listener so that :meth:`accept` returns server-side SecureStreams.

    The handshake runs on the stream's first use (or ``do_handshake()``), as
    with :class:`trio.SSLListener`. Options are those of :class:`SecureStream`.
    """

    def __init__(
        self,
        transport_listener: trio.abc.Listener[trio.abc.Stream],
        options: SecureOptions | None = None,
        **keywords: Unpack[SecureOptionsArgs],
    ) -> None:
        unexpected(keywords, SecureOptions)
        self.transport_listener = transport_listener
        self.options = merged(SecureOptions, options, keywords)
        # A responder's names fail here rather than on the first connection.
        server_protocols(self.options.protocol, with_psk=self.options.psk is not None)

    @property
    def trust(self) -> TrustStore:
        """Whom new connections accept; set it to apply a new trust store to them."""
        return self.options.trust

    @trust.setter
    def trust(self, trust: TrustStore) -> None:
        self.options = self.options.replace(trust=trust)

    async def accept(self) -> SecureStream:
        transport = await self.transport_listener.accept()
        return SecureStream(transport, self.options, server_side=True)

    async def aclose(self) -> None:
        await self.transport_listener.aclose()


@final
class SecureServer:
    """What every securesess server is built from: listeners, admission, containment.

    ``serve_secure``, the hub and the tunnel's server end each make one:
    ``handler(stream)`` runs for each connection whose handshake succeeded
    and that ``admission`` keeps (see :func:`handshake_first`);
    ``on_failure`` hears of the others. Setting :attr:`trust` applies a new
    trust store to every handshake from then on.
    """

    def __init__(
        self,
        handler: Callable[[SecureStream], Awaitable[object]],
        options: SecureOptions,
        admission: AdmissionLimits | None = None,
        *,
        on_failure: OnFailure = log_failure,
    ) -> None:
        server_protocols(options.protocol, with_psk=options.psk is not None)
        self._options = options
        self._serve_one = handshake_first(
            handler, admission or AdmissionLimits(), on_failure=on_failure
        )
        self.listeners: list[SecureListener] = []

    @property
    def trust(self) -> TrustStore:
        return self._options.trust

    @trust.setter
    def trust(self, trust: TrustStore) -> None:
        self._options = self._options.replace(trust=trust)
        for listener in self.listeners:
            listener.trust = trust

    async def serve(
        self,
        port: int,
        *,
        host: str | bytes | None = None,
        backlog: int | None = None,
        handler_nursery: trio.Nursery | None = None,
        task_status: trio.TaskStatus[list[SecureListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``port`` over TCP until cancelled (``nursery.start`` gives the listeners)."""
        transport_listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
        await self.serve_listeners(
            transport_listeners, handler_nursery=handler_nursery, task_status=task_status
        )

    async def serve_listeners(
        self,
        transport_listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        handler_nursery: trio.Nursery | None = None,
        task_status: trio.TaskStatus[list[SecureListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on listeners the caller opened, until cancelled; closes them."""
        self.listeners = [
            SecureListener(listener, self._options) for listener in transport_listeners
        ]
        await trio.serve_listeners(
            self._serve_one,
            self.listeners,
            handler_nursery=handler_nursery,
            task_status=task_status,
        )


async def serve_secure(
    handler: Callable[[SecureStream], Awaitable[object]],
    port: int,
    options: SecureOptions | None = None,
    *,
    admission: AdmissionLimits | None = None,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[SecureListener]] = trio.TASK_STATUS_IGNORED,
    **keywords: Unpack[ServeArgs],
) -> None:
    """Serve authenticated connections on ``port`` until cancelled.

    Like :func:`trio.serve_ssl_over_tcp`: ``await nursery.start(serve_secure,
    ...)`` returns the listeners (port 0 picks a free port). Each connection
    is handshaken first; ``handler(stream)`` runs only for peers the trust
    store accepts, and the stream is closed (gracefully) when it returns.
    ``options`` (:class:`SecureOptions`) say who the server is and whom it
    trusts; its ``authorize`` refuses trusted peers that an access policy
    does not admit. Refused and failed handshakes are logged on the
    ``securesess`` logger. An exception that escapes ``handler`` (or an
    unexpected one in a handshake) closes that connection alone, and is
    logged once at ERROR with the peer's address: the server goes on.

    ``admission`` (:class:`AdmissionLimits`) bounds the handshakes: when
    ``max_concurrent_handshakes`` are in progress, new clients get a "busy"
    answer at once instead of waiting; so does a source (an IPv4 address or
    IPv6 /64) that has ``max_handshakes_per_source`` in progress, or that
    starts more than ``handshake_rate`` handshakes a second on average,
    beyond bursts of ``handshake_burst`` (None turns either limit off). A
    peer may hold ``max_connections_per_peer`` connections at once (see
    :func:`handshake_first`). The fields of both may be given as keyword
    arguments too.
    """
    unexpected(keywords, SecureOptions, AdmissionLimits)
    secure = merged(SecureOptions, options, keywords)

    async def handle_then_close(stream: SecureStream) -> None:
        await handler(stream)
        with trio.move_on_after(secure.handshake_timeout):
            await stream.aclose()

    server = SecureServer(handle_then_close, secure, merged(AdmissionLimits, admission, keywords))
    await server.serve(
        port, host=host, backlog=backlog, handler_nursery=handler_nursery, task_status=task_status
    )


async def open_secure_stream(
    host: str | bytes,
    port: int,
    options: SecureOptions | None = None,
    *,
    happy_eyeballs_delay: float | None = 0.25,
    **keywords: Unpack[SecureOptionsArgs],
) -> SecureStream:
    """Connect over TCP and complete the handshake (like ``open_ssl_over_tcp_stream``).

    ``expect`` is required, as trio's TLS helper checks the host name: the
    server's pinned or certified name, or its raw public key, in ``options``
    or as a keyword. ``None`` accepts any server the trust store accepts,
    which every service certified by the same CA is: say so only on purpose.

    Raises:
        TypeError: no ``options`` and no ``expect=``.
        OSError: the TCP connection could not be made.
        HandshakeFailed: (or a subclass) see :meth:`SecureStream.do_handshake`.
    """
    if options is None and "expect" not in keywords:
        raise TypeError(
            "open_secure_stream needs expect=: the server's name or public key "
            "(None accepts any server the trust store accepts)"
        )
    unexpected(keywords, SecureOptions)
    secure = merged(SecureOptions, options, keywords)
    transport = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    try:
        stream = SecureStream(transport, secure)
    except BaseException:
        await trio.aclose_forcefully(transport)
        raise
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
