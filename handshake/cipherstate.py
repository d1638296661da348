"""CipherState (Noise spec section 5.1): a key, a 64-bit nonce counter, rekey."""

from __future__ import annotations

import operator
from typing import Final, final

from cryptography.exceptions import InvalidTag

from handshake._bytes import BytesLike, as_key
from handshake._memory import overlaps
from handshake._nocopy import NoCopy
from handshake.ciphers import AEAD, TAG_LEN, CipherFunction
from handshake.errors import (
    DecryptError,
    InvalidBufferError,
    InvalidNonceError,
    MissingKeyError,
    NonceExhaustedError,
)

__all__ = ["MAX_NONCE", "CipherState"]

# 2**64 - 1 is reserved for REKEY (section 5.1), so it is never used for data.
MAX_NONCE: Final = 2**64 - 1

_ZEROS: Final = bytes(32)
_OVERLAP: Final = (
    "{} and out overlap: an AEAD reads and writes separate buffers (cryptography 51 "
    "refuses in-place calls, and no version defines them)"
)


@final
class CipherState(NoCopy):
    """Encrypts or decrypts with key ``k`` and nonce ``n``.

    A failed decryption raises :class:`DecryptError` and leaves ``n`` where it
    was, as the spec requires, so the state is still usable. Without a key,
    encryption is the identity (the start of a handshake).
    """

    __slots__ = ("_aead", "_cipher", "_key", "_n", "_nonce")

    def __init__(self, cipher: CipherFunction, key: bytes | None = None) -> None:
        self._cipher: Final = cipher
        self._nonce: Final = cipher.nonce
        self._key: bytes | None = None
        self._aead: AEAD | None = None
        self._n = 0
        if key is not None:
            self.initialize_key(key)

    def __repr__(self) -> str:
        keyed = "keyed" if self._key is not None else "empty"
        return f"<CipherState {self._cipher.name} {keyed} n={self._n}>"

    @property
    def n(self) -> int:
        """The nonce the next message will use."""
        return self._n

    def initialize_key(self, key: bytes) -> None:
        self._key = as_key(key, "cipher key")
        self._aead = self._cipher.new(self._key)
        self._n = 0

    def has_key(self) -> bool:
        return self._key is not None

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(): for transports that deliver out of order (not used by streams).

        Raises:
            InvalidNonceError: ``nonce`` is not an integer in ``range(2**64)``.
        """
        try:
            value = operator.index(nonce)
        except TypeError:
            raise InvalidNonceError(f"a nonce is an integer, not {type(nonce).__name__}") from None
        if not 0 <= value <= MAX_NONCE:
            raise InvalidNonceError("a nonce must be in range(2**64)")
        self._n = value

    def _next_nonce(self) -> bytes:
        if self._n >= MAX_NONCE:
            raise NonceExhaustedError(
                "this cipher state has used all 2**64-1 nonces; start a new handshake"
            )
        return self._nonce(self._n)

    def encrypt_with_ad(self, ad: BytesLike, plaintext: BytesLike) -> bytes:
        if self._aead is None:
            return bytes(plaintext)
        ciphertext = self._aead.encrypt(self._next_nonce(), plaintext, ad)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: BytesLike, ciphertext: BytesLike) -> bytes:
        if self._aead is None:
            return bytes(ciphertext)
        nonce = self._next_nonce()
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag as exc:
            raise DecryptError("message failed authentication") from exc
        self._n += 1
        return plaintext

    # The two *_into methods are a record layer's hot path: they take bytes
    # or memoryviews the caller has already checked, and check only what no
    # caller can cheaply see, that input and output do not overlap.

    def encrypt_into(self, ad: BytesLike, plaintext: bytes | memoryview, out: memoryview) -> int:
        """Encrypt into ``out[:len(plaintext) + 16]``; return the bytes written.

        Raises:
            InvalidBufferError: ``plaintext`` and that part of ``out`` overlap.
            NonceExhaustedError: 2**64-1 messages were already encrypted.
        """
        size = len(plaintext)
        target = out[: size + TAG_LEN if self._aead is not None else size]
        # A bytes object is never writable, so never any part of ``out``.
        if not isinstance(plaintext, bytes) and overlaps(plaintext, target):
            raise InvalidBufferError(_OVERLAP.format("plaintext"))
        if self._aead is None:
            target[:] = plaintext
            return size
        written = self._aead.encrypt_into(self._next_nonce(), plaintext, ad, target)
        self._n += 1
        return written

    def decrypt_into(self, ad: BytesLike, ciphertext: bytes | memoryview, out: memoryview) -> int:
        """Decrypt into ``out[:len(ciphertext) - 16]``; return the bytes written.

        On failure ``out`` may hold garbage, but nothing is returned from it,
        and the nonce stays where it was.

        Raises:
            InvalidBufferError: ``ciphertext`` and that part of ``out`` overlap.
            DecryptError: the message is too short or fails authentication.
            NonceExhaustedError: 2**64-1 messages were already decrypted.
        """
        size = len(ciphertext) - (TAG_LEN if self._aead is not None else 0)
        if size < 0:
            raise DecryptError("message is shorter than an authentication tag")
        target = out[:size]
        if not isinstance(ciphertext, bytes) and overlaps(ciphertext, target):
            raise InvalidBufferError(_OVERLAP.format("ciphertext"))
        if self._aead is None:
            target[:] = ciphertext
            return size
        try:
            written = self._aead.decrypt_into(self._next_nonce(), ciphertext, ad, target)
        except InvalidTag as exc:
            raise DecryptError("message failed authentication") from exc
        self._n += 1
        return written

    def rekey(self) -> None:
        """REKEY(): k = first 32 bytes of ENCRYPT(k, 2**64-1, "", zeros)."""
        if self._aead is None:
            raise MissingKeyError("REKEY needs a keyed CipherState")
        new_key = self._aead.encrypt(self._nonce(MAX_NONCE), _ZEROS, b"")[:32]
        n = self._n
        self.initialize_key(new_key)
        self._n = n

    def _fork(self) -> CipherState:
        """A private copy for HandshakeState's transactions, never handed out."""
        clone = CipherState(self._cipher)
        clone._key, clone._aead, clone._n = self._key, self._aead, self._n
        return clone
