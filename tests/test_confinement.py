"""Confinement, end to end: a hub process, and client processes that try to see too much.

Every party is a real process (``securesess hub`` and ``tests/hub_agent.py``)
talking over loopback TCP with keys and certificates from a real keystore.
The raw agents report every plaintext byte the hub sends them, so "never
receives" is checked on the bytes themselves, not on what an API chose to show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore import Keystore, sign_certificate
from securesess.sessions.wire import MAX_ANSWER, VERSION, ErrorCode, MessageReader, Op, pack

ROOT = Path(__file__).resolve().parent.parent
SECRET = "SECRET"

POLICY = """
[[rule]]
name = "services"
names = ["api", "db", "forger"]
sessions = ["orders", "orders/*"]
rights = ["create", "join", "send", "receive", "set"]

[[rule]]
name = "caches"
names = ["cache"]
sessions = ["orders", "orders/*"]
rights = ["join", "receive"]

[[rule]]
name = "guests"
groups = ["guests"]
sessions = ["lobby"]
rights = ["create", "join", "send", "receive"]
"""

IDENTITIES = {
    "hub": (),
    "api": ("services",),
    "db": ("services",),
    "cache": ("services",),
    "forger": ("services",),
    "spy": ("guests",),
    "revoked": ("services",),
    "expired": ("services",),
}


def _make_keystore(home: Path) -> Keystore:
    store = Keystore.open(home)
    store.init_ca("ca", passphrase=None, valid_seconds=3600)
    for name, groups in IDENTITIES.items():
        store.issue_identity(
            name, ca="ca", ca_passphrase=None, passphrase=None, groups=groups, valid_seconds=3600
        )
    store.revoke_key(store.public_key("revoked"))
    # A certificate that expired an hour ago, from a second CA the hub trusts.
    old_ca = Ed25519PrivateKey.generate()
    store.trust_ca("old-ca", old_ca.public_key().public_bytes_raw())
    now = int(time.time())
    store.store_certificate(
        "expired",
        sign_certificate(
            old_ca,
            subject_key=store.public_key("expired"),
            name="expired",
            groups=["services"],
            serial=1,
            not_before=now - 7200,
            not_after=now - 3600,
        ),
    )
    # A stranger: a key no CA vouches for and nobody pinned.
    store.new_identity("stranger", passphrase=None)
    (home / "policy.toml").write_text(POLICY, encoding="utf-8")
    return store


class Process:
    """A child process whose stdout lines are collected as they come."""

    def __init__(self, process: trio.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []
        self._changed = trio.Event()

    async def pump(self) -> None:
        assert self.process.stdout is not None
        buffered = b""
        async for chunk in self.process.stdout:
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            self.lines.extend(line.decode() for line in lines)
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float = 15) -> str:
        with trio.fail_after(timeout):
            checked = 0
            while True:
                for line in self.lines[checked:]:
                    if predicate(line):
                        return line
                checked = len(self.lines)
                await self._changed.wait()


class Agent(Process):
    """A ``tests.hub_agent`` process: send it commands, read what it reports."""

    def __init__(self, process: trio.Process, name: str) -> None:
        super().__init__(process, name)
        self._replies_seen = 0

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    async def do(self, op: str, **fields: Any) -> dict[str, Any]:
        """Run one command and return its reply."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps({"op": op, **fields}).encode() + b"\n")
        index = self._replies_seen
        self._replies_seen += 1

        def is_reply(line: str) -> bool:
            replies = [r for r in map(json.loads, self.lines) if "reply" in r]
            return len(replies) > index

        await self.wait_for(is_reply)
        reply: dict[str, Any] = [r for r in self.records if "reply" in r][index]
        assert reply["reply"] == op
        return reply

    async def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        reply = await self.do(op, **fields)
        assert reply.get("ok"), f"{self.name} {op}: {reply}"
        return reply

    async def event(self, **match: Any) -> dict[str, Any]:
        line = await self.wait_for(
            lambda line: all(json.loads(line).get(k) == v for k, v in match.items())
        )
        record: dict[str, Any] = json.loads(line)
        return record

    def raw_bytes(self) -> bytes:
        return b"".join(bytes.fromhex(r["raw"]) for r in self.records if "raw" in r)

    def raw_messages(self) -> list[list[Any]]:
        return list(MessageReader(MAX_ANSWER).feed(self.raw_bytes()))


class World:
    def __init__(self, home: Path, nursery: trio.Nursery) -> None:
        self.home = home
        self.nursery = nursery
        self.store = _make_keystore(home)
        self.hub: Process | None = None
        self.port = 0
        self.raw_agents: list[Agent] = []
        self.processes: list[trio.Process] = []

    async def _spawn(self, command: list[str], name: str, cls: type[Process]) -> Any:
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.home / f"{name}.log", "ab"),  # noqa: SIM115 -- the child owns it
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes.append(process)
        child = cls(process, name)
        self.nursery.start_soon(child.pump)
        return child

    async def stop(self) -> None:
        """End every process this world started: none may outlive its test."""
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.wait()

    async def start_hub(self) -> None:
        command = [
            sys.executable, "-m", "securesess", "hub", "--listen", "127.0.0.1:0",
            "--identity", "hub", "--policy", str(self.home / "policy.toml"),
            "--home", str(self.home),
        ]  # fmt: skip
        self.hub = await self._spawn(command, "hub", Process)
        line = await self.hub.wait_for(lambda line: line.startswith("listening on"))
        self.port = int(line.split()[2].rsplit(":", 1)[1])

    async def agent(self, name: str, *, raw: bool = False, connect: bool = True) -> Agent:
        config = json.dumps(
            {"home": str(self.home), "identity": name, "port": self.port, "raw": raw}
        )
        agent: Agent = await self._spawn(
            [sys.executable, "-m", "tests.hub_agent", config], name, Agent
        )
        if raw:
            self.raw_agents.append(agent)
        if connect:
            await agent.ok("connect")
        return agent

    async def reload_hub(self, policy: str) -> None:
        assert self.hub is not None
        (self.home / "policy.toml").write_text(policy, encoding="utf-8")
        self.hub.process.send_signal(signal.SIGHUP)
        with trio.fail_after(10):
            while b"reloaded" not in (self.home / "hub.log").read_bytes():
                await trio.sleep(0.05)

    def hub_log(self) -> str:
        return (self.home / "hub.log").read_text(encoding="utf-8")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with trio.open_nursery() as nursery:
        world = World(tmp_path / "keystore", nursery)
        try:
            await world.start_hub()
            yield world
        finally:
            with trio.CancelScope(shield=True):
                await world.stop()
            nursery.cancel_scope.cancel()


async def _session_pair(world: World) -> tuple[Agent, Agent]:
    api, db = await world.agent("api"), await world.agent("db")
    await api.ok("join", session="orders", create=True)
    await db.ok("join", session="orders")
    await api.ok("set", session="orders", key="secret-var", value=SECRET + "-VALUE")
    await api.ok("send", session="orders", data=SECRET + "-1")
    await db.event(event="message", data=SECRET + "-1")
    return api, db


async def test_an_outsider_receives_nothing_of_a_session_whatever_it_sends(world: World) -> None:
    api, db = await _session_pair(world)
    api_key = world.store.public_key("api")
    db_key = world.store.public_key("db")
    spy = await world.agent("spy", raw=True)
    # Well-formed requests about a session it is not in: each gets an error.
    forged = [
        pack(Op.HELLO, VERSION),
        pack(Op.JOIN, 1, "orders", False),
        pack(Op.JOIN, 2, "orders", True),
        pack(Op.JOIN, 3, "Orders", True),
        pack(Op.JOIN, 4, "orders/x", True),
        pack(Op.JOIN, 5, "lobby", True),  # allowed: now it is a member of something
        pack(Op.SEND, 6, "orders", None, b"spy broadcast"),
        *[pack(Op.SEND, 10 + i, "orders", i, b"spy direct") for i in range(1, 6)],
        *[pack(Op.SEND, 20 + i, "lobby", i, b"spy direct") for i in range(1, 6)],
        pack(Op.SET, 30, "orders", "secret-var", b"overwritten", None),
        *[pack(Op.REMOVE, 40 + i, "orders", i, "spy") for i in range(1, 6)],
        pack(Op.CLOSE, 50, "orders", "spy"),
        pack(Op.LEAVE, 51, "orders"),
        pack(Op.LEAVE, 52, "lobby"),
    ]
    await spy.ok("send_raw", hex=b"".join(forged).hex())
    expected_answers = len(forged)  # WELCOME, then one answer per request
    with trio.fail_after(10):
        while len(spy.raw_messages()) < expected_answers:
            await trio.sleep(0.02)
    answers = spy.raw_messages()
    assert answers[0][0] == Op.WELCOME
    by_rid = {answer[1]: answer for answer in answers[1:]}
    assert by_rid[5][0] == Op.OK  # the lobby join, the only thing it may do,
    assert by_rid[52][0] == Op.OK  # and leaving it again;
    spy_id = by_rid[5][2][0]
    # even talking to itself there needs content sealed in an epoch it is in.
    assert by_rid[20 + spy_id][2] == ErrorCode.SEALING
    refusals = [answer for rid, answer in by_rid.items() if rid not in (5, 52)]
    assert all(answer[0] == Op.ERROR for answer in refusals)
    codes = {answer[2] for answer in refusals}
    assert codes <= {
        ErrorCode.ACCESS_DENIED,
        ErrorCode.NOT_MEMBER,
        ErrorCode.NO_SUCH_MEMBER,
        ErrorCode.SEALING,
    }
    # Whether "orders" exists is not revealed: the same answer as for a name that does not.
    assert by_rid[1][3].replace("'orders'", "X") == by_rid[3][3].replace("'Orders'", "X")

    # Malformed requests end the connection; each is tried on a fresh one.
    malformed = [
        pack(Op.MESSAGE, "orders", 1, 1, b"a hub's message, from a client", False),
        pack(Op.SEND, 60, "orders", None, b"forged sender", 1),
        pack(Op.JOIN, 61, "orders\x00", True),
        pack(Op.JOIN, 62, "orders", 1),
        b"\xff\x00\x13garbage",
    ]
    for request in malformed:
        spy = await world.agent("spy", raw=True)
        await spy.ok("send_raw", hex=(pack(Op.HELLO, VERSION) + request).hex())
        closed = await _closed(spy)
        assert "(code 4)" in closed, closed  # PROTOCOL_VIOLATION

    await api.ok("send", session="orders", data=SECRET + "-2")
    await db.event(event="message", data=SECRET + "-2", sender="api")
    await trio.sleep(0.3)  # anything misdirected would have arrived by now
    assert len(world.raw_agents) == 1 + len(malformed)
    for agent in world.raw_agents:
        seen = agent.raw_bytes()
        assert SECRET.encode() not in seen
        assert b"secret-var" not in seen
        assert api_key not in seen
        assert db_key not in seen
    # The session is untouched: the variable kept its value, both members remain.
    db_records = db.records
    assert not any(r.get("event") in ("left", "ended") for r in db_records)
    assert not any(
        r.get("data") in ("spy broadcast", "spy direct", "overwritten") for r in db_records
    )


async def _closed(agent: Agent) -> str:
    line = await agent.wait_for(lambda line: '"closed"' in line)
    text: str = json.loads(line)["closed"]
    return text


async def test_leaving_removal_and_disconnection_stop_delivery_at_once(world: World) -> None:
    api, db = await _session_pair(world)
    cache = await world.agent("cache")
    await cache.ok("join", session="orders")
    for agent in (api, db, cache):
        await agent.ok("join", session="orders/fence", create=True)

    async def fence(*agents: Agent, tag: str) -> None:
        """Everything the hub sent before this point has reached ``agents``."""
        await api.ok("send", session="orders/fence", data=tag)
        for agent in agents:
            await agent.event(event="message", session="orders/fence", data=tag)

    # db leaves: a message sent after its LEAVE was answered never reaches it.
    await db.ok("leave", session="orders")
    await api.ok("send", session="orders", data=SECRET + "-after-leave")
    await cache.event(event="message", data=SECRET + "-after-leave")
    await fence(db, tag="fence-1")

    # A policy reload takes the cache's rights in "orders" away: it is out at once,
    # though still connected (it gets the fence through "orders/fence").
    await world.reload_hub(
        POLICY.replace(
            'sessions = ["orders", "orders/*"]\nrights = ["join"',
            'sessions = ["orders/*"]\nrights = ["join"',
        )
    )
    ended = await cache.event(event="ended", session="orders")
    assert ended["error"] == "SessionClosed"
    assert "no longer grants" in ended["message"]
    await api.ok("send", session="orders", data=SECRET + "-after-reload")
    await fence(db, cache, tag="fence-2")

    # A reload that admits the cache no more disconnects it.
    await world.reload_hub(POLICY.replace('names = ["cache"]', 'names = ["nobody"]'))
    ended = await cache.event(event="ended", session="orders/fence")
    assert ended["error"] == "BrokenResourceError"

    # A member that dies is gone from the session for everyone else.
    db.process.kill()
    left = await api.event(event="left", session="orders/fence", member="db")
    assert left["event"] == "left"
    await api.ok("send", session="orders", data=SECRET + "-after-kill")

    for agent, tags in ((db, ("after-leave", "after-reload", "after-kill")),
                        (cache, ("after-reload", "after-kill"))):  # fmt: skip
        received = [r.get("data", "") for r in agent.records]
        assert not any(received_data.endswith(tag) for received_data in received for tag in tags)
    assert any(r.get("data") == SECRET + "-after-leave" for r in cache.records)


async def test_a_member_cannot_send_as_another(world: World) -> None:
    api, db = await _session_pair(world)
    api_id = (await api.ok("send", session="orders", data="from api"))["id"][1]
    forger = await world.agent("forger", raw=True)
    await forger.ok(
        "send_raw", hex=(pack(Op.HELLO, VERSION) + pack(Op.JOIN, 1, "orders", False)).hex()
    )
    with trio.fail_after(10):
        while len(forger.raw_messages()) < 2:  # WELCOME, and the JOIN's answer
            await trio.sleep(0.02)
    assert forger.raw_messages()[1][0] == Op.OK
    # A SEND that names a sender is not the protocol: the hub hangs up.
    await forger.ok("send_raw", hex=pack(Op.SEND, 2, "orders", None, b"as api", api_id).hex())
    assert "(code 4)" in await _closed(forger)
    # It never entered an epoch, so the members never saw it join, nor leave.
    assert not [r for r in db.records if r.get("member") == "forger"]
    # A forged message id (a SEND answer's number) is only ever an answer;
    # and content that its sender did not seal in the session's epoch is not
    # relayed at all.
    forger = await world.agent("forger", raw=True)
    await forger.ok(
        "send_raw",
        hex=(pack(Op.HELLO, VERSION) + pack(Op.JOIN, 1, "orders", False)
             + pack(Op.SEND, api_id, "orders", None, b"plain send")).hex(),
    )  # fmt: skip
    with trio.fail_after(10):
        while len(forger.raw_messages()) < 3:
            await trio.sleep(0.02)
    refused = forger.raw_messages()[2]
    assert refused[:3] == [Op.ERROR, api_id, ErrorCode.SEALING]
    await api.ok("send", session="orders", data="after the forger")
    await db.event(event="message", data="after the forger")
    assert not [r for r in db.records if r.get("data") == "plain send"]
    from_api = [r for r in db.records if r.get("event") == "message" and r["sender"] == "api"]
    assert [r["data"] for r in from_api] == [SECRET + "-1", "from api", "after the forger"]
    assert all(bytes.fromhex(r["sender_key"]) == world.store.public_key("api") for r in from_api)


async def test_revoked_expired_and_unknown_peers_are_refused_at_connect(world: World) -> None:
    for name, reason in (
        ("revoked", "has been revoked"),
        ("expired", "expired at"),
        ("stranger", "is not pinned and showed no certificate"),
    ):
        agent = await world.agent(name, connect=False)
        reply = await agent.do("connect")
        assert reply.get("error") == "PeerRejected", reply
        assert reason in reply["message"]
        assert "(code 1)" in reply["message"]
    # Revoking a connected member and reloading disconnects it.
    api, db = await _session_pair(world)
    world.store.revoke_key(world.store.public_key("db"))
    await world.reload_hub(POLICY)
    ended = await db.event(event="ended", session="orders")
    assert ended["error"] == "BrokenResourceError"
    assert "revoked" in ended["message"]
    await api.event(event="left", member="db")
    assert "no longer trusted" in world.hub_log()
