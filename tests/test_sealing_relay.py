"""The hub's side of a sealed session (sessions/sealing/relay.py): which
commit it orders, and which content, from what it can read of them.

Real members (GroupState, real keys) make the commits and the content; the
relay decides as a hub would, and each refusal is checked to change nothing.
"""

from __future__ import annotations

import pytest

from securesess.sessions.sealing import (
    GroupState,
    MalformedSealing,
    Relay,
    Roster,
    SealingError,
    StaleEpoch,
    UnknownSender,
)
from securesess.sessions.sealing.errors import ForgedContent, WrongSession
from tests.sealing_members import HonestHub


def _state(relay: Relay) -> tuple[int, bytes, frozenset[int], frozenset[int]]:
    return relay.epoch, relay.transcript, relay.roster, frozenset(relay.members)


def _refused(relay: Relay, error: type[SealingError], attempt: object) -> None:
    """``attempt`` (a call on ``relay``) is refused with ``error``, and changes nothing."""
    before = _state(relay)
    with pytest.raises(error):
        attempt()  # type: ignore[operator]
    assert _state(relay) == before


def _commit(
    relay: Relay, committer: GroupState, members: list[GroupState], *, now: float = 0.0
) -> bytes:
    """``committer``'s commit of ``members``, ordered by ``relay`` and applied by all."""
    data = committer.propose(Roster(member.entry for member in members))
    relay.sequence_commit(data, committer.member, now=now)
    for member in members:
        member.apply_commit(data)
    return data


def _started(count: int) -> tuple[HonestHub, Relay, list[GroupState]]:
    hub = HonestHub()
    relay = Relay(hub.session)
    members = [hub.newcomer() for _ in range(count)]
    for member in members:
        relay.joined(member.member)
    _commit(relay, members[0], members)
    return hub, relay, members


def test_the_first_member_starts_the_session_and_nothing_is_due_after() -> None:
    hub = HonestHub()
    relay = Relay(hub.session)
    assert (relay.due, relay.committer) == (False, None)
    founder = hub.newcomer()
    relay.joined(founder.member)
    assert (relay.due, relay.committer) == (True, founder.member)
    _commit(relay, founder, [founder])
    assert (relay.epoch, relay.roster, relay.due) == (1, frozenset({founder.member}), False)
    assert relay.transcript == founder.transcript


def test_a_join_makes_a_commit_due_from_the_longest_present_member() -> None:
    hub, relay, (a, b) = _started(2)
    c = hub.newcomer()
    relay.joined(c.member)
    assert relay.due
    assert relay.committer == a.member
    roster = Roster(m.entry for m in (a, b, c))
    # Only the designated member's commit is ordered, and only the one that
    # names exactly the members now.
    _refused(
        relay, UnknownSender, lambda: relay.sequence_commit(b.propose(roster), b.member, now=0.0)
    )
    without_c = a.propose(Roster(m.entry for m in (a, b)))
    _refused(relay, StaleEpoch, lambda: relay.sequence_commit(without_c, a.member, now=0.0))
    _commit(relay, a, [a, b, c])
    assert (relay.epoch, relay.due) == (2, False)
    assert relay.transcript == a.transcript == b.transcript == c.transcript


def test_content_of_an_epoch_that_is_over_is_refused_as_members_would() -> None:
    hub, relay, (a, b) = _started(2)
    early = a.seal(b"sealed in epoch 1")
    assert relay.sequence_content(early, a.member).epoch == 1
    c = hub.newcomer()
    relay.joined(c.member)
    # Until the commit is ordered, epoch 1 goes on for the members it has;
    # the joiner is not one of them yet, so it cannot send.
    late = a.seal(b"still epoch 1")
    relay.sequence_content(late, a.member)
    with pytest.raises(StaleEpoch):
        c.seal(b"too soon")
    _commit(relay, a, [a, b, c])
    for stale in (early, late):
        _refused(relay, StaleEpoch, lambda stale=stale: relay.sequence_content(stale, a.member))
        with pytest.raises(StaleEpoch):
            b.open(stale, sender=a.member)
    fresh = c.seal(b"epoch 2")
    assert relay.sequence_content(fresh, c.member).epoch == 2
    assert a.open(fresh, sender=c.member).body == b"epoch 2"


def test_content_must_name_the_member_that_sent_it() -> None:
    _, relay, (a, b) = _started(2)
    sealed = a.seal(b"from a")
    _refused(relay, ForgedContent, lambda: relay.sequence_content(sealed, b.member))


def test_a_member_that_left_sends_nothing_more_even_before_the_commit() -> None:
    _, relay, (a, b, c) = _started(3)
    sealed = c.seal(b"after leaving")
    relay.left(c.member)
    _refused(relay, UnknownSender, lambda: relay.sequence_content(sealed, c.member))
    to_c = a.seal(b"for c alone", to=c.member)
    _refused(relay, UnknownSender, lambda: relay.sequence_content(to_c, a.member))
    _commit(relay, a, [a, b])
    assert relay.roster == frozenset({a.member, b.member})


def test_once_a_member_left_its_epoch_takes_no_more_content_until_the_next() -> None:
    # c holds the epoch's keys: what the others seal under it after c left
    # would open for c, should the hub hand it over.
    _, relay, (a, b, c) = _started(3)
    early = a.seal(b"before c left")
    relay.sequence_content(early, a.member)
    relay.left(c.member)
    late = a.seal(b"after c left")
    _refused(relay, StaleEpoch, lambda: relay.sequence_content(late, a.member))
    _commit(relay, a, [a, b])
    assert relay.sequence_content(a.seal(b"in the new epoch"), a.member).epoch == 2


def test_a_joiner_does_not_close_the_epoch_it_is_not_in() -> None:
    hub, relay, (a, _) = _started(2)
    c = hub.newcomer()
    relay.joined(c.member)
    assert relay.due
    assert relay.sequence_content(a.seal(b"c cannot read this"), a.member).epoch == 1


def test_a_direct_message_goes_to_a_member_of_the_epoch() -> None:
    _, relay, (a, b) = _started(2)
    header = relay.sequence_content(a.seal(b"psst", to=b.member), a.member)
    assert (header.recipient, header.sender) == (b.member, a.member)


def test_when_the_designated_member_leaves_the_next_longest_present_commits() -> None:
    hub, relay, (a, b, c) = _started(3)
    d = hub.newcomer()
    relay.joined(d.member)
    assert relay.committer == a.member
    stale = a.propose(Roster(m.entry for m in (a, b, c, d)))
    relay.left(a.member)
    assert relay.committer == b.member
    _refused(relay, UnknownSender, lambda: relay.sequence_commit(stale, a.member, now=0.0))
    _commit(relay, b, [b, c, d])
    assert relay.epoch == 2
    assert relay.roster == frozenset({b.member, c.member, d.member})


def test_when_every_member_of_the_epoch_has_left_the_longest_present_starts_again() -> None:
    hub, relay, (a,) = _started(1)
    b, c = hub.newcomer(), hub.newcomer()
    relay.joined(b.member)
    relay.joined(c.member)
    old_content = a.seal(b"from the epoch that is over")
    relay.left(a.member)
    assert relay.committer == b.member
    # Nobody left holds epoch 1's transcript: b, which knows no epoch,
    # proposes the session's first again, and both members take it.
    _commit(relay, b, [b, c])
    assert (relay.epoch, relay.roster) == (1, frozenset({b.member, c.member}))
    assert relay.transcript == b.transcript == c.transcript
    assert c.open(b.seal(b"afresh"), sender=b.member).body == b"afresh"
    _refused(relay, UnknownSender, lambda: relay.sequence_content(old_content, a.member))
    with pytest.raises(SealingError):
        c.open(old_content, sender=a.member)


def test_a_replayed_commit_is_refused() -> None:
    hub, relay, (a, b) = _started(2)
    c = hub.newcomer()
    relay.joined(c.member)
    commit = _commit(relay, a, [a, b, c])
    relay.left(c.member)
    assert relay.committer == a.member
    _refused(relay, StaleEpoch, lambda: relay.sequence_commit(commit, a.member, now=0.0))


def test_nothing_is_due_and_nobody_may_commit_while_the_roster_is_the_membership() -> None:
    _, relay, (a, b) = _started(2)
    again = a.propose(Roster(m.entry for m in (a, b)))
    _refused(relay, UnknownSender, lambda: relay.sequence_commit(again, a.member, now=0.0))


def test_a_commit_for_another_session_is_refused() -> None:
    _, relay, (a, _b) = _started(2)
    other_hub = HonestHub("elsewhere")
    stranger = other_hub.newcomer()
    commit = stranger.propose(Roster([stranger.entry]))
    relay.joined(99)
    _refused(relay, WrongSession, lambda: relay.sequence_commit(commit, a.member, now=0.0))


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x02" + bytes(40), bytes(200)])
def test_bytes_that_are_not_sealed_are_malformed(data: bytes) -> None:
    _, relay, (a, _b) = _started(2)
    _refused(relay, MalformedSealing, lambda: relay.sequence_content(data, a.member))
    relay.joined(50)
    _refused(relay, MalformedSealing, lambda: relay.sequence_commit(data, a.member, now=0.0))


def test_an_epoch_that_carried_its_limit_is_replaced_with_the_same_members() -> None:
    hub = HonestHub()
    relay = Relay(hub.session, max_messages=3)
    a, b = hub.newcomer(), hub.newcomer()
    for member in (a, b):
        relay.joined(member.member)
    _commit(relay, a, [a, b])
    for _ in range(2):
        relay.sequence_content(a.seal(b"x"), a.member)
    assert (relay.due, relay.committer) == (False, None)
    relay.sequence_content(b.seal(b"the third"), b.member)
    assert (relay.due, relay.committer) == (True, a.member)
    # Content goes on under the old epoch until the commit is ordered.
    old = a.seal(b"still epoch 1")
    relay.sequence_content(old, a.member)
    _commit(relay, a, [a, b])
    assert (relay.epoch, relay.due, relay.roster) == (2, False, frozenset({a.member, b.member}))
    _refused(relay, StaleEpoch, lambda: relay.sequence_content(old, a.member))
    assert b.open(a.seal(b"new keys"), sender=a.member).body == b"new keys"


def test_an_epoch_older_than_its_limit_is_replaced() -> None:
    hub = HonestHub()
    relay = Relay(hub.session, max_seconds=60.0)
    a, b = hub.newcomer(), hub.newcomer()
    for member in (a, b):
        relay.joined(member.member)
    _commit(relay, a, [a, b], now=1000.0)
    assert relay.expire(1059.0) is False
    assert relay.expire(1060.0) is True
    assert relay.committer == a.member
    _commit(relay, a, [a, b], now=1061.0)
    assert (relay.epoch, relay.expire(1100.0)) == (2, False)


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Relay("s", max_messages=0)
    with pytest.raises(ValueError, match="at least one"):
        Relay("s", max_seconds=0.0)
