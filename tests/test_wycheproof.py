"""Project Wycheproof vectors against the primitives handshake/ wraps.

The AEAD vectors run through CipherState itself, with a cipher whose nonce
function returns the vector's IV, so our key handling, tag mapping and
``*_into`` paths see every edge case; the nonce *encodings* are checked by
the Noise vectors and test_cipher_nonce_encodings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from handshake import (
    AESGCM,
    CHACHAPOLY,
    SHA256,
    SHA512,
    X25519,
    CipherFunction,
    CipherState,
    DecryptError,
    HashFunction,
    InvalidPublicKeyError,
)
from tests.vectors import wycheproof_tests

Case = tuple[dict[str, Any], dict[str, Any]]


def _ids(cases: list[Case]) -> list[str]:
    return [f"tc{test['tcId']}" for _, test in cases]


X25519_CASES = wycheproof_tests("x25519_test.json")


@pytest.mark.parametrize(("group", "test"), X25519_CASES, ids=_ids(X25519_CASES))
def test_x25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    keypair = X25519.keypair_from_private(bytes.fromhex(test["private"]))
    public = bytes.fromhex(test["public"])
    if "ZeroSharedSecret" in test["flags"]:
        # RFC 7748 section 6.1 allows refusing these; Noise needs it.
        with pytest.raises(InvalidPublicKeyError):
            X25519.dh(keypair, public)
    else:
        assert X25519.dh(keypair, public).hex() == test["shared"]


def _aead_cases(filename: str) -> list[Case]:
    # Noise ciphers: 256-bit key, 96-bit nonce, 128-bit tag.
    return [
        (group, test)
        for group, test in wycheproof_tests(filename)
        if (group["keySize"], group["ivSize"], group["tagSize"]) == (256, 96, 128)
    ]


AEAD_CASES = [(CHACHAPOLY, case) for case in _aead_cases("chacha20_poly1305_test.json")] + [
    (AESGCM, case) for case in _aead_cases("aes_gcm_test.json")
]


@pytest.mark.parametrize(
    ("cipher", "case"),
    AEAD_CASES,
    ids=[f"{cipher.name}-tc{case[1]['tcId']}" for cipher, case in AEAD_CASES],
)
def test_aead(cipher: CipherFunction, case: Case) -> None:
    _, test = case
    iv = bytes.fromhex(test["iv"])
    with_vector_iv = dataclasses.replace(cipher, nonce=lambda _n: iv)
    key, aad = bytes.fromhex(test["key"]), bytes.fromhex(test["aad"])
    msg = bytes.fromhex(test["msg"])
    sealed = bytes.fromhex(test["ct"] + test["tag"])

    receiver = CipherState(with_vector_iv, key)
    if test["result"] == "invalid":
        with pytest.raises(DecryptError):
            receiver.decrypt_with_ad(aad, sealed)
        with pytest.raises(DecryptError):
            receiver.decrypt_into(aad, memoryview(sealed), memoryview(bytearray(len(msg))))
        assert receiver.n == 0, "a failed decryption must not consume a nonce"
        return

    assert CipherState(with_vector_iv, key).encrypt_with_ad(aad, msg) == sealed
    out = bytearray(len(sealed))
    assert CipherState(with_vector_iv, key).encrypt_into(aad, memoryview(msg), memoryview(out))
    assert out == sealed
    assert receiver.decrypt_with_ad(aad, sealed) == msg
    plain = bytearray(len(msg))
    receiver.set_nonce(0)
    receiver.decrypt_into(aad, memoryview(sealed), memoryview(plain))
    assert plain == msg


def test_the_aead_selection_is_not_empty() -> None:
    by_cipher = {
        name: sum(c.name == name for c, _ in AEAD_CASES) for name in ("ChaChaPoly", "AESGCM")
    }
    assert by_cipher == {"ChaChaPoly": 316, "AESGCM": 66}


HMAC_CASES = [(SHA256, case) for case in wycheproof_tests("hmac_sha256_test.json")] + [
    (SHA512, case) for case in wycheproof_tests("hmac_sha512_test.json")
]


@pytest.mark.parametrize(
    ("hash_", "case"),
    HMAC_CASES,
    ids=[f"{h.name}-tc{case[1]['tcId']}" for h, case in HMAC_CASES],
)
def test_hmac(hash_: HashFunction, case: Case) -> None:
    group, test = case
    tag = hash_.hmac(bytes.fromhex(test["key"]), bytes.fromhex(test["msg"]))
    truncated = tag[: group["tagSize"] // 8].hex()
    if test["result"] == "valid":
        assert truncated == test["tag"]
    else:
        assert truncated != test["tag"]


HKDF_CASES = [
    (hash_, (group, test))
    for hash_, filename in ((SHA256, "hkdf_sha256_test.json"), (SHA512, "hkdf_sha512_test.json"))
    for group, test in wycheproof_tests(filename)
    # Noise's HKDF has an empty info string and at most three HASHLEN outputs.
    if test["info"] == "" and test["size"] <= 3 * hash_.hashlen
]


@pytest.mark.parametrize(
    ("hash_", "case"),
    HKDF_CASES,
    ids=[f"{h.name}-tc{case[1]['tcId']}" for h, case in HKDF_CASES],
)
def test_hkdf(hash_: HashFunction, case: Case) -> None:
    _, test = case
    assert test["result"] == "valid"
    outputs = hash_.hkdf(bytes.fromhex(test["salt"]), bytes.fromhex(test["ikm"]), 3)
    assert b"".join(outputs)[: test["size"]].hex() == test["okm"]


def test_the_hkdf_selection_covers_both_hashes() -> None:
    assert {h.name for h, _ in HKDF_CASES} == {"SHA256", "SHA512"}
    assert len(HKDF_CASES) >= 60


def test_cipher_nonce_encodings() -> None:
    # Section 12.3 and 12.4: 32 zero bits, then n little-endian (ChaChaPoly)
    # or big-endian (AESGCM).
    n = 0x0102030405060708
    assert CHACHAPOLY.nonce(n) == bytes(4) + bytes.fromhex("0807060504030201")
    assert AESGCM.nonce(n) == bytes(4) + bytes.fromhex("0102030405060708")
