"""Access policy: which peers may connect to a hub, join which sessions, with which rights.

A policy is a list of allow rules; anything no rule grants is denied. Each
rule says *who* (keys, names, groups, or any authenticated peer), *where*
(session-name patterns) and *what* (rights). A peer's rights in a session are
the union of the rights of every rule that matches both, so rules only ever
add: there are no deny rules to order, and reading one rule never requires
reading the others. The file format is documented in docs/policy.md.
"""

from __future__ import annotations

import enum
import fnmatch
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from keystore import Peer, TrustStore, UntrustedPeerError, decode_public_token, fingerprint
from securesess.errors import PolicyError
from securesess.names import check_session_name

__all__ = ["Grant", "Policy", "Right", "Rule", "readmission"]


class Right(enum.StrEnum):
    """What a member may do in a session."""

    #: Create the session when it does not exist (and so become its first member).
    CREATE = "create"
    #: Become a member of an existing session: see its members come and go.
    JOIN = "join"
    #: Send messages, broadcast or to one member.
    SEND = "send"
    #: Be delivered the session's messages and variables.
    RECEIVE = "receive"
    #: Set session variables.
    SET = "set"
    #: Remove other members and close the session.
    ADMIN = "admin"


_RULE_FIELDS: Final = frozenset(
    {"name", "keys", "names", "groups", "any_peer", "sessions", "rights"}
)


def _key_fingerprint(text: str, where: str) -> str:
    """Keys may be written as fingerprints (as `keys list` shows), base64, or
    as `keys export` prints them; a rule is about the X25519 key, which a
    handshake proves, so a token's signing half is not part of the match."""
    if text.startswith("SHA256:"):
        if len(text) != len("SHA256:") + 43:
            raise PolicyError(f"{where}: {text!r} is not a SHA256 fingerprint")
        return text
    try:
        return fingerprint(decode_public_token(text)[0])
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


@final
@dataclass(frozen=True, slots=True)
class Rule:
    """One allow rule. ``None`` for a selector means the rule does not look at it."""

    name: str
    sessions: tuple[str, ...]
    rights: frozenset[Right]
    keys: frozenset[str] | None = None
    names: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    any_peer: bool = False

    def matches(self, peer: Peer) -> bool:
        """Whether the rule is about ``peer``: every selector given must hold."""
        if self.keys is not None and peer.fingerprint not in self.keys:
            return False
        if self.names is not None and peer.name not in self.names:
            return False
        # An empty groups list matches no peer, like empty keys and names lists
        # (not every peer, as "in all of no groups" would): that takes any_peer.
        return self.groups is None or (bool(self.groups) and self.groups <= peer.groups)

    def covers(self, session: str) -> bool:
        return any(fnmatch.fnmatchcase(session, pattern) for pattern in self.sessions)


@final
@dataclass(frozen=True, slots=True)
class Grant:
    """A peer's rights in one session, and the rules they come from."""

    rights: frozenset[Right]
    rules: tuple[str, ...]

    def __contains__(self, right: object) -> bool:
        return right in self.rights


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of strings")
    return value


def _parse_rule(table: Mapping[str, Any], index: int) -> Rule:
    name = table.get("name", f"rule {index}")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"rule {index}: name must be a non-empty string")
    where = f"rule {name!r}"
    unknown = sorted(set(table) - _RULE_FIELDS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown field {unknown[0]!r} (a rule has {', '.join(sorted(_RULE_FIELDS))})"
        )
    any_peer = table.get("any_peer", False)
    if not isinstance(any_peer, bool):
        raise PolicyError(f"{where}: any_peer must be true or false")
    selectors: dict[str, frozenset[str] | None] = {}
    for field in ("keys", "names", "groups"):
        if field in table:
            values = _strings(table[field], f"{where}: {field}")
            if field == "keys":
                values = [_key_fingerprint(value, f"{where}: keys") for value in values]
            selectors[field] = frozenset(values)
        else:
            selectors[field] = None
    if any_peer and any(value is not None for value in selectors.values()):
        raise PolicyError(f"{where}: any_peer = true cannot be combined with keys, names or groups")
    if not any_peer and all(value is None for value in selectors.values()):
        raise PolicyError(
            f"{where} does not say whom it is for: give keys, names or groups, "
            "or any_peer = true for every authenticated peer"
        )
    # A rule with neither sessions nor rights only admits: its peers may
    # connect (to a hub, or through a tunnel) but hold no rights in sessions.
    # One without the other is a mistake worth an error.
    if "rights" in table and "sessions" not in table:
        raise PolicyError(f'{where}: sessions is missing (use ["*"] for every session)')
    if "sessions" in table and "rights" not in table:
        raise PolicyError(f"{where}: rights is missing")
    sessions = tuple(_strings(table.get("sessions", []), f"{where}: sessions"))
    rights: set[Right] = set()
    for right in _strings(table.get("rights", []), f"{where}: rights"):
        try:
            rights.add(Right(right))
        except ValueError:
            raise PolicyError(
                f"{where}: unknown right {right!r} (rights are {', '.join(Right)})"
            ) from None
    return Rule(
        name=name,
        sessions=sessions,
        rights=frozenset(rights),
        keys=selectors["keys"],
        names=selectors["names"],
        groups=selectors["groups"],
        any_peer=any_peer,
    )


def _pattern_can_match(pattern: str) -> bool:
    """Whether some valid session name matches the glob ``pattern``."""
    # Wildcards aside, a pattern's literal characters must be allowed in a name.
    literal = pattern.replace("*", "").replace("?", "x")
    if "[" in literal:
        return True  # character classes: give them the benefit of the doubt
    if not literal and "*" in pattern:
        return True
    try:
        check_session_name(literal)
    except ValueError:
        return False
    return True


def _problems(rule: Rule, trust: TrustStore | None) -> list[str]:
    """Why ``rule`` can never grant anything, if it cannot."""
    where = f"rule {rule.name!r}"
    found = [
        f"{where} matches no peer: its {field} list is empty"
        for field in ("keys", "names", "groups")
        if getattr(rule, field) == frozenset()
    ]
    # No sessions and no rights together make an admission rule; one of the
    # two alone grants nothing, which is worth a warning.
    if not rule.sessions and rule.rights:
        found.append(f"{where} grants nothing: its sessions list is empty")
    found.extend(
        f"{where}: session pattern {pattern!r} matches no valid session name"
        for pattern in rule.sessions
        if not _pattern_can_match(pattern)
    )
    if not rule.rights and rule.sessions:
        found.append(f"{where} grants nothing: its rights list is empty")
    if trust is None or found:
        return found
    # What the trust store can vouch for: pinned peers, plus anything a CA
    # signs when any CA is trusted (its names and groups are unknown here).
    pinned = list(trust)
    if rule.keys is not None:
        revoked = {fingerprint(key) for key in trust.revoked_keys()}
        found.extend(
            f"{where}: key {key} is revoked, so it never connects"
            for key in sorted(rule.keys & revoked)
        )
    if not trust.cas() and not any(rule.matches(peer) for peer in pinned):
        found.append(
            f"{where} matches no peer this hub trusts: no pinned peer fits it and no CA is trusted"
        )
    return found


@final
class Policy:
    """A parsed policy. Build one with :meth:`load` or :meth:`parse`.

    ``problems`` lists rules that can never grant anything (an empty list,
    a pattern no session name can match, a peer the trust store will never
    admit): they are reported, not fatal, so that a reload never fails on
    them, but ``securesess policy check`` exits non-zero for them.
    """

    __slots__ = ("problems", "rules", "source")

    def __init__(
        self, rules: Iterable[Rule], *, source: str = "<policy>", trust: TrustStore | None = None
    ) -> None:
        self.rules: Final = tuple(rules)
        self.source: Final = source
        names = [rule.name for rule in self.rules]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise PolicyError(f"{source}: two rules are named {duplicate!r}")
        self.problems: Final = tuple(
            problem for rule in self.rules for problem in _problems(rule, trust)
        )

    def __repr__(self) -> str:
        return f"<Policy {self.source} with {len(self.rules)} rules>"

    @classmethod
    def parse(
        cls, text: str, *, source: str = "<policy>", trust: TrustStore | None = None
    ) -> Policy:
        """Parse policy TOML. ``trust`` lets it report rules no trusted peer can match.

        Raises:
            PolicyError: the text is not TOML or not a valid policy.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source} is not valid TOML: {exc}") from None
        unknown = sorted(set(document) - {"rule"})
        if unknown:
            raise PolicyError(f"{source}: unknown top-level key {unknown[0]!r} (expected [[rule]])")
        tables = document.get("rule", [])
        if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
            raise PolicyError(f"{source}: rules are written [[rule]], an array of tables")
        try:
            rules = [_parse_rule(table, index) for index, table in enumerate(tables, 1)]
        except PolicyError as exc:
            raise PolicyError(f"{source}: {exc}") from None
        return cls(rules, source=source, trust=trust)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, trust: TrustStore | None = None) -> Policy:
        """Read and parse a policy file.

        Raises:
            PolicyError: the file cannot be read, or is not a valid policy.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise PolicyError(f"cannot read policy {os.fspath(path)}: {why}") from None
        return cls.parse(text, source=os.fspath(path), trust=trust)

    # -- questions ---------------------------------------------------------------

    def admits(self, peer: Peer) -> bool:
        """Whether ``peer`` may connect at all: some rule is about it."""
        return any(rule.matches(peer) for rule in self.rules)

    def refusal(self, peer: Peer, *, service: str = "hub") -> str | None:
        """Why ``peer`` may not connect to ``service``, or None if it may (for ``authorize=``)."""
        if self.admits(peer):
            return None
        return f"no rule of the {service}'s policy admits {peer}"

    def grant(self, peer: Peer, session: str) -> Grant:
        """The rights ``peer`` has in ``session``."""
        rules = [rule for rule in self.rules if rule.matches(peer) and rule.covers(session)]
        rights = frozenset(right for rule in rules for right in rule.rights)
        return Grant(rights, tuple(rule.name for rule in rules))

    def denial(self, peer: Peer, session: str, right: Right) -> str:
        """A sentence saying why ``peer`` lacks ``right`` in ``session``, naming the rules."""
        grant = self.grant(peer, session)
        base = f"{peer} may not {right} in session {session!r}"
        if grant.rules:
            held = ", ".join(sorted(grant.rights)) or "none"
            rules = ", ".join(repr(name) for name in grant.rules)
            return f"{base}: its rights there ({held}) come from rule {rules}"
        about = [rule.name for rule in self.rules if rule.matches(peer)]
        if about:
            rules = ", ".join(repr(name) for name in about)
            return f"{base}: the rules about it ({rules}) do not cover that session"
        return f"{base}: no rule of the policy is about it"


def readmission(
    peer: Peer, trust: TrustStore, policy: Policy | None, *, service: str = "hub"
) -> str | None:
    """Why ``peer``, admitted earlier, must go now that ``trust`` or ``policy`` changed.

    None if it may stay. A peer re-pinned under another name or other groups
    must reconnect, since what others know of it (and the rules that matched
    it) came from what it was.
    """
    try:
        now = trust.verify(peer.public_key, peer.certificate)
    except UntrustedPeerError as exc:
        return f"no longer trusted: {exc}"
    if (now.name, now.groups) != (peer.name, peer.groups):
        return "its name or groups changed; reconnect"
    return None if policy is None else policy.refusal(peer, service=service)
