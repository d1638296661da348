"""The tunnel's part of the benchmark's report: its table and its JSON."""

from __future__ import annotations

import textwrap
from typing import Final

from securesess.bench.report_format import aligned, number, signed, size
from securesess.bench.settings import Settings
from securesess.bench.tunnel import PATHS, PROCESSES, PROTOCOL, TunnelResults

__all__ = ["tunnel_json", "tunnel_table"]

# The tunnel's rows: a label, then (attribute of PathResults, is it a latency).
_TUNNEL_ROWS: Final = (
    ("throughput (MB/s)", "throughput_mb_s", False),
    ("RTT median (us)", "rtt_median_us", True),
    ("RTT p99 (us)", "rtt_p99_us", True),
)
# Processes on any path, in the order of the CPU columns.
_TUNNEL_PROCESSES: Final = PROCESSES["tunnel"]


def tunnel_json(results: TunnelResults) -> dict[str, object]:
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


def tunnel_table(results: TunnelResults, settings: Settings) -> list[str]:
    direct, tunnel = results.direct, results.tunnel
    figures: list[tuple[str, ...]] = [("", "direct", "tunnel", "tunnel/direct", "added")]
    for label, key, latency in _TUNNEL_ROWS:
        before, after = getattr(direct, key), getattr(tunnel, key)
        added = signed(after - before) if latency else "-"
        figures.append((label, number(before), number(after), f"{after / before:.2f}x", added))
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
            f"{size(settings.tunnel_bytes)}, {settings.round_trips} round trips of 64 bytes.",
            width=90,
        ),
        *aligned(figures),
        "",
        *aligned(cpu),
        "",
        "Backend, client end and server end: a worker process each, sharing the machine's cores.",
        "Throughput: from the backend's go signal until it confirms every byte. CPU: each",
        "process's CPU seconds per second of the best run (100% = one core busy).",
    ]
