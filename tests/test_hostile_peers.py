"""What a hostile peer or member cannot make the stream and session layers do.

Each test states a promise of docs/protocol.md or SECURITY.md and plays the
attacker against the real objects: a sans-IO Connection fed by hand, a
handshake admission with Trio streams and a loopback socket, serve_secure
on loopback, or the session core.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from keystore import Identity, Peer, TrustStore
from securesess.errors import HandshakeFailed, NegotiationFailed
from securesess.policy import Policy, Right, Rule
from securesess.sessions.core import SessionCore
from securesess.sessions.outcome import Client, Limits, Outcome
from securesess.sessions.requests import Join, Set
from securesess.sessions.wire import ErrorCode, Op
from securesess.stream.admission import handshake_first
from securesess.stream.authenticate import Authenticator
from securesess.stream.connection import Connection
from securesess.stream.events import Data, EndOfStream, HandshakeComplete, PeerClosed
from securesess.stream.frames import frame
from securesess.stream.secure_stream import SecureStream
from securesess.stream.serve import serve_secure
from tests.sealed_core import SealedCore

# -- helpers ------------------------------------------------------------------------


def _pinned() -> tuple[Identity, Identity, TrustStore, TrustStore]:
    server, client = Identity.generate("server"), Identity.generate("client")
    server_trust, client_trust = TrustStore(), TrustStore()
    server_trust.add_peer("client", client.public_key)
    client_trust.add_peer("server", server.public_key)
    return server, client, server_trust, client_trust


def _open_pair() -> tuple[Connection, Connection]:
    """Two sans-IO connections, handshaken with each other by hand."""
    server_id, client_id, server_trust, client_trust = _pinned()
    client = Connection(
        identity=client_id, authenticator=Authenticator(client_trust, expect="server")
    )
    server = Connection(
        identity=server_id, authenticator=Authenticator(server_trust), server_side=True
    )
    client.start_handshake()
    server.start_handshake()
    done: set[Connection] = set()
    while len(done) < 2:
        for me, other in ((client, server), (server, client)):
            if me in done:
                continue
            event = me.next_event()
            if isinstance(event, HandshakeComplete):
                done.add(me)
            if out := me.data_to_send():
                other.receive_data(out)
    return client, server


def _events_until_quiet(connection: Connection) -> list[object]:
    events: list[object] = []
    while True:
        try:
            event = connection.next_event()
        except Exception as exc:  # the connection has ended: what we want
            events.append(exc)
            return events
        if event is None:
            return events
        events.append(event)


# -- the sans-IO connection -----------------------------------------------------------


def test_the_connection_hands_out_no_data_behind_the_peers_end() -> None:
    """protocol.md §4: after END a receiver reads nothing more from that
    direction; frames that follow END are discarded unread."""
    client, server = _open_pair()
    writer = client._writer  # the peer, misbehaving: records after its END
    assert writer is not None
    wire = bytes(client.send_eof()) + bytes(writer.seal_data(memoryview(b"smuggled after END")))
    server.receive_data(wire)
    events = _events_until_quiet(server)
    assert events[0] == EndOfStream()
    assert not any(isinstance(event, Data) for event in events), events


def test_the_connection_hands_out_no_data_behind_the_peers_close() -> None:
    """protocol.md §4: CLOSE aborts both directions; the receiver stops."""
    client, server = _open_pair()
    writer = client._writer
    assert writer is not None
    wire = bytes(client.send_close(6, "gone")) + bytes(
        writer.seal_data(memoryview(b"smuggled after CLOSE"))
    )
    server.receive_data(wire)
    events = _events_until_quiet(server)
    assert events[0] == PeerClosed(6, "gone")
    assert not any(isinstance(event, Data) for event in events), events


def test_a_name_over_255_bytes_that_arrives_whole_gets_no_answer() -> None:
    """protocol.md §2: a first frame longer than 255 bytes is closed on without
    an answer, judged by its length field: it is not taken as a name, not
    answered with the allowed list, and not kept in the error that is logged."""
    server_id, _, server_trust, _ = _pinned()
    server = Connection(
        identity=server_id, authenticator=Authenticator(server_trust), server_side=True
    )
    server.start_handshake()
    server.receive_data(frame(b"N" * 60_000))
    with pytest.raises(HandshakeFailed) as failure:
        server.next_event()
    assert not isinstance(failure.value, NegotiationFailed)
    assert server.data_to_send() == b""


# -- admission ------------------------------------------------------------------------


async def test_a_displaced_handshake_whose_first_message_just_arrived_is_refused_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At the handshake cap a newcomer displaces the oldest unanswered handshake
    of the source holding the most. When that handshake's first flight has
    arrived (its task is already woken) as the newcomer is admitted, it answers
    before the cancellation lands; it is then cut without a busy answer, and
    nothing is logged as an unexpected error."""
    server_id, client_id, server_trust, client_trust = _pinned()
    serve_one = handshake_first(
        lambda stream: trio.sleep_forever(),
        max_concurrent_handshakes=2,
        max_handshakes_per_source=None,
        handshake_rate=None,
    )
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    newcomer_client = await trio.open_tcp_stream("127.0.0.1", port)
    newcomer = SecureStream(
        await listeners[0].accept(),
        identity=server_id,
        trust=server_trust,
        server_side=True,
        handshake_timeout=0.5,
    )
    caplog.set_level(logging.INFO, logger="securesess")
    async with trio.open_nursery() as nursery:
        clients = []
        for _ in range(2):  # two stalled handshakes from one source (no socket: None)
            client_end, server_end = trio.testing.memory_stream_pair()
            clients.append(client_end)
            nursery.start_soon(
                serve_one,
                SecureStream(server_end, identity=server_id, trust=server_trust, server_side=True),
            )
            await trio.testing.wait_all_tasks_blocked()  # the first is the oldest
        offer = Connection(
            identity=client_id, authenticator=Authenticator(client_trust, expect="server")
        )
        offer.start_handshake()
        # The oldest one's first flight arrives: its task is woken, not yet run...
        await clients[0].send_all(offer.data_to_send())
        # ...when a newcomer from a loopback address takes its slot.
        await serve_one(newcomer)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    await newcomer_client.aclose()
    await listeners[0].aclose()
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, [r.getMessage() for r in unexpected]


# -- serving --------------------------------------------------------------------------


async def _serve_nothing(stream: SecureStream) -> None:
    await trio.sleep_forever()


async def test_an_offered_protocol_name_cannot_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A protocol name is any ASCII, control characters included; a server logs
    a failed negotiation with it, and a stranger must not write lines of its
    own into that log (containment makes a peer's CLOSE reason printable for
    the same reason)."""
    server_id, _, server_trust, _ = _pinned()
    caplog.set_level(logging.INFO, logger="securesess")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(
                serve_secure,
                _serve_nothing,
                0,
                identity=server_id,
                trust=server_trust,
                host="127.0.0.1",
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        attacker = await trio.open_tcp_stream("127.0.0.1", port)
        name = b"Noise_XX\nCRITICAL securesess: admin key rotated, trust store reset"
        await attacker.send_all(frame(name) + frame(bytes(32)))
        while await attacker.receive_some(65536):
            pass
        await attacker.aclose()
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records if r.name == "securesess"]
    assert any("admin key rotated" in m for m in messages)
    assert not any("\n" in m for m in messages), messages


# -- the session core ---------------------------------------------------------------


def _peer(name: str, number: int) -> Peer:
    return Peer(name, bytes([number]) * 32)


def _answer(data: bytes | None) -> list[Any]:
    assert data is not None
    message: list[Any] = msgpack.unpackb(data, raw=False)
    return message


def test_a_member_that_may_set_but_not_receive_cannot_tell_which_keys_exist() -> None:
    """SECURITY.md: with set but not receive, a member learns how much the
    variables hold in all, "nothing else about them". At the variable count
    limit (which it can reach itself), a SET of an existing key and one of an
    absent key get the same answer."""
    every = frozenset(Right)
    setter = frozenset({Right.JOIN, Right.SEND, Right.SET})
    policy = Policy(
        [
            Rule(name="alice", sessions=("*",), rights=every, names=frozenset({"alice"})),
            Rule(name="eve", sessions=("*",), rights=setter, names=frozenset({"eve"})),
        ]
    )
    core = SealedCore(SessionCore(policy, limits=Limits(max_variables=2)))
    alice = core.core.connect(_peer("alice", 1))
    eve = core.core.connect(_peer("eve", 2))

    def set_(client: Client, rid: int, key: str, value: bytes) -> Outcome:
        return core.handle(
            client, Set(rid, "lobby", key, core.seal(client, "lobby", value, key=key), None)
        )

    core.handle(alice, Join(1, "lobby", True))
    set_(alice, 2, "payroll-2027", b"x")
    core.handle(eve, Join(3, "lobby", False))
    set_(eve, 4, "mine", b"y")  # the count limit, reached by eve
    answers = {}
    for rid, guess in enumerate(["payroll-2027", "payroll-2028"], 10):
        answer = _answer(set_(eve, rid, guess, b"z").reply)
        answers[guess] = (answer[0], answer[2])
    assert answers["payroll-2027"] == answers["payroll-2028"], answers
    assert answers["payroll-2028"] == (Op.ERROR, ErrorCode.LIMIT_EXCEEDED)


def test_a_member_that_may_receive_still_overwrites_at_the_limits() -> None:
    """A member that sees the variables learns nothing new from the limits, so
    it may still overwrite an existing key when no new one would fit."""
    policy = Policy([Rule(name="alice", sessions=("*",), rights=frozenset(Right))])
    # The hub counts what it holds: a key and its sealed value, 108 bytes
    # more than the value for a one-byte key.
    limits = Limits(max_variables=1, max_variable_bytes=120)
    core = SealedCore(SessionCore(policy, limits=limits))
    alice = core.core.connect(_peer("alice", 1))

    def set_(rid: int, key: str, value: bytes) -> list[Any]:
        sealed = core.seal(alice, "lobby", value, key=key)
        return _answer(core.handle(alice, Set(rid, "lobby", key, sealed, None)).reply)

    core.handle(alice, Join(1, "lobby", True))
    assert set_(2, "k", b"1234567")[0] == Op.OK
    assert set_(3, "k", b"7654321")[0] == Op.OK
    refused = set_(4, "j", b"")
    assert (refused[0], refused[2]) == (Op.ERROR, ErrorCode.LIMIT_EXCEEDED)
