"""The hub's access policy: parsing, errors, problems, answers, and `policy check`."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from keystore import Identity, Keystore, Peer, TrustStore, encode_key, fingerprint
from securesess.cli import main
from securesess.errors import PolicyError
from securesess.names import check_session_name
from securesess.policy import Grant, Policy, Right, Rule

EVERY_RIGHT = ["create", "join", "send", "receive", "set", "admin"]

FULL = """
# Services meet in "orders"; ops administers everything; auditors only listen.
[[rule]]
name = "services"
groups = ["services"]
sessions = ["orders", "orders/*"]
rights = ["create", "join", "send", "receive", "set"]

[[rule]]
name = "ops"
names = ["ops"]
sessions = ["*"]
rights = ["create", "join", "send", "receive", "set", "admin"]

[[rule]]
name = "auditors"
groups = ["auditors"]
sessions = ["orders"]
rights = ["join", "receive"]
"""


def peer(name: str | None, *groups: str) -> Peer:
    return Peer(name, Identity.generate(name).public_key, frozenset(groups))


def policy(*rules: dict[str, Any], trust: TrustStore | None = None) -> Policy:
    """A policy of ``rules``, written as TOML and parsed back."""
    return Policy.parse(tomli_w.dumps({"rule": list(rules)}), source="test.toml", trust=trust)


def rule(**fields: Any) -> dict[str, Any]:
    """A rule table: ``fields`` on top of a valid rule for the group "services"."""
    table: dict[str, Any] = {"name": "r", "sessions": ["orders"], "rights": ["join"]}
    if not {"keys", "names", "groups", "any_peer"} & fields.keys():
        table["groups"] = ["services"]
    table.update(fields)
    return {key: value for key, value in table.items() if value is not None}


def pinned(*peers: tuple[str, Iterable[str]]) -> tuple[TrustStore, dict[str, Peer]]:
    trust = TrustStore()
    found = {
        name: trust.add_peer(name, Identity.generate(name).public_key, groups)
        for name, groups in peers
    }
    return trust, found


# -- parsing -------------------------------------------------------------------------


def test_a_full_policy_parses_into_its_rules() -> None:
    parsed = Policy.parse(FULL, source="hub.toml")
    assert parsed.source == "hub.toml"
    assert repr(parsed) == "<Policy hub.toml with 3 rules>"
    assert parsed.problems == ()
    services, ops, auditors = parsed.rules
    assert services == Rule(
        name="services",
        sessions=("orders", "orders/*"),
        rights=frozenset({Right.CREATE, Right.JOIN, Right.SEND, Right.RECEIVE, Right.SET}),
        groups=frozenset({"services"}),
    )
    assert ops.names == frozenset({"ops"})
    assert ops.keys is None
    assert ops.groups is None
    assert ops.rights == frozenset(Right)
    assert auditors.rights == {Right.JOIN, Right.RECEIVE}
    assert not any(rule.any_peer for rule in parsed.rules)


def test_an_empty_policy_admits_nobody() -> None:
    for text in ("", "# nothing\n", "rule = []\n"):
        parsed = Policy.parse(text)
        assert parsed.rules == ()
        assert not parsed.admits(peer("api", "services"))


def test_unnamed_rules_are_numbered() -> None:
    parsed = Policy.parse(
        '[[rule]]\nany_peer = true\nsessions = ["a"]\nrights = ["join"]\n'
        '[[rule]]\nany_peer = true\nsessions = ["b"]\nrights = ["join"]\n'
    )
    assert [rule.name for rule in parsed.rules] == ["rule 1", "rule 2"]


def test_keys_may_be_fingerprints_or_base64() -> None:
    api, db, other = peer("api"), peer("db"), peer("api")
    parsed = policy(rule(keys=[api.fingerprint, encode_key(db.public_key)]))
    # Both are stored as fingerprints, the form peers are compared by.
    assert parsed.rules[0].keys == frozenset({api.fingerprint, db.fingerprint})
    assert parsed.admits(api)
    assert parsed.admits(db)
    assert not parsed.admits(other)  # the same name with another key is someone else


def test_base64_keys_may_have_surrounding_spaces() -> None:
    api = peer("api")
    parsed = policy(rule(keys=[f"  {encode_key(api.public_key)}\n"]))
    assert parsed.admits(api)


def test_names_match_any_of_the_list() -> None:
    parsed = policy(rule(names=["api", "db"]))
    assert parsed.admits(peer("api"))
    assert parsed.admits(peer("db", "anything"))
    assert not parsed.admits(peer("cache"))
    assert not parsed.admits(peer(None))
    assert not parsed.admits(peer("API"))  # names are compared exactly


def test_a_peer_must_be_in_all_the_groups() -> None:
    parsed = policy(rule(groups=["services", "eu"]))
    assert parsed.admits(peer("a", "services", "eu"))
    assert parsed.admits(peer("b", "services", "eu", "extra"))
    assert not parsed.admits(peer("c", "services"))
    assert not parsed.admits(peer("d", "eu"))
    assert not parsed.admits(peer("e"))


def test_an_empty_groups_list_matches_nobody() -> None:
    # "In every one of no groups" would be every peer: any_peer = true says that.
    parsed = policy(rule(groups=[]))
    assert not parsed.admits(peer("api", "services"))
    assert not parsed.admits(peer("nobody"))
    assert parsed.grant(peer("api", "services"), "orders") == Grant(frozenset(), ())
    assert parsed.problems == ("rule 'r' matches no peer: its groups list is empty",)


def test_any_peer_matches_every_peer() -> None:
    parsed = policy(rule(any_peer=True))
    assert parsed.rules[0].any_peer
    for someone in (peer("api", "services"), peer(None), peer("x", "y", "z")):
        assert parsed.admits(someone)
        assert Right.JOIN in parsed.grant(someone, "orders")


def test_any_peer_false_with_a_selector_is_allowed() -> None:
    parsed = policy(rule(any_peer=False, names=["api"]))
    assert parsed.admits(peer("api"))
    assert not parsed.admits(peer("db"))


def test_selectors_given_together_must_all_hold() -> None:
    api = peer("api", "services")
    impostor = peer("api", "services")  # same name and groups, another key
    parsed = policy(rule(keys=[api.fingerprint], names=["api"], groups=["services"]))
    assert parsed.admits(api)
    assert not parsed.admits(impostor)
    assert not parsed.admits(Peer("db", api.public_key, frozenset({"services"})))
    assert not parsed.admits(Peer("api", api.public_key, frozenset()))

    by_name_and_group = policy(rule(names=["api", "db"], groups=["services"]))
    assert by_name_and_group.admits(peer("db", "services"))
    assert not by_name_and_group.admits(peer("db", "visitors"))
    assert not by_name_and_group.admits(peer("cache", "services"))


def test_rights_are_the_union_of_every_matching_rule() -> None:
    api = peer("api", "services", "writers")
    parsed = policy(
        rule(name="read", groups=["services"], sessions=["orders*"], rights=["join", "receive"]),
        rule(name="write", groups=["writers"], sessions=["orders"], rights=["send", "set"]),
        rule(name="elsewhere", groups=["services"], sessions=["billing"], rights=["admin"]),
        rule(name="others", names=["db"], sessions=["*"], rights=["create"]),
    )
    assert parsed.grant(api, "orders") == Grant(
        frozenset({Right.JOIN, Right.RECEIVE, Right.SEND, Right.SET}), ("read", "write")
    )
    assert parsed.grant(api, "orders-eu") == Grant(
        frozenset({Right.JOIN, Right.RECEIVE}), ("read",)
    )
    assert parsed.grant(api, "billing").rights == {Right.ADMIN}
    assert parsed.grant(api, "hr") == Grant(frozenset(), ())
    # A rule with fewer rights never takes any away.
    assert parsed.grant(peer("x", "services"), "orders").rights == {Right.JOIN, Right.RECEIVE}


def test_grant_answers_membership_questions() -> None:
    grant = policy(rule(rights=["join", "receive"])).grant(peer("a", "services"), "orders")
    assert Right.JOIN in grant
    assert Right.RECEIVE in grant
    assert Right.SEND not in grant
    assert "join" in grant  # rights are strings too
    assert "write" not in grant


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("orders", ["orders"], ["Orders", "orders/eu", "order", " orders"]),
        ("orders/*", ["orders/", "orders/eu", "orders/eu/1"], ["orders", "ORDERS/eu"]),
        ("*", ["a", "orders/eu/1", "日本", "[x]"], []),
        ("log-??", ["log-01", "log-ab"], ["log-1", "log-001"]),
        ("team-[ab]", ["team-a", "team-b"], ["team-c", "team-A", "team-ab"]),
        ("team-[!ab]", ["team-c"], ["team-a"]),
        ("*.tmp", ["x.tmp", ".tmp"], ["x.TMP", "x.tmpl"]),
        ("a\\b", ["a\\b"], ["ab"]),  # a backslash is an ordinary character
    ],
)
def test_session_patterns_are_case_sensitive_globs(
    pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    parsed = policy(rule(sessions=[pattern]))
    api = peer("api", "services")
    for name in matching:
        assert Right.JOIN in parsed.grant(api, name), name
    for name in not_matching:
        assert Right.JOIN not in parsed.grant(api, name), name


def test_a_session_is_covered_if_any_pattern_matches() -> None:
    parsed = policy(rule(sessions=["orders", "billing/*"]))
    api = peer("api", "services")
    assert Right.JOIN in parsed.grant(api, "orders")
    assert Right.JOIN in parsed.grant(api, "billing/q3")
    assert Right.JOIN not in parsed.grant(api, "billing")


# -- errors --------------------------------------------------------------------------


def rule_text(*lines: str, name: str = "bad") -> str:
    return "\n".join(["[[rule]]", f'name = "{name}"', *lines]) + "\n"


VALID_KEY = encode_key(bytes(range(32)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[[rule]\n", "test.toml is not valid TOML: ", id="not-toml"),
        pytest.param('owner = "me"\n', "test.toml: unknown top-level key 'owner'", id="top-key"),
        pytest.param(
            '[rule]\nany_peer = true\nsessions = ["*"]\nrights = ["join"]\n',
            "test.toml: rules are written [[rule]], an array of tables",
            id="rule-table",
        ),
        pytest.param(
            "rule = 3\n", "test.toml: rules are written [[rule]], an array of tables", id="rule-int"
        ),
        pytest.param(
            'rule = ["services"]\n',
            "test.toml: rules are written [[rule]], an array of tables",
            id="rule-of-strings",
        ),
        pytest.param(
            "rule = [[1, 2]]\n",
            "test.toml: rules are written [[rule]], an array of tables",
            id="rule-of-arrays",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'session = ["*"]', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': unknown field 'session' (a rule has any_peer, groups, keys, "
            "name, names, rights, sessions)",
            id="unknown-field",
        ),
        pytest.param(
            '[[rule]]\nname = 7\nany_peer = true\nsessions = ["*"]\nrights = ["join"]\n',
            "test.toml: rule 1: name must be a non-empty string",
            id="name-int",
        ),
        pytest.param(
            '[[rule]]\nname = ""\nany_peer = true\nsessions = ["*"]\nrights = ["join"]\n',
            "test.toml: rule 1: name must be a non-empty string",
            id="name-empty",
        ),
        pytest.param(
            rule_text('any_peer = "yes"', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': any_peer must be true or false",
            id="any-peer-string",
        ),
        pytest.param(
            rule_text("any_peer = 1", 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': any_peer must be true or false",
            id="any-peer-int",
        ),
        pytest.param(
            rule_text(f'keys = "{VALID_KEY}"', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': keys must be a list of strings",
            id="keys-string",
        ),
        pytest.param(
            rule_text('names = ["a", 1]', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': names must be a list of strings",
            id="names-int",
        ),
        pytest.param(
            rule_text("groups = [true]", 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': groups must be a list of strings",
            id="groups-bool",
        ),
        pytest.param(
            rule_text('groups = {a = "b"}', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': groups must be a list of strings",
            id="groups-table",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'sessions = "orders"', 'rights = ["join"]'),
            "test.toml: rule 'bad': sessions must be a list of strings",
            id="sessions-string",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = "join"'),
            "test.toml: rule 'bad': rights must be a list of strings",
            id="rights-string",
        ),
        pytest.param(
            rule_text("any_peer = true", 'names = ["a"]', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': any_peer = true cannot be combined with keys, names or groups",
            id="any-peer-and-names",
        ),
        pytest.param(
            rule_text("any_peer = true", "groups = []", 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': any_peer = true cannot be combined with keys, names or groups",
            id="any-peer-and-empty-groups",
        ),
        pytest.param(
            rule_text('sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad' does not say whom it is for: give keys, names or groups, "
            "or any_peer = true for every authenticated peer",
            id="no-selector",
        ),
        pytest.param(
            rule_text("any_peer = false", 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad' does not say whom it is for",
            id="any-peer-false-alone",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'rights = ["join"]'),
            """test.toml: rule 'bad': sessions is missing (use ["*"] for every session)""",
            id="no-sessions",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'sessions = ["*"]'),
            "test.toml: rule 'bad': rights is missing",
            id="no-rights",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = ["join", "write"]'),
            "test.toml: rule 'bad': unknown right 'write' "
            "(rights are create, join, send, receive, set, admin)",
            id="unknown-right",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = ["JOIN"]'),
            "test.toml: rule 'bad': unknown right 'JOIN'",
            id="right-case",
        ),
        pytest.param(
            rule_text('keys = ["not a key!"]', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': keys: the public key is not valid base64",
            id="key-not-base64",
        ),
        pytest.param(
            rule_text('keys = ["AAAA"]', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': keys: a public key is 32 bytes (44 base64 characters), "
            "got 3 bytes",
            id="key-short",
        ),
        pytest.param(
            rule_text('keys = ["SHA256:abc"]', 'sessions = ["*"]', 'rights = ["join"]'),
            "test.toml: rule 'bad': keys: 'SHA256:abc' is not a SHA256 fingerprint",
            id="fingerprint-short",
        ),
        pytest.param(
            rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = ["join"]', name="twice")
            + rule_text('groups = ["b"]', 'sessions = ["x"]', 'rights = ["send"]', name="twice"),
            "test.toml: two rules are named 'twice'",
            id="duplicate-names",
        ),
        pytest.param(
            '[[rule]]\nnames = ["a"]\nsessions = ["*"]\nrights = ["join"]\n'
            + rule_text('names = ["b"]', 'sessions = ["*"]', 'rights = ["join"]', name="rule 1"),
            "test.toml: two rules are named 'rule 1'",
            id="duplicate-of-a-default-name",
        ),
    ],
)
def test_invalid_policies_are_refused_naming_file_and_rule(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.parse(text, source="test.toml")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_first_bad_rule_is_named_among_good_ones() -> None:
    text = (
        rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = ["join"]', name="fine")
        + rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = ["jion"]', name="typo")
        + rule_text('names = ["a"]', 'sessions = ["*"]', 'rights = ["sned"]', name="later")
    )
    with pytest.raises(PolicyError, match=r"^test\.toml: rule 'typo': unknown right 'jion'"):
        Policy.parse(text, source="test.toml")


def test_a_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid TOML"):
        Policy.parse("=")


# -- problems: rules that can never grant anything --------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"keys": []}, "rule 'r' matches no peer: its keys list is empty"),
        ({"names": []}, "rule 'r' matches no peer: its names list is empty"),
        ({"groups": []}, "rule 'r' matches no peer: its groups list is empty"),
        ({"sessions": []}, "rule 'r' grants nothing: its sessions list is empty"),
        ({"rights": []}, "rule 'r' grants nothing: its rights list is empty"),
        (
            {"sessions": ["ok", "bad\x01name"]},
            "rule 'r': session pattern 'bad\\x01name' matches no valid session name",
        ),
        ({"sessions": [""]}, "rule 'r': session pattern '' matches no valid session name"),
        (
            {"sessions": ["line\u2028break*"]},
            "rule 'r': session pattern 'line\\u2028break*' matches no valid session name",
        ),
        (
            {"sessions": ["zero\u200bwidth"]},
            "rule 'r': session pattern 'zero\\u200bwidth' matches no valid session name",
        ),
    ],
)
def test_rules_that_can_never_grant_anything_are_problems(
    fields: dict[str, Any], problem: str
) -> None:
    parsed = policy(rule(**fields), rule(name="fine", names=["api"]))
    assert parsed.problems == (problem,)
    # Problems are reported, not fatal: the rest of the policy works.
    assert Right.JOIN in parsed.grant(peer("api"), "orders")


def test_a_rule_without_sessions_and_rights_admits_and_grants_nothing() -> None:
    parsed = policy(rule(sessions=None, rights=None, names=["api"]))
    assert parsed.problems == ()
    assert parsed.admits(peer("api"))
    assert parsed.refusal(peer("api")) is None
    assert parsed.grant(peer("api"), "orders").rights == frozenset()
    db = peer("db")
    assert not parsed.admits(db)
    assert parsed.refusal(db, service="tunnel") == f"no rule of the tunnel's policy admits {db}"
    # Empty lists for both say the same thing, and are no problem either.
    assert policy(rule(sessions=[], rights=[])).problems == ()


def test_a_rule_can_have_several_problems() -> None:
    parsed = policy(rule(names=[], rights=[], sessions=["a\x00", "b\x7f"]))
    assert parsed.problems == (
        "rule 'r' matches no peer: its names list is empty",
        "rule 'r': session pattern 'a\\x00' matches no valid session name",
        "rule 'r': session pattern 'b\\x7f' matches no valid session name",
        "rule 'r' grants nothing: its rights list is empty",
    )


@pytest.mark.parametrize(
    ("pattern", "can_match"),
    [
        ("x" * 255, True),
        ("x" * 256, False),
        ("é" * 127 + "x", True),  # 255 bytes
        ("é" * 128, False),  # 128 characters, but 256 bytes
        ("?" * 255, True),
        ("?" * 256, False),  # each ? is at least one byte
        ("x" * 255 + "*", True),  # * may match nothing
        ("x" * 256 + "*", False),
        ("*" * 300, True),
        ("*", True),
        ("?", True),
        ("orders/*", True),
        ("[\x01]", True),  # character classes get the benefit of the doubt
        ("*\x1b*", False),
        ("a?\nb", False),
    ],
)
def test_patterns_too_long_or_with_forbidden_characters_are_problems(
    pattern: str, can_match: bool
) -> None:
    parsed = policy(rule(sessions=[pattern]))
    assert (parsed.problems == ()) is can_match, parsed.problems


SESSION_CHARS = st.characters(exclude_characters="*?[")


def _is_session_name(name: str) -> bool:
    try:
        check_session_name(name)
    except ValueError:
        return False
    return True


VALID_NAMES = st.text(SESSION_CHARS, min_size=1, max_size=80).filter(_is_session_name)


@given(st.text(SESSION_CHARS, max_size=300))
def test_a_pattern_without_wildcards_is_a_problem_exactly_when_not_a_session_name(
    pattern: str,
) -> None:
    parsed = policy(rule(sessions=[pattern]))
    assert (parsed.problems == ()) is _is_session_name(pattern)


@given(VALID_NAMES, st.data())
def test_a_pattern_that_matches_a_valid_session_name_is_never_a_problem(
    name: str, data: st.DataObject
) -> None:
    # Turn the name into a pattern that still matches it: characters become
    # ?, runs become *, stars are added anywhere.
    pieces: list[str] = []
    for char in name:
        choice = data.draw(st.sampled_from(["keep", "keep", "?", "*", "*x"]))
        if choice == "keep":
            pieces.append(char)
        elif choice == "?":
            pieces.append("?")
        elif choice == "*":
            if not pieces or pieces[-1] != "*":
                pieces.append("*")
        else:
            pieces.extend(["*", char])
    pattern = "".join(pieces)
    assert fnmatch.fnmatchcase(name, pattern)
    parsed = policy(rule(sessions=[pattern]))
    assert parsed.problems == ()
    assert Right.JOIN in parsed.grant(peer("api", "services"), name)


def test_a_revoked_key_is_a_problem() -> None:
    trust, peers = pinned(("api", ["services"]), ("db", ["services"]))
    trust.revoke_key(peers["api"].public_key)
    parsed = policy(rule(keys=[peers["api"].fingerprint, peers["db"].fingerprint]), trust=trust)
    assert parsed.problems == (
        f"rule 'r': key {peers['api'].fingerprint} is revoked, so it never connects",
    )
    # Even when a CA is trusted: a revoked key is refused before any certificate.
    trust.add_ca("ops", Identity.generate().public_key)
    again = policy(rule(keys=[encode_key(peers["api"].public_key)]), trust=trust)
    assert again.problems == (
        f"rule 'r': key {peers['api'].fingerprint} is revoked, so it never connects",
    )


def test_a_revoked_key_nobody_pinned_is_two_problems() -> None:
    trust, _ = pinned(("api", ["services"]))
    gone = Identity.generate("gone")
    trust.revoke_key(gone.public_key)
    parsed = policy(rule(keys=[gone.fingerprint]), trust=trust)
    assert parsed.problems == (
        f"rule 'r': key {gone.fingerprint} is revoked, so it never connects",
        "rule 'r' matches no peer this hub trusts: no pinned peer fits it and no CA is trusted",
    )


NO_PINNED_PEER = (
    "rule 'r' matches no peer this hub trusts: no pinned peer fits it and no CA is trusted"
)


@pytest.mark.parametrize(
    ("fields", "fits"),
    [
        ({"names": ["api"]}, True),
        ({"names": ["ghost"]}, False),
        ({"names": ["ghost", "db"]}, True),
        ({"groups": ["services"]}, True),
        ({"groups": ["services", "eu"]}, True),
        ({"groups": ["services", "us"]}, False),
        ({"groups": ["visitors"]}, False),
        ({"names": ["api"], "groups": ["eu"]}, False),
        ({"names": ["db"], "groups": ["eu"]}, True),
        ({"any_peer": True}, True),
        ({"keys": [Identity.generate().fingerprint]}, False),
    ],
)
def test_without_a_ca_a_rule_no_pinned_peer_fits_is_a_problem(
    fields: dict[str, Any], fits: bool
) -> None:
    trust, _ = pinned(("api", ["services"]), ("db", ["services", "eu"]))
    parsed = policy(rule(**fields), trust=trust)
    assert parsed.problems == (() if fits else (NO_PINNED_PEER,))


def test_a_pinned_key_fits() -> None:
    trust, peers = pinned(("api", ["services"]))
    assert policy(rule(keys=[peers["api"].fingerprint]), trust=trust).problems == ()


def test_an_empty_trust_store_fits_no_rule() -> None:
    parsed = policy(rule(any_peer=True), trust=TrustStore())
    assert parsed.problems == (NO_PINNED_PEER,)


def test_with_a_ca_trusted_names_and_groups_are_not_problems() -> None:
    trust, _ = pinned(("api", ["services"]))
    trust.add_ca("ops", Identity.generate().public_key)
    parsed = policy(
        rule(name="ghost", names=["ghost"]),
        rule(name="nobody", groups=["nobody"]),
        rule(name="stranger", keys=[Identity.generate().fingerprint]),
        trust=trust,
    )
    assert parsed.problems == ()


def test_without_a_trust_store_only_the_rules_themselves_are_checked() -> None:
    parsed = policy(rule(names=["ghost"]))
    assert parsed.problems == ()


def test_list_problems_are_reported_without_asking_the_trust_store() -> None:
    trust, _ = pinned(("api", ["services"]))
    parsed = policy(rule(names=["ghost"], rights=[]), trust=trust)
    assert parsed.problems == ("rule 'r' grants nothing: its rights list is empty",)


# -- answers ------------------------------------------------------------------------------


@pytest.fixture
def full() -> Policy:
    return Policy.parse(FULL)


def test_admits_and_refusal(full: Policy) -> None:
    api, ops, visitor = peer("api", "services"), peer("ops"), peer("visitor", "visitors")
    assert full.admits(api)
    assert full.admits(ops)
    assert full.refusal(api) is None
    assert not full.admits(visitor)
    assert full.refusal(visitor) == (
        f"no rule of the hub's policy admits visitor ({visitor.fingerprint})"
    )
    unnamed = peer(None)
    assert full.refusal(unnamed) == (
        f"no rule of the hub's policy admits unnamed peer ({unnamed.fingerprint})"
    )


def test_a_rule_that_grants_nothing_still_admits() -> None:
    parsed = policy(rule(rights=[]))
    api = peer("api", "services")
    assert parsed.admits(api)
    assert parsed.grant(api, "orders") == Grant(frozenset(), ("r",))


def test_denial_names_the_rules_that_gave_the_rights(full: Policy) -> None:
    auditor = peer("audit", "auditors")
    assert full.denial(auditor, "orders", Right.SEND) == (
        f"audit ({auditor.fingerprint}) may not send in session 'orders': "
        "its rights there (join, receive) come from rule 'auditors'"
    )
    both = peer("both", "services", "auditors")
    assert full.denial(both, "orders", Right.ADMIN) == (
        f"both ({both.fingerprint}) may not admin in session 'orders': "
        "its rights there (create, join, receive, send, set) come from rule "
        "'services', 'auditors'"
    )


def test_denial_says_the_rules_about_the_peer_do_not_cover_the_session(full: Policy) -> None:
    api = peer("api", "services")
    assert full.denial(api, "billing", Right.JOIN) == (
        f"api ({api.fingerprint}) may not join in session 'billing': "
        "the rules about it ('services') do not cover that session"
    )
    both = peer("both", "services", "auditors")
    assert full.denial(both, "orders-eu", Right.CREATE) == (
        f"both ({both.fingerprint}) may not create in session 'orders-eu': "
        "the rules about it ('services', 'auditors') do not cover that session"
    )


def test_denial_says_when_no_rule_is_about_the_peer(full: Policy) -> None:
    visitor = peer("visitor", "visitors")
    assert full.denial(visitor, "orders", Right.JOIN) == (
        f"visitor ({visitor.fingerprint}) may not join in session 'orders': "
        "no rule of the policy is about it"
    )


def test_denial_of_a_rule_with_no_rights_says_none() -> None:
    api = peer("api", "services")
    assert policy(rule(rights=[])).denial(api, "orders", Right.JOIN) == (
        f"api ({api.fingerprint}) may not join in session 'orders': "
        "its rights there (none) come from rule 'r'"
    )


def test_ops_may_do_anything_anywhere(full: Policy) -> None:
    ops = peer("ops")
    for session in ("orders", "billing", "a/b/c"):
        assert full.grant(ops, session) == Grant(frozenset(Right), ("ops",))
    assert full.grant(peer("ops", "services"), "orders").rules == ("services", "ops")


# -- loading files ---------------------------------------------------------------------


def test_load_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(FULL, encoding="utf-8")
    parsed = Policy.load(path)
    assert parsed.source == str(path)
    assert len(parsed.rules) == 3
    assert Policy.load(str(path)).source == str(path)


def test_load_passes_the_trust_store_on(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(tomli_w.dumps({"rule": [rule(names=["ghost"])]}), encoding="utf-8")
    assert Policy.load(path).problems == ()
    assert Policy.load(path, trust=TrustStore()).problems == (NO_PINNED_PEER,)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(rule_text('names = ["a"]', 'sessions = ["*"]'), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        Policy.load(path)
    assert str(caught.value) == f"{path}: rule 'bad': rights is missing"


def test_a_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(PolicyError, match=r"^cannot read policy .*absent\.toml: "):
        Policy.load(path)


def test_a_directory_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^cannot read policy "):
        Policy.load(tmp_path)


def test_a_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[rule]]\nnames = ["Jos\u00e9"]\n'.encode("latin-1"))
    with pytest.raises(PolicyError, match=r"^cannot read policy .*latin1\.toml: .*utf-8"):
        Policy.load(path)


# -- anything in, a Policy or a PolicyError out ------------------------------------------

FIELDS = ["name", "keys", "names", "groups", "any_peer", "sessions", "rights", "rule", "other"]
WORDS = st.sampled_from(
    [
        *EVERY_RIGHT,
        "*",
        "orders",
        "orders/*",
        "[",
        "",
        "services",
        "\x00",
        "x" * 300,
        VALID_KEY,
        fingerprint(bytes(32)),
        "SHA256:" + "!" * 43,
        "SHA256:abc",
    ]
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    WORDS,
    st.text(max_size=20),
    st.dates(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
RULE_TABLES = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=7)
DOCUMENTS = st.dictionaries(
    st.sampled_from(["rule", "rules", "other"]),
    st.lists(RULE_TABLES, max_size=4) | VALUES,
    max_size=2,
)

LINES = st.sampled_from(
    [
        "[[rule]]",
        "[rule]",
        "rule = 1",
        "rule = []",
        'name = "a"',
        'name = "b"',
        "name = 3",
        "any_peer = true",
        "any_peer = false",
        'names = ["api", "ops"]',
        "names = []",
        'groups = ["services"]',
        "groups = []",
        f'keys = ["{VALID_KEY}"]',
        'keys = ["SHA256:abc"]',
        'sessions = ["*"]',
        'sessions = ["orders", "a\\u0001"]',
        "sessions = []",
        'rights = ["join", "receive"]',
        'rights = ["fly"]',
        "rights = []",
        'extra = "x"',
        "[[rule.sub]]",
        "= broken",
    ]
)


def _exercise(parsed: Policy) -> None:
    """Ask a parsed policy every question, as the hub would."""
    someone = peer("api", "services")
    for session in ("orders", "a"):
        grant = parsed.grant(someone, session)
        assert set(grant.rules) <= {rule.name for rule in parsed.rules}
        for right in Right:
            if right not in grant:
                assert parsed.denial(someone, session, right)
    assert (parsed.refusal(someone) is None) is parsed.admits(someone)


def _parse_or_refuse(text: str, trust: TrustStore | None) -> None:
    try:
        parsed = Policy.parse(text, source="fuzz.toml", trust=trust)
    except PolicyError as exc:
        refused = str(exc)
    else:
        assert all(isinstance(problem, str) for problem in parsed.problems)
        _exercise(parsed)
        return
    # Every refusal names the file, on one line (policy check prints it as one).
    assert refused.startswith("fuzz.toml")
    assert "\n" not in refused


TRUSTS = st.sampled_from(["none", "empty", "pinned", "ca"])


def _trust(kind: str) -> TrustStore | None:
    if kind == "none":
        return None
    trust = TrustStore()
    if kind in {"pinned", "ca"}:
        trust.add_peer("api", Identity.generate().public_key, ["services"])
        trust.revoke_key(bytes(32))
    if kind == "ca":
        trust.add_ca("ops", Identity.generate().public_key)
    return trust


@given(st.text(), TRUSTS)
def test_any_text_parses_or_is_a_policy_error(text: str, trust: str) -> None:
    _parse_or_refuse(text, _trust(trust))


@given(st.lists(LINES, max_size=20), TRUSTS)
def test_policy_like_lines_parse_or_are_a_policy_error(lines: list[str], trust: str) -> None:
    _parse_or_refuse("\n".join(lines) + "\n", _trust(trust))


@given(DOCUMENTS, TRUSTS)
def test_any_toml_document_parses_or_is_a_policy_error(
    document: dict[str, Any], trust: str
) -> None:
    _parse_or_refuse(tomli_w.dumps(document), _trust(trust))


@given(st.lists(RULE_TABLES, min_size=1, max_size=4), TRUSTS)
def test_any_rule_tables_parse_or_are_a_policy_error(
    tables: list[dict[str, Any]], trust: str
) -> None:
    _parse_or_refuse(tomli_w.dumps({"rule": tables}), _trust(trust))


def test_the_documents_really_reach_the_rule_parser() -> None:
    # The strategies above are only worth something if valid rules come out.
    text = tomli_w.dumps({"rule": [{"names": ["api"], "sessions": ["*"], "rights": EVERY_RIGHT}]})
    assert Policy.parse(text).admits(Peer("api", bytes(32)))


# -- securesess policy check ----------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    store = Keystore.open(home)
    store.add_peer("api", Identity.generate("api").public_key, ["services"])
    store.add_peer("ops", Identity.generate("ops").public_key)
    return home


def check(home: Path, path: Path) -> Any:
    return CliRunner().invoke(main, ["policy", "check", str(path), "--home", str(home)])


def test_policy_check_passes_a_clean_policy(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(FULL.replace('groups = ["auditors"]', 'names = ["api"]'), encoding="utf-8")
    result = check(home, path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{path}: 3 rules, 0 problems\n"
    assert result.stderr == ""


def test_policy_check_fails_on_a_rule_that_never_matches(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(FULL, encoding="utf-8")  # nobody pinned is in group "auditors"
    result = check(home, path)
    assert result.exit_code == 1
    assert result.stderr == (
        "securesess: problem: rule 'auditors' matches no peer this hub trusts: "
        "no pinned peer fits it and no CA is trusted\n"
    )
    assert result.stdout == f"{path}: 3 rules, 1 problems\n"


def test_policy_check_trusts_a_ca_to_vouch_for_names_and_groups(home: Path, tmp_path: Path) -> None:
    Keystore.open(home).init_ca("ops-ca", passphrase=None, valid_seconds=3600)
    path = tmp_path / "policy.toml"
    path.write_text(FULL, encoding="utf-8")
    result = check(home, path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{path}: 3 rules, 0 problems\n"


def test_policy_check_reports_a_revoked_key(home: Path, tmp_path: Path) -> None:
    store = Keystore.open(home)
    api = store.trust().peer_by_name("api")
    assert api is not None
    store.revoke_key(api.public_key)
    path = tmp_path / "policy.toml"
    path.write_text(
        tomli_w.dumps({"rule": [rule(name="api", keys=[encode_key(api.public_key)])]}),
        encoding="utf-8",
    )
    result = check(home, path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"securesess: problem: rule 'api': key {api.fingerprint} is revoked, so it never connects\n"
    )


def test_policy_check_refuses_an_invalid_policy_in_one_line(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(FULL.replace('"receive"]', '"recieve"]'), encoding="utf-8")
    result = check(home, path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"securesess: error: {path}: rule 'auditors': unknown right 'recieve' "
        "(rights are create, join, send, receive, set, admin)\n"
    )


def test_policy_check_refuses_a_file_that_is_not_toml(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[[rule]\n", encoding="utf-8")
    result = check(home, path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"securesess: error: {path} is not valid TOML: ")


def test_policy_check_of_a_missing_file_is_an_error_in_one_line(home: Path, tmp_path: Path) -> None:
    absent = tmp_path / "absent.toml"
    result = check(home, absent)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"securesess: error: cannot read policy {absent}: No such file or directory\n"
    )


def test_policy_check_json_names_the_rules_and_problems(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(FULL.replace('groups = ["auditors"]', 'names = ["api"]'), encoding="utf-8")
    result = CliRunner().invoke(main, ["policy", "check", str(path), "--home", str(home), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(path)
    assert len(report["rules"]) == 3
    assert report["problems"] == []
