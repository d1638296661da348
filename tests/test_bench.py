"""``securesess bench --quick`` runs end to end and reports every number.

A smoke test only: it checks the benchmark works, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

from securesess import bench
from securesess.bench.hub import FANOUT_RECEIVERS, MEMBERS, SIZES, HubResults, Throughput
from securesess.bench.report import METRICS, Results
from securesess.cli import main

TRANSPORTS = {"tcp", "tls", "noise-aesgcm", "noise-chachapoly"}
METRIC_KEYS = {
    "throughput_mb_s",
    "handshakes_per_s",
    "rtt_median_us",
    "rtt_p99_us",
    "idle_kib_per_conn",
}


@pytest.fixture(scope="module")
def quick_report() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "securesess", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_quick_bench_reports_every_metric_for_every_transport(
    quick_report: dict[str, Any],
) -> None:
    assert set(quick_report["transports"]) == TRANSPORTS
    assert set(quick_report["metrics"]) == METRIC_KEYS
    for metric, values in quick_report["metrics"].items():
        assert set(values) == TRANSPORTS, metric
        for transport, value in values.items():
            assert isinstance(value, float), (metric, transport)
            assert value > 0, (metric, transport, value)


def test_quick_bench_reports_the_hub(quick_report: dict[str, Any]) -> None:
    hub = quick_report["hub"]
    rows = hub["throughput"]
    assert [(row["members"], row["message_bytes"]) for row in rows] == [
        (members, size) for members in MEMBERS for size in SIZES
    ]
    for row in rows:
        where = (row["members"], row["message_bytes"])
        assert row["delivered"] >= row["members"] - 1, where
        assert row["delivered"] % (row["members"] - 1) == 0, where
        for key in ("seconds", "delivered_per_s", "mb_s", "hub_cpu", "clients_cpu"):
            assert isinstance(row[key], float), (where, key)
            assert row[key] > 0, (where, key, row[key])
        assert row["delivered_per_s"] == pytest.approx(row["delivered"] / row["seconds"])
        # CPU seconds per second of one process: a process runs on one core at a time
        # (a little over 1 for the threads the runtime keeps, never many).
        assert row["hub_cpu"] < 1.5, where
    fanout = hub["fanout"]
    assert fanout["members"] == FANOUT_RECEIVERS
    assert fanout["samples"] == bench.QUICK.hub_fanouts
    assert 0 < fanout["median_ms"] <= fanout["p99_ms"] < 30_000
    assert fanout["hub_cpu_ms"] > 0
    assert fanout["clients_cpu_ms"] > 0
    assert isinstance(hub["idle_kib_per_member"], float)
    assert hub["idle_kib_per_member"] > 0
    hub_targets = [target for target in quick_report["targets"] if target["transport"] == "hub"]
    assert len(hub_targets) == 2
    for target in hub_targets:
        assert isinstance(target["met"], bool)
        assert target["value"] > 0
        assert target["configuration"]


def _results(settings: bench.Settings, hub: HubResults | None) -> Results:
    values = {metric.key: dict.fromkeys(TRANSPORTS, 1.0) for metric in METRICS}
    return Results(settings, values, hub)


def test_the_table_shows_the_hub_rows_and_its_targets() -> None:
    rows = tuple(
        Throughput(members, size, 1000 * (members - 1), 0.5, 0.9, 0.8)
        for members in MEMBERS
        for size in SIZES
    )
    hub = HubResults(
        rows,
        fanout_ms=(1.0, 2.0, 60.0),
        fanout_hub_cpu_ms=1.5,
        fanout_client_cpu_ms=4.5,
        idle_kib_per_member=64.0,
    )
    table = _results(bench.QUICK, hub).table()
    assert "fan-out of a 64-byte broadcast to 100 members: median 2.0 ms" in table
    assert "CPU per broadcast: hub 1.5 ms, clients 4.5 ms" in table
    assert "idle memory in the hub: 64.0 KiB per connected member" in table
    assert "within 50 ms (p99): 58.8 ms" in table
    assert "MISSED" in table.split("within 50 ms (p99)")[-1].splitlines()[0]
    # 100 members deliver 99 messages per broadcast: the best rate, 198,000/s.
    assert "198,000/s (100 members x 64 bytes) met" in table


def test_no_hub_skips_the_hub_and_the_hub_options_reach_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bench.Settings] = []

    def run(settings: bench.Settings, progress: object) -> Results:
        seen.append(settings)
        return _results(settings, None)

    monkeypatch.setattr(bench, "run", run)
    arguments = ["bench", "--quick", "--hub-messages", "123", "--fanouts", "7", "--no-hub"]
    result = CliRunner().invoke(main, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.hub, settings.hub_messages, settings.hub_fanouts) == (False, 123, 7)
    report = json.loads(result.stdout)
    assert report["hub"] is None
    assert all(target["transport"] != "hub" for target in report["targets"])
    table = CliRunner().invoke(main, arguments)
    assert table.exit_code == 0, table.output
    assert "Hub" not in table.stdout
