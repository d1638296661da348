"""The tokens of a handshake (Noise spec section 5.3), as steps over a SymmetricState.

:class:`~handshake.handshakestate.HandshakeState` runs each message as a
transaction, so these functions never write into it: they take a fork of its
SymmetricState and the keys the messages change (``e``, ``re``, ``rs``, the
number of PSKs used) as plain values, and return the new values for the state
to commit once the whole message succeeded. What stays fixed for the whole
handshake comes in one :class:`~handshake._side.Side`.

Public keys are checked for low order as they arrive, so a bad key fails the
read that brought it, not a later write that first uses it.
"""

from __future__ import annotations

from handshake._side import Side
from handshake.ciphers import TAG_LEN
from handshake.dh import DHFunction, KeyPair
from handshake.errors import InvalidPublicKeyError, MalformedMessageError
from handshake.patterns import Message, Token
from handshake.symmetricstate import SymmetricState

__all__ = ["mix_pre_messages", "read_tokens", "write_tokens"]


def mix_pre_messages(side: Side, sym: SymmetricState) -> None:
    """Hash the static keys the pattern's pre-messages name, initiator's first."""
    pattern = side.protocol.pattern
    # Only static keys occur in the pre-messages of the supported patterns;
    # Side.check guarantees the ones named here are present.
    for pre_message, mine in (
        (pattern.initiator_pre, side.initiator),
        (pattern.responder_pre, not side.initiator),
    ):
        if Token.S in pre_message and mine:
            assert side.s is not None
            sym.mix_hash(side.s.public)
        elif Token.S in pre_message:
            assert side.rs is not None
            sym.mix_hash(side.rs)


def write_tokens(
    side: Side,
    sym: SymmetricState,
    tokens: Message,
    out: bytearray,
    *,
    e: KeyPair | None,
    re: bytes | None,
    rs: bytes | None,
    psks_used: int,
) -> tuple[KeyPair | None, int]:
    """Append what ``tokens`` send to ``out``; return the new ``e`` and PSK count."""
    for token in tokens:
        if token is Token.E:
            e = side.fixed_ephemeral or side.protocol.dh.generate_keypair()
            out += e.public
            _mix_ephemeral(side, sym, e.public)
        elif token is Token.S:
            assert side.s is not None  # checked at construction
            out += sym.encrypt_and_hash(side.s.public)
        elif token is Token.PSK:
            sym.mix_key_and_hash(side.psks[psks_used])
            psks_used += 1
        else:
            sym.mix_key(_dh(side, token, e, re, rs))
    return e, psks_used


def read_tokens(
    side: Side,
    sym: SymmetricState,
    tokens: Message,
    data: bytes,
    *,
    e: KeyPair | None,
    re: bytes | None,
    rs: bytes | None,
    psks_used: int,
) -> tuple[int, bytes | None, bytes | None, int]:
    """Consume what ``tokens`` send from the start of ``data``.

    Returns:
        The offset of the payload, the new ``re`` and ``rs``, and the PSK count.

    Raises:
        MalformedMessageError: ``data`` ends inside a key.
        InvalidPublicKeyError: the peer sent a low-order public key.
        DecryptError: the encrypted static key fails authentication.
    """
    dh = side.protocol.dh
    dhlen = dh.dhlen
    offset = 0
    for token in tokens:
        if token is Token.E:
            re = _take(data, offset, dhlen, "ephemeral key")
            offset += dhlen
            _check_public_key(dh, re, "ephemeral")
            _mix_ephemeral(side, sym, re)
        elif token is Token.S:
            size = dhlen + TAG_LEN if sym.cipher_state.has_key() else dhlen
            rs = sym.decrypt_and_hash(_take(data, offset, size, "static key"))
            offset += size
            _check_public_key(dh, rs, "static")
        elif token is Token.PSK:
            sym.mix_key_and_hash(side.psks[psks_used])
            psks_used += 1
        else:
            sym.mix_key(_dh(side, token, e, re, rs))
    return offset, re, rs, psks_used


def _mix_ephemeral(side: Side, sym: SymmetricState, public: bytes) -> None:
    sym.mix_hash(public)
    # Section 9.2: with a PSK the ephemeral also feeds the key, so that the
    # PSK-derived key is never used with a repeated nonce across sessions.
    if side.protocol.pattern.psk_count:
        sym.mix_key(public)


def _dh(side: Side, token: Token, e: KeyPair | None, re: bytes | None, rs: bytes | None) -> bytes:
    # "es" is DH(initiator's e, responder's s): which of our keys that is
    # depends on the side we are on; likewise "se".
    if token is Token.EE:
        local, remote = e, re
    elif token is Token.SS:
        local, remote = side.s, rs
    elif (token is Token.ES) == side.initiator:
        local, remote = e, rs
    else:
        local, remote = side.s, re
    # The key checks at construction and the pattern tables guarantee both.
    assert local is not None
    assert remote is not None
    return side.protocol.dh.dh(local, remote)


def _check_public_key(dh: DHFunction, public: bytes, kind: str) -> None:
    if dh.is_low_order(public):
        raise InvalidPublicKeyError(
            f"the peer's {kind} key is a low-order point (all-zero shared secret)"
        )


def _take(data: bytes, offset: int, size: int, what: str) -> bytes:
    if len(data) - offset < size:
        raise MalformedMessageError(f"handshake message is too short: it ends inside the {what}")
    return data[offset : offset + size]
