"""What the hub checks of a sealed session, from the little it can read.

The hub opens neither content nor commits. It reads their headers and a
commit's roster, and it puts everything in one order. That is enough for
the promises that depend on the order:

- content is sequenced only under the current epoch: once the hub has
  ordered a commit, the epoch it ended is over for every member, so a
  message sealed under it, or replayed from it, is refused here as it
  would be by each member;
- content names the member that sent it, and that member belongs to the
  current epoch (a joiner waits for the commit that brings it in);
- once a member of the current epoch has left, the epoch takes no more
  content: the member that left holds its keys, so whatever is sealed
  under it from then on waits for the commit that leaves it out (the
  members seal it again under the new epoch);
- a direct message goes to a member of the current epoch;
- a commit is sequenced only from the member the hub designated, for the
  next epoch, continuing the transcript, and with a roster of exactly the
  session's members now: nobody is added, and nobody who left is kept.

The members check all of this again, and more (signatures, keys, their
trust): nothing here is trusted by anyone but the hub. What it buys is that
an honest hub refuses, with a reason, what every member would refuse
anyway, before relaying it to all of them.

Every membership change makes a commit due, and so does an epoch that has
carried ``max_messages`` contents or lasted ``max_seconds`` (a rotation:
the same members, new keys). The designated committer is the
longest-present member of the current epoch (the lowest member number,
since the hub numbers memberships in order), so that the other members
already know its signing key; when none of them is left, nobody holds the
epoch's transcript, and the longest-present member of the session starts
its epochs again from the first. Among those, a member that receives is
preferred: it holds the variables' values, which it seals again for the
newcomers of its epoch (:attr:`Relay.newcomers`).
"""

from __future__ import annotations

from typing import final

from securesess.constants import DEFAULT_EPOCH_MESSAGES, DEFAULT_EPOCH_SECONDS
from securesess.sessions.sealing.commit import Commit
from securesess.sessions.sealing.content import Kind, SealedHeader
from securesess.sessions.sealing.errors import (
    ForgedContent,
    MalformedSealing,
    StaleEpoch,
    UnknownSender,
    WrongSession,
)
from securesess.sessions.sealing.schedule import GENESIS, next_transcript

__all__ = ["Relay"]


@final
class Relay:
    """The hub's view of one sealed session: its epoch, its roster, its members.

    A refused input changes nothing.
    """

    __slots__ = (
        "_carried",
        "_departed",
        "_receivers",
        "_rotate",
        "_started",
        "committed_by",
        "epoch",
        "max_messages",
        "max_seconds",
        "members",
        "newcomers",
        "roster",
        "session",
        "transcript",
    )

    def __init__(
        self,
        session: str,
        *,
        max_messages: int = DEFAULT_EPOCH_MESSAGES,
        max_seconds: float = DEFAULT_EPOCH_SECONDS,
    ) -> None:
        if max_messages < 1 or not max_seconds > 0:
            raise ValueError("an epoch carries at least one content, for some time")
        self.session = session
        self.max_messages = max_messages
        self.max_seconds = max_seconds
        self.epoch = 0
        self.transcript = GENESIS
        #: The current epoch's members, as its commit names them.
        self.roster: frozenset[int] = frozenset()
        #: The session's members now, as the hub admitted them.
        self.members: set[int] = set()
        #: Who made the current epoch's commit, and whom it brought in.
        self.committed_by: int | None = None
        self.newcomers: frozenset[int] = frozenset()
        self._receivers: set[int] = set()
        # Members of the current epoch that have left the session since:
        # counted, so that content need not compare the two sets each time.
        self._departed = 0
        # What the current epoch has carried, since when, and whether it is
        # to be replaced although its members stay.
        self._carried = 0
        self._started = 0.0
        self._rotate = False

    # -- membership ---------------------------------------------------------------------

    def joined(self, member: int, *, receives: bool = True) -> None:
        self.members.add(member)
        self.receives(member, receives)

    def receives(self, member: int, receives: bool) -> None:
        """Whether ``member`` may receive (a reload can change it)."""
        if receives:
            self._receivers.add(member)
        else:
            self._receivers.discard(member)

    def left(self, member: int) -> None:
        if member in self.members and member in self.roster:
            self._departed += 1
        self.members.discard(member)
        self._receivers.discard(member)

    @property
    def due(self) -> bool:
        """Whether a commit is due: the members differ from the current
        epoch's, or the epoch is used up (:meth:`expire`, ``max_messages``)."""
        return bool(self.members) and (self._rotate or self.members != self.roster)

    def expire(self, now: float) -> bool:
        """Whether a commit is due at ``now`` (seconds, any monotonic clock):
        an epoch older than ``max_seconds`` is. The hub calls it from time
        to time; the relay keeps no clock of its own."""
        if self.roster and now - self._started >= self.max_seconds:
            self._rotate = True
        return self.due

    @property
    def committer(self) -> int | None:
        """The member designated to commit the next epoch, while one is due."""
        if not self.due:
            return None
        pool = (self.members & self.roster) or self.members
        return min((pool & self._receivers) or pool)

    # -- sequencing ---------------------------------------------------------------------

    def sequence_commit(self, data: bytes, sender: int, *, now: float) -> Commit:
        """Order ``sender``'s commit at ``now`` (the clock of :meth:`expire`),
        or refuse it.

        Raises:
            SealingError: malformed, for another session, not from the
                designated member, not the next epoch, or with a roster
                other than the members now.
        """
        commit = Commit.decode(data)
        if commit.session != self.session:
            raise WrongSession(f"a commit of session {commit.session!r} is not for this one")
        committer = self.committer
        if sender != committer or commit.committer != sender:
            expected = "none is due" if committer is None else f"#{committer} is to commit"
            raise UnknownSender(
                f"#{sender} may not commit epoch {commit.epoch} of {self.session!r}: {expected}"
            )
        epoch, previous = self.next_epoch()
        if commit.epoch != epoch or commit.previous != previous:
            raise StaleEpoch(f"a commit of epoch {commit.epoch} does not follow epoch {self.epoch}")
        if frozenset(commit.roster) != self.members:
            raise StaleEpoch(
                f"the commit of epoch {commit.epoch} names other members than the session has"
            )
        roster = frozenset(commit.roster)
        self.newcomers = roster - self.roster
        self.committed_by = sender
        self.epoch = commit.epoch
        self.transcript = next_transcript(commit.previous, commit.encoded)
        self.roster = roster
        self._departed = 0
        self._carried = 0
        self._started = now
        self._rotate = False
        return commit

    def next_epoch(self) -> tuple[int, bytes]:
        """The epoch a commit is to begin now, and the transcript it must continue.

        When no member of the current epoch is left, nobody holds its
        transcript: the designated member starts the session's epochs again
        from the first, as every member then is a joiner and accepts.
        """
        if self.members & self.roster:
            return self.epoch + 1, self.transcript
        return 1, GENESIS

    def sequence_content(
        self,
        data: bytes,
        sender: int,
        *,
        kind: Kind | None = None,
        recipient: int | None = None,
        key: str | None = None,
    ) -> SealedHeader:
        """Order content from ``sender``, or refuse it; its header, for routing.

        ``kind`` (with ``recipient`` for a direct message, ``key`` for a
        variable) is what the request carrying it says it is.

        Raises:
            SealingError: malformed, sealed by another member than
                ``sender``, under an epoch other than the current one, by a
                member not in it, for a recipient not in it, or of another
                kind, recipient or key than the request says.
        """
        header, _ = SealedHeader.decode(data)
        if kind is not None and (
            header.kind is not kind or header.recipient != recipient or header.key != key
        ):
            raise MalformedSealing(
                f"a {kind.name.lower()} request carries content sealed as a "
                f"{header.kind.name.lower()}"
            )
        if header.sender != sender:
            raise ForgedContent(f"#{sender} sent content sealed as #{header.sender}'s")
        if header.epoch != self.epoch:
            raise StaleEpoch(
                f"content of epoch {header.epoch} reached {self.session!r} at epoch {self.epoch}"
            )
        if sender not in self.roster or sender not in self.members:
            raise UnknownSender(f"#{sender} is not a member of epoch {self.epoch}")
        if header.kind is Kind.DIRECT and (
            header.recipient not in self.roster or header.recipient not in self.members
        ):
            raise UnknownSender(f"#{header.recipient} is not a member of epoch {self.epoch}")
        if self._departed:
            gone = ", ".join(f"#{m}" for m in sorted(self.roster - self.members))
            raise StaleEpoch(
                f"epoch {self.epoch} of {self.session!r} is closing ({gone} left): "
                "content waits for the next"
            )
        self._carried += 1
        if self._carried >= self.max_messages:
            self._rotate = True
        return header

    def __repr__(self) -> str:
        return (
            f"Relay(session={self.session!r}, epoch={self.epoch}, "
            f"members={sorted(self.members)}, due={self.due})"
        )
