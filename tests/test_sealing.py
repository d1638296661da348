"""Sealed sessions as honest members see them: epochs, sealing and opening,
direct messages, variables, erasure, and decoding that only ever says
"malformed". The hostile cases are in test_sealing_attacks.py."""

from __future__ import annotations

import contextlib
import struct

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given
from hypothesis import strategies as st

from securesess.sessions.sealing import (
    Commit,
    EpochChange,
    EpochKeys,
    GroupState,
    Kind,
    MalformedSealing,
    ReplayedContent,
    Roster,
    SealedHeader,
    SealingError,
    StaleEpoch,
    UnknownSender,
    WrongSession,
)
from securesess.sessions.sealing.commit import SUITE
from tests.sealing_members import HonestHub, held_keys, held_membership_key

# -- epochs ---------------------------------------------------------------------------------


def test_three_members_read_one_another_through_a_join_and_a_leave() -> None:
    hub = HonestHub()
    a, b = hub.newcomer(), hub.newcomer()
    _, first = hub.change(add=(a, b))
    assert first[a.member] == EpochChange(1, frozenset({1, 2}), frozenset(), 1)
    c = hub.newcomer()
    _, second = hub.change(add=(c,))
    assert second[a.member] == second[b.member] == EpochChange(2, frozenset({3}), frozenset(), 1)
    assert second[c.member] == EpochChange(2, frozenset({1, 2, 3}), frozenset(), 1)
    for sender in (a, b, c):
        sealed = sender.seal(b"from #%d" % sender.member)
        for receiver in {a, b, c} - {sender}:
            opened = receiver.open(sealed, sender=sender.member)
            assert (opened.sender, opened.kind, opened.body) == (
                sender.member,
                Kind.MESSAGE,
                b"from #%d" % sender.member,
            )
    _, third = hub.change(remove=(b,))
    assert third[a.member] == third[c.member] == EpochChange(3, frozenset(), frozenset({2}), 1)
    assert a.epoch == c.epoch == 3
    assert a.transcript == c.transcript
    assert a.open(c.seal(b"just us")).body == b"just us"
    assert c.open(a.seal(b"indeed")).body == b"indeed"


def test_a_senders_counter_counts_what_it_sealed_and_restarts_each_epoch() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    headers = [b.open(a.seal(b"x")).header for _ in range(3)]
    assert [(h.epoch, h.sender, h.generation) for h in headers] == [(1, 1, 0), (1, 1, 1), (1, 1, 2)]
    assert a.sealed_in_epoch == 3
    hub.change(add=(hub.newcomer(),))
    assert a.sealed_in_epoch == 0
    assert b.open(a.seal(b"x")).header.generation == 0


def test_a_joiner_reads_from_the_epoch_of_its_join_on() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    hub.change(add=(hub.newcomer(),))
    hub.change(remove=(b,))
    late = hub.newcomer()
    hub.change(add=(late,))
    assert late.epoch == a.epoch == 4
    assert late.transcript == a.transcript
    assert late.open(a.seal(b"welcome")).body == b"welcome"
    assert a.open(late.seal(b"thanks")).body == b"thanks"


def test_content_before_any_epoch_is_stale() -> None:
    hub = HonestHub()
    a, _ = hub.start(2)
    waiting = hub.newcomer()
    with pytest.raises(StaleEpoch):
        waiting.seal(b"too early")
    with pytest.raises(StaleEpoch):
        waiting.open(a.seal(b"not yet yours"))


def test_a_member_proposes_only_rosters_that_hold_its_own_entry() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    with pytest.raises(ValueError, match="own entry"):
        a.propose(Roster([b.entry]))


# -- direct messages and variables ------------------------------------------------------------


def test_a_direct_message_opens_for_its_recipient_only() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    sealed = a.seal(b"for b alone", to=b.member)
    opened = b.open(sealed, sender=a.member)
    assert (opened.kind, opened.header.recipient, opened.body) == (
        Kind.DIRECT,
        b.member,
        b"for b alone",
    )
    with pytest.raises(WrongSession):
        c.open(sealed)


def test_under_the_epoch_key_a_direct_message_is_sealed_to_the_recipient() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    sealed = a.seal(b"for b alone", to=b.member)
    header, start = SealedHeader.decode(sealed)
    keys = held_keys(c)
    aad = b"securesess content v1\0" + keys.context + sealed[:start]
    # c peels the layer every member can: what is left is b's to open.
    inner = keys.sender(a.member).decrypt(keys.nonce(header.generation), sealed[start:-64], aad)
    assert b"for b alone" not in inner
    with pytest.raises(InvalidTag):
        SUITE.decrypt(inner, held_membership_key(c), info=aad)
    assert SUITE.decrypt(inner, held_membership_key(b), info=aad) == b"for b alone"


def test_a_direct_message_to_someone_outside_the_epoch_is_refused() -> None:
    hub = HonestHub()
    a, _ = hub.start(2)
    with pytest.raises(UnknownSender):
        a.seal(b"?", to=99)
    with pytest.raises(ValueError, match="not both"):
        a.seal(b"?", to=2, key="k")


def test_a_variable_value_names_its_key_and_opens_for_every_member() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    sealed = b.seal(b"blue", key="colour")
    for receiver in (a, c):
        opened = receiver.open(sealed)
        assert (opened.kind, opened.header.key, opened.body) == (Kind.VARIABLE, "colour", b"blue")


def test_a_stored_value_opens_as_often_as_it_is_read() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    sealed = a.seal(b"42", key="answer")
    assert b.open(sealed).body == b"42"
    assert b.open_value(sealed).body == b"42"
    assert b.open_value(sealed).body == b"42"
    with pytest.raises(ReplayedContent):
        b.open(sealed)


def test_only_a_variable_value_is_read_outside_the_order() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    with pytest.raises(WrongSession):
        b.open_value(a.seal(b"a message"))


# -- erasure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("retain", [0, 1, 2, 3])
def test_a_value_opens_for_retain_epochs_after_its_own_and_then_never(retain: int) -> None:
    hub = HonestHub()
    a, b = hub.start(2, retain=retain)
    sealed = a.seal(b"old", key="k")
    for _ in range(retain):
        hub.change(add=(hub.newcomer(),))
        assert b.open_value(sealed).body == b"old"
    hub.change(add=(hub.newcomer(),))
    with pytest.raises(StaleEpoch):
        b.open_value(sealed)
    with pytest.raises(StaleEpoch):
        a.open_value(sealed)


def test_erased_epoch_keys_hold_no_secret_and_derive_nothing() -> None:
    keys = EpochKeys("chat", 1, bytes(range(32)), bytes(32))
    keys.sender(1)
    keys.erase()
    assert keys.erased
    assert keys._secret is None
    assert keys._ciphers == {}
    with pytest.raises(ValueError, match="erased"):
        keys.sender(1)


def test_the_epochs_past_the_window_are_erased_inside_the_state() -> None:
    hub = HonestHub()
    a, _ = hub.start(2, retain=1)
    first = held_keys(a)
    hub.change(add=(hub.newcomer(),))
    second = held_keys(a)
    assert (first.erased, second.erased) == (False, False)
    hub.change(add=(hub.newcomer(),))
    assert (first.erased, second.erased) == (True, False)


def test_an_erased_state_refuses_everything_even_a_commit_it_applied() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    sealed = a.seal(b"hi")
    b.erase()
    assert b.erased
    assert b.epoch == 0
    for attempt in (
        lambda: b.seal(b"x"),
        lambda: b.open(sealed),
        lambda: b.open_value(sealed),
        lambda: b.apply_commit(hub.commits[0]),
        lambda: b.propose(Roster([b.entry])),
    ):
        with pytest.raises(StaleEpoch, match="over"):
            attempt()


def test_no_repr_shows_a_secret_or_a_plaintext() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    opened = b.open(a.seal(b"PLAINTEXT-MARKER"))
    keys = held_keys(a)
    secret = keys._secret
    assert secret is not None
    shown = " ".join(
        repr(thing) for thing in (a, b, keys, opened, Commit.decode(hub.commits[0]), a.roster)
    )
    assert "PLAINTEXT-MARKER" not in shown
    assert secret.hex() not in shown
    assert repr(secret)[2:-1] not in shown
    private = held_membership_key(a).private_bytes_raw()
    assert private.hex() not in shown


# -- any history ----------------------------------------------------------------------------

_STEPS = st.lists(
    st.tuples(st.sampled_from(["join", "leave", "message", "direct", "set"]), st.integers(0, 4)),
    max_size=20,
)


@given(_STEPS)
def test_every_member_opens_exactly_the_content_of_the_epochs_it_is_in(
    steps: list[tuple[str, int]],
) -> None:
    hub = HonestHub()
    everyone = hub.start(2)
    sealed: list[tuple[int, bytes]] = []
    nonces: set[tuple[bytes, int, int]] = set()
    for step, pick in steps:
        members = list(hub.members.values())
        if step == "join" and len(members) < 5:
            joiner = hub.newcomer()
            everyone.append(joiner)
            hub.change(add=(joiner,))
            for _, data in sealed:
                with pytest.raises(StaleEpoch):
                    joiner.open(data)
        elif step == "leave" and len(members) > 1:
            gone = members[pick % len(members)]
            commit, _ = hub.change(remove=(gone,))
            with pytest.raises(UnknownSender):
                gone.apply_commit(commit)
        elif step in {"message", "direct", "set"}:
            sender = members[pick % len(members)]
            to = members[(pick + 1) % len(members)].member if step == "direct" else None
            body = f"{step} {len(sealed)}".encode()
            data = sender.seal(body, to=to, key="k" if step == "set" else None)
            sealed.append((sender.epoch, data))
            # A sender key is one (transcript, sender); its nonce, the counter.
            generation = SealedHeader.decode(data)[0].generation
            assert (sender.transcript, sender.member, generation) not in nonces
            nonces.add((sender.transcript, sender.member, generation))
            for state in everyone:
                if state is sender:
                    continue
                if state.member in hub.members and to in {None, state.member}:
                    assert state.open(data, sender=sender.member).body == body
                else:
                    with pytest.raises((StaleEpoch, WrongSession)):
                        state.open(data)
        current = next(iter(hub.members.values()))
        assert {(s.epoch, s.transcript) for s in hub.members.values()} == {
            (current.epoch, current.transcript)
        }
    for epoch, data in sealed:
        for state in hub.members.values():
            if epoch < state.epoch:
                with pytest.raises(StaleEpoch):
                    state.open(data)


# -- encodings ------------------------------------------------------------------------------


def test_a_commit_and_its_roster_decode_to_what_was_encoded() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    commit = Commit.decode(hub.commits[0])
    assert (commit.session, commit.epoch, commit.previous, commit.committer) == (
        "chat",
        1,
        bytes(32),
        a.member,
    )
    assert commit.roster == Roster([a.entry, b.entry, c.entry])
    assert Roster.decode_from(commit.roster.encode(), 0) == (
        commit.roster,
        len(commit.roster.encode()),
    )
    assert [len(wrap) for wrap in commit.wraps] == [80, 80, 80]


@pytest.mark.parametrize(
    "header",
    [
        SealedHeader(Kind.MESSAGE, 1, 2, 3),
        SealedHeader(Kind.DIRECT, 2**64 - 1, 0, 2**64 - 1, recipient=7),
        SealedHeader(Kind.VARIABLE, 5, 6, 0, key="ключ"),
    ],
)
def test_a_header_decodes_to_what_was_encoded(header: SealedHeader) -> None:
    encoded = header.encode()
    assert SealedHeader.decode(encoded + bytes(80)) == (header, len(encoded))


def test_a_roster_count_promises_nothing_the_bytes_do_not_hold() -> None:
    with pytest.raises(MalformedSealing, match="over the limit"):
        Roster.decode_from(struct.pack(">I", 2**32 - 1), 0)
    with pytest.raises(MalformedSealing, match="ends early"):
        Roster.decode_from(struct.pack(">I", 65_535) + bytes(200), 0)


@given(st.binary(max_size=600))
def test_decoding_a_commit_is_total(data: bytes) -> None:
    with contextlib.suppress(MalformedSealing):
        Commit.decode(data)


@given(st.binary(max_size=600), st.integers(0, 8))
def test_decoding_a_roster_is_total(data: bytes, offset: int) -> None:
    with contextlib.suppress(MalformedSealing):
        Roster.decode_from(data, offset)


@given(st.binary(max_size=300))
def test_decoding_a_header_is_total(data: bytes) -> None:
    with contextlib.suppress(MalformedSealing):
        SealedHeader.decode(data)


_FIXED = struct.Struct(">BBQQQ")


@given(
    st.integers(0, 4),
    st.integers(0, 3),
    st.sampled_from([0, 1, 2, 2**64 - 1]),
    st.sampled_from([0, 1, 2, 2**64 - 1]),
    st.binary(max_size=200),
)
def test_opening_anything_ends_in_a_sealing_error(
    kind: int, epoch: int, sender: int, generation: int, rest: bytes
) -> None:
    # A plausible header makes the bytes reach the signature and the AEAD.
    data = _FIXED.pack(1, kind, epoch, sender, generation) + rest
    for attempt in (_OPENER.open, _OPENER.open_value):
        try:
            attempt(data)
        except SealingError:
            pass
        else:
            pytest.fail("arbitrary bytes opened")


def _pending_commit() -> tuple[bytes, GroupState, GroupState]:
    """A commit of epoch 2 adding a member, not yet applied: by a member that
    stays at epoch 1, and by the joiner it adds."""
    hub = HonestHub()
    a, b = hub.start(2)
    joiner = hub.newcomer()
    return a.propose(Roster([a.entry, b.entry, joiner.entry])), b, joiner


def test_the_pending_commit_applies_as_it_is() -> None:
    commit, member, joiner = _pending_commit()
    assert member.apply_commit(commit).epoch == joiner.apply_commit(commit).epoch == 2


@given(st.data())
def test_a_commit_with_any_bytes_changed_is_refused_with_a_sealing_error(
    data: st.DataObject,
) -> None:
    original, member, joiner = _pending_commit()
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.binary(min_size=1, max_size=8))
    mutated = original[:position] + replacement + original[position + len(replacement) :]
    if mutated == original:
        return
    for state in (member, joiner):
        with pytest.raises(SealingError):
            state.apply_commit(mutated)
        assert state.epoch == (1 if state is member else 0)


def _opener() -> GroupState:
    hub = HonestHub()
    hub.start(2)
    hub.change(add=(hub.newcomer(),))
    return hub.members[2]


_OPENER = _opener()
