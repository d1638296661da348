"""Private keys at rest: Argon2id and XChaCha20-Poly1305, via pynacl.

The passphrase is stretched with Argon2id (its parameters are stored with the
key, so they can grow later) into a key for XChaCha20-Poly1305, whose
associated data is the armour's headers: changing the name or public key
written beside the secret makes it fail to decrypt, not decrypt to a lie.
A key saved without a passphrase says so in its headers, and its public key
header is checked against the private key when loaded.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

import nacl.exceptions
import nacl.pwhash
import nacl.utils
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from keystore.armor import Armored, armor
from keystore.errors import KeystoreCorruptError, WrongPassphraseError

__all__ = ["ENCRYPTED", "UNENCRYPTED", "open_secret", "seal_secret"]

ENCRYPTED: Final = "argon2id-xchacha20poly1305"
UNENCRYPTED: Final = "none"
_OPS: Final = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM: Final = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# Parameters a file may ask for: enough headroom to raise the defaults, not
# enough for a planted file to make a load take all memory.
_MAX_OPS: Final = 16
_MAX_MEM: Final = 1 << 30
_NONCE: Final = 24


def _associated_data(headers: dict[str, str]) -> bytes:
    return "\n".join(f"{key}: {value}" for key, value in headers.items()).encode("utf-8")


def _stretch(passphrase: bytes, salt: bytes, ops: int, mem: int) -> bytes:
    key: bytes = nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem)
    return key


def seal_secret(
    label: str, secret: bytes, headers: dict[str, str], passphrase: bytes | None
) -> bytes:
    """Armour ``secret``, encrypted under ``passphrase`` unless it is None."""
    headers = dict(headers)
    if passphrase is None:
        headers["Encryption"] = UNENCRYPTED
        return armor(label, secret, headers)
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    headers["Encryption"] = ENCRYPTED
    headers["Argon2id"] = f"ops={_OPS},mem={_MEM}"
    headers["Salt"] = base64.b64encode(salt).decode("ascii")
    nonce = nacl.utils.random(_NONCE)
    key = _stretch(passphrase, salt, _OPS, _MEM)
    body = nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(
        secret, _associated_data(headers), nonce, key
    )
    return armor(label, body, headers)


def is_encrypted(armored: Armored) -> bool:
    return armored.headers.get("Encryption") != UNENCRYPTED


def open_secret(armored: Armored, passphrase: bytes | None, source: str) -> bytes:
    """The secret in ``armored``.

    Raises:
        WrongPassphraseError: no passphrase was given for an encrypted key, or
            it is the wrong one.
        KeystoreCorruptError: the file's headers or body are damaged.
    """
    encryption = armored.headers.get("Encryption")
    if encryption == UNENCRYPTED:
        return armored.body
    if encryption != ENCRYPTED:
        raise KeystoreCorruptError(f"{source} uses an unknown encryption {encryption!r}")
    if passphrase is None:
        raise WrongPassphraseError(f"{source} is encrypted: a passphrase is needed")
    try:
        params = dict(item.split("=", 1) for item in armored.headers["Argon2id"].split(","))
        ops, mem = int(params["ops"]), int(params["mem"])
        salt = base64.b64decode(armored.headers["Salt"], validate=True)
    except (KeyError, ValueError, binascii.Error):
        raise KeystoreCorruptError(f"{source} has damaged encryption headers") from None
    if not (1 <= ops <= _MAX_OPS and 8192 <= mem <= _MAX_MEM) or len(salt) != 16:
        raise KeystoreCorruptError(f"{source} asks for Argon2id parameters out of range")
    if len(armored.body) < _NONCE + 16:
        raise KeystoreCorruptError(f"{source} is damaged: its encrypted body is too short")
    key = _stretch(passphrase, salt, ops, mem)
    nonce, ciphertext = armored.body[:_NONCE], armored.body[_NONCE:]
    try:
        secret: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, _associated_data(armored.headers), nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise WrongPassphraseError(
            f"wrong passphrase for {source} (or the file was altered)"
        ) from None
    return secret
