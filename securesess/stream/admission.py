"""Admission: which handshakes a server runs, and which connections it keeps.

Before any cryptography, a source over its handshake rate is told "busy";
the handshakes in progress share a fixed number of slots fairly; and once
handshaken, each peer may hold a bounded number of connections. Every
refusal is logged once per source per quiet period, not once per
connection: a flood must not become a flood of log lines.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final, Unpack, final

import trio

from securesess.constants import (
    CloseCode,
)
from securesess.errors import HandshakeFailed
from securesess.stream.containment import contained, peer_address, printable
from securesess.stream.options import AdmissionArgs, AdmissionLimits, merged, unexpected
from securesess.stream.ratelimit import HandshakeRateLimit, source_of
from securesess.stream.secure_stream import SecureStream

__all__ = [
    "Admission",
    "OnFailure",
    "handshake_first",
    "log_failure",
]

log = logging.getLogger("securesess")

# How long a refused connection may linger so the client reads the refusal.
_LINGER: Final = 1.0
# After logging a refusal, how long to stay quiet about more of the same.
_QUIET: Final = 10.0

Handler = Callable[[SecureStream], Awaitable[object]]
OnFailure = Callable[[SecureStream, HandshakeFailed | str], object]


async def _refuse_busy(stream: SecureStream) -> None:
    transport = stream.transport_stream
    if stream.connection.answered:
        # Displaced just as its first flight was read and answered (the
        # cancellation landed after that): the client has a handshake message,
        # not room for a busy answer, so the cut is all it can be told.
        await trio.aclose_forcefully(transport)
        return
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


def log_failure(stream: SecureStream, failure: HandshakeFailed | str) -> None:
    """Log one refused or failed handshake, on one line whatever the stranger sent.

    A failure's text can quote the peer (a protocol name is any ASCII, line
    breaks included), so it is made printable before it is logged.
    """
    if isinstance(failure, str):
        log.warning("refused a connection from %s: %s", peer_address(stream), printable(failure))
    else:
        log.info("handshake with %s failed: %s", peer_address(stream), printable(str(failure)))


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
    that ends each and their source: what ``max_connections_per_peer`` counts."""

    __slots__ = ("_by_peer", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._by_peer: dict[bytes, dict[SecureStream, tuple[trio.CancelScope, str | None]]] = {}

    def admit(
        self, stream: SecureStream, scope: trio.CancelScope, source: str | None
    ) -> str | None:
        """Count ``stream`` in, displacing if need be; or why it may not be."""
        key = stream.peer.public_key
        held = self._by_peer.setdefault(key, {})
        if self.limit is not None and len(held) >= self.limit:
            victim = self._displaceable(held, stream, source)
            if victim is None:
                return f"{stream.peer} already has {self.limit} connections"
            held.pop(victim)[0].cancel()
        held[stream] = (scope, source)
        return None

    @staticmethod
    def _displaceable(
        held: dict[SecureStream, tuple[trio.CancelScope, str | None]],
        stream: SecureStream,
        source: str | None,
    ) -> SecureStream | None:
        """Which of a peer's connections a newcomer at its limit replaces, if any.

        Only one that has not proved it is live: a replayed IK message 1
        opens connections in a real peer's name that never do, so replays
        hold at most the limit. But a real IK connection is unconfirmed
        too until its client's first record, and a newcomer may itself be a
        replay: so the victim is the oldest unconfirmed connection of the
        source that holds the most of them, and an unconfirmed newcomer
        takes it only from a source holding more than its own. Replays from
        one address are then refused once they hold the limit, and never
        take the place of a connection from elsewhere that holds no more.
        """
        unconfirmed = [(other, other_source) for other, (_, other_source) in held.items()
                       if not other.confirmed]  # fmt: skip
        if not unconfirmed:
            return None
        counts = Counter(other_source for _, other_source in unconfirmed)
        biggest = max(counts, key=counts.__getitem__)
        if not stream.confirmed and counts[biggest] <= counts[source]:
            return None
        return next(other for other, other_source in unconfirmed if other_source == biggest)

    def release(self, stream: SecureStream) -> None:
        key = stream.peer.public_key
        held = self._by_peer.get(key)
        if held is not None:
            held.pop(stream, None)
            if not held:
                del self._by_peer[key]


@final
class Admission:
    """The admission state of one server: see :func:`handshake_first`."""

    __slots__ = (
        "_established",
        "_holding",
        "_max_concurrent",
        "_max_per_source",
        "_on_failure",
        "_quiet_until",
        "_rate_limit",
        "_running",
    )

    def __init__(self, limits: AdmissionLimits, on_failure: OnFailure = log_failure) -> None:
        self._max_concurrent = limits.max_concurrent_handshakes
        self._max_per_source = limits.max_handshakes_per_source
        self._established = _Established(limits.max_connections_per_peer)
        rate = limits.handshake_rate
        self._rate_limit = (
            None if rate is None else HandshakeRateLimit(rate, limits.handshake_burst)
        )
        self._on_failure = on_failure
        # The handshakes in progress, oldest first, with their source and the
        # scope that displaces them; and how many each source holds.
        self._running: dict[SecureStream, tuple[str | None, trio.CancelScope]] = {}
        self._holding: Counter[str | None] = Counter()
        # When each source's refusals may be logged again.
        self._quiet_until: dict[str | None, float] = {}

    def _report(self, stream: SecureStream, why: str, source: str | None) -> None:
        now = trio.current_time()
        if self._quiet_until.get(source, -math.inf) <= now:
            if len(self._quiet_until) > 4096:
                self._quiet_until.clear()
            self._quiet_until[source] = now + _QUIET
            self._on_failure(stream, why)

    async def _refuse(self, stream: SecureStream, why: str, source: str | None) -> None:
        self._report(stream, why, source)
        await _refuse_busy(stream)

    def _release(self, stream: SecureStream) -> None:
        entry = self._running.pop(stream, None)
        if entry is not None:
            holding = self._holding
            holding[entry[0]] -= 1
            if not holding[entry[0]]:
                del holding[entry[0]]

    def _make_room(self, source: str | None) -> bool:
        holding = self._holding
        biggest = max(holding, key=holding.__getitem__)
        if holding[biggest] < holding[source] + 2:
            return False
        for other, (owner, scope) in self._running.items():
            if owner == biggest and not other.connection.answered:
                scope.cancel()
                self._release(other)
                return True
        return False

    def _busy(self, source: str | None) -> tuple[str, str | None] | None:
        """Why a newcomer from ``source`` may not start a handshake now, if so."""
        rate_limit = self._rate_limit
        if rate_limit is not None and not rate_limit.allow(source):
            limit = f"{rate_limit.rate:g}/s, bursts of {rate_limit.burst}"
            return f"busy: {source} is over its handshake rate ({limit})", source
        per_source = self._max_per_source
        if (
            per_source is not None
            and source is not None
            and self._holding[source] >= per_source
            # Only under pressure: a pool of connections from one address
            # (a tunnel client end, a NAT, a local proxy) is not held back
            # while the server has room.
            and len(self._running) >= self._max_concurrent // 2
        ):
            return f"busy: {source} has {per_source} handshakes in progress", source
        if len(self._running) >= self._max_concurrent and not self._make_room(source):
            return f"busy: {self._max_concurrent} handshakes in progress", None
        return None

    async def run(self, stream: SecureStream, handler: Handler) -> None:
        """Handshake ``stream`` if admitted, then run ``handler`` while it is kept."""
        source = _source(stream)
        busy = self._busy(source)
        if busy is not None:
            await self._refuse(stream, *busy)
            return
        scope = trio.CancelScope()
        self._running[stream] = (source, scope)
        self._holding[source] += 1
        try:
            with scope:
                await stream.do_handshake()
        except HandshakeFailed as exc:
            self._on_failure(stream, exc)
            await trio.aclose_forcefully(stream)
            return
        finally:
            self._release(stream)
        if scope.cancelled_caught:
            why = f"busy: displaced, as {source} held more than its share of handshakes"
            await self._refuse(stream, why, source)
            return
        await self._keep(stream, handler, source)

    async def _keep(self, stream: SecureStream, handler: Handler, source: str | None) -> None:
        scope = trio.CancelScope()
        refusal = self._established.admit(stream, scope, source)
        if refusal is not None:
            self._report(stream, refusal, source)
            await stream.abort(CloseCode.UNAVAILABLE, refusal)
            return
        try:
            with scope:
                await handler(stream)
        finally:
            self._established.release(stream)
        if scope.cancelled_caught:
            log.info(
                "closed a connection of %s from %s that had not proved it is live, "
                "for a newer one (at its limit of %s)",
                stream.peer,
                peer_address(stream),
                self._established.limit,
            )
            await stream.abort(
                CloseCode.UNAVAILABLE, "displaced by a newer connection of the same peer"
            )


def handshake_first(
    handler: Handler,
    limits: AdmissionLimits | None = None,
    *,
    on_failure: OnFailure = log_failure,
    **keywords: Unpack[AdmissionArgs],
) -> Callable[[SecureStream], Awaitable[None]]:
    """A connection handler for ``trio.serve_listeners`` that handshakes first.

    ``limits`` (an :class:`AdmissionLimits`, or its fields as keywords) are
    the bounds described below.

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
    unexpected(keywords, AdmissionLimits)
    admission = Admission(merged(AdmissionLimits, limits, keywords), on_failure)
    return contained(partial(admission.run, handler=handler))
