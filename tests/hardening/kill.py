"""Kill a tunnel end, the hub, or a session member at random moments, with SIGKILL.

The processes are the real commands (``securesess tunnel``, ``securesess
hub``) and a hub member process (``tests.hub_agent``); the applications and
the other members run here and keep working through the kills:

* tunnel: applications stream data through the tunnel to an echo service
  and check every echoed byte; an end is killed and restarted on its port.
  Each application connection must end (reset or end of stream) rather than
  hang, what it got back must be exactly what it sent, and new connections
  must work once the end is back;
* hub: members broadcast numbered, checksummed messages; the hub is killed
  and restarted. Members must see a typed error, reconnect, and never
  receive an altered, duplicated or out-of-order message;
* member: a member process is killed; the others must see it leave.

A process that dies leaves its sockets to the kernel, which ends them with
a FIN when no data was unread: whoever was connected to a killed tunnel end
may see a clean end of stream. That is TCP's limit, not the tunnel's; the
checks here are that no altered data is delivered and nothing hangs.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from keystore import Keystore
from securesess import MemberJoined, MemberLeft, Message, connect_hub
from securesess.errors import HandshakeFailed, SessionError
from tests.hardening.report import Row
from tests.hardening.soak import _stamp, _unstamp
from tests.tunnels import Backend

_TYPED = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    SessionError,
    HandshakeFailed,
    OSError,
)


def _typed(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_typed(inner) for inner in error.exceptions)
    return isinstance(error, _TYPED)


async def _free_port() -> int:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class _Process:
    """A command that can be killed and started again with the same arguments."""

    args: list[str]
    process: trio.Process | None = None

    async def start(self) -> None:
        self.process = await trio.lowlevel.open_process(
            [sys.executable, "-m", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        with trio.fail_after(20):
            line = await self.process.stdout.receive_some()
        assert line.startswith(b"listening on "), line

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.kill()


def _keystores(root: Path) -> tuple[Path, Path]:
    """``app`` and ``hub``/``db`` homes, each pinning the other's keys."""
    client_home, server_home = root / "client", root / "server"
    client, server = Keystore.open(client_home), Keystore.open(server_home)
    for name in ("app", "member", "other"):
        client.new_identity(name, passphrase=None)
        server.add_peer(name, client.public_key(name), ["services"])
    for name in ("app", "member", "other"):
        # Fellow members: each vouches for the others in sealed sessions.
        signing = client.identity(name).signing_public_key
        client.add_peer(name, client.public_key(name), signing_key=signing)
    for name in ("db", "hub"):
        server.new_identity(name, passphrase=None)
        client.add_peer(name, server.public_key(name))
    return client_home, server_home


@dataclass
class _Streams:
    connections: int = 0
    echoed: int = 0
    altered: int = 0
    hung: int = 0
    untyped: list[str] = field(default_factory=list)


async def _application(port: int, tally: _Streams, rng: random.Random, stop: trio.Event) -> None:
    """Stream through the tunnel, check the echo, reconnect after every end."""
    while not stop.is_set():
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.05)  # the end is being restarted
            continue
        tally.connections += 1
        try:
            while not stop.is_set():
                chunk = rng.randbytes(rng.choice((10, 1000, 100_000)))
                await stream.send_all(chunk)
                echoed = bytearray()
                with trio.move_on_after(10) as waited:
                    while len(echoed) < len(chunk):
                        data = await stream.receive_some()
                        if not data:
                            break
                        echoed += data
                if waited.cancelled_caught:
                    tally.hung += 1
                    break
                if bytes(echoed) != chunk[: len(echoed)]:
                    tally.altered += 1
                if len(echoed) < len(chunk):
                    break  # the connection ended: reconnect
                tally.echoed += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a reset: what a killed end looks like
        except Exception as exc:  # anything else is a finding
            tally.untyped.append(repr(exc))
        finally:
            await trio.aclose_forcefully(stream)


async def _tunnel_kills(kills: int, root: Path) -> Row:
    client_home, server_home = _keystores(root)
    tally = _Streams()
    rng = random.Random(7)
    async with trio.open_nursery() as nursery:
        backend = Backend()
        await backend.start(nursery)
        server_port, client_port = await _free_port(), await _free_port()
        common = ["--handshake-rate", "0", "--drain-timeout", "0"]
        server = _Process(
            ["securesess", "tunnel", "--server", "--listen", f"127.0.0.1:{server_port}",
             "--forward", f"127.0.0.1:{backend.port}", "--identity", "db",
             "--home", str(server_home), *common],
        )  # fmt: skip
        client = _Process(
            ["securesess", "tunnel", "--listen", f"127.0.0.1:{client_port}",
             "--connect", f"127.0.0.1:{server_port}", "--identity", "app", "--expect", "db",
             "--home", str(client_home), *common],
        )  # fmt: skip
        await server.start()
        await client.start()
        stop = trio.Event()
        try:
            async with trio.open_nursery() as apps:
                for _ in range(4):
                    apps.start_soon(
                        _application, client_port, tally, random.Random(rng.random()), stop
                    )
                for _ in range(kills):
                    await trio.sleep(rng.uniform(0.3, 1.0))
                    victim = rng.choice((server, client))
                    await victim.kill()
                    await victim.start()
                    if not await _progressed(lambda: tally.echoed):
                        tally.untyped.append("no data carried within 10 s of a restart")
                await trio.sleep(1)
                stop.set()
        finally:
            await server.stop()
            await client.stop()
        nursery.cancel_scope.cancel()
    unexpected = tally.hung + len(tally.untyped)
    return Row(
        "kill",
        "SIGKILL a tunnel end (either), at random moments, and restart it",
        tried=kills,
        held=kills if unexpected == 0 and tally.altered == 0 else 0,
        lost=tally.altered,
        unexpected=unexpected,
        note=f"{tally.connections:,} connections, {tally.echoed / 2**20:.1f} MiB echoed, checked",
    )


@dataclass
class _Members:
    received: int = 0
    altered: int = 0
    errors: int = 0
    reconnects: int = 0
    untyped: list[str] = field(default_factory=list)


async def _member(name: str, port: int, home: Path, tally: _Members, stop: trio.Event) -> None:
    """Join, broadcast and check, reconnecting whenever the hub goes away."""
    store = Keystore.open(home)
    identity, trust = store.identity(name), store.trust()
    while not stop.is_set():
        seen: dict[str, int] = {}  # per connection: a new hub starts a new session
        try:
            async with (
                connect_hub("127.0.0.1", port, identity=identity, trust=trust, expect="hub") as hub,
                await hub.join("kills", create=True) as session,
            ):

                async def speak() -> None:
                    number = 0
                    while not stop.is_set():
                        number += 1
                        await session.send(_stamp(name, number))
                        await trio.sleep(0.005)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(speak)
                    async for event in session:
                        if isinstance(event, Message):
                            stamp = _unstamp(event.data)
                            if stamp is None or stamp[1] <= seen.get(stamp[0], 0):
                                tally.altered += 1  # altered, or seen again
                            else:
                                seen[stamp[0]] = stamp[1]
                                tally.received += 1
                        if stop.is_set():
                            break
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            cancelled = isinstance(exc, trio.Cancelled) or (
                isinstance(exc, BaseExceptionGroup) and exc.subgroup(trio.Cancelled) is not None
            )
            if cancelled:
                raise
            if _typed(exc):
                tally.errors += 1
            else:
                tally.untyped.append(repr(exc))
            tally.reconnects += 1
            await trio.sleep(0.1)


async def _start_hub(root: Path, home: Path) -> tuple[_Process, int]:
    """A ``securesess hub`` process whose policy lets the services meet anywhere."""
    policy = root / "policy.toml"
    policy.write_text('[[rule]]\ngroups = ["services"]\nsessions = ["*"]\n'
                      'rights = ["create", "join", "send", "receive"]\n')  # fmt: skip
    port = await _free_port()
    hub = _Process(
        ["securesess", "hub", "--listen", f"127.0.0.1:{port}", "--identity", "hub",
         "--policy", str(policy), "--home", str(home)],
    )  # fmt: skip
    await hub.start()
    return hub, port


async def _progressed(count: Callable[[], int], timeout: float = 10) -> bool:
    """Whether ``count()`` grows within ``timeout`` seconds: back means working."""
    before = count()
    with trio.move_on_after(timeout):
        while count() == before:
            await trio.sleep(0.05)
    return count() != before


async def _hub_kills(kills: int, root: Path) -> Row:
    client_home, server_home = _keystores(root)
    hub, port = await _start_hub(root, server_home)
    tally = _Members()
    rng = random.Random(11)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            for name in ("app", "member", "other"):
                nursery.start_soon(_member, name, port, client_home, tally, stop)
            for _ in range(kills):
                await trio.sleep(rng.uniform(0.3, 1.0))
                await hub.kill()
                await hub.start()
                if not await _progressed(lambda: tally.received):
                    tally.untyped.append("no message delivered within 10 s of a restart")
            await trio.sleep(1)
            stop.set()
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    finally:
        await hub.stop()
    # Every kill must have been seen, as a typed error, by each of the 3 members.
    missed = max(0, 3 * kills - tally.errors)
    unexpected = len(tally.untyped)
    return Row(
        "kill",
        "SIGKILL the hub at random moments, restart it; 3 members reconnect",
        tried=kills,
        held=kills if unexpected == 0 and tally.altered == 0 and not missed else 0,
        lost=tally.altered,
        unexpected=unexpected,
        note=f"{tally.received:,} messages checked; {tally.reconnects} reconnects",
    )


async def _member_kills(kills: int, root: Path) -> Row:
    client_home, server_home = _keystores(root)
    hub, port = await _start_hub(root, server_home)
    store = Keystore.open(client_home)
    seen_leaving = 0
    unexpected = 0
    try:
        async with (
            connect_hub(
                "127.0.0.1", port, identity=store.identity("app"), trust=store.trust(),
                expect="hub",
            ) as connection,
            await connection.join("members", create=True) as session,
        ):  # fmt: skip
            for _ in range(kills):
                config = json.dumps(
                    {"home": str(client_home), "identity": "member", "port": port, "raw": False}
                )
                agent = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "tests.hub_agent", config],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                )
                assert agent.stdin is not None
                for command in ({"op": "connect"}, {"op": "join", "session": "members"}):
                    await agent.stdin.send_all(json.dumps(command).encode() + b"\n")
                with trio.move_on_after(20):
                    async for event in session:
                        if isinstance(event, MemberJoined):
                            break
                agent.send_signal(signal.SIGKILL)
                await agent.wait()
                with trio.move_on_after(10) as waited:
                    async for event in session:
                        if isinstance(event, MemberLeft):
                            seen_leaving += 1
                            break
                if waited.cancelled_caught:
                    unexpected += 1
    finally:
        await hub.stop()
    return Row(
        "kill",
        "SIGKILL a session member's process; the others see it leave",
        tried=kills,
        held=seen_leaving,
        lost=0,
        unexpected=unexpected,
        note="each seen as MemberLeft within 10 s",
    )


def run(quick: bool) -> list[Row]:
    kills = 3 if quick else 30
    rows = []
    for check in (_tunnel_kills, _hub_kills, _member_kills):
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(trio.run(check, kills, Path(scratch)))
    return rows
