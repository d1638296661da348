"""An echo server and client that know each other by pinned keys.

Run it with ``python examples/pinned_echo.py``: both ends run in one process,
over real TCP on the loopback interface.
"""

from __future__ import annotations

from functools import partial

import trio

import securesess
from keystore import Identity, TrustStore


async def echo(stream: securesess.SecureStream) -> None:
    # Only peers the server's trust store accepts ever get here.
    print(f"server: {stream.peer.name} connected ({stream.peer.fingerprint})")
    while data := await stream.receive_some():
        await stream.send_all(data)


async def main() -> None:
    server_id, client_id = Identity.generate("db"), Identity.generate("api")
    server_trust, client_trust = TrustStore(), TrustStore()
    server_trust.add_peer("api", client_id.public_key)  # pinned, like known_hosts
    client_trust.add_peer("db", server_id.public_key)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(
                securesess.serve_secure,
                echo,
                0,  # any free port
                host="127.0.0.1",
                identity=server_id,
                trust=server_trust,
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]

        stream = await securesess.open_secure_stream(
            "127.0.0.1", port, identity=client_id, trust=client_trust, expect="db"
        )
        async with stream:
            print(f"client: talking to {stream.peer.name} over {stream.protocol}")
            await stream.send_all(b"ping")
            print("client: got", (await stream.receive_some()).decode())
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
