"""``securesess bench --quick`` runs end to end and reports every number.

A smoke test only: it checks the benchmark works, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys

TRANSPORTS = {"tcp", "tls", "noise-aesgcm", "noise-chachapoly"}
METRICS = {
    "throughput_mb_s",
    "handshakes_per_s",
    "rtt_median_us",
    "rtt_p99_us",
    "idle_kib_per_conn",
}


def test_quick_bench_reports_every_metric_for_every_transport() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "securesess", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert set(report["transports"]) == TRANSPORTS
    assert set(report["metrics"]) == METRICS
    for metric, values in report["metrics"].items():
        assert set(values) == TRANSPORTS, metric
        for transport, value in values.items():
            assert isinstance(value, float), (metric, transport)
            assert value > 0, (metric, transport, value)
