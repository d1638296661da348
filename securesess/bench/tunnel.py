"""Tunnel workloads: a plain TCP service reached directly, and through a tunnel.

Where things run
----------------
As in a deployment, the application (the benchmark, in this process)
speaks plain TCP to a backend, either directly, or through the tunnel: it
connects to the client end (:class:`~securesess.tunnel.TunnelClient`), which
carries the connection over a SecureStream to the server end
(:class:`~securesess.tunnel.TunnelServer`), which forwards it to the same
backend. The backend and each end run in a worker process of their own
(``python -m securesess.bench.worker``, jobs ``tunnel-backend``,
``tunnel-server`` and ``tunnel-client``), started once for the whole
measurement, as services would be. The ends' keys are generated here and
reach the workers with their job, on stdin: never on a command line, which
other users of the machine can read.

A direct connection crosses one process boundary each way, a tunnelled one
three, and each tunnel end copies every byte once more and encrypts or
decrypts it. On a two-core machine the four processes share two cores, so
every row also reports how busy each process on the path was (CPU seconds
per wall second, ``time.process_time`` in each): a pipeline goes at the pace
of its busiest stage, and the shares show which stage that was, or that the
cores themselves were the limit (the shares adding up to about 200%).

The backend
-----------
The application's first byte picks a service: :data:`_SINK` or
:data:`_ECHO`. The backend answers either with a go byte, so that no clock
starts before the whole path exists (for the tunnel: both TCP legs, the
handshake between the ends, and the server end's connection to the
backend). The sink counts bytes until the application's EOF and then
replies with the count, so the sender knows all of it arrived; a throughput
run is timed from the go byte until that reply. The echo returns whatever it
receives; a round trip is 64 bytes each way, as in
:func:`workloads.round_trip_times`.

Fairness
--------
Both paths lead to the same backend process. Rounds take the paths in turn
and each path keeps its best round, as the transports do, so both see the
same changes of load on a shared machine. Before the first round, an
untimed transfer a tenth the size warms each path up; each round-trip run
starts with a tenth as many untimed round trips.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import trio

from keystore import Identity, TrustStore
from securesess.bench.errors import BenchError
from securesess.bench.processes import JsonLines, WorkerProcess, answer_commands, worker_process
from securesess.bench.settings import Settings
from securesess.bench.transports import HOST
from securesess.bench.workloads import SLACK, p99, receive_exactly, send_bulk
from securesess.stream.protocols import DEFAULT_PROTOCOL

__all__ = [
    "APPLICATION",
    "BACKEND",
    "CLIENT_END",
    "PATHS",
    "PROCESSES",
    "PROTOCOL",
    "SERVER_END",
    "PathResults",
    "TunnelResults",
    "measure",
    "serve_backend",
    "serve_end",
]

#: The two ways from the application to the backend, in the report's column order.
PATHS: Final = ("direct", "tunnel")
APPLICATION: Final = "application"
CLIENT_END: Final = "client end"
SERVER_END: Final = "server end"
BACKEND: Final = "backend"
#: The processes each path runs through, in the order of the report's CPU columns.
PROCESSES: Final = {
    "direct": (APPLICATION, BACKEND),
    "tunnel": (APPLICATION, CLIENT_END, SERVER_END, BACKEND),
}
#: What the ends speak: the tunnel's default, as a deployment would use it.
PROTOCOL: Final = DEFAULT_PROTOCOL

# The application's first byte on a backend connection: which service it wants.
_SINK: Final = b"S"
_ECHO: Final = b"E"
_GO: Final = b"\x01"
# The sink's reply: the bytes it received, as a 64-bit count.
_COUNT: Final = struct.Struct("!Q")
_CHUNK: Final = 256 * 1024
_MESSAGE: Final = 64
_CLIENT_NAME: Final = "bench-tunnel-client"
_SERVER_NAME: Final = "bench-tunnel-server"
# How long an end waits for its connections to end once asked to stop; by
# then the application has closed them all.
_DRAIN_SECONDS: Final = 5.0
# The workers' own deadline, should this process be gone; this process
# bounds each workload much more tightly.
_WORKER_TIMEOUT: Final = 3600
# Deadline arithmetic, as in workloads, with the tunnel's extra hops allowed for.
_MIN_BYTES_PER_SECOND: Final = 10e6
_MAX_ROUND_TRIP_SECONDS: Final = 0.02


@dataclass(frozen=True, slots=True)
class PathResults:
    """One path's best round of each measurement."""

    throughput_mb_s: float
    rtt_median_us: float
    rtt_p99_us: float
    #: CPU seconds per wall second of each process on the path, during the
    #: best throughput run and during the best round-trip run.
    throughput_cpu: Mapping[str, float]
    rtt_cpu: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class TunnelResults:
    direct: PathResults
    tunnel: PathResults

    def path(self, name: str) -> PathResults:
        """The results of the path called ``name`` (one of :data:`PATHS`)."""
        if name not in PATHS:
            raise ValueError(f"unknown path {name!r}; expected one of {', '.join(PATHS)}")
        results: PathResults = getattr(self, name)
        return results


# -- the workers' side ----------------------------------------------------------------


async def serve_backend(commands: JsonLines, report: Callable[[dict[str, Any]], None]) -> None:
    """Worker side: a sink and an echo on one port, until stdin ends.

    Reports ``{"port": ...}`` once listening, then answers each command line
    with one report (:func:`processes.answer_commands`).
    """

    async def handle(stream: trio.SocketStream) -> None:
        service = await receive_exactly(stream, 1)
        if service not in (_SINK, _ECHO):
            raise BenchError(f"the backend got a connection asking for {service!r}")
        await stream.send_all(_GO)
        if service == _SINK:
            received = 0
            while data := await stream.receive_some(_CHUNK):
                received += len(data)
            await stream.send_all(_COUNT.pack(received))
        else:
            while data := await stream.receive_some(_CHUNK):
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host=HOST))
        port: int = listeners[0].socket.getsockname()[1]
        report({"port": port})
        await answer_commands(commands, report)
        nursery.cancel_scope.cancel()


async def serve_end(
    job: Mapping[str, Any], commands: JsonLines, report: Callable[[dict[str, Any]], None]
) -> None:
    """Worker side: a tunnel end, until stdin ends; then it drains.

    ``job["job"]`` is ``tunnel-server`` (forwarding to ``job["port"]``) or
    ``tunnel-client`` (connecting to the server end at ``job["port"]``);
    ``key`` is the end's private key, ``peer_key`` the public key it pins
    for the other end, under the name ``peer``, all in hex. Reports
    ``{"port": ...}`` once listening, then answers each command line with
    one report (:func:`processes.answer_commands`).
    """
    # Imported here, not at the top, because every worker loads this module:
    # the idle-memory job's figure (RSS growth per connection) moves with
    # what the process imported before it, since the connections counted
    # reuse memory that imports freed. Importing the tunnel in every worker
    # lowered it by about 2 KiB per connection.
    from securesess.tunnel import TunnelClient, TunnelServer  # noqa: PLC0415

    identity = Identity.from_private_bytes(bytes.fromhex(job["key"]), job["name"])
    trust = TrustStore()
    trust.add_peer(job["peer"], bytes.fromhex(job["peer_key"]))
    far = (HOST, int(job["port"]))
    end: TunnelServer | TunnelClient
    if job["job"] == "tunnel-server":
        end = TunnelServer(far, identity=identity, trust=trust)
    elif job["job"] == "tunnel-client":
        end = TunnelClient(far, identity=identity, trust=trust, expect=job["peer"])
    else:
        raise ValueError(f"not a tunnel end: {job['job']!r}")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(end.serve, 0, host=HOST))
        report({"port": end.port})
        await answer_commands(commands, report)
        await end.drain(_DRAIN_SECONDS)


# -- the application's side (here) ----------------------------------------------------------


def _end_job(job: str, port: int, identity: Identity, peer: Identity) -> dict[str, Any]:
    assert identity.name is not None
    assert peer.name is not None
    return {
        "job": job,
        "timeout": _WORKER_TIMEOUT,
        "port": port,
        "name": identity.name,
        "key": identity.private_bytes().hex(),
        "peer": peer.name,
        "peer_key": peer.public_key.hex(),
    }


@contextlib.asynccontextmanager
async def _workers() -> AsyncIterator[dict[str, WorkerProcess]]:
    """The backend, the server end and the client end, each in a worker, by name."""
    client = Identity.generate(_CLIENT_NAME)
    server = Identity.generate(_SERVER_NAME)
    # Each worker runs in a nursery, so the start-up deadline's scope must
    # enclose their whole lives; it is lifted once all three are listening.
    with trio.CancelScope() as starting:
        starting.deadline = trio.current_time() + SLACK
        async with contextlib.AsyncExitStack() as stack:
            backend = await stack.enter_async_context(
                worker_process({"job": "tunnel-backend", "timeout": _WORKER_TIMEOUT})
            )
            server_end = await stack.enter_async_context(
                worker_process(_end_job("tunnel-server", backend.port, server, client))
            )
            client_end = await stack.enter_async_context(
                worker_process(_end_job("tunnel-client", server_end.port, client, server))
            )
            starting.deadline = math.inf
            # Leaving the block stops them in reverse order: the client end first.
            yield {BACKEND: backend, SERVER_END: server_end, CLIENT_END: client_end}
    if starting.cancelled_caught:
        raise trio.TooSlowError("starting the backend and the tunnel's ends took too long")


async def _cpu_times(workers: Mapping[str, WorkerProcess]) -> dict[str, float]:
    """CPU seconds so far of this process and of ``workers``."""
    times = {APPLICATION: time.process_time()}
    for name, worker in workers.items():
        times[name] = await worker.cpu()
    return times


def _shares(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> dict[str, float]:
    return {name: (after[name] - before[name]) / seconds for name in before}


async def _open(port: int, service: bytes) -> trio.SocketStream:
    """A connection to ``service`` on the backend, through whatever listens on ``port``."""
    stream = await trio.open_tcp_stream(HOST, port)
    try:
        await stream.send_all(service)
        if await receive_exactly(stream, 1) != _GO:
            raise BenchError(
                "no go signal from the backend (through the tunnel, the ends' log on"
                " stderr says why)"
            )
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _throughput(
    port: int, total: int, workers: Mapping[str, WorkerProcess]
) -> tuple[float, dict[str, float]]:
    """MB/s of ``total`` bytes to the sink, and each process's share of a core meanwhile."""
    async with await _open(port, _SINK) as stream:
        before = await _cpu_times(workers)
        start = time.perf_counter()
        await send_bulk(stream, total)
        await stream.send_eof()
        reply = await receive_exactly(stream, _COUNT.size)
        seconds = time.perf_counter() - start
        after = await _cpu_times(workers)
    if not reply:
        raise BenchError("the backend closed the connection without saying what it received")
    (received,) = _COUNT.unpack(reply)
    if received != total:
        raise BenchError(f"sent {total} bytes but {received} arrived")
    return total / seconds / 1e6, _shares(before, after, seconds)


async def _round_trips(
    port: int, count: int, workers: Mapping[str, WorkerProcess]
) -> tuple[float, float, dict[str, float]]:
    """Median and p99 (us) of ``count`` echoed 64-byte messages, and each process's CPU share."""
    warm_up = max(count // 10, 10)
    request = os.urandom(_MESSAGE)
    samples: list[float] = []
    async with await _open(port, _ECHO) as stream:

        async def round_trip() -> None:
            await stream.send_all(request)
            if await receive_exactly(stream, _MESSAGE) != request:
                raise BenchError("the echo answered with different bytes")

        for _ in range(warm_up):
            await round_trip()
        before = await _cpu_times(workers)
        start = time.perf_counter()
        for _ in range(count):
            sent = time.perf_counter_ns()
            await round_trip()
            samples.append((time.perf_counter_ns() - sent) / 1000)
        seconds = time.perf_counter() - start
        after = await _cpu_times(workers)
    return statistics.median(samples), p99(samples), _shares(before, after, seconds)


def _throughput_deadline(total: int) -> float:
    return SLACK + total / _MIN_BYTES_PER_SECOND


async def measure(settings: Settings, progress: Callable[[str], None]) -> TunnelResults:
    """Throughput and round trips, direct and through the tunnel, each under its own deadline.

    Raises:
        BenchError: bytes were lost or changed, or a worker misbehaved.
        trio.TooSlowError: a workload overran its deadline.
    """
    total = settings.tunnel_bytes
    warm_up = max(total // 10, 1)
    rtt_deadline = SLACK + (max(settings.round_trips // 10, 10) + settings.round_trips) * (
        _MAX_ROUND_TRIP_SECONDS
    )
    throughput: dict[str, tuple[float, dict[str, float]]] = {}
    rtt: dict[str, tuple[float, float, dict[str, float]]] = {}
    progress("tunnel: starting the backend, the server end and the client end")
    async with _workers() as workers:
        ports = {"direct": workers[BACKEND].port, "tunnel": workers[CLIENT_END].port}
        on_path = {
            path: {name: workers[name] for name in PROCESSES[path] if name != APPLICATION}
            for path in PATHS
        }
        for path in PATHS:
            progress(f"tunnel: warming up the {path} path")
            with trio.fail_after(_throughput_deadline(warm_up)):
                await _throughput(ports[path], warm_up, on_path[path])
        for round_number in range(1, settings.repeat + 1):
            for path in PATHS:
                progress(f"tunnel: round {round_number}/{settings.repeat}, {path}")
                with trio.fail_after(_throughput_deadline(total)):
                    rate, cpu = await _throughput(ports[path], total, on_path[path])
                if rate > throughput.get(path, (0.0, {}))[0]:
                    throughput[path] = (rate, cpu)
                with trio.fail_after(rtt_deadline):
                    median, slow, cpu = await _round_trips(
                        ports[path], settings.round_trips, on_path[path]
                    )
                if path not in rtt or median < rtt[path][0]:
                    rtt[path] = (median, slow, cpu)
    direct, tunnel = (
        PathResults(
            throughput_mb_s=throughput[path][0],
            rtt_median_us=rtt[path][0],
            rtt_p99_us=rtt[path][1],
            throughput_cpu=throughput[path][1],
            rtt_cpu=rtt[path][2],
        )
        for path in PATHS
    )
    return TunnelResults(direct=direct, tunnel=tunnel)
