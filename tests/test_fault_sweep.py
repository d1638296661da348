"""Every fault of the kit, at positions spread over a whole recorded session.

Each run must end with the exact data and a clean end, or an exact prefix
and a typed error: never altered bytes, never a clean end of cut data, never
plaintext on the wire. ``python -m tests.hardening`` sweeps every offset.
"""

from __future__ import annotations

import trio

from securesess.errors import RecordAuthenticationFailed
from tests.faultsweep import FAULT_KINDS, Side, World, problems, replays, sweep


def test_a_fault_anywhere_in_a_session_never_alters_or_cuts_data_silently() -> None:
    world = World()
    # Every 4th offset of both directions, each kind at every residue: the
    # kinds between them still touch every byte position class.
    result = sweep(world, list(FAULT_KINDS), stride=4)
    assert result.runs > 1000
    assert result.failures == []


def test_a_replayed_session_delivers_nothing() -> None:
    for protocol in (None, "Noise_IK_25519_AESGCM_SHA256"):
        result = replays(World(protocol=protocol), 5)
        assert (result.runs, result.failures) == (5, [])


def test_the_checks_catch_what_they_are_for() -> None:
    expected = b"abcdef"
    assert list(problems(Side(b"abcdef"), expected, "x")) == []
    broken = trio.BrokenResourceError("tampered")
    broken.__cause__ = RecordAuthenticationFailed("a record failed authentication")
    assert list(problems(Side(b"abc", broken), expected, "x")) == []
    assert list(problems(Side(b"abX"), expected, "x")) == [
        "x received altered bytes: b'abX'...",
        "x saw a clean end after 3 of 6 bytes",
    ]
    assert list(problems(Side(b"abc"), expected, "x")) == ["x saw a clean end after 3 of 6 bytes"]
    assert list(problems(Side(b"", ValueError("oops")), expected, "x")) == [
        "x failed with untyped ValueError('oops')"
    ]
