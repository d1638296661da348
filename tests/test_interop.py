"""Interoperability: an independent Noise implementation talks to securesess.

The peer on the other end is written with the ``noiseprotocol`` package and
follows only docs/protocol.md: it frames, negotiates, handshakes and encrypts
records by hand over a blocking stdlib socket in a worker thread. If these
tests pass, the document is enough to interoperate with securesess, and
securesess speaks standard Noise (same transcript, same keys, same REKEY).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]

from keystore import Identity, TrustStore
from securesess import SecureStream, open_secure_stream, serve_secure, wrap_socket

# Every blocking socket operation of the hand-written peer gives up after this,
# and every test as a whole after TEST_TIMEOUT, so a bug cannot hang the suite.
SOCKET_TIMEOUT = 5.0
TEST_TIMEOUT = 10.0

PROLOGUE_PREFIX = b"securesess/1\n"
DEFAULT = "Noise_XX_25519_AESGCM_SHA256"

# Record types and close codes, copied from docs/protocol.md sections 4 and 5
# rather than imported, so the peer depends on the document only.
DATA, END, REKEY, CLOSE, ACCEPT = 0, 1, 2, 3, 4
NOT_TRUSTED = 1
MAX_BODY = 65518
TAG = 16

# XX in every cipher/hash combination the document lists as offered by
# default, and IK (one round trip) in two of them.
PROTOCOLS = [
    f"Noise_XX_25519_{cipher}_{hash_}"
    for cipher in ("AESGCM", "ChaChaPoly")
    for hash_ in ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b")
] + ["Noise_IK_25519_AESGCM_SHA256", "Noise_IK_25519_ChaChaPoly_BLAKE2s"]
# The patterns of a network key (PSK), section 2, both one and two round trips.
PSK_PROTOCOLS = ["Noise_XXpsk3_25519_ChaChaPoly_SHA256", "Noise_IKpsk1_25519_AESGCM_BLAKE2b"]
PSK = bytes(range(32))

HELLO = b"hello"
REPLY = b"hello yourself"
# Larger than one record, so the bulk crosses record boundaries both ways.
BULK = bytes(range(256)) * 400


# -- the hand-written peer: framing ---------------------------------------------------


def frame(data: bytes) -> bytes:
    """``u16(len(data)) || data`` (docs/protocol.md, Notation)."""
    assert len(data) <= 65535
    return struct.pack(">H", len(data)) + data


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError(f"the connection ended {size - len(chunks)} bytes short")
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">H", recv_exactly(sock, 2))
    return recv_exactly(sock, length)


def assert_closed(sock: socket.socket) -> None:
    """The other side closed the connection and sent nothing more."""
    try:
        leftover = sock.recv(65536)
    except ConnectionResetError:
        # An abortive close is still a close.
        return
    assert leftover == b""


def new_keypair() -> tuple[bytes, bytes]:
    """(private, public) raw X25519 keys, made without securesess's code."""
    key = X25519PrivateKey.generate()
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


def noise_client_of_a_server() -> tuple[Identity, bytes, bytes, TrustStore]:
    """A securesess server, a noiseprotocol client's key pair, and a trust
    store in which the server pins that client as "noise-client"."""
    server = Identity.generate("server")
    client_private, client_public = new_keypair()
    trust = TrustStore()
    trust.add_peer("noise-client", client_public)
    return server, client_private, client_public, trust


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


# -- the hand-written peer: Noise and records -----------------------------------------


@dataclass
class NoisePeer:
    """One side of a connection, driven by noiseprotocol by hand."""

    sock: socket.socket
    name: str
    initiator: bool
    conn: Any = field(init=False)
    # noiseprotocol's HandshakeState: the only place it keeps the remote
    # static key, and the connection drops its reference when the handshake
    # finishes, so keep our own.
    _state: Any = field(init=False)
    rekeys_received: int = 0

    @classmethod
    def start(
        cls,
        sock: socket.socket,
        name: str,
        *,
        initiator: bool,
        private_key: bytes,
        remote_static: bytes | None = None,
        psk: bytes | None = None,
    ) -> NoisePeer:
        peer = cls(sock, name, initiator)
        conn = NoiseConnection.from_name(name.encode("ascii"))
        if initiator:
            conn.set_as_initiator()
        else:
            conn.set_as_responder()
        conn.set_prologue(PROLOGUE_PREFIX + name.encode("ascii"))
        conn.set_keypair_from_private_bytes(Keypair.STATIC, private_key)
        if remote_static is not None:
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
        if psk is not None:
            conn.set_psks(psk=psk)
        conn.start_handshake()
        peer.conn = conn
        peer._state = conn.noise_protocol.handshake_state
        return peer

    @classmethod
    def initiate(
        cls,
        sock: socket.socket,
        name: str,
        private_key: bytes,
        server: Identity,
        *,
        psk: bytes | None = None,
    ) -> NoisePeer:
        """An initiator; in IK it knows the responder's key in advance."""
        remote = server.public_key if "_IK" in name else None
        return cls.start(
            sock, name, initiator=True, private_key=private_key, remote_static=remote, psk=psk
        )

    @property
    def remote_static(self) -> bytes | None:
        public: bytes | None = getattr(self._state.rs, "public_bytes", None)
        return public

    @property
    def handshake_hash(self) -> bytes:
        value: bytes = self.conn.get_handshake_hash()
        return value

    def offer(self) -> None:
        """Initiator: ``frame(protocol_name) || frame(message 1)``, back to back."""
        message = bytes(self.conn.write_message(b""))
        self.sock.sendall(frame(self.name.encode("ascii")) + frame(message))

    def finish_handshake(
        self, *, my_turn: bool, check_remote: Callable[[bytes], None] | None = None
    ) -> None:
        """Alternate Noise messages until the handshake is done, empty payloads
        both ways; ``check_remote`` sees the peer's static key as soon as it is
        known, before we write another message (section 3, Authorization)."""
        checked = False
        while not self.conn.handshake_finished:
            if my_turn:
                self.sock.sendall(frame(bytes(self.conn.write_message(b""))))
            else:
                message = recv_frame(self.sock)
                assert message, "an empty frame where a handshake message belongs"
                payload = self.conn.read_message(message)
                assert payload == b"", "securesess sent a non-empty payload in pinned-key mode"
                if check_remote is not None and not checked and self.remote_static is not None:
                    check_remote(self.remote_static)
                    checked = True
            my_turn = not my_turn
        assert self.remote_static is not None

    def send(self, record_type: int, body: bytes = b"") -> None:
        ciphertext = self.conn.encrypt(bytes([record_type]) + body)
        assert len(ciphertext) == 1 + len(body) + TAG
        self.sock.sendall(frame(ciphertext))
        if record_type == REKEY:
            self.conn.rekey_outbound_cipher()

    def send_data(self, data: bytes, *, rekey_every: int | None = None) -> None:
        for count, start in enumerate(range(0, len(data), MAX_BODY), 1):
            self.send(DATA, data[start : start + MAX_BODY])
            if rekey_every is not None and count % rekey_every == 0:
                self.send(REKEY)

    def receive(self) -> tuple[int, bytes]:
        """The next record other than REKEY, which is applied here."""
        while True:
            plain = bytes(self.conn.decrypt(recv_frame(self.sock)))
            record_type, body = plain[0], plain[1:]
            if record_type != REKEY:
                return record_type, body
            assert body == b""
            self.conn.rekey_inbound_cipher()
            self.rekeys_received += 1

    def receive_until_end(self) -> bytes:
        """All DATA up to the END record."""
        data = bytearray()
        while True:
            record_type, body = self.receive()
            if record_type == END:
                assert body == b""
                return bytes(data)
            assert record_type == DATA, f"unexpected record type {record_type}"
            assert 1 <= len(body) <= MAX_BODY
            data += body


@dataclass
class Seen:
    """What the securesess side observed, for the test to compare."""

    peer_key: bytes | None = None
    peer_name: str | None = None
    handshake_hash: bytes | None = None
    protocol: str | None = None
    received: bytes = b""
    handled: int = 0


async def receive_until_eof(stream: SecureStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def receive_exactly(stream: SecureStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "END before all the data"
        data += chunk
    return bytes(data)


def note_peer(seen: Seen, stream: SecureStream) -> None:
    seen.handled += 1
    seen.peer_key = stream.peer.public_key
    seen.peer_name = stream.peer.name
    seen.handshake_hash = stream.handshake_hash
    seen.protocol = stream.protocol


async def start_server(
    nursery: trio.Nursery,
    handler: Callable[[SecureStream], Any],
    *,
    identity: Identity,
    trust: TrustStore,
    protocol: list[str] | None = None,
    psk: bytes | None = None,
) -> int:
    """Run serve_secure on 127.0.0.1, port 0; return the port it got."""
    listeners = await nursery.start(
        partial(
            serve_secure,
            handler,
            0,
            host="127.0.0.1",
            identity=identity,
            trust=trust,
            protocol=protocol,
            psk=psk,
        )
    )
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port: int = transport.socket.getsockname()[1]
    return port


# -- 1. securesess responder, noiseprotocol initiator ----------------------------------


@pytest.mark.parametrize("name", PROTOCOLS + PSK_PROTOCOLS)
async def test_noise_initiator_to_securesess_responder(name: str) -> None:
    server, client_private, client_public, trust = noise_client_of_a_server()
    seen = Seen()

    async def handler(stream: SecureStream) -> None:
        note_peer(seen, stream)
        seen.received = await receive_exactly(stream, len(HELLO) + len(BULK))
        await stream.send_all(REPLY + BULK)
        await stream.send_eof()
        # The client's END, read as EOF.
        assert await stream.receive_some() == b""

    def check_server(public_key: bytes) -> None:
        assert public_key == server.public_key

    def client(port: int) -> tuple[bytes, bytes]:
        with connect(port) as sock:
            psk = PSK if "psk" in name else None
            noise = NoisePeer.initiate(sock, name, client_private, server, psk=psk)
            noise.offer()
            noise.finish_handshake(my_turn=False, check_remote=check_server)
            assert noise.remote_static == server.public_key
            # No record before ACCEPT (section 3).
            assert noise.receive() == (ACCEPT, b"")
            noise.send(DATA, HELLO)
            noise.send_data(BULK)
            received = noise.receive_until_end()
            noise.send(END)
            assert_closed(sock)
            return received, noise.handshake_hash

    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            psk = PSK if "psk" in name else None
            port = await start_server(nursery, handler, identity=server, trust=trust, psk=psk)
            received, noise_hash = await trio.to_thread.run_sync(client, port)
            nursery.cancel_scope.cancel()

    assert received == REPLY + BULK
    assert seen.handled == 1
    assert seen.received == HELLO + BULK
    assert seen.peer_key == client_public
    assert seen.peer_name == "noise-client"
    assert seen.protocol == name
    # Same transcript on both sides, prologue included.
    assert seen.handshake_hash == noise_hash


# -- 2. securesess initiator, noiseprotocol responder ----------------------------------


@pytest.mark.parametrize("name", PROTOCOLS + PSK_PROTOCOLS)
async def test_securesess_initiator_to_noise_responder(name: str) -> None:
    client = Identity.generate("client")
    server_private, server_public = new_keypair()
    trust = TrustStore()
    trust.add_peer("noise-server", server_public)
    seen = Seen()

    def responder(listener: socket.socket) -> tuple[bytes, bytes, bytes]:
        sock, _ = listener.accept()
        with sock:
            sock.settimeout(SOCKET_TIMEOUT)
            assert recv_frame(sock) == name.encode("ascii")
            psk = PSK if "psk" in name else None
            noise = NoisePeer.start(
                sock, name, initiator=False, private_key=server_private, psk=psk
            )
            assert noise.conn.read_message(recv_frame(sock)) == b""
            noise.finish_handshake(my_turn=True)
            # The responder authorizes the initiator, then accepts it.
            assert noise.remote_static == client.public_key
            noise.send(ACCEPT)
            received = noise.receive_until_end()
            noise.send_data(REPLY + BULK)
            noise.send(END)
            assert_closed(sock)
            return received, noise.remote_static, noise.handshake_hash

    async def initiator(port: int) -> None:
        stream = await open_secure_stream(
            "127.0.0.1",
            port,
            identity=client,
            trust=trust,
            expect="noise-server",
            protocol=name,
            psk=PSK if "psk" in name else None,
        )
        async with stream:
            note_peer(seen, stream)
            await stream.send_all(HELLO + BULK)
            await stream.send_eof()
            seen.received = await receive_until_eof(stream)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(SOCKET_TIMEOUT)
        port = listener.getsockname()[1]
        with trio.fail_after(TEST_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(initiator, port)
                received, client_key, noise_hash = await trio.to_thread.run_sync(
                    responder, listener
                )

    assert received == HELLO + BULK
    assert seen.received == REPLY + BULK
    assert client_key == client.public_key
    assert seen.peer_key == server_public
    assert seen.peer_name == "noise-server"
    assert seen.protocol == name
    assert seen.handshake_hash == noise_hash


# -- 3. negotiation rejection ---------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "offered"),
    [
        # NN is a valid Noise name that securesess never allows.
        (None, "Noise_NN_25519_AESGCM_SHA256"),
        # A valid securesess name that this server does not allow.
        (["Noise_XX_25519_ChaChaPoly_BLAKE2s"], DEFAULT),
    ],
)
async def test_a_name_the_responder_does_not_allow_gets_the_allowed_list(
    allowed: list[str] | None, offered: str
) -> None:
    server, client_private, _, trust = noise_client_of_a_server()
    seen = Seen()

    async def handler(stream: SecureStream) -> None:
        seen.handled += 1

    def client(port: int) -> list[str]:
        with connect(port) as sock:
            noise = NoisePeer.start(sock, offered, initiator=True, private_key=client_private)
            noise.offer()
            assert recv_exactly(sock, 2) == b"\0\0"
            names = recv_frame(sock).decode("ascii").split(",")
            assert_closed(sock)
            return names

    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(
                nursery, handler, identity=server, trust=trust, protocol=allowed
            )
            names = await trio.to_thread.run_sync(client, port)
            nursery.cancel_scope.cancel()

    assert seen.handled == 0
    assert offered not in names
    if allowed is None:
        assert DEFAULT in names
        assert "Noise_IK_25519_ChaChaPoly_BLAKE2s" in names
    else:
        assert names == allowed


@pytest.mark.parametrize("name", PSK_PROTOCOLS)
async def test_an_initiator_with_the_wrong_psk_is_never_admitted(name: str) -> None:
    # Its key is trusted; only the network key is wrong. In IKpsk1 the PSK
    # is in message 1, in XXpsk3 in message 3: either way, no ACCEPT, no handler.
    server, client_private, _, trust = noise_client_of_a_server()
    seen = Seen()

    async def handler(stream: SecureStream) -> None:
        seen.handled += 1

    def client(port: int) -> None:
        with connect(port) as sock:
            noise = NoisePeer.initiate(sock, name, client_private, server, psk=bytes(32))
            noise.offer()
            if "_XX" in name:
                noise.finish_handshake(my_turn=False)  # message 3 carries the wrong PSK
            assert_closed(sock)

    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, handler, identity=server, trust=trust, psk=PSK)
            await trio.to_thread.run_sync(client, port)
            nursery.cancel_scope.cancel()
    assert seen.handled == 0


# -- 4. refusal of an untrusted initiator ---------------------------------------------


async def test_an_untrusted_initiator_gets_close_not_trusted() -> None:
    server = Identity.generate("server")
    client_private, client_public = new_keypair()
    trust = TrustStore()
    # The server trusts someone, just not this client.
    trust.add_peer("someone-else", new_keypair()[1])
    seen = Seen()

    async def handler(stream: SecureStream) -> None:
        seen.handled += 1

    def client(port: int) -> tuple[int, bytes]:
        with connect(port) as sock:
            noise = NoisePeer.start(sock, DEFAULT, initiator=True, private_key=client_private)
            noise.offer()
            noise.finish_handshake(my_turn=False)
            assert noise.remote_static == server.public_key
            record_type, body = noise.receive()
            assert_closed(sock)
            return record_type, body

    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, handler, identity=server, trust=trust)
            record_type, body = await trio.to_thread.run_sync(client, port)
            nursery.cancel_scope.cancel()

    assert record_type == CLOSE
    assert len(body) >= 2
    (code,) = struct.unpack(">H", body[:2])
    assert code == NOT_TRUSTED
    reason = body[2:].decode("utf-8")
    assert reason
    assert len(body) - 2 <= 1024
    assert seen.handled == 0
    assert client_public not in {peer.public_key for peer in trust}


# -- 5. REKEY both ways ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Noise_XX_25519_AESGCM_SHA256", "Noise_XX_25519_ChaChaPoly_BLAKE2s"]
)
async def test_rekey_both_ways(name: str) -> None:
    server, client_private, _, trust = noise_client_of_a_server()
    chunks = [bytes([i]) * (1000 + i) for i in range(8)]
    sent = b"".join(chunks)
    server_sock, client_sock = socket.socketpair()
    # securesess rekeys its sending key after every other record.
    stream = wrap_socket(
        server_sock, identity=server, trust=trust, server_side=True, rekey_after_records=2
    )
    client_sock.settimeout(SOCKET_TIMEOUT)

    async def serve() -> bytes:
        async with stream:
            received = await receive_until_eof(stream)
            for chunk in chunks:
                await stream.send_all(chunk)
            await stream.send_eof()
            return received

    def client() -> tuple[bytes, int]:
        with client_sock:
            noise = NoisePeer.start(client_sock, name, initiator=True, private_key=client_private)
            noise.offer()
            noise.finish_handshake(my_turn=False)
            assert noise.receive() == (ACCEPT, b"")
            for chunk in chunks:
                noise.send(DATA, chunk)
                noise.send(REKEY)
            noise.send(END)
            received = noise.receive_until_end()
            assert_closed(client_sock)
            return received, noise.rekeys_received

    results: dict[str, bytes] = {}

    async def run_server() -> None:
        results["server"] = await serve()

    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_server)
            received, rekeys = await trio.to_thread.run_sync(client)

    assert results["server"] == sent
    assert received == sent
    # ACCEPT, 8 DATA and END is 10 records; a REKEY before every second one.
    assert rekeys >= 4
