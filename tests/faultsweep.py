"""A fault at every position of a recorded session, and the checks it must pass.

One *session* is a client and a server over a memory transport with a
:class:`FaultyStream` on the client's side: a handshake, two messages each
way in records, and a clean end each way. A *sweep* runs the session once
per fault, with the fault at each byte offset of one direction, and checks
that each side either got exactly what the other sent and a clean end, or
an exact prefix of it and a typed error: never altered bytes, never a clean
end of cut data. ``tests/test_fault_sweep.py`` runs a quick sweep in CI;
``python -m tests.hardening`` sweeps every offset, for several protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import trio
import trio.testing

from keystore import Identity, TrustStore
from securesess import SecureStream
from securesess.errors import (
    HandshakeFailed,
    PeerAborted,
    ProtocolViolation,
    RecordAuthenticationFailed,
    TruncatedStream,
)
from securesess.testing import (
    Cut,
    Drop,
    Duplicate,
    Fault,
    FaultyStream,
    FlipBits,
    Reorder,
    Stall,
    Truncate,
)

#: What a broken stream may be caused by, once the handshake is done: the
#: record layer's findings, or the transport's own failure (the peer hung up).
TYPED_CAUSES = (
    TruncatedStream,
    RecordAuthenticationFailed,
    ProtocolViolation,
    PeerAborted,
    trio.BrokenResourceError,
    OSError,
)

FAULT_KINDS: dict[str, Callable[[int], Fault]] = {
    "flip": FlipBits,
    "flip-high": partial(FlipBits, mask=0x80),
    "drop": Drop,
    "duplicate": Duplicate,
    "reorder": Reorder,
    "truncate": Truncate,
    "cut": Cut,
    "stall": Stall,
}


@dataclass
class Side:
    """What one side of a session received, and how its stream ended."""

    received: bytes = b""
    error: BaseException | None = None


@dataclass
class Outcome:
    client: Side
    server: Side
    sent_by_client: bytes
    sent_by_server: bytes


class World:
    """Identities that trust each other, built once and reused by every session."""

    def __init__(
        self, message_size: int = 100, *, protocol: str | None = None, psk: bytes | None = None
    ) -> None:
        self.protocol, self.psk = protocol, psk
        self.client_id, self.server_id = Identity.generate("api"), Identity.generate("db")
        self.client_trust, self.server_trust = TrustStore(), TrustStore()
        self.client_trust.add_peer("db", self.server_id.public_key)
        self.server_trust.add_peer("api", self.client_id.public_key)
        self.client_says = [b"c" * message_size, b"C" * message_size]
        self.server_says = [b"s" * message_size, b"S" * message_size]


async def _speak(stream: SecureStream, messages: list[bytes], side: Side) -> None:
    """Send ``messages`` (a record each) and an end; read until the other's end."""

    async def send() -> None:
        for message in messages:
            await stream.send_all(message)
        await stream.send_eof()

    async def receive() -> None:
        received = bytearray()
        try:
            while chunk := await stream.receive_some():
                received += chunk
        finally:
            side.received = bytes(received)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await send()
    except BaseException as exc:  # classified by check()
        side.error = exc
    finally:
        await trio.aclose_forcefully(stream)


async def session(world: World, send: list[Fault], receive: list[Fault]) -> Outcome:
    """One session with ``send``/``receive`` faults on the client's side of the wire."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    faulty = FaultyStream(client_transport, send=send, receive=receive)
    client = SecureStream(
        faulty,
        identity=world.client_id,
        trust=world.client_trust,
        expect="db",
        protocol=world.protocol,
        psk=world.psk,
        handshake_timeout=5,
    )
    server = SecureStream(
        server_transport,
        identity=world.server_id,
        trust=world.server_trust,
        server_side=True,
        psk=world.psk,
        handshake_timeout=5,
    )
    client_side, server_side = Side(), Side()
    with trio.move_on_after(30):  # mock time: a stall costs nothing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_speak, client, world.client_says, client_side)
            nursery.start_soon(_speak, server, world.server_says, server_side)
    return Outcome(client_side, server_side, bytes(faulty.sent), bytes(faulty.received))


def run_session(world: World, send: list[Fault], receive: list[Fault]) -> Outcome:
    return trio.run(
        session, world, send, receive, clock=trio.testing.MockClock(autojump_threshold=0)
    )


def problems(side: Side, expected: bytes, name: str) -> Iterator[str]:
    """What is wrong with how ``side`` ended, given the other sent ``expected``."""
    if not expected.startswith(side.received):
        yield f"{name} received altered bytes: {side.received[:40]!r}..."
    error = side.error
    if error is None:
        if side.received != expected:
            yield f"{name} saw a clean end after {len(side.received)} of {len(expected)} bytes"
        return
    if isinstance(error, HandshakeFailed):
        return
    if isinstance(error, trio.Cancelled):
        return  # a stall: the session's own timeout ended it
    if isinstance(error, BaseExceptionGroup):
        causes = [e for e in error.exceptions if not _typed(e)]
        if causes:
            yield f"{name} failed with untyped {causes!r}"
        return
    if not _typed(error):
        yield f"{name} failed with untyped {error!r}"


def _typed(error: BaseException) -> bool:
    if isinstance(error, HandshakeFailed | trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_typed(e) for e in error.exceptions)
    return isinstance(error, trio.BrokenResourceError | trio.ClosedResourceError) and (
        error.__cause__ is None or isinstance(error.__cause__, TYPED_CAUSES)
    )


def check(world: World, outcome: Outcome) -> list[str]:
    found = list(problems(outcome.server, b"".join(world.client_says), "server"))
    found += problems(outcome.client, b"".join(world.server_says), "client")
    for message in (*world.client_says, *world.server_says):
        if message in outcome.sent_by_client or message in outcome.sent_by_server:
            found.append("plaintext on the wire")
    return found


@dataclass
class SweepResult:
    """How many runs, and how many of them went wrong in each way."""

    runs: int = 0
    lost: int = 0  # altered bytes, a clean end of cut data, or plaintext on the wire
    unexpected: int = 0  # an error of no promised type
    failures: list[str] = field(default_factory=list)

    @property
    def held(self) -> int:
        """Runs that ended as promised."""
        return self.runs - len({failure.partition(": ")[0] for failure in self.failures})

    def add(self, what: str, problems: list[str]) -> None:
        self.runs += 1
        if any("untyped" in problem for problem in problems):
            self.unexpected += 1
        if any("untyped" not in problem for problem in problems):
            self.lost += 1
        self.failures.extend(f"{what}: {problem}" for problem in problems)


def sweep(
    world: World,
    kinds: list[str],
    *,
    directions: tuple[str, ...] = ("send", "receive"),
    stride: int = 1,
) -> SweepResult:
    """Every fault kind at every ``stride``-th offset of each direction."""
    clean = run_session(world, [], [])
    assert not check(world, clean), check(world, clean)
    lengths = {"send": len(clean.sent_by_client), "receive": len(clean.sent_by_server)}
    result = SweepResult()
    for direction in directions:
        # Each kind starts at its own residue, so with a stride the kinds
        # between them still reach every offset.
        for index, kind in enumerate(kinds):
            for offset in range(index % stride, lengths[direction], stride):
                fault = FAULT_KINDS[kind](offset)
                faults = ([fault], []) if direction == "send" else ([], [fault])
                outcome = run_session(world, *faults)
                result.add(f"{kind} at {direction} offset {offset}", check(world, outcome))
    return result


async def _replay(world: World, recorded: bytes) -> Side:
    """Play a recorded client's bytes to a fresh server; what the server makes of them."""
    attacker, server_transport = trio.testing.memory_stream_pair()
    server = SecureStream(
        server_transport,
        identity=world.server_id,
        trust=world.server_trust,
        server_side=True,
        psk=world.psk,
        handshake_timeout=5,
    )
    side = Side()

    async def play() -> None:
        await attacker.send_all(recorded)
        await attacker.send_eof()

    with trio.move_on_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play)
            nursery.start_soon(_speak, server, world.server_says, side)
    await trio.aclose_forcefully(attacker)
    return side


def replays(world: World, count: int) -> SweepResult:
    """Record ``count`` clean sessions and replay each client's bytes to a new server.

    The server must deliver none of the recorded data: a replayed XX
    handshake fails at message 3; a replayed IK message 1 passes (the
    pattern allows it) but no record after it authenticates.
    """
    result = SweepResult()
    for _ in range(count):
        recorded = run_session(world, [], []).sent_by_client
        side = trio.run(
            _replay, world, recorded, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        problems = []
        if side.received:
            problems.append(f"a replay delivered {len(side.received)} bytes")
        if side.error is None:
            problems.append("a replay ended cleanly")
        elif not _typed(side.error):
            problems.append(f"replay failed with untyped {side.error!r}")
        result.add(f"replay {result.runs + 1}", problems)
    return result
