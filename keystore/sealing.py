"""Private keys at rest: Argon2id and XChaCha20-Poly1305, via pynacl.

The passphrase is stretched with Argon2id (its parameters are stored with the
key, so they can grow later, and a file is opened with the ones it records)
into a key for XChaCha20-Poly1305, whose
associated data is the armour's headers: changing the name or public key
written beside the secret makes it fail to decrypt, not decrypt to a lie.
A key saved without a passphrase says so in its headers, and its public key
header is checked against the private key when loaded.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import ClassVar, Final, final

import nacl.exceptions
import nacl.pwhash
import nacl.utils
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from keystore.armor import Armored, armor
from keystore.errors import KeystoreCorruptError, KeystoreError, WrongPassphraseError

__all__ = [
    "ENCRYPTED",
    "UNENCRYPTED",
    "Argon2idCost",
    "is_encrypted",
    "open_secret",
    "seal_secret",
    "sealed_cost",
]

ENCRYPTED: Final = "argon2id-xchacha20poly1305"
UNENCRYPTED: Final = "none"
# Parameters a file may ask for: room for libsodium's "sensitive" cost (and
# more passes), not enough for a planted file to make a load take all memory.
_MIN_OPS: Final = 1
_MAX_OPS: Final = 16
_MIN_MEM: Final = 8192
_MAX_MEM: Final = 1 << 30
_NONCE: Final = 24


@final
@dataclass(frozen=True, slots=True)
class Argon2idCost:
    """How much work Argon2id does to stretch a passphrase into a key.

    The three named costs are libsodium's: ``MODERATE`` (3 passes over 256
    MiB, the default for new files), ``SENSITIVE`` (4 passes over 1 GiB) and
    ``INTERACTIVE`` (2 passes over 64 MiB: for tests, or machines too small
    for the default). A file records the cost it was sealed with and is
    opened with that cost, whatever the default is now.
    """

    ops: int
    mem: int

    INTERACTIVE: ClassVar[Argon2idCost]
    MODERATE: ClassVar[Argon2idCost]
    SENSITIVE: ClassVar[Argon2idCost]

    def __post_init__(self) -> None:
        if type(self.ops) is not int or not _MIN_OPS <= self.ops <= _MAX_OPS:
            raise ValueError(f"Argon2id passes must be {_MIN_OPS} to {_MAX_OPS}, not {self.ops!r}")
        if type(self.mem) is not int or not _MIN_MEM <= self.mem <= _MAX_MEM:
            raise ValueError(
                f"Argon2id memory must be {_MIN_MEM} to {_MAX_MEM} bytes, not {self.mem!r}"
            )

    @classmethod
    def named(cls, name: str) -> Argon2idCost:
        """The cost called ``name``: "interactive", "moderate" or "sensitive".

        Raises:
            ValueError: no cost has that name.
        """
        try:
            return _NAMED[name]
        except KeyError:
            raise ValueError(
                f"unknown Argon2id cost {name!r}: use one of {', '.join(_NAMED)}"
            ) from None


Argon2idCost.INTERACTIVE = Argon2idCost(
    nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
)
Argon2idCost.MODERATE = Argon2idCost(
    nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE
)
Argon2idCost.SENSITIVE = Argon2idCost(
    nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
)
_NAMED: Final = {
    "interactive": Argon2idCost.INTERACTIVE,
    "moderate": Argon2idCost.MODERATE,
    "sensitive": Argon2idCost.SENSITIVE,
}


def _associated_data(headers: dict[str, str]) -> bytes:
    return "\n".join(f"{key}: {value}" for key, value in headers.items()).encode("utf-8")


def _stretch(passphrase: bytes, salt: bytes, cost: Argon2idCost, source: str) -> bytes:
    try:
        key: bytes = nacl.pwhash.argon2id.kdf(
            32, passphrase, salt, opslimit=cost.ops, memlimit=cost.mem
        )
    except (MemoryError, nacl.exceptions.RuntimeError):
        # libsodium fails this way when it cannot have the memory.
        raise KeystoreError(
            f"cannot derive the key of {source}: Argon2id could not have "
            f"{cost.mem >> 20} MiB of memory"
        ) from None
    return key


def seal_secret(
    label: str,
    secret: bytes,
    headers: dict[str, str],
    passphrase: bytes | None,
    cost: Argon2idCost = Argon2idCost.MODERATE,
) -> bytes:
    """Armour ``secret``, encrypted under ``passphrase`` unless it is None,
    with the passphrase stretched at ``cost``."""
    headers = dict(headers)
    if passphrase is None:
        headers["Encryption"] = UNENCRYPTED
        return armor(label, secret, headers)
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    headers["Encryption"] = ENCRYPTED
    headers["Argon2id"] = f"ops={cost.ops},mem={cost.mem}"
    headers["Salt"] = base64.b64encode(salt).decode("ascii")
    nonce = nacl.utils.random(_NONCE)
    key = _stretch(passphrase, salt, cost, headers.get("Name") or label.lower())
    body = nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(
        secret, _associated_data(headers), nonce, key
    )
    return armor(label, body, headers)


def is_encrypted(armored: Armored) -> bool:
    return armored.headers.get("Encryption") != UNENCRYPTED


def sealed_cost(armored: Armored, source: str) -> Argon2idCost:
    """The Argon2id cost an encrypted file records, so that resealing it
    keeps the cost its owner chose.

    Raises:
        KeystoreCorruptError: the header is damaged, or out of bounds.
    """
    try:
        params = dict(item.split("=", 1) for item in armored.headers["Argon2id"].split(","))
        ops, mem = int(params["ops"]), int(params["mem"])
    except (KeyError, ValueError):
        raise KeystoreCorruptError(f"{source} has damaged encryption headers") from None
    try:
        return Argon2idCost(ops, mem)
    except ValueError:
        raise KeystoreCorruptError(
            f"{source} asks for Argon2id parameters out of range (ops={ops}, mem={mem}; "
            f"at most ops={_MAX_OPS}, mem={_MAX_MEM})"
        ) from None


def open_secret(armored: Armored, passphrase: bytes | None, source: str) -> bytes:
    """The secret in ``armored``.

    Raises:
        WrongPassphraseError: no passphrase was given for an encrypted key, or
            it is the wrong one.
        KeystoreCorruptError: the file's headers or body are damaged, or
            it asks for Argon2id parameters out of bounds (a planted file
            asking for a terabyte of memory).
    """
    encryption = armored.headers.get("Encryption")
    if encryption == UNENCRYPTED:
        return armored.body
    if encryption != ENCRYPTED:
        raise KeystoreCorruptError(f"{source} uses an unknown encryption {encryption!r}")
    if passphrase is None:
        raise WrongPassphraseError(f"{source} is encrypted: a passphrase is needed")
    cost = sealed_cost(armored, source)
    try:
        salt = base64.b64decode(armored.headers["Salt"], validate=True)
    except (KeyError, ValueError, binascii.Error):
        raise KeystoreCorruptError(f"{source} has damaged encryption headers") from None
    if len(salt) != 16:
        raise KeystoreCorruptError(
            f"{source} has damaged encryption headers: the salt is not 16 bytes"
        )
    if len(armored.body) < _NONCE + 16:
        raise KeystoreCorruptError(f"{source} is damaged: its encrypted body is too short")
    key = _stretch(passphrase, salt, cost, source)
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
