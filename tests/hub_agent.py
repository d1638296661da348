"""A hub client in its own process, driven by JSON lines, for the confinement tests.

Run as ``python -m tests.hub_agent CONFIG`` where CONFIG is JSON with
``home`` (a keystore), ``identity``, ``port``, ``raw`` (bool) and
optionally ``record`` (bool). Commands
arrive on stdin, one JSON object per line; everything the agent learns goes
to stdout, one JSON object per line:

* ``{"reply": op, "ok": true, ...}`` or ``{"reply": op, "error": type, "message": text}``
* ``{"event": kind, "session": name, ...}`` for each session event, and
  ``{"event": "ended", ...}`` when a session's iteration stops.
* raw mode: the agent speaks bytes, not the API: ``send_raw`` writes the
  given hex over its SecureStream, and each received plaintext chunk is
  reported as ``{"raw": hex}``, the end as ``{"closed": text}``.
* record mode (an API agent): every plaintext chunk the hub sends after its
  WELCOME is reported as ``{"recv": hex}``, as the client's hub-protocol
  reader takes it in: what the hub relayed to this member, byte for byte.
* a member that keeps its keys: ``hoard`` copies the keys its session holds
  now (the epoch's, the roster, the membership key), as whoever controls
  the process could, before the client erases them; ``try_open`` is then
  handed hub messages (hex) and tries every commit and content in them with
  the session's own (by then erased) sealing state, with a fresh one for the
  same membership, and with the hoard. It reports what opened.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keystore import Keystore
from securesess import SecureStream, open_secure_stream
from securesess.sessions.client import HubConnection, Session, connect_hub
from securesess.sessions.credentials import Credentials
from securesess.sessions.events import Event, MemberJoined, MemberLeft, Message
from securesess.sessions.sealing import EpochKeys, GroupState, Roster, SealedHeader, SealingError
from securesess.sessions.wire import MAX_ANSWER, MessageReader, Op
from tests import sealing_spec as spec


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _describe(event: Event) -> dict[str, Any]:
    if isinstance(event, Message):
        return {
            "event": "message",
            "id": [event.id.seq, event.id.sender],
            "sender": event.sender.name,
            "sender_key": event.sender.public_key.hex(),
            "data": event.data.decode("latin-1"),
            "direct": event.direct,
        }
    if isinstance(event, MemberJoined | MemberLeft):
        kind = "joined" if isinstance(event, MemberJoined) else "left"
        return {"event": kind, "member": event.member.name, "id": event.member.id}
    return {"event": "variable", "key": event.key, "value": event.value.decode("latin-1")}


async def _watch(session: Session) -> None:
    try:
        async for event in session:
            emit(session=session.name, **_describe(event))
        emit(event="ended", session=session.name, error=None, message="left")
    except Exception as exc:
        emit(event="ended", session=session.name, error=type(exc).__name__, message=str(exc))


class _RecordingReader(MessageReader):
    """The client's reader of hub messages, reporting every byte it is fed."""

    __slots__ = ()

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[list[Any]]:
        emit(recv=bytes(data).hex())
        return super().feed(data)


@dataclass
class _Hoard:
    """What a member that keeps its keys holds of one epoch."""

    member: int
    secret: bytes
    keys: EpochKeys
    roster: Roster
    membership: X25519PrivateKey


def _hoard(session: Session) -> _Hoard:
    group = session._sealing.group
    keys, membership, roster = group._keys, group._membership, group.roster
    assert keys is not None
    assert keys._secret is not None
    assert membership is not None
    assert roster is not None
    # A copy: the client erases its own when the membership ends.
    copy = EpochKeys(session.name, keys.epoch, keys._secret, keys.transcript)
    return _Hoard(session.me.id, bytes(keys._secret), copy, roster, membership)


def _try_open(
    name: str, session: Session, hoard: _Hoard, fresh: GroupState, data: bytes
) -> dict[str, Any]:
    """Every way this process has to read ``data`` (hub messages), tried."""
    kept = session._sealing.group
    opened: list[str] = []
    refusals: Counter[str] = Counter()
    commits = contents = 0
    # The hoarded epoch's keys, and the hoarded secret under the context of
    # every epoch a commit in ``data`` begins (public: the hub relays the
    # commits), should a new epoch's secret be the old one.
    schedules = [hoard.keys]
    for message in MessageReader(MAX_ANSWER).feed(data):
        if message[0] == Op.EPOCH:
            commits += 1
            commit = message[4]
            for state in (kept, fresh):
                try:
                    state.apply_commit(commit)
                    opened.append(f"commit of epoch {state.epoch}")
                except SealingError as error:
                    refusals[type(error).__name__] += 1
            if spec.opens_a_wrap(commit, hoard.membership):
                opened.append("a wrap")
            else:
                refusals["no wrap opens"] += 1
            parsed = spec.parse_commit(commit)
            after = spec.transcript_after(parsed.previous, commit)
            schedules.append(EpochKeys(name, parsed.epoch, hoard.secret, after))
            continue
        if message[0] not in (Op.MESSAGE, Op.VARIABLE, Op.VALUE):
            continue
        contents += 1
        sealed = message[4]
        for attempt in (kept.open, kept.open_value, fresh.open, fresh.open_value):
            try:
                opened.append(attempt(sealed).body.decode("latin-1"))
            except SealingError as error:
                refusals[type(error).__name__] += 1
        header, start = SealedHeader.decode(sealed)
        for keys in schedules:
            aad = spec.CONTENT + keys.context + sealed[:start]
            try:
                cipher, nonce = keys.sender(header.sender), keys.nonce(header.generation)
                body = cipher.decrypt(nonce, sealed[start:-64], aad)
                if message[0] == Op.MESSAGE and message[5]:
                    body = spec.HPKE.decrypt(body, hoard.membership, info=aad)
                opened.append(body.decode("latin-1"))
            except InvalidTag:
                refusals["InvalidTag"] += 1
    return {"commits": commits, "contents": contents, "opened": opened, "refusals": refusals}


async def _api_agent(
    config: dict[str, Any], commands: trio.abc.ReceiveChannel[dict[str, Any]]
) -> None:
    store = Keystore.open(config["home"])
    identity, trust = store.identity(config["identity"]), store.trust()
    hub: HubConnection | None = None
    sessions: dict[str, Session] = {}
    hoards: dict[str, _Hoard] = {}
    async with trio.open_nursery() as nursery:
        async for command in commands:
            op = command["op"]
            try:
                if op == "connect":
                    hub = await nursery.start(_hold_connection, config["port"], identity, trust)
                    assert hub is not None
                    if config.get("record"):
                        # After the WELCOME, which the reader before took in whole.
                        hub._reader = _RecordingReader(MAX_ANSWER)
                    assert hub.me is not None
                    emit(reply=op, ok=True, name=hub.me.name)
                    continue
                assert hub is not None, "connect first"
                if op == "join":
                    session = await hub.join(
                        command["session"], create=command.get("create", False)
                    )
                    sessions[session.name] = session
                    nursery.start_soon(_watch, session)
                    emit(reply=op, ok=True, member=session.me.id, members=len(session.members))
                elif op == "send":
                    data = command["data"].encode("latin-1")
                    message_id = await sessions[command["session"]].send(data, to=command.get("to"))
                    emit(reply=op, ok=True, id=[message_id.seq, message_id.sender])
                elif op == "set":
                    value = command["value"].encode("latin-1")
                    version = await sessions[command["session"]].set(command["key"], value)
                    emit(reply=op, ok=True, version=version)
                elif op == "leave":
                    await sessions[command["session"]].leave()
                    emit(reply=op, ok=True)
                elif op == "remove":
                    await sessions[command["session"]].remove(command["member"], "removed")
                    emit(reply=op, ok=True)
                elif op == "get":
                    variable = sessions[command["session"]].get(command["key"])
                    value = None if variable is None else variable.value.decode("latin-1")
                    emit(reply=op, ok=True, value=value)
                elif op == "epoch":
                    group = sessions[command["session"]]._sealing.group
                    emit(reply=op, ok=True, epoch=group.epoch, roster=sorted(group.roster or ()))
                elif op == "hoard":
                    hoard = hoards[command["session"]] = _hoard(sessions[command["session"]])
                    emit(reply=op, ok=True, epoch=hoard.keys.epoch)
                elif op == "try_open":
                    name = command["session"]
                    session, hoard = sessions[name], hoards[name]
                    fresh = Credentials(identity, trust).group(name, hoard.member)
                    data = bytes.fromhex(command["hex"])
                    emit(reply=op, ok=True, **_try_open(name, session, hoard, fresh, data))
                else:
                    raise ValueError(f"unknown command {op!r}")
            except Exception as exc:
                emit(reply=op, error=type(exc).__name__, message=str(exc))
        nursery.cancel_scope.cancel()


async def _hold_connection(
    port: int, identity: Any, trust: Any, task_status: trio.TaskStatus[HubConnection]
) -> None:
    async with connect_hub("127.0.0.1", port, identity=identity, trust=trust, expect="hub") as hub:
        task_status.started(hub)
        await trio.sleep_forever()


async def _report_raw(stream: SecureStream) -> None:
    try:
        while data := await stream.receive_some():
            emit(raw=bytes(data).hex())
        emit(closed="end of stream")
    except trio.BrokenResourceError as exc:
        emit(closed=f"{exc}: {exc.__cause__}")


async def _raw_agent(
    config: dict[str, Any], commands: trio.abc.ReceiveChannel[dict[str, Any]]
) -> None:
    store = Keystore.open(config["home"])
    identity, trust = store.identity(config["identity"]), store.trust()
    stream: SecureStream | None = None
    async with trio.open_nursery() as nursery:
        async for command in commands:
            op = command["op"]
            try:
                if op == "connect":
                    stream = await open_secure_stream(
                        "127.0.0.1", config["port"], identity=identity, trust=trust, expect="hub"
                    )
                    nursery.start_soon(_report_raw, stream)
                elif op == "send_raw":
                    assert stream is not None, "connect first"
                    await stream.send_all(bytes.fromhex(command["hex"]))
                else:
                    raise ValueError(f"unknown command {op!r}")
                emit(reply=op, ok=True)
            except Exception as exc:
                emit(reply=op, error=type(exc).__name__, message=str(exc))
        nursery.cancel_scope.cancel()


async def main(config: dict[str, Any]) -> None:
    send, receive = trio.open_memory_channel[dict[str, Any]](100)

    async def read_commands() -> None:
        async with send:
            stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
            buffered = b""
            while chunk := await stdin.receive_some():
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if line.strip():
                        await send.send(json.loads(line))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_commands)
        agent = _raw_agent if config.get("raw") else _api_agent
        await agent(config, receive)
    emit(bye=True)


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
