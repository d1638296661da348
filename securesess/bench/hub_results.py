"""What the hub workloads found: a row per throughput configuration, fan-out, idle memory."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["HubResults", "Throughput"]


@dataclass(frozen=True, slots=True)
class Throughput:
    """One throughput configuration's result."""

    members: int
    size: int
    #: Messages delivered (broadcasts times receiving members).
    delivered: int
    seconds: float
    #: CPU seconds per wall second of the hub process and of the clients' process.
    hub_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        """Delivered messages per second."""
        return self.delivered / self.seconds

    @property
    def mb_s(self) -> float:
        """Delivered payload, in MB per second."""
        return self.rate * self.size / 1e6


@dataclass(frozen=True, slots=True)
class HubResults:
    throughput: tuple[Throughput, ...]
    #: Fan-out latency samples, in milliseconds.
    fanout_ms: tuple[float, ...]
    #: CPU milliseconds per fan-out sample, of the hub and of the members' process.
    fanout_hub_cpu_ms: float
    fanout_client_cpu_ms: float
    idle_kib_per_member: float
    #: Key change samples in the fan-out session (a member leaves), in
    #: milliseconds, and the members' process's CPU milliseconds per change.
    key_change_ms: tuple[float, ...] = ()
    key_change_cpu_ms: float = 0.0

    @property
    def fanout_median_ms(self) -> float:
        return statistics.median(self.fanout_ms)

    @property
    def fanout_p99_ms(self) -> float:
        samples = self.fanout_ms
        if len(samples) == 1:  # quantiles() needs two
            return samples[0]
        # Inclusive: with a few hundred samples or fewer, the default (exclusive)
        # method extrapolates beyond the slowest broadcast actually seen.
        return statistics.quantiles(samples, n=100, method="inclusive")[98]

    @property
    def key_change_median_ms(self) -> float:
        return statistics.median(self.key_change_ms) if self.key_change_ms else math.nan

    def best(self) -> Throughput:
        """The configuration with the most delivered messages per second."""
        return max(self.throughput, key=lambda row: row.rate)
