"""One member's sealing of one session, on the client: epochs, seals, opens and commits.

A :class:`~securesess.sessions.session.Session` holds one :class:`Sealing`.
The connection's reader hands it, in the hub's order, the commits that
begin epochs (:meth:`Sealing.apply`) and the content to open
(:meth:`Sealing.open`); requests seal through :meth:`Sealing.request`,
which seals again under the next epoch when a commit overtook them. When
the hub designates this member to commit (DUE), a task makes the commit
and sends it (:meth:`Sealing.due`).

The hub is trusted for nothing here but the order: a member's keys come
from the commits, which each member checks against its own trust
(:class:`~securesess.sessions.credentials.Credentials`), and what the hub
says about a member (its id and static key) must match the roster.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, final

import trio

from securesess.errors import HubTimeout, NotMember, SealingRefused, SessionError
from securesess.sessions.events import Member, Variable
from securesess.sessions.sealing import (
    Credential,
    ForgedContent,
    GroupState,
    Kind,
    Opened,
    Roster,
    RosterEntry,
    SealingError,
    UnknownSender,
)
from securesess.sessions.wire import Op

__all__ = ["Carrier", "Sealing"]

log = logging.getLogger("securesess.client")

# How often one request is sealed again because a commit overtook it.
_RESEALS: Final = 8


class Carrier(Protocol):
    """What a session needs of the connection it was joined over (a
    :class:`~securesess.sessions.hub_connection.HubConnection`): so the
    session depends on this, not on the connection's module."""

    _max_backlog: int
    _max_session_state: int
    _timeout: float

    async def _request(
        self, op: Op, *fields: Any, join: str | None = None, settles: str | None = None
    ) -> Any: ...

    def _leave_quietly(self, name: str) -> None: ...

    def _post(self, op: Op, *fields: Any) -> None: ...

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> None: ...

    def _forget(self, session: Any) -> None: ...


@final
class Sealing:
    """A membership's :class:`GroupState`, and what waits on its epochs."""

    __slots__ = (
        "_awaiting",
        "_committing",
        "_connection",
        "_describe",
        "_due",
        "_epoch_changed",
        "committer",
        "group",
        "name",
        "ready",
        "unannounced",
    )

    def __init__(
        self,
        connection: Carrier,
        group: GroupState,
        awaiting: Mapping[str, int],
        describe: Callable[[Credential], tuple[str | None, frozenset[str]]],
    ) -> None:
        self._connection: Final = connection
        # A member's name and groups, as our own trust has them.
        self._describe: Final = describe
        self.group: Final = group
        self.name: Final = group.session
        # The variables there were at the JOIN, by key and version: their
        # values come sealed again once this member is in an epoch (VALUE).
        self._awaiting = dict(awaiting)
        #: In an epoch, with every variable's value: join() returns then.
        self.ready = trio.Event()
        self._epoch_changed = trio.Event()
        #: Who made the current epoch's commit (it seals the values again).
        self.committer: int | None = None
        # The latest DUE (epoch, members, entries), and whether a task makes its commit.
        self._due: tuple[int, list[int], list[bytes]] | None = None
        self._committing = False
        #: Members the current epoch's commit brought in that the hub has
        #: not announced yet (JOINED follows the EPOCH at once).
        self.unannounced: set[int] = set()

    # -- sealing ------------------------------------------------------------------------

    async def request(
        self,
        op: Op,
        field: object,
        body: bytes,
        *more: object,
        to: int | None = None,
        key: str | None = None,
        members: Mapping[int, Member],
        check_open: Callable[[], None],
    ) -> Any:
        """Seal ``body`` under the current epoch and request ``op`` with it;
        seal again under the next epoch if a commit overtook it on the way.
        ``check_open`` raises if the session has ended meanwhile."""
        group = self.group
        for _ in range(_RESEALS):
            await self.wait_ready(check_open)
            epoch = group.epoch
            if self._holds_departed(members):
                # A member we saw leave holds this epoch's keys: what we seal
                # waits for the commit that leaves it out, whatever the hub
                # says (an honest one refuses it anyway, section 10.6).
                await self._wait_epoch_after(epoch, check_open)
                continue
            try:
                sealed = group.seal(body, to=to, key=key)
            except UnknownSender:
                # A joiner the next commit brings in (the hub announces it
                # with that commit): wait for that epoch, or say there is none.
                try:
                    await self._wait_epoch_after(epoch, check_open)
                except HubTimeout:
                    if to in members:
                        raise
                    raise NotMember(
                        f"session {self.name!r} has no member {to}", session=self.name
                    ) from None
                continue
            try:
                return await self._connection._request(op, self.name, field, sealed, *more)
            except SealingRefused:
                if group.epoch == epoch:
                    await self._wait_epoch_after(epoch, check_open)
        raise SealingRefused(
            f"the hub refused what this member sealed {_RESEALS} times, over as many epochs",
            session=self.name,
        )

    def _holds_departed(self, members: Mapping[int, Member]) -> bool:
        roster = self.group.roster
        assert roster is not None, "ready, so in an epoch"
        return bool(roster.ids() - members.keys() - self.unannounced)

    async def wait_ready(self, check_open: Callable[[], None]) -> None:
        """Until this member is in an epoch and holds every variable's value.

        Raises:
            HubTimeout: not within the connection's request timeout.
        """
        timeout = self._connection._timeout
        if not self.ready.is_set():
            with trio.move_on_after(timeout):
                await self.ready.wait()
            check_open()
            if not self.ready.is_set():
                if self.group.epoch:
                    keys = ", ".join(repr(key) for key in sorted(self._awaiting))
                    raise HubTimeout(
                        f"session {self.name!r}: the values of {keys} were not sealed again "
                        f"for this member in {timeout:g} s"
                    )
                raise HubTimeout(
                    f"session {self.name!r} began no epoch with this member in {timeout:g} s"
                )

    async def _wait_epoch_after(self, epoch: int, check_open: Callable[[], None]) -> None:
        timeout = self._connection._timeout
        with trio.move_on_after(timeout):
            while self.group.epoch == epoch and not self.group.erased:
                await self._epoch_changed.wait()
        check_open()
        if self.group.epoch == epoch:
            raise HubTimeout(f"session {self.name!r} began no epoch after {epoch} in {timeout:g} s")

    # -- what the hub relays ------------------------------------------------------------

    def open(
        self, data: bytes, sender: int, kind: Kind, key: str | None, members: Mapping[int, Member]
    ) -> Opened:
        """Open content the hub says ``sender`` (one of ``members``) sealed.

        Raises:
            SealingError: it does not open, is not what the hub says it is,
                or its sender is another identity than the hub names.
        """
        opened = self.group.open(data, sender=sender)
        header = opened.header
        if header.kind is not kind or header.key != key:
            raise ForgedContent(f"a {kind.name.lower()} arrived sealed as something else")
        member, roster = members.get(sender), self.group.roster
        assert roster is not None, "content opened, so there is an epoch"
        if member is None or roster[sender].credential.static_key != member.public_key:
            raise ForgedContent(f"#{sender} sealed it as another identity than the hub names")
        return opened

    def apply(
        self, committer: int, data: bytes, reseals: bool, me: int, variables: Mapping[str, Variable]
    ) -> None:
        """Begin the epoch of the commit ``committer`` made; as its committer,
        seal ``variables`` again for the members it brings in.

        Raises:
            SealingError: the commit is refused; nothing changed.
        """
        first = self.group.epoch == 0
        change = self.group.apply_commit(data)
        if change.committer != committer:
            # Applied, but the session ends (SessionTampered) and erases it.
            raise ForgedContent(f"#{change.committer}'s commit arrived as #{committer}'s")
        self.committer = committer
        if first and (not reseals or change.epoch == 1):
            # Nobody will seal the values again: the committer may not read
            # them, or it starts the epochs afresh because no member that
            # held them is left. What they were is lost to the session.
            self._awaiting.clear()
        if committer == me and reseals and change.added - {me}:
            for key, (value, version) in variables.items():
                sealed = self.group.seal(value, key=key)
                self._connection._post(Op.RESEAL, self.name, key, version, sealed)
        self._check_ready()
        self._epoch_changed.set()
        self._epoch_changed = trio.Event()

    def match(self, members: Mapping[int, Member]) -> list[Member]:
        """Hold the members the hub names (``members``) to the roster just
        applied: the application's view of the session is the roster's, so
        the hub can neither add a member silently nor keep one it said left.
        Returns those whose description must change: a member is shown with
        the name and groups our trust gives its credential, not the hub's.

        Raises:
            ForgedContent: someone named is not in the roster, or with
                another static key.
            UntrustedMember: our trust no longer knows a member.
        """
        roster = self.group.roster
        assert roster is not None, "a commit was applied"
        kept = members.keys() - roster.ids()
        if kept:
            names = ", ".join(f"#{m}" for m in sorted(kept))
            raise ForgedContent(f"epoch {self.group.epoch} leaves out {names}, still members")
        self.unannounced = set(roster.ids() - members.keys())
        me = self.group.member  # as the hub knows us: nothing of ours to vouch for
        return [
            described
            for member in members.values()
            if member.id != me and (described := self._as_trusted(member)) != member
        ]

    def _as_trusted(self, member: Member) -> Member:
        roster = self.group.roster
        assert roster is not None, "in an epoch"
        credential = roster[member.id].credential
        if credential.static_key != member.public_key:
            raise ForgedContent(f"#{member.id} has another static key than its roster entry")
        name, groups = self._describe(credential)
        return Member(member.id, name, member.public_key, groups)

    def announced(self, member: Member) -> Member:
        """The hub announces ``member``: once in an epoch, only one that the
        commit brought in, with the static key the roster has; it is shown
        as our trust describes it.

        Raises:
            ForgedContent: it is not.
        """
        if self.group.roster is None:
            return member  # no epoch yet: the first commit is held to what is announced
        if member.id not in self.unannounced:
            raise ForgedContent(f"#{member.id} was announced, but no commit brought it in")
        described = self._as_trusted(member)
        self.unannounced.discard(member.id)
        return described

    def got_value(self, key: str, version: int) -> None:
        """``key`` is known at ``version``."""
        if key in self._awaiting and self._awaiting[key] <= version:
            del self._awaiting[key]
            self._check_ready()

    def _check_ready(self) -> None:
        if self.group.epoch and not self._awaiting:
            self.ready.set()

    def end(self) -> None:
        """The membership is over: forget every key, wake every waiter."""
        self.group.erase()
        self._due = None
        self.ready.set()
        self._epoch_changed.set()

    # -- committing ---------------------------------------------------------------------

    def due(self, epoch: int, members: list[int], entries: list[bytes]) -> None:
        """The hub designated us to begin ``epoch`` with ``members``."""
        self._due = (epoch, members, entries)
        if not self._committing and not self.group.erased:
            self._committing = True
            self._connection._spawn(self._commit_loop)

    async def _commit_loop(self) -> None:
        """Make and send the commit of the latest DUE, until none is left:
        a DUE that arrives meanwhile supersedes the ones before it."""
        try:
            while self._due is not None and not self.group.erased:
                due, self._due = self._due, None
                commit = self._propose(*due)
                if commit is not None:
                    # Refused when the members changed meanwhile: a new DUE follows.
                    with contextlib.suppress(SealingRefused, HubTimeout):
                        await self._connection._request(Op.COMMIT, self.name, commit)
        except (SessionError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._committing = False

    def _propose(self, epoch: int, members: list[int], entries: list[bytes]) -> bytes | None:
        group = self.group
        if epoch != group.epoch + 1:
            log.warning(
                "session %r: a commit of epoch %d is due at epoch %d", self.name, epoch, group.epoch
            )
            return None
        known = dict(group.roster or {})
        try:
            for data in entries:
                entry = RosterEntry.decode(data)
                known[entry.member] = entry
            return group.propose(Roster(known[member] for member in members))
        except (SealingError, KeyError, ValueError) as error:
            log.warning("session %r: cannot commit epoch %d: %r", self.name, epoch, error)
            return None
