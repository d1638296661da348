"""One member's view of a sealed session: its epoch, its roster, its counters.

A :class:`GroupState` is fed what the hub delivers, in the hub's order: a
commit moves it to the next epoch (:meth:`GroupState.apply_commit`), content
is opened under the epoch it names (:meth:`GroupState.open`). It seals what
the member sends (:meth:`GroupState.seal`) and, when the hub designates this
member, makes the next commit (:meth:`GroupState.propose`).

What it refuses, and why:

- content of an epoch other than the current one, except a variable value
  of one of the few retained past epochs, which a member may still read
  once it has seen it set: the hub orders every commit among the content,
  so content sealed under an epoch after the commit that ended it is stale,
  whoever replays it;
- content whose sender is not in the epoch's roster, or whose hub-given
  sender differs from the sealed one;
- content that does not open under its sender's key or whose signature is
  not its sender's (the hub or another member altered or forged it);
- a sender's counter that does not move forward (a replay, in this epoch);
- a commit that does not continue this member's transcript, is not signed by
  a member of the current epoch, changes a continuing member's keys, names
  keys this member's trust does not vouch for, or whose secret does not
  open or is not the one confirmed.

A refused input changes nothing: every check comes before the state moves.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Final, final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securesess.sessions.sealing.commit import SUITE, Commit, make_commit
from securesess.sessions.sealing.content import DOMAIN, SIGNATURE_LEN, Kind, Opened, SealedHeader
from securesess.sessions.sealing.errors import (
    ForgedContent,
    ReplayedContent,
    StaleEpoch,
    UnknownSender,
    UntrustedMember,
    WrongSession,
)
from securesess.sessions.sealing.roster import Credential, Roster, Vouch
from securesess.sessions.sealing.schedule import GENESIS, MAX_GENERATION, EpochKeys, next_transcript

__all__ = ["DEFAULT_RETAIN", "EpochChange", "GroupState"]

#: Past epochs whose keys a member keeps, for variable values set in them.
DEFAULT_RETAIN: Final = 2
_U64: Final = struct.Struct(">Q")


@final
class EpochChange:
    """What a commit changed: the new epoch, who came, who went."""

    __slots__ = ("added", "epoch", "removed")

    def __init__(self, epoch: int, added: frozenset[int], removed: frozenset[int]) -> None:
        self.epoch: Final = epoch
        self.added: Final = added
        self.removed: Final = removed

    def __repr__(self) -> str:
        return (
            f"EpochChange(epoch={self.epoch}, added={sorted(self.added)}, "
            f"removed={sorted(self.removed)})"
        )


@final
class GroupState:
    """A member's sealing state for one session.

    ``member`` is the hub's number for this membership; ``vouch`` is this
    member's own trust, asked about every key a roster names.
    """

    __slots__ = (
        "_generation",
        "_keys",
        "_past",
        "_retain",
        "_seen",
        "_signing",
        "_static",
        "member",
        "roster",
        "session",
        "vouch",
    )

    def __init__(
        self,
        session: str,
        member: int,
        *,
        static_key: X25519PrivateKey,
        signing_key: Ed25519PrivateKey,
        vouch: Vouch,
        retain: int = DEFAULT_RETAIN,
    ) -> None:
        self.session: Final = session
        self.member: Final = member
        self.vouch: Final = vouch
        self._static: Final = static_key
        self._signing: Final = signing_key
        self._retain: Final = retain
        self._keys: EpochKeys | None = None
        self._past: OrderedDict[int, tuple[EpochKeys, Roster]] = OrderedDict()
        self.roster: Roster | None = None
        self._generation = 0
        # The highest counter seen per sender, in the current epoch.
        self._seen: dict[int, int] = {}

    # -- what the member holds ----------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current epoch; 0 before the first commit reached this member."""
        return 0 if self._keys is None else self._keys.epoch

    @property
    def transcript(self) -> bytes:
        return GENESIS if self._keys is None else self._keys.transcript

    @property
    def sealed_in_epoch(self) -> int:
        """How much this member sealed in the current epoch."""
        return self._generation

    def credential(self, certificate: bytes = b"") -> Credential:
        """This member's own entry for a roster."""
        return Credential(
            self._static.public_key().public_bytes_raw(),
            self._signing.public_key().public_bytes_raw(),
            certificate,
        )

    # -- epochs -------------------------------------------------------------------------

    def propose(self, roster: Roster) -> bytes:
        """A commit beginning the next epoch with ``roster``, made by this
        member. It takes effect when the hub orders it and this member
        applies it like anyone else."""
        if self.member not in roster:
            raise ValueError("a member commits only rosters it belongs to")
        commit, _ = make_commit(
            session=self.session,
            epoch=self.epoch + 1,
            previous=self.transcript,
            committer=self.member,
            signing_key=self._signing,
            roster=roster,
        )
        return commit

    def apply_commit(self, data: bytes) -> EpochChange:
        """Move to the epoch ``data`` begins.

        Raises:
            SealingError: the commit is refused (see the module's list);
                the state is unchanged.
        """
        commit = Commit.decode(data)
        if commit.session != self.session:
            raise WrongSession(f"a commit of session {commit.session!r} is not for this one")
        if commit.epoch != self.epoch + 1 or commit.previous != self.transcript:
            raise StaleEpoch(
                f"a commit of epoch {commit.epoch} does not follow epoch {self.epoch} here"
            )
        if self.member not in commit.roster:
            raise UnknownSender(f"the commit of epoch {commit.epoch} leaves this member out")
        old = self.roster
        if old is None:
            # A joiner knows no one yet: its own trust vouches for everyone.
            committer_key = commit.roster[commit.committer].signing_key
            newcomers = set(commit.roster)
        else:
            if commit.committer not in old:
                raise UnknownSender(
                    f"the commit of epoch {commit.epoch} is by #{commit.committer}, "
                    f"not a member of epoch {self.epoch}"
                )
            committer_key = old[commit.committer].signing_key
            for member in commit.roster:
                if member in old and old[member] != commit.roster[member]:
                    raise ForgedContent(
                        f"the commit of epoch {commit.epoch} changes #{member}'s keys"
                    )
            newcomers = {m for m in commit.roster if m not in old}
        commit.verify(committer_key)
        if commit.roster[self.member] != self.credential(commit.roster[self.member].certificate):
            raise ForgedContent(f"the commit of epoch {commit.epoch} gives this member other keys")
        for member in sorted(newcomers):
            try:
                self.vouch(commit.roster[member])
            except UntrustedMember as error:
                raise UntrustedMember(f"member #{member}: {error}") from None
        keys = commit.open(
            self.member, self._static, next_transcript(self.transcript, commit.encoded)
        )
        # Every check has passed: now the state moves.
        if self._keys is not None and old is not None:
            self._past[self._keys.epoch] = (self._keys, old)
            while len(self._past) > self._retain:
                _, (stale, _) = self._past.popitem(last=False)
                stale.erase()
        self._keys = keys
        self.roster = commit.roster
        self._generation = 0
        self._seen = {}
        removed = frozenset(old or ()) - frozenset(commit.roster)
        return EpochChange(commit.epoch, frozenset(newcomers), removed)

    # -- content ------------------------------------------------------------------------

    def seal(self, body: bytes, *, to: int | None = None, key: str | None = None) -> bytes:
        """Seal a message for the session, a direct message ``to`` one
        member, or the value of variable ``key``.

        Raises:
            StaleEpoch: no epoch yet, or this member's counter is used up.
            UnknownSender: ``to`` is not a member of the current epoch.
        """
        keys, roster = self._current()
        if self._generation >= MAX_GENERATION:
            raise StaleEpoch(f"member #{self.member} has sealed all it may in epoch {keys.epoch}")
        if to is not None and key is not None:
            raise ValueError("content is a direct message or a variable, not both")
        kind = Kind.DIRECT if to is not None else Kind.VARIABLE if key is not None else Kind.MESSAGE
        header = SealedHeader(kind, keys.epoch, self.member, self._generation, to, key).encode()
        aad = DOMAIN + keys.context + header
        plaintext = body
        if to is not None:
            if to not in roster:
                raise UnknownSender(f"member #{to} is not in epoch {keys.epoch}")
            recipient = X25519PublicKey.from_public_bytes(roster[to].static_key)
            plaintext = SUITE.encrypt(body, recipient, info=aad)
        sealed = header + keys.sender(self.member).encrypt(
            keys.nonce(self._generation), plaintext, aad
        )
        self._generation += 1
        return sealed + self._signing.sign(DOMAIN + keys.context + sealed)

    def open(self, data: bytes, *, sender: int | None = None) -> Opened:
        """Open content the hub delivered; ``sender`` is the member the hub
        says sent it, which must be the one that sealed it.

        Raises:
            SealingError: refused (see the module's list); nothing is
                returned and the counters do not move.
        """
        header, start = SealedHeader.decode(data)
        if sender is not None and header.sender != sender:
            raise ForgedContent(f"content sealed by #{header.sender} arrived as from #{sender}")
        keys, roster, current = self._epoch(header)
        if header.sender not in roster:
            raise UnknownSender(f"#{header.sender} is not a member of epoch {header.epoch}")
        if current and header.generation <= self._seen.get(header.sender, -1):
            raise ReplayedContent(
                f"#{header.sender}'s counter {header.generation} in epoch {header.epoch} was seen"
            )
        if header.kind is Kind.DIRECT and header.recipient != self.member:
            raise WrongSession(f"a direct message for #{header.recipient} reached #{self.member}")
        signed, signature = data[:-SIGNATURE_LEN], data[-SIGNATURE_LEN:]
        try:
            Ed25519PublicKey.from_public_bytes(roster[header.sender].signing_key).verify(
                signature, DOMAIN + keys.context + signed
            )
        except InvalidSignature:
            raise ForgedContent(
                f"content of epoch {header.epoch} is not signed by #{header.sender}"
            ) from None
        aad = DOMAIN + keys.context + data[:start]
        try:
            body = keys.sender(header.sender).decrypt(
                keys.nonce(header.generation), data[start:-SIGNATURE_LEN], aad
            )
            if header.kind is Kind.DIRECT:
                body = SUITE.decrypt(body, self._static, info=aad)
        except (InvalidTag, ValueError):
            # Signed by the sender yet not opening: the sender sealed it
            # under another epoch's secret than ours, a fork of the history.
            raise ForgedContent(
                f"content of epoch {header.epoch} from #{header.sender} does not open here"
            ) from None
        if current:
            self._seen[header.sender] = header.generation
        return Opened(header, body)

    def _current(self) -> tuple[EpochKeys, Roster]:
        if self._keys is None or self.roster is None:
            raise StaleEpoch(f"member #{self.member} has no epoch of {self.session!r} yet")
        return self._keys, self.roster

    def _epoch(self, header: SealedHeader) -> tuple[EpochKeys, Roster, bool]:
        keys, roster = self._current()
        if header.epoch == keys.epoch:
            return keys, roster, True
        if header.kind is Kind.VARIABLE and header.epoch in self._past:
            past_keys, past_roster = self._past[header.epoch]
            return past_keys, past_roster, False
        raise StaleEpoch(f"content of epoch {header.epoch} reached epoch {keys.epoch}")

    def erase(self) -> None:
        """Forget every epoch's keys, as a member does when it leaves."""
        for keys, _ in self._past.values():
            keys.erase()
        self._past.clear()
        if self._keys is not None:
            self._keys.erase()
        self._keys = None
        self.roster = None

    def __repr__(self) -> str:
        return f"GroupState(session={self.session!r}, member={self.member}, epoch={self.epoch})"
