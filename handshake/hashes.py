"""Hash functions (Noise spec section 4.3) and the HMAC/HKDF built on them.

``hmac.digest`` with a digest *name* runs OpenSSL's one-shot HMAC in C, which
is several times cheaper per call than building an HMAC object; the handshake
calls it a dozen times per message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, final

__all__ = ["BLAKE2B", "BLAKE2S", "HASH_FUNCTIONS", "SHA256", "SHA512", "HashFunction"]


class _Hasher(Protocol):
    def digest(self) -> bytes: ...


@final
@dataclass(frozen=True, slots=True)
class HashFunction:
    """HASH, HASHLEN and BLOCKLEN of the spec, plus HMAC-HASH and HKDF."""

    name: str
    hashlen: int
    blocklen: int
    _digest_name: str
    _new: Callable[[bytes], _Hasher]

    def hash(self, data: bytes) -> bytes:
        return self._new(data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self._digest_name)

    def hkdf(self, chaining_key: bytes, input_key_material: bytes, outputs: int) -> list[bytes]:
        """HKDF with an empty info string, returning 2 or 3 HASHLEN outputs.

        This is RFC 5869 extract-then-expand with ``chaining_key`` as the salt,
        cut to whole HASHLEN blocks, exactly as section 4.3 defines it.
        """
        temp_key = hmac.digest(chaining_key, input_key_material, self._digest_name)
        output = b""
        result = []
        for counter in range(1, outputs + 1):
            output = hmac.digest(temp_key, output + bytes((counter,)), self._digest_name)
            result.append(output)
        return result


SHA256: Final = HashFunction("SHA256", 32, 64, "sha256", hashlib.sha256)
SHA512: Final = HashFunction("SHA512", 64, 128, "sha512", hashlib.sha512)
BLAKE2S: Final = HashFunction("BLAKE2s", 32, 64, "blake2s", hashlib.blake2s)
BLAKE2B: Final = HashFunction("BLAKE2b", 64, 128, "blake2b", hashlib.blake2b)

HASH_FUNCTIONS: Final[dict[str, HashFunction]] = {
    h.name: h for h in (SHA256, SHA512, BLAKE2S, BLAKE2B)
}
