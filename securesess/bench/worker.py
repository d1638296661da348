"""The benchmark's worker process: ``python -m securesess.bench.worker``.

It reads one JSON job from stdin and writes its reports to stdout, one JSON
object per line:

* ``{"job": "receive", "transport", "credentials", "runs", "timeout"}``: the
  receiving end of the throughput test (:func:`workloads.receive_bulk`).
* ``{"job": "idle", "transport", "credentials", "connections", "timeout"}``:
  memory per idle connection (:func:`workloads.idle_kib_per_connection`),
  reported as ``{"kib": ...}``.

The parent kills a worker that outlives its deadline; the worker's own
``timeout`` makes it give up too, should the parent be gone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio

from securesess.bench import workloads
from securesess.bench.transports import load_transport


def _report(report: dict[str, Any]) -> None:
    print(json.dumps(report), flush=True)


async def _run(job: dict[str, Any]) -> None:
    transport = load_transport(job["transport"], Path(job["credentials"]))
    with trio.fail_after(job["timeout"]):
        if job["job"] == "receive":
            await workloads.receive_bulk(transport, job["runs"], _report)
        elif job["job"] == "idle":
            kib = await workloads.idle_kib_per_connection(transport, job["connections"])
            _report({"kib": kib})
        else:
            raise ValueError(f"unknown job {job['job']!r}")


def main() -> None:
    trio.run(_run, json.load(sys.stdin))


if __name__ == "__main__":
    main()
