"""TransportState: the pair of CipherStates a finished handshake splits into."""

from __future__ import annotations

from typing import Final, final

from handshake._bytes import BytesLike, as_view
from handshake._nocopy import NoCopy
from handshake.ciphers import TAG_LEN
from handshake.cipherstate import CipherState
from handshake.errors import (
    InvalidBufferError,
    MalformedMessageError,
    MessageTooLongError,
    OneWayPatternError,
)

__all__ = ["MAX_MESSAGE_LEN", "TransportState"]

# Section 3: every Noise message, handshake or transport, fits in 65535 bytes.
MAX_MESSAGE_LEN: Final = 65535


@final
class TransportState(NoCopy):
    """Encrypts what this side sends and decrypts what it receives.

    Nonces are implicit counters: messages must be decrypted in the order they
    were encrypted, so a replayed, dropped or reordered message fails
    authentication. The ``*_into`` methods write into caller-owned buffers so a
    record layer can encrypt and decrypt without intermediate copies.
    """

    __slots__ = ("_receive", "_send", "handshake_hash", "remote_static")

    def __init__(
        self,
        send: CipherState | None,
        receive: CipherState | None,
        *,
        handshake_hash: bytes,
        remote_static: bytes | None,
    ) -> None:
        self._send = send
        self._receive = receive
        #: The finished handshake's transcript hash, for channel binding.
        self.handshake_hash: Final = handshake_hash
        #: The peer's authenticated static public key (None if it has none).
        self.remote_static: Final = remote_static

    def __repr__(self) -> str:
        return f"<TransportState sent={self.sending_nonce} received={self.receiving_nonce}>"

    @property
    def send_cipher(self) -> CipherState | None:
        """The sending CipherState of Split, for a record layer that checks
        lengths itself and calls its ``encrypt_into`` directly."""
        return self._send

    @property
    def receive_cipher(self) -> CipherState | None:
        """The receiving CipherState of Split (see :attr:`send_cipher`)."""
        return self._receive

    @property
    def sending_nonce(self) -> int | None:
        """Messages encrypted so far (``None`` when this side cannot send)."""
        return None if self._send is None else self._send.n

    @property
    def receiving_nonce(self) -> int | None:
        """Messages decrypted so far (``None`` when this side cannot receive)."""
        return None if self._receive is None else self._receive.n

    def _sender(self) -> CipherState:
        if self._send is None:
            raise OneWayPatternError("the responder of a one-way pattern can only receive")
        return self._send

    def _receiver(self) -> CipherState:
        if self._receive is None:
            raise OneWayPatternError("the initiator of a one-way pattern can only send")
        return self._receive

    def encrypt(self, plaintext: BytesLike, ad: BytesLike = b"") -> bytes:
        """Encrypt one message.

        Raises:
            MessageTooLongError: the ciphertext would exceed 65535 bytes.
            NonceExhaustedError: 2**64-1 messages were already sent.
        """
        view = as_view(plaintext, "plaintext")
        _check_plaintext_len(len(view))
        return self._sender().encrypt_with_ad(as_view(ad, "ad"), view)

    def decrypt(self, ciphertext: BytesLike, ad: BytesLike = b"") -> bytes:
        """Decrypt and authenticate the next message.

        Raises:
            DecryptError: authentication failed; the state is unchanged.
            MalformedMessageError: the message exceeds 65535 bytes.
        """
        view = as_view(ciphertext, "ciphertext")
        _check_ciphertext_len(len(view))
        return self._receiver().decrypt_with_ad(as_view(ad, "ad"), view)

    def encrypt_into(
        self, plaintext: BytesLike, out: bytearray | memoryview, ad: BytesLike = b""
    ) -> int:
        """Encrypt ``plaintext`` into the start of writable buffer ``out``.

        Returns the number of bytes written, ``len(plaintext) + 16``.

        Raises:
            InvalidBufferError: ``out`` is read-only or too short, or the part
                of it written overlaps ``plaintext`` (no in-place encryption).
            MessageTooLongError: the ciphertext would exceed 65535 bytes.
            NonceExhaustedError: 2**64-1 messages were already sent.
        """
        view = as_view(plaintext, "plaintext")
        _check_plaintext_len(len(view))
        target = _writable(out, len(view) + TAG_LEN)
        return self._sender().encrypt_into(as_view(ad, "ad"), view, target)

    def decrypt_into(
        self, ciphertext: BytesLike, out: bytearray | memoryview, ad: BytesLike = b""
    ) -> int:
        """Decrypt ``ciphertext`` into the start of writable buffer ``out``.

        Returns the number of plaintext bytes, ``len(ciphertext) - 16``. If
        authentication fails, :class:`DecryptError` is raised and the bytes
        already in ``out`` must be ignored.

        Raises:
            DecryptError: authentication failed; the state is unchanged.
            InvalidBufferError: ``out`` is read-only or too short, or the part
                of it written overlaps ``ciphertext`` (no in-place decryption).
            MalformedMessageError: the message exceeds 65535 bytes.
        """
        view = as_view(ciphertext, "ciphertext")
        _check_ciphertext_len(len(view))
        target = _writable(out, max(len(view) - TAG_LEN, 0))
        return self._receiver().decrypt_into(as_view(ad, "ad"), view, target)

    def rekey_outgoing(self) -> None:
        """REKEY the sending key (the peer must call rekey_incoming() in step)."""
        self._sender().rekey()

    def rekey_incoming(self) -> None:
        """REKEY the receiving key."""
        self._receiver().rekey()


def _check_plaintext_len(length: int) -> None:
    if length > MAX_MESSAGE_LEN - TAG_LEN:
        raise MessageTooLongError(
            f"a plaintext of {length} bytes exceeds the Noise maximum of "
            f"{MAX_MESSAGE_LEN - TAG_LEN} (65535 with the tag)"
        )


def _check_ciphertext_len(length: int) -> None:
    if length > MAX_MESSAGE_LEN:
        raise MalformedMessageError(f"a message of {length} bytes exceeds the Noise maximum")


def _writable(out: object, needed: int) -> memoryview:
    view = as_view(out, "out")
    if view.readonly:
        raise InvalidBufferError("out must be writable (a bytearray or a memoryview of one)")
    if len(view) < needed:
        raise InvalidBufferError(f"out has {len(view)} bytes but needs {needed}")
    return view
