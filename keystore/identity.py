"""Identities: a static X25519 key pair with an optional name."""

from __future__ import annotations

from typing import Final, final

from handshake import X25519, KeyPair
from keystore.certificate import Certificate
from keystore.encoding import fingerprint

__all__ = ["Identity"]


@final
class Identity:
    """Who a process is: its static key pair (the Noise ``s``), a name, and
    optionally a CA's certificate for the key, which it shows in handshakes.

    The private key never appears in ``repr``, ``str`` or error messages.
    """

    __slots__ = ("_keypair", "certificate", "name")

    def __init__(
        self, keypair: KeyPair, name: str | None = None, certificate: Certificate | None = None
    ) -> None:
        if certificate is not None and certificate.subject_key != keypair.public:
            raise ValueError("the certificate is for another key")
        self._keypair: Final = keypair
        self.name: Final = name
        self.certificate: Final = certificate

    def with_certificate(self, certificate: Certificate) -> Identity:
        """This identity, presenting ``certificate`` (which must be for its key)."""
        return Identity(self._keypair, self.name, certificate)

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
