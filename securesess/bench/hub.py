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

Throughput and fan-out latency
------------------------------
The broadcasts that measure them, and why they run as they do, are
:mod:`securesess.bench.hub_broadcasts`.

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
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Final

import trio

from keystore import Identity, TrustStore
from securesess.bench import hub_broadcasts, hub_epochs
from securesess.bench.hub_broadcasts import SENDER_TASKS
from securesess.bench.hub_results import HubResults, Throughput
from securesess.bench.hub_server import (
    hub_identity,
    hub_process,
    member_identities,
    pin_members,
    serve,
    write_keys,
)
from securesess.bench.settings import Settings
from securesess.bench.transports import HOST
from securesess.bench.workloads import IDLE_WARM_UP, SLACK
from securesess.sessions.client import HubConnection, Session, connect_hub

# The throughput rows, the hub's own side and the broadcasts have modules of
# their own now; these names stay importable from here.
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
_SESSION: Final = "bench"
# Deadline arithmetic, as in workloads: the slowest believable rates.
_MIN_DELIVERIES_PER_SECOND: Final = 2_000
_MAX_FANOUT_SECONDS: Final = 0.5
_MAX_MEMBER_SECONDS: Final = 0.1
# A change and the rejoin after it, each a commit every member applies.
_MAX_KEY_CHANGE_SECONDS: Final = 5.0


# -- credentials -----------------------------------------------------------------------


def _members_needed(settings: Settings) -> int:
    return max(*MEMBERS, FANOUT_RECEIVERS + 1, IDLE_WARM_UP + settings.idle_connections)


def write_credentials(directory: Path, settings: Settings) -> None:
    """Throwaway keys for the hub and for every member the workloads connect."""
    write_keys(directory, _members_needed(settings))


# -- the members' side (here) ------------------------------------------------------------


@contextlib.asynccontextmanager
async def _members(
    port: int,
    identities: Sequence[Identity],
    hub_key: bytes,
    *,
    fellows: Sequence[Identity] = (),
) -> AsyncIterator[list[HubConnection]]:
    """A connection to the hub per identity, opened under a deadline of their
    own; each trusts the others, and ``fellows``, to be in its sessions."""
    trust = TrustStore()
    trust.add_peer("hub", hub_key)
    pin_members(trust, [*identities, *fellows])
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


async def _idle_kib_per_member(credentials: Path, identities: Sequence[Identity]) -> float:
    hub_key = hub_identity(credentials).public_key
    async with hub_process(credentials) as hub:
        warm_up, measured = identities[:IDLE_WARM_UP], identities[IDLE_WARM_UP:]
        async with _members(hub.port, warm_up, hub_key, fellows=measured) as early:
            await _join(early, _SESSION)
            before = await hub.rss()
            async with _members(hub.port, measured, hub_key, fellows=warm_up) as late:
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
    identities = member_identities(credentials)
    hub_key = hub_identity(credentials).public_key
    rows: list[Throughput] = []
    fanout: tuple[list[float], float, float] = ([], 0.0, 0.0)
    key_change: tuple[list[float], float] = ([], 0.0)
    async with hub_process(credentials) as hub:
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
                        row = await hub_broadcasts.throughput(hub, sessions, size, broadcasts)
                    rows.append(row)
                if count == max(MEMBERS):
                    progress(f"hub: fan-out to {FANOUT_RECEIVERS} members")
                    sessions += await _join(
                        connections[count : FANOUT_RECEIVERS + 1], f"{_SESSION}-{count}"
                    )
                    with trio.fail_after(SLACK + settings.hub_fanouts * _MAX_FANOUT_SECONDS):
                        fanout = await hub_broadcasts.fanout(hub, sessions, settings.hub_fanouts)
                    progress(f"hub: key changes in a session of {len(sessions)} members")
                    changes = max(settings.hub_fanouts // 20, 3)
                    with trio.fail_after(SLACK + changes * _MAX_KEY_CHANGE_SECONDS):
                        key_change = await hub_epochs.key_change(connections, sessions, changes)
                else:
                    await _leave(sessions)
            # The last session ends as its members disconnect.
    progress("hub: idle memory")
    idle = identities[: IDLE_WARM_UP + settings.idle_connections]
    # Connecting and joining each have their own deadline; this covers the rest.
    with trio.fail_after(3 * SLACK + 2 * len(idle) * _MAX_MEMBER_SECONDS):
        kib = await _idle_kib_per_member(credentials, idle)
    latencies, hub_cpu, client_cpu = fanout
    changes_ms, change_cpu_ms = key_change
    return HubResults(
        tuple(rows), tuple(latencies), hub_cpu, client_cpu, kib, tuple(changes_ms), change_cpu_ms
    )
