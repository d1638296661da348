"""Identities: a static X25519 key pair with an optional name."""

from __future__ import annotations

import base64
import hashlib
from typing import Final, final

from handshake import X25519, KeyPair

__all__ = ["Identity", "fingerprint"]


def fingerprint(public_key: bytes) -> str:
    """The SSH-style fingerprint of a public key: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@final
class Identity:
    """Who a process is: its static key pair (the Noise ``s``) and a name.

    The private key never appears in ``repr``, ``str`` or error messages.
    """

    __slots__ = ("_keypair", "name")

    def __init__(self, keypair: KeyPair, name: str | None = None) -> None:
        self._keypair: Final = keypair
        self.name: Final = name

    @classmethod
    def generate(cls, name: str | None = None) -> Identity:
        """A new identity with a fresh random key."""
        return cls(X25519.generate_keypair(), name)

    @classmethod
    def from_private_bytes(
        cls, key: bytes | bytearray | memoryview, name: str | None = None
    ) -> Identity:
        """An identity from a raw 32-byte X25519 private key.

        Raises:
            handshake.InvalidKeyError: (a ValueError) the key is not 32 bytes.
        """
        return cls(X25519.keypair_from_private(key), name)

    @property
    def keypair(self) -> KeyPair:
        return self._keypair

    @property
    def public_key(self) -> bytes:
        return self._keypair.public

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._keypair.public)

    def private_bytes(self) -> bytes:
        """The raw private key, for storing it (encrypted) in a keystore."""
        return self._keypair.private_bytes()

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, fingerprint={self.fingerprint!r})"
