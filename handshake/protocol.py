"""Protocol names (Noise spec section 8): parsed once into frozen parameters."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, TypeVar, final

from handshake.ciphers import CIPHER_FUNCTIONS, CipherFunction
from handshake.dh import DH_FUNCTIONS, DHFunction
from handshake.errors import ProtocolNameError
from handshake.hashes import HASH_FUNCTIONS, HashFunction
from handshake.patterns import HandshakePattern, resolve

__all__ = ["MAX_PROTOCOL_NAME_LEN", "NoiseProtocol"]

# Section 8: a protocol name must not exceed 255 bytes.
MAX_PROTOCOL_NAME_LEN: Final = 255

_T = TypeVar("_T")


@final
@dataclass(frozen=True, slots=True)
class NoiseProtocol:
    """Everything a protocol name fixes: pattern, DH, cipher and hash."""

    name: str
    pattern: HandshakePattern
    dh: DHFunction
    cipher: CipherFunction
    hash: HashFunction

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def parse(name: str) -> NoiseProtocol:
        """Parse ``Noise_<pattern>_<dh>_<cipher>_<hash>``.

        Raises:
            ProtocolNameError: the name is malformed or names an unsupported
                pattern, modifier or algorithm.
        """
        if not isinstance(name, str):
            raise TypeError(f"protocol name must be str, not {type(name).__name__}")
        if not name.isascii() or len(name) > MAX_PROTOCOL_NAME_LEN:
            raise ProtocolNameError("a protocol name is at most 255 ASCII characters")
        fields = name.split("_")
        if len(fields) != 5 or fields[0] != "Noise":
            raise ProtocolNameError(
                f"{name!r} is not of the form Noise_<pattern>_<dh>_<cipher>_<hash>"
            )
        _, pattern_name, dh_name, cipher_name, hash_name = fields
        return NoiseProtocol(
            name=name,
            pattern=resolve(pattern_name),
            dh=_lookup(DH_FUNCTIONS, dh_name, "DH function"),
            cipher=_lookup(CIPHER_FUNCTIONS, cipher_name, "cipher"),
            hash=_lookup(HASH_FUNCTIONS, hash_name, "hash"),
        )


def _lookup(table: dict[str, _T], name: str, kind: str) -> _T:
    try:
        return table[name]
    except KeyError:
        supported = ", ".join(table)
        raise ProtocolNameError(f"unsupported {kind} {name!r} (supported: {supported})") from None
