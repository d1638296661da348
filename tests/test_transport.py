"""TransportState and CipherState: the record-layer half of handshake/."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as ReferenceAESGCM

from handshake import (
    AESGCM,
    MAX_NONCE,
    CipherState,
    DecryptError,
    InvalidBufferError,
    InvalidNonceError,
    MalformedMessageError,
    MessageTooLongError,
    NonceExhaustedError,
    OneWayPatternError,
    TransportState,
)
from tests.noise_pairs import complete, make_pair


def _pair(name: str = "Noise_NN_25519_AESGCM_SHA256") -> tuple[TransportState, TransportState]:
    initiator, responder = make_pair(name)
    complete(initiator, responder)
    return initiator.into_transport(), responder.into_transport()


def test_messages_flow_both_ways_with_their_own_nonces() -> None:
    alice, bob = _pair()
    for i in range(3):
        assert bob.decrypt(alice.encrypt(b"ping %d" % i)) == b"ping %d" % i
    assert alice.decrypt(bob.encrypt(b"pong")) == b"pong"
    assert (alice.sending_nonce, alice.receiving_nonce) == (3, 1)
    assert (bob.sending_nonce, bob.receiving_nonce) == (1, 3)
    assert alice.handshake_hash == bob.handshake_hash


def test_replayed_and_reordered_messages_fail() -> None:
    alice, bob = _pair()
    first, second = alice.encrypt(b"one"), alice.encrypt(b"two")
    with pytest.raises(DecryptError):
        bob.decrypt(second)
    assert bob.decrypt(first) == b"one"
    with pytest.raises(DecryptError):
        bob.decrypt(first)
    assert bob.decrypt(second) == b"two"


def test_associated_data_must_match() -> None:
    alice, bob = _pair()
    with pytest.raises(DecryptError):
        bob.decrypt(alice.encrypt(b"x", ad=b"header 1"), ad=b"header 2")


def test_encrypt_into_and_decrypt_into_match_the_copying_calls() -> None:
    alice, bob = _pair()
    reference_alice, reference_bob = _pair()
    plaintext = bytes(range(256)) * 100
    out = bytearray(len(plaintext) + 16 + 7)
    written = alice.encrypt_into(memoryview(plaintext), out)
    assert written == len(plaintext) + 16
    assert out[written:] == bytes(7), "nothing written past the ciphertext"
    assert bob.decrypt(out[:written]) == plaintext

    record = reference_alice.encrypt(plaintext)
    plain = bytearray(len(plaintext))
    assert reference_bob.decrypt_into(record, plain) == len(plaintext)
    assert plain == plaintext


def test_decrypt_into_refuses_to_decrypt_in_place() -> None:
    alice, bob = _pair()
    buffer = bytearray(alice.encrypt(b"in place"))
    sealed = bytes(buffer)
    view = memoryview(buffer)
    with pytest.raises(InvalidBufferError, match="ciphertext and out overlap"):
        bob.decrypt_into(view, view)
    assert buffer == sealed, "nothing written"
    assert bob.receiving_nonce == 0
    out = bytearray(len(sealed))
    assert out[: bob.decrypt_into(view, out)] == b"in place"


def test_encrypt_into_refuses_to_encrypt_in_place() -> None:
    alice, bob = _pair()
    buffer = bytearray(b"in place" + bytes(16))
    view = memoryview(buffer)
    with pytest.raises(InvalidBufferError, match="plaintext and out overlap"):
        alice.encrypt_into(view[:8], view)
    assert alice.sending_nonce == 0
    out = bytearray(24)
    assert alice.encrypt_into(view[:8], out) == 24
    assert bob.decrypt(out) == b"in place"


@pytest.mark.parametrize(
    ("data", "out", "overlapping"),
    [
        (slice(0, 10), slice(9, 35), True),  # on the input's last byte
        (slice(30, 40), slice(5, 31), True),  # on the input's first byte
        (slice(20, 30), slice(10, 36), True),  # around the input
        (slice(0, 10), slice(10, 36), False),  # adjacent: allowed
        (slice(36, 46), slice(10, 36), False),
    ],
)
@pytest.mark.parametrize("readonly", [False, True], ids=["writable", "read-only input"])
def test_overlap_is_judged_by_memory_not_by_buffer(
    data: slice, out: slice, overlapping: bool, readonly: bool
) -> None:
    # Views of one bytearray, as a record layer would cut them: only those
    # that share bytes are refused, whatever the version of cryptography.
    cipher = CipherState(AESGCM, bytes(32))
    shared = memoryview(bytearray(64))
    source = shared[data].toreadonly() if readonly else shared[data]
    if overlapping:
        with pytest.raises(InvalidBufferError, match="overlap"):
            cipher.encrypt_into(b"", source, shared[out])
        assert cipher.n == 0
    else:
        assert cipher.encrypt_into(b"", source, shared[out]) == 26
        assert cipher.n == 1


def test_an_unkeyed_cipher_state_refuses_overlap_too() -> None:
    cipher = CipherState(AESGCM)
    buffer = memoryview(bytearray(b"handshake payload"))
    with pytest.raises(InvalidBufferError, match="overlap"):
        cipher.encrypt_into(b"", buffer[:9], buffer[4:])
    with pytest.raises(InvalidBufferError, match="overlap"):
        cipher.decrypt_into(b"", buffer[4:], buffer)
    out = bytearray(9)
    assert cipher.encrypt_into(b"", buffer[:9], memoryview(out)) == 9
    assert out == b"handshake"


def test_decrypt_into_failure_keeps_the_nonce() -> None:
    alice, bob = _pair()
    record = bytearray(alice.encrypt(b"secret"))
    record[0] ^= 1
    out = bytearray(64)
    with pytest.raises(DecryptError):
        bob.decrypt_into(record, out)
    assert bob.receiving_nonce == 0
    record[0] ^= 1
    assert out[: bob.decrypt_into(record, out)] == b"secret"


def test_decrypt_into_rejects_a_record_shorter_than_a_tag() -> None:
    _, bob = _pair()
    with pytest.raises(DecryptError, match="shorter than an authentication tag"):
        bob.decrypt_into(bytes(15), bytearray(16))


def test_into_buffers_are_checked() -> None:
    alice, _ = _pair()
    with pytest.raises(InvalidBufferError, match="needs 21"):
        alice.encrypt_into(b"hello", bytearray(20))
    with pytest.raises(InvalidBufferError, match="writable"):
        alice.encrypt_into(b"hello", bytes(21))  # type: ignore[arg-type]
    assert alice.sending_nonce == 0


def test_the_noise_size_limit() -> None:
    alice, bob = _pair()
    assert len(alice.encrypt(bytes(65519))) == 65535
    with pytest.raises(MessageTooLongError):
        alice.encrypt(bytes(65520))
    with pytest.raises(MalformedMessageError):
        bob.decrypt(bytes(65536))


def test_one_way_patterns_only_carry_initiator_traffic() -> None:
    alice, bob = _pair("Noise_X_25519_ChaChaPoly_SHA256")
    assert bob.decrypt(alice.encrypt(b"one way")) == b"one way"
    with pytest.raises(OneWayPatternError, match="can only receive"):
        bob.encrypt(b"reply")
    with pytest.raises(OneWayPatternError, match="can only send"):
        alice.decrypt(b"\x00" * 16)
    assert bob.sending_nonce is None


def test_rekey_follows_the_spec() -> None:
    # Independently: REKEY(k) = ENCRYPT(k, 2**64-1, "", 32 zero bytes)[:32].
    state = CipherState(AESGCM, bytes(range(32)))
    state.set_nonce(5)
    state.rekey()
    new_key = ReferenceAESGCM(bytes(range(32))).encrypt(
        bytes(4) + MAX_NONCE.to_bytes(8, "big"), bytes(32), b""
    )[:32]
    assert state.n == 5, "REKEY keeps the nonce"
    expected = ReferenceAESGCM(new_key).encrypt(bytes(4) + (5).to_bytes(8, "big"), b"m", b"")
    assert state.encrypt_with_ad(b"", b"m") == expected


def test_rekey_must_happen_on_both_sides() -> None:
    alice, bob = _pair()
    alice.rekey_outgoing()
    bob.rekey_incoming()
    assert bob.decrypt(alice.encrypt(b"after rekey")) == b"after rekey"
    alice.rekey_outgoing()
    with pytest.raises(DecryptError):
        bob.decrypt(alice.encrypt(b"peer did not rekey"))


def test_nonce_exhaustion() -> None:
    state = CipherState(AESGCM, bytes(32))
    state.set_nonce(MAX_NONCE - 1)
    state.encrypt_with_ad(b"", b"the last message")
    with pytest.raises(NonceExhaustedError):
        state.encrypt_with_ad(b"", b"one too many")
    state.rekey()
    with pytest.raises(NonceExhaustedError):
        state.encrypt_with_ad(b"", b"rekey does not reset the counter")
    assert state.n == MAX_NONCE


def test_without_a_key_a_cipher_state_passes_data_through() -> None:
    state = CipherState(AESGCM)
    assert not state.has_key()
    assert state.encrypt_with_ad(b"ad", b"clear") == b"clear"
    assert state.decrypt_with_ad(b"ad", b"clear") == b"clear"
    assert state.n == 0


@pytest.mark.parametrize("nonce", [-1, 2**64, 1.5, "3"])
def test_set_nonce_refuses_what_is_not_a_64_bit_counter(nonce: object) -> None:
    state = CipherState(AESGCM, bytes(32))
    with pytest.raises(InvalidNonceError):
        state.set_nonce(nonce)  # type: ignore[arg-type]
    assert state.n == 0


def test_transport_states_cannot_be_copied() -> None:
    alice, _ = _pair()
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(alice)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(CipherState(AESGCM, bytes(32)))
