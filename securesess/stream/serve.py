"""Listening and connecting: SecureListener, serve_secure, open_secure_stream.

These mirror trio's TLS helpers (``SSLListener``, ``serve_ssl_over_tcp``,
``open_ssl_over_tcp_stream``) with one difference that matters for a server:
``serve_secure`` runs each handshake *before* calling the handler, under a
timeout and a cap on how many run at once, so a handler only ever sees an
authenticated peer, and a stalled or garbage client costs one bounded task.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, final

import trio

from keystore import Certificate, Identity, Peer, TrustStore
from securesess.errors import HandshakeFailed
from securesess.stream.protocols import check_psk, server_protocols
from securesess.stream.ratelimit import (
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_HANDSHAKE_RATE,
    HandshakeRateLimit,
    source_of,
)
from securesess.stream.records import REKEY_AFTER_RECORDS, CloseCode
from securesess.stream.secure_stream import DEFAULT_HANDSHAKE_TIMEOUT, SecureStream

__all__ = [
    "DEFAULT_MAX_CONCURRENT_HANDSHAKES",
    "DEFAULT_MAX_CONNECTIONS_PER_PEER",
    "DEFAULT_MAX_HANDSHAKES_PER_SOURCE",
    "SecureListener",
    "open_secure_stream",
    "serve_secure",
]

log = logging.getLogger("securesess")

StreamT = TypeVar("StreamT", bound=trio.abc.Stream)

DEFAULT_MAX_CONCURRENT_HANDSHAKES: Final = 256
#: Handshakes one source (an IPv4 address or IPv6 /64) may have in progress
#: once half the slots are taken: one source then holds at most 128 of the
#: 256, and taking them all needs at least 5 sources.
DEFAULT_MAX_HANDSHAKES_PER_SOURCE: Final = 32
#: Established connections one peer (one static key) may hold at once. At
#: the limit, a new connection takes the place of the peer's oldest one that
#: has not proved it is live (see SecureStream.confirmed: in practice, one
#: opened by a replayed IK message 1), or is refused if all have.
DEFAULT_MAX_CONNECTIONS_PER_PEER: Final = 256
# How long a refused connection may linger so the client reads the refusal.
_LINGER: Final = 1.0
# After logging a refusal, how long to stay quiet about more of the same.
_QUIET: Final = 10.0
# How deep peer_address looks through streams wrapped around a socket.
_MAX_WRAPPERS: Final = 16


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


async def _refuse_busy(stream: SecureStream) -> None:
    transport = stream.transport_stream
    with trio.move_on_after(_LINGER):
        try:
            await transport.send_all(stream.connection.answer_busy())
            if isinstance(transport, trio.abc.HalfCloseableStream):
                await transport.send_eof()
            # Read what the client already sent: closing with unread data
            # would reset the connection before it reads the answer.
            while await transport.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(transport)


def _log_failure(stream: SecureStream, failure: HandshakeFailed | str) -> None:
    if isinstance(failure, str):
        log.warning("refused a connection from %s: %s", peer_address(stream), failure)
    else:
        log.info("handshake with %s failed: %s", peer_address(stream), failure)


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


async def until_expired(certificate: Certificate) -> None:
    """Return once ``certificate`` has expired: a trust store checks validity
    at the handshake, and a connection may outlive it."""
    # not_after is the last valid second (inclusive), in Unix time, which
    # Trio's clock does not follow (it stands still while the machine
    # sleeps): look at the wall clock again every minute.
    while (left := certificate.not_after + 1 - time.time()) > 0:
        await trio.sleep(min(left, 60.0))


def _source(stream: SecureStream) -> str | None:
    transport = stream.transport_stream
    if not isinstance(transport, trio.SocketStream):
        return None
    try:
        return source_of(transport.socket.getpeername())
    except OSError:
        return None


@final
class _Established:
    """Each peer's established connections, oldest first, with the scope
    that ends each: what ``max_connections_per_peer`` counts."""

    __slots__ = ("_by_peer", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._by_peer: dict[bytes, dict[SecureStream, trio.CancelScope]] = {}

    def admit(self, stream: SecureStream, scope: trio.CancelScope) -> str | None:
        """Count ``stream`` in, displacing if need be; or why it may not be."""
        key = stream.peer.public_key
        held = self._by_peer.setdefault(key, {})
        if self.limit is not None and len(held) >= self.limit:
            # A replayed IK message 1 opens connections in a real peer's
            # name that never prove they are live: those go first, so a
            # replay holds at most `limit` connections and never locks the
            # peer itself out.
            unconfirmed = next((other for other in held if not other.confirmed), None)
            if unconfirmed is None:
                return f"{stream.peer} already has {self.limit} connections"
            held.pop(unconfirmed).cancel()
        held[stream] = scope
        return None

    def release(self, stream: SecureStream) -> None:
        key = stream.peer.public_key
        held = self._by_peer.get(key)
        if held is not None:
            held.pop(stream, None)
            if not held:
                del self._by_peer[key]


def handshake_first(
    handler: Callable[[SecureStream], Awaitable[object]],
    *,
    max_concurrent_handshakes: int,
    max_handshakes_per_source: int | None = DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    max_connections_per_peer: int | None = DEFAULT_MAX_CONNECTIONS_PER_PEER,
    handshake_rate: float | None = DEFAULT_HANDSHAKE_RATE,
    handshake_burst: int = DEFAULT_HANDSHAKE_BURST,
    on_failure: Callable[[SecureStream, HandshakeFailed | str], object] = _log_failure,
) -> Callable[[SecureStream], Awaitable[None]]:
    """A connection handler for ``trio.serve_listeners`` that handshakes first.

    ``handler`` runs only once the handshake succeeded. A source that starts
    more than ``handshake_rate`` handshakes a second, beyond bursts of
    ``handshake_burst`` (None: no limit), is told "busy" at once, before any
    cryptography.

    At most ``max_concurrent_handshakes`` run at once, shared fairly: when
    all are taken, a newcomer takes the place of the oldest handshake that
    the server has not answered yet (its client has not sent its first
    message: a stalled one, most likely) from the source that holds the
    most, if that source holds at least two more than the newcomer's; the
    displaced client is told "busy", which is all a client that has sent
    nothing can be told. So stalled connections (a slowloris) from a few
    sources cannot lock everyone else out for a whole handshake timeout,
    and a handshake under way is never cut short. Otherwise the newcomer is
    told "busy". Once half the slots are taken, a source that already has
    ``max_handshakes_per_source`` handshakes in progress (None: no limit),
    answered or not, is told "busy" too: a client that sends its first
    message and stalls costs nothing to make but holds its slot for the
    whole timeout, and displacing answered handshakes would cut legitimate
    slow ones short. So one source holds at most half the slots, and taking
    all of them needs several.

    Once handshaken, a peer (one static key) may hold
    ``max_connections_per_peer`` connections at once (None: no limit). At
    the limit, a new one takes the place of the peer's oldest connection
    that has not proved it is live (:attr:`SecureStream.confirmed`), which
    is closed with ``CLOSE`` 6; if every one has, the new one is refused
    with ``CLOSE`` 6. So a recorded ``IK`` message 1, replayed, holds at
    most that many connections, and never the peer's live ones.

    ``on_failure(stream, why)`` hears of each refusal (``why`` a string) and
    failed handshake (``why`` the error) before the stream is closed. Any
    other error, in the handshake or in ``handler``, closes that connection
    alone (see :func:`contained`).
    """
    if max_concurrent_handshakes < 1:
        raise ValueError("max_concurrent_handshakes must be at least 1")
    if max_handshakes_per_source is not None and max_handshakes_per_source < 1:
        raise ValueError("max_handshakes_per_source must be at least 1 (or None)")
    if max_connections_per_peer is not None and max_connections_per_peer < 1:
        raise ValueError("max_connections_per_peer must be at least 1 (or None)")
    established = _Established(max_connections_per_peer)
    rate_limit = (
        None if handshake_rate is None else HandshakeRateLimit(handshake_rate, handshake_burst)
    )
    # The handshakes in progress, oldest first, with their source and the
    # scope that displaces them; and how many each source holds.
    running: dict[SecureStream, tuple[str | None, trio.CancelScope]] = {}
    holding: Counter[str | None] = Counter()
    # One log line per source per burst of refusals, not one per connection:
    # a flood must not turn into a flood of log lines.
    quiet_until: dict[str | None, float] = {}

    def report(stream: SecureStream, why: str, source: str | None) -> None:
        now = trio.current_time()
        if quiet_until.get(source, -math.inf) <= now:
            if len(quiet_until) > 4096:
                quiet_until.clear()
            quiet_until[source] = now + _QUIET
            on_failure(stream, why)

    async def refuse(stream: SecureStream, why: str, source: str | None) -> None:
        report(stream, why, source)
        await _refuse_busy(stream)

    def release(stream: SecureStream) -> None:
        entry = running.pop(stream, None)
        if entry is not None:
            holding[entry[0]] -= 1
            if not holding[entry[0]]:
                del holding[entry[0]]

    def make_room(source: str | None) -> bool:
        biggest = max(holding, key=holding.__getitem__)
        if holding[biggest] < holding[source] + 2:
            return False
        for other, (owner, scope) in running.items():
            if owner == biggest and not other.connection.answered:
                scope.cancel()
                release(other)
                return True
        return False

    async def handshake_then_handle(stream: SecureStream) -> None:
        source = _source(stream)
        if rate_limit is not None and not rate_limit.allow(source):
            limit = f"{rate_limit.rate:g}/s, bursts of {rate_limit.burst}"
            await refuse(stream, f"busy: {source} is over its handshake rate ({limit})", source)
            return
        if (
            max_handshakes_per_source is not None
            and source is not None
            and holding[source] >= max_handshakes_per_source
            # Only under pressure: a pool of connections from one address
            # (a tunnel client end, a NAT, a local proxy) is not held back
            # while the server has room.
            and len(running) >= max_concurrent_handshakes // 2
        ):
            busy = f"busy: {source} has {max_handshakes_per_source} handshakes in progress"
            await refuse(stream, busy, source)
            return
        if len(running) >= max_concurrent_handshakes and not make_room(source):
            busy = f"busy: {max_concurrent_handshakes} handshakes in progress"
            await refuse(stream, busy, None)
            return
        scope = trio.CancelScope()
        running[stream] = (source, scope)
        holding[source] += 1
        try:
            with scope:
                await stream.do_handshake()
        except HandshakeFailed as exc:
            on_failure(stream, exc)
            await trio.aclose_forcefully(stream)
            return
        finally:
            release(stream)
        if scope.cancelled_caught:
            why = f"busy: displaced, as {source} held more than its share of handshakes"
            await refuse(stream, why, source)
            return
        scope = trio.CancelScope()
        refusal = established.admit(stream, scope)
        if refusal is not None:
            report(stream, refusal, source)
            await stream.abort(CloseCode.UNAVAILABLE, refusal)
            return
        try:
            with scope:
                await handler(stream)
        finally:
            established.release(stream)
        if scope.cancelled_caught:
            log.info(
                "closed a connection of %s from %s that had not proved it is live, "
                "for a newer one (at its limit of %s)",
                stream.peer,
                peer_address(stream),
                max_connections_per_peer,
            )
            await stream.abort(
                CloseCode.UNAVAILABLE, "displaced by a newer connection of the same peer"
            )

    return contained(handshake_then_handle)


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
