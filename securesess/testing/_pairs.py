"""Connected, authenticated SecureStream pairs in memory."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from keystore import Identity, TrustStore
from securesess.stream.secure_stream import SecureStream

__all__ = ["secure_stream_pair"]


async def secure_stream_pair(
    *, lockstep: bool = False, **options: Any
) -> tuple[SecureStream, SecureStream]:
    """A connected, handshaken (client, server) pair over an in-memory transport.

    Each side gets a throwaway identity that the other trusts (pinned as
    ``"client"`` and ``"server"``). ``options`` go to both SecureStream
    constructors (``protocol``, ``psk``, ``handshake_timeout``, ...).
    ``lockstep=True`` uses :func:`trio.testing.lockstep_stream_pair`, whose
    sends block until the peer receives: good for finding deadlocks.
    """
    make_pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    client_transport, server_transport = make_pair()
    client_identity, server_identity = Identity.generate("client"), Identity.generate("server")
    client_trust, server_trust = TrustStore(), TrustStore()
    client_trust.add_peer("server", server_identity.public_key)
    server_trust.add_peer("client", client_identity.public_key)
    client = SecureStream(client_transport, identity=client_identity, trust=client_trust, **options)
    server = SecureStream(
        server_transport,
        identity=server_identity,
        trust=server_trust,
        server_side=True,
        **{key: value for key, value in options.items() if key != "expect"},
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    return client, server
