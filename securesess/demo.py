"""``securesess demo``: two parties complete a Noise handshake and talk.

Everything happens in memory in one process, so the demo needs no setup; it
shows what crosses the wire and what each side learns.
"""

from __future__ import annotations

from collections.abc import Callable

from handshake import X25519, DecryptError, HandshakeState
from keystore import fingerprint

PROTOCOL = "Noise_XX_25519_AESGCM_SHA256"


def _preview(data: bytes, limit: int = 24) -> str:
    text = data[:limit].hex()
    return text + ("..." if len(data) > limit else "")


def run(say: Callable[[str], None] = print) -> None:
    """Run the demo, reporting each step through ``say``."""
    api_key, db_key = X25519.generate_keypair(), X25519.generate_keypair()
    say(f"api has static key {fingerprint(api_key.public)}")
    say(f"db  has static key {fingerprint(db_key.public)}")
    say(f"protocol: {PROTOCOL}")

    api = HandshakeState(PROTOCOL, initiator=True, s=api_key.private_bytes())
    db = HandshakeState(PROTOCOL, initiator=False, s=db_key.private_bytes())

    turn = 1
    while not api.is_finished:
        sender, receiver, names = (
            (api, db, ("api", "db")) if api.is_my_turn else (db, api, ("db", "api"))
        )
        message = sender.write_message()
        receiver.read_message(message)
        say(f"  {turn}. {names[0]} -> {names[1]}: {len(message)} bytes  {_preview(message)}")
        turn += 1

    for name, state in (("api", api), ("db ", db)):
        if state.remote_static is None:
            raise RuntimeError(f"{name} finished XX without learning its peer's key")
        say(f"{name} authenticated its peer as {fingerprint(state.remote_static)}")
    if api.handshake_hash != db.handshake_hash:
        raise RuntimeError("the two sides disagree on the handshake transcript")
    say(f"shared handshake hash: {_preview(api.handshake_hash, 32)}")

    api_channel, db_channel = api.into_transport(), db.into_transport()
    request = b"SELECT balance FROM accounts WHERE id = 42"
    ciphertext = api_channel.encrypt(request)
    say(f"api sends {len(ciphertext)} encrypted bytes: {_preview(ciphertext)}")
    say(f"db  decrypts: {db_channel.decrypt(ciphertext).decode()!r}")

    tampered = bytearray(api_channel.encrypt(b"transfer 10 to bob"))
    tampered[3] ^= 0x01
    try:
        db_channel.decrypt(tampered)
    except DecryptError as exc:
        say(f"a record with one flipped bit is refused: {type(exc).__name__}: {exc}")
    else:
        raise RuntimeError("a tampered record was accepted")
