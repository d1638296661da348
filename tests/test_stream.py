"""SecureStream over in-memory transports: Trio's stream contract, the
handshake's decisions, and what happens to bad bytes on the wire."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from handshake import MAX_NONCE, CipherState, HandshakeState
from securesess import (
    HandshakeFailed,
    HandshakeTimeout,
    NegotiationFailed,
    PeerAborted,
    PeerNotTrusted,
    PeerRejected,
    ProtocolViolation,
    RecordAuthenticationFailed,
    RecordLimitReached,
    SecureStream,
    TruncatedStream,
)
from securesess.constants import CloseCode
from securesess.stream.frames import FrameReader, frame
from securesess.stream.records import MAX_BODY, RecordType, RecordWriter
from securesess.testing import secure_stream_pair
from tests.streams import Identities, filtered_pair, frames_of, handshake_both


async def _outcomes(
    client: SecureStream, server: SecureStream
) -> tuple[BaseException | None, BaseException | None]:
    """Run both handshakes; return what each side raised (or None)."""
    results: list[BaseException | None] = [None, None]

    async def run(index: int, stream: SecureStream) -> None:
        try:
            await stream.do_handshake()
        except Exception as exc:
            results[index] = exc
            await trio.aclose_forcefully(stream)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, 0, client)
            nursery.start_soon(run, 1, server)
    return results[0], results[1]


# -- the Trio stream contract --------------------------------------------------------


async def test_trio_half_closeable_stream_conformance() -> None:
    async def make() -> tuple[SecureStream, SecureStream]:
        return await secure_stream_pair()

    async def make_clogged() -> tuple[SecureStream, SecureStream]:
        return await secure_stream_pair(lockstep=True)

    await trio.testing.check_half_closeable_stream(make, make_clogged)


@pytest.mark.parametrize(
    "protocol",
    [
        "Noise_XX_25519_AESGCM_SHA256",
        "Noise_XX_25519_ChaChaPoly_BLAKE2s",
        "Noise_XX_25519_AESGCM_BLAKE2b",
        "Noise_XX_25519_ChaChaPoly_SHA512",
    ],
)
async def test_conformance_with_other_ciphers_and_hashes(protocol: str) -> None:
    async def make() -> tuple[SecureStream, SecureStream]:
        return await secure_stream_pair(protocol=protocol)

    await trio.testing.check_two_way_stream(make, None)


async def test_byte_at_a_time_delivery() -> None:
    ids = Identities()
    client, server = ids.streams(filtered_pair(max_bytes=1))
    message = os.urandom(70_000)  # more than one record

    async def send() -> None:
        await client.send_all(message)
        await client.send_eof()

    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while data := await server.receive_some():
            received += data
    assert received == message
    assert server.peer.name == "client"


# -- what the handshake establishes -----------------------------------------------------


async def test_each_side_sees_the_authenticated_peer() -> None:
    ids = Identities()
    client, server = ids.streams(trio.testing.memory_stream_pair())
    with pytest.raises(trio.NeedHandshakeError):
        _ = client.peer
    await handshake_both(client, server)
    assert client.peer.name == "server"
    assert client.peer.public_key == ids.server.public_key
    assert client.peer.fingerprint == ids.server.fingerprint
    assert client.peer.groups == {"backend"}
    assert server.peer.name == "client"
    assert server.peer.groups == {"api", "ops"}
    assert client.handshake_hash == server.handshake_hash
    assert client.protocol == server.protocol == "Noise_XX_25519_AESGCM_SHA256"


async def test_ik_takes_one_round_trip_with_a_known_server_key() -> None:
    ids = Identities()
    wire: list[bytes] = []

    def record(data: bytes) -> bytes:
        wire.append(data)
        return data

    client, server = ids.streams(
        filtered_pair(server_to_client=record),
        client={"protocol": "Noise_IK_25519_AESGCM_SHA256", "expect": "server"},
    )
    await handshake_both(client, server)
    assert client.protocol == "Noise_IK_25519_AESGCM_SHA256"
    # The server answered once: message 2 and ACCEPT together.
    assert len(frames_of(b"".join(wire))) == 2
    await client.send_all(b"ping")
    assert await server.receive_some() == b"ping"


async def test_ik_needs_the_server_key() -> None:
    ids = Identities()
    with pytest.raises(ValueError, match="needs the server's key in advance"):
        ids.streams(
            trio.testing.memory_stream_pair(), client={"protocol": "Noise_IK_25519_AESGCM_SHA256"}
        )


async def test_a_psk_network_key() -> None:
    psk = os.urandom(32)
    client, server = await secure_stream_pair(psk=psk)
    assert client.protocol == "Noise_XXpsk3_25519_AESGCM_SHA256"
    await server.send_all(b"members only")
    assert await client.receive_some() == b"members only"


async def test_a_wrong_psk_fails_the_handshake() -> None:
    ids = Identities()
    client, server = ids.streams(
        trio.testing.memory_stream_pair(),
        client={"psk": b"\x01" * 32},
        server={"psk": b"\x02" * 32},
    )
    client_error, server_error = await _outcomes(client, server)
    assert isinstance(server_error, HandshakeFailed)
    assert "invalid" in str(server_error)
    assert isinstance(client_error, HandshakeFailed)


async def test_a_client_without_the_psk_is_told_what_the_server_allows() -> None:
    ids = Identities()
    client, server = ids.streams(trio.testing.memory_stream_pair(), server={"psk": bytes(32)})
    client_error, server_error = await _outcomes(client, server)
    assert isinstance(client_error, NegotiationFailed)
    assert client_error.offered == ("Noise_XX_25519_AESGCM_SHA256",)
    assert "Noise_XXpsk3_25519_AESGCM_SHA256" in client_error.supported
    assert "allows Noise_XXpsk3" in str(client_error)
    assert not client_error.busy
    assert isinstance(server_error, NegotiationFailed)


async def test_no_common_protocol() -> None:
    ids = Identities()
    client, server = ids.streams(
        trio.testing.memory_stream_pair(),
        client={"protocol": "Noise_XX_25519_ChaChaPoly_SHA256"},
        server={"protocol": ["Noise_XX_25519_AESGCM_SHA256"]},
    )
    client_error, _ = await _outcomes(client, server)
    assert isinstance(client_error, NegotiationFailed)
    assert client_error.supported == ("Noise_XX_25519_AESGCM_SHA256",)


async def test_an_untrusted_client_is_refused_with_a_reason() -> None:
    ids = Identities()
    client, server = ids.streams(
        trio.testing.memory_stream_pair(), client={"identity": ids.stranger}
    )
    client_error, server_error = await _outcomes(client, server)
    assert isinstance(client_error, PeerRejected)
    assert client_error.code == 1
    assert "is not pinned" in client_error.reason
    assert ids.stranger.fingerprint in client_error.reason
    assert isinstance(server_error, PeerNotTrusted)
    assert server_error.fingerprint == ids.stranger.fingerprint


async def test_a_client_refuses_an_untrusted_server_before_revealing_itself() -> None:
    ids = Identities()
    wire: list[bytes] = []

    def record(data: bytes) -> bytes:
        wire.append(data)
        return data

    client, server = ids.streams(
        filtered_pair(client_to_server=record), server={"identity": ids.stranger}
    )
    client_error, server_error = await _outcomes(client, server)
    assert isinstance(client_error, PeerNotTrusted)
    assert "the server is not trusted" in str(client_error)
    assert isinstance(server_error, HandshakeFailed)
    # Only the name and message 1 left the client; its static key never did.
    assert len(frames_of(b"".join(wire))) == 2


async def test_expect_by_name() -> None:
    ids = Identities()
    ids.client_trust.add_peer("other", ids.stranger.public_key)
    client, server = ids.streams(
        trio.testing.memory_stream_pair(),
        client={"expect": "other"},
    )
    client_error, _ = await _outcomes(client, server)
    assert isinstance(client_error, PeerNotTrusted)
    assert "not the expected 'other'" in str(client_error)


async def test_expect_by_key_pins_a_server_outside_the_trust_store() -> None:
    ids = Identities()
    client, server = ids.streams(
        trio.testing.memory_stream_pair(),
        client={"trust": type(ids.client_trust)(), "expect": ids.server.public_key},
    )
    await handshake_both(client, server)
    assert client.peer.public_key == ids.server.public_key
    assert client.peer.name is None


async def test_the_server_can_insist_on_one_client() -> None:
    ids = Identities()
    ids.server_trust.add_peer("stranger", ids.stranger.public_key)
    client, server = ids.streams(trio.testing.memory_stream_pair(), server={"expect": "stranger"})
    client_error, _ = await _outcomes(client, server)
    assert isinstance(client_error, PeerRejected)
    assert client_error.code == 2


async def test_handshake_timeout(autojump_clock: trio.abc.Clock) -> None:
    ids = Identities()
    silent_client, server_transport = trio.testing.memory_stream_pair()
    server = ids.streams((silent_client, server_transport), server={"handshake_timeout": 3})[1]
    start = trio.current_time()
    with pytest.raises(HandshakeTimeout, match="within 3 s"):
        await server.do_handshake()
    assert trio.current_time() - start == pytest.approx(3)
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


async def test_garbage_instead_of_a_protocol_name() -> None:
    ids = Identities()
    client_transport, server_transport = trio.testing.memory_stream_pair()
    server = ids.streams((client_transport, server_transport))[1]
    await client_transport.send_all(b"\x01\x00" + b"\xff" * 256)
    with pytest.raises(HandshakeFailed, match="not a protocol name"):
        await server.do_handshake()


# -- records: integrity, order, truncation -------------------------------------------------


async def test_a_flipped_bit_in_a_record_breaks_the_stream() -> None:
    ids = Identities()
    handshake_bytes: list[int] = []
    armed = [False]

    def tamper(data: bytes) -> bytes:
        if not armed[0]:
            handshake_bytes.append(len(data))
            return data
        mutable = bytearray(data)
        mutable[len(mutable) // 2] ^= 0x01
        return bytes(mutable)

    client, server = ids.streams(filtered_pair(client_to_server=tamper))
    await handshake_both(client, server)
    armed[0] = True
    await client.send_all(b"transfer 100 to alice")
    with pytest.raises(trio.BrokenResourceError) as raised:
        await server.receive_some()
    assert isinstance(raised.value.__cause__, RecordAuthenticationFailed)
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


@pytest.mark.parametrize("fault", ["replay", "reorder", "drop"])
async def test_replayed_reordered_or_dropped_records_break_the_stream(fault: str) -> None:
    ids = Identities()
    held: list[bytes] = []
    armed = [False]

    def mangle(data: bytes) -> bytes:
        if not armed[0]:
            return data
        held.append(data)
        if fault == "replay":
            return data + data
        if fault == "drop" and len(held) == 1:
            return b""
        if fault == "reorder":
            return b"" if len(held) == 1 else data + held[0]
        return data

    client, server = ids.streams(filtered_pair(client_to_server=mangle))
    await handshake_both(client, server)
    armed[0] = True
    await client.send_all(b"first")
    await client.send_all(b"second")
    received = bytearray()

    async def receive_all() -> None:
        while True:
            received.extend(await server.receive_some())

    with pytest.raises(trio.BrokenResourceError) as raised:
        await receive_all()
    assert isinstance(raised.value.__cause__, RecordAuthenticationFailed)
    assert bytes(received) in (b"", b"first"), "nothing out of order is delivered"


async def test_a_cut_connection_is_not_a_clean_end() -> None:
    client, server = await secure_stream_pair()
    await client.send_all(b"partial")
    await client.transport_stream.aclose()  # no END record
    assert await server.receive_some() == b"partial"
    with pytest.raises(trio.BrokenResourceError) as raised:
        await server.receive_some()
    assert isinstance(raised.value.__cause__, TruncatedStream)


async def test_aclose_sends_a_clean_end() -> None:
    client, server = await secure_stream_pair()
    await client.send_all(b"last words")
    await client.aclose()
    assert await server.receive_some() == b"last words"
    assert await server.receive_some() == b""
    assert await server.receive_some() == b""


async def test_abort_tells_the_peer_why() -> None:
    client, server = await secure_stream_pair()
    await client.abort(1001, "quota exceeded")
    with pytest.raises(trio.BrokenResourceError) as raised:
        await server.receive_some()
    cause = raised.value.__cause__
    assert isinstance(cause, PeerAborted)
    assert (cause.code, cause.reason) == (1001, "quota exceeded")


@pytest.mark.parametrize(
    ("record_type", "message"), [(4, "unexpected ACCEPT"), (9, "unknown record type 9")]
)
async def test_records_out_of_place_are_protocol_violations(record_type: int, message: str) -> None:
    client, server = await secure_stream_pair()
    writer = client.connection._writer
    assert writer is not None
    await client.transport_stream.send_all(writer.seal(record_type))
    with pytest.raises(trio.BrokenResourceError) as raised:
        await server.receive_some()
    assert isinstance(raised.value.__cause__, ProtocolViolation)
    assert message in str(raised.value.__cause__)


async def test_large_writes_become_full_records_and_arrive_intact() -> None:
    ids = Identities()
    wire = bytearray()
    armed = [False]

    def capture(data: bytes) -> bytes:
        if armed[0]:
            wire.extend(data)
        return data

    client, server = ids.streams(filtered_pair(client_to_server=capture))
    await handshake_both(client, server)
    armed[0] = True
    message = os.urandom(3 * MAX_BODY + 10)
    received = bytearray()

    async def send() -> None:
        await client.send_all(message)
        await client.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while data := await server.receive_some(100_000):
            received += data
    assert received == message
    sizes = [len(frame) for frame in frames_of(bytes(wire))]
    assert sizes == [65535, 65535, 65535, 1 + 10 + 16, 1 + 16]  # three full, a tail, END


async def test_partial_reads_keep_the_rest() -> None:
    client, server = await secure_stream_pair()
    await client.send_all(b"abcdefghij")
    assert await server.receive_some(3) == b"abc"
    assert await server.receive_some(3) == b"def"
    assert await server.receive_some() == b"ghij"


async def test_rekeying_keeps_the_data_flowing() -> None:
    ids = Identities()
    wire = bytearray()

    def capture(data: bytes) -> bytes:
        wire.extend(data)
        return data

    client, server = ids.streams(
        filtered_pair(client_to_server=capture),
        client={"rekey_after_records": 3},
    )
    await handshake_both(client, server)
    before = len(frames_of(bytes(wire)))
    chunks = [os.urandom(100) for _ in range(10)]
    for chunk in chunks:
        await client.send_all(chunk)
        assert await server.receive_some() == chunk
    record_sizes = [len(frame) for frame in frames_of(bytes(wire))][before:]
    rekeys = record_sizes.count(1 + 16)  # REKEY: a type byte and the tag
    assert len(record_sizes) == 10 + rekeys
    assert rekeys == 4  # every third record under a key is a REKEY


async def test_send_after_eof_is_refused() -> None:
    client, server = await secure_stream_pair()
    await client.send_eof()
    await client.send_eof()  # a second EOF is a no-op
    with pytest.raises(trio.ClosedResourceError, match="EOF was already sent"):
        await client.send_all(b"too late")
    assert await server.receive_some() == b""
    await server.send_all(b"the other way still works")
    assert await client.receive_some() == b"the other way still works"


async def test_reprs_show_no_secrets() -> None:
    client, server = await secure_stream_pair()
    text = repr(client) + repr(server)
    assert "peer=server" in text
    assert client.handshake_hash.hex() not in text


# -- cancellation and concurrency -------------------------------------------------------


async def test_a_cancelled_receive_loses_nothing() -> None:
    client, server = await secure_stream_pair()
    payload = b"".join(bytes([i]) * MAX_BODY for i in range(8))
    await client.send_all(payload)
    await client.send_eof()
    received = bytearray(await server.receive_some(MAX_BODY))
    with trio.move_on_after(0):  # already expired: the next call is cancelled
        await server.receive_some(MAX_BODY)
    while chunk := await server.receive_some(MAX_BODY):
        received += chunk
    assert received == payload


async def test_a_second_reader_waits_for_the_handshake() -> None:
    ids = Identities()
    client, server = ids.streams(trio.testing.memory_stream_pair())
    results: dict[str, object] = {}

    async def handshake() -> None:
        await client.do_handshake()
        results["handshake"] = "ok"

    async def read() -> None:
        results["data"] = bytes(await client.receive_some())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handshake)
            nursery.start_soon(read)
            await server.send_all(b"hello")
    assert results == {"handshake": "ok", "data": b"hello"}


async def test_closing_while_another_task_reads_is_closed_not_broken() -> None:
    client, _server = await secure_stream_pair()
    outcome: list[BaseException] = []

    async def read() -> None:
        try:
            await client.receive_some()
        except trio.ClosedResourceError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        await client.aclose()
    assert len(outcome) == 1
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"after close")


async def test_waiting_to_send_after_eof_leaves_receiving_alone() -> None:
    client, server = await secure_stream_pair()
    await client.send_eof()
    with pytest.raises(trio.ClosedResourceError, match="EOF was already sent"):
        await client.wait_send_all_might_not_block()
    await server.send_all(b"still readable")
    assert await client.receive_some() == b"still readable"


async def test_a_refusal_with_a_malformed_reason_is_a_handshake_failure() -> None:
    ids = Identities()
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = ids.streams((client_transport, server_transport))[0]
    # A server that completes the handshake by hand, then refuses with a
    # CLOSE whose reason is not UTF-8.
    state = HandshakeState(
        "Noise_XX_25519_AESGCM_SHA256",
        initiator=False,
        prologue=b"securesess/1\nNoise_XX_25519_AESGCM_SHA256",
        s=ids.server.keypair,
    )

    async def fake_server() -> None:
        reader = FrameReader()
        frames: list[bytes] = []
        while len(frames) < 2:
            reader.feed(await server_transport.receive_some())
            while (item := reader.next_frame()) is not None:
                frames.append(bytes(item))
        state.read_message(frames[1])
        await server_transport.send_all(frame(state.write_message()))
        while (item := reader.next_frame()) is None:
            reader.feed(await server_transport.receive_some())
        state.read_message(bytes(item))
        writer = RecordWriter(state.into_transport())
        await server_transport.send_all(writer.seal(RecordType.CLOSE, b"\x00\x01\xff\xfe"))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake_server)
            with pytest.raises(HandshakeFailed, match="malformed reason"):
                await client.do_handshake()


def _exhaust(cipher: CipherState | None) -> None:
    # 2**64-1 records cannot be sent in a test; the counter can be moved
    # to the nonce reserved for REKEY, past the last one a record may use.
    assert cipher is not None
    cipher.set_nonce(MAX_NONCE)


async def test_a_sender_out_of_nonces_breaks_the_stream_with_a_typed_cause() -> None:
    client, server = await secure_stream_pair()
    assert client.connection._transport is not None
    _exhaust(client.connection._transport.send_cipher)
    with pytest.raises(trio.BrokenResourceError) as raised:
        await client.send_all(b"one record too many")
    assert isinstance(raised.value.__cause__, RecordLimitReached)
    with pytest.raises(trio.BrokenResourceError):
        await client.send_eof()
    await client.aclose()  # closes without a word: there is no nonce for END
    with pytest.raises(trio.BrokenResourceError) as truncated:
        await server.receive_some()
    assert isinstance(truncated.value.__cause__, TruncatedStream)


@pytest.mark.parametrize("how", ["send_eof", "aclose", "abort"])
async def test_ending_a_stream_out_of_nonces_never_raises_the_nonce_error(how: str) -> None:
    client, server = await secure_stream_pair()
    assert client.connection._transport is not None
    _exhaust(client.connection._transport.send_cipher)
    if how == "send_eof":
        with pytest.raises(trio.BrokenResourceError) as raised:
            await client.send_eof()
        assert isinstance(raised.value.__cause__, RecordLimitReached)
        await client.aclose()
    elif how == "aclose":
        await client.aclose()
    else:
        await client.abort(CloseCode.PROTOCOL_VIOLATION, "going")
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


async def test_a_peer_past_the_last_nonce_is_a_protocol_violation() -> None:
    client, server = await secure_stream_pair()
    await client.send_all(b"delivered")
    assert await server.receive_some() == b"delivered"
    assert server.connection._transport is not None
    _exhaust(server.connection._transport.receive_cipher)
    await client.send_all(b"never delivered")
    with pytest.raises(trio.BrokenResourceError) as raised:
        await server.receive_some()
    assert isinstance(raised.value.__cause__, ProtocolViolation)
    assert "2**64-1 records" in str(raised.value.__cause__)
