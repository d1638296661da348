"""docs/protocol.md §10 is precise enough to implement: a reader written from
the text alone (tests/sealing_spec.py) opens what GroupState seals, and
GroupState applies what that writer commits."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from securesess.sessions.sealing import Roster
from tests import sealing_spec as spec
from tests.sealing_members import HonestHub, held_keys, held_membership_key


def test_the_spec_reads_a_commit_and_the_content_of_its_epoch() -> None:
    hub = HonestHub("spec ✓")
    a, b, c = hub.start(3)
    commit = hub.commits[0]
    parsed = spec.parse_commit(commit)
    assert (parsed.session, parsed.epoch, parsed.previous, parsed.committer) == (
        "spec ✓",
        1,
        bytes(32),
        a.member,
    )
    assert [entry.member for entry in parsed.entries] == [1, 2, 3]
    for entry in parsed.entries:
        Ed25519PublicKey.from_public_bytes(entry.signing).verify(
            entry.binding,
            b"securesess membership v1\0"
            + spec.name_field(hub.session)
            + spec.U64.pack(entry.member)
            + entry.static
            + entry.membership,
        )
    secret = spec.open_commit(commit, b.member, held_membership_key(b))
    transcript = spec.transcript_after(bytes(32), commit)
    assert transcript == b.transcript
    assert spec.context(hub.session, 1, transcript) == held_keys(b).context
    signing = {entry.member: entry.signing for entry in parsed.entries}
    opened = {
        body: spec.open_content(
            sealed,
            session=hub.session,
            transcript=transcript,
            secret=secret,
            signing_keys=signing,
            membership=held_membership_key(b),
        )
        for body, sealed in [
            (b"a message", a.seal(b"a message")),
            (b"a value", c.seal(b"a value", key="ключ")),
            (b"for b", a.seal(b"for b", to=b.member)),
            (b"", c.seal(b"")),
        ]
    }
    assert all(body == value for body, value in opened.items())


def test_the_sizes_are_those_the_spec_gives() -> None:
    hub = HonestHub("chat")
    a, b = hub.start(2)
    body = bytes(64)
    assert len(hub.commits[0]) == 150 + len("chat") + 252 * 2
    assert len(a.seal(body)) == 26 + 64 + 16 + 64
    assert len(a.seal(body, to=b.member)) == 34 + 64 + 48 + 16 + 64
    assert len(a.seal(body, key="k")) == 27 + 1 + 64 + 16 + 64


def test_group_state_applies_a_commit_the_spec_writes() -> None:
    hub = HonestHub()
    a, b = hub.start(2)
    joiner = hub.newcomer()
    roster = Roster([a.entry, b.entry, joiner.entry])
    commit = spec.build_commit(
        session=hub.session,
        epoch=2,
        previous=a.transcript,
        committer=a.member,
        roster=roster.encode(),
        membership_keys={member: entry.membership_key for member, entry in roster.items()},
        signing_key=hub.signing_key(a),
        secret=secrets.token_bytes(32),
    )
    for state in (a, b, joiner):
        assert state.apply_commit(commit).epoch == 2
    assert joiner.open(b.seal(b"hello")).body == b"hello"
