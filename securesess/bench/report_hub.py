"""The hub's part of the benchmark's report: its table and its JSON."""

from __future__ import annotations

from securesess.bench.hub import FANOUT_RECEIVERS, SENDER_TASKS, SIZES, HubResults
from securesess.bench.report_format import number, size
from securesess.bench.settings import Settings

__all__ = ["hub_json", "hub_table"]


def hub_json(results: HubResults) -> dict[str, object]:
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
        "key_change": {
            "members": FANOUT_RECEIVERS + 1,
            "samples_ms": list(results.key_change_ms),
            "median_ms": results.key_change_median_ms,
            "clients_cpu_ms": results.key_change_cpu_ms,
        },
    }


def hub_table(results: HubResults, settings: Settings) -> list[str]:
    header = ("members", "message", "delivered msgs/s", "MB/s", "hub CPU", "clients CPU")
    rows = [
        (
            str(row.members),
            size(row.size),
            f"{row.rate:,.0f}",
            number(row.mb_s),
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
        f"({size(max(SIZES))}: an eighth); the first member broadcasts from "
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
        f"key change in that session (a member leaves, until the first message sealed in the "
        f"next epoch has reached all {FANOUT_RECEIVERS - 1} others): median "
        f"{results.key_change_median_ms:.1f} ms, max {max(results.key_change_ms, default=0):.1f} "
        f"ms ({len(results.key_change_ms)} changes); clients CPU {results.key_change_cpu_ms:.1f} "
        "ms per change",
        f"idle memory in the hub: {results.idle_kib_per_member:.1f} KiB per connected member "
        f"({settings.idle_connections} members in one session)",
        "",
        "Hub in a worker process, every member's client in this one. CPU: each process's CPU",
        "seconds per second of the run (100% = one core busy); the side near 100% set the pace.",
        "Fan-out: send to the last member's receive. Idle memory: RSS growth of the hub alone.",
        "",
    ]
