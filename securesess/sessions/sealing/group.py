"""One member's view of a sealed session: its epoch, its roster, its counters.

A :class:`GroupState` is fed what the hub delivers, in the hub's order: a
commit moves it to the next epoch (:meth:`GroupState.apply_commit`), content
is opened under the epoch it names (:meth:`GroupState.open`). It seals what
the member sends (:meth:`GroupState.seal`) and, when the hub designates this
member, makes the next commit (:meth:`GroupState.propose`). Each state is
one membership: it makes a fresh membership key when it is created, and
:meth:`GroupState.erase` (the membership is over) forgets it for good.

What it refuses, and why:

- content of an epoch other than the current one: the hub orders every
  commit among the content, so content of an epoch delivered after the
  commit that ended it is stale, whoever replays it. Only
  :meth:`GroupState.open_value`, for a variable's stored value (a snapshot,
  not an event in the order), reaches back to the few retained past epochs;
- content whose sender is not in the epoch's roster, or whose hub-given
  sender differs from the sealed one;
- content that does not open under its sender's key or whose signature is
  not its sender's (the hub or another member altered or forged it);
- a sender's counter that does not move forward (a replay, in this epoch);
- a commit :func:`~securesess.sessions.sealing.admission.admit` refuses, or
  whose secret does not open or is not the one confirmed.

A refused input changes nothing: every check comes before the state moves.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securesess import names
from securesess.sessions.sealing.admission import admit
from securesess.sessions.sealing.commit import SUITE, Commit, make_commit
from securesess.sessions.sealing.content import DOMAIN, SIGNATURE_LEN, Kind, Opened, SealedHeader
from securesess.sessions.sealing.errors import (
    ForgedContent,
    ReplayedContent,
    StaleEpoch,
    UnknownSender,
    WrongSession,
)
from securesess.sessions.sealing.roster import Credential, Roster, RosterEntry, Vouch
from securesess.sessions.sealing.schedule import (
    GENESIS,
    MAX_GENERATION,
    EpochKeys,
    next_transcript,
)

__all__ = ["DEFAULT_RETAIN", "EpochChange", "GroupState"]

#: Past epochs whose keys a member keeps, for variable values set in them.
DEFAULT_RETAIN: Final = 2


@final
@dataclass(frozen=True, slots=True)
class EpochChange:
    """What a commit changed: the new epoch, who came, who went, and who made it."""

    epoch: int
    added: frozenset[int]
    removed: frozenset[int]
    committer: int


@final
class GroupState:
    """A member's sealing state for one membership of one session.

    ``member`` is the hub's number for this membership; ``vouch`` is this
    member's own trust, asked about every key a roster names.
    """

    __slots__ = (
        "_entry",
        "_generation",
        "_keys",
        "_membership",
        "_past",
        "_retain",
        "_seen",
        "_signing",
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
        static_key: X25519PublicKey,
        signing_key: Ed25519PrivateKey,
        vouch: Vouch,
        certificate: bytes = b"",
        retain: int = DEFAULT_RETAIN,
    ) -> None:
        if retain < 0:
            raise ValueError("retain counts past epochs: 0 or more")
        self.session: Final = names.check_session_name(session)
        self.member: Final = member
        self.vouch: Final = vouch
        self._signing: Final = signing_key
        self._retain: Final = retain
        self._membership: X25519PrivateKey | None = X25519PrivateKey.generate()
        credential = Credential(
            static_key.public_bytes_raw(), signing_key.public_key().public_bytes_raw(), certificate
        )
        self._entry: Final = RosterEntry.make(
            session=session,
            member=member,
            credential=credential,
            membership_key=self._membership.public_key().public_bytes_raw(),
            signing_key=signing_key,
        )
        self._keys: EpochKeys | None = None
        self._past: OrderedDict[int, tuple[EpochKeys, Roster]] = OrderedDict()
        self.roster: Roster | None = None
        self._generation = 0
        # The highest counter opened per sender, in the current epoch.
        self._seen: dict[int, int] = {}

    # -- what the member holds ----------------------------------------------------------

    @property
    def entry(self) -> RosterEntry:
        """This membership's entry, for the committer's roster (public)."""
        return self._entry

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

    @property
    def erased(self) -> bool:
        return self._membership is None

    # -- epochs -------------------------------------------------------------------------

    def propose(self, roster: Roster) -> bytes:
        """A commit beginning the next epoch with ``roster``, made by this
        member. It takes effect when the hub orders it and this member
        applies it like anyone else. A member with no epoch yet proposes
        the session's first (only the member that starts a session should).
        """
        self._membership_key()
        if roster.get(self.member) != self._entry:
            raise ValueError("a member commits only rosters that hold its own entry")
        return make_commit(
            session=self.session,
            epoch=self.epoch + 1,
            previous=self.transcript,
            committer=self.member,
            signing_key=self._signing,
            roster=roster,
        )

    def apply_commit(self, data: bytes) -> EpochChange:
        """Move to the epoch ``data`` begins.

        Raises:
            SealingError: the commit is refused (see the module's list);
                the state is unchanged.
        """
        membership = self._membership_key()
        old = self.roster
        commit = Commit.decode(data, old)
        newcomers = admit(
            commit,
            session=self.session,
            own=self._entry,
            roster=old,
            epoch=self.epoch,
            transcript=self.transcript,
            vouch=self.vouch,
        )
        keys = commit.open(
            self.member, membership, next_transcript(commit.previous, commit.encoded)
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
        return EpochChange(commit.epoch, newcomers, removed, commit.committer)

    # -- content ------------------------------------------------------------------------

    def seal(self, body: bytes, *, to: int | None = None, key: str | None = None) -> bytes:
        """Seal a message for the session, a direct message ``to`` one
        member, or the value of variable ``key``.

        Raises:
            StaleEpoch: no epoch yet, this membership is over, or this
                member's counter is used up.
            UnknownSender: ``to`` is not a member of the current epoch.
            ValueError: both ``to`` and ``key``, or a key over 255 bytes.
        """
        keys, roster = self._current()
        if self._generation >= MAX_GENERATION:
            raise StaleEpoch(f"member #{self.member} has sealed all it may in epoch {keys.epoch}")
        if to is not None and key is not None:
            raise ValueError("content is a direct message or a variable, not both")
        kind = Kind.DIRECT if to is not None else Kind.VARIABLE if key is not None else Kind.MESSAGE
        header = SealedHeader(kind, keys.epoch, self.member, self._generation, to, key).encode()
        aad = DOMAIN + keys.context + header
        plaintext = bytes(body)
        if to is not None:
            if to not in roster:
                raise UnknownSender(f"member #{to} is not in epoch {keys.epoch}")
            recipient = X25519PublicKey.from_public_bytes(roster[to].membership_key)
            plaintext = SUITE.encrypt(plaintext, recipient, info=aad)
        sealed = header + keys.sender(self.member).encrypt(
            keys.nonce(self._generation), plaintext, aad
        )
        # The counter moves as soon as its nonce is used, so nothing can use it twice.
        self._generation += 1
        return sealed + self._signing.sign(DOMAIN + keys.context + sealed)

    def open(self, data: bytes, *, sender: int | None = None) -> Opened:
        """Open content the hub delivered in the session's order; ``sender``
        is the member the hub says sent it, which must be the one that
        sealed it.

        Raises:
            SealingError: refused (see the module's list); nothing is
                returned and the counters do not move.
        """
        data = bytes(data)
        header, start = SealedHeader.decode(data)
        if sender is not None and header.sender != sender:
            raise ForgedContent(f"content sealed by #{header.sender} arrived as from #{sender}")
        keys, roster = self._current()
        if header.epoch != keys.epoch:
            raise StaleEpoch(f"content of epoch {header.epoch} reached epoch {keys.epoch}")
        opened = self._open(data, header, start, keys, roster)
        # Checked once the content is known to be the sender's: a forgery
        # is called one, whatever counter it claims.
        if header.generation <= self._seen.get(header.sender, -1):
            raise ReplayedContent(
                f"#{header.sender}'s counter {header.generation} in epoch {header.epoch} was seen"
            )
        self._seen[header.sender] = header.generation
        return opened

    def open_value(self, data: bytes) -> Opened:
        """Open a variable's value as the hub stores it (for example in a
        snapshot), sealed in the current epoch or one of the retained past
        ones. A stored value is read as often as it is asked for, so no
        counter is checked or moved: the hub's versions, not the seal, say
        whether it is the latest.

        Raises:
            SealingError: refused; StaleEpoch also for a value of an epoch
                this member never held or has erased.
        """
        data = bytes(data)
        header, start = SealedHeader.decode(data)
        keys, roster = self._current()
        if header.kind is not Kind.VARIABLE:
            raise WrongSession("only a variable's value is read outside the session's order")
        if header.epoch != keys.epoch:
            if header.epoch not in self._past:
                raise StaleEpoch(f"a value of epoch {header.epoch} reached epoch {keys.epoch}")
            keys, roster = self._past[header.epoch]
        return self._open(data, header, start, keys, roster)

    def _open(
        self, data: bytes, header: SealedHeader, start: int, keys: EpochKeys, roster: Roster
    ) -> Opened:
        if header.sender not in roster:
            raise UnknownSender(f"#{header.sender} is not a member of epoch {header.epoch}")
        if header.kind is Kind.DIRECT and header.recipient != self.member:
            raise WrongSession(f"a direct message for #{header.recipient} reached #{self.member}")
        signed, signature = data[:-SIGNATURE_LEN], data[-SIGNATURE_LEN:]
        try:
            Ed25519PublicKey.from_public_bytes(roster[header.sender].credential.signing_key).verify(
                signature, DOMAIN + keys.context + signed
            )
        except (InvalidSignature, ValueError):
            raise ForgedContent(
                f"content of epoch {header.epoch} is not signed by #{header.sender}"
            ) from None
        aad = DOMAIN + keys.context + data[:start]
        try:
            body = keys.sender(header.sender).decrypt(
                keys.nonce(header.generation), data[start:-SIGNATURE_LEN], aad
            )
            if header.kind is Kind.DIRECT:
                body = SUITE.decrypt(body, self._membership_key(), info=aad)
        except (InvalidTag, ValueError):
            # Signed by its sender under this epoch's context, yet not
            # opening: the sender itself sealed it wrongly.
            raise ForgedContent(
                f"content of epoch {header.epoch} from #{header.sender} does not open here"
            ) from None
        return Opened(header, body)

    def _membership_key(self) -> X25519PrivateKey:
        if self._membership is None:
            raise StaleEpoch(f"member #{self.member}'s membership of {self.session!r} is over")
        return self._membership

    def _current(self) -> tuple[EpochKeys, Roster]:
        self._membership_key()
        if self._keys is None or self.roster is None:
            raise StaleEpoch(f"member #{self.member} has no epoch of {self.session!r} yet")
        return self._keys, self.roster

    def erase(self) -> None:
        """End this membership: forget every epoch's keys and the membership
        key. Nothing opens, seals or applies afterwards, so an old commit
        handed to this state again cannot bring its keys (and its counters,
        from zero) back."""
        for keys, _ in self._past.values():
            keys.erase()
        self._past.clear()
        if self._keys is not None:
            self._keys.erase()
        self._keys = None
        self.roster = None
        self._membership = None

    def __repr__(self) -> str:
        return f"GroupState(session={self.session!r}, member={self.member}, epoch={self.epoch})"
