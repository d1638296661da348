"""``securesess demo``: a hub, two services and an outsider, each its own process.

The demo builds a throwaway keystore with a CA, starts a hub, then runs an
"api" and a "db" service that meet in a session, exchange messages and a
session variable, and an outsider whose valid certificate the hub's policy
does not admit. Each process narrates what it did and learnt, each line
prefixed with the speaker.

The narration is in causal order: every party writes its lines to one pipe
that the coordinator reads, and says what it sends *before* it sends it, so
a line about a message received always comes after the sender's line about
sending it (each line is one write, shorter than the pipe's atomic size).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio

from keystore import Keystore, Peer, TrustStore
from securesess.constants import CloseCode
from securesess.errors import PeerRejected
from securesess.sessions.client import Session, connect_hub
from securesess.sessions.events import Member, MemberJoined, MemberLeft, Message, VariableChanged

SESSION: Final = "orders"
QUERY: Final = b"SELECT balance FROM accounts WHERE id = 42"
ANSWER: Final = b"balance: 1024.00"
POLICY: Final = f"""\
# Services may meet in the {SESSION!r} session; nobody else may connect.
[[rule]]
name = "services"
groups = ["services"]
sessions = ["{SESSION}"]
rights = ["create", "join", "send", "receive", "set"]
"""
# Who gets a certificate from the demo CA, with which groups.
PARTIES: Final = {"hub": (), "api": ("services",), "db": ("services",), "outsider": ("visitors",)}
_TIMEOUT: Final = 30.0
_WIDTH: Final = 9
LEGEND: Final = (
    "a message id SEQ@N is the session's event SEQ (the hub numbers every event of a"
    " session in one order, the same for all members), sent by member #N"
)


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securesess", *args]


def describe(peer: Peer | Member, trust: TrustStore | None = None) -> str:
    """``name (fingerprint)``, and what vouched for it when we know."""
    text = f"{peer.name} ({peer.fingerprint})"
    certificate = getattr(peer, "certificate", None)
    if certificate is not None and trust is not None:
        ca = next((n for n, key in trust.cas().items() if key == certificate.issuer), "?")
        text += f" by its certificate (serial {certificate.serial}) from CA {ca!r}"
    elif isinstance(peer, Peer) and trust is not None:
        text += " by its pinned key"
    if peer.groups:
        text += f", groups {', '.join(sorted(peer.groups))}"
    return text


def _member(member: Member) -> str:
    return f"{member.name} (member #{member.id}, {member.fingerprint})"


def setup(home: Path) -> list[str]:
    """Create the keystore and the policy; return what was made, for the narration."""
    store = Keystore.open(home)
    ca_key = store.init_ca("demo-ca", passphrase=None, valid_seconds=3600)
    lines = [f"created CA 'demo-ca' {Peer('demo-ca', ca_key).fingerprint} in {home}"]
    for name, groups in PARTIES.items():
        identity = store.issue_identity(
            name,
            ca="demo-ca",
            ca_passphrase=None,
            passphrase=None,
            groups=groups,
            valid_seconds=3600,
        )
        groups_text = f" in group {', '.join(groups)}" if groups else ""
        lines.append(f"issued {name}{groups_text}: key {identity.fingerprint}")
    (home / "policy.toml").write_text(POLICY, encoding="utf-8")
    lines.append(f"policy: only group 'services' may connect, and only to session {SESSION!r}")
    return lines


# -- the parties (each runs in its own process) ------------------------------------------


async def party(role: str, home: Path, port: int, echo: Callable[[str], None]) -> None:
    def say(line: str) -> None:
        echo(f"{role:<{_WIDTH}}{line}")

    store = Keystore.open(home)
    identity, trust = store.identity(role), store.trust()
    if role == "outsider":
        try:
            async with connect_hub("127.0.0.1", port, identity=identity, trust=trust, expect="hub"):
                raise RuntimeError("the hub let the outsider in")
        except PeerRejected as exc:
            code = CloseCode(exc.code).name.lower().replace("_", " ")
            say(f"refused at connect: {exc.reason} (close code {exc.code}: {code})")
        return
    async with connect_hub("127.0.0.1", port, identity=identity, trust=trust, expect="hub") as hub:
        say(f"authenticated the hub as {describe(hub.peer, trust)}")
        assert hub.me is not None
        say(f"the hub authenticated us as {describe(hub.me)}")
        async with await hub.join(SESSION, create=True) as session:
            rights = ", ".join(sorted(session.rights))
            say(
                f"joined session {SESSION!r} as member #{session.me.id} (rights: {rights}), "
                f"in epoch {session.epoch}: its keys are made by the members, never the hub"
            )
            await (_api if role == "api" else _db)(session, say)


async def _api(session: Session, say: Callable[[str], None]) -> None:
    if len(session.members) < 2:
        async for event in session:
            if isinstance(event, MemberJoined):
                say(f"sees {_member(event.member)} join")
                break
    # Said before it is done, so that no one's answer is printed first.
    say(f"sends the session a message: {QUERY.decode()!r}")
    await session.send(QUERY)
    say("sets variable 'currency' = 'EUR'")
    await session.set("currency", b"EUR")
    async for event in session:
        if isinstance(event, Message) and event.direct:
            sender = _member(event.sender)
            say(f"received direct message {event.id} from {sender}: {event.data.decode()!r}")
            break
    say(f"leaves session {SESSION!r}")


async def _db(session: Session, say: Callable[[str], None]) -> None:
    query: Message | None = None
    async for event in session:
        if isinstance(event, Message):
            query = event
            say(
                f"received message {event.id} from {_member(event.sender)}: {event.data.decode()!r}"
            )
        elif isinstance(event, VariableChanged):
            by = event.by.name if event.by is not None else "?"
            value = event.value.decode()
            say(f"sees variable {event.key!r} = {value!r} (version {event.version}, set by {by})")
            break
    assert query is not None
    say(f"sends a direct message to {query.sender.name} alone: {ANSWER.decode()!r}")
    await session.send(ANSWER, to=query.sender)
    async for event in session:
        if isinstance(event, MemberLeft):
            say(f"sees {_member(event.member)} leave ({event.reason})")
            break
    # Sealed only once a commit has left api out: api holds no key to it.
    await session.set("status", b"closed")
    say(f"sets variable 'status' = 'closed', sealed in epoch {session.epoch}, which api is not in")


# -- the coordinator ----------------------------------------------------------------------


async def _relay(narration: trio.lowlevel.FdStream, say: Callable[[str], None]) -> None:
    """Print the parties' lines in the order they wrote them, until every writer is gone."""
    buffered = b""
    async for chunk in narration:
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            say(line.decode("utf-8", "replace"))


async def _coordinate(home: Path, say: Callable[[str], None]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hub_command = _command(
        "hub", "--listen", "127.0.0.1:0", "--identity", "hub", "--policy",
        str(home / "policy.toml"), "--home", str(home), "--log-level", "error",
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        hub = await trio.lowlevel.open_process(hub_command, stdout=subprocess.PIPE, env=env)
        try:
            assert hub.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await hub.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the hub exited before it was listening")
                line += chunk
            text = line.decode().strip()
            say(f"{'hub':<{_WIDTH}}{text} (process {hub.pid})")
            match = re.match(r"listening on \S+:(\d+) ", text)
            if match is None:
                raise RuntimeError(f"the hub said {text!r}, not where it listens")
            port = match[1]
            say(f"{'legend':<{_WIDTH}}{LEGEND}")
            reader, writer = os.pipe()
            try:
                narration = trio.lowlevel.FdStream(reader)
            except BaseException:
                os.close(reader)
                os.close(writer)
                raise
            async with narration, trio.open_nursery() as relaying:
                relaying.start_soon(_relay, narration, say)
                try:
                    for group in (("api", "db"), ("outsider",)):
                        async with trio.open_nursery() as parties:
                            for role in group:
                                parties.start_soon(_run_party, role, home, port, env, writer)
                finally:
                    os.close(writer)  # the relay ends once the parties' copies are gone too
            hub.send_signal(signal.SIGTERM)
            with trio.move_on_after(5):
                # What it relayed, as it says when it stops.
                async for chunk in hub.stdout:
                    for text in chunk.decode("utf-8", "replace").splitlines():
                        say(f"{'hub':<{_WIDTH}}{text}")
        finally:
            hub.send_signal(signal.SIGTERM)
            with trio.move_on_after(5):
                await hub.wait()
            if hub.returncode is None:
                hub.kill()
            nursery.cancel_scope.cancel()


async def _run_party(role: str, home: Path, port: str, env: dict[str, str], narration: int) -> None:
    command = _command("demo", "--party", role, "--home", str(home), "--port", port)
    process = await trio.lowlevel.open_process(command, stdout=narration, env=env)
    try:
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    if process.returncode != 0:
        raise RuntimeError(f"the {role} process failed (exit status {process.returncode})")


def run(say: Callable[[str], None] = print) -> None:
    """Run the whole demo, reporting each step through ``say``."""
    say("securesess demo: a hub, an api and a db service, and an outsider, each a process")
    with tempfile.TemporaryDirectory(prefix="securesess-demo-") as directory:
        home = Path(directory)
        os.chmod(home, 0o700)
        for line in setup(home):
            say(f"{'setup':<{_WIDTH}}{line}")

        async def main() -> None:
            with trio.fail_after(_TIMEOUT):
                await _coordinate(home, say)

        trio.run(main)
    say("done: the keystore and its keys are deleted")
