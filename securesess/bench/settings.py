"""How big each workload is: :class:`Settings`, and the full and the quick run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["FULL", "QUICK", "Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """How big each workload is."""

    #: Bytes per throughput run.
    total_bytes: int
    #: Rounds over all transports; each transport's best round counts.
    repeat: int
    #: How long to run handshakes per transport, unless ``handshakes`` is set.
    handshake_seconds: float
    #: A fixed number of handshakes per transport instead of a duration.
    handshakes: int | None
    #: Timed round trips per transport (a tenth as many run first, untimed).
    round_trips: int
    #: Idle connections opened to measure memory per connection (and idle hub members).
    idle_connections: int
    #: Whether to measure the hub too (:mod:`securesess.bench.hub`).
    hub: bool
    #: Deliveries per hub throughput configuration of 64-byte messages (16 KiB: an eighth).
    hub_messages: int
    #: Timed fan-out latency samples (a tenth as many run first, untimed).
    hub_fanouts: int
    #: Whether to measure the tunnel against a direct connection (:mod:`securesess.bench.tunnel`).
    tunnel: bool
    #: Bytes per tunnel throughput run, direct and through the tunnel alike.
    tunnel_bytes: int


FULL: Final = Settings(
    total_bytes=1 << 30,
    repeat=3,
    handshake_seconds=2.0,
    handshakes=None,
    round_trips=10_000,
    idle_connections=200,
    hub=True,
    hub_messages=100_000,
    hub_fanouts=200,
    tunnel=True,
    tunnel_bytes=256 << 20,
)
QUICK: Final = Settings(
    total_bytes=32 << 20,
    repeat=1,
    handshake_seconds=0.3,
    handshakes=None,
    round_trips=200,
    idle_connections=20,
    hub=True,
    hub_messages=5_000,
    hub_fanouts=20,
    tunnel=True,
    tunnel_bytes=8 << 20,
)
