"""Broadcasts through one session, timed: delivered messages per second, and fan-out latency.

Both run over sessions that :mod:`securesess.bench.hub` has joined, against
the hub in its worker process, whose CPU time they read before and after.

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
64 bytes to the other :data:`hub.FANOUT_RECEIVERS`. A sample is the time from
just before ``send`` until the last member's ``receive`` returned it (one
process, one clock); a short pause follows, so samples do not queue behind
each other. A tenth as many samples run first, untimed. The members' half
of each sample is serial, 100 connections read, decrypted and parsed in
turn on one CPU, and it is included: pessimistic, since real members on
their own machines would each handle only their own copy. To tell the two
halves apart, the CPU time per broadcast of the hub and of the members'
process is reported too. The target is judged on the p99.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Final

import trio

from securesess.bench.errors import BenchError
from securesess.bench.hub_results import Throughput
from securesess.bench.processes import WorkerProcess
from securesess.sessions.client import Session
from securesess.sessions.events import MemberJoined, Message

__all__ = ["SENDER_TASKS", "fanout", "throughput"]

#: Tasks sending concurrently over the sender's connection.
SENDER_TASKS: Final = 128
# End-to-end window: bytes sent beyond what the slowest member has received.
_WINDOW_BYTES: Final = 1 << 20
_FANOUT_SIZE: Final = 64
# Pause after each fan-out sample, so the next one starts on an idle system.
_FANOUT_PAUSE: Final = 0.005


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


async def throughput(
    hub: WorkerProcess, sessions: Sequence[Session], size: int, broadcasts: int
) -> Throughput:
    """``broadcasts`` of ``size`` bytes from the first of ``sessions`` to the others, timed
    after an untimed tenth as many, with each process's share of a core meanwhile."""
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


async def fanout(
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
