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
from securesess.bench.tunnel import PATHS, PROCESSES, PathResults, TunnelResults
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
            if metric == "idle_kib_per_conn" and transport == "tcp":
                # RSS grows by whole pages: a quick run's few raw sockets may
                # fit in pages already resident.
                assert value >= 0, (metric, transport, value)
            else:
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
    change = hub["key_change"]
    assert change["members"] == FANOUT_RECEIVERS + 1
    assert len(change["samples_ms"]) >= 3
    assert 0 < change["median_ms"] < 30_000
    assert change["clients_cpu_ms"] > 0
    hub_targets = [target for target in quick_report["targets"] if target["transport"] == "hub"]
    assert len(hub_targets) == 3
    for target in hub_targets:
        assert isinstance(target["met"], bool)
        assert target["value"] > 0
        assert target["configuration"]


def test_quick_bench_reports_the_tunnel(quick_report: dict[str, Any]) -> None:
    tunnel = quick_report["tunnel"]
    assert tunnel["protocol"] == "Noise_XX_25519_AESGCM_SHA256"
    for path in PATHS:
        results = tunnel[path]
        for key in ("throughput_mb_s", "rtt_median_us", "rtt_p99_us"):
            assert isinstance(results[key], float), (path, key)
            assert results[key] > 0, (path, key, results[key])
        assert results["rtt_median_us"] <= results["rtt_p99_us"], path
        for key in ("throughput_cpu", "rtt_cpu"):
            # Every process on the path, and only those, in the report's order.
            assert list(results[key]) == list(PROCESSES[path]), (path, key)
            for process, share in results[key].items():
                assert 0 < share < 1.5, (path, key, process, share)
    for key, ratio in tunnel["ratios"].items():
        assert ratio == pytest.approx(tunnel["tunnel"][key] / tunnel["direct"][key]), key
    assert set(tunnel["added_us"]) == {"rtt_median_us", "rtt_p99_us"}
    for key, added in tunnel["added_us"].items():
        assert added == pytest.approx(tunnel["tunnel"][key] - tunnel["direct"][key]), key


def _results(
    settings: bench.Settings, hub: HubResults | None, tunnel: TunnelResults | None = None
) -> Results:
    values = {metric.key: dict.fromkeys(TRANSPORTS, 1.0) for metric in METRICS}
    return Results(settings, values, hub, tunnel)


def test_the_table_shows_the_tunnel_rows() -> None:
    direct = PathResults(
        throughput_mb_s=2000.0,
        rtt_median_us=100.0,
        rtt_p99_us=250.0,
        throughput_cpu={"application": 0.9, "backend": 0.8},
        rtt_cpu={"application": 0.5, "backend": 0.5},
    )
    tunnel = PathResults(
        throughput_mb_s=500.0,
        rtt_median_us=400.0,
        rtt_p99_us=200.0,
        throughput_cpu=dict.fromkeys(PROCESSES["tunnel"], 0.45),
        rtt_cpu=dict.fromkeys(PROCESSES["tunnel"], 0.3),
    )
    lines = _results(bench.QUICK, None, TunnelResults(direct, tunnel)).table().splitlines()
    assert any(line.startswith("Tunnel: ") for line in lines)
    rows = {line.split("  ")[0].strip(): line.split() for line in lines if "  " in line}
    assert rows["throughput (MB/s)"][-4:] == ["2000", "500", "0.25x", "-"]
    assert rows["RTT median (us)"][-4:] == ["100", "400", "4.00x", "+300"]
    # Noise can make the tunnel's p99 the lower one; the sign says so.
    assert rows["RTT p99 (us)"][-4:] == ["250", "200", "0.80x", "-50.0"]
    assert rows["CPU"] == ["CPU", "application", "client", "end", "server", "end", "backend"]
    assert rows["throughput, direct"][-4:] == ["90%", "-", "-", "80%"]
    assert rows["round trips, tunnel"][-4:] == ["30%", "30%", "30%", "30%"]


def test_a_baseline_that_measured_zero_gives_no_ratio_rather_than_a_crash() -> None:
    results = _results(bench.QUICK, None)
    idle = next(metric for metric in METRICS if metric.key == "idle_kib_per_conn")
    results.values[idle.key]["tcp"] = 0.0
    assert results.ratio(idle, "noise-aesgcm", "tcp") is None
    row = next(line for line in results.table().splitlines() if line.startswith(idle.label))
    assert "-" in row.split()
    assert json.loads(results.to_json())["ratios"]["noise-aesgcm/tcp"][idle.key] is None


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


def test_no_hub_and_no_tunnel_skip_them_and_their_options_reach_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bench.Settings] = []

    def run(settings: bench.Settings, progress: object) -> Results:
        seen.append(settings)
        return _results(settings, None)

    monkeypatch.setattr(bench, "run", run)
    arguments = ["bench", "--quick", "--hub-messages", "123", "--fanouts", "7", "--no-hub"]
    arguments += ["--tunnel-bytes", "3M", "--no-tunnel"]
    result = CliRunner().invoke(main, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.hub, settings.hub_messages, settings.hub_fanouts) == (False, 123, 7)
    assert (settings.tunnel, settings.tunnel_bytes) == (False, 3 << 20)
    report = json.loads(result.stdout)
    assert report["hub"] is None
    assert report["tunnel"] is None
    assert all(target["transport"] != "hub" for target in report["targets"])
    table = CliRunner().invoke(main, arguments)
    assert table.exit_code == 0, table.output
    assert "Hub" not in table.stdout
    assert "Tunnel" not in table.stdout
