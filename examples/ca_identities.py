"""Two services with identities issued by a small CA, connecting over TCP.

Everything the ``securesess keys`` / ``ca`` commands do is a Keystore method;
this example uses the methods in a throwaway keystore. Run it with
``python examples/ca_identities.py``.
"""

from __future__ import annotations

import tempfile
from functools import partial

import trio

import securesess
from keystore import Keystore

YEAR = 365 * 24 * 3600


def issue_identities(store: Keystore) -> None:
    # The equivalent of:
    #   securesess ca init ops
    #   securesess keys new api --no-passphrase      (and db)
    #   securesess ca sign --ca ops --name api --group web --identity api
    store.init_ca("ops", passphrase="ca passphrase", valid_seconds=10 * YEAR)
    for name, group in (("api", "web"), ("db", "storage")):
        identity = store.new_identity(name, passphrase=None)
        certificate = store.sign(
            "ops",
            passphrase="ca passphrase",
            public_key=identity.public_key,
            name=name,
            groups=[group],
            valid_seconds=90 * 24 * 3600,
        )
        store.store_certificate(name, certificate)


async def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        store = Keystore.open(home)
        issue_identities(store)
        trust = store.trust()  # trusts the "ops" CA: no peer is pinned

        async def handler(stream: securesess.SecureStream) -> None:
            peer = stream.peer
            print(f"db: {peer.name} in {sorted(peer.groups)} connected, certified by the CA")
            await stream.send_all(b"hello " + (peer.name or "").encode())

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(
                    securesess.serve_secure,
                    handler,
                    0,
                    host="127.0.0.1",
                    identity=store.identity("db"),
                    trust=trust,
                )
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            stream = await securesess.open_secure_stream(
                "127.0.0.1", port, identity=store.identity("api"), trust=trust, expect="db"
            )
            async with stream:
                print(f"api: connected to {stream.peer.name} in {sorted(stream.peer.groups)}")
                print("api: got", (await stream.receive_some()).decode())
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
