"""Tunnels: plain TCP connections carried over SecureStreams, as spiped and stunnel do.

Theory of operation
-------------------

A tunnel has two ends. The **client end** listens for plain connections
(normally on loopback, from an application that cannot be changed) and
carries each over its own SecureStream to the **server end**, which
authenticates the peer, asks the policy, and only then connects to the
backend it forwards to. An unauthenticated, untrusted or refused peer never
causes a backend connection: admission is decided inside the handshake, and
the backend is dialled by the connection handler, which
:func:`~securesess.stream.serve.handshake_first` runs only after a handshake that
succeeded.

Each carried connection is two relays, *up* (application to service) and
*down* (service to application). A relay holds one chunk at a time: it
reads the next only once the last has been handed on, so a slow reader
anywhere pushes back on the writer at the far end through the TCP windows,
and no buffer grows.

Endings map one to one between the legs, so that neither application can
take a cut stream for a complete one:

* a clean end of one direction (a TCP FIN, an ``END`` record) is passed on
  as a half-close, and the other direction goes on;
* anything abnormal (a reset, a record that fails authentication, a
  connection cut without ``END``) ends the whole connection: the plain leg
  is reset (RST), and the secure leg gets a ``CLOSE`` record with the
  reason, which the other end turns into a reset of its own plain leg;
  or, once this end has sent ``END`` (after which the other end reads no
  record), a TCP reset of its own;
* a leg whose direction has ended is still watched, for that reset: an
  application that sends its request and FIN, then resets, ends the
  connection at once, not when the service next writes;
* a connection that carries nothing either way for ``idle_timeout`` (12
  hours by default) is cut, with ``CLOSE`` 8.

Every connection ends with one log line on the ``securesess.tunnel``
logger, in logfmt: its number, from where, the authenticated peer, to where,
bytes each way, duration, and the :class:`Outcome` with its reason.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import itertools
import json
import logging
import os
import select
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, final

import trio

from handshake import NoiseProtocol
from keystore import Certificate, Identity, Peer, TrustStore
from securesess.errors import (
    HandshakeFailed,
    NegotiationFailed,
    PeerAborted,
    PeerNotTrusted,
    PeerRejected,
)
from securesess.policy import Policy, readmission
from securesess.stream.protocols import server_protocols
from securesess.stream.ratelimit import (
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_HANDSHAKE_RATE,
)
from securesess.stream.records import REKEY_AFTER_RECORDS, CloseCode
from securesess.stream.secure_stream import DEFAULT_HANDSHAKE_TIMEOUT, SecureStream
from securesess.stream.serve import (
    DEFAULT_MAX_CONCURRENT_HANDSHAKES,
    DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    SecureListener,
    contained,
    format_address,
    handshake_first,
    peer_address,
    split_errors,
    until_expired,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "Outcome",
    "TunnelClient",
    "TunnelServer",
]

log = logging.getLogger("securesess.tunnel")

#: Connections one tunnel end carries at once; more are refused.
DEFAULT_MAX_CONNECTIONS: Final = 1024
#: How long a tunnel end waits for a TCP connection to the far side.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: How long a connection may carry nothing, either way, before it is cut
#: (stunnel's default too): long enough for an idle pool, short enough that
#: connections whose ends vanished without a word do not pile up for ever.
DEFAULT_IDLE_TIMEOUT: Final = 12 * 3600.0
# Where epoll is missing, how often a half-closed plain leg is checked for a reset.
_RESET_POLL: Final = 1.0
# Bytes a relay reads at once: enough for SecureStream to seal full batches
# of records, little enough that a thousand connections stay cheap.
_CHUNK: Final = 256 * 1024
# How long closing may take once a connection is over (a CLOSE record, a FIN),
# of which up to _LINGER is spent letting the peer read a CLOSE's reason.
_CLOSE_GRACE: Final = 2.0
_LINGER: Final = 1.0
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


def _describe(exc: BaseException) -> str:
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
            errors = {_describe(error) for error in exc.__cause__.exceptions}
            return ", ".join(sorted(errors))
    return str(exc) or type(exc).__name__


def _logfmt(fields: dict[str, object]) -> str:
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
class _Connection:
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
        log.log(logging.INFO if quiet else logging.WARNING, "%s", _logfmt(fields))


async def _reset(stream: trio.SocketStream) -> None:
    """Close abortively, so the application sees an error rather than a clean end."""
    # If the socket is already gone, closing is all that is left to do.
    with contextlib.suppress(OSError, trio.ClosedResourceError):
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    await trio.aclose_forcefully(stream)


class _LegFailed(Exception):
    """A leg of a connection broke; the message names it and says why."""

    def __init__(self, leg: str, stream: trio.abc.Stream, cause: BaseException) -> None:
        super().__init__(f"{leg}: {_describe(cause)}")
        self.secure = isinstance(stream, SecureStream)
        root: BaseException = cause
        while isinstance(root, trio.BrokenResourceError) and root.__cause__ is not None:
            root = root.__cause__
        # The server end refuses after the handshake when it cannot serve.
        self.refused = isinstance(root, PeerAborted) and root.code == CloseCode.UNAVAILABLE


async def _relay(
    source: trio.abc.HalfCloseableStream,
    sink: trio.abc.HalfCloseableStream,
    names: tuple[str, str],
    count: Callable[[int], None],
) -> None:
    """Copy ``source`` to ``sink`` until end of stream, then half-close ``sink``.

    ``count(n)`` hears of each ``n`` bytes handed on.

    Raises:
        _LegFailed: naming (by ``names``: source's, sink's) the leg that broke.
    """
    while True:
        try:
            data = await source.receive_some(_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _LegFailed(names[0], source, exc) from exc
        try:
            if not data:
                await sink.send_eof()
                return
            await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _LegFailed(names[1], sink, exc) from exc
        count(len(data))


async def _reset_after_eof(leg: trio.abc.Stream, name: str) -> None:
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
        _LegFailed: naming ``name``, once the leg is reset.
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
        raise _LegFailed(name, leg, cause) from cause


@contextlib.contextmanager
def _ending(connection: _Connection) -> Iterator[None]:
    """Contain one connection's bugs: log them and end only that connection.

    Cancellation (bare or in a group, as nurseries raise it) goes on up;
    :meth:`_TunnelEnd._close` then sees no outcome and cuts the connection.
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


class _TunnelEnd:
    """What both ends share: listening, limits, draining, relaying, closing."""

    _end: str

    def __init__(
        self,
        target: tuple[str, int],
        *,
        trust: TrustStore,
        max_connections: int,
        connect_timeout: float,
        idle_timeout: float | None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError("idle_timeout must be positive (or None)")
        self.max_connections: Final = max_connections
        self.connect_timeout: Final = connect_timeout
        #: How long a connection may carry nothing either way before it is cut.
        self.idle_timeout: Final = idle_timeout
        self._target = target
        self._target_text = format_address(*target)
        self._trust = trust
        self._open: set[_Connection] = set()
        self._numbers = itertools.count(1)
        self._closed = trio.lowlevel.ParkingLot()
        self._accepting = trio.CancelScope()
        self._everything = trio.CancelScope()
        self._draining = False
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port of the first listener (useful after ``port=0``)."""
        if self._port is None:
            raise RuntimeError("this tunnel end is not serving")
        return self._port

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` has been called."""
        return self._draining

    @property
    def connections(self) -> int:
        """How many connections it carries (or is setting up) now."""
        return len(self._open)

    async def serve(
        self,
        port: int,
        *,
        host: str | None = None,
        backlog: int | None = None,
        task_status: trio.TaskStatus[_TunnelEnd] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``port`` until cancelled or drained (``nursery.start`` gives ``self``).

        Cancelling cuts every connection at once; :meth:`drain` lets them end.
        """
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
        self._port = listeners[0].socket.getsockname()[1]
        try:
            with self._everything:
                async with trio.open_nursery() as connections:
                    with self._accepting:
                        async with trio.open_nursery() as accepting:
                            await accepting.start(self._serve_listeners, listeners, connections)
                            task_status.started(self)
        finally:
            # serve_listeners closes them, unless it never got to start.
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    async def _serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        raise NotImplementedError

    async def drain(self, timeout: float) -> None:
        """Stop accepting; give open connections ``timeout`` seconds to end, then cut them.

        :meth:`serve` returns once the last one is gone.
        """
        self._draining = True
        self._accepting.cancel()  # closes the listeners: new clients are refused at once
        if self._open:
            log.info("draining %d connection(s) for up to %g s", len(self._open), timeout)
        with trio.move_on_after(timeout):
            while self._open:
                await self._closed.park()
        for connection in list(self._open):
            connection.cut(CloseCode.SHUTTING_DOWN, "the tunnel is shutting down")
        # Handshakes still running have nothing left to finish for.
        self._everything.cancel()

    async def _dial(self, connection: _Connection) -> trio.SocketStream | str:
        """A TCP connection to the far side for ``connection``, or why there is none."""
        connection.dialled = True
        host, port = self._target
        try:
            with trio.fail_after(self.connect_timeout):
                return await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            return f"no answer within {self.connect_timeout:g} s"
        except OSError as exc:
            return _describe(exc)

    def _admit(self, source: str, peer: Peer | None) -> _Connection:
        """A new connection, open unless a limit or a drain refuses it."""
        connection = _Connection(
            next(self._numbers), self._end, source, self._target_text, peer=peer
        )
        if self._draining:
            reason = "the tunnel is shutting down"
            connection.end_with(Outcome.REFUSED, reason, (CloseCode.SHUTTING_DOWN, reason))
        elif len(self._open) >= self.max_connections:
            reason = f"the tunnel is at its limit of {self.max_connections} connections"
            connection.end_with(Outcome.REFUSED, reason, (CloseCode.UNAVAILABLE, reason))
        else:
            self._open.add(connection)
        return connection

    def _refusal(self, peer: Peer) -> str | None:
        """Why the current trust (and policy) no longer admit ``peer``, if they do not."""
        raise NotImplementedError

    def _readmit(self) -> None:
        """Cut the connections whose peer the current trust or policy no longer admits."""
        for connection in list(self._open):
            if connection.peer is not None:
                reason = self._refusal(connection.peer)
                if reason is not None:
                    connection.cut(CloseCode.ACCESS_DENIED, reason)

    async def _carry(
        self,
        connection: _Connection,
        secure: SecureStream,
        plain: trio.SocketStream,
        *,
        names: tuple[str, str],
    ) -> None:
        """Relay both ways until both directions have ended, or a leg breaks.

        ``names`` name the (secure, plain) legs for the log.
        """
        up, down = [0], [0]
        secure_leg, plain_leg = names
        to_secure = (plain, secure, (plain_leg, secure_leg))
        to_plain = (secure, plain, (secure_leg, plain_leg))
        # Where the application's bytes come in: the plain leg at the client end.
        upward, downward = (to_secure, to_plain) if self._end == "client" else (to_plain, to_secure)
        active = [trio.current_time()]  # when a byte last went either way
        ended = [0]  # directions that ended cleanly

        async def relay(
            nursery: trio.Nursery,
            streams: tuple[
                trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream, tuple[str, str]
            ],
            counted: list[int],
        ) -> None:
            def count(size: int) -> None:
                counted[0] += size
                active[0] = trio.current_time()

            source, sink, (source_leg, _) = streams
            try:
                await _relay(*streams, count)
                if sink is secure:
                    connection.secure_ended = True
                ended[0] += 1
                if ended[0] == 2:
                    nursery.cancel_scope.cancel()
                else:
                    # The other way goes on: a reset of this leg must still end it.
                    await _reset_after_eof(source, source_leg)
            except _LegFailed as failure:
                reason = str(failure)
                if failure.refused:
                    connection.end_with(Outcome.REFUSED, reason)
                elif failure.secure:  # that leg is broken: nothing more can be sent on it
                    connection.end_with(Outcome.FAILED, reason)
                else:
                    connection.end_with(Outcome.FAILED, reason, (CloseCode.RELAY_FAILED, reason))
                nursery.cancel_scope.cancel()

        async def cut_at_expiry(nursery: trio.Nursery, certificate: Certificate) -> None:
            await until_expired(certificate)
            reason = "the peer's certificate expired"
            connection.end_with(Outcome.CUT, reason, (CloseCode.NOT_TRUSTED, reason))
            nursery.cancel_scope.cancel()

        async def cut_when_idle(nursery: trio.Nursery, timeout: float) -> None:
            while (deadline := active[0] + timeout) > trio.current_time():
                await trio.sleep_until(deadline)
            reason = f"idle for {timeout:g} s"
            connection.end_with(Outcome.CUT, reason, (CloseCode.IDLE, reason))
            nursery.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(relay, nursery, upward, up)
                nursery.start_soon(relay, nursery, downward, down)
                if self.idle_timeout is not None:
                    nursery.start_soon(cut_when_idle, nursery, self.idle_timeout)
                if connection.peer is not None and connection.peer.certificate is not None:
                    nursery.start_soon(cut_at_expiry, nursery, connection.peer.certificate)
            connection.end_with(Outcome.CLOSED, "")  # unless a relay failed first
        finally:
            connection.up, connection.down = up[0], down[0]

    async def _close(
        self,
        connection: _Connection,
        secure: SecureStream | None,
        plain: trio.SocketStream | None,
    ) -> None:
        """Close both legs in the way that tells each side how the connection ended."""
        self._open.discard(connection)
        self._closed.unpark_all()
        if connection.going:  # cancelled from outside: the tunnel end is stopping
            reason = "the tunnel is shutting down"
            connection.end_with(Outcome.CUT, reason, (CloseCode.SHUTTING_DOWN, reason))
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_CLOSE_GRACE):
                if connection.outcome is Outcome.CLOSED:
                    if secure is not None:
                        await secure.aclose()
                    if plain is not None:
                        await plain.aclose()
                else:
                    if plain is not None:
                        await _reset(plain)
                    transport = None if secure is None else secure.transport_stream
                    if connection.secure_ended and isinstance(transport, trio.SocketStream):
                        # After our END the peer reads nothing, not even a
                        # CLOSE: a reset is what it can see (and watches for).
                        await _reset(transport)
                    elif secure is not None and connection.close is not None:
                        # Linger, so that a reset cannot overtake the reason.
                        await secure.abort(*connection.close, linger=_LINGER)
            # Whatever the grace period left undone: nothing stays open.
            for stream in (secure, plain):
                if stream is not None:
                    await trio.aclose_forcefully(stream)
        connection.report()


def _client_finishes(protocol: str | Sequence[str] | None, *, with_psk: bool) -> tuple[str, ...]:
    """The protocols among ``protocol`` whose last handshake message the client sends.

    Only that message proves the client is live: in IK the server's part
    ends with its own reply, so a replayed first message would pass for the
    client and make the server end dial the backend for nobody.
    """
    allowed = server_protocols(protocol, with_psk=with_psk)
    live = tuple(name for name in allowed if len(NoiseProtocol.parse(name).pattern.messages) % 2)
    if protocol is not None and live != allowed:
        refused = ", ".join(name for name in allowed if name not in live)
        raise ValueError(
            f"a tunnel's server end needs a handshake the client finishes, such as XX: "
            f"not {refused}, where a replayed first message would pass for the client"
        )
    return live


@final
class TunnelServer(_TunnelEnd):
    """The server end: authenticates each peer, then connects it to ``forward``.

    ``policy`` (optional) admits peers beyond what ``trust`` accepts; see
    docs/policy.md (a rule need not list sessions or rights to admit).
    """

    _end = "server"

    def __init__(
        self,
        forward: tuple[str, int],
        *,
        identity: Identity,
        trust: TrustStore,
        policy: Policy | None = None,
        protocol: str | Sequence[str] | None = None,
        psk: bytes | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_concurrent_handshakes: int = DEFAULT_MAX_CONCURRENT_HANDSHAKES,
        max_handshakes_per_source: int | None = DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        max_connections_per_peer: int | None = None,
        handshake_rate: float | None = DEFAULT_HANDSHAKE_RATE,
        handshake_burst: int = DEFAULT_HANDSHAKE_BURST,
        rekey_after_records: int = REKEY_AFTER_RECORDS,
    ) -> None:
        super().__init__(
            forward,
            trust=trust,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
        )
        self.forward: Final = forward
        self.identity: Final = identity
        self._policy = policy
        protocol = _client_finishes(protocol, with_psk=psk is not None)
        self._secure_listeners: list[SecureListener] = []
        self._make_listener = partial(
            SecureListener,
            identity=identity,
            authorize=self.authorize,
            protocol=protocol,
            psk=psk,
            handshake_timeout=handshake_timeout,
            rekey_after_records=rekey_after_records,
        )
        self._handle_one = handshake_first(
            self._handle,
            max_concurrent_handshakes=max_concurrent_handshakes,
            max_handshakes_per_source=max_handshakes_per_source,
            max_connections_per_peer=max_connections_per_peer,
            handshake_rate=handshake_rate,
            handshake_burst=handshake_burst,
            on_failure=self._handshake_failed,
        )

    def authorize(self, peer: Peer) -> str | None:
        """The handshake's last check: refuse peers no rule of the policy admits."""
        return None if self._policy is None else self._policy.refusal(peer, service="tunnel")

    def reload(self, *, policy: Policy | None = None, trust: TrustStore | None = None) -> None:
        """Apply a new policy and/or trust store; cut connections of peers they refuse."""
        if trust is not None:
            self._trust = trust
            for listener in self._secure_listeners:
                listener.trust = trust
        if policy is not None:
            self._policy = policy
        self._readmit()

    def _refusal(self, peer: Peer) -> str | None:
        return readmission(peer, self._trust, self._policy, service="tunnel")

    async def _serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._secure_listeners = [
            self._make_listener(listener, trust=self._trust) for listener in listeners
        ]
        await trio.serve_listeners(
            self._handle_one,
            self._secure_listeners,
            handler_nursery=connections,
            task_status=task_status,
        )

    def _handshake_failed(self, stream: SecureStream, failure: HandshakeFailed | str) -> None:
        connection = _Connection(
            next(self._numbers), self._end, peer_address(stream), self._target_text
        )
        if isinstance(failure, str):
            connection.end_with(Outcome.REFUSED, failure)
        elif isinstance(failure, PeerNotTrusted):
            connection.end_with(Outcome.REFUSED, str(failure))
        else:
            connection.end_with(Outcome.FAILED, f"handshake: {failure}")
        connection.report()

    async def _handle(self, secure: SecureStream) -> None:
        peer = secure.peer
        connection = self._admit(peer_address(secure), peer)
        plain: trio.SocketStream | None = None
        try:
            with _ending(connection):
                # A reload may have run while this handshake was checked
                # against the previous trust store or policy.
                refusal = self._refusal(peer)
                if refusal is not None:
                    close = (CloseCode.ACCESS_DENIED, refusal)
                    connection.end_with(Outcome.REFUSED, refusal, close)
                if not connection.going:
                    return
                # Everything from here on stops when the connection is cut.
                with connection.scope:
                    dialled = await self._dial(connection)
                    if isinstance(dialled, str):
                        reason = f"the service behind the tunnel is unavailable: {dialled}"
                        close = (CloseCode.UNAVAILABLE, reason)
                        connection.end_with(Outcome.REFUSED, reason, close)
                        return
                    plain = dialled
                    names = (f"peer {peer.name or '-'}", "backend")
                    await self._carry(connection, secure, plain, names=names)
        finally:
            await self._close(connection, secure, plain)


@final
class TunnelClient(_TunnelEnd):
    """The client end: carries each plain connection it accepts to the server end."""

    _end = "client"

    def __init__(
        self,
        connect: tuple[str, int],
        *,
        identity: Identity,
        trust: TrustStore,
        expect: bytes | str | None = None,
        protocol: str | None = None,
        psk: bytes | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        rekey_after_records: int = REKEY_AFTER_RECORDS,
    ) -> None:
        super().__init__(
            connect,
            trust=trust,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
        )
        self.connect: Final = connect
        self.identity: Final = identity
        self._expect = bytes(expect) if isinstance(expect, bytes | bytearray) else expect
        self._make_stream = partial(
            SecureStream,
            identity=identity,
            expect=expect,
            protocol=protocol,
            psk=psk,
            handshake_timeout=handshake_timeout,
            rekey_after_records=rekey_after_records,
        )

    def reload(self, *, trust: TrustStore) -> None:
        """Use a new trust store; cut connections to a server it no longer trusts."""
        self._trust = trust
        self._readmit()

    def _refusal(self, peer: Peer) -> str | None:
        # As SecureStream decided: a key given as expect= is a pin of its
        # own, which only a revocation undoes.
        if isinstance(self._expect, bytes):
            if self._trust.is_revoked(peer.public_key):
                return f"no longer trusted: key {peer.fingerprint} is revoked"
            return None
        return readmission(peer, self._trust, None, service="tunnel")

    async def _serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.serve_listeners(
            contained(self._handle),
            list(listeners),
            handler_nursery=connections,
            task_status=task_status,
        )

    async def _handle(self, plain: trio.SocketStream) -> None:
        connection = self._admit(peer_address(plain), None)
        secure: SecureStream | None = None
        try:
            with _ending(connection):
                if not connection.going:
                    return
                # Everything from here on stops when the connection is cut.
                with connection.scope:
                    dialled = await self._dial(connection)
                    if isinstance(dialled, str):
                        reason = f"cannot reach the tunnel server at {self._target_text}: {dialled}"
                        connection.end_with(Outcome.REFUSED, reason)
                        return
                    try:
                        secure = self._make_stream(dialled, trust=self._trust)
                    except BaseException:
                        await trio.aclose_forcefully(dialled)
                        raise
                    await self._handshake(connection, secure)
                    if connection.going:
                        connection.peer = secure.peer
                        # A reload may have run while the handshake used the old trust.
                        refusal = self._refusal(secure.peer)
                        if refusal is not None:
                            close = (CloseCode.ACCESS_DENIED, refusal)
                            connection.end_with(Outcome.REFUSED, refusal, close)
                            return
                        names = ("server", "application")
                        await self._carry(connection, secure, plain, names=names)
        finally:
            await self._close(connection, secure, plain)

    @staticmethod
    async def _handshake(connection: _Connection, secure: SecureStream) -> None:
        try:
            await secure.do_handshake()
        except (PeerRejected, PeerNotTrusted, NegotiationFailed) as exc:
            connection.end_with(Outcome.REFUSED, f"handshake with the tunnel server: {exc}")
        except HandshakeFailed as exc:
            connection.end_with(Outcome.FAILED, f"handshake with the tunnel server: {exc}")
