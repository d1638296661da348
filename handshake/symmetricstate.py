"""SymmetricState (Noise spec section 5.2): chaining key, handshake hash, cipher."""

from __future__ import annotations

from typing import Final, final

from handshake._nocopy import NoCopy
from handshake.cipherstate import CipherState
from handshake.protocol import NoiseProtocol

__all__ = ["SymmetricState"]

# With a 64-byte hash, HKDF outputs are 64 bytes; cipher keys are the first 32.
_KEY_LEN: Final = 32


@final
class SymmetricState(NoCopy):
    """Holds ``ck`` and ``h`` and the handshake's CipherState.

    Every method mutates in place; :class:`HandshakeState` works on a
    :meth:`_fork` and keeps it only when a whole message succeeds.
    """

    __slots__ = ("_protocol", "cipher_state", "ck", "h")

    def __init__(self, protocol: NoiseProtocol) -> None:
        self._protocol = protocol
        name = protocol.name.encode("ascii")
        hashlen = protocol.hash.hashlen
        if len(name) <= hashlen:
            self.h = name.ljust(hashlen, b"\0")
        else:
            self.h = protocol.hash.hash(name)
        self.ck = self.h
        self.cipher_state = CipherState(protocol.cipher)

    def __repr__(self) -> str:
        return f"<SymmetricState {self._protocol.name}>"

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = self._protocol.hash.hkdf(self.ck, input_key_material, 2)
        self.cipher_state.initialize_key(temp_k[:_KEY_LEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = self._protocol.hash.hash(self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.ck, temp_h, temp_k = self._protocol.hash.hkdf(self.ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:_KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = self._protocol.hash.hkdf(self.ck, b"", 2)
        cipher = self._protocol.cipher
        return (
            CipherState(cipher, temp_k1[:_KEY_LEN]),
            CipherState(cipher, temp_k2[:_KEY_LEN]),
        )

    def _fork(self) -> SymmetricState:
        """A private copy for HandshakeState's transactions, never handed out."""
        clone = object.__new__(SymmetricState)
        clone._protocol, clone.ck, clone.h = self._protocol, self.ck, self.h
        clone.cipher_state = self.cipher_state._fork()
        return clone
