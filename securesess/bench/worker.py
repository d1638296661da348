"""The benchmark's worker process: ``python -m securesess.bench.worker``.

It reads one JSON job, a line, from stdin and writes its reports to stdout,
one JSON object per line:

* ``{"job": "receive", "transport", "credentials", "runs", "timeout"}``: the
  receiving end of the throughput test (:func:`workloads.receive_bulk`).
* ``{"job": "idle", "transport", "credentials", "connections", "timeout"}``:
  memory per idle connection (:func:`workloads.idle_kib_per_connection`),
  reported as ``{"kib": ...}``.
* ``{"job": "hub", "credentials", "timeout"}``: a hub, until stdin ends; the
  lines after the job are commands (:func:`securesess.bench.hub_server.serve`).
* ``{"job": "tunnel-backend", "timeout"}``: the tunnel benchmark's backend,
  until stdin ends, also taking commands
  (:func:`securesess.bench.tunnel.serve_backend`).
* ``{"job": "tunnel-server" or "tunnel-client", "timeout", "port", "name",
  "key", "peer", "peer_key"}``: a tunnel end, likewise
  (:func:`securesess.bench.tunnel.serve_end`). Its private key comes here,
  on stdin, rather than on the command line, where any user could read it.

The parent kills a worker that outlives its deadline; the worker's own
``timeout`` makes it give up too, should the parent be gone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import trio

from securesess.bench import hub_server, tunnel, workloads
from securesess.bench.processes import JsonLines
from securesess.bench.transports import load_transport


def _report(report: dict[str, Any]) -> None:
    print(json.dumps(report), flush=True)


async def _run() -> None:
    # Read stdin through Trio, not sys.stdin, whose buffer could swallow the
    # commands that follow the job line (hub and tunnel jobs).
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        lines = JsonLines(stdin)
        job = await lines.next()
        with trio.fail_after(job["timeout"]):
            if job["job"] == "hub":
                await hub_server.serve(Path(job["credentials"]), lines, _report)
                return
            if job["job"] == "tunnel-backend":
                await tunnel.serve_backend(lines, _report)
                return
            if job["job"] in ("tunnel-server", "tunnel-client"):
                await tunnel.serve_end(job, lines, _report)
                return
            transport = load_transport(job["transport"], Path(job["credentials"]))
            if job["job"] == "receive":
                await workloads.receive_bulk(transport, job["runs"], _report)
            elif job["job"] == "idle":
                kib = await workloads.idle_kib_per_connection(transport, job["connections"])
                _report({"kib": kib})
            else:
                raise ValueError(f"unknown job {job['job']!r}")


def main() -> None:
    trio.run(_run)


if __name__ == "__main__":
    main()
