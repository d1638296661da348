"""One carried connection: its two relays, how it ends, and its log line."""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import select
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, final

import trio

from keystore import Peer
from securesess.constants import CloseCode
from securesess.errors import (
    PeerAborted,
)
from securesess.stream.containment import split_errors
from securesess.stream.secure_stream import SecureStream

log = logging.getLogger("securesess.tunnel")

# Where epoll is missing, how often a half-closed plain leg is checked for a reset.
_RESET_POLL: Final = 1.0
# Bytes a relay reads at once: enough for SecureStream to seal full batches
# of records, little enough that a thousand connections stay cheap.
_CHUNK: Final = 256 * 1024
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Outcome(enum.StrEnum):
    """How a tunnelled connection ended: the ``outcome`` field of its log line."""

    #: Both directions ended cleanly.
    CLOSED = "closed"
    #: Never carried: not admitted, over a limit, or the far side unreachable.
    REFUSED = "refused"
    #: Ended abnormally: a reset, tampering, a cut connection, a timeout.
    FAILED = "failed"
    #: Ended by this tunnel end: it is shutting down, the connection was idle
    #: too long, or the peer lost its access.
    CUT = "cut"


def describe(exc: BaseException) -> str:
    """The most precise reason a stream operation or a connect failed."""
    while isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, PeerAborted):
        return exc.reason
    if isinstance(exc, OSError):
        # Not exc.strerror for system errors: trio puts the address in it.
        # A resolver error's errno is its own (negative) code, with its text.
        if isinstance(exc, socket.gaierror) and exc.strerror:
            return exc.strerror.lower()
        if exc.errno and exc.errno > 0:
            return os.strerror(exc.errno).lower()
        # trio.open_tcp_stream: one OSError per address tried, in a group.
        if isinstance(exc.__cause__, BaseExceptionGroup):
            errors = {describe(error) for error in exc.__cause__.exceptions}
            return ", ".join(sorted(errors))
    return str(exc) or type(exc).__name__


def logfmt(fields: dict[str, object]) -> str:
    """``key=value`` pairs; a value with spaces, quotes or controls is a JSON string."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or not text.isprintable() or any(c in text for c in ' "=\\'):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


@final
@dataclass(eq=False)
class Connection:
    """One carried connection: what its log line says, and how its legs must close."""

    number: int
    end: str
    source: str
    target: str
    peer: Peer | None = None
    # Whether this end tried to connect to ``target``: a line names only
    # where it went, not where a refused connection would have gone.
    dialled: bool = False
    started: float = field(default_factory=trio.current_time)
    up: int = 0
    down: int = 0
    # None while undecided: only relays that both ended normally make it
    # CLOSED, so any other way out (a cancel, a bug) is never a clean close.
    outcome: Outcome | None = None
    reason: str = ""
    # The CLOSE record owed to the secure leg; None when that leg itself
    # broke (or the connection closed cleanly).
    close: tuple[CloseCode, str] | None = None
    # Whether this end has sent END on the secure leg.
    secure_ended: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def end_with(
        self, outcome: Outcome, reason: str, close: tuple[CloseCode, str] | None = None
    ) -> None:
        """Record how the connection ends; the first cause is the one that counts."""
        if self.outcome is None:
            self.outcome, self.reason, self.close = outcome, reason, close

    @property
    def going(self) -> bool:
        """Nothing has ended it yet."""
        return self.outcome is None

    def cut(self, code: CloseCode, reason: str) -> None:
        """End it from outside: shutting down, or its peer lost access."""
        self.end_with(Outcome.CUT, reason, (code, reason))
        self.scope.cancel()

    def report(self) -> None:
        fields: dict[str, object] = {"connection": self.number, "end": self.end}
        fields["from"] = self.source
        if self.peer is not None:
            fields["peer"] = self.peer.name or "-"
            fields["key"] = self.peer.fingerprint
        if self.dialled:
            fields["to"] = self.target
        fields |= {
            "up": self.up,
            "down": self.down,
            "duration": f"{trio.current_time() - self.started:.3f}",
            "outcome": (self.outcome or Outcome.CUT).value,
        }
        if self.reason:
            fields["reason"] = self.reason
        # A failed handshake at the server end is a stranger's doing, and a
        # flood of them must not fill the warnings: those are for known
        # peers. At the client end the application is local and the server
        # end is the operator's own: whatever goes wrong there is trouble.
        stranger = self.end == "server" and self.peer is None
        quiet = self.outcome in (Outcome.CLOSED, Outcome.CUT) or stranger
        log.log(logging.INFO if quiet else logging.WARNING, "%s", logfmt(fields))


async def reset(stream: trio.SocketStream) -> None:
    """Close abortively, so the application sees an error rather than a clean end."""
    # If the socket is already gone, closing is all that is left to do.
    with contextlib.suppress(OSError, trio.ClosedResourceError):
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    await trio.aclose_forcefully(stream)


class LegFailed(Exception):
    """A leg of a connection broke; the message names it and says why."""

    def __init__(self, leg: str, stream: trio.abc.Stream, cause: BaseException) -> None:
        super().__init__(f"{leg}: {describe(cause)}")
        self.secure = isinstance(stream, SecureStream)
        root: BaseException = cause
        while isinstance(root, trio.BrokenResourceError) and root.__cause__ is not None:
            root = root.__cause__
        # The server end refuses after the handshake when it cannot serve.
        self.refused = isinstance(root, PeerAborted) and root.code == CloseCode.UNAVAILABLE


async def relay_one_way(
    source: trio.abc.HalfCloseableStream,
    sink: trio.abc.HalfCloseableStream,
    names: tuple[str, str],
    count: Callable[[int], None],
) -> None:
    """Copy ``source`` to ``sink`` until end of stream, then half-close ``sink``.

    ``count(n)`` hears of each ``n`` bytes handed on.

    Raises:
        LegFailed: naming (by ``names``: source's, sink's) the leg that broke.
    """
    while True:
        try:
            data = await source.receive_some(_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise LegFailed(names[0], source, exc) from exc
        try:
            if not data:
                await sink.send_eof()
                return
            await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise LegFailed(names[1], sink, exc) from exc
        count(len(data))


async def reset_after_eof(leg: trio.abc.Stream, name: str) -> None:
    """Wait for the reset of a leg that has ended its direction; raise it.

    After a FIN a socket reads as "end of stream" at once, for ever, and
    after ``END`` a SecureStream reads nothing more, not even a ``CLOSE``;
    so reading cannot wait for what comes next, and no relay reads the leg
    any more. A reset would go unseen until something is written to it
    (perhaps never, if the far side has nothing to say). Polled with no
    events, a socket wakes only with an error or a hang-up: the reset, or
    both directions closed (nothing more to watch). Returns in that last
    case, and at once for a leg that is not over a socket.

    Raises:
        LegFailed: naming ``name``, once the leg is reset.
    """
    stream = leg.transport_stream if isinstance(leg, SecureStream) else leg
    if not isinstance(stream, trio.SocketStream):
        return
    sock = stream.socket
    if hasattr(select, "epoll"):
        # An epoll set is itself a file that polls readable when a member
        # is ready: waiting on it leaves the socket to the other relay.
        with select.epoll(1) as watch:
            watch.register(sock.fileno(), 0)
            await trio.lowlevel.wait_readable(watch.fileno())
    elif hasattr(select, "poll"):
        poll = select.poll()
        poll.register(sock.fileno(), 0)
        while not poll.poll(0):
            await trio.sleep(_RESET_POLL)
    else:  # nothing to wait with: a reset shows when the other relay writes
        await trio.sleep_forever()
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        # A reset after the peer's FIN reads as EPIPE (the pipe it closed).
        if error == errno.EPIPE:
            error = errno.ECONNRESET
        cause = ConnectionResetError(error, os.strerror(error))
        raise LegFailed(name, leg, cause) from cause


@contextlib.contextmanager
def ending(connection: Connection) -> Iterator[None]:
    """Contain one connection's bugs: log them and end only that connection.

    Cancellation (bare or in a group, as nurseries raise it) goes on up;
    :meth:`TunnelEnd._close` then sees no outcome and cuts the connection.
    """
    try:
        yield
    except BaseException as exc:
        errors, rest = split_errors(exc)
        if errors is not None:
            log.error("connection %d: unexpected error", connection.number, exc_info=errors)
            reason = "internal error in the tunnel"
            connection.end_with(Outcome.FAILED, reason, (CloseCode.RELAY_FAILED, reason))
        if rest is exc:
            raise
        if rest is not None:
            raise rest from None
