"""What the benchmark found, as a table or as JSON, with the project's targets.

The targets are printed as notes, never enforced: loopback numbers depend on
the machine, and a benchmark that fails on a slow CI runner helps nobody.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from dataclasses import dataclass
from typing import Final

from securesess.bench.hub import FANOUT_RECEIVERS, SENDER_TASKS, SIZES, HubResults
from securesess.bench.settings import Settings
from securesess.bench.transports import LABELS, NOISE, TRANSPORTS
from securesess.bench.tunnel import PATHS, PROCESSES, PROTOCOL, TunnelResults

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
HUB_TARGETS: Final = (HUB_FANOUT, HUB_RATE)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


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
                "tunnel": None if self.tunnel is None else _tunnel_json(self.tunnel),
                "hub": None if self.hub is None else _hub_json(self.hub),
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
            (HUB_RATE, best.rate, f"{best.members} members x {_size(best.size)}"),
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
            f"of {_size(settings.total_bytes)}, {handshakes}, {settings.round_trips} round "
            f"trips; {settings.idle_connections} idle connections",
            "",
        ]
        ratio_columns = [(name, baseline) for name in NOISE for baseline in _BASELINES]
        header = [LABELS[name] for name in TRANSPORTS] + [
            f"{_SHORT[name]}/{_SHORT[baseline]}" for name, baseline in ratio_columns
        ]
        rows: list[tuple[str, list[str]]] = []
        for metric in METRICS:
            values = [_number(self.values[metric.key][name]) for name in TRANSPORTS]
            ratios = [
                _times(self.ratio(metric, name, baseline)) for name, baseline in ratio_columns
            ]
            rows.append((metric.label, values + ratios))
        beyond = {"tcp": 0.0, **self.beyond_tcp()}
        tls_beyond = beyond["tls"]
        rows.append(
            (
                _BEYOND_TCP_LABEL,
                [_number(beyond[name]) for name in TRANSPORTS]
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
            lines += ["", *_tunnel_table(self.tunnel, settings)]
        if self.hub is not None:
            lines += ["", *_hub_table(self.hub, settings)]
            for hub_target, value, configuration in self._hub_targets():
                shown = f"{value:.1f} ms" if hub_target is HUB_FANOUT else f"{value:,.0f}/s"
                verdict = "met" if hub_target.met(value) else "MISSED"
                lines.append(f"target: {hub_target.text}: {shown} ({configuration}) {verdict}")
        return "\n".join(lines)


def _hub_json(results: HubResults) -> dict[str, object]:
    return {
        "sender_tasks": SENDER_TASKS,
        "throughput": [
            {
                "members": row.members,
                "message_bytes": row.size,
                "delivered": row.delivered,
                "seconds": row.seconds,
                "delivered_per_s": row.rate,
                "mb_s": row.mb_s,
                "hub_cpu": row.hub_cpu,
                "clients_cpu": row.client_cpu,
            }
            for row in results.throughput
        ],
        "fanout": {
            "members": FANOUT_RECEIVERS,
            "samples": len(results.fanout_ms),
            "median_ms": results.fanout_median_ms,
            "p99_ms": results.fanout_p99_ms,
            "hub_cpu_ms": results.fanout_hub_cpu_ms,
            "clients_cpu_ms": results.fanout_client_cpu_ms,
        },
        "idle_kib_per_member": results.idle_kib_per_member,
    }


def _hub_table(results: HubResults, settings: Settings) -> list[str]:
    header = ("members", "message", "delivered msgs/s", "MB/s", "hub CPU", "clients CPU")
    rows = [
        (
            str(row.members),
            _size(row.size),
            f"{row.rate:,.0f}",
            _number(row.mb_s),
            f"{row.hub_cpu:.0%}",
            f"{row.client_cpu:.0%}",
        )
        for row in results.throughput
    ]
    widths = [
        max(len(text), *(len(row[column]) for row in rows)) for column, text in enumerate(header)
    ]
    return [
        f"Hub: one session, {settings.hub_messages:,} deliveries per configuration "
        f"({_size(max(SIZES))}: an eighth); the first member broadcasts from "
        f"{SENDER_TASKS} tasks, the others receive.",
        "  ".join(f"{text:>{width}}" for text, width in zip(header, widths, strict=True)),
        *(
            "  ".join(f"{cell:>{width}}" for cell, width in zip(row, widths, strict=True))
            for row in rows
        ),
        f"fan-out of a 64-byte broadcast to {FANOUT_RECEIVERS} members: median "
        f"{results.fanout_median_ms:.1f} ms, p99 {results.fanout_p99_ms:.1f} ms "
        f"({len(results.fanout_ms)} broadcasts); CPU per broadcast: hub "
        f"{results.fanout_hub_cpu_ms:.1f} ms, clients {results.fanout_client_cpu_ms:.1f} ms",
        f"idle memory in the hub: {results.idle_kib_per_member:.1f} KiB per connected member "
        f"({settings.idle_connections} members in one session)",
        "",
        "Hub in a worker process, every member's client in this one. CPU: each process's CPU",
        "seconds per second of the run (100% = one core busy); the side near 100% set the pace.",
        "Fan-out: send to the last member's receive. Idle memory: RSS growth of the hub alone.",
        "",
    ]


# The tunnel's rows: a label, then (attribute of PathResults, is it a latency).
_TUNNEL_ROWS: Final = (
    ("throughput (MB/s)", "throughput_mb_s", False),
    ("RTT median (us)", "rtt_median_us", True),
    ("RTT p99 (us)", "rtt_p99_us", True),
)
# Processes on any path, in the order of the CPU columns.
_TUNNEL_PROCESSES: Final = PROCESSES["tunnel"]


def _tunnel_json(results: TunnelResults) -> dict[str, object]:
    def value(path: str, key: str) -> float:
        number: float = getattr(results.path(path), key)
        return number

    return {
        "protocol": PROTOCOL,
        **{
            path: {
                **{key: value(path, key) for _, key, _ in _TUNNEL_ROWS},
                "throughput_cpu": dict(results.path(path).throughput_cpu),
                "rtt_cpu": dict(results.path(path).rtt_cpu),
            }
            for path in PATHS
        },
        "ratios": {key: value("tunnel", key) / value("direct", key) for _, key, _ in _TUNNEL_ROWS},
        "added_us": {
            key: value("tunnel", key) - value("direct", key)
            for _, key, latency in _TUNNEL_ROWS
            if latency
        },
    }


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "-") + _number(abs(value))


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """The first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(
            f"{cell:<{width}}" if column == 0 else f"{cell:>{width}}"
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _tunnel_table(results: TunnelResults, settings: Settings) -> list[str]:
    direct, tunnel = results.direct, results.tunnel
    figures: list[tuple[str, ...]] = [("", "direct", "tunnel", "tunnel/direct", "added")]
    for label, key, latency in _TUNNEL_ROWS:
        before, after = getattr(direct, key), getattr(tunnel, key)
        added = _signed(after - before) if latency else "-"
        figures.append((label, _number(before), _number(after), f"{after / before:.2f}x", added))
    cpu: list[tuple[str, ...]] = [("CPU", *_TUNNEL_PROCESSES)]
    for workload, attribute in (("throughput", "throughput_cpu"), ("round trips", "rtt_cpu")):
        for path in PATHS:
            shares: dict[str, float] = getattr(results.path(path), attribute)
            cpu.append(
                (
                    f"{workload}, {path}",
                    *(
                        f"{shares[name]:.0%}" if name in shares else "-"
                        for name in _TUNNEL_PROCESSES
                    ),
                )
            )
    return [
        *textwrap.wrap(
            "Tunnel: the application (this process) and a plain TCP backend, connected "
            "directly or through the tunnel's client end and server end "
            f"({PROTOCOL} between them); best of {settings.repeat} interleaved round(s) of "
            f"{_size(settings.tunnel_bytes)}, {settings.round_trips} round trips of 64 bytes.",
            width=90,
        ),
        *_aligned(figures),
        "",
        *_aligned(cpu),
        "",
        "Backend, client end and server end: a worker process each, sharing the machine's cores.",
        "Throughput: from the backend's go signal until it confirms every byte. CPU: each",
        "process's CPU seconds per second of the best run (100% = one core busy).",
    ]


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"
