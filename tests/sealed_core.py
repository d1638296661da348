"""A session core whose members seal for real, played by hand, for the sans-IO tests.

Each client of the core gets a real :class:`GroupState` for each session it
joins: :meth:`SealedCore.handle` enters it after its JOIN, makes the commit
of every DUE the core sends, and applies every EPOCH to its recipients, as
the clients would; :meth:`SealedCore.seal` seals content for a SEND or a SET.
Everyone vouches for everyone: trust is not what these tests are about.
"""

from __future__ import annotations

from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from keystore import Peer
from securesess.policy import Policy
from securesess.sessions.core import SessionCore
from securesess.sessions.outcome import Client, Member, Outcome
from securesess.sessions.requests import Commit, Enter, Join, Request
from securesess.sessions.sealing import Credential, GroupState, Roster, RosterEntry
from securesess.sessions.wire import Op


def _vouch_for_all(credential: Credential) -> None:
    pass


class SealedCore:
    """``core`` and the sealing of its members."""

    def __init__(self, core: SessionCore) -> None:
        self.core = core
        self.groups: dict[tuple[Client, str], GroupState] = {}
        self._signing: dict[Client, Ed25519PrivateKey] = {}
        #: Every outcome the sealing itself caused (ENTER, COMMIT), in order.
        self.sealing_outcomes: list[Outcome] = []

    @property
    def policy(self) -> Policy:
        return self.core.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self.core.policy = policy

    def connect(self, peer: Peer) -> Client:
        return self.core.connect(peer)

    def __getattr__(self, name: str) -> Any:
        # connect, sessions, disconnect, ...: the core's own.
        return getattr(self.core, name)

    def group(self, client: Client, session: str) -> GroupState:
        return self.groups[client, session]

    def handle(self, client: Client, request: Request, *, enter: bool = True) -> Outcome:
        """``core.handle``, then what the members' clients would do about it."""
        outcome = self.core.handle(client, request)
        self.settle(outcome)
        if isinstance(request, Join) and outcome.refused is None and enter:
            self.enter(client, request.session)
        return outcome

    def enter(self, client: Client, session: str) -> Outcome:
        """Send ``client``'s roster entry for ``session``, and settle the commit it makes due."""
        member = client.memberships[session]
        signing = self._signing.setdefault(client, Ed25519PrivateKey.generate())
        group = GroupState(
            session,
            member.id,
            static_key=X25519PublicKey.from_public_bytes(client.peer.public_key),
            signing_key=signing,
            vouch=_vouch_for_all,
        )
        self.groups[client, session] = group
        outcome = self.core.handle(client, Enter(0, session, group.entry.encode()))
        self.sealing_outcomes.append(outcome)
        self.settle(outcome)
        return outcome

    def seal(
        self, client: Client, session: str, body: bytes, *, to: int | None = None,
        key: str | None = None,
    ) -> bytes:  # fmt: skip
        return self.group(client, session).seal(body, to=to, key=key)

    def settle(self, outcome: Outcome) -> None:
        """Make the commit of every DUE in ``outcome``, and apply every EPOCH, to the end."""
        pending = [outcome]
        while pending:
            for delivery in pending.pop(0).deliveries:
                message: list[Any] = msgpack.unpackb(delivery.data, raw=False)
                if message[0] == Op.EPOCH:
                    for member in delivery.recipients:
                        self._state(member).apply_commit(message[4])
                elif message[0] == Op.DUE:
                    [member] = delivery.recipients
                    commit = self._commit(member, message[2], message[3], message[4])
                    answer = self.core.handle(member.client, Commit(0, member.session, commit))
                    assert answer.refused is None, answer.refused
                    self.sealing_outcomes.append(answer)
                    pending.append(answer)

    def _state(self, member: Member) -> GroupState:
        return self.groups[member.client, member.session]

    def _commit(
        self, member: Member, epoch: int, members: list[int], entries: list[bytes]
    ) -> bytes:
        group = self._state(member)
        assert epoch == group.epoch + 1
        known = dict(group.roster or {})
        for data in entries:
            entry = RosterEntry.decode(data)
            known[entry.member] = entry
        return group.propose(Roster(known[number] for number in members))
