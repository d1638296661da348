"""Members of a sealed session for the tests: real keys, a trust that vouches
for pinned (static, signing) pairs, and an honest hub's order of commits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securesess.sessions.sealing import (
    Credential,
    EpochChange,
    EpochKeys,
    GroupState,
    Roster,
    UntrustedMember,
)


@final
@dataclass(frozen=True)
class Identity:
    """A process's long-term keys: its Noise static key and its signing key."""

    static: X25519PrivateKey
    signing: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(X25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    @property
    def pair(self) -> tuple[bytes, bytes]:
        return (
            self.static.public_key().public_bytes_raw(),
            self.signing.public_key().public_bytes_raw(),
        )


@final
class Trust:
    """Vouches for exactly the (static, signing) pairs it pins."""

    def __init__(self) -> None:
        self.pairs: dict[bytes, bytes] = {}

    def pin(self, identity: Identity) -> Identity:
        static, signing = identity.pair
        self.pairs[static] = signing
        return identity

    def __call__(self, credential: Credential) -> None:
        if self.pairs.get(credential.static_key) != credential.signing_key:
            raise UntrustedMember("its (static, signing) pair is not pinned")


@final
class HonestHub:
    """One session's order as an honest hub keeps it: member numbers, the
    current members, and each commit made by the longest-present member and
    delivered to every member of its roster."""

    def __init__(self, session: str = "chat", *, trust: Trust | None = None) -> None:
        self.session = session
        self.trust = trust if trust is not None else Trust()
        self.members: dict[int, GroupState] = {}
        self.identities: dict[int, Identity] = {}
        self.commits: list[bytes] = []
        self._next = 1

    def newcomer(self, identity: Identity | None = None, *, retain: int = 2) -> GroupState:
        """A process that asks to join: pinned by everyone, numbered, not yet in."""
        identity = self.trust.pin(identity or Identity.generate())
        state = GroupState(
            self.session,
            self._next,
            static_key=identity.static.public_key(),
            signing_key=identity.signing,
            vouch=self.trust,
            retain=retain,
        )
        self.identities[state.member] = identity
        self._next += 1
        return state

    def change(
        self, *, add: tuple[GroupState, ...] = (), remove: tuple[GroupState, ...] = ()
    ) -> tuple[bytes, dict[int, EpochChange]]:
        """Commit a new epoch without ``remove`` and with ``add``, applied by
        every member of it; the commit and what each member saw change."""
        for state in remove:
            del self.members[state.member]
        for state in add:
            self.members[state.member] = state
        roster = Roster(state.entry for state in self.members.values())
        committer = self.members[min(self.members)]
        commit = committer.propose(roster)
        self.commits.append(commit)
        changes = {number: state.apply_commit(commit) for number, state in self.members.items()}
        return commit, changes

    def signing_key(self, state: GroupState) -> Ed25519PrivateKey:
        """The signing key of ``state``'s process, for a test that plays it."""
        return self.identities[state.member].signing

    def start(self, count: int, *, retain: int = 2) -> list[GroupState]:
        """A session of ``count`` members at epoch 1."""
        states = [self.newcomer(retain=retain) for _ in range(count)]
        self.change(add=tuple(states))
        return states


def held_keys(state: GroupState) -> EpochKeys:
    """The current epoch's keys inside ``state``: everything a process holds,
    as whoever controls it (a malicious member) can use it."""
    keys = state._keys
    assert keys is not None
    return keys


def held_membership_key(state: GroupState) -> X25519PrivateKey:
    key = state._membership
    assert key is not None
    return key
