"""The per-source handshake rate limit: token buckets, and serve_secure using them."""

from __future__ import annotations

import logging
import os
from functools import partial

import pytest
import trio

from securesess import NegotiationFailed, SecureListener, SecureStream, serve_secure
from securesess.stream.frames import frame
from securesess.stream.ratelimit import HandshakeRateLimit, source_of
from tests.streams import Identities, serve_on_loopback


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_source_gets_its_burst_then_the_rate() -> None:
    clock = Clock()
    limit = HandshakeRateLimit(rate=2, burst=3, clock=clock)
    assert [limit.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    clock.now = 0.49  # not yet a whole token back
    assert not limit.allow("10.0.0.1")
    clock.now = 0.5
    assert limit.allow("10.0.0.1")
    assert not limit.allow("10.0.0.1")
    clock.now = 100  # a long quiet spell refills to the burst, no further
    assert [limit.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]


def test_sources_have_buckets_of_their_own() -> None:
    limit = HandshakeRateLimit(rate=1, burst=1, clock=Clock())
    assert limit.allow("10.0.0.1")
    assert not limit.allow("10.0.0.1")
    assert limit.allow("10.0.0.2")
    assert limit.allow(None)  # not an IP source: nothing to tell apart
    assert limit.allow(None)


def test_the_table_of_sources_is_bounded_and_forgets_the_least_recent() -> None:
    limit = HandshakeRateLimit(rate=1, burst=1, max_sources=100, clock=Clock())
    for n in range(1000):
        assert limit.allow(f"10.0.{n // 256}.{n % 256}")
    assert limit.sources == 100
    # Forgotten sources start afresh (more lenient, never locked out)...
    assert limit.allow("10.0.0.0")
    # ... and the most recent ones are still limited.
    assert not limit.allow("10.0.3.231")


@pytest.mark.parametrize(
    ("address", "source"),
    [
        (("192.0.2.7", 5000), "192.0.2.7"),
        (("2001:db8::1", 5000, 0, 0), "2001:db8::/64"),
        (("2001:db8::ffff:1", 6000, 0, 0), "2001:db8::/64"),  # same /64: one source
        (("2001:db8:0:1::1", 5000, 0, 0), "2001:db8:0:1::/64"),
        (("::ffff:192.0.2.7", 5000, 0, 0), "192.0.2.7"),  # IPv4 over an IPv6 socket
        (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
        ("/run/securesess.sock", None),
        (("not an address", 1), None),
    ],
)
def test_sources_are_ipv4_addresses_and_ipv6_prefixes(address: object, source: str | None) -> None:
    assert source_of(address) == source


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        HandshakeRateLimit(rate=0)
    with pytest.raises(ValueError, match="burst"):
        HandshakeRateLimit(burst=0)


async def _connect_from(source_ip: str, port: int, ids: Identities) -> SecureStream:
    sock = trio.socket.socket()
    await sock.bind((source_ip, 0))
    await sock.connect(("127.0.0.1", port))
    stream = SecureStream(trio.SocketStream(sock), identity=ids.client, trust=ids.client_trust)
    await stream.do_handshake()
    return stream


async def test_a_source_over_its_rate_is_told_busy_while_others_are_served(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="securesess")
    ids = Identities()
    listeners: list[SecureListener] = await nursery.start(
        partial(
            serve_secure,
            lambda stream: trio.sleep_forever(),
            0,
            host="127.0.0.1",
            identity=ids.server,
            trust=ids.server_trust,
            handshake_rate=0.1,
            handshake_burst=3,
        )
    )
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port = transport.socket.getsockname()[1]
    with trio.fail_after(20):
        served = [await _connect_from("127.0.0.1", port, ids) for _ in range(3)]
        for _ in range(5):
            with pytest.raises(NegotiationFailed, match="too busy") as refused:
                await _connect_from("127.0.0.1", port, ids)
            assert refused.value.busy
        # Another source is not held back by the first one's flood.
        served.append(await _connect_from("127.0.0.2", port, ids))
    for stream in served:
        await stream.aclose()
    refusals = [r.getMessage() for r in caplog.records if "handshake rate" in r.getMessage()]
    # One line for the whole flood, not one per connection.
    assert len(refusals) == 1
    assert refusals[0].startswith("refused a connection from 127.0.0.1:")
    assert refusals[0].endswith(": busy: 127.0.0.1 is over its handshake rate (0.1/s, bursts of 3)")


async def test_answered_handshakes_from_one_source_cannot_take_every_slot(
    nursery: trio.Nursery,
) -> None:
    # The attacker sends a protocol name and 32 random bytes as XX message
    # 1 (no cryptography on its side), reads the server's answer, and
    # stalls: an answered handshake, which is never displaced.
    ids = Identities()
    port = await serve_on_loopback(
        nursery,
        lambda stream: trio.sleep_forever(),
        ids,
        max_concurrent_handshakes=16,
        max_handshakes_per_source=4,
        handshake_rate=None,
    )
    name = b"Noise_XX_25519_AESGCM_SHA256"
    stalled: list[trio.SocketStream] = []
    answered = busy = 0
    with trio.fail_after(20):
        for _ in range(20):
            attacker = await trio.open_tcp_stream("127.0.0.1", port)
            stalled.append(attacker)
            await attacker.send_all(frame(name) + frame(os.urandom(32)))
            answer = await attacker.receive_some()
            if answer.startswith(b"\0\0"):
                busy += 1
            else:
                answered += 1
        # Free until half the slots are taken, then held to its 4.
        assert (answered, busy) == (8, 12)
        # Everyone else still gets in, from every other address.
        served = [await _connect_from(f"127.0.0.{n}", port, ids) for n in range(2, 8)]
    for stream in [*served, *stalled]:
        await stream.aclose()
