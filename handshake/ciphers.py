"""Cipher functions (Noise spec section 4.2): ChaChaPoly and AESGCM.

Both are 256-bit-key AEADs with a 96-bit nonce and a 128-bit tag; they differ
only in how the 64-bit counter ``n`` becomes that nonce: ChaChaPoly puts 32
zero bits before ``n`` little-endian, AESGCM puts them before ``n`` big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM as _AESGCM
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305 as _ChaCha20Poly1305

from handshake._bytes import BytesLike

__all__ = ["AEAD", "AESGCM", "CHACHAPOLY", "CIPHER_FUNCTIONS", "TAG_LEN", "CipherFunction"]

TAG_LEN: Final = 16


class AEAD(Protocol):
    """The shape shared by ``cryptography``'s AEAD classes that we rely on."""

    def encrypt(self, nonce: bytes, data: BytesLike, associated_data: BytesLike) -> bytes: ...

    def decrypt(self, nonce: bytes, data: BytesLike, associated_data: BytesLike) -> bytes: ...

    def encrypt_into(
        self, nonce: bytes, data: BytesLike, associated_data: BytesLike, buf: memoryview
    ) -> int: ...

    def decrypt_into(
        self, nonce: bytes, data: BytesLike, associated_data: BytesLike, buf: memoryview
    ) -> int: ...


@final
@dataclass(frozen=True, slots=True)
class CipherFunction:
    """A cipher: builds a keyed AEAD and encodes the nonce for counter ``n``."""

    name: str
    new: Callable[[bytes], AEAD]
    nonce: Callable[[int], bytes]


CHACHAPOLY: Final = CipherFunction(
    name="ChaChaPoly", new=_ChaCha20Poly1305, nonce=struct.Struct("<4xQ").pack
)
AESGCM: Final = CipherFunction(name="AESGCM", new=_AESGCM, nonce=struct.Struct(">4xQ").pack)

CIPHER_FUNCTIONS: Final[dict[str, CipherFunction]] = {c.name: c for c in (CHACHAPOLY, AESGCM)}
