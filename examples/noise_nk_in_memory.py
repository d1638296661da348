"""Pin a server's key and run a Noise NK handshake, moving the bytes yourself.

The handshake layer does no I/O: here the "network" is two local variables.
Run it with ``python examples/noise_nk_in_memory.py``.
"""

from __future__ import annotations

from handshake import X25519, HandshakeState

PROTOCOL = "Noise_NK_25519_ChaChaPoly_BLAKE2s"


def main() -> None:
    # The server's static key; the client knows its public half in advance
    # (pinned), so the first message is already encrypted to the server.
    server_key = X25519.generate_keypair()

    client = HandshakeState(PROTOCOL, initiator=True, rs=server_key.public)
    server = HandshakeState(PROTOCOL, initiator=False, s=server_key)

    hello = client.write_message(b"hello, server")
    print("server got:", server.read_message(hello).decode())
    reply = server.write_message(b"hello, client")
    print("client got:", client.read_message(reply).decode())

    client_channel, server_channel = client.into_transport(), server.into_transport()
    record = client_channel.encrypt(b"a transport message")
    print("server decrypts:", server_channel.decrypt(record).decode())
    print("channel binding:", client_channel.handshake_hash.hex()[:32], "...")


if __name__ == "__main__":
    main()
