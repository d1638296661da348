"""Hub workloads: messages per second through one session, fan-out latency, idle memory.

Where things run
----------------
The hub runs in a worker process (``python -m securesess.bench.worker``, job
``hub``), so it has a CPU of its own, as in a deployment. Every member's
client runs here, in the benchmark's process, each over its own connection
(its own SecureStream, reader and writer tasks, session). On a two-core
machine that is the split that gives each side one core; more client
processes would only compete with the hub for the same two. The catch is
that the members' side does more work than the hub: every member decrypts
and parses its own copy of every broadcast, in Python, in this one process.
So each throughput row also reports how busy each process was (CPU seconds
per wall second, ``time.process_time`` in each): a row whose clients are
near 100% and whose hub is not measured the clients' side as much as the
hub. (Both far below 100%: something else had the CPUs.)

Throughput
----------
One session per member count (2, 10, 100), used for both message sizes. The
first member broadcasts, the others receive: a broadcast is *delivered*
N-1 times and counts N-1. ``Session.send`` waits for the hub's ack, so the
sender runs :data:`SENDER_TASKS` tasks over its one connection; the client
pipelines their requests and batches them into few records. On the
development machine, 2 members and 64 bytes, 8 tasks gave ~6,800 msgs/s, 32
~14,000, 128 ~21,500 and 512 ~18,500 (16 KiB: 5,500, 7,400, 7,400): from
128 the ack round trip no longer sets the pace. Acks come back once the hub has
*queued* a broadcast, not once members have it, so the sender also keeps an
end-to-end window, as an application must: at most 1 MiB of messages
(:func:`_window`; 16,384 of 64 bytes, 64 of 16 KiB) beyond what the slowest
member has received. Without one a sender that outruns its receivers makes
the hub drop them for falling behind (``max_backlog``). The window reopens a
quarter at a time, not message by message: credit returned one message at a
time wakes one sender task at a time, every request then travels alone (a
record, a syscall and an ack each) and, as nothing on the path coalesces
them again, a 2-member run settled at a quarter of its rate. The clock runs from
the first send until the last member has the last message; an untimed run
a tenth the size goes first. Every member's message ids must equal the
sorted ids the hub acked, or :class:`BenchError` (a message duplicated,
reordered or not sent by the sender); a lost one leaves its member waiting
until the deadline (:class:`trio.TooSlowError`).

Fan-out latency
---------------
The 100-member session, plus one more member: the first member broadcasts
64 bytes to the other :data:`FANOUT_RECEIVERS`. A sample is the time from
just before ``send`` until the last member's ``receive`` returned it (one
process, one clock); a short pause follows, so samples do not queue behind
each other. A tenth as many samples run first, untimed. The members' half
of each sample is serial, 100 connections read, decrypted and parsed in
turn on one CPU, and it is included: pessimistic, since real members on
their own machines would each handle only their own copy. To tell the two
halves apart, the CPU time per broadcast of the hub and of the members'
process is reported too. The target is judged on the p99.

Idle memory
-----------
A fresh hub process; members connect, join one session and stay idle. The
hub process reports its RSS, once every task is blocked and after a
collection, after :data:`workloads.IDLE_WARM_UP` members and again after
the rest, as :func:`workloads.idle_kib_per_connection` does for streams.
Only the hub's side counts; the clients are elsewhere, as they would be.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from keystore import Identity, TrustStore
from securesess.bench.errors import BenchError
from securesess.bench.processes import JsonLines, WorkerProcess, answer_commands, worker_process
from securesess.bench.settings import Settings
from securesess.bench.transports import HOST
from securesess.bench.workloads import IDLE_WARM_UP, SLACK
from securesess.policy import Policy
from securesess.sessions.client import HubConnection, Session, connect_hub
from securesess.sessions.events import MemberJoined, Message
from securesess.sessions.hub import serve_hub

__all__ = [
    "FANOUT_RECEIVERS",
    "MEMBERS",
    "SENDER_TASKS",
    "SIZES",
    "HubResults",
    "Throughput",
    "measure",
    "serve",
    "write_credentials",
]

#: Members of the session in each throughput configuration.
MEMBERS: Final = (2, 10, 100)
#: Message sizes of the throughput configurations.
SIZES: Final = (64, 16 * 1024)
#: Members a fan-out sample is delivered to (the sender is one more).
FANOUT_RECEIVERS: Final = 100
#: Tasks sending concurrently over the sender's connection.
SENDER_TASKS: Final = 128
# End-to-end window: bytes sent beyond what the slowest member has received.
_WINDOW_BYTES: Final = 1 << 20
_FANOUT_SIZE: Final = 64
# Pause after each fan-out sample, so the next one starts on an idle system.
_FANOUT_PAUSE: Final = 0.005
_SESSION: Final = "bench"
_POLICY: Final = """\
[[rule]]
name = "bench"
any_peer = true
sessions = ["*"]
rights = ["create", "join", "send", "receive", "set"]
"""
# Deadline arithmetic, as in workloads: the slowest believable rates.
_MIN_DELIVERIES_PER_SECOND: Final = 2_000
_MAX_FANOUT_SECONDS: Final = 0.5
_MAX_MEMBER_SECONDS: Final = 0.1
_HUB_KEY: Final = "hub.key"
_MEMBER_KEYS: Final = "hub-members.key"
_KEY_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class Throughput:
    """One throughput configuration's result."""

    members: int
    size: int
    #: Messages delivered (broadcasts times receiving members).
    delivered: int
    seconds: float
    #: CPU seconds per wall second of the hub process and of the clients' process.
    hub_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        """Delivered messages per second."""
        return self.delivered / self.seconds

    @property
    def mb_s(self) -> float:
        """Delivered payload, in MB per second."""
        return self.rate * self.size / 1e6


@dataclass(frozen=True, slots=True)
class HubResults:
    throughput: tuple[Throughput, ...]
    #: Fan-out latency samples, in milliseconds.
    fanout_ms: tuple[float, ...]
    #: CPU milliseconds per fan-out sample, of the hub and of the members' process.
    fanout_hub_cpu_ms: float
    fanout_client_cpu_ms: float
    idle_kib_per_member: float

    @property
    def fanout_median_ms(self) -> float:
        return statistics.median(self.fanout_ms)

    @property
    def fanout_p99_ms(self) -> float:
        samples = self.fanout_ms
        if len(samples) == 1:  # quantiles() needs two
            return samples[0]
        # Inclusive: with a few hundred samples or fewer, the default (exclusive)
        # method extrapolates beyond the slowest broadcast actually seen.
        return statistics.quantiles(samples, n=100, method="inclusive")[98]

    def best(self) -> Throughput:
        """The configuration with the most delivered messages per second."""
        return max(self.throughput, key=lambda row: row.rate)


# -- credentials -----------------------------------------------------------------------


def _members_needed(settings: Settings) -> int:
    return max(*MEMBERS, FANOUT_RECEIVERS + 1, IDLE_WARM_UP + settings.idle_connections)


def write_credentials(directory: Path, settings: Settings) -> None:
    """Throwaway keys for the hub and for every member the workloads connect."""
    keys = {
        _HUB_KEY: Identity.generate("hub").private_bytes(),
        _MEMBER_KEYS: b"".join(
            Identity.generate().private_bytes() for _ in range(_members_needed(settings))
        ),
    }
    for name, data in keys.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)


def _hub_identity(directory: Path) -> Identity:
    return Identity.from_private_bytes((directory / _HUB_KEY).read_bytes(), "hub")


def _member_identities(directory: Path) -> list[Identity]:
    data = (directory / _MEMBER_KEYS).read_bytes()
    return [
        Identity.from_private_bytes(data[start : start + _KEY_SIZE], f"member-{index}")
        for index, start in enumerate(range(0, len(data), _KEY_SIZE))
    ]


# -- the hub's side (in the worker) ----------------------------------------------------


async def serve(
    credentials: Path, commands: JsonLines, report: Callable[[dict[str, Any]], None]
) -> None:
    """Worker side: run a hub until stdin ends, answering the parent's commands.

    Reports ``{"port": ...}`` once listening, then answers each command
    line with one report (:func:`processes.answer_commands`).
    """
    trust = TrustStore()
    for member in _member_identities(credentials):
        assert member.name is not None
        trust.add_peer(member.name, member.public_key)
    policy = Policy.parse(_POLICY, source="<bench policy>")
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(
            partial(
                serve_hub,
                0,
                identity=_hub_identity(credentials),
                trust=trust,
                policy=policy,
                host=HOST,
            )
        )
        report({"port": hub.port})
        await answer_commands(commands, report)
        nursery.cancel_scope.cancel()


def _hub_process(credentials: Path) -> contextlib.AbstractAsyncContextManager[WorkerProcess]:
    """A hub in a worker process, for the duration of the block.

    The caller's deadline bounds it; the worker gets a generous one of its
    own in case this process is gone.
    """
    return worker_process({"job": "hub", "credentials": str(credentials), "timeout": 3600})


# -- the members' side (here) ------------------------------------------------------------


@contextlib.asynccontextmanager
async def _members(
    port: int, identities: Sequence[Identity], hub_key: bytes
) -> AsyncIterator[list[HubConnection]]:
    """A connection to the hub per identity, opened under a deadline of their own."""
    trust = TrustStore()
    trust.add_peer("hub", hub_key)
    # Each connection runs a nursery, so the deadline's scope must enclose
    # their whole lives; it is lifted once they are all open.
    with trio.CancelScope() as connecting:
        connecting.deadline = trio.current_time() + SLACK + len(identities) * _MAX_MEMBER_SECONDS
        async with contextlib.AsyncExitStack() as stack:
            connections = [
                await stack.enter_async_context(
                    connect_hub(HOST, port, identity=identity, trust=trust, expect="hub")
                )
                for identity in identities
            ]
            connecting.deadline = math.inf
            yield connections
    if connecting.cancelled_caught:
        raise trio.TooSlowError(f"connecting {len(identities)} members to the hub took too long")


async def _join(connections: Sequence[HubConnection], name: str) -> list[Session]:
    with trio.fail_after(SLACK + len(connections) * _MAX_MEMBER_SECONDS):
        return [await connection.join(name, create=True) for connection in connections]


async def _leave(sessions: Sequence[Session]) -> None:
    with trio.fail_after(SLACK + len(sessions) * _MAX_MEMBER_SECONDS):
        for session in sessions:
            await session.leave()


def _window(size: int) -> int:
    """Messages a sender may be ahead of the slowest member."""
    return max(16, _WINDOW_BYTES // size)


async def _broadcast(sender: Session, receivers: Sequence[Session], count: int, size: int) -> float:
    """Seconds from the first of ``count`` broadcasts until every receiver has them all."""
    payload = os.urandom(size)
    expected = len(receivers)
    acked: list[int] = []
    histories: list[list[int]] = []
    # One token per message that may be sent before the slowest receiver has
    # it. Tokens come back a quarter of the window at a time: returned one by
    # one (as each message reaches everyone), they would wake the sender tasks
    # one by one, and each request would travel alone, one record and one
    # ack each, slowing the whole run down to the pace of a lone message.
    window = trio.Semaphore(_window(size))
    refill = max(_window(size) // 4, 1)
    # reached[c]: receivers that have had c messages. It reaches ``expected``
    # for each c in turn, since every receiver counts up by one.
    reached = [0] * (count + 1)
    owed = 0
    sent = 0
    finished = 0.0

    async def send() -> None:
        nonlocal sent
        while sent < count:
            sent += 1
            await window.acquire()
            acked.append((await sender.send(payload)).seq)

    async def receive(session: Session) -> None:
        nonlocal finished, owed
        seqs: list[int] = []
        histories.append(seqs)
        while len(seqs) < count:
            event = await session.receive()
            if isinstance(event, MemberJoined):
                continue  # the members that joined after this one
            if (
                not isinstance(event, Message)
                or event.sender.id != sender.me.id
                or event.direct
                or len(event.data) != size
            ):
                raise BenchError(f"a member received an unexpected event: {event!r}")
            seqs.append(event.id.seq)
            have = len(seqs)
            reached[have] += 1
            if reached[have] == expected:
                owed += 1
                if owed == refill:
                    for _ in range(owed):
                        window.release()
                    owed = 0
                if have == count:
                    finished = time.perf_counter()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for session in receivers:
            nursery.start_soon(receive, session)
        for _ in range(min(SENDER_TASKS, count)):
            nursery.start_soon(send)
    acked.sort()
    for seqs in histories:
        if seqs != acked:
            lost = len(set(acked) - set(seqs))
            raise BenchError(
                f"a member's message ids differ from the acked ones ({len(seqs)} received, "
                f"{len(acked)} acked, {lost} missing): lost, duplicated or reordered"
            )
    return finished - start


async def _throughput(
    hub: WorkerProcess, sessions: Sequence[Session], size: int, broadcasts: int
) -> Throughput:
    members = len(sessions)
    sender, *receivers = sessions
    await _broadcast(sender, receivers, max(broadcasts // 10, 1), size)
    hub_start = await hub.cpu()
    client_start = time.process_time()
    seconds = await _broadcast(sender, receivers, broadcasts, size)
    client_cpu = time.process_time() - client_start
    hub_cpu = await hub.cpu() - hub_start
    return Throughput(
        members=members,
        size=size,
        delivered=broadcasts * (members - 1),
        seconds=seconds,
        hub_cpu=hub_cpu / seconds,
        client_cpu=client_cpu / seconds,
    )


async def _fanout(
    hub: WorkerProcess, sessions: Sequence[Session], samples: int
) -> tuple[list[float], float, float]:
    """Milliseconds from send until the last receiver has the message, per sample;
    and the CPU milliseconds per sample of the hub and of this process."""
    sender, *receivers = sessions
    payload = os.urandom(_FANOUT_SIZE)
    warm_up = max(samples // 10, 2)
    expected = len(receivers)
    histories: list[list[int]] = []
    arrived = 0
    last = 0.0
    everyone = trio.Event()

    async def receive(session: Session) -> None:
        nonlocal arrived, last
        seqs: list[int] = []
        histories.append(seqs)
        while True:
            event = await session.receive()
            if isinstance(event, MemberJoined):
                continue
            if not isinstance(event, Message) or event.data != payload:
                raise BenchError(f"a member received an unexpected event: {event!r}")
            seqs.append(event.id.seq)
            arrived += 1
            if arrived == expected:
                last = time.perf_counter()
                everyone.set()

    acked: list[int] = []
    latencies: list[float] = []
    hub_start = client_start = 0.0
    async with trio.open_nursery() as nursery:
        for session in receivers:
            nursery.start_soon(receive, session)
        for index in range(warm_up + samples):
            if index == warm_up:
                hub_start = await hub.cpu()
                client_start = time.process_time()
            arrived = 0
            everyone = trio.Event()
            start = time.perf_counter()
            acked.append((await sender.send(payload)).seq)
            await everyone.wait()
            if index >= warm_up:
                latencies.append((last - start) * 1000)
            await trio.sleep(_FANOUT_PAUSE)
        client_cpu = time.process_time() - client_start
        hub_cpu = await hub.cpu() - hub_start
        nursery.cancel_scope.cancel()
    if any(seqs != acked for seqs in histories):
        raise BenchError("a member's fan-out message ids differ from the acked ones")
    return latencies, hub_cpu * 1000 / samples, client_cpu * 1000 / samples


async def _idle_kib_per_member(credentials: Path, identities: Sequence[Identity]) -> float:
    hub_key = _hub_identity(credentials).public_key
    async with _hub_process(credentials) as hub:
        warm_up, measured = identities[:IDLE_WARM_UP], identities[IDLE_WARM_UP:]
        async with _members(hub.port, warm_up, hub_key) as early:
            await _join(early, _SESSION)
            before = await hub.rss()
            async with _members(hub.port, measured, hub_key) as late:
                await _join(late, _SESSION)
                after = await hub.rss()
    return (after - before) / len(measured) / 1024


def _broadcasts(settings: Settings, members: int, size: int) -> int:
    """Broadcasts for one configuration: ``settings.hub_messages`` deliveries of
    64 bytes, an eighth as many of 16 KiB."""
    deliveries = settings.hub_messages if size <= 64 else settings.hub_messages // 8
    return max(deliveries // (members - 1), 1)


async def measure(
    credentials: Path, settings: Settings, progress: Callable[[str], None]
) -> HubResults:
    """Every hub workload, each under its own deadline.

    Raises:
        BenchError: a message was lost, duplicated or reordered, or a worker misbehaved.
        trio.TooSlowError: a workload overran its deadline.
    """
    identities = _member_identities(credentials)
    hub_key = _hub_identity(credentials).public_key
    rows: list[Throughput] = []
    fanout: tuple[list[float], float, float] = ([], 0.0, 0.0)
    async with _hub_process(credentials) as hub:
        progress(f"hub: connecting {FANOUT_RECEIVERS + 1} members")
        everyone = identities[: FANOUT_RECEIVERS + 1]
        async with _members(hub.port, everyone, hub_key) as connections:
            for count in MEMBERS:
                # Joining and leaving cost O(members) each, so every message size
                # shares one session, and the fan-out the largest one.
                sessions = await _join(connections[:count], f"{_SESSION}-{count}")
                for size in SIZES:
                    progress(f"hub: {count} members, {size}-byte messages")
                    broadcasts = _broadcasts(settings, count, size)
                    deliveries = broadcasts * (count - 1)
                    with trio.fail_after(SLACK + deliveries / _MIN_DELIVERIES_PER_SECOND):
                        rows.append(await _throughput(hub, sessions, size, broadcasts))
                if count == max(MEMBERS):
                    progress(f"hub: fan-out to {FANOUT_RECEIVERS} members")
                    sessions += await _join(
                        connections[count : FANOUT_RECEIVERS + 1], f"{_SESSION}-{count}"
                    )
                    with trio.fail_after(SLACK + settings.hub_fanouts * _MAX_FANOUT_SECONDS):
                        fanout = await _fanout(hub, sessions, settings.hub_fanouts)
                else:
                    await _leave(sessions)
            # The last session ends as its members disconnect.
    progress("hub: idle memory")
    idle = identities[: IDLE_WARM_UP + settings.idle_connections]
    # Connecting and joining each have their own deadline; this covers the rest.
    with trio.fail_after(3 * SLACK + 2 * len(idle) * _MAX_MEMBER_SECONDS):
        kib = await _idle_kib_per_member(credentials, idle)
    latencies, hub_cpu, client_cpu = fanout
    return HubResults(tuple(rows), tuple(latencies), hub_cpu, client_cpu, kib)
