"""What every command promises: --json where it prints a result, one exit-code convention."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from keystore import Keystore, encode_key
from securesess.cli import WITHOUT_JSON, main
from tests.test_signing_keys import write_earlier_key_file

PASSPHRASE = "correct horse battery staple"
YEAR = 365 * 86_400
# Why these print no JSON: hub and tunnel run until stopped and print one
# "listening on" line, then log on stderr; demo is a narration for people.
EXEMPT = {
    "hub": "runs until stopped; its output is a log",
    "tunnel": "runs until stopped; its output is a log",
    "demo": "a narration for people",
}


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name)


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def invoke(home: Path, *args: str) -> Result:
    env = {"SECURESESS_HOME": str(home), "SECURESESS_PASSPHRASE": None}
    return CliRunner().invoke(main, list(args), env=env)


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("securesess: error: ")
    assert "Traceback" not in result.stderr
    return line


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    store = Keystore.open(home)
    store.init_ca("root", passphrase=None, valid_seconds=YEAR)
    store.issue_identity(
        "api", ca="root", ca_passphrase=None, passphrase=None, groups=["web"], valid_seconds=3600
    )
    store.new_identity("hub", passphrase=None)
    store.new_identity("vault", passphrase=PASSPHRASE)
    return home


def test_the_exemptions_are_the_commands_documented_as_such() -> None:
    assert tuple(EXEMPT) == WITHOUT_JSON


def test_every_command_that_prints_a_result_takes_json_and_prints_json(
    home: Path, tmp_path: Path
) -> None:
    certificate = tmp_path / "db.crt"
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nnames = ["api"]\nsessions = ["*"]\nrights = ["join"]\n')
    store = Keystore.open(home)
    key = encode_key(store.public_key("hub"))
    other_ca = encode_key(bytes(range(32)))
    api = store.identity("api")
    assert api.signing_key is not None
    private, seed = api.private_bytes(), api.signing_key.private_bytes_raw()
    secrets = [PASSPHRASE, encode_key(private), private.hex(), encode_key(seed), seed.hex()]
    # In an order that works in one keystore, each leaf once.
    runs: list[tuple[str, ...]] = [
        ("keys", "new", "db", "--no-passphrase"),
        ("keys", "list"),
        ("keys", "show", "api"),
        ("keys", "export", "api"),
        ("keys", "passwd", "db", "--no-passphrase"),
        ("keys", "rotate", "db"),
        ("keys", "upgrade"),
        ("ca", "init", "ops", "--no-passphrase"),
        ("ca", "sign", "--ca", "root", "--name", "db", "--identity", "db", "-o", str(certificate)),
        ("ca", "print", str(certificate)),
        ("ca", "verify", str(certificate)),
        ("ca", "trust", other_ca, "--name", "partner"),
        ("ca", "revoke", "2", "--ca", "root"),
        ("peers", "add", "friend", key, "--group", "b", "--group", "a"),
        ("peers", "list"),
        ("peers", "remove", "friend"),
        ("keys", "delete", "db", "--yes"),
        ("policy", "check", str(policy)),
        ("bench", "--help"),  # takes minutes; its --json is tested in test_bench.py
    ]
    expected = {path for path in leaves(main) if path[0] not in EXEMPT}
    assert {run[:1] if run[0] == "bench" else run[:2] for run in runs} == expected
    for path in expected:
        names = {opt for param in command_at(path).params for opt in param.opts}
        assert "--json" in names, path
    for args in runs:
        if args[0] == "bench":
            continue
        result = invoke(home, *args, "--json")
        assert result.exit_code == 0, (args, result.stderr)
        document = json.loads(result.stdout)
        assert isinstance(document, list if args[1] in ("list", "upgrade") else dict), args
        assert not any(secret in result.stdout for secret in secrets), args


def test_json_listings_are_arrays_of_objects(home: Path) -> None:
    rows = json.loads(invoke(home, "keys", "list", "--json").stdout)
    assert [row["name"] for row in rows] == ["api", "hub", "vault"]
    assert all(isinstance(row, dict) for row in rows)


def test_an_error_with_json_is_still_one_line_on_stderr(home: Path) -> None:
    line = one_error_line(invoke(home, "keys", "show", "nobody", "--json"))
    assert "no identity named 'nobody'" in line


def file_options() -> Iterator[tuple[tuple[str, ...], str]]:
    """Every (command, option or argument) that names a file to read or write."""
    for path in leaves(main):
        for param in command_at(path).params:
            if isinstance(param.type, click.Path) and param.type.file_okay:
                yield path, param.opts[0]


@pytest.fixture
def missing(tmp_path: Path) -> Path:
    return tmp_path / "no such directory" / "file"


MISSING_FILE_RUNS = {
    (("keys", "new"), "--passphrase-file"): ("keys", "new", "x", "--passphrase-file", "{}"),
    (("keys", "rotate"), "--passphrase-file"): (
        "keys", "rotate", "vault", "--passphrase-file", "{}"),
    (("keys", "passwd"), "--passphrase-file"): (
        "keys", "passwd", "vault", "--passphrase-file", "{}"),
    (("keys", "passwd"), "--new-passphrase-file"): (
        "keys", "passwd", "api", "--new-passphrase-file", "{}"),
    (("keys", "upgrade"), "--passphrase-file"): (
        "keys", "upgrade", "earlier", "--passphrase-file", "{}"),
    (("ca", "init"), "--passphrase-file"): ("ca", "init", "x", "--passphrase-file", "{}"),
    (("ca", "sign"), "--passphrase-file"): (
        "ca", "sign", "--ca", "vaultca", "--name", "x", "--identity", "api",
        "--passphrase-file", "{}"),
    (("ca", "sign"), "-o"): ("ca", "sign", "--ca", "root", "--name", "x", "--identity", "api",
                             "-o", "{}"),
    (("ca", "print"), "file"): ("ca", "print", "{}"),
    (("ca", "verify"), "file"): ("ca", "verify", "{}"),
    (("policy", "check"), "file"): ("policy", "check", "{}"),
    (("hub",), "--policy"): ("hub", "--listen", "127.0.0.1:0", "--identity", "hub",
                             "--policy", "{}"),
    (("hub",), "--passphrase-file"): ("hub", "--listen", "127.0.0.1:0", "--identity", "vault",
                                      "--policy", "{}", "--passphrase-file", "{}"),
    (("tunnel",), "--policy"): ("tunnel", "--server", "--listen", "127.0.0.1:0", "--forward",
                                "127.0.0.1:1", "--identity", "hub", "--policy", "{}"),
    (("tunnel",), "--passphrase-file"): ("tunnel", "--listen", "127.0.0.1:0", "--connect",
                                         "127.0.0.1:1", "--identity", "vault",
                                         "--passphrase-file", "{}"),
}  # fmt: skip


def test_the_missing_file_table_covers_every_file_option() -> None:
    assert set(file_options()) == set(MISSING_FILE_RUNS)


@pytest.mark.parametrize("which", sorted(MISSING_FILE_RUNS), ids=lambda w: " ".join(w[0]) + w[1])
def test_a_missing_file_is_an_error_in_one_line_not_a_usage_error(
    home: Path, missing: Path, which: tuple[tuple[str, ...], str]
) -> None:
    store = Keystore.open(home)
    store.init_ca("vaultca", passphrase=PASSPHRASE, valid_seconds=YEAR)
    write_earlier_key_file(store, "earlier", PASSPHRASE)  # for keys upgrade to open
    args = [arg.replace("{}", str(missing)) for arg in MISSING_FILE_RUNS[which]]
    line = one_error_line(invoke(home, *args))
    assert str(missing) in line
    assert "No such file or directory" in line


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "show"),
        ("keys", "new", "x", "--no-such-option"),
        ("hub", "--listen", "nowhere", "--identity", "hub", "--policy", "p.toml"),
        ("ca", "sign", "--ca", "root", "--name", "x", "--identity", "api", "--valid", "soon"),
    ],
)
def test_a_usage_error_exits_2_with_the_usage_text(home: Path, args: tuple[str, ...]) -> None:
    result = invoke(home, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage: " in result.stderr


def test_every_command_help_states_the_exit_codes() -> None:
    for path in leaves(main):
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=10_000)
        assert "Exit codes: 0 on success; 1 on an error" in result.stdout, path
        assert "2 on a usage error" in result.stdout, path


# -- what the keys and ca commands say ---------------------------------------------------


def test_revoking_a_serial_the_ca_never_issued_warns_and_revokes(home: Path) -> None:
    result = invoke(home, "ca", "revoke", "7", "--ca", "root")
    assert result.exit_code == 0
    assert result.stdout == "revoked serial 7 of CA root\n"
    assert result.stderr == (
        "securesess: warning: serial 7 was never issued by CA root (it has issued serial 1);"
        " revoked anyway\n"
    )
    root = encode_key(Keystore.open(home).trust().cas()["root"])
    revoked = tomllib.loads((home / "revoked.toml").read_text())
    assert {"ca": root, "serial": 7} in revoked["serials"]
    issued = invoke(home, "ca", "revoke", "1", "--ca", "root", "--json")
    assert issued.stderr == ""
    assert json.loads(issued.stdout)["issued_here"] is True


def test_a_serial_of_a_ca_only_trusted_here_is_revoked_without_a_warning(home: Path) -> None:
    invoke(home, "ca", "trust", encode_key(bytes(range(32))), "--name", "partner")
    result = invoke(home, "ca", "revoke", "7", "--ca", "partner", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert json.loads(result.stdout)["issued_here"] is None


def test_the_issuer_is_named_when_the_trust_store_knows_it(home: Path, tmp_path: Path) -> None:
    fingerprint = json.loads(invoke(home, "keys", "show", "api", "--json").stdout)["certificate"][
        "issuer"
    ]
    shown = invoke(home, "keys", "show", "api")
    assert f"  issuer:     root ({fingerprint})\n" in shown.stdout
    summary = json.loads(invoke(home, "keys", "show", "api", "--json").stdout)["certificate"]
    assert (summary["issuer"], summary["issuer_name"]) == (fingerprint, "root")

    certificate = tmp_path / "api.crt"
    invoke(home, "ca", "sign", "--ca", "root", "--name", "api", "--identity", "api",
           "-o", str(certificate))  # fmt: skip
    printed = invoke(home, "ca", "print", str(certificate))
    assert f"  issuer:     root ({fingerprint})\n" in printed.stdout
    # A keystore that does not trust the CA shows the fingerprint alone, and
    # ca print does not create a keystore to find out.
    elsewhere = tmp_path / "elsewhere"
    printed = invoke(elsewhere, "ca", "print", str(certificate), "--json")
    assert json.loads(printed.stdout)["issuer_name"] is None
    printed = invoke(elsewhere, "ca", "print", str(certificate))
    assert f"  issuer:     {fingerprint}\n" in printed.stdout
    assert not elsewhere.exists()
