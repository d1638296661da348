"""``securesess bench``: SecureStream against raw TCP and TLS 1.3, and the hub, on loopback.

One run measures, for each transport, bulk throughput (across two
processes), handshakes per second, the round-trip time of a small request,
and memory per idle connection; see :mod:`securesess.bench.workloads`. Then,
unless ``Settings.tunnel`` is false, throughput and round trips to a plain
TCP service directly and through a tunnel; see :mod:`securesess.bench.tunnel`.
Then, unless ``Settings.hub`` is false, messages per second through the hub,
fan-out latency and memory per idle member; see :mod:`securesess.bench.hub`.
:mod:`securesess.bench.report` prints the results beside the project's
targets. The ``securesess`` command imports this package only when asked to
benchmark, since it pulls in ``ssl``, ``subprocess`` and certificate code.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import trio

from securesess.bench import hub, tunnel, workloads
from securesess.bench.errors import BenchError
from securesess.bench.report import HANDSHAKES, IDLE, RTT_MEDIAN, RTT_P99, THROUGHPUT, Results
from securesess.bench.settings import FULL, QUICK, Settings
from securesess.bench.transports import LABELS, TRANSPORTS, load_transport, write_credentials

__all__ = ["FULL", "QUICK", "BenchError", "Results", "Settings", "run"]


async def _measure(
    settings: Settings, credentials: Path, progress: Callable[[str], None]
) -> Results:
    values: dict[str, dict[str, float]] = {
        metric.key: {} for metric in (THROUGHPUT, HANDSHAKES, RTT_MEDIAN, RTT_P99, IDLE)
    }
    transports = {name: load_transport(name, credentials) for name in TRANSPORTS}
    one_run = dataclasses.replace(settings, repeat=1)
    # Rounds visit every transport in turn, and each keeps its best round: on a
    # shared machine the load changes over a run, and interleaving exposes all
    # transports to it alike, so the ratios stay fair.
    for round_number in range(1, settings.repeat + 1):
        for name, transport in transports.items():
            progress(f"round {round_number}/{settings.repeat}, {LABELS[name]}")
            rate = await workloads.throughput(name, credentials, one_run)
            _keep_best(values[THROUGHPUT.key], name, rate, higher_is_better=True)
            handshakes = await workloads.handshake_rate(transport, one_run)
            _keep_best(values[HANDSHAKES.key], name, handshakes, higher_is_better=True)
            median, p99 = await workloads.round_trip_times(transport, one_run)
            if median < values[RTT_MEDIAN.key].get(name, float("inf")):
                values[RTT_MEDIAN.key][name] = median
                values[RTT_P99.key][name] = p99
    for name in TRANSPORTS:
        progress(f"{LABELS[name]}: idle memory")
        values[IDLE.key][name] = await workloads.idle_memory(name, credentials, settings)
    tunnel_results = await tunnel.measure(settings, progress) if settings.tunnel else None
    hub_results = await hub.measure(credentials, settings, progress) if settings.hub else None
    return Results(settings, values, hub_results, tunnel_results)


def _keep_best(
    results: dict[str, float], name: str, value: float, *, higher_is_better: bool
) -> None:
    if name not in results or (value > results[name]) == higher_is_better:
        results[name] = value


def run(settings: Settings, progress: Callable[[str], None]) -> Results:
    """Run every workload on every transport, reporting each step to ``progress``.

    Raises:
        BenchError: a workload misbehaved (lost bytes or messages, a worker that died).
        trio.TooSlowError: a workload overran its deadline.
        subprocess.CalledProcessError: a worker process failed.
        ExceptionGroup: of the above, when they arise inside a nursery.
    """
    # Throwaway keys and certificates, shared with the worker processes.
    with tempfile.TemporaryDirectory(prefix="securesess-bench-") as directory:
        credentials = Path(directory)
        write_credentials(credentials)
        if settings.hub:
            hub.write_credentials(credentials, settings)
        return trio.run(_measure, settings, credentials, progress)
