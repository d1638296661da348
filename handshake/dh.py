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

    def is_low_order(self, public_key: bytes) -> bool:
        """Whether DH with this public key gives the all-zero output for every key.

        Checked when a key arrives, so a bad key is refused by the read that
        brought it rather than by a later write that first uses it.
        """
        return bytes((*public_key[:31], public_key[31] & 0x7F)) in _LOW_ORDER_25519

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


def _u_coordinates(*values: int) -> frozenset[bytes]:
    return frozenset(value.to_bytes(32, "little") for value in values)


_P25519: Final = 2**255 - 19

# The u-coordinates of the points of order 1, 2, 4 and 8 on Curve25519 and its
# twist, and the encodings of the small ones plus p (still under 2**255), with
# the top bit masked as X25519 masks it: multiplying any of them by a clamped
# scalar (a multiple of 8) gives the identity.
_LOW_ORDER_25519: Final = _u_coordinates(
    0,
    1,
    _P25519 - 1,
    _P25519,
    _P25519 + 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
)

X25519: Final = DHFunction(name="25519", dhlen=32)

DH_FUNCTIONS: Final[dict[str, DHFunction]] = {X25519.name: X25519}
