"""Whether a member may apply a commit: every check short of opening its wrap.

A commit is refused (and nothing of it used) if it

- is for another session;
- does not continue the member's transcript: its epoch is not the next one,
  or its ``previous`` hash is not the member's (a reorder, a replay, or a
  history forked by the hub);
- leaves the member out, or carries an entry for it other than its own (for
  a joiner, its fresh membership key: this is what makes a commit the hub
  kept from an earlier membership useless to it);
- is by someone who is not a member of the current epoch, or not signed by
  that member's signing key as the current roster has it;
- changes a continuing member's keys;
- adds a member whose credential the member's trust does not vouch for, or
  whose membership key its own signing key did not sign.

A joiner knows no previous roster, so it cannot check that the committer was
a member of the epoch before: it takes any committer its trust vouches for.
A removed member that colludes with the hub can therefore start a false
session for a joiner (whose roster shows who is in it); it cannot bring the
joiner into the real one, whose members' content does not open there.
"""

from __future__ import annotations

from securesess.sessions.sealing.commit import Commit
from securesess.sessions.sealing.errors import (
    ForgedContent,
    StaleEpoch,
    UnknownSender,
    UntrustedMember,
    WrongSession,
)
from securesess.sessions.sealing.roster import Roster, RosterEntry, Vouch

__all__ = ["admit"]


def admit(
    commit: Commit,
    *,
    session: str,
    own: RosterEntry,
    roster: Roster | None,
    epoch: int,
    transcript: bytes,
    vouch: Vouch,
) -> frozenset[int]:
    """The members ``commit`` adds, if the member of ``session`` whose entry
    is ``own``, at ``epoch`` with ``roster`` and ``transcript`` (None for a
    joiner), may apply it.

    Raises:
        SealingError: it may not (see the module's list).
    """
    if commit.session != session:
        raise WrongSession(f"a commit of session {commit.session!r} is not for this one")
    new = commit.roster
    if roster is not None and (commit.epoch != epoch + 1 or commit.previous != transcript):
        raise StaleEpoch(f"a commit of epoch {commit.epoch} does not follow epoch {epoch} here")
    if own.member not in new:
        raise UnknownSender(f"the commit of epoch {commit.epoch} leaves this member out")
    if new[own.member] != own:
        raise ForgedContent(f"the commit of epoch {commit.epoch} gives this member other keys")
    if roster is None:
        # A joiner knows no one yet: its own trust vouches for everyone.
        newcomers = frozenset(new)
        committer = new[commit.committer]
    else:
        if commit.committer not in roster:
            raise UnknownSender(
                f"the commit of epoch {commit.epoch} is by #{commit.committer}, "
                f"not a member of epoch {epoch}"
            )
        committer = roster[commit.committer]
        for member in new.ids() & roster.ids():
            if roster[member] != new[member]:
                raise ForgedContent(f"the commit of epoch {commit.epoch} changes #{member}'s keys")
        newcomers = frozenset(new.ids() - roster.ids())
    commit.verify(committer.credential.signing_key)
    for member in sorted(newcomers - {own.member}):
        entry = new[member]
        try:
            vouch(entry.credential)
        except UntrustedMember as error:
            raise UntrustedMember(f"member #{member}: {error}") from None
        entry.check_binding(session)
    return newcomers
