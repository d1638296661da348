"""An epoch's key schedule: from the epoch secret to each sender's key.

Every key is HKDF-Expand (RFC 5869) with SHA-256 of the 32-byte epoch
secret, which is uniformly random and so a pseudorandom key as it is. The
``info`` of each expansion is a label and the epoch's context::

    info    = "securesess session v1 " || label || 0x00 || context
    context = u8 len || session name (UTF-8) || u64 epoch || 32 transcript hash

The transcript hash is the chain of every commit up to this epoch
(:func:`next_transcript`), so members whose histories differ (a hub that
showed them different commits) derive different keys and cannot read each
other: a fork is found, not hidden. A sender's key mixes in its member
number, so no two senders ever share a key and each keeps its own counter
of nonces.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final, final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = [
    "GENESIS",
    "MAX_GENERATION",
    "SECRET_LEN",
    "TRANSCRIPT_LEN",
    "EpochKeys",
    "context",
    "expand",
    "name_field",
    "next_transcript",
]

SECRET_LEN: Final = 32
TRANSCRIPT_LEN: Final = 32
#: The transcript hash before a session's first commit.
GENESIS: Final = bytes(32)
_LABEL: Final = b"securesess session v1 "
_TRANSCRIPT: Final = b"securesess transcript v1\0"
_U64: Final = struct.Struct(">Q")
_NONCE_PREFIX: Final = bytes(4)
#: A sender's counters run from 0 to MAX_GENERATION - 1 in one epoch.
MAX_GENERATION: Final = (1 << 64) - 1


def name_field(session: str) -> bytes:
    """``u8 len || UTF-8``: how a session name is written everywhere in sealing.

    Raises:
        ValueError: the name is empty or over 255 bytes.
    """
    name = session.encode("utf-8")
    if not 0 < len(name) <= 255:
        raise ValueError("a session name is 1 to 255 bytes of UTF-8")
    return bytes([len(name)]) + name


def context(session: str, epoch: int, transcript: bytes) -> bytes:
    """The bytes that tie a key, a wrap or a signature to one epoch of one session."""
    return name_field(session) + _U64.pack(epoch) + transcript


def expand(secret: bytes, label: bytes, ctx: bytes) -> bytes:
    """32 bytes of HKDF-Expand(secret, info = prefix || label || 0x00 || ctx)."""
    return HKDFExpand(SHA256(), 32, _LABEL + label + b"\0" + ctx).derive(secret)


def next_transcript(previous: bytes, commit: bytes) -> bytes:
    """The transcript hash once ``commit`` (its signed encoding) is applied."""
    return hashlib.sha256(_TRANSCRIPT + previous + commit).digest()


@final
class EpochKeys:
    """The keys of one epoch, derived once and kept for as long as the epoch is.

    Holds the epoch secret until :meth:`erase`; nothing of it appears in
    ``repr``.
    """

    __slots__ = ("_ciphers", "_context", "_secret", "epoch", "session", "transcript")

    def __init__(self, session: str, epoch: int, secret: bytes, transcript: bytes) -> None:
        if len(secret) != SECRET_LEN:
            raise ValueError(f"an epoch secret is {SECRET_LEN} bytes")
        if len(transcript) != TRANSCRIPT_LEN:
            raise ValueError(f"a transcript hash is {TRANSCRIPT_LEN} bytes")
        self.session: Final = session
        self.epoch: Final = epoch
        self.transcript: Final = transcript
        self._secret: bytes | None = bytes(secret)
        self._context: Final = context(session, epoch, transcript)
        self._ciphers: dict[int, AESGCM] = {}

    @property
    def context(self) -> bytes:
        return self._context

    @property
    def erased(self) -> bool:
        return self._secret is None

    def sender(self, member: int) -> AESGCM:
        """The AEAD of ``member``'s content in this epoch (AES-256-GCM).

        Raises:
            ValueError: the keys are erased.
        """
        cipher = self._ciphers.get(member)
        if cipher is None:
            if self._secret is None:
                # An erased epoch must not quietly derive keys from nothing.
                raise ValueError(f"the keys of epoch {self.epoch} are erased")
            key = expand(self._secret, b"sender", self._context + _U64.pack(member))
            cipher = self._ciphers[member] = AESGCM(key)
        return cipher

    @staticmethod
    def nonce(generation: int) -> bytes:
        """A sender's nonce: its counter, which it never repeats within an epoch."""
        return _NONCE_PREFIX + _U64.pack(generation)

    def erase(self) -> None:
        """Forget the secret and every key derived from it.

        Python cannot promise the bytes are overwritten in memory; dropping
        every reference is what it can do, and what "erased" means here.
        """
        self._secret = None
        self._ciphers.clear()

    def __repr__(self) -> str:
        state = ", erased" if self._secret is None else ""
        return f"EpochKeys(session={self.session!r}, epoch={self.epoch}{state})"
