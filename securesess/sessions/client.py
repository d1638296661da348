"""The hub client: :func:`connect_hub`, which opens a :class:`HubConnection`.

The connection and its sessions are :mod:`securesess.sessions.hub_connection`
and :mod:`securesess.sessions.session`; this module is where users start.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Unpack

from securesess.constants import (
    DEFAULT_CLIENT_BACKLOG,
    DEFAULT_CLIENT_SESSION_STATE,
    DEFAULT_REQUEST_TIMEOUT,
)
from securesess.sessions.hub_connection import HubConnection
from securesess.sessions.session import Session
from securesess.stream.options import SecureOptions, SecureOptionsArgs, merged, unexpected
from securesess.stream.serve import open_secure_stream

__all__ = [
    "HubConnection",
    "Session",
    "connect_hub",
]


def connect_hub(
    host: str,
    port: int,
    options: SecureOptions | None = None,
    *,
    max_backlog: int = DEFAULT_CLIENT_BACKLOG,
    max_session_state: int = DEFAULT_CLIENT_SESSION_STATE,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    **keywords: Unpack[SecureOptionsArgs],
) -> contextlib.AbstractAsyncContextManager[HubConnection]:
    """Connect to a hub: ``async with connect_hub(host, port, identity=..., trust=...,
    expect="hub") as hub``.

    ``options`` (:class:`SecureOptions`, or its fields as keyword arguments)
    are those of :func:`open_secure_stream`. ``expect`` is required: the
    hub's pinned or certified name, or its raw public key. Without it any
    peer the trust store accepts, any service of the same CA, could pose as
    the hub and read what is sent to sessions.

    ``request_timeout`` bounds the wait for the hub's WELCOME and for each
    answer (None: no bound); a request that times out raises
    :class:`HubTimeout` and leaves the connection usable.

    ``max_backlog`` bounds each session's unread events, and
    ``max_session_state`` the bytes of its members and variables: a
    session over either is left, and ends with :class:`SessionClosed`.

    Raises:
        OSError: no TCP connection.
        HandshakeFailed: (a subclass) the hub is not trusted or not ``expect``,
            or it refused us: :class:`PeerRejected` with ``code`` 3 when its
            policy does not admit us, or 1 when it does not trust our key.
        TypeError: no ``options`` and no ``expect=``, at the call.
        ValueError: ``expect`` is None, at the call.
    """
    if options is None and "expect" not in keywords:
        raise TypeError("connect_hub needs expect=: the hub's name or public key")
    unexpected(keywords, SecureOptions)
    secure = merged(SecureOptions, options, keywords)
    if secure.expect is None:
        raise ValueError("connect_hub needs expect=: the hub's name or public key")
    return _connected(
        host,
        port,
        secure,
        max_backlog=max_backlog,
        max_session_state=max_session_state,
        request_timeout=request_timeout,
    )


@contextlib.asynccontextmanager
async def _connected(
    host: str,
    port: int,
    options: SecureOptions,
    *,
    max_backlog: int,
    max_session_state: int,
    request_timeout: float | None,
) -> AsyncIterator[HubConnection]:
    stream = await open_secure_stream(host, port, options)
    async with HubConnection.over(
        stream,
        max_backlog=max_backlog,
        max_session_state=max_session_state,
        request_timeout=request_timeout,
    ) as connection:
        yield connection
