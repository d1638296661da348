"""Wrapping an existing, connected stdlib socket."""

from __future__ import annotations

import socket as stdlib_socket
from typing import Unpack

import trio

from securesess.stream.options import SecureOptions, SecureOptionsArgs
from securesess.stream.secure_stream import SecureStream

__all__ = ["wrap_socket"]


def wrap_socket(
    sock: stdlib_socket.socket,
    options: SecureOptions | None = None,
    *,
    server_side: bool = False,
    **keywords: Unpack[SecureOptionsArgs],
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
    return SecureStream(transport, options, server_side=server_side, **keywords)
