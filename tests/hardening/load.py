"""Load and denial of service, measured: many handshakes at once, and floods.

Each check starts a fresh server in this process (``serve_secure`` with an
echo handler, a tunnel's server end in front of an echo service, or a hub)
and drives it with clients from distinct loopback source addresses, so that
the per-source handshake rate limit sees what it would see in the field:

* **at once**: every client connects and handshakes at the same moment, then
  exchanges one message. Each must complete, or be told "busy"
  (:class:`NegotiationFailed` with ``busy``), the promised refusal; nothing
  may hang or fail otherwise. From one source, the rate limit refuses what
  is over its burst, and must do so cleanly.
* **attack**: legitimate clients connect at a steady pace from their own
  source, first alone (the baseline), then while attackers from other
  sources keep stalled connections open (silent, half a first flight, one
  byte a second, or a whole first flight and then silence) and others
  flood the server with garbage. Every
  legitimate client must complete its handshake within its timeout; the
  server must close every stalled and every garbage connection (garbage,
  then EOF) within its handshake timeout, and tell none of them anything
  but "busy".

Latencies are the clients' own: from the start of the TCP connect to the
end of the handshake. At full size the clients run in worker processes
(``python -m tests.hardening.load --worker``, one JSON job on stdin), so
that their cryptography runs beside the server's rather than in its event
loop; on a small machine they still share its CPUs, and the at-once notes
give the server's own CPU time. The quick size runs everything in this
process. ``python -m tests.hardening.load [--quick]`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import resource
import secrets
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from keystore import Identity, TrustStore
from securesess import (
    HandshakeTimeout,
    NegotiationFailed,
    SecureListener,
    SecureStream,
    serve_secure,
)
from securesess.constants import DEFAULT_HANDSHAKE_RATE, DEFAULT_HANDSHAKE_TIMEOUT
from securesess.policy import Policy
from securesess.sessions.client import HubConnection
from securesess.sessions.hub import Hub, serve_hub
from securesess.stream.frames import frame
from securesess.tunnel import TunnelServer
from tests.hardening.report import Row, table

AREA: Final = "load"
ROOT: Final = Path(__file__).resolve().parents[2]
SERVER: Final = "127.0.0.1"
#: Sources of the clients in the at-once checks: 127.0.0.1, .2, ...
CLIENT_SOURCES: Final = tuple(f"127.0.0.{n}" for n in range(1, 11))
#: The legitimate clients' own source during an attack.
LEGIT_SOURCE: Final = "127.0.0.100"
STALLED_SOURCES: Final = tuple(f"127.0.1.{n}" for n in range(1, 6))
GARBAGE_SOURCES: Final = tuple(f"127.0.2.{n}" for n in range(1, 6))
# The negotiation answer that means busy (docs/protocol.md §2).
_BUSY_ANSWER: Final = b"\0\0\0\0"
_PROTOCOL: Final = b"Noise_XX_25519_AESGCM_SHA256"
# The hub admits the clients to sessions of their own, with the rights the
# exchange needs.
_HUB_POLICY: Final = """
[[rule]]
name = "load"
groups = ["load"]
sessions = ["load/*"]
rights = ["create", "join", "set", "receive"]
"""

Job = dict[str, Any]
Result = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How big each check is; QUICK scales FULL down to seconds."""

    at_once: int  # handshakes started together against serve_secure
    at_once_side: int  # the same against the tunnel and the hub
    workers: int  # client processes at once (0: all in this process); attacks use one a job
    stalled: int  # stalled connections kept open in the slowloris checks
    stalled_below_cap: int  # stalled connections, fewer than max_concurrent
    garbage_loops: int  # garbage connections in flight per garbage source
    # The server's limits. QUICK shrinks them as it shrinks the load, so that
    # its checks still cross them (50 stalled exceed 25 slots as 500 exceed 256).
    max_concurrent: int
    burst: int
    handshake_timeout: float  # the server's, in the attack checks
    slack: float  # how late after its handshake timeout a server may close
    legit_timeout: float  # a legitimate client's whole budget
    legit_interval: float  # a legitimate client starts every so often
    baseline: float  # seconds of legitimate clients alone
    attack: float  # seconds of attack (longer than handshake_timeout)


FULL: Final = Sizes(
    at_once=1000,
    at_once_side=200,
    workers=2,
    stalled=500,
    stalled_below_cap=128,
    garbage_loops=4,
    max_concurrent=256,
    burst=200,
    handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
    slack=2.5,
    legit_timeout=5.0,
    legit_interval=0.05,
    baseline=3.0,
    attack=15.0,
)
QUICK: Final = Sizes(
    at_once=100,
    at_once_side=40,
    workers=0,
    stalled=50,
    stalled_below_cap=10,
    garbage_loops=2,
    max_concurrent=25,
    burst=20,
    handshake_timeout=0.4,
    # Bounds, not latencies: a loaded CI machine must not turn them into failures.
    slack=1.5,
    legit_timeout=5.0,
    legit_interval=0.04,
    baseline=0.2,
    attack=0.9,
)


# -- identities ------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """A server and a client that trust each other; keys travel to workers as hex."""

    client_key: bytes = field(default_factory=lambda: Identity.generate().private_bytes())
    server_key: bytes = field(default_factory=lambda: Identity.generate().private_bytes())
    #: The client's signing key (its seed): hub sessions are sealed.
    client_signing: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def server(self) -> tuple[Identity, TrustStore]:
        """The server's identity, and its trust in the client."""
        client = Identity.from_private_bytes(self.client_key)
        trust = TrustStore()
        trust.add_peer("client", client.public_key, groups=["load"])
        return Identity.from_private_bytes(self.server_key, "server"), trust

    def client(self) -> Client:
        """The client's side; make it once per job, as deriving keys costs an X25519 each."""
        server = Identity.from_private_bytes(self.server_key)
        trust = TrustStore()
        trust.add_peer("server", server.public_key)
        identity = Identity.from_private_bytes(
            self.client_key, "client", signing_key=self.client_signing
        )
        return Client(identity, trust)

    def to_json(self) -> dict[str, str]:
        return {
            "client": self.client_key.hex(),
            "server": self.server_key.hex(),
            "signing": self.client_signing.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> World:
        keys = (bytes.fromhex(data[name]) for name in ("client", "server", "signing"))
        return cls(*keys)


@dataclass(frozen=True)
class Client:
    identity: Identity
    trust: TrustStore


# -- servers -----------------------------------------------------------------------------


async def _echo(stream: trio.abc.HalfCloseableStream) -> None:
    """Echo until the end of input, then half-close; a client that vanished is no error."""
    try:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _start_tunnel(
    nursery: trio.Nursery, world: World, limits: dict[str, Any]
) -> TunnelServer:
    backend: list[trio.SocketListener] = await nursery.start(
        partial(trio.serve_tcp, _echo, 0, host=SERVER)
    )
    identity, trust = world.server()
    tunnel = TunnelServer(
        (SERVER, backend[0].socket.getsockname()[1]), identity=identity, trust=trust, **limits
    )
    await nursery.start(partial(tunnel.serve, 0, host=SERVER))
    return tunnel


@asynccontextmanager
async def serving(
    target: str, world: World, *, max_concurrent: int, burst: int, handshake_timeout: float
) -> AsyncIterator[int]:
    """Run the ``target`` server ("echo", "tunnel" or "hub") on a free port; yield it."""
    limits: dict[str, Any] = {
        "max_concurrent_handshakes": max_concurrent,
        "handshake_burst": burst,
        "handshake_timeout": handshake_timeout,
    }
    identity, trust = world.server()
    async with trio.open_nursery() as nursery:
        if target == "echo":
            listeners: list[SecureListener] = await nursery.start(
                partial(
                    serve_secure,
                    _echo,
                    0,
                    host=SERVER,
                    identity=identity,
                    trust=trust,
                    **limits,
                )
            )
            transport = listeners[0].transport_listener
            assert isinstance(transport, trio.SocketListener)
            port = int(transport.socket.getsockname()[1])
        elif target == "tunnel":
            port = (await _start_tunnel(nursery, world, limits)).port
        elif target == "hub":
            hub: Hub = await nursery.start(
                partial(
                    serve_hub,
                    0,
                    host=SERVER,
                    identity=identity,
                    trust=trust,
                    policy=Policy.parse(_HUB_POLICY, trust=trust),
                    **limits,
                )
            )
            port = hub.port
        else:
            raise ValueError(f"unknown target {target!r}")
        yield port
        nursery.cancel_scope.cancel()


@dataclass
class LogCount:
    """Records the servers logged, by level name."""

    levels: Counter[str] = field(default_factory=Counter)


@contextmanager
def counting_logs() -> Iterator[LogCount]:
    """Count what the securesess loggers say instead of printing it.

    A flood makes the tunnel log one line per garbage connection: counting
    them is part of the measurement, and printing them would drown the table.
    """

    class Counting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            count.levels[record.levelname] += 1

    count = LogCount()
    logger = logging.getLogger("securesess")
    handler = Counting(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield count
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


# -- clients (in a worker process or in this one) -----------------------------------------


async def _connect(source: str, port: int) -> trio.SocketStream:
    """A TCP connection to the server from the loopback address ``source``."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        await sock.bind((source, 0))
        await sock.connect((SERVER, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _exchange(target: str, stream: SecureStream, tag: str) -> bool:
    """One round of real use after the handshake; False if what came back is wrong."""
    payload = tag.encode() + os.urandom(48)
    if target == "hub":
        async with HubConnection.over(stream) as hub:
            session = await hub.join(f"load/{tag}", create=True)
            first = await session.set("k", payload, expect_version=0)
            second = await session.set("k", payload[::-1], expect_version=first)
            held = session.get("k")
            await session.leave()
        return (first, second) == (1, 2) and held is not None and held.value == payload[::-1]
    await stream.send_all(payload)
    await stream.send_eof()
    received = bytearray()
    while data := await stream.receive_some():
        received += data
    return received == payload


@dataclass(frozen=True)
class Attempt:
    """How one legitimate client fared: done, busy, lost, hang or error."""

    outcome: str
    latency: float  # seconds from connecting to the end of the handshake (or the refusal)
    detail: str = ""


async def attempt(
    target: str, client: Client, *, source: str, port: int, timeout: float, tag: str
) -> Attempt:
    """Connect, handshake and exchange once, within ``timeout`` seconds in all."""
    began = trio.current_time()
    try:
        with trio.fail_after(timeout):
            transport = await _connect(source, port)
            stream = SecureStream(
                transport, identity=client.identity, trust=client.trust, expect="server"
            )
            try:
                await stream.do_handshake()
                latency = trio.current_time() - began
                intact = await _exchange(target, stream, tag)
            finally:
                await trio.aclose_forcefully(stream)
    except NegotiationFailed as exc:
        outcome = "busy" if exc.busy else "error"
        return Attempt(outcome, trio.current_time() - began, "" if exc.busy else str(exc))
    except (trio.TooSlowError, HandshakeTimeout) as exc:
        return Attempt("hang", trio.current_time() - began, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        return Attempt("error", trio.current_time() - began, f"{type(exc).__name__}: {exc}")
    return Attempt("done" if intact else "lost", latency)


async def _clients_job(job: Job, ready: Callable[[], Awaitable[None]]) -> Result:
    """``count`` clients at once, round-robin over ``sources``."""
    client = World.from_json(job["world"]).client()
    sources: list[str] = job["sources"]
    results: list[list[Any]] = []
    await ready()
    start = trio.current_time()

    async def one(n: int) -> None:
        done = await attempt(
            job["target"],
            client,
            source=sources[n % len(sources)],
            port=job["port"],
            timeout=job["timeout"],
            tag=f"{n}",
        )
        results.append([done.outcome, done.latency, trio.current_time() - start, done.detail])

    async with trio.open_nursery() as nursery:
        for n in range(job["first"], job["first"] + job["count"]):
            nursery.start_soon(one, n)
    return {"attempts": results}


async def _legit_job(job: Job, ready: Callable[[], Awaitable[None]]) -> Result:
    """A client every ``interval`` seconds for ``duration`` seconds, each on its own."""
    client = World.from_json(job["world"]).client()
    results: list[list[Any]] = []
    await ready()
    start = trio.current_time()

    async def one(n: int, at: float) -> None:
        done = await attempt(
            job["target"],
            client,
            source=job["source"],
            port=job["port"],
            timeout=job["timeout"],
            tag=f"legit-{n}",
        )
        results.append([at, done.outcome, done.latency, done.detail])

    async with trio.open_nursery() as nursery:
        n = 0
        while (at := trio.current_time() - start) < job["duration"]:
            nursery.start_soon(one, n, at)
            n += 1
            await trio.sleep_until(start + n * job["interval"])
    return {"attempts": results}


#: How stalled connections stall, taking turns: they send nothing; half the
#: first flight; the first flight a byte a second; or the whole first flight,
#: so that the server does its share of the cryptography and answers, and
#: then nothing more.
_STALLS: Final = ("silent", "partial", "drip", "answered")


def _stall_bytes(mode: str) -> bytes:
    """What a stalled connection sends (in ``drip`` mode, a byte a second)."""
    first_flight = frame(_PROTOCOL) + frame(os.urandom(32))
    return {"silent": b"", "partial": first_flight[:-16]}.get(mode, first_flight)


async def _hold(stream: trio.SocketStream, mode: str, until: float) -> tuple[str, bytes]:
    """Keep a stalled connection open until the server closes it or ``until``.

    Returns "closed" or "open", and what the server sent.
    """
    received = bytearray()
    closed = False

    async def watch(scope: trio.CancelScope) -> None:
        nonlocal closed
        try:
            while data := await stream.receive_some(4096):
                received.extend(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        closed = True
        scope.cancel()

    async def feed() -> None:
        data = _stall_bytes(mode)
        try:
            if mode == "drip":  # the server's timeout must cover the whole handshake
                for byte in data:
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(1)
            else:
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server gave up on us: watch() sees that too
        await trio.sleep_forever()

    with trio.move_on_at(until):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            nursery.start_soon(feed)
    return ("closed" if closed else "open"), bytes(received)


def _example(examples: list[str], text: str) -> None:
    if len(examples) < 5 and text not in examples:
        examples.append(text)


async def _stalled_job(job: Job, ready: Callable[[], Awaitable[None]]) -> Result:
    """Keep ``count`` stalled connections open for ``duration`` seconds.

    A connection the server closes (refused busy, or timed out) is opened
    again, as a slowloris attacker does, after a short pause.
    """
    bound: float = job["bound"]
    counts: Counter[str] = Counter()
    ages: list[float] = []
    examples: list[str] = []
    await ready()
    await trio.sleep(job["after"])
    until = trio.current_time() + job["duration"]

    async def slot(n: int) -> None:
        sources: list[str] = job["sources"]
        while trio.current_time() < until:
            try:
                stream = await _connect(sources[n % len(sources)], job["port"])
            except OSError as exc:
                counts["connect failed"] += 1
                counts["unexpected"] += 1
                _example(examples, f"connect: {exc}")
                await trio.sleep(job["pause"])
                continue
            # The server's clock starts when it accepts, about now.
            opened = trio.current_time()
            try:
                mode = _STALLS[n % len(_STALLS)]
                how, said = await _hold(stream, mode, until)
            finally:
                await trio.aclose_forcefully(stream)
            age = trio.current_time() - opened
            # Only an "answered" stall hears anything but busy: the server's answer.
            odd = said not in (b"", _BUSY_ANSWER) and mode != "answered"
            if how == "open":
                counts["open at the end"] += 1
            elif said == _BUSY_ANSWER:
                counts["refused busy"] += 1
            elif odd:
                counts["closed oddly"] += 1
                _example(examples, f"the server said {said[:40]!r}")
            else:
                counts["timed out"] += 1
                ages.append(age)
            # Held: refused at once, or closed (or still young) within the bound.
            if age > bound or odd:
                counts["unexpected"] += 1
                _example(examples, f"{mode}: {how} after {age:.1f} s")
            else:
                counts["held"] += 1
            if how == "closed":
                await trio.sleep(job["pause"])

    async with trio.open_nursery() as nursery:
        for n in range(job["count"]):
            nursery.start_soon(slot, n)
    return {"counts": dict(counts), "timeout_ages": ages, "examples": examples}


def _garbage(rng: random.Random) -> bytes:
    """One of the kinds of garbage a server meets, some of which cost it a DH."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 512))
    if kind == 1:
        return b"GET / HTTP/1.1\r\nHost: securesess\r\n\r\n"
    if kind == 2:  # a TLS ClientHello's first bytes: a frame too long to wait for
        return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(32)
    if kind == 3:  # a valid first flight the server must answer, then silence and EOF
        return frame(_PROTOCOL) + frame(rng.randbytes(32))
    return frame(_PROTOCOL) + frame(rng.randbytes(7))  # a first message of the wrong size


async def _garbage_job(job: Job, ready: Callable[[], Awaitable[None]]) -> Result:
    """``loops`` connections at a time per source, each garbage then EOF, for ``duration``."""
    bound: float = job["bound"]
    counts: Counter[str] = Counter()
    examples: list[str] = []
    await ready()
    await trio.sleep(job["after"])
    until = trio.current_time() + job["duration"]

    async def loop(n: int) -> None:
        rng = random.Random(n)
        sources: list[str] = job["sources"]
        while trio.current_time() < until:
            try:
                stream = await _connect(sources[n % len(sources)], job["port"])
            except OSError as exc:
                counts["connect failed"] += 1
                counts["unexpected"] += 1
                _example(examples, f"connect: {exc}")
                await trio.sleep(0.01)
                continue
            try:
                with trio.move_on_after(bound) as waiting:
                    try:
                        await stream.send_all(_garbage(rng))
                        await stream.send_eof()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # already hung up on
                    try:
                        while await stream.receive_some(65536):
                            pass
                    except trio.BrokenResourceError:
                        pass  # reset: hung up on just as well
            finally:
                await trio.aclose_forcefully(stream)
            if waiting.cancelled_caught:
                counts["overdue"] += 1
                counts["unexpected"] += 1
                _example(examples, f"garbage still open after {bound:g} s")
            else:
                counts["hung up on"] += 1
                counts["held"] += 1

    async with trio.open_nursery() as nursery:
        for n in range(job["loops"] * len(job["sources"])):
            nursery.start_soon(loop, n)
    return {"counts": dict(counts), "examples": examples}


_JOBS: Final[dict[str, Callable[[Job, Callable[[], Awaitable[None]]], Awaitable[Result]]]] = {
    "clients": _clients_job,
    "legit": _legit_job,
    "stalled": _stalled_job,
    "garbage": _garbage_job,
}


# -- running jobs: in this process, or one worker process each -------------------------------


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: each client is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class _Lines:
    """Lines from a byte stream, one at a time."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            data = await self._stream.receive_some(65536)
            if not data:
                raise EOFError("the stream ended before a whole line")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


async def _in_process(jobs: Sequence[Job]) -> list[Result]:
    """Run every job here; all start together once all are set up."""
    go = trio.Event()
    results: list[Result] = [{} for _ in jobs]

    async def one(index: int, job: Job, task_status: trio.TaskStatus[None]) -> None:
        async def ready() -> None:
            task_status.started()
            await go.wait()

        results[index] = await _JOBS[job["kind"]](job, ready)

    async with trio.open_nursery() as nursery:
        for index, job in enumerate(jobs):
            await nursery.start(one, index, job)
        go.set()
    return results


async def _in_workers(jobs: Sequence[Job]) -> list[Result]:
    """Run each job in a worker process; all start together once all are set up."""
    processes = []
    try:
        for job in jobs:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tests.hardening.load", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            processes.append(process)
            assert process.stdin is not None
            # The job carries the client's private key: on stdin, not argv.
            await process.stdin.send_all(json.dumps(job).encode() + b"\n")
        readers = []
        for process in processes:
            assert process.stdout is not None
            readers.append(_Lines(process.stdout))
            if await readers[-1].next() != b"ready":
                raise RuntimeError("a load worker did not get ready")
        for process in processes:
            assert process.stdin is not None
            await process.stdin.send_all(b"go\n")
        results = [json.loads(await reader.next()) for reader in readers]
        for process in processes:
            await process.wait()
        return results
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                for pipe in (process.stdin, process.stdout):
                    if pipe is not None:
                        await trio.aclose_forcefully(pipe)


async def _worker() -> None:
    raise_open_files_limit()
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        lines = _Lines(stdin)
        job: Job = json.loads(await lines.next())

        async def ready() -> None:
            print("ready", flush=True)
            if await lines.next() != b"go":
                raise RuntimeError("expected go")

        # Should the parent be gone, give up rather than linger.
        with trio.fail_after(job["deadline"]):
            result = await _JOBS[job["kind"]](job, ready)
    print(json.dumps(result), flush=True)


async def run_jobs(jobs: Sequence[Job], *, workers: bool, deadline: float) -> list[Result]:
    """The results of ``jobs``, in order; TooSlowError after ``deadline`` seconds."""
    jobs = [{**job, "deadline": deadline} for job in jobs]
    with trio.fail_after(deadline + 5):
        return await (_in_workers(jobs) if workers else _in_process(jobs))


# -- the checks ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile; NaN of nothing."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _cpu_seconds() -> float:
    """CPU time this process has used, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


@dataclass(frozen=True)
class Measured:
    """A check's row, and the figures behind it for tests to look at."""

    row: Row
    outcomes: Counter[str]  # of the legitimate (or at-once) clients
    attack: Counter[str] = field(default_factory=Counter)  # of the attackers' connections
    details: tuple[str, ...] = ()  # examples of what went wrong


_NAMES: Final = {"echo": "serve_secure", "tunnel": "tunnel server", "hub": "hub"}


async def at_once(target: str, sizes: Sizes, *, count: int, sources: int) -> Measured:
    """``count`` clients from ``sources`` addresses connect and handshake together."""
    raise_open_files_limit()
    world = World()
    jobs: list[Job] = []
    split = max(1, sizes.workers)
    for part in range(split):
        first, last = part * count // split, (part + 1) * count // split
        jobs.append(
            {
                "kind": "clients",
                "target": target,
                "world": world.to_json(),
                "sources": list(CLIENT_SOURCES[:sources]),
                "first": first,
                "count": last - first,
                # A client's own handshake timeout is the default 10 s; this
                # catches anything hanging beyond it.
                "timeout": 2 * DEFAULT_HANDSHAKE_TIMEOUT,
            }
        )
    deadline = 4 * DEFAULT_HANDSHAKE_TIMEOUT
    cpu = _cpu_seconds()
    with counting_logs():
        async with serving(
            target,
            world,
            max_concurrent=sizes.max_concurrent,
            burst=sizes.burst,
            handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
        ) as port:
            for job in jobs:
                job["port"] = port
            results = await run_jobs(jobs, workers=sizes.workers > 0, deadline=deadline)
    cpu = _cpu_seconds() - cpu
    attempts = [a for result in results for a in result["attempts"]]
    outcomes = Counter(str(a[0]) for a in attempts)
    done = [float(a[1]) for a in attempts if a[0] == "done"]
    busy = [float(a[1]) for a in attempts if a[0] == "busy"]
    finished = max((float(a[2]) for a in attempts), default=0.0)
    details = tuple(dict.fromkeys(str(a[3]) for a in attempts if a[3]))[:5]
    unexpected = outcomes["hang"] + outcomes["error"]
    origin = f"{sources} sources" if sources > 1 else "1 source"
    note = (
        f"{outcomes['done']:,} done + {outcomes['busy']:,} busy in {finished:.1f} s; "
        f"handshake p50 {ms(percentile(done, 0.5))}, p99 {ms(percentile(done, 0.99))}; "
        f"busy p99 {ms(percentile(busy, 0.99))}"
    )
    if sources == 1:
        note += f" (a burst of {sizes.burst}, then {DEFAULT_HANDSHAKE_RATE:g}/s)"
    if sizes.workers:  # otherwise the clients' CPU is in the figure too
        note += f"; server CPU {cpu:.1f} s"
    if unexpected or outcomes["lost"]:
        note += f"; {outcomes['hang']} hung, {outcomes['error']} failed: {'; '.join(details)}"
    row = Row(
        AREA,
        f"{_NAMES[target]}: {count:,} handshakes at once, {origin}",
        tried=len(attempts),
        held=outcomes["done"] + outcomes["busy"],
        lost=outcomes["lost"],
        unexpected=unexpected,
        note=note,
    )
    return Measured(row, outcomes, details=details)


async def under_attack(target: str, sizes: Sizes, *, stalled: int) -> Measured:
    """Legitimate clients alone, then while ``stalled`` connections hang and garbage floods."""
    raise_open_files_limit()
    world = World()
    bound = sizes.handshake_timeout + sizes.slack
    legit: Job = {
        "kind": "legit",
        "target": target,
        "world": world.to_json(),
        "source": LEGIT_SOURCE,
        "interval": sizes.legit_interval,
        "duration": sizes.baseline + sizes.attack,
        "timeout": sizes.legit_timeout,
    }
    stalls: Job = {
        "kind": "stalled",
        "sources": list(STALLED_SOURCES),
        "count": stalled,
        "after": sizes.baseline,
        "duration": sizes.attack,
        "pause": 0.1,
        "bound": bound,
    }
    floods: Job = {
        "kind": "garbage",
        "sources": list(GARBAGE_SOURCES),
        "loops": sizes.garbage_loops,
        "after": sizes.baseline,
        "duration": sizes.attack,
        "bound": bound,
    }
    jobs = [legit, stalls, floods]
    deadline = sizes.baseline + sizes.attack + bound + sizes.legit_timeout + 10
    with counting_logs() as logged:
        async with serving(
            target,
            world,
            max_concurrent=sizes.max_concurrent,
            burst=sizes.burst,
            handshake_timeout=sizes.handshake_timeout,
        ) as port:
            for job in jobs:
                job["port"] = port
            results = await run_jobs(jobs, workers=sizes.workers > 0, deadline=deadline)
    attempts = results[0]["attempts"]
    before = [a for a in attempts if float(a[0]) < sizes.baseline]
    during = [a for a in attempts if float(a[0]) >= sizes.baseline]
    outcomes = Counter(str(a[1]) for a in attempts)
    during_outcomes = Counter(str(a[1]) for a in during)
    stalled_counts: Counter[str] = Counter(results[1]["counts"])
    garbage_counts: Counter[str] = Counter(results[2]["counts"])
    details = tuple(
        dict.fromkeys(
            [str(a[3]) for a in attempts if a[3]]
            + [str(e) for result in results[1:] for e in result["examples"]]
        )
    )[:5]

    def latencies(chosen: list[list[Any]], outcome: str = "done") -> str:
        done = [float(a[2]) for a in chosen if a[1] == outcome]
        return f"p50 {ms(percentile(done, 0.5))}, p99 {ms(percentile(done, 0.99))}"

    # Legitimate clients hold when they complete; "busy" is a clean refusal,
    # but not what the issue promises them, so it is neither held nor unexpected.
    legit_held = outcomes["done"]
    legit_unexpected = outcomes["hang"] + outcomes["error"]
    attack_held = stalled_counts["held"] + garbage_counts["held"]
    attack_unexpected = stalled_counts["unexpected"] + garbage_counts["unexpected"]
    timeouts = [float(age) for age in results[1]["timeout_ages"]]
    note = (
        f"legit {during_outcomes['done']}/{len(during)} done during the attack, "
        f"handshake {latencies(during)} vs {latencies(before)} before"
    )
    if during_outcomes["busy"]:
        note += f", {during_outcomes['busy']} busy ({latencies(during, 'busy')})"
    note += (
        f"; stalled: {stalled_counts['refused busy']:,} refused busy,"
        f" {stalled_counts['timed out']:,} timed out"
        f" (p50 {ms(percentile(timeouts, 0.5))}, max {ms(max(timeouts, default=math.nan))})"
        f"; garbage: {garbage_counts['hung up on']:,} hung up on"
    )
    if logged.levels["WARNING"]:
        note += f"; {logged.levels['WARNING']:,} warnings logged"
    if legit_unexpected or attack_unexpected or outcomes["lost"]:
        note += f"; went wrong: {'; '.join(details)}"
    kind = "slowloris" if stalled > sizes.max_concurrent else "below the cap"
    row = Row(
        AREA,
        f"{_NAMES[target]}: {stalled} stalled ({kind}) + garbage, legit clients",
        tried=len(attempts) + attack_held + attack_unexpected,
        held=legit_held + attack_held,
        lost=outcomes["lost"],
        unexpected=legit_unexpected + attack_unexpected,
        note=note,
    )
    return Measured(row, outcomes, attack=stalled_counts + garbage_counts, details=details)


def checks(sizes: Sizes) -> list[Callable[[], Awaitable[Measured]]]:
    """Every check at ``sizes``, to run one at a time: each measures a server alone."""
    sources = len(CLIENT_SOURCES)
    return [
        partial(at_once, "echo", sizes, count=sizes.at_once, sources=sources),
        partial(at_once, "echo", sizes, count=sizes.at_once, sources=1),
        partial(under_attack, "echo", sizes, stalled=sizes.stalled_below_cap),
        partial(under_attack, "echo", sizes, stalled=sizes.stalled),
        partial(at_once, "tunnel", sizes, count=sizes.at_once_side, sources=sources),
        partial(under_attack, "tunnel", sizes, stalled=sizes.stalled),
        partial(at_once, "hub", sizes, count=sizes.at_once_side, sources=sources),
        partial(under_attack, "hub", sizes, stalled=sizes.stalled),
    ]


async def _all(sizes: Sizes) -> list[Row]:
    return [(await check()).row for check in checks(sizes)]


def run(quick: bool) -> list[Row]:
    """Every load check, at full size or (``quick``) in seconds."""
    return trio.run(_all, QUICK if quick else FULL)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds in all")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        trio.run(_worker)
        return
    print(table(run(args.quick)))


if __name__ == "__main__":
    main()
