"""The four measurements, each for one transport at a time.

* Throughput runs the receiver in a worker process, so sender and receiver
  each have a CPU, as two real hosts would; everything else runs both ends in
  this process, which is fair because every transport pays the same.
* Idle memory also runs in a worker: a fresh process per transport, so memory
  freed by earlier workloads cannot hide the growth being measured.

Every workload runs under a deadline derived from its size and a rate far
below any plausible result, so a hang fails instead of stalling the run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from securesess.bench.errors import BenchError
from securesess.bench.processes import (
    WORKER,
    JsonLines,
    WorkerProcess,
    answer_commands,
    rss_bytes,
    worker_process,
)
from securesess.bench.settings import FULL, QUICK, Settings
from securesess.bench.transports import Handler, Transport, load_transport

# The settings, BenchError and the worker processes' plumbing have modules of
# their own now; their names stay importable from here.
__all__ = [
    "FULL",
    "IDLE_WARM_UP",
    "QUICK",
    "SLACK",
    "WORKER",
    "BenchError",
    "JsonLines",
    "Settings",
    "WorkerProcess",
    "answer_commands",
    "handshake_rate",
    "idle_kib_per_connection",
    "idle_memory",
    "p99",
    "receive_bulk",
    "receive_exactly",
    "round_trip_times",
    "rss_bytes",
    "send_bulk",
    "throughput",
    "worker_process",
]

# Bytes per send_all, and the most a receive_some asks for.
_CHUNK: Final = 256 * 1024
# The size of the request and of the response in the round-trip test.
_MESSAGE: Final = 64
# The receiver sends this byte and then starts its clock, so bytes the sender
# pushed before the clock started cannot inflate the rate.
_GO: Final = b"\x01"
# Idle connections opened before the baseline RSS reading, so one-time costs
# (lazy imports, caches, the first arena of each object size) are not counted
# as per-connection memory.
IDLE_WARM_UP: Final = 8
# Deadline arithmetic: the slowest believable rates, plus slack for start-up.
SLACK: Final = 30.0
_MIN_BYTES_PER_SECOND: Final = 20e6
_MAX_HANDSHAKE_SECONDS: Final = 0.05
_MAX_ROUND_TRIP_SECONDS: Final = 0.01
_MAX_IDLE_CONNECT_SECONDS: Final = 0.05


# -- plumbing ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _serving(transport: Transport, handler: Handler) -> AsyncIterator[int]:
    """Serve with ``handler`` for the duration of the block; yields the port."""
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(partial(transport.serve, handler))
        yield port
        nursery.cancel_scope.cancel()


async def _connect_accepted(
    transport: Transport, port: int, accepted: trio.MemoryReceiveChannel[None]
) -> trio.abc.Stream:
    """Connect, then wait until the server's handler runs for this connection.

    A TLS 1.3 client finishes its handshake before the server has checked the
    client's certificate; waiting for the server makes every transport count
    a handshake only once both ends have authenticated each other.
    """
    stream = await transport.connect(port)
    await accepted.receive()
    return stream


async def receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    """``size`` bytes, or b"" if the stream ends cleanly before the first."""
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            if data:
                raise BenchError(f"the stream ended {size - len(data)} bytes into a message")
            return b""
        data += chunk
    return bytes(data)


def p99(samples: list[float]) -> float:
    """The 99th percentile of ``samples``, as every round-trip figure reports it."""
    # quantiles() needs two samples; with one, that sample is every percentile.
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]


# -- 1. bulk throughput ----------------------------------------------------------------


async def receive_bulk(
    transport: Transport, runs: int, report: Callable[[dict[str, Any]], None]
) -> None:
    """Worker side: serve ``runs`` connections, reporting the bytes and seconds of each.

    Reports ``{"port": ...}`` once listening, then per connection
    ``{"bytes": ..., "seconds": ...}``, timed from the go signal to EOF.
    """
    finished = 0
    async with trio.open_nursery() as nursery:

        async def receive(stream: trio.abc.Stream) -> None:
            nonlocal finished
            await stream.send_all(_GO)
            start = time.perf_counter()
            received = 0
            while data := await stream.receive_some(_CHUNK):
                received += len(data)
            report({"bytes": received, "seconds": time.perf_counter() - start})
            finished += 1
            if finished == runs:
                nursery.cancel_scope.cancel()

        port = await nursery.start(partial(transport.serve, receive))
        report({"port": port})


async def send_bulk(stream: trio.abc.Stream, total: int) -> None:
    # Random rather than zero bytes, in case anything on the path compresses.
    chunk = os.urandom(_CHUNK)
    full, rest = divmod(total, _CHUNK)
    for _ in range(full):
        await stream.send_all(chunk)
    if rest:
        await stream.send_all(chunk[:rest])


async def throughput(name: str, credentials: Path, settings: Settings) -> float:
    """The best rate, in MB/s, of ``settings.repeat`` bulk transfers to a worker process."""
    transport = load_transport(name, credentials)
    runs, total = settings.repeat, settings.total_bytes
    timeout = SLACK + runs * total / _MIN_BYTES_PER_SECOND
    job = {
        "job": "receive",
        "transport": name,
        "credentials": str(credentials),
        "runs": runs,
        "timeout": timeout,
    }
    best = 0.0
    with trio.fail_after(timeout):
        async with worker_process(job) as worker:
            for _ in range(runs):
                async with await transport.connect(worker.port) as stream:
                    if await stream.receive_some(1) != _GO:
                        raise BenchError("the receiver did not send its go signal")
                    await send_bulk(stream, total)
                result = await worker.next_report()
                if result["bytes"] != total:
                    raise BenchError(f"sent {total} bytes but {result['bytes']} arrived")
                best = max(best, total / result["seconds"] / 1e6)
    return best


# -- 2. handshakes per second ------------------------------------------------------------


async def handshake_rate(transport: Transport, settings: Settings) -> float:
    """Sequential connect + handshake + authorization + close, per second."""
    count, seconds = settings.handshakes, settings.handshake_seconds
    timeout = SLACK + (seconds if count is None else count * _MAX_HANDSHAKE_SECONDS)
    accepted_send, accepted = trio.open_memory_channel[None](1)

    async def handler(stream: trio.abc.Stream) -> None:
        await accepted_send.send(None)

    with trio.fail_after(timeout):
        async with _serving(transport, handler) as port:
            # One untimed handshake pays for first-use costs (imports, caches).
            await (await _connect_accepted(transport, port, accepted)).aclose()
            done = 0
            start = time.perf_counter()

            def more() -> bool:
                if count is not None:
                    return done < count
                return time.perf_counter() - start < seconds

            while more():
                await (await _connect_accepted(transport, port, accepted)).aclose()
                done += 1
            elapsed = time.perf_counter() - start
    return done / elapsed


# -- 3. round-trip time ----------------------------------------------------------------------


async def round_trip_times(transport: Transport, settings: Settings) -> tuple[float, float]:
    """The median and 99th percentile, in microseconds, of a 64-byte request and response."""
    timed = settings.round_trips
    warm_up = max(timed // 10, 10)
    timeout = SLACK + (warm_up + timed) * _MAX_ROUND_TRIP_SECONDS

    async def echo(stream: trio.abc.Stream) -> None:
        while request := await receive_exactly(stream, _MESSAGE):
            await stream.send_all(request)

    request = os.urandom(_MESSAGE)
    samples: list[float] = []
    with trio.fail_after(timeout):
        async with _serving(transport, echo) as port, await transport.connect(port) as stream:
            for index in range(warm_up + timed):
                start = time.perf_counter_ns()
                await stream.send_all(request)
                if await receive_exactly(stream, _MESSAGE) != request:
                    raise BenchError("the echo server answered with different bytes")
                if index >= warm_up:
                    samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples), p99(samples)


# -- 4. memory per idle connection -------------------------------------------------------------


async def idle_kib_per_connection(transport: Transport, connections: int) -> float:
    """Worker side: RSS growth, in KiB, per open, handshaken, idle connection.

    A connection is both of its ends (client and server stream, each with
    what its API keeps alive: the server's handler task too), since both
    live in this process.
    """
    accepted_send, accepted = trio.open_memory_channel[None](1)

    async def hold(stream: trio.abc.Stream) -> None:
        await accepted_send.send(None)
        await trio.sleep_forever()

    clients: list[trio.abc.Stream] = []
    async with _serving(transport, hold) as port:
        try:
            for _ in range(IDLE_WARM_UP):
                clients.append(await _connect_accepted(transport, port, accepted))
            gc.collect()
            before = rss_bytes()
            for _ in range(connections):
                clients.append(await _connect_accepted(transport, port, accepted))
            gc.collect()
            after = rss_bytes()
        finally:
            for client in clients:
                await trio.aclose_forcefully(client)
    return (after - before) / connections / 1024


async def idle_memory(name: str, credentials: Path, settings: Settings) -> float:
    """:func:`idle_kib_per_connection` measured in a fresh worker process."""
    connections = settings.idle_connections
    timeout = SLACK + (IDLE_WARM_UP + connections) * _MAX_IDLE_CONNECT_SECONDS
    job = {
        "job": "idle",
        "transport": name,
        "credentials": str(credentials),
        "connections": connections,
        "timeout": timeout,
    }
    with trio.fail_after(timeout):
        result = await trio.run_process(
            WORKER, stdin=json.dumps(job).encode() + b"\n", capture_stdout=True
        )
    kib: float = json.loads(result.stdout)["kib"]
    return kib
