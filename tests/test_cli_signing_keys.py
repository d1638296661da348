"""Signing keys on the command line: export, pin, certify, list, show and upgrade."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keystore import Keystore, decode_public_token, encode_key, fingerprint, read_certificate_file
from securesess.cli import main
from securesess.policy import Policy
from tests.test_signing_keys import header, write_earlier_key_file

PASSPHRASE = "correct horse"
YEAR = 365 * 86_400


def invoke(home: Path, *args: str, passphrase: str | None = None) -> Result:
    env = {"SECURESESS_HOME": str(home), "SECURESESS_PASSPHRASE": passphrase}
    return CliRunner().invoke(main, list(args), env=env)


def ok(home: Path, *args: str, passphrase: str | None = None) -> Result:
    result = invoke(home, *args, passphrase=passphrase)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    store = Keystore.open(home)
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    store.new_identity("api", passphrase=None)
    return home


def test_export_prints_both_public_keys_as_one_token(home: Path) -> None:
    store = Keystore.open(home)
    public, signing = store.public_key("api"), store.signing_public_key("api")
    assert signing is not None
    printed = ok(home, "keys", "export", "api").stdout.strip()
    assert printed == f"{encode_key(public)}:{encode_key(signing)}"
    data = json.loads(ok(home, "keys", "export", "api", "--json").stdout)
    assert data == {
        "name": "api",
        "public_key": encode_key(public),
        "fingerprint": fingerprint(public),
        "signing_key": encode_key(signing),
        "signing_fingerprint": fingerprint(signing),
        "token": printed,
    }


def test_new_and_rotate_report_the_signing_key_they_made(home: Path) -> None:
    created = json.loads(ok(home, "keys", "new", "db", "--no-passphrase", "--json").stdout)
    store = Keystore.open(home)
    signing = store.signing_public_key("db")
    assert signing is not None
    assert (created["signing_key"], created["signing_fingerprint"]) == (
        encode_key(signing),
        fingerprint(signing),
    )
    rotated = json.loads(ok(home, "keys", "rotate", "db", "--json").stdout)
    new_signing = store.signing_public_key("db")
    assert new_signing is not None
    assert new_signing != signing
    assert rotated["signing_key"] == encode_key(new_signing)


def test_peers_add_pins_the_signing_key_of_a_token_and_none_of_a_bare_key(
    home: Path, tmp_path: Path
) -> None:
    token = ok(home, "keys", "export", "api").stdout.strip()
    public, signing = decode_public_token(token)
    assert signing is not None
    other = tmp_path / "other"
    added = ok(other, "peers", "add", "api", token)
    assert f"signing key {fingerprint(signing)}" in added.stdout
    ok(other, "peers", "add", "bare", encode_key(bytes(range(32))))
    pins = tomllib.loads((other / "peers.toml").read_text())["peers"]
    assert pins["api"]["signing_key"] == encode_key(signing)
    assert "signing_key" not in pins["bare"]
    listed = {row["name"]: row for row in json.loads(ok(other, "peers", "list", "--json").stdout)}
    assert listed["api"]["signing_key"] == encode_key(signing)
    assert listed["api"]["public_key"] == encode_key(public)
    assert listed["bare"]["signing_key"] is None
    peer = Keystore.open(other).trust().verify(public)
    assert peer.signing_key == signing


@pytest.mark.parametrize(
    "text", ["a:b", "AAAA:AAAA", f"{encode_key(bytes(32))}:{encode_key(bytes(32))}:x"]
)
def test_a_malformed_token_is_one_error_line_and_pins_nothing(home: Path, text: str) -> None:
    result = invoke(home, "peers", "add", "x", text)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("securesess: error: ")
    assert not (home / "peers.toml").exists()


def test_ca_sign_issues_version_2_when_it_knows_the_signing_key(home: Path, tmp_path: Path) -> None:
    store = Keystore.open(home)
    signing = store.signing_public_key("api")
    assert signing is not None
    by_identity = json.loads(
        ok(home, "ca", "sign", "--ca", "ops", "--name", "api", "--identity", "api", "--json").stdout
    )
    assert (by_identity["version"], by_identity["signing_key"]) == (2, fingerprint(signing))
    certificate = store.identity("api").certificate
    assert certificate is not None
    assert certificate.signing_key == signing

    token = ok(home, "keys", "export", "api").stdout.strip()
    ok(home, "ca", "sign", "--ca", "ops", "--name", "tok", token, "-o", str(tmp_path / "t.crt"))
    assert read_certificate_file(tmp_path / "t.crt").signing_key == signing
    printed = ok(home, "ca", "print", str(tmp_path / "t.crt")).stdout
    assert f"  signing:    {fingerprint(signing)}\n" in printed

    bare = token.split(":")[0]
    ok(home, "ca", "sign", "--ca", "ops", "--name", "bare", bare, "-o", str(tmp_path / "b.crt"))
    assert read_certificate_file(tmp_path / "b.crt").version == 1
    verified = json.loads(ok(home, "ca", "verify", str(tmp_path / "t.crt"), "--json").stdout)
    assert verified["signing_fingerprint"] == fingerprint(signing)


def test_ca_revoke_takes_a_token_and_revokes_its_x25519_key(home: Path) -> None:
    token = ok(home, "keys", "export", "api").stdout.strip()
    ok(home, "ca", "revoke", token)
    store = Keystore.open(home)
    assert store.trust().is_revoked(store.public_key("api"))
    revoked = tomllib.loads((home / "revoked.toml").read_text())["keys"]
    assert revoked == [encode_key(store.public_key("api"))]


def test_a_policy_may_name_a_key_as_keys_export_prints_it(home: Path, tmp_path: Path) -> None:
    token = ok(home, "keys", "export", "api").stdout.strip()
    path = tmp_path / "policy.toml"
    rule = '[[rule]]\nname = "api"\nkeys = ["{}"]\nsessions = ["*"]\nrights = ["join"]\n'
    path.write_text(rule.format(token))
    (parsed,) = Policy.load(path).rules
    assert parsed.keys == frozenset({fingerprint(Keystore.open(home).public_key("api"))})


# -- key files of the earlier format ------------------------------------------------------


def test_list_and_show_name_an_earlier_key_file_as_needing_an_upgrade(home: Path) -> None:
    store = Keystore.open(home)
    write_earlier_key_file(store, "old", None)
    listed = ok(home, "keys", "list")
    lines = dict(line.split(maxsplit=1) for line in listed.stdout.splitlines())
    assert "needs an upgrade: run 'securesess keys upgrade old'" in lines["old"]
    signing = store.signing_public_key("api")
    assert signing is not None
    assert f"signing {fingerprint(signing)}" in lines["api"]
    rows = {row["name"]: row for row in json.loads(ok(home, "keys", "list", "--json").stdout)}
    assert (rows["old"]["needs_upgrade"], rows["old"]["signing_fingerprint"]) == (True, None)
    assert (rows["api"]["needs_upgrade"], rows["api"]["signing_fingerprint"]) == (
        False,
        fingerprint(signing),
    )
    shown = ok(home, "keys", "show", "old")
    assert "  signing key: none (an earlier release wrote this key file)" in shown.stdout
    data = json.loads(ok(home, "keys", "show", "old", "--json").stdout)
    assert (data["needs_upgrade"], data["signing_key"], data["signing_fingerprint"]) == (
        True,
        None,
        None,
    )
    assert store.signing_public_key("old") is None  # looking changes nothing


def test_export_of_an_earlier_identity_prints_its_key_alone_and_says_why(home: Path) -> None:
    public = write_earlier_key_file(Keystore.open(home), "old", None)
    result = ok(home, "keys", "export", "old")
    assert result.stdout == encode_key(public) + "\n"
    assert "run 'securesess keys upgrade old', then export it again" in result.stderr


def test_ca_sign_for_an_earlier_identity_issues_version_1_and_says_so(home: Path) -> None:
    write_earlier_key_file(Keystore.open(home), "old", None)
    result = ok(home, "ca", "sign", "--ca", "ops", "--name", "old", "--identity", "old")
    assert "version 1" in result.stderr
    assert "keys upgrade old" in result.stderr
    certificate = Keystore.open(home).certificate("old")
    assert certificate is not None
    assert certificate.version == 1


def test_keys_upgrade_upgrades_every_earlier_identity_and_keeps_their_keys(home: Path) -> None:
    store = Keystore.open(home)
    plain = write_earlier_key_file(store, "plain", None)
    sealed = write_earlier_key_file(store, "sealed", PASSPHRASE)
    api_before = (home / "identities" / "api.key").read_bytes()
    rows = json.loads(ok(home, "keys", "upgrade", "--json", passphrase=PASSPHRASE).stdout)
    by_name = {row["name"]: row for row in rows}
    assert [row["name"] for row in rows] == ["api", "plain", "sealed"]
    assert [by_name[n]["upgraded"] for n in ("api", "plain", "sealed")] == [False, True, True]
    for name, public in (("plain", plain), ("sealed", sealed)):
        signing = store.signing_public_key(name)
        assert signing is not None
        assert by_name[name]["signing_fingerprint"] == fingerprint(signing)
        assert store.public_key(name) == public
    assert (home / "identities" / "api.key").read_bytes() == api_before
    assert header(home / "identities" / "sealed.key", "Argon2id") == "ops=1,mem=8192"
    assert store.identity("sealed", passphrase=PASSPHRASE).public_key == sealed
    again = ok(home, "keys", "upgrade", "plain")
    assert "up to date" in again.stdout


def test_keys_upgrade_reads_the_passphrase_from_a_file(home: Path, tmp_path: Path) -> None:
    write_earlier_key_file(Keystore.open(home), "sealed", PASSPHRASE)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    result = ok(home, "keys", "upgrade", "sealed", "--passphrase-file", str(secret))
    assert result.stdout.startswith("sealed ")
    assert "upgraded: signing SHA256:" in result.stdout
    assert Keystore.open(home).signing_public_key("sealed") is not None


def test_keys_upgrade_goes_on_past_an_identity_it_cannot_open_and_exits_1(home: Path) -> None:
    store = Keystore.open(home)
    write_earlier_key_file(store, "plain", None)
    write_earlier_key_file(store, "sealed", PASSPHRASE)
    result = invoke(home, "keys", "upgrade", "sealed", "plain", "nobody", passphrase="wrong")
    assert result.exit_code == 1
    assert "sealed               (not upgraded)" in result.stdout
    assert "nobody               (not upgraded)" in result.stdout
    assert "plain                upgraded" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert "wrong passphrase" in warnings[0]
    assert "no identity named 'nobody'" in warnings[1]
    assert store.signing_public_key("sealed") is None
    assert store.signing_public_key("plain") is not None


def test_keys_upgrade_warns_that_a_version_1_certificate_binds_the_static_key_alone(
    home: Path,
) -> None:
    store = Keystore.open(home)
    public = write_earlier_key_file(store, "old", None)
    certificate = store.sign(
        "ops", passphrase=None, public_key=public, name="old", valid_seconds=YEAR
    )
    store.store_certificate("old", certificate)
    result = ok(home, "keys", "upgrade", "old")
    assert "ca sign --identity old" in result.stderr
    assert store.identity("old").certificate == certificate
