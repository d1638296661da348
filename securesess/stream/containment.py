"""One connection's trouble stays that connection's: containing errors, and naming peers.

``trio.serve_listeners`` runs every connection in one nursery, so an
exception that escapes one handler would end the server; :func:`contained`
ends that connection instead, and says so once, with the peer's address.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio

__all__ = ["contained", "format_address", "peer_address", "printable", "split_errors"]

log = logging.getLogger("securesess")

StreamT = TypeVar("StreamT", bound=trio.abc.Stream)

# How deep peer_address looks through streams wrapped around a socket.
_MAX_WRAPPERS: Final = 16


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_address(stream: trio.abc.Stream) -> str:
    """``host:port`` of the far end of a socket stream, or of a stream wrapped
    around one (each wrapper's ``transport_stream``, as Trio names it)."""
    transport: object = stream
    for _ in range(_MAX_WRAPPERS):
        if isinstance(transport, trio.SocketStream) or not hasattr(transport, "transport_stream"):
            break
        transport = transport.transport_stream
    if isinstance(transport, trio.SocketStream):
        try:
            address = transport.socket.getpeername()
        except OSError:
            return "an unknown address"
        if isinstance(address, tuple):
            return format_address(str(address[0]), address[1])
        return str(address) or "a local socket"
    return "a non-socket transport"


def contained(
    handler: Callable[[StreamT], Awaitable[object]],
) -> Callable[[StreamT], Awaitable[None]]:
    """``handler``, made safe for ``trio.serve_listeners``: one connection's
    unexpected error never stops the server.

    ``trio.serve_listeners`` runs every connection in one nursery, so an
    exception that escapes one handler cancels them all and ends the
    server. Here it ends that connection instead, and the stream is closed
    forcefully. The error is logged once, with the peer's address: at ERROR
    with the traceback (which holds no secret: no error of this package puts
    key material in its message), or, for a stream that broke
    (``BrokenResourceError`` or ``ClosedResourceError``: the peer vanished
    or broke the protocol, which is no bug), at INFO in one line.
    Cancellation, and exceptions that are not :class:`Exception`
    (KeyboardInterrupt, SystemExit), still propagate, alone or in a group.
    """

    async def run(stream: StreamT) -> None:
        try:
            await handler(stream)
        except BaseException as exc:
            errors, rest = split_errors(exc)
            if errors is not None:
                if _broken_only(errors):
                    # A peer that vanished or broke the protocol is no bug:
                    # one line, its text made printable (a peer's CLOSE
                    # reason is in it, and must not forge log lines).
                    log.info(
                        "the connection from %s broke: %s",
                        peer_address(stream),
                        printable(_reason(errors)),
                    )
                else:
                    log.error(
                        "unexpected error in the connection from %s; closed it, serving the others",
                        peer_address(stream),
                        exc_info=errors,
                    )
                await trio.aclose_forcefully(stream)
            if rest is exc:
                raise
            if rest is not None:
                raise rest from None

    return run


def _broken_only(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_broken_only(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError)


def _reason(exc: BaseException) -> str:
    """What broke, from the first error in ``exc``: its cause, when it has one."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"


def printable(text: str) -> str:
    """``text`` on one line: control characters and the like as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def split_errors(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """``exc`` as (its errors, the rest): Cancelled and the like, bare or in a
    group as nurseries raise them, must go on up; errors stop here."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(Exception)
    if isinstance(exc, Exception):
        return exc, None
    return None, exc
