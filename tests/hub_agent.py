"""A hub client in its own process, driven by JSON lines, for the confinement tests.

Run as ``python -m tests.hub_agent CONFIG`` where CONFIG is JSON with
``home`` (a keystore), ``identity``, ``port`` and ``raw`` (bool). Commands
arrive on stdin, one JSON object per line; everything the agent learns goes
to stdout, one JSON object per line:

* ``{"reply": op, "ok": true, ...}`` or ``{"reply": op, "error": type, "message": text}``
* ``{"event": kind, "session": name, ...}`` for each session event, and
  ``{"event": "ended", ...}`` when a session's iteration stops.
* raw mode: the agent speaks bytes, not the API: ``send_raw`` writes the
  given hex over its SecureStream, and each received plaintext chunk is
  reported as ``{"raw": hex}``, the end as ``{"closed": text}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import trio

from keystore import Keystore
from securesess import SecureStream, open_secure_stream
from securesess.sessions.client import HubConnection, Session, connect_hub
from securesess.sessions.events import Event, MemberJoined, MemberLeft, Message


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


async def _api_agent(
    config: dict[str, Any], commands: trio.abc.ReceiveChannel[dict[str, Any]]
) -> None:
    store = Keystore.open(config["home"])
    identity, trust = store.identity(config["identity"]), store.trust()
    hub: HubConnection | None = None
    sessions: dict[str, Session] = {}
    async with trio.open_nursery() as nursery:
        async for command in commands:
            op = command["op"]
            try:
                if op == "connect":
                    hub = await nursery.start(_hold_connection, config["port"], identity, trust)
                    assert hub is not None
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
