"""Wrapping an existing, connected stdlib socket."""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import Callable, Sequence

import trio

from keystore import Identity, Peer, TrustStore
from securesess.constants import DEFAULT_HANDSHAKE_TIMEOUT, REKEY_AFTER_RECORDS
from securesess.stream.secure_stream import SecureStream

__all__ = ["wrap_socket"]


def wrap_socket(
    sock: stdlib_socket.socket,
    *,
    identity: Identity,
    trust: TrustStore,
    server_side: bool = False,
    expect: bytes | str | None = None,
    protocol: str | Sequence[str] | None = None,
    psk: bytes | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    rekey_after_records: int = REKEY_AFTER_RECORDS,
    authorize: Callable[[Peer], str | None] | None = None,
) -> SecureStream:
    """A SecureStream over a connected stdlib stream socket (TCP or Unix).

    The SecureStream takes ownership: the socket is switched to non-blocking
    mode and closed with the stream. The handshake runs on first use.
    Options are those of :class:`SecureStream`.

    Raises:
        ValueError: ``sock`` is not a stream socket.
    """
    if sock.type != stdlib_socket.SOCK_STREAM:
        raise ValueError(f"SecureStream needs a stream socket, not {sock.type!r}")
    transport = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    return SecureStream(
        transport,
        identity=identity,
        trust=trust,
        server_side=server_side,
        expect=expect,
        protocol=protocol,
        psk=psk,
        handshake_timeout=handshake_timeout,
        rekey_after_records=rekey_after_records,
        authorize=authorize,
    )
