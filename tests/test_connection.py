"""The sans-IO connection protocol, two Connection objects wired in memory: no Trio.

Each test plays both sides by hand: what one side's ``data_to_send()`` (or a
sealed record) returns is what the other side's ``receive_data()`` gets, in
whatever pieces the test chooses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore import Identity, Peer, TrustStore, sign_certificate
from securesess.constants import CloseCode
from securesess.errors import (
    HandshakeFailed,
    NegotiationFailed,
    PeerNotTrusted,
    ProtocolViolation,
    RecordAuthenticationFailed,
    TruncatedStream,
)
from securesess.stream.authenticate import Authenticator
from securesess.stream.connection import BUSY_ANSWER, Connection
from securesess.stream.events import (
    Data,
    EndOfStream,
    Event,
    HandshakeComplete,
    NoCommonProtocol,
    PeerClosed,
    Refused,
)
from securesess.stream.frames import frame
from securesess.stream.records import MAX_BODY

PSK = bytes(range(32))


@dataclass
class Side:
    """One connection and what it reported: its events, or the error that ended it."""

    connection: Connection
    events: list[Event] = field(default_factory=list)
    error: Exception | None = None

    @property
    def ended(self) -> bool:
        last = self.events[-1] if self.events else None
        return self.error is not None or isinstance(last, Refused | NoCommonProtocol)

    def run(self) -> None:
        """Take every event the bytes received so far allow."""
        while not self.ended:
            try:
                event = self.connection.next_event()
            except Exception as exc:
                self.error = exc
                return
            if event is None:
                return
            self.events.append(event)


@dataclass
class World:
    client_identity: Identity = field(default_factory=lambda: Identity.generate("client"))
    server_identity: Identity = field(default_factory=lambda: Identity.generate("server"))
    client_trust: TrustStore = field(default_factory=TrustStore)
    server_trust: TrustStore = field(default_factory=TrustStore)

    def __post_init__(self) -> None:
        self.client_trust.add_peer("server", self.server_identity.public_key)
        self.server_trust.add_peer("client", self.client_identity.public_key, groups=["ops"])

    def client(
        self,
        *,
        protocol: str | None = None,
        psk: bytes | None = None,
        expect: bytes | str | None = None,
    ) -> Connection:
        return Connection(
            identity=self.client_identity,
            authenticator=Authenticator(self.client_trust, expect=expect),
            protocol=protocol,
            psk=psk,
        )

    def server(
        self,
        *,
        protocol: list[str] | None = None,
        psk: bytes | None = None,
        authorize: Callable[[Peer], str | None] | None = None,
    ) -> Connection:
        return Connection(
            identity=self.server_identity,
            authenticator=Authenticator(self.server_trust, authorize=authorize),
            server_side=True,
            protocol=protocol,
            psk=psk,
        )


def play(client: Connection, server: Connection, *, piece: int | None = None) -> tuple[Side, Side]:
    """Run both handshakes, moving bytes ``piece`` at a time (all at once by default)."""
    sides = Side(client), Side(server)
    client.start_handshake()
    server.start_handshake()
    moved = True
    while moved:
        moved = False
        for me, other in (sides, sides[::-1]):
            me.run()
            out = me.connection.data_to_send()
            if out and not other.ended:
                moved = True
                step = piece or len(out)
                for start in range(0, len(out), step):
                    other.connection.receive_data(out[start : start + step])
                    other.run()
    return sides


def complete(sides: tuple[Side, Side]) -> tuple[HandshakeComplete, HandshakeComplete]:
    client, server = sides
    assert (client.error, server.error) == (None, None)
    assert isinstance(client.events[0], HandshakeComplete)
    assert isinstance(server.events[0], HandshakeComplete)
    return client.events[0], server.events[0]


# -- handshakes --------------------------------------------------------------------


def test_xx_authenticates_both_sides_and_agrees_on_the_session() -> None:
    world = World()
    client, server = world.client(), world.server()
    on_client, on_server = complete(play(client, server))
    assert on_client.peer.name == "server"
    assert on_server.peer.name == "client"
    assert on_server.peer.groups == frozenset({"ops"})
    assert client.handshake_hash == server.handshake_hash is not None
    assert client.protocol is not None
    assert client.protocol.name == "Noise_XX_25519_AESGCM_SHA256"
    assert client.confirmed
    assert server.confirmed


def test_ik_needs_the_server_key_and_its_responder_is_confirmed_by_a_record() -> None:
    world = World()
    with pytest.raises(ValueError, match="needs the server's key"):
        world.client(protocol="Noise_IK_25519_ChaChaPoly_BLAKE2s")
    client = world.client(protocol="Noise_IK_25519_ChaChaPoly_BLAKE2s", expect="server")
    server = world.server()
    complete(play(client, server))
    assert not server.confirmed  # message 1 could have been replayed
    server.receive_data(client.send_data(memoryview(b"live")))
    assert server.next_event() == Data(bytearray(b"live"))
    assert server.confirmed


@pytest.mark.parametrize(
    "protocol", ["Noise_XXpsk3_25519_AESGCM_SHA256", "Noise_IKpsk1_25519_AESGCM_SHA512"]
)
def test_the_psk_patterns_complete_with_the_same_network_key(protocol: str) -> None:
    world = World()
    client = world.client(protocol=protocol, psk=PSK, expect="server")
    on_client, on_server = complete(play(client, world.server(psk=PSK)))
    assert (on_client.peer.name, on_server.peer.name) == ("server", "client")


def test_a_server_with_another_psk_hangs_up_and_the_client_says_why() -> None:
    world = World()
    protocol = "Noise_IKpsk1_25519_AESGCM_SHA256"
    client = world.client(protocol=protocol, psk=PSK, expect="server")
    server = world.server(psk=bytes(32))
    _, on_server = play(client, server)
    assert isinstance(on_server.error, HandshakeFailed)
    assert not server.answered
    client.receive_data(b"")
    with pytest.raises(HandshakeFailed, match="another network key"):
        client.next_event()


def test_the_handshake_completes_when_every_byte_arrives_alone() -> None:
    world = World()
    complete(play(world.client(), world.server(), piece=1))


def test_certificates_ride_in_the_messages_that_carry_the_static_keys() -> None:
    world = World()
    ca = Ed25519PrivateKey.generate()
    now = int(time.time())
    certificate = sign_certificate(
        ca,
        subject_key=world.client_identity.public_key,
        name="carol",
        groups=("db",),
        serial=1,
        not_before=now - 60,
        not_after=now + 3600,
    )
    server_trust = TrustStore()
    server_trust.add_ca("ops-ca", ca.public_key().public_bytes_raw())
    world.server_trust = server_trust
    world.client_identity = world.client_identity.with_certificate(certificate)
    _, on_server = complete(play(world.client(), world.server()))
    assert (on_server.peer.name, on_server.peer.groups) == ("carol", frozenset({"db"}))


# -- refusals ------------------------------------------------------------------------


def test_a_server_refuses_an_untrusted_client_with_a_close_record() -> None:
    world = World()
    world.client_identity = Identity.generate("stranger")
    on_client, on_server = play(world.client(), world.server())
    assert isinstance(on_server.error, PeerNotTrusted)
    (refused,) = on_client.events
    assert isinstance(refused, Refused)
    assert refused.code == CloseCode.NOT_TRUSTED


def test_authorize_refuses_a_trusted_client_with_its_reason() -> None:
    world = World()
    server = world.server(authorize=lambda peer: "no ops today")
    on_client, on_server = play(world.client(), server)
    assert isinstance(on_server.error, PeerNotTrusted)
    assert on_client.events == [Refused(CloseCode.ACCESS_DENIED, "no ops today")]


def test_a_client_refuses_an_untrusted_server_before_revealing_itself() -> None:
    world = World()
    world.client_trust = TrustStore()
    world.client_trust.add_peer("someone", Identity.generate().public_key)
    world.server_trust.add_peer("other", Identity.generate().public_key)
    client, server = world.client(), world.server()
    on_client, _ = play(client, server)
    assert isinstance(on_client.error, PeerNotTrusted)
    assert client.data_to_send() == b""  # message 3, with our key, never went out


def test_no_common_protocol_lists_what_the_server_allows() -> None:
    world = World()
    allowed = ["Noise_XX_25519_ChaChaPoly_SHA256"]
    on_client, on_server = play(world.client(), world.server(protocol=allowed))
    assert isinstance(on_server.error, NegotiationFailed)
    (answer,) = on_client.events
    assert isinstance(answer, NoCommonProtocol)
    assert answer == NoCommonProtocol(("Noise_XX_25519_AESGCM_SHA256",), tuple(allowed))
    assert not answer.busy


def test_a_busy_server_answers_before_any_handshake_and_only_then() -> None:
    world = World()
    client, server = world.client(), world.server()
    client.start_handshake()
    client.data_to_send()
    answered = [server.answered]
    assert server.answer_busy() == BUSY_ANSWER == b"\0\0\0\0"
    answered.append(server.answered)
    assert answered == [False, True]
    with pytest.raises(RuntimeError):
        server.answer_busy()
    client.receive_data(BUSY_ANSWER)
    answer = client.next_event()
    assert isinstance(answer, NoCommonProtocol)
    assert answer.busy


def test_a_server_that_has_answered_can_no_longer_say_busy() -> None:
    world = World()
    client, server = world.client(), world.server()
    client.start_handshake()
    server.start_handshake()
    server.receive_data(client.data_to_send())
    assert server.next_event() is None
    answered = [server.answered]  # message 2 is queued, not handed out yet
    assert server.data_to_send()
    answered.append(server.answered)
    assert answered == [False, True]
    with pytest.raises(RuntimeError):
        server.answer_busy()


def test_a_name_too_long_is_judged_by_its_length_field_alone() -> None:
    server = World().server()
    server.start_handshake()
    server.receive_data(b"\x01\x00Noise")
    with pytest.raises(HandshakeFailed, match="not a protocol name"):
        server.next_event()
    assert server.data_to_send() == b""
    with pytest.raises(RuntimeError):
        server.next_event()  # the connection has ended


def test_garbage_for_message_2_fails_the_handshake() -> None:
    client = World().client()
    client.start_handshake()
    client.receive_data(frame(b"\x01" * 40))
    with pytest.raises(HandshakeFailed, match="handshake message is invalid"):
        client.next_event()


# -- records ---------------------------------------------------------------------------


def _opened() -> tuple[Connection, Connection]:
    world = World()
    client, server = world.client(), world.server()
    complete(play(client, server))
    return client, server


def test_data_and_the_end_cross_in_both_directions() -> None:
    client, server = _opened()
    server.receive_data(client.send_data(memoryview(b"ping")))
    assert server.next_event() == Data(bytearray(b"ping"))
    client.receive_data(server.send_data(memoryview(b"pong")).tobytes() + server.send_eof())
    assert client.next_event() == Data(bytearray(b"pong"))
    assert client.next_event() == EndOfStream()
    assert client.end_received
    assert server.end_sent
    assert not server.can_send
    with pytest.raises(RuntimeError):
        server.send_data(memoryview(b"late"))


def test_a_data_event_holds_about_max_bytes_but_always_a_whole_record() -> None:
    client, server = _opened()
    server.receive_data(client.send_data(memoryview(bytes(3 * MAX_BODY))))
    sizes = []
    while (event := server.next_event(max_bytes=1)) is not None:
        assert isinstance(event, Data)
        sizes.append(len(event.data))
    assert sizes == [MAX_BODY] * 3


def test_data_in_front_of_a_close_is_delivered_before_it() -> None:
    client, server = _opened()
    wire = client.send_data(memoryview(b"last words")).tobytes()
    server.receive_data(wire + client.send_close(CloseCode.SHUTTING_DOWN, "bye"))
    assert server.next_event() == Data(bytearray(b"last words"))
    assert server.next_event() == PeerClosed(CloseCode.SHUTTING_DOWN, "bye")


def test_a_tampered_record_fails_authentication_and_ends_the_connection() -> None:
    client, server = _opened()
    wire = bytearray(client.send_data(memoryview(b"transfer 100")))
    wire[5] ^= 0x01
    server.receive_data(wire)
    with pytest.raises(RecordAuthenticationFailed):
        server.next_event()
    with pytest.raises(RuntimeError):
        server.next_event()


def test_a_cut_inside_a_record_is_truncation_not_an_end() -> None:
    client, server = _opened()
    wire = client.send_data(memoryview(b"half of this"))
    server.receive_data(wire[:7])
    assert server.next_event() is None
    server.receive_data(b"")
    with pytest.raises(TruncatedStream):
        server.next_event()


def test_an_accept_after_the_handshake_is_a_protocol_violation() -> None:
    client, server = _opened()
    writer = client._writer
    assert writer is not None
    server.receive_data(writer.seal(4))
    with pytest.raises(ProtocolViolation, match="unexpected ACCEPT"):
        server.next_event()
