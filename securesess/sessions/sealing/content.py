"""Sealed content: a message, a direct message or a variable's value, as its sender seals it.

Encoding (big-endian)::

    u8  version (1)
    u8  kind         1 message, 2 direct message, 3 variable value
    u64 epoch
    u64 sender       the sender's member number
    u64 generation   the sender's counter in this epoch: its nonce
    kind 2: u64 recipient
    kind 3: u8 len || variable key (UTF-8)
    ...  ciphertext
    64  Ed25519 signature by the sender over "securesess content v1\\0" || context || all above

The ciphertext is AES-256-GCM under the sender's key of the epoch, with
nonce ``u32 0 || u64 generation`` and associated data ``"securesess content
v1\\0" || context || header`` (the header is every byte before the
ciphertext; the context names the session, the epoch and its transcript,
see schedule.py). A direct message's plaintext is first sealed with HPKE to
the recipient's membership key (``info`` = that same associated data), so
the other members, who hold the epoch's keys, still cannot read it.

The epoch key proves the content comes from a member of the epoch; the
signature proves which one, since every member can derive every sender's
key. The hub sees the header: kind, epoch, sender, counter, recipient, the
variable's key (it keeps a version per key) and the length.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final, final

from securesess.sessions.sealing.errors import MalformedSealing

__all__ = [
    "DOMAIN",
    "MAX_OVERHEAD",
    "SIGNATURE_LEN",
    "TAG_LEN",
    "VERSION",
    "Kind",
    "Opened",
    "SealedHeader",
]

VERSION: Final = 1
SIGNATURE_LEN: Final = 64
TAG_LEN: Final = 16
DOMAIN: Final = b"securesess content v1\0"
_FIXED: Final = struct.Struct(">BBQQQ")
#: The most sealing adds to a body: the longest header (a variable with a
#: 255-byte key), the tag and the signature. A direct message's HPKE layer
#: (32-byte encapsulated key and a tag) and recipient add less than a key.
MAX_OVERHEAD: Final = _FIXED.size + 1 + 255 + TAG_LEN + SIGNATURE_LEN
_U64: Final = struct.Struct(">Q")
_MAX_U64: Final = (1 << 64) - 1


class Kind(enum.IntEnum):
    MESSAGE = 1
    DIRECT = 2
    VARIABLE = 3


@final
@dataclass(frozen=True, slots=True)
class SealedHeader:
    """What anyone, the hub included, reads of sealed content."""

    kind: Kind
    epoch: int
    sender: int
    generation: int
    recipient: int | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if not all(0 <= n <= _MAX_U64 for n in (self.epoch, self.sender, self.generation)):
            raise ValueError("a header's numbers are 64-bit")
        if (self.kind is Kind.DIRECT) != (self.recipient is not None):
            raise ValueError("a direct message, and only one, names its recipient")
        if (self.kind is Kind.VARIABLE) != (self.key is not None):
            raise ValueError("a variable value, and only one, names its key")
        if self.recipient is not None and not 0 <= self.recipient <= _MAX_U64:
            raise ValueError("a recipient is a 64-bit member number")
        if self.key is not None and len(self.key.encode("utf-8")) > 255:
            raise ValueError("a variable key is at most 255 bytes of UTF-8")

    def encode(self) -> bytes:
        head = _FIXED.pack(VERSION, self.kind, self.epoch, self.sender, self.generation)
        if self.recipient is not None:
            return head + _U64.pack(self.recipient)
        if self.key is not None:
            key = self.key.encode("utf-8")
            return head + bytes([len(key)]) + key
        return head

    @classmethod
    def decode(cls, data: bytes) -> tuple[SealedHeader, int]:
        """The header of sealed content, and where its ciphertext starts.

        Raises:
            MalformedSealing: not well-formed, or too short to hold a
                ciphertext and a signature. Nothing else, whatever the bytes.
        """
        try:
            version, kind_byte, epoch, sender, generation = _FIXED.unpack_from(data)
            if version != VERSION:
                raise MalformedSealing(f"unsupported content version {version}")
            kind = Kind(kind_byte)
            offset = _FIXED.size
            recipient = key = None
            if kind is Kind.DIRECT:
                (recipient,) = _U64.unpack_from(data, offset)
                offset += _U64.size
            elif kind is Kind.VARIABLE:
                key_len = data[offset]
                raw = bytes(data[offset + 1 : offset + 1 + key_len])
                if len(raw) != key_len:
                    raise MalformedSealing("sealed content ends inside its variable key")
                key = raw.decode("utf-8")
                offset += 1 + key_len
        except (struct.error, IndexError, ValueError):
            # ValueError: not a Kind, or not UTF-8 (UnicodeDecodeError is one).
            raise MalformedSealing("sealed content's header is malformed") from None
        if len(data) < offset + TAG_LEN + SIGNATURE_LEN:
            raise MalformedSealing("sealed content is too short")
        return cls(kind, epoch, sender, generation, recipient, key), offset


@final
@dataclass(frozen=True, slots=True)
class Opened:
    """Content a member opened: who sealed it, and what it says (which
    ``repr`` leaves out, as it does every plaintext)."""

    header: SealedHeader
    body: bytes = field(repr=False)

    @property
    def sender(self) -> int:
        return self.header.sender

    @property
    def kind(self) -> Kind:
        return self.header.kind
