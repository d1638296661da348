"""A soak: streams and a hub session kept busy, with rekeys, while memory and files are watched.

Everything runs in this process over loopback TCP, so the process's own
resident memory and open file descriptors are the figures to watch:

* stream clients echo random-sized messages through a ``serve_secure``
  server, verify every byte, and reconnect every few dozen messages (so
  connections come and go all the time), with both directions rekeying
  every 32 records;
* hub members in one session broadcast numbered messages and set a
  variable; every member checks that it receives each other member's
  messages intact and in order.

After a warm-up, memory must stay flat, and once everything has closed,
the open files must be back to where they started. "Memory" is the Python
heap as tracemalloc counts it (every object the code keeps), compared
between the first and the last third of the run: the process's resident
size is reported too, but it also grows with glibc's own retention (its
mmap threshold rises after large frees), which levels off and is not a
leak, so it cannot be the criterion.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import struct
import tracemalloc
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from keystore import Identity, TrustStore
from securesess import (
    HubConnection,
    Message,
    Policy,
    SecureListener,
    SecureStream,
    Session,
    serve_hub,
    serve_secure,
)
from tests.hardening.report import Row

_REKEY_AFTER = 32  # records: a rekey every few messages in each direction
_POLICY = """
[[rule]]
any_peer = true
sessions = ["soak"]
rights = ["create", "join", "send", "receive", "set"]
"""
# Heap growth allowed between the first and the last third of the run:
# messages in flight vary by that much; a leak of even 16 bytes per message
# would add more over the hundreds of thousands of a full run.
_MEMORY_MARGIN = 2 << 20


@dataclass
class _Tally:
    sent: int = 0
    verified: int = 0
    wrong: int = 0
    errors: list[str] = field(default_factory=list)
    connections: int = 0


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _echo(stream: SecureStream) -> None:
    try:
        while data := await stream.receive_some():
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def _stream_client(
    port: int,
    ids: tuple[Identity, TrustStore],
    tally: _Tally,
    rng: random.Random,
    stop: trio.Event,
) -> None:
    identity, trust = ids
    while not stop.is_set():
        transport = await trio.open_tcp_stream("127.0.0.1", port)
        stream = SecureStream(
            transport, identity=identity, trust=trust, rekey_after_records=_REKEY_AFTER
        )
        tally.connections += 1
        try:
            for _ in range(rng.randrange(20, 80)):
                if stop.is_set():
                    break
                message = rng.randbytes(rng.choice((1, 100, 4096, 65518, 200_000)))
                tally.sent += 1
                await stream.send_all(message)
                echoed = bytearray()
                while len(echoed) < len(message):
                    data = await stream.receive_some()
                    if not data:
                        raise trio.BrokenResourceError("the echo server ended the stream early")
                    echoed += data
                if echoed == message:
                    tally.verified += 1
                else:
                    tally.wrong += 1
        except trio.BrokenResourceError as exc:
            tally.errors.append(repr(exc))
        finally:
            await stream.aclose()


def _stamp(sender: str, number: int) -> bytes:
    body = struct.pack(">16sQ", sender.encode(), number) + os.urandom(number % 512)
    return body + hashlib.sha256(body).digest()


def _unstamp(data: bytes) -> tuple[str, int] | None:
    body, digest = data[:-32], data[-32:]
    if len(body) < 24 or hashlib.sha256(body).digest() != digest:
        return None
    name, number = struct.unpack(">16sQ", body[:24])
    return name.rstrip(b"\0").decode(), number


async def _member(
    session: Session, others: int, tally: _Tally, stop: trio.Event, finals: dict[str, int]
) -> None:
    """Broadcast numbered messages until ``stop``; check every other member's arrive."""
    name = session.me.name or "?"
    seen: dict[str, int] = {}

    async def speak() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            await session.send(_stamp(name, number))
            tally.sent += others
            if number % 50 == 0:
                await session.set(f"progress/{name}", str(number).encode())
            # Well below what the members can take in: the soak looks for
            # leaks, not for the backlog of an overloaded session.
            await trio.sleep(0.02)
        finals[name] = number

    def complete() -> bool:
        return len(finals) == others + 1 and all(
            seen.get(sender, 0) == final for sender, final in finals.items() if sender != name
        )

    async def listen() -> None:
        async for event in session:
            if isinstance(event, Message):
                stamp = _unstamp(event.data)
                if stamp is None or stamp[1] != seen.get(stamp[0], 0) + 1:
                    tally.wrong += 1  # altered, lost or out of order
                if stamp is not None:
                    seen[stamp[0]] = stamp[1]
                    tally.verified += 1
            if stop.is_set() and complete():
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        await speak()
        with trio.move_on_after(10) as late:
            while not complete():
                await trio.sleep(0.05)
        if late.cancelled_caught:
            tally.errors.append(f"{name} still waits for messages 10 s after the end")
        nursery.cancel_scope.cancel()


async def _soak(
    seconds: float, clients: int, members: int
) -> tuple[_Tally, _Tally, list[tuple[int, int]], int, int]:
    server_id, hub_id = Identity.generate("echo"), Identity.generate("hub")
    client_ids = [Identity.generate(f"client{n}") for n in range(clients)]
    member_ids = [Identity.generate(f"member{n}") for n in range(members)]
    server_trust, hub_trust, client_trust = TrustStore(), TrustStore(), TrustStore()
    client_trust.add_peer("echo", server_id.public_key)
    client_trust.add_peer("hub", hub_id.public_key)
    for identity in client_ids:
        server_trust.add_peer(identity.name or "", identity.public_key)
    for identity in member_ids:
        hub_trust.add_peer(identity.name or "", identity.public_key)
        # Fellow members: each vouches for the others in sealed sessions.
        client_trust.add_peer(
            identity.name or "", identity.public_key, signing_key=identity.signing_public_key
        )
    streams, hub_tally = _Tally(), _Tally()
    samples: list[tuple[int, int]] = []  # (heap, resident), bytes
    fds_before = _fds()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start(1)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        listeners: list[SecureListener] = await nursery.start(
            partial(
                serve_secure,
                _echo,
                0,
                host="127.0.0.1",
                identity=server_id,
                trust=server_trust,
                rekey_after_records=_REKEY_AFTER,
                handshake_rate=None,
            )
        )
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        port = transport.socket.getsockname()[1]
        hub = await nursery.start(
            partial(
                serve_hub,
                0,
                host="127.0.0.1",
                identity=hub_id,
                trust=hub_trust,
                policy=Policy.parse(_POLICY),
                rekey_after_records=_REKEY_AFTER,
            )
        )
        rng = random.Random(1)
        async with trio.open_nursery() as load:
            for identity in client_ids:
                load.start_soon(
                    _stream_client,
                    port,
                    (identity, client_trust),
                    streams,
                    random.Random(rng.random()),
                    stop,
                )
            room = _Room(hub.port, client_trust, members, hub_tally, stop)
            for identity in member_ids:
                load.start_soon(_run_member, room, identity)
            deadline = trio.current_time() + seconds
            while trio.current_time() < deadline:
                await trio.sleep(min(1.0, max(seconds / 30, 0.1)))
                samples.append((tracemalloc.get_traced_memory()[0], _rss()))
            stop.set()
        nursery.cancel_scope.cancel()
    if not tracing:
        tracemalloc.stop()
    return streams, hub_tally, samples, fds_before, _fds()


@dataclass
class _Room:
    """What the hub members share."""

    port: int
    trust: TrustStore
    members: int
    tally: _Tally
    stop: trio.Event
    finals: dict[str, int] = field(default_factory=dict)


async def _run_member(room: _Room, identity: Identity) -> None:
    transport = await trio.open_tcp_stream("127.0.0.1", room.port)
    stream = SecureStream(
        transport,
        identity=identity,
        trust=room.trust,
        expect="hub",
        rekey_after_records=_REKEY_AFTER,
    )
    async with HubConnection.over(stream) as connection:
        # Everyone joins before anyone speaks, so each sees every message.
        session = await connection.join("soak", create=True)
        room.tally.connections += 1
        while room.tally.connections < room.members:
            await trio.sleep(0.01)
        async with session:
            await _member(session, room.members - 1, room.tally, room.stop, room.finals)


def run(quick: bool) -> list[Row]:
    seconds, clients, members = (4.0, 4, 3) if quick else (120.0, 16, 8)
    streams, hub, samples, fds_before, fds_after = trio.run(_soak, seconds, clients, members)
    third = max(1, len(samples) // 3)
    # Skip the first sample: it still holds the warm-up.
    first = samples[1 : 1 + third] or samples[:1]
    early = [statistics.median(column) for column in zip(*first, strict=True)]
    late = [statistics.median(column) for column in zip(*samples[-third:], strict=True)]
    flat = late[0] - early[0] <= _MEMORY_MARGIN and fds_after <= fds_before
    rekeys = 2 * streams.sent // _REKEY_AFTER
    return [
        Row(
            "soak",
            f"{seconds:g} s of {clients} echo clients, reconnecting every 20-80 messages",
            tried=streams.sent,
            held=streams.verified,
            lost=streams.wrong,
            unexpected=len(streams.errors),
            note=f"{streams.connections:,} connections, about {rekeys:,} rekeys",
        ),
        Row(
            "soak",
            f"{seconds:g} s of one hub session of {members} members broadcasting",
            tried=hub.sent,
            held=hub.verified,
            lost=hub.wrong + max(0, hub.sent - hub.verified),
            unexpected=len(hub.errors),
            note="every message intact and in order, for every member",
        ),
        Row(
            "soak",
            "memory and open files stay flat",
            tried=1,
            held=1 if flat else 0,
            lost=0,
            unexpected=0 if flat else 1,
            note=(
                f"heap {early[0] / 2**20:.1f} -> {late[0] / 2**20:.1f} MiB "
                f"(resident {early[1] / 2**20:.0f} -> {late[1] / 2**20:.0f}); "
                f"open files {fds_before} before, {fds_after} after"
            ),
        ),
    ]
