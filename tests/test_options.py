"""One options value for every entry point: SecureOptions, AdmissionLimits, HubLimits.

Each is checked where it is made, frozen, and taken unchanged by every
function and class that opens, serves or wraps a secure connection; the
keyword arguments users already pass keep working beside it and override it.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from keystore import Identity, TrustStore
from securesess import (
    AdmissionLimits,
    HubLimits,
    LimitExceeded,
    PeerNotTrusted,
    SecureListener,
    SecureOptions,
    SecureStream,
    connect_hub,
    open_secure_stream,
    serve_hub,
    serve_secure,
    wrap_socket,
)
from securesess.sessions.hub import Hub
from securesess.tunnel import TunnelClient, TunnelServer
from tests.hubs import HubWorld
from tests.tunnels import Backend, read_all

PSK = bytes(range(32))


class Pair:
    """A server and a client that pin each other, as two SecureOptions."""

    def __init__(self) -> None:
        self.server_identity, self.client_identity = (
            Identity.generate("srv"),
            Identity.generate("cli"),
        )
        server_trust, client_trust = TrustStore(), TrustStore()
        server_trust.add_peer("cli", self.client_identity.public_key)
        client_trust.add_peer("srv", self.server_identity.public_key)
        self.server = SecureOptions(identity=self.server_identity, trust=server_trust)
        self.client = SecureOptions(identity=self.client_identity, trust=client_trust, expect="srv")


async def _echo(stream: SecureStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


# -- made once, checked once -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"handshake_timeout": 0},
        {"handshake_timeout": -1.0},
        {"handshake_timeout": math.nan},
        {"rekey_after_records": 1},
        {"psk": bytes(31)},
        {"protocol": "Noise_NN_25519_AESGCM_SHA256"},
        {"protocol": "not a protocol"},
        {"protocol": []},
        {"protocol": "Noise_XXpsk3_25519_AESGCM_SHA256"},  # a psk name without a psk
        {"protocol": "Noise_XX_25519_AESGCM_SHA256", "psk": PSK},  # a psk without a psk name
    ],
    ids=repr,
)
def test_bad_options_fail_where_they_are_made(bad: dict[str, Any]) -> None:
    pair = Pair()
    with pytest.raises(ValueError, match=r"must|psk|protocol|at least|Noise|name"):
        SecureOptions(identity=pair.client_identity, trust=TrustStore(), **bad)
    with pytest.raises(ValueError, match=r"must|psk|protocol|at least|Noise|name"):
        pair.client.replace(**bad)  # replace checks anew: no half-valid copy


@pytest.mark.parametrize(
    "bad",
    [
        {"max_concurrent_handshakes": 0},
        {"max_handshakes_per_source": 0},
        {"max_connections_per_peer": -1},
        {"handshake_rate": 0.0},
        {"handshake_rate": math.nan},
        {"handshake_burst": 0},
    ],
    ids=repr,
)
def test_bad_admission_limits_fail_where_they_are_made(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        AdmissionLimits(**bad)


@pytest.mark.parametrize("name", [field.name for field in dataclasses.fields(HubLimits)])
def test_every_hub_limit_must_be_at_least_one(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        HubLimits(**{name: 0})


def test_options_are_frozen_and_keep_copies_of_what_they_were_given() -> None:
    pair = Pair()
    names = ["Noise_XX_25519_AESGCM_SHA256", "Noise_XX_25519_ChaChaPoly_SHA256"]
    key = bytearray(pair.server_identity.public_key)
    options = pair.client.replace(protocol=names, expect=key)
    names.append("Noise_IK_25519_AESGCM_SHA256")
    key[0] ^= 1
    assert options.protocol == tuple(names[:2])
    assert options.expect == pair.server_identity.public_key
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.trust = TrustStore()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        AdmissionLimits().handshake_burst = 1  # type: ignore[misc]


def test_the_repr_shows_no_secret() -> None:
    pair = Pair()
    options = pair.client.replace(psk=PSK, protocol="Noise_XXpsk3_25519_AESGCM_SHA256")
    text = repr(options)
    assert "psk=" not in text
    assert PSK.hex() not in text
    assert repr(PSK) not in text
    assert pair.client_identity.fingerprint in text  # the identity, by fingerprint only


async def test_identity_and_trust_are_required_and_unknown_keywords_refused() -> None:
    pair = Pair()
    left, _ = trio.testing.memory_stream_pair()
    with pytest.raises(TypeError, match="identity"):
        SecureStream(left, trust=TrustStore())
    with pytest.raises(TypeError, match="handshake_timout"):
        SecureStream(left, pair.client, handshake_timout=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_sessions"):
        await serve_secure(_echo, 0, pair.server, max_sessions=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="expect"):
        await open_secure_stream("127.0.0.1", 1, identity=pair.client_identity, trust=TrustStore())


# -- one value, every entry point --------------------------------------------------------


async def test_one_options_value_configures_every_stream_entry_point(
    nursery: trio.Nursery,
) -> None:
    pair = Pair()
    server = pair.server.replace(protocol=("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s",), psk=PSK)
    client = pair.client.replace(protocol="Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s", psk=PSK)
    listeners: list[SecureListener] = await nursery.start(
        partial(serve_secure, _echo, 0, server, admission=AdmissionLimits(), host="127.0.0.1")
    )
    assert listeners[0].options == server
    port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]

    stream = await open_secure_stream("127.0.0.1", port, client)
    await stream.send_all(b"over open_secure_stream")
    assert await stream.receive_some() == b"over open_secure_stream"
    assert stream.options is client
    await stream.aclose()

    plain = socket.create_connection(("127.0.0.1", port))
    wrapped = wrap_socket(plain, client)
    await wrapped.send_all(b"over wrap_socket")
    assert await wrapped.receive_some() == b"over wrap_socket"
    await wrapped.aclose()

    # The same value, a keyword overriding it: expecting someone else fails.
    with pytest.raises(PeerNotTrusted, match="not the expected"):
        await open_secure_stream("127.0.0.1", port, client, expect=bytes(32))


async def test_keywords_beside_options_override_them(nursery: trio.Nursery) -> None:
    pair = Pair()
    left, right = trio.testing.memory_stream_pair()
    stream = SecureStream(left, pair.client, handshake_timeout=0.25)
    assert stream.options.handshake_timeout == 0.25
    assert stream.options.trust is pair.client.trust
    # Nobody answers on the other side: the override is the timeout that runs.
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
        await stream.do_handshake()
    await right.aclose()


async def test_the_hub_and_its_client_take_the_same_values(nursery: trio.Nursery) -> None:
    world = HubWorld()
    hub_options = SecureOptions(identity=world.hub_identity, trust=world.trust)
    hub: Hub = await nursery.start(
        partial(
            serve_hub,
            0,
            hub_options,
            policy=world.policy(),
            limits=HubLimits(max_sessions=1),
            admission=AdmissionLimits(max_concurrent_handshakes=4),
            host="127.0.0.1",
        )
    )
    assert hub.limits.max_sessions == 1
    client = SecureOptions(identity=world.identities["api"], trust=world.client_trust, expect="hub")
    async with connect_hub("127.0.0.1", hub.port, client) as api:
        await api.join("orders", create=True)
        with pytest.raises(LimitExceeded):
            await api.join("orders/2", create=True)  # the HubLimits value applies
    with pytest.raises(ValueError, match="needs expect"):
        connect_hub("127.0.0.1", hub.port, client.replace(expect=None))
    with pytest.raises(ValueError, match="authorize"):
        Hub(hub_options.replace(authorize=lambda peer: None), policy=world.policy())


async def test_both_tunnel_ends_take_the_same_values(nursery: trio.Nursery) -> None:
    pair = Pair()
    backend = Backend()
    await backend.start(nursery)
    server = TunnelServer(("127.0.0.1", backend.port), pair.server, max_connections=4)
    await nursery.start(partial(server.serve, 0, host="127.0.0.1"))
    client = TunnelClient(("127.0.0.1", server.port), pair.client)
    await nursery.start(partial(client.serve, 0, host="127.0.0.1"))
    plain = await trio.open_tcp_stream("127.0.0.1", client.port)
    await plain.send_all(b"through the tunnel")
    await plain.send_eof()
    with trio.fail_after(10):
        assert await read_all(plain) == b"through the tunnelbye"  # the backend's goodbye
    await plain.aclose()
    assert backend.accepted == 1
    with pytest.raises(ValueError, match="authorize"):
        TunnelServer(("127.0.0.1", 1), pair.server.replace(authorize=lambda peer: None))
