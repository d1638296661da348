"""A sealed session's key change, timed: from a membership change until the
first message sealed in the new epoch has reached every member.

It runs over the fan-out session of :mod:`securesess.bench.hub` (the sender
and :data:`~securesess.bench.hub.FANOUT_RECEIVERS` others). A sample: the
last member leaves, and at once the sender sends 64 bytes. The hub takes no
content under an epoch a member has left (docs/protocol.md §10.6), so the
message goes out only once the sender, the longest-present member, has made
the commit that leaves the member out, the hub has ordered it and the
sender has applied it; the clock stops when the last remaining member has
opened the message, which it can only do once it has applied the commit
too. The member then joins again, untimed (another change, whose commit
goes to the newcomer and to everyone else), so every sample starts from the
same number of members.

As for fan-out, every member's client is in this one process, so the
members' half of a change is serial: each member applies the commit in
turn, where members on their own machines would do it at once. The CPU
time per change of the clients' process is reported beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import trio

from securesess.bench.errors import BenchError
from securesess.sessions.client import HubConnection, Session
from securesess.sessions.events import Message

__all__ = ["key_change"]


async def _everyone_has(receivers: Sequence[Session], payload: bytes) -> None:
    async def receive(session: Session) -> None:
        while True:
            event = await session.receive()
            if isinstance(event, Message):
                if event.data != payload:
                    raise BenchError(f"a member received an unexpected message: {event!r}")
                return

    async with trio.open_nursery() as nursery:
        for session in receivers:
            nursery.start_soon(receive, session)


async def key_change(
    connections: Sequence[HubConnection], sessions: list[Session], samples: int
) -> tuple[list[float], float]:
    """Milliseconds per change, and the clients' CPU milliseconds per change.

    ``sessions[i]`` is joined over ``connections[i]``; the first sends, the
    last leaves and joins again (``sessions`` is updated).
    """
    sender, name = sessions[0], sessions[0].name
    latencies: list[float] = []
    cpu = 0.0
    for _ in range(samples):
        payload = os.urandom(64)
        leaving = sessions[-1]
        receivers = sessions[1:-1]
        start, cpu_start = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_everyone_has, receivers, payload)
            await leaving.leave()
            await sender.send(payload)
        latencies.append((time.perf_counter() - start) * 1000)
        cpu += time.process_time() - cpu_start
        sessions[-1] = await connections[len(sessions) - 1].join(name)
        # Every member has seen the rejoin's commit once the sender's next
        # message, sealed after it, reaches them all.
        settled = os.urandom(64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_everyone_has, sessions[1:], settled)
            await sender.send(settled)
    return latencies, cpu * 1000 / samples
