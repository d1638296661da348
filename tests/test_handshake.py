"""Behaviour of the handshake state machine beyond the vectors: every pattern
family, the public API's input types, and one typed error per misuse."""

from __future__ import annotations

import copy
import os
import pickle

import pytest

from handshake import (
    PATTERNS,
    X25519,
    DecryptError,
    HandshakeError,
    HandshakeFinishedError,
    HandshakeNotFinishedError,
    HandshakeState,
    InvalidKeyError,
    InvalidPublicKeyError,
    KeyPair,
    MalformedMessageError,
    MessageTooLongError,
    MissingKeyError,
    MissingPskError,
    NoiseProtocol,
    PeerError,
    ProtocolNameError,
    SymmetricState,
    UnusedKeyError,
    UsageError,
    WrongTurnError,
)
from tests.noise_pairs import PROTOCOL_NAMES, complete, make_pair
from tests.vectors import wycheproof_tests

# A point of order 8 on Curve25519 (from the list of RFC 7748 low-order points).
LOW_ORDER_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def test_the_spec_patterns_are_all_here() -> None:
    one_way = {"N", "K", "X"}
    fundamental = {"NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX"}
    deferred = {
        "NK1", "NX1", "X1N", "X1K", "XK1", "X1K1", "X1X", "XX1", "X1X1", "K1N", "K1K", "KK1",
        "K1K1", "K1X", "KX1", "K1X1", "I1N", "I1K", "IK1", "I1K1", "I1X", "IX1", "I1X1",
    }  # fmt: skip
    assert set(PATTERNS) == one_way | fundamental | deferred
    assert all(PATTERNS[name].one_way for name in one_way)


@pytest.mark.parametrize("protocol_name", PROTOCOL_NAMES)
def test_every_pattern_completes_and_carries_payloads(protocol_name: str) -> None:
    initiator, responder = make_pair(protocol_name, prologue=b"securesess/1\n")
    count = len(initiator.protocol.pattern.messages)
    payloads = [f"payload {i}".encode() for i in range(count)]
    assert complete(initiator, responder, payloads) == payloads
    assert responder.is_finished
    assert initiator.handshake_hash == responder.handshake_hash
    assert len(initiator.handshake_hash) == initiator.protocol.hash.hashlen

    alice, bob = initiator.into_transport(), responder.into_transport()
    assert bob.decrypt(alice.encrypt(b"to the responder")) == b"to the responder"
    if count > 1:
        assert alice.decrypt(bob.encrypt(b"to the initiator")) == b"to the initiator"


def test_each_side_learns_the_others_static_key() -> None:
    initiator_key, responder_key = X25519.generate_keypair(), X25519.generate_keypair()
    name = "Noise_XX_25519_ChaChaPoly_BLAKE2s"
    initiator = HandshakeState(name, initiator=True, s=initiator_key.private_bytes())
    responder = HandshakeState(name, initiator=False, s=responder_key.private_bytes())
    before = initiator.remote_static
    complete(initiator, responder)
    assert before is None
    assert initiator.remote_static == responder_key.public
    assert responder.remote_static == initiator_key.public


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_every_input_accepts_bytes_bytearray_and_memoryview(buffer_type: type) -> None:
    key = X25519.generate_keypair()
    psk = os.urandom(32)
    name = "Noise_NKpsk2_25519_AESGCM_SHA256"
    initiator = HandshakeState(
        name,
        initiator=True,
        prologue=buffer_type(b"prologue"),
        rs=buffer_type(key.public),
        psks=[buffer_type(psk)],
    )
    responder = HandshakeState(
        name,
        initiator=False,
        prologue=buffer_type(b"prologue"),
        s=buffer_type(key.private_bytes()),
        psks=[buffer_type(psk)],
    )
    message = initiator.write_message(buffer_type(b"hello"))
    assert responder.read_message(buffer_type(message)) == b"hello"
    initiator.read_message(buffer_type(responder.write_message(buffer_type(b""))))
    alice, bob = initiator.into_transport(), responder.into_transport()
    record = alice.encrypt(buffer_type(b"data"), ad=buffer_type(b"ad"))
    assert bob.decrypt(buffer_type(record), ad=buffer_type(b"ad")) == b"data"


def test_a_str_payload_is_a_type_error() -> None:
    initiator, _ = make_pair("Noise_NN_25519_AESGCM_SHA256")
    with pytest.raises(TypeError, match="payload must be bytes-like, not str"):
        initiator.write_message("hello")  # type: ignore[arg-type]


# -- misuse: one precise UsageError each --------------------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("Noise_XX_25519_AESGCM", "Noise_<pattern>_<dh>_<cipher>_<hash>"),
        ("noise_XX_25519_AESGCM_SHA256", "Noise_<pattern>_<dh>_<cipher>_<hash>"),
        ("Noise_ZZ_25519_AESGCM_SHA256", "unknown handshake pattern 'ZZ'"),
        ("Noise_xx_25519_AESGCM_SHA256", "unknown handshake pattern"),
        ("Noise_XX_448_AESGCM_SHA256", "unsupported DH function '448'"),
        ("Noise_XX_25519_AES256_SHA256", "unsupported cipher 'AES256'"),
        ("Noise_XX_25519_AESGCM_MD5", "unsupported hash 'MD5'"),
        ("Noise_XXfallback_25519_AESGCM_SHA256", "unsupported pattern modifier 'fallback'"),
        ("Noise_XXpsk_25519_AESGCM_SHA256", "unsupported pattern modifier 'psk'"),
        ("Noise_XXpsk4_25519_AESGCM_SHA256", "psk4 is past the end of XX"),
        ("Noise_XXpsk0+psk0_25519_AESGCM_SHA256", "ascending order without repeats"),
        ("Noise_XXpsk3+psk0_25519_AESGCM_SHA256", "ascending order without repeats"),
        ("Noise_XXpsk0+_25519_AESGCM_SHA256", "unsupported pattern modifier ''"),
        ("Noise_XX_25519_AESGCM_SHA256" + "x" * 300, "at most 255"),
        ("Noise_XX_25519_AESGCM_SHA256é", "ASCII"),
    ],
)
def test_bad_protocol_names(name: str, match: str) -> None:
    with pytest.raises(ProtocolNameError, match=match) as raised:
        HandshakeState(name, initiator=True)
    assert isinstance(raised.value, ValueError)


def test_a_protocol_name_is_parsed_once() -> None:
    name = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"
    assert NoiseProtocol.parse(name) is NoiseProtocol.parse(name)


def test_missing_static_key() -> None:
    with pytest.raises(MissingKeyError, match="initiator's static key s"):
        HandshakeState("Noise_XX_25519_AESGCM_SHA256", initiator=True)


def test_missing_remote_static_key() -> None:
    with pytest.raises(MissingKeyError, match="rs in advance"):
        HandshakeState("Noise_NK_25519_AESGCM_SHA256", initiator=True)


def test_rs_is_refused_where_the_peer_sends_its_key() -> None:
    # Silently ignoring it would look like pinning while pinning nothing.
    key = X25519.generate_keypair()
    with pytest.raises(UnusedKeyError, match="remote_static"):
        HandshakeState(
            "Noise_XX_25519_AESGCM_SHA256",
            initiator=True,
            s=key.private_bytes(),
            rs=key.public,
        )


def test_static_key_refused_where_the_pattern_has_none() -> None:
    with pytest.raises(UnusedKeyError):
        HandshakeState("Noise_NN_25519_AESGCM_SHA256", initiator=True, s=os.urandom(32))


def test_missing_and_extra_psks() -> None:
    with pytest.raises(MissingPskError, match="takes 2 PSK"):
        HandshakeState("Noise_NNpsk0+psk2_25519_AESGCM_SHA256", initiator=True, psks=[bytes(32)])
    with pytest.raises(UnusedKeyError, match="takes 0 PSK"):
        HandshakeState("Noise_NN_25519_AESGCM_SHA256", initiator=True, psks=[bytes(32)])
    with pytest.raises(TypeError, match="sequence of keys"):
        HandshakeState("Noise_NNpsk0_25519_AESGCM_SHA256", initiator=True, psks=bytes(32))  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["s", "psk", "fixed_ephemeral_for_testing_only"])
def test_keys_of_the_wrong_length(field: str) -> None:
    short = b"\x01" * 31
    arguments: dict[str, object] = {
        "s": {"s": short},
        "psk": {"psks": [short]},
        "fixed_ephemeral_for_testing_only": {"fixed_ephemeral_for_testing_only": short},
    }[field]  # type: ignore[assignment]
    name = "Noise_NNpsk0_25519_AESGCM_SHA256" if field == "psk" else "Noise_XX_25519_AESGCM_SHA256"
    if field == "fixed_ephemeral_for_testing_only":
        arguments["s"] = bytes(32)
    with pytest.raises(InvalidKeyError, match="must be 32 bytes, got 31") as raised:
        HandshakeState(name, initiator=True, **arguments)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)
    assert short.hex() not in str(raised.value)


def test_wrong_turn() -> None:
    initiator, responder = make_pair("Noise_XX_25519_AESGCM_SHA256")
    with pytest.raises(WrongTurnError, match=r"call write_message\(\)"):
        initiator.read_message(b"\x00" * 32)
    with pytest.raises(WrongTurnError, match=r"call read_message\(\)"):
        responder.write_message()


def test_after_the_handshake() -> None:
    initiator, responder = make_pair("Noise_NN_25519_AESGCM_SHA256")
    with pytest.raises(HandshakeNotFinishedError, match="2 handshake message"):
        initiator.into_transport()
    complete(initiator, responder)
    with pytest.raises(HandshakeFinishedError):
        initiator.write_message()
    with pytest.raises(HandshakeFinishedError):
        responder.read_message(b"")
    initiator.into_transport()
    with pytest.raises(HandshakeFinishedError, match="already called"):
        initiator.into_transport()


def test_a_payload_too_large_for_one_message() -> None:
    initiator, responder = make_pair("Noise_NN_25519_AESGCM_SHA256")
    # "-> e" carries 32 bytes of key, so 65503 payload bytes fill a message.
    with pytest.raises(MessageTooLongError, match="room for 65503 payload bytes"):
        initiator.write_message(bytes(65504))
    message = initiator.write_message(bytes(65503))
    assert len(message) == 65535
    assert responder.read_message(message) == bytes(65503)


def test_errors_split_by_blame_under_one_base() -> None:
    assert issubclass(UsageError, HandshakeError)
    assert issubclass(PeerError, HandshakeError)
    assert issubclass(DecryptError, PeerError)
    assert issubclass(WrongTurnError, UsageError)


# -- the peer's mistakes: typed, and the state is left unchanged ---------------------


def _snapshot(state: HandshakeState) -> tuple[object, ...]:
    return (state.handshake_hash, state.remote_static, state.is_my_turn, state.is_finished)


def test_a_tampered_message_changes_nothing() -> None:
    initiator, responder = make_pair("Noise_XX_25519_AESGCM_SHA256")
    responder.read_message(initiator.write_message())
    genuine = responder.write_message(b"server hello")
    tampered = bytearray(genuine)
    tampered[-1] ^= 0x80
    before = _snapshot(initiator)
    with pytest.raises(DecryptError) as raised:
        initiator.read_message(tampered)
    assert raised.value.__cause__ is not None  # chained from cryptography's InvalidTag
    assert _snapshot(initiator) == before
    assert initiator.read_message(genuine) == b"server hello"
    responder.read_message(initiator.write_message())
    assert initiator.handshake_hash == responder.handshake_hash


@pytest.mark.parametrize("cut", [0, 31, 32, 47, 80, 95])
def test_a_truncated_message_is_malformed(cut: int) -> None:
    initiator, responder = make_pair("Noise_XX_25519_AESGCM_SHA256")
    responder.read_message(initiator.write_message())
    genuine = responder.write_message()
    assert len(genuine) == 96  # e (32) + encrypted s (48) + tag (16)
    before = _snapshot(initiator)
    with pytest.raises(MalformedMessageError, match="too short"):
        initiator.read_message(genuine[:cut])
    assert _snapshot(initiator) == before
    initiator.read_message(genuine)


def test_an_oversized_message_is_refused() -> None:
    _, responder = make_pair("Noise_NN_25519_AESGCM_SHA256")
    with pytest.raises(MalformedMessageError, match="65536 bytes"):
        responder.read_message(bytes(65536))


def test_low_order_keys_are_exactly_wycheproofs_zero_secret_keys() -> None:
    zero_secret = {
        bytes.fromhex(test["public"])
        for _, test in wycheproof_tests("x25519_test.json")
        if "ZeroSharedSecret" in test["flags"]
    }
    others = {
        bytes.fromhex(test["public"])
        for _, test in wycheproof_tests("x25519_test.json")
        if "ZeroSharedSecret" not in test["flags"]
    }
    assert len(zero_secret) == 14  # 31 tests, 14 distinct keys
    assert all(X25519.is_low_order(key) for key in zero_secret)
    assert not any(X25519.is_low_order(key) for key in others)
    assert X25519.is_low_order(LOW_ORDER_POINT)


def test_a_low_order_rs_is_refused_at_construction() -> None:
    with pytest.raises(InvalidKeyError, match="low-order"):
        HandshakeState("Noise_NK_25519_AESGCM_SHA256", initiator=True, rs=bytes(32))


def test_a_low_order_static_key_is_refused_by_the_read_that_brings_it() -> None:
    # In NX1 the responder's "s" arrives in message 2 but is first used in
    # message 3; the read of message 2 must already refuse it.
    name = "Noise_NX1_25519_AESGCM_SHA256"
    initiator = HandshakeState(name, initiator=True)
    responder_e = X25519.generate_keypair()
    message_1 = initiator.write_message()
    forged = _forge_nx1_message_2(name, message_1, responder_e)
    before = _snapshot(initiator)
    with pytest.raises(InvalidPublicKeyError, match="static key is a low-order point"):
        initiator.read_message(forged)
    assert _snapshot(initiator) == before


def _forge_nx1_message_2(name: str, message_1: bytes, responder_e: KeyPair) -> bytes:
    """Message 2 of NX1 ("<- e, ee, s") from a responder whose s is low order,
    built step by step from the spec's SymmetricState operations."""
    protocol = NoiseProtocol.parse(name)
    sym = SymmetricState(protocol)
    sym.mix_hash(b"")  # empty prologue
    sym.mix_hash(message_1[:32])  # initiator's e
    sym.mix_hash(message_1[32:])  # its empty payload
    sym.mix_hash(responder_e.public)
    sym.mix_key(X25519.dh(responder_e, message_1[:32]))
    encrypted_s = sym.encrypt_and_hash(LOW_ORDER_POINT)
    return responder_e.public + encrypted_s + sym.encrypt_and_hash(b"")


def test_a_low_order_ephemeral_is_refused() -> None:
    initiator, responder = make_pair("Noise_NN_25519_AESGCM_SHA256")
    responder.read_message(initiator.write_message())
    before = _snapshot(initiator)
    with pytest.raises(InvalidPublicKeyError, match="low-order"):
        initiator.read_message(LOW_ORDER_POINT)
    assert _snapshot(initiator) == before


def test_a_wrong_psk_fails_authentication() -> None:
    name = "Noise_NNpsk0_25519_AESGCM_SHA256"
    initiator, _ = make_pair(name, psks=[b"\x01" * 32])
    _, responder = make_pair(name, psks=[b"\x02" * 32])
    with pytest.raises(DecryptError):
        responder.read_message(initiator.write_message(b"hello"))


def test_psks_are_used_in_the_order_of_their_positions() -> None:
    first, second = b"\x01" * 32, b"\x02" * 32
    initiator, responder = make_pair("Noise_XXpsk0+psk3_25519_AESGCM_SHA256", psks=[first, second])
    complete(initiator, responder)
    initiator, _ = make_pair("Noise_XXpsk0+psk3_25519_AESGCM_SHA256", psks=[first, second])
    _, responder = make_pair("Noise_XXpsk0+psk3_25519_AESGCM_SHA256", psks=[second, first])
    with pytest.raises(DecryptError):
        complete(initiator, responder)


def test_the_prologue_must_match() -> None:
    name = "Noise_NN_25519_AESGCM_SHA256"
    initiator, _ = make_pair(name, prologue=b"securesess/1\nNoise_NN_25519_AESGCM_SHA256")
    _, responder = make_pair(name, prologue=b"securesess/1\nNoise_XX_25519_AESGCM_SHA256")
    responder.read_message(initiator.write_message())
    with pytest.raises(DecryptError):
        initiator.read_message(responder.write_message())


def test_psk_patterns_never_encrypt_before_an_ephemeral() -> None:
    # Section 9.3's validity rule, for every pattern and psk position we accept:
    # once a PSK is mixed in, a party sends encrypted data only after its "e".
    for name in PROTOCOL_NAMES:
        pattern = NoiseProtocol.parse(name).pattern
        psk_seen, sent_e = False, [False, False]
        for index, message in enumerate(pattern.messages):
            sender = index % 2
            for token in message:
                psk_seen |= token == "psk"
                sent_e[sender] |= token == "e"
                if token == "s":
                    assert sent_e[sender] or not psk_seen, name
            assert sent_e[sender] or not psk_seen, name


def test_no_key_material_in_reprs() -> None:
    key = X25519.generate_keypair()
    secret = key.private_bytes().hex()
    state = HandshakeState("Noise_XX_25519_AESGCM_SHA256", initiator=True, s=key.private_bytes())
    assert secret not in repr(key)
    assert secret not in repr(state)
    initiator, responder = make_pair("Noise_NN_25519_AESGCM_SHA256")
    complete(initiator, responder)
    transport = initiator.into_transport()
    assert "sent=0 received=0" in repr(transport)


def test_a_handshake_state_cannot_be_copied() -> None:
    # Two copies would encrypt different payloads under one key and nonce.
    initiator, _ = make_pair("Noise_XX_25519_AESGCM_SHA256")
    for duplicate in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied"):
            duplicate(initiator)


def test_a_key_pair_can_be_the_static_key() -> None:
    key = X25519.generate_keypair()
    state = HandshakeState("Noise_XX_25519_AESGCM_SHA256", initiator=True, s=key)
    assert state.local_static == key.public
    assert HandshakeState("Noise_NN_25519_AESGCM_SHA256", initiator=True).local_static is None


def test_the_transport_remembers_the_peer_and_the_spent_state_forgets_its_keys() -> None:
    initiator, responder = make_pair("Noise_XX_25519_AESGCM_SHA256")
    complete(initiator, responder)
    handshake_hash = initiator.handshake_hash
    transport = initiator.into_transport()
    assert transport.remote_static == initiator.remote_static == responder.local_static
    assert transport.handshake_hash == initiator.handshake_hash == handshake_hash
    assert initiator._symmetric.ck == b""
    assert not initiator._symmetric.cipher_state.has_key()
