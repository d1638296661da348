"""What one side brings to a handshake: its protocol, its role and its keys.

The pattern decides which keys a side needs: its own static pair ``s`` when
it sends ``s`` or has it in a pre-message, the peer's ``rs`` when the peer's
``s`` is a pre-message, and one PSK per ``pskN`` modifier. :meth:`Side.check`
refuses a missing key, a key the pattern never uses and a key of the wrong
length when the handshake is constructed, so the token steps may take every
key they name as present.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, final

from handshake._bytes import BytesLike, as_key
from handshake.dh import KeyPair
from handshake.errors import InvalidKeyError, MissingKeyError, MissingPskError, UnusedKeyError
from handshake.protocol import NoiseProtocol

__all__ = ["Side"]


@final
class Side:
    """The part of one side of a handshake that the messages never change.

    ``rs`` is the peer's static key as known in advance; a key the peer sends
    during the handshake is kept by the HandshakeState. A plain slotted class
    rather than a frozen dataclass, because one is built for every handshake
    and a frozen one takes four times as long; the attributes are ``Final``.
    There is no ``repr``: it would show the PSKs.
    """

    __slots__ = ("fixed_ephemeral", "initiator", "protocol", "psks", "rs", "s")

    def __init__(
        self,
        protocol: NoiseProtocol,
        initiator: bool,
        *,
        s: KeyPair | None,
        rs: bytes | None,
        psks: tuple[bytes, ...],
        fixed_ephemeral: KeyPair | None,
    ) -> None:
        self.protocol: Final = protocol
        self.initiator: Final = initiator
        self.s: Final = s
        self.rs: Final = rs
        self.psks: Final = psks
        self.fixed_ephemeral: Final = fixed_ephemeral

    @classmethod
    def check(
        cls,
        protocol: NoiseProtocol,
        initiator: bool,
        *,
        s: BytesLike | KeyPair | None,
        rs: BytesLike | None,
        psks: Sequence[BytesLike],
        fixed_ephemeral: BytesLike | None,
    ) -> Side:
        """Check the caller's keys against the pattern; the first wrong one raises.

        Raises:
            MissingKeyError, MissingPskError: a key the pattern needs is absent.
            UnusedKeyError: a key was given that the pattern never uses.
            InvalidKeyError: a key has the wrong length, or ``rs`` is a
                low-order point.
        """
        role = "initiator" if initiator else "responder"
        local = _local_static(protocol, initiator, role, s)
        remote = _remote_static(protocol, initiator, role, rs)
        keys = _psks(protocol, psks)
        fixed: KeyPair | None = None
        if fixed_ephemeral is not None:
            fixed = protocol.dh.keypair_from_private(
                as_key(fixed_ephemeral, "fixed_ephemeral_for_testing_only")
            )
        return cls(protocol, initiator, s=local, rs=remote, psks=keys, fixed_ephemeral=fixed)

    def wiped(self) -> Side:
        """This side without anything that could derive a key."""
        return Side(
            self.protocol, self.initiator, s=None, rs=self.rs, psks=(), fixed_ephemeral=None
        )


def _local_static(
    protocol: NoiseProtocol, initiator: bool, role: str, s: BytesLike | KeyPair | None
) -> KeyPair | None:
    pattern = protocol.pattern
    if pattern.needs_local_static(initiator):
        if s is None:
            raise MissingKeyError(f"{pattern.name} needs the {role}'s static key s")
        return s if isinstance(s, KeyPair) else protocol.dh.keypair_from_private(as_key(s, "s"))
    if s is not None:
        raise UnusedKeyError(f"the {role} of {pattern.name} has no static key s")
    return None


def _remote_static(
    protocol: NoiseProtocol, initiator: bool, role: str, rs: BytesLike | None
) -> bytes | None:
    pattern = protocol.pattern
    if pattern.needs_remote_static(initiator):
        if rs is None:
            raise MissingKeyError(
                f"{pattern.name} needs the peer's static public key rs in advance"
            )
        key = as_key(rs, "rs")
        if protocol.dh.is_low_order(key):
            raise InvalidKeyError("rs is a low-order point, which no real peer key is")
        return key
    if rs is not None:
        raise UnusedKeyError(
            f"the {role} of {pattern.name} does not know rs in advance; the peer "
            "sends it (check remote_static after the handshake instead)"
        )
    return None


def _psks(protocol: NoiseProtocol, psks: Sequence[BytesLike]) -> tuple[bytes, ...]:
    pattern = protocol.pattern
    if isinstance(psks, (bytes, bytearray, memoryview)):
        raise TypeError("psks must be a sequence of keys, not a single bytes object")
    if len(psks) != pattern.psk_count:
        error = MissingPskError if len(psks) < pattern.psk_count else UnusedKeyError
        raise error(f"{pattern.name} takes {pattern.psk_count} PSK(s), got {len(psks)}")
    return tuple(as_key(psk, f"psks[{index}]") for index, psk in enumerate(psks))
