"""Per-source handshake rate limiting: a token bucket for each client address.

A handshake costs a server several X25519 operations before it knows who is
asking, so one source that opens connections as fast as it can would make
the server spend its CPU on it alone. Each source (an IPv4 address, or an
IPv6 /64, which one host usually holds whole) gets a bucket of ``burst``
tokens refilled at ``rate`` a second; a handshake takes a token, and a
source with none is told "busy" before any cryptography happens, as the
concurrency cap does. Like WireGuard's limiter, this is cheap enough to run
on every connection: one dict lookup and a little arithmetic.

The table of buckets is bounded: when ``max_sources`` is reached, the least
recently seen source is forgotten, in constant time. Forgetting a bucket
can only make the limiter more lenient, never lock anyone out, and the
least recently seen bucket has most likely refilled anyway.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, final

import trio

from securesess.constants import DEFAULT_HANDSHAKE_BURST, DEFAULT_HANDSHAKE_RATE

__all__ = [
    "HandshakeRateLimit",
    "source_of",
]

_MAX_SOURCES: Final = 65536


def source_of(address: object) -> str | None:
    """The rate-limited unit of a peer address: the IPv4 address, or its IPv6 /64.

    None for addresses that are not IP (a Unix socket has no source to tell apart).
    """
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return None
    try:
        ip = ipaddress.ip_address(address[0].partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@final
class HandshakeRateLimit:
    """Token buckets by source: ``rate`` handshakes a second, in bursts of up to ``burst``."""

    def __init__(
        self,
        rate: float = DEFAULT_HANDSHAKE_RATE,
        burst: int = DEFAULT_HANDSHAKE_BURST,
        *,
        max_sources: int = _MAX_SOURCES,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if not rate > 0:
            raise ValueError("the handshake rate must be positive")
        if burst < 1:
            raise ValueError("the handshake burst must be at least 1")
        if max_sources < 1:
            raise ValueError("max_sources must be at least 1")
        self.rate: Final = float(rate)
        self.burst: Final = burst
        self._max_sources = max_sources
        self._clock = clock
        # source -> (tokens, when they were counted); oldest use first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<HandshakeRateLimit {self.rate:g}/s, burst {self.burst}>"

    def allow(self, source: str | None) -> bool:
        """Take a token from ``source``'s bucket; False if it has none (refuse it)."""
        if source is None:
            return True
        now = self._clock()
        tokens, then = self._buckets.pop(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1, now)
        if len(self._buckets) > self._max_sources:
            # The least recently seen source: most likely refilled already.
            self._buckets.popitem(last=False)
        return True

    @property
    def sources(self) -> int:
        """How many sources have a bucket now (for tests and metrics)."""
        return len(self._buckets)
