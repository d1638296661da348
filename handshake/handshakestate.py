"""HandshakeState (Noise spec section 5.3): the handshake state machine.

Theory of operation
-------------------

A handshake is a fixed script: the protocol name picks a pattern, and the
pattern lists, message by message, the tokens each side processes in turn
(``e``, ``s``, ``ee``, ``es``, ``se``, ``ss``, ``psk``). Both sides walk the
same script, one writing what the other reads, so the only state besides the
keys is *which message is next*: message ``i`` is written by the initiator
when ``i`` is even. The parsed pattern is cached per protocol name, so a step
costs the DH operations it names and little Python besides.

Every token feeds the SymmetricState: public keys are hashed into ``h`` (the
transcript), DH results are mixed into the chaining key ``ck``, and once a key
exists static keys and payloads are encrypted with ``h`` as associated data.
That is why any change to any byte of any message, cleartext or not, makes a
later decryption fail: the transcript no longer matches.

Each step is a transaction. ``write_message`` and ``read_message`` run the
tokens on a *copy* of the SymmetricState and on local variables for the keys
they learn, and assign everything back only when the whole message succeeded.
A tag that fails, a truncated message or a low-order key therefore raises a
:class:`PeerError` and leaves this object exactly as it was; misuse raises a
:class:`UsageError`, also before anything changed.

The keys the pattern needs are checked once, at construction
(:mod:`handshake._side`), and what each token does is in
:mod:`handshake._tokens`; this module is the turn, the transaction and the
hand-over.

After the last message the state holds the Split pair of CipherStates until
:meth:`HandshakeState.into_transport` hands them over; the handshake state is
then spent, forgets its keys and refuses further use. It cannot be copied: two
copies would encrypt different messages under one key and nonce.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import final

from handshake._bytes import BytesLike, as_bytes
from handshake._nocopy import NoCopy
from handshake._side import Side
from handshake._tokens import mix_pre_messages, read_tokens, write_tokens
from handshake.ciphers import TAG_LEN
from handshake.cipherstate import CipherState
from handshake.dh import KeyPair
from handshake.errors import (
    HandshakeFinishedError,
    HandshakeNotFinishedError,
    MalformedMessageError,
    MessageTooLongError,
    WrongTurnError,
)
from handshake.protocol import NoiseProtocol
from handshake.symmetricstate import SymmetricState
from handshake.transport import MAX_MESSAGE_LEN, TransportState

__all__ = ["HandshakeState"]


@final
class HandshakeState(NoCopy):
    """One side of a Noise handshake.

    Args:
        protocol_name: e.g. ``"Noise_XX_25519_AESGCM_SHA256"``.
        initiator: whether this side sends the first message.
        prologue: data both sides must agree on; it is bound into the
            handshake hash but never sent.
        s: our static X25519 key, when the pattern uses one: the 32-byte
            private key or a :class:`KeyPair`.
        rs: the peer's 32-byte static public key, when the pattern has the
            peer's ``s`` as a pre-message (e.g. the responder key in ``IK``).
        psks: one 32-byte pre-shared key per ``pskN`` modifier, in the order
            the modifiers appear in the name.
        fixed_ephemeral_for_testing_only: a fixed ephemeral private key, for
            test vectors. Reusing an ephemeral key destroys the handshake's
            security; never pass this outside tests.

    Raises:
        ProtocolNameError: the name is malformed or unsupported.
        MissingKeyError, MissingPskError: a key the pattern needs is absent.
        UnusedKeyError: a key was given that the pattern never uses.
        InvalidKeyError: a key has the wrong length, or ``rs`` is a
            low-order point.
    """

    __slots__ = (
        "_e",
        "_index",
        "_psks_used",
        "_re",
        "_rs",
        "_side",
        "_spent",
        "_split",
        "_symmetric",
    )

    def __init__(
        self,
        protocol_name: str,
        *,
        initiator: bool,
        prologue: BytesLike = b"",
        s: BytesLike | KeyPair | None = None,
        rs: BytesLike | None = None,
        psks: Sequence[BytesLike] = (),
        fixed_ephemeral_for_testing_only: BytesLike | None = None,
    ) -> None:
        side = Side.check(
            NoiseProtocol.parse(protocol_name),
            bool(initiator),
            s=s,
            rs=rs,
            psks=psks,
            fixed_ephemeral=fixed_ephemeral_for_testing_only,
        )
        self._side = side
        self._e: KeyPair | None = None
        self._re: bytes | None = None
        self._rs = side.rs
        self._index = 0
        self._psks_used = 0
        self._split: tuple[CipherState, CipherState] | None = None
        self._spent = False

        symmetric = SymmetricState(side.protocol)
        symmetric.mix_hash(as_bytes(prologue, "prologue"))
        mix_pre_messages(side, symmetric)
        self._symmetric = symmetric

    def __repr__(self) -> str:
        protocol = self._side.protocol
        role = "initiator" if self._side.initiator else "responder"
        total = len(protocol.pattern.messages)
        return f"<HandshakeState {protocol.name} {role} message {self._index}/{total}>"

    # -- what callers may ask ------------------------------------------------

    @property
    def protocol(self) -> NoiseProtocol:
        return self._side.protocol

    @property
    def initiator(self) -> bool:
        return self._side.initiator

    @property
    def is_finished(self) -> bool:
        """True once every handshake message has been written or read."""
        return self._index == len(self._side.protocol.pattern.messages)

    @property
    def is_my_turn(self) -> bool:
        """True when the next call must be write_message(), not read_message()."""
        return not self.is_finished and (self._index % 2 == 0) == self._side.initiator

    @property
    def handshake_hash(self) -> bytes:
        """The transcript hash ``h``.

        Only once :attr:`is_finished` is it the value both sides share and
        may be used for channel binding.
        """
        return self._symmetric.h

    @property
    def local_static(self) -> bytes | None:
        """Our static public key, if this side has one."""
        s = self._side.s
        return None if s is None else s.public

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, known in advance or received so far.

        A key received mid-handshake is proven only when the handshake is
        finished (deferred patterns send ``s`` before the DH that proves it):
        authorize on it only once :attr:`is_finished`.
        """
        return self._rs

    # -- the two steps -------------------------------------------------------

    def write_message(self, payload: BytesLike = b"") -> bytes:
        """Produce our next handshake message, carrying ``payload``.

        Raises:
            WrongTurnError: it is the peer's turn to send.
            HandshakeFinishedError: the handshake is already complete.
            MessageTooLongError: the message would exceed 65535 bytes.
        """
        self._check_turn(writing=True)
        payload = as_bytes(payload, "payload")
        sym = self._symmetric._fork()
        out = bytearray()
        e, psks_used = write_tokens(
            self._side,
            sym,
            self._side.protocol.pattern.messages[self._index],
            out,
            e=self._e,
            re=self._re,
            rs=self._rs,
            psks_used=self._psks_used,
        )
        out += sym.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE_LEN:
            room = len(payload) - (len(out) - MAX_MESSAGE_LEN)
            raise MessageTooLongError(
                f"the handshake message would be {len(out)} bytes, over the Noise maximum "
                f"of {MAX_MESSAGE_LEN}; this message has room for {room} payload bytes"
            )
        self._commit(sym, e, self._re, self._rs, psks_used)
        return bytes(out)

    def read_message(self, message: BytesLike) -> bytes:
        """Consume the peer's next handshake message and return its payload.

        A payload that arrives before any key is established (e.g. in the
        first message of ``XX``) is readable by anyone on the path and not yet
        authenticated; a change to it is detected by the next message.

        Raises:
            DecryptError: authentication failed (tampered, wrong key or psk).
            MalformedMessageError: the message is truncated or over 65535 bytes.
            InvalidPublicKeyError: the peer sent a low-order public key.
            WrongTurnError, HandshakeFinishedError: as for write_message().
        """
        self._check_turn(writing=False)
        data = as_bytes(message, "message")
        if len(data) > MAX_MESSAGE_LEN:
            raise MalformedMessageError(
                f"a handshake message of {len(data)} bytes exceeds the Noise maximum"
            )
        sym = self._symmetric._fork()
        offset, re, rs, psks_used = read_tokens(
            self._side,
            sym,
            self._side.protocol.pattern.messages[self._index],
            data,
            e=self._e,
            re=self._re,
            rs=self._rs,
            psks_used=self._psks_used,
        )
        if sym.cipher_state.has_key() and len(data) - offset < TAG_LEN:
            raise MalformedMessageError("handshake message is too short for its payload tag")
        payload = sym.decrypt_and_hash(data[offset:])
        self._commit(sym, self._e, re, rs, psks_used)
        return payload

    def into_transport(self) -> TransportState:
        """Hand over the Split CipherStates; this handshake state is then spent.

        Raises:
            HandshakeNotFinishedError: messages remain to be exchanged.
            HandshakeFinishedError: into_transport() was already called.
        """
        if self._spent:
            raise HandshakeFinishedError("into_transport() was already called")
        if self._split is None:
            remaining = len(self._side.protocol.pattern.messages) - self._index
            raise HandshakeNotFinishedError(
                f"{remaining} handshake message(s) remain before the transport keys exist"
            )
        c1, c2 = self._split
        if self._side.protocol.pattern.one_way:
            # One-way patterns only ever carry initiator -> responder traffic.
            send, receive = (c1, None) if self._side.initiator else (None, c1)
        else:
            send, receive = (c1, c2) if self._side.initiator else (c2, c1)
        transport = TransportState(
            send, receive, handshake_hash=self._symmetric.h, remote_static=self._rs
        )
        self._spent = True
        # Keep h for handshake_hash; drop everything that could derive a key.
        self._split = None
        self._e = None
        self._side = self._side.wiped()
        self._symmetric.ck = b""
        self._symmetric.cipher_state = CipherState(self._side.protocol.cipher)
        return transport

    # -- the pieces ----------------------------------------------------------

    def _check_turn(self, *, writing: bool) -> None:
        if self._spent or self.is_finished:
            raise HandshakeFinishedError("the handshake is already complete")
        if self.is_my_turn != writing:
            expected = "write_message()" if self.is_my_turn else "read_message()"
            raise WrongTurnError(
                f"message {self._index} of {self._side.protocol.pattern.name} is "
                f"{'ours' if self.is_my_turn else 'the peer'}'s: call {expected}"
            )

    def _commit(
        self,
        sym: SymmetricState,
        e: KeyPair | None,
        re: bytes | None,
        rs: bytes | None,
        psks_used: int,
    ) -> None:
        self._symmetric, self._e, self._re, self._rs = sym, e, re, rs
        self._psks_used = psks_used
        self._index += 1
        if self.is_finished:
            self._split = sym.split()
