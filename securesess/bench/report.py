"""What the benchmark found, as a table or as JSON, with the project's targets.

The targets are printed as notes, never enforced: loopback numbers depend on
the machine, and a benchmark that fails on a slow CI runner helps nobody.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Final

from securesess.bench.hub import FANOUT_RECEIVERS, HubResults
from securesess.bench.report_format import number, size, times
from securesess.bench.report_hub import hub_json, hub_table
from securesess.bench.report_tunnel import tunnel_json, tunnel_table
from securesess.bench.settings import Settings
from securesess.bench.transports import LABELS, NOISE, TRANSPORTS
from securesess.bench.tunnel import TunnelResults

__all__ = ["HUB_TARGETS", "METRICS", "TARGETS", "HubTarget", "Metric", "Results", "Target"]

_BASELINES: Final = ("tcp", "tls")
_SHORT: Final = {"tcp": "TCP", "tls": "TLS", "noise-aesgcm": "AESGCM", "noise-chachapoly": "ChaCha"}


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str


THROUGHPUT: Final = Metric("throughput_mb_s", "throughput (MB/s)")
HANDSHAKES: Final = Metric("handshakes_per_s", "handshakes/s")
RTT_MEDIAN: Final = Metric("rtt_median_us", "RTT median (us)")
RTT_P99: Final = Metric("rtt_p99_us", "RTT p99 (us)")
IDLE: Final = Metric("idle_kib_per_conn", "idle memory (KiB/conn)")
#: What is measured, in the order of the table's rows.
METRICS: Final = (THROUGHPUT, HANDSHAKES, RTT_MEDIAN, RTT_P99, IDLE)
# Derived from IDLE rather than measured, so kept apart in the JSON.
_BEYOND_TCP_LABEL: Final = "idle beyond TCP (KiB/conn)"


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for SecureStream: ``metric`` relative to ``baseline``.

    With a baseline the value is the ratio SecureStream / baseline; without
    one it is the idle memory beyond raw TCP, in KiB per connection.
    """

    text: str
    metric: Metric
    baseline: str | None
    bound: float
    at_least: bool

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound


TARGETS: Final = (
    Target("throughput >= 75% of raw TCP", THROUGHPUT, "tcp", 0.75, at_least=True),
    Target("throughput >= 3x TLS 1.3", THROUGHPUT, "tls", 3.0, at_least=True),
    Target("handshakes/s >= 4x TLS 1.3", HANDSHAKES, "tls", 4.0, at_least=True),
    Target("RTT median <= 1.3x raw TCP", RTT_MEDIAN, "tcp", 1.3, at_least=False),
    Target("idle memory <= 16 KiB/conn beyond raw TCP", IDLE, None, 16.0, at_least=False),
)


@dataclass(frozen=True, slots=True)
class HubTarget:
    """A goal for the hub, on an absolute figure (the hub has no baseline to divide by)."""

    text: str
    bound: float
    at_least: bool

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound


#: Judged on the p99, not the median: "delivered to all within 50 ms" should
#: hold for (nearly) every broadcast, not for a typical one.
HUB_FANOUT: Final = HubTarget(
    f"64-byte broadcast delivered to all {FANOUT_RECEIVERS} members within 50 ms (p99)",
    50.0,
    at_least=False,
)
#: Judged on the configuration with the highest rate (it says which).
HUB_RATE: Final = HubTarget(
    ">= 50,000 delivered messages/s through the hub (best configuration)", 50_000, at_least=True
)
#: Judged on the median of the changes (docs/protocol.md §10: a change is a
#: commit made, ordered and applied by every member before the next message).
HUB_KEY_CHANGE: Final = HubTarget(
    f"key change in a {FANOUT_RECEIVERS}-member session within 50 ms (median)", 50.0, at_least=False
)
HUB_TARGETS: Final = (HUB_FANOUT, HUB_RATE, HUB_KEY_CHANGE)


@dataclass(frozen=True, slots=True)
class Results:
    """Measured values: ``values[metric key][transport name]``, and the hub's
    and the tunnel's results unless the run skipped them."""

    settings: Settings
    values: dict[str, dict[str, float]]
    hub: HubResults | None = None
    tunnel: TunnelResults | None = None

    def beyond_tcp(self) -> dict[str, float]:
        """Idle memory per connection beyond raw TCP's, per transport, in KiB."""
        idle = self.values[IDLE.key]
        return {name: idle[name] - idle["tcp"] for name in TRANSPORTS if name != "tcp"}

    def ratio(self, metric: Metric, name: str, baseline: str) -> float | None:
        """``name``'s value over ``baseline``'s; None when the baseline measured 0
        (idle memory can, when the allocator had room to spare)."""
        base = self.values[metric.key][baseline]
        return self.values[metric.key][name] / base if base else None

    def _target_value(self, target: Target, name: str) -> float:
        if target.baseline is None:
            return self.beyond_tcp()[name]
        ratio = self.ratio(target.metric, name, target.baseline)
        return math.nan if ratio is None else ratio  # NaN meets no target

    def to_json(self) -> str:
        return json.dumps(
            {
                "settings": dataclasses.asdict(self.settings),
                "transports": LABELS,
                "metrics": self.values,
                "idle_kib_beyond_tcp": self.beyond_tcp(),
                "ratios": {
                    f"{name}/{baseline}": {
                        metric.key: self.ratio(metric, name, baseline) for metric in METRICS
                    }
                    for name in NOISE
                    for baseline in _BASELINES
                },
                "tunnel": None if self.tunnel is None else tunnel_json(self.tunnel),
                "hub": None if self.hub is None else hub_json(self.hub),
                "targets": [
                    {
                        "target": target.text,
                        "transport": name,
                        "value": (value := self._target_value(target, name)),
                        "met": target.met(value),
                    }
                    for target in TARGETS
                    for name in NOISE
                ]
                + [
                    {
                        "target": target.text,
                        "transport": "hub",
                        "value": value,
                        "met": target.met(value),
                        "configuration": configuration,
                    }
                    for target, value, configuration in self._hub_targets()
                ],
            },
            indent=2,
        )

    def _hub_targets(self) -> list[tuple[HubTarget, float, str]]:
        """Each hub target's value, and what it was measured on."""
        if self.hub is None:
            return []
        best = self.hub.best()
        return [
            (
                HUB_FANOUT,
                self.hub.fanout_p99_ms,
                f"{FANOUT_RECEIVERS} members, p99 of {len(self.hub.fanout_ms)} broadcasts",
            ),
            (HUB_RATE, best.rate, f"{best.members} members x {size(best.size)}"),
            (
                HUB_KEY_CHANGE,
                self.hub.key_change_median_ms,
                f"median of {len(self.hub.key_change_ms)} changes",
            ),
        ]

    def table(self) -> str:
        settings = self.settings
        handshakes = (
            f"{settings.handshakes} handshakes"
            if settings.handshakes is not None
            else f"handshakes for {settings.handshake_seconds:g} s"
        )
        lines = [
            f"securesess bench on loopback, best of {settings.repeat} interleaved round(s) "
            f"of {size(settings.total_bytes)}, {handshakes}, {settings.round_trips} round "
            f"trips; {settings.idle_connections} idle connections",
            "",
        ]
        ratio_columns = [(name, baseline) for name in NOISE for baseline in _BASELINES]
        header = [LABELS[name] for name in TRANSPORTS] + [
            f"{_SHORT[name]}/{_SHORT[baseline]}" for name, baseline in ratio_columns
        ]
        rows: list[tuple[str, list[str]]] = []
        for metric in METRICS:
            values = [number(self.values[metric.key][name]) for name in TRANSPORTS]
            ratios = [times(self.ratio(metric, name, baseline)) for name, baseline in ratio_columns]
            rows.append((metric.label, values + ratios))
        beyond = {"tcp": 0.0, **self.beyond_tcp()}
        tls_beyond = beyond["tls"]
        rows.append(
            (
                _BEYOND_TCP_LABEL,
                [number(beyond[name]) for name in TRANSPORTS]
                + [
                    # Nothing to divide by for raw TCP, nor for a TLS growth of 0.
                    f"{beyond[name] / tls_beyond:.2f}x" if baseline == "tls" and tls_beyond else "-"
                    for name, baseline in ratio_columns
                ],
            )
        )
        first = max(len(label) for label, _ in rows)
        widths = [max(len(text), 7) for text in header]
        lines.append(
            " " * first + "".join(f"  {text:>{w}}" for text, w in zip(header, widths, strict=True))
        )
        lines.extend(
            f"{label:<{first}}"
            + "".join(f"  {cell:>{w}}" for cell, w in zip(cells, widths, strict=True))
            for label, cells in rows
        )
        lines += [
            "",
            "TLS 1.3: trio.SSLStream, mutual auth, ECDSA P-256 certificates, X25519 key exchange.",
            "AESGCM, ChaChaPoly: SecureStream speaking Noise_XX_25519_<cipher>_SHA256.",
            "Throughput: receiver in a second process. Everything else: both ends in one process.",
            "Idle memory: RSS growth per connection, both ends counted.",
            "",
        ]
        for target in TARGETS:
            verdicts = []
            for name in NOISE:
                value = self._target_value(target, name)
                shown = f"{value:.1f} KiB" if target.baseline is None else f"{value:.2f}x"
                verdicts.append(
                    f"{LABELS[name]} {shown} {'met' if target.met(value) else 'MISSED'}"
                )
            lines.append(f"target: {target.text}: {', '.join(verdicts)}")
        if self.tunnel is not None:
            lines += ["", *tunnel_table(self.tunnel, settings)]
        if self.hub is not None:
            lines += ["", *hub_table(self.hub, settings)]
            for hub_target, value, configuration in self._hub_targets():
                shown = f"{value:,.0f}/s" if hub_target is HUB_RATE else f"{value:.1f} ms"
                verdict = "met" if hub_target.met(value) else "MISSED"
                lines.append(f"target: {hub_target.text}: {shown} ({configuration}) {verdict}")
        return "\n".join(lines)
