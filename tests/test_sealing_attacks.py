"""Sealed sessions against a malicious hub and malicious members.

The hub sees every byte and may reorder, replay, drop, rewrite, re-sign, fork
and misdeliver; a member holds its epoch's secret and its own keys. Each
attack ends in a typed refusal, and no altered or forged content opens.
Commits built by hand follow docs/protocol.md §10, not the code's helpers."""

from __future__ import annotations

import secrets
import struct
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securesess.sessions.sealing import (
    Commit,
    Credential,
    ForgedContent,
    GroupState,
    Kind,
    MalformedSealing,
    ReplayedContent,
    Roster,
    RosterEntry,
    SealedHeader,
    SealingError,
    StaleEpoch,
    UnknownSender,
    UntrustedMember,
    WrongSession,
)
from tests import sealing_spec as spec
from tests.sealing_members import HonestHub, Identity, held_keys, held_membership_key

U64 = struct.Struct(">Q")

# -- commits by the letter of docs/protocol.md §10 ---------------------------------------------


def build_commit(*, roster: Roster, **fields: Any) -> bytes:
    keys = {member: entry.membership_key for member, entry in roster.items()}
    return spec.build_commit(roster=roster.encode(), membership_keys=keys, **fields)


def resign(commit: bytes, signing_key: Ed25519PrivateKey) -> bytes:
    unsigned = commit[:-64]
    return unsigned + signing_key.sign(b"securesess commit v1\0" + unsigned)


# -- forward and backward confinement ---------------------------------------------------------


def test_a_removed_member_handed_every_byte_reads_nothing_of_the_next_epoch() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    commit, _ = hub.change(remove=(c,))
    after = [a.seal(b"after c left"), b.seal(b"to a", to=a.member), a.seal(b"v", key="k")]
    with pytest.raises(UnknownSender, match="leaves this member out"):
        c.apply_commit(commit)
    for data in after:
        with pytest.raises(StaleEpoch):
            c.open(data)
    with pytest.raises(StaleEpoch):
        c.open_value(after[2])
    # With the raw bytes and every key c holds: no wrap is c's ...
    assert not spec.opens_a_wrap(commit, held_membership_key(c))
    with pytest.raises(KeyError):
        Commit.decode(commit).open(c.member, held_membership_key(c), bytes(32))
    # ... and its old epoch's key opens nothing sealed in the new one, though
    # the new epoch's context is public: only the key is missing.
    old = held_keys(c)
    new_context = spec.context(hub.session, 2, spec.transcript_after(old.transcript, commit))
    header, start = SealedHeader.decode(after[0])
    aad = b"securesess content v1\0" + new_context + after[0][:start]
    assert new_context == held_keys(a).context
    with pytest.raises(InvalidTag):
        old.sender(a.member).decrypt(old.nonce(header.generation), after[0][start:-64], aad)


def test_a_member_the_hub_keeps_delivering_to_after_it_left_opens_nothing() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    hub.change(remove=(c,))
    c.erase()
    for data in (a.seal(b"m"), a.seal(b"d", to=b.member), b.seal(b"v", key="k")):
        for attempt in (c.open, c.open_value):
            with pytest.raises(StaleEpoch):
                attempt(data)


def test_a_joiner_handed_the_epoch_before_its_join_reads_none_of_it() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    before = [a.seal(b"before"), a.seal(b"v", key="k"), b.seal(b"d", to=a.member)]
    previous_commit = hub.commits[-1]
    joiner = hub.newcomer()
    hub.change(add=(joiner,))
    for data in before:
        with pytest.raises(StaleEpoch):
            joiner.open(data)
        with pytest.raises((StaleEpoch, WrongSession)):
            joiner.open_value(data)
    with pytest.raises(StaleEpoch):
        joiner.apply_commit(previous_commit)
    assert joiner.member not in Commit.decode(previous_commit).roster
    assert not spec.opens_a_wrap(previous_commit, held_membership_key(joiner))


def test_an_old_commit_cannot_bring_a_rejoining_process_back_into_its_epoch() -> None:
    # The hub numbers memberships: here it gives the process its old number
    # again and replays the commit that had it in, whose secret the member
    # removed since then still holds.
    hub = HonestHub()
    identity = Identity.generate()
    a = hub.newcomer()
    first = hub.newcomer(identity)
    old_commit, _ = hub.change(add=(a, first))
    again = GroupState(
        hub.session,
        first.member,
        static_key=identity.static.public_key(),
        signing_key=identity.signing,
        vouch=hub.trust,
    )
    with pytest.raises(ForgedContent, match="other keys"):
        again.apply_commit(old_commit)
    assert again.epoch == 0
    with pytest.raises(StaleEpoch):
        again.seal(b"would reuse nonce 0 under the old key")


# -- the hub reorders, replays, drops ---------------------------------------------------------


def test_content_delivered_after_the_commit_that_ended_its_epoch_is_stale() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    late = a.seal(b"sealed in epoch 1")
    hub.change(add=(hub.newcomer(),))
    with pytest.raises(StaleEpoch):
        b.open(late)


def test_a_commit_out_of_order_or_twice_is_refused() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    c = hub.newcomer()
    second = a.propose(Roster([a.entry, b.entry, c.entry]))
    a.apply_commit(second)
    third = a.propose(Roster([a.entry, b.entry]))
    with pytest.raises(StaleEpoch):
        b.apply_commit(third)
    b.apply_commit(second)
    with pytest.raises(StaleEpoch):
        b.apply_commit(second)
    assert b.epoch == 2


def test_a_replayed_message_is_refused_and_an_older_one_after_a_newer_too() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    first, second = a.seal(b"1"), a.seal(b"2")
    assert b.open(first).body == b"1"
    with pytest.raises(ReplayedContent):
        b.open(first)
    assert b.open(second).body == b"2"
    with pytest.raises(ReplayedContent):
        b.open(first)


def test_a_dropped_message_does_not_stop_the_next_one() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    a.seal(b"dropped")
    a.seal(b"dropped too")
    assert b.open(a.seal(b"arrives")).header.generation == 2


# -- the hub rewrites content -----------------------------------------------------------------

# The header's fields, byte ranges of a message: a change there may also read
# as another epoch, sender, recipient or kind, each refused as such.
HEADER_REFUSALS = (ForgedContent, MalformedSealing, StaleEpoch, UnknownSender, WrongSession)


@pytest.mark.parametrize("kind", ["message", "direct", "variable"])
@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_every_flipped_bit_of_sealed_content_is_refused(kind: str, mask: int) -> None:
    hub = HonestHub()
    a, b, _ = hub.start(3)
    body = bytes(range(64))
    to = b.member if kind == "direct" else None
    data = a.seal(body, to=to, key="k" if kind == "variable" else None)
    _, start = SealedHeader.decode(data)
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= mask
        expected = HEADER_REFUSALS if position < start else (ForgedContent,)
        with pytest.raises(expected):
            b.open(bytes(flipped), sender=a.member)
        with pytest.raises(SealingError):
            b.open(bytes(flipped))
    for cut in (1, 16, 64, len(data) - 1):
        with pytest.raises((ForgedContent, MalformedSealing)):
            b.open(data[:-cut])
    assert b.open(data).body == body


def test_a_sender_rewritten_in_the_header_is_a_forgery() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    data = bytearray(a.seal(b"from a"))
    data[10:18] = U64.pack(c.member)
    with pytest.raises(ForgedContent):
        b.open(bytes(data))
    with pytest.raises(ForgedContent):
        b.open(bytes(data), sender=c.member)


def test_content_the_hub_says_is_from_another_member_is_refused() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    data = a.seal(b"from a")
    with pytest.raises(ForgedContent, match="arrived as from"):
        b.open(data, sender=c.member)
    assert b.open(data, sender=a.member).body == b"from a"


def test_a_direct_message_readdressed_by_the_hub_is_a_forgery() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    data = bytearray(a.seal(b"for b", to=b.member))
    data[26:34] = U64.pack(c.member)
    with pytest.raises(ForgedContent):
        c.open(bytes(data))


def test_content_moved_to_another_session_does_not_open_there() -> None:
    trust_hub = HonestHub("chat")
    other = HonestHub("other", trust=trust_hub.trust)
    a, _ = trust_hub.start(2)
    _, y = other.start(2)
    # Same member numbers and epoch in both sessions; only the context differs.
    data = a.seal(b"for chat only")
    with pytest.raises(ForgedContent):
        y.open(data)


def test_content_moved_to_another_epoch_number_does_not_open() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    data = a.seal(b"epoch 1")
    hub.change(add=(hub.newcomer(),))
    moved = bytearray(data)
    moved[2:10] = U64.pack(2)
    with pytest.raises(ForgedContent):
        b.open(bytes(moved))


# -- the hub rewrites commits -----------------------------------------------------------------


def test_a_commit_from_someone_outside_the_epoch_is_refused() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    outsider = hub.newcomer()
    # Vouched for and correctly signed, but not a member of epoch 1.
    commit = build_commit(
        session=hub.session,
        epoch=2,
        previous=a.transcript,
        committer=outsider.member,
        roster=Roster([a.entry, b.entry, outsider.entry]),
        signing_key=hub.signing_key(outsider),
        secret=secrets.token_bytes(32),
    )
    with pytest.raises(UnknownSender, match="not a member of epoch 1"):
        b.apply_commit(commit)
    assert b.epoch == 1


def test_a_commit_the_hub_signs_itself_is_refused() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    joiner = hub.newcomer()
    hub_key = Ed25519PrivateKey.generate()
    genuine = a.propose(Roster([a.entry, b.entry, joiner.entry]))
    for state in (b, joiner):
        with pytest.raises(ForgedContent, match="not signed"):
            state.apply_commit(resign(genuine, hub_key))


def test_a_commit_naming_the_hubs_key_for_the_committer_is_refused() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    joiner = hub.newcomer()
    hub_key = Ed25519PrivateKey.generate()
    credential = Credential(a.entry.credential.static_key, hub_key.public_key().public_bytes_raw())
    fake_a = RosterEntry.make(
        session=hub.session,
        member=a.member,
        credential=credential,
        membership_key=a.entry.membership_key,
        signing_key=hub_key,
    )
    commit = build_commit(
        session=hub.session,
        epoch=2,
        previous=a.transcript,
        committer=a.member,
        roster=Roster([fake_a, b.entry, joiner.entry]),
        signing_key=hub_key,
        secret=secrets.token_bytes(32),
    )
    with pytest.raises(ForgedContent, match="changes #1's keys"):
        b.apply_commit(commit)
    with pytest.raises(UntrustedMember, match="member #1"):
        joiner.apply_commit(commit)


def test_a_commit_that_swaps_a_continuing_members_keys_is_refused() -> None:
    # Signed by a genuine member (a), which swaps c's entry for one whose
    # keys it holds: every other member refuses, and so does c.
    hub = HonestHub()
    a, b, c = hub.start(3)
    impostor = hub.newcomer()
    swapped = RosterEntry(
        c.member,
        impostor.entry.credential,
        impostor.entry.membership_key,
        impostor.entry.binding,
    )
    commit = a.propose(Roster([a.entry, b.entry, swapped]))
    with pytest.raises(ForgedContent, match="changes #3's keys"):
        b.apply_commit(commit)
    with pytest.raises(ForgedContent, match="other keys"):
        c.apply_commit(commit)


def test_a_membership_key_its_member_did_not_sign_is_refused() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    joiner = hub.newcomer()
    hubs = X25519PrivateKey.generate().public_key().public_bytes_raw()
    altered = RosterEntry(joiner.member, joiner.entry.credential, hubs, joiner.entry.binding)
    commit = a.propose(Roster([a.entry, b.entry, altered]))
    with pytest.raises(ForgedContent, match="membership key is not signed"):
        b.apply_commit(commit)
    with pytest.raises(ForgedContent, match="other keys"):
        joiner.apply_commit(commit)


def test_a_newcomer_the_members_trust_does_not_vouch_for_is_refused() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    stranger = hub.newcomer()
    hub.trust.pairs.pop(stranger.entry.credential.static_key)
    commit = a.propose(Roster([a.entry, b.entry, stranger.entry]))
    with pytest.raises(UntrustedMember, match="member #3"):
        b.apply_commit(commit)


def test_a_wrap_carrying_another_secret_is_caught_by_the_confirmation() -> None:
    # A malicious committer gives b a secret of its own; a and c get the
    # confirmed one. b refuses; it is not left in an epoch apart.
    hub = HonestHub()
    a, b, c = hub.start(3)
    roster = Roster([a.entry, b.entry, c.entry])
    commit = build_commit(
        session=hub.session,
        epoch=2,
        previous=a.transcript,
        committer=a.member,
        roster=roster,
        signing_key=hub.signing_key(a),
        secret=secrets.token_bytes(32),
        wrapped={b.member: secrets.token_bytes(32)},
    )
    with pytest.raises(ForgedContent, match="not the one confirmed"):
        b.apply_commit(commit)
    assert b.epoch == 1
    assert a.apply_commit(commit).epoch == c.apply_commit(commit).epoch == 2
    assert c.open(a.seal(b"a and c agree")).body == b"a and c agree"


def test_a_forked_history_shows_at_once_and_at_the_next_commit() -> None:
    hub = HonestHub()
    a, b, c, d = hub.start(4)
    roster = Roster([a.entry, b.entry, c.entry, d.entry])
    left, right = a.propose(roster), b.propose(roster)
    for state in (a, c):
        state.apply_commit(left)
    for state in (b, d):
        state.apply_commit(right)
    assert a.epoch == b.epoch == 2
    assert a.transcript == c.transcript != b.transcript == d.transcript
    assert c.open(a.seal(b"left side")).body == b"left side"
    with pytest.raises(ForgedContent):
        b.open(a.seal(b"left side"))
    with pytest.raises(ForgedContent):
        a.open(d.seal(b"right side"))
    after = a.propose(roster)
    c.apply_commit(after)
    with pytest.raises(StaleEpoch, match="does not follow"):
        b.apply_commit(after)


# -- a member forges ----------------------------------------------------------------------------


def _forge_as(
    forger: GroupState, victim: int, body: bytes, generation: int, sign: Ed25519PrivateKey
) -> bytes:
    """Content claiming to be ``victim``'s, sealed by ``forger`` with the
    victim's sender key, which every member of the epoch can derive."""
    keys = held_keys(forger)
    header = SealedHeader(Kind.MESSAGE, forger.epoch, victim, generation).encode()
    aad = b"securesess content v1\0" + keys.context + header
    sealed = header + keys.sender(victim).encrypt(keys.nonce(generation), body, aad)
    return sealed + sign.sign(b"securesess content v1\0" + keys.context + sealed)


def test_a_member_cannot_seal_as_another_even_with_its_sender_key() -> None:
    hub = HonestHub()
    a, b, c = hub.start(3)
    forged = _forge_as(b, a.member, b"a never said this", 7, hub.signing_key(b))
    with pytest.raises(ForgedContent, match="not signed by #1"):
        c.open(forged)
    with pytest.raises(ForgedContent):
        c.open(forged, sender=a.member)
    # The same bytes signed with a's key open: only the signature stopped them.
    genuine = _forge_as(b, a.member, b"a said this", 8, hub.signing_key(a))
    assert c.open(genuine).body == b"a said this"


def test_without_the_epoch_secret_the_hub_cannot_seal_even_with_a_members_signature() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    header = SealedHeader(Kind.MESSAGE, 1, a.member, 9).encode()
    sealed = header + secrets.token_bytes(40)
    context_bytes = held_keys(b).context  # public: session, epoch, transcript
    # Even were a to sign anything put before it, the ciphertext is not under a's key.
    signature = hub.signing_key(a).sign(b"securesess content v1\0" + context_bytes + sealed)
    with pytest.raises(ForgedContent, match="does not open"):
        b.open(sealed + signature)
    assert b.open(a.seal(b"still fine")).body == b"still fine"
