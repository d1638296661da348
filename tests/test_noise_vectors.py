"""Other implementations' vectors: cacophony (472, with handshake hashes) and
snow (408, with multi-psk and deferred patterns).

Each vector fixes both sides' keys and ephemerals; we run our initiator and
responder against each other and check every byte on the wire, every payload,
the handshake hash and the transport messages that follow.
"""

from __future__ import annotations

from typing import Any

import pytest

from handshake import HandshakeState, TransportState
from tests.vectors import noise_vectors


def _state(vector: dict[str, Any], side: str) -> HandshakeState:
    def optional(field: str) -> bytes | None:
        value = vector.get(f"{side}_{field}")
        return None if value is None else bytes.fromhex(value)

    initiator = side == "init"
    ephemeral = optional("ephemeral")
    return HandshakeState(
        vector["protocol_name"],
        initiator=initiator,
        prologue=bytes.fromhex(vector[f"{side}_prologue"]),
        s=optional("static"),
        rs=optional("remote_static"),
        psks=[bytes.fromhex(psk) for psk in vector.get(f"{side}_psks", [])],
        fixed_ephemeral_for_testing_only=ephemeral,
    )


def _run(vector: dict[str, Any]) -> tuple[TransportState, TransportState]:
    initiator, responder = _state(vector, "init"), _state(vector, "resp")
    messages = vector["messages"]
    handshake_len = len(initiator.protocol.pattern.messages)
    for index, message in enumerate(messages[:handshake_len]):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        payload, ciphertext = (
            bytes.fromhex(message["payload"]),
            bytes.fromhex(message["ciphertext"]),
        )
        assert writer.write_message(payload) == ciphertext, f"message {index}"
        assert reader.read_message(ciphertext) == payload, f"message {index}"
    assert initiator.is_finished
    assert responder.is_finished
    assert initiator.handshake_hash == responder.handshake_hash
    if "handshake_hash" in vector:
        assert initiator.handshake_hash.hex() == vector["handshake_hash"]

    one_way = handshake_len == 1
    alice, bob = initiator.into_transport(), responder.into_transport()
    for index in range(handshake_len, len(messages)):
        sender, receiver = (alice, bob) if one_way or index % 2 == 0 else (bob, alice)
        payload = bytes.fromhex(messages[index]["payload"])
        ciphertext = bytes.fromhex(messages[index]["ciphertext"])
        assert sender.encrypt(payload) == ciphertext, f"transport message {index}"
        assert receiver.decrypt(ciphertext) == payload, f"transport message {index}"
    return alice, bob


CACOPHONY = noise_vectors("cacophony-25519.json")
SNOW = noise_vectors("snow-25519.json")


def test_the_vector_files_are_complete() -> None:
    assert len(CACOPHONY) == 472
    assert len(SNOW) == 408


@pytest.mark.parametrize(
    "vector", CACOPHONY, ids=[f"{i}-{v['protocol_name']}" for i, v in enumerate(CACOPHONY)]
)
def test_cacophony(vector: dict[str, Any]) -> None:
    _run(vector)


@pytest.mark.parametrize(
    "vector", SNOW, ids=[f"{i}-{v['protocol_name']}" for i, v in enumerate(SNOW)]
)
def test_snow(vector: dict[str, Any]) -> None:
    _run(vector)
