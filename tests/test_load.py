"""Load and denial of service at the quick sizes (tests/hardening/load.py has the full ones).

Many handshakes at once must each complete or be told "busy", never hang or
fail otherwise; garbage and stalled connections must end within the
server's handshake timeout; legitimate clients must get through an attack.
"""

from __future__ import annotations

import pytest
import trio

from tests.hardening import load
from tests.hardening.load import QUICK, Measured


async def test_handshakes_at_once_complete_or_are_told_busy() -> None:
    measured = await load.at_once("echo", QUICK, count=QUICK.at_once, sources=10)
    assert measured.row.ok, measured.row
    assert measured.outcomes["done"] >= QUICK.max_concurrent, measured.row


async def test_one_source_over_its_burst_is_told_busy_cleanly() -> None:
    measured = await load.at_once("echo", QUICK, count=QUICK.at_once, sources=1)
    assert measured.row.ok, measured.row
    # The burst gets through (plus what the rate refills meanwhile); the rest is told busy.
    assert QUICK.burst <= measured.outcomes["done"] < QUICK.at_once, measured.row
    assert measured.outcomes["busy"] == QUICK.at_once - measured.outcomes["done"]


@pytest.mark.parametrize("target", ["tunnel", "hub"])
async def test_the_tunnel_and_the_hub_take_handshakes_at_once(target: str) -> None:
    measured = await load.at_once(target, QUICK, count=QUICK.at_once_side, sources=10)
    assert measured.row.ok, measured.row
    assert measured.outcomes["done"] > 0, measured.row


async def test_garbage_and_stalled_connections_below_the_cap_leave_legitimate_clients_be() -> None:
    measured = await load.under_attack("echo", QUICK, stalled=QUICK.stalled_below_cap)
    assert measured.row.ok, measured.row
    # The attack really happened, and the server's timeout ended the stalled connections.
    assert measured.attack["timed out"] >= QUICK.stalled_below_cap, measured.row
    assert measured.attack["hung up on"] > 0, measured.row


@pytest.fixture(scope="module", params=["echo", "tunnel", "hub"])
def slowloris(request: pytest.FixtureRequest) -> Measured:
    """One slowloris run per server, shared by the tests below (sync: module scope)."""
    target: str = request.param
    return trio.run(lambda: load.under_attack(target, QUICK, stalled=QUICK.stalled))


def test_a_slowloris_is_bounded_and_refused_cleanly(slowloris: Measured) -> None:
    """What holds under a slowloris: nothing hangs, nothing is lost, nothing fails
    but with "busy", and every stalled connection ends within the handshake timeout."""
    assert slowloris.row.unexpected == 0, slowloris.row
    assert slowloris.row.lost == 0, slowloris.row
    assert set(slowloris.outcomes) <= {"done", "busy"}, slowloris.row
    # Every stalled connection was ended by the server at least once, and its
    # handshake timeout did some of that.
    ended = slowloris.attack["timed out"] + slowloris.attack["refused busy"]
    assert ended >= QUICK.stalled, slowloris.row
    assert slowloris.attack["timed out"] > 0, slowloris.row


def test_a_slowloris_does_not_stop_legitimate_clients(slowloris: Measured) -> None:
    assert slowloris.outcomes["done"] == slowloris.outcomes.total(), slowloris.row
