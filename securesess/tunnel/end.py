"""What both tunnel ends share: listening, limits, draining, relaying, closing."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Final

import trio

from keystore import Certificate, Peer, TrustStore
from securesess.constants import CloseCode
from securesess.stream.containment import format_address
from securesess.stream.expiry import until_expired
from securesess.stream.secure_stream import SecureStream
from securesess.tunnel.legs import (
    Connection,
    LegFailed,
    Outcome,
    describe,
    relay_one_way,
    reset,
    reset_after_eof,
)

log = logging.getLogger("securesess.tunnel")

# How long closing may take once a connection is over (a CLOSE record, a FIN),
# of which up to _LINGER is spent letting the peer read a CLOSE's reason.
_CLOSE_GRACE: Final = 2.0
_LINGER: Final = 1.0


class TunnelEnd:
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
        self._open: set[Connection] = set()
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
        task_status: trio.TaskStatus[TunnelEnd] = trio.TASK_STATUS_IGNORED,
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

    async def _dial(self, connection: Connection) -> trio.SocketStream | str:
        """A TCP connection to the far side for ``connection``, or why there is none."""
        connection.dialled = True
        host, port = self._target
        try:
            with trio.fail_after(self.connect_timeout):
                return await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            return f"no answer within {self.connect_timeout:g} s"
        except OSError as exc:
            return describe(exc)

    def _admit(self, source: str, peer: Peer | None) -> Connection:
        """A new connection, open unless a limit or a drain refuses it."""
        connection = Connection(
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
        connection: Connection,
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
                await relay_one_way(*streams, count)
                if sink is secure:
                    connection.secure_ended = True
                ended[0] += 1
                if ended[0] == 2:
                    nursery.cancel_scope.cancel()
                else:
                    # The other way goes on: a reset of this leg must still end it.
                    await reset_after_eof(source, source_leg)
            except LegFailed as failure:
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
        connection: Connection,
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
                        await reset(plain)
                    transport = None if secure is None else secure.transport_stream
                    if connection.secure_ended and isinstance(transport, trio.SocketStream):
                        # After our END the peer reads nothing, not even a
                        # CLOSE: a reset is what it can see (and watches for).
                        await reset(transport)
                    elif secure is not None and connection.close is not None:
                        # Linger, so that a reset cannot overtake the reason.
                        await secure.abort(*connection.close, linger=_LINGER)
            # Whatever the grace period left undone: nothing stays open.
            for stream in (secure, plain):
                if stream is not None:
                    await trio.aclose_forcefully(stream)
        connection.report()
