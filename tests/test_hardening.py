"""The quick size of the hardening run's soak and kill checks, and its table."""

from __future__ import annotations

from tests.hardening import kill, soak
from tests.hardening.report import Row, table


def test_a_short_soak_keeps_everything_and_stays_flat() -> None:
    rows = soak.run(quick=True)
    assert [row for row in rows if not row.ok] == []
    assert rows[0].tried > 100  # the echo clients did work


def test_killing_tunnel_ends_the_hub_and_members_loses_nothing() -> None:
    rows = kill.run(quick=True)
    assert [row for row in rows if not row.ok] == []


def test_the_table_says_whether_anything_went_wrong() -> None:
    good = Row("faults", "a check", tried=10, held=10, lost=0, unexpected=0, note="1 s")
    text = table([good])
    assert text.splitlines()[1].split() == ["faults", "a", "check", "10", "10", "0", "0", "1", "s"]
    assert text.endswith("lost 0; unexpected 0: nothing lost, nothing unexpected")
    bad = Row("kill", "another", tried=3, held=2, lost=1, unexpected=0)
    assert not bad.ok
    assert table([good, bad]).endswith("lost 1; unexpected 0: FAILED")
