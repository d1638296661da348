"""Building matching initiator/responder pairs for any protocol name."""

from __future__ import annotations

import os
from itertools import product

from handshake import PATTERNS, X25519, HandshakeState, NoiseProtocol

CIPHERS = ("AESGCM", "ChaChaPoly")
HASHES = ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b")

# Every base pattern, plus psk modifiers at the first and last position and
# all positions at once, so deferred patterns are covered with PSKs too.
PATTERN_NAMES: tuple[str, ...] = tuple(
    name + modifiers
    for name, pattern in PATTERNS.items()
    for modifiers in (
        "",
        "psk0",
        f"psk{len(pattern.messages)}",
        "+".join(f"psk{i}" for i in range(len(pattern.messages) + 1)),
    )
)

PROTOCOL_NAMES: tuple[str, ...] = tuple(
    f"Noise_{pattern}_25519_{cipher}_{hash_}"
    for pattern, cipher, hash_ in product(PATTERN_NAMES, CIPHERS, HASHES)
)


def make_pair(
    protocol_name: str, *, prologue: bytes = b"", psks: list[bytes] | None = None
) -> tuple[HandshakeState, HandshakeState]:
    """A fresh (initiator, responder) pair with random keys the pattern needs."""
    pattern = NoiseProtocol.parse(protocol_name).pattern
    initiator_key, responder_key = X25519.generate_keypair(), X25519.generate_keypair()
    if psks is None:
        psks = [os.urandom(32) for _ in range(pattern.psk_count)]

    def side(initiator: bool) -> HandshakeState:
        mine, theirs = (
            (initiator_key, responder_key) if initiator else (responder_key, initiator_key)
        )
        return HandshakeState(
            protocol_name,
            initiator=initiator,
            prologue=prologue,
            s=mine.private_bytes() if pattern.needs_local_static(initiator) else None,
            rs=theirs.public if pattern.needs_remote_static(initiator) else None,
            psks=psks,
        )

    return side(True), side(False)


def complete(
    initiator: HandshakeState, responder: HandshakeState, payloads: list[bytes] | None = None
) -> list[bytes]:
    """Run the handshake to the end; return what each read_message() returned."""
    received = []
    index = 0
    while not initiator.is_finished:
        writer, reader = (initiator, responder) if initiator.is_my_turn else (responder, initiator)
        payload = payloads[index] if payloads else b""
        received.append(reader.read_message(writer.write_message(payload)))
        index += 1
    return received
