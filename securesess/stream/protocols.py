"""Which Noise protocols securesess speaks, and how a side picks them."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Final

from handshake import NoiseProtocol, ProtocolNameError

__all__ = [
    "DEFAULT_PROTOCOL",
    "PROLOGUE_PREFIX",
    "check_psk",
    "client_protocol",
    "prologue",
    "server_protocols",
]

PROLOGUE_PREFIX: Final = b"securesess/1\n"
DEFAULT_PROTOCOL: Final = "Noise_XX_25519_AESGCM_SHA256"
DEFAULT_PSK_PROTOCOL: Final = "Noise_XXpsk3_25519_AESGCM_SHA256"

# XX: both sides send their key. IK: the client knows the server's key already
# (one round trip). With a network key (PSK), only the psk variants, each with
# the PSK in the initiator's last message, so that a responder admits nobody
# who has not proven it: IKpsk1, not the IKpsk2 of WireGuard, which mixes the
# PSK in only with the responder's message 2 and so would let a trusted key
# without the PSK in (WireGuard waits for the initiator's first data packet;
# securesess admits at the end of the handshake).
_PATTERNS: Final = {False: ("XX", "IK"), True: ("XXpsk3", "IKpsk1")}
# Refused by name, with the reason: the PSK comes too late to authenticate
# the initiator before it is admitted.
_LATE_PSK: Final = frozenset({"IKpsk2"})
_CIPHERS: Final = ("AESGCM", "ChaChaPoly")
_HASHES: Final = ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b")


# Built once: every server-side stream shares these tuples.
_OFFERED: Final = {
    with_psk: tuple(
        f"Noise_{pattern}_25519_{cipher}_{hash_}"
        for pattern, cipher, hash_ in product(_PATTERNS[with_psk], _CIPHERS, _HASHES)
    )
    for with_psk in (False, True)
}


def check_psk(psk: bytes | None) -> None:
    if psk is not None and len(psk) != 32:
        raise ValueError(f"a psk is 32 bytes, got {len(psk)}")


def prologue(protocol_name: str) -> bytes:
    """Binds the negotiated name into the handshake hash (docs/protocol.md §3)."""
    return PROLOGUE_PREFIX + protocol_name.encode("ascii")


def _check(name: str, with_psk: bool) -> NoiseProtocol:
    protocol = NoiseProtocol.parse(name)
    if protocol.pattern.name in _LATE_PSK:
        raise ProtocolNameError(
            f"{name}: the PSK enters only with the responder's message, after the "
            "initiator is admitted, so it would not keep out a peer without it; "
            "use IKpsk1 (or XXpsk3)"
        )
    if protocol.pattern.name not in _PATTERNS[with_psk]:
        if protocol.pattern.name in _PATTERNS[not with_psk]:
            need = "needs a psk" if not with_psk else "has no psk modifier, but a psk was given"
            raise ProtocolNameError(f"{name} {need}")
        supported = ", ".join(_PATTERNS[with_psk])
        raise ProtocolNameError(f"securesess speaks the patterns {supported}, not {name}")
    return protocol


def client_protocol(protocol: str | None, *, with_psk: bool) -> NoiseProtocol:
    """The one protocol an initiator offers."""
    if protocol is None:
        protocol = DEFAULT_PSK_PROTOCOL if with_psk else DEFAULT_PROTOCOL
    if not isinstance(protocol, str):
        raise TypeError("a client offers one protocol name (a str)")
    return _check(protocol, with_psk)


def server_protocols(protocol: str | Sequence[str] | None, *, with_psk: bool) -> tuple[str, ...]:
    """The protocols a responder allows, in order of preference."""
    if protocol is None:
        return _OFFERED[with_psk]
    names = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    if not names:
        raise ValueError("a server must allow at least one protocol")
    for name in names:
        _check(name, with_psk)
    return names
