"""``securesess bench``: SecureStream against raw TCP and TLS 1.3, on loopback.

One run measures, for each transport, bulk throughput (across two
processes), handshakes per second, the round-trip time of a small request,
and memory per idle connection; see :mod:`securesess.bench.workloads`.
:mod:`securesess.bench.report` prints the results beside the project's
targets. The ``securesess`` command imports this package only when asked to
benchmark, since it pulls in ``ssl``, ``subprocess`` and certificate code.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import trio

from securesess.bench import workloads
from securesess.bench.report import HANDSHAKES, IDLE, RTT_MEDIAN, RTT_P99, THROUGHPUT, Results
from securesess.bench.transports import LABELS, TRANSPORTS, load_transport, write_credentials
from securesess.bench.workloads import FULL, QUICK, BenchError, Settings

__all__ = ["FULL", "QUICK", "BenchError", "Results", "Settings", "run"]


async def _measure(
    settings: Settings, credentials: Path, progress: Callable[[str], None]
) -> Results:
    values: dict[str, dict[str, float]] = {
        metric.key: {} for metric in (THROUGHPUT, HANDSHAKES, RTT_MEDIAN, RTT_P99, IDLE)
    }
    for name in TRANSPORTS:
        transport = load_transport(name, credentials)
        progress(f"{LABELS[name]}: throughput")
        values[THROUGHPUT.key][name] = await workloads.throughput(name, credentials, settings)
        progress(f"{LABELS[name]}: handshakes")
        values[HANDSHAKES.key][name] = await workloads.handshake_rate(transport, settings)
        progress(f"{LABELS[name]}: round trips")
        median, p99 = await workloads.round_trip_times(transport, settings)
        values[RTT_MEDIAN.key][name] = median
        values[RTT_P99.key][name] = p99
        progress(f"{LABELS[name]}: idle memory")
        values[IDLE.key][name] = await workloads.idle_memory(name, credentials, settings)
    return Results(settings, values)


def run(settings: Settings, progress: Callable[[str], None]) -> Results:
    """Run every workload on every transport, reporting each step to ``progress``.

    Raises:
        BenchError: a workload misbehaved (lost bytes, a worker that died).
        trio.TooSlowError: a workload overran its deadline.
        subprocess.CalledProcessError: a worker process failed.
        ExceptionGroup: of the above, when they arise inside a nursery.
    """
    # Throwaway keys and certificates, shared with the worker processes.
    with tempfile.TemporaryDirectory(prefix="securesess-bench-") as directory:
        credentials = Path(directory)
        write_credentials(credentials)
        return trio.run(_measure, settings, credentials, progress)
