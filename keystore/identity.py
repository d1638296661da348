"""Identities: a static X25519 key pair and an Ed25519 signing key, with an optional name."""

from __future__ import annotations

from typing import Final, final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from handshake import X25519, KeyPair
from keystore.certificate import Certificate
from keystore.encoding import fingerprint

__all__ = ["Identity"]


@final
class Identity:
    """Who a process is: its static key pair (the Noise ``s``), the Ed25519
    key it signs with, a name, and optionally a CA's certificate for the
    keys, which it shows in handshakes.

    The static key proves who is at the other end of a channel; the signing
    key proves who wrote a message, wherever it travelled. Every identity a
    :class:`~keystore.Keystore` makes or loads has both. One built in code
    from a raw static key alone (:meth:`from_private_bytes` without
    ``signing_key``) has none: its ``signing_key`` and
    ``signing_public_key`` are None, and it cannot take part where messages
    are signed.

    Neither private key appears in ``repr``, ``str`` or error messages.
    """

    __slots__ = ("_keypair", "_signing_key", "_signing_public", "certificate", "name")

    def __init__(
        self,
        keypair: KeyPair,
        name: str | None = None,
        certificate: Certificate | None = None,
        *,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        if signing_key is not None and not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError(
                f"signing_key is an Ed25519PrivateKey, not {type(signing_key).__name__}"
            )
        signing_public = (
            None if signing_key is None else signing_key.public_key().public_bytes_raw()
        )
        if certificate is not None:
            if certificate.subject_key != keypair.public:
                raise ValueError("the certificate is for another key")
            # A v1 certificate binds no signing key and goes with any; a v2
            # one would vouch for a signing key this identity does not hold.
            if certificate.signing_key is not None and certificate.signing_key != signing_public:
                raise ValueError("the certificate is for another signing key")
        self._keypair: Final = keypair
        self._signing_key: Final = signing_key
        self._signing_public: Final = signing_public
        self.name: Final = name
        self.certificate: Final = certificate

    def with_certificate(self, certificate: Certificate) -> Identity:
        """This identity, presenting ``certificate`` (which must be for its keys)."""
        return Identity(self._keypair, self.name, certificate, signing_key=self._signing_key)

    @classmethod
    def generate(cls, name: str | None = None) -> Identity:
        """A new identity with a fresh random static key and signing key."""
        return cls(X25519.generate_keypair(), name, signing_key=Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(
        cls,
        key: bytes | bytearray | memoryview,
        name: str | None = None,
        *,
        signing_key: bytes | bytearray | memoryview | None = None,
    ) -> Identity:
        """An identity from a raw 32-byte X25519 private key and, if given,
        a raw 32-byte Ed25519 private key (its seed).

        Raises:
            handshake.InvalidKeyError: (a ValueError) the static key is not 32 bytes.
            ValueError: the signing key is not 32 bytes.
        """
        signer = None
        if signing_key is not None:
            seed = bytes(signing_key)
            if len(seed) != 32:
                raise ValueError(f"an Ed25519 private key is 32 bytes, got {len(seed)}")
            signer = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(X25519.keypair_from_private(key), name, signing_key=signer)

    @property
    def keypair(self) -> KeyPair:
        return self._keypair

    @property
    def public_key(self) -> bytes:
        return self._keypair.public

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._keypair.public)

    @property
    def signing_key(self) -> Ed25519PrivateKey | None:
        """The Ed25519 key this identity signs with; None if it was built without one."""
        return self._signing_key

    @property
    def signing_public_key(self) -> bytes | None:
        """The raw 32-byte Ed25519 public key; None if there is no signing key."""
        return self._signing_public

    def private_bytes(self) -> bytes:
        """The raw X25519 private key, for storing it (encrypted) in a keystore."""
        return self._keypair.private_bytes()

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, fingerprint={self.fingerprint!r})"
