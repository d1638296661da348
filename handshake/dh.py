"""Diffie-Hellman functions (Noise spec section 4.1): 25519 only.

Curve448 is left out on purpose: nothing in securesess negotiates it and
``cryptography`` builds without it on some platforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from handshake._bytes import as_key
from handshake.errors import InvalidPublicKeyError

__all__ = ["DH_FUNCTIONS", "X25519", "DHFunction", "KeyPair"]


@final
class KeyPair:
    """A Diffie-Hellman key pair. The private half never appears in ``repr``."""

    __slots__ = ("_private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public: Final[bytes] = private.public_key().public_bytes_raw()

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key (for persisting an identity)."""
        return self._private.private_bytes_raw()

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


@final
@dataclass(frozen=True, slots=True)
class DHFunction:
    """One of the spec's DH functions: GENERATE_KEYPAIR, DH and DHLEN."""

    name: str
    dhlen: int

    def generate_keypair(self) -> KeyPair:
        return KeyPair(X25519PrivateKey.generate())

    def keypair_from_private(self, private: object) -> KeyPair:
        return KeyPair(X25519PrivateKey.from_private_bytes(as_key(private, "private key")))

    def dh(self, keypair: KeyPair, public_key: bytes) -> bytes:
        """Return the shared secret, refusing the all-zero (low-order) result."""
        peer = X25519PublicKey.from_public_bytes(public_key)
        try:
            return keypair._private.exchange(peer)
        except ValueError as exc:
            # cryptography refuses an all-zero output, which only a low-order
            # point gives: the peer's key contributes nothing to the secret.
            raise InvalidPublicKeyError(
                "the peer's public key is a low-order point (all-zero shared secret)"
            ) from exc


X25519: Final = DHFunction(name="25519", dhlen=32)

DH_FUNCTIONS: Final[dict[str, DHFunction]] = {X25519.name: X25519}
