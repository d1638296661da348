"""The key-management CLI as an operator uses it: real processes, real files."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from keystore import Keystore
from securesess import SecureStream
from tests.streams import handshake_both


def run(
    home: Path, *args: str, passphrase: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SECURESESS_HOME": str(home)}
    env.pop("SECURESESS_PASSPHRASE", None)
    if passphrase is not None:
        env["SECURESESS_PASSPHRASE"] = passphrase
    result = subprocess.run(
        [sys.executable, "-m", "securesess", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"securesess {' '.join(args)} failed: {result.stderr}")
    return result


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("securesess: error: ")
    return lines[0]


async def test_a_newcomers_walkthrough(tmp_path: Path) -> None:
    """Create a CA, issue identities for two services, and connect them by
    certificate and by pinned key, using only the CLI to manage keys."""
    home = tmp_path / "home"
    run(home, "ca", "init", "ops", passphrase="ca passphrase")
    for service in ("api", "db"):
        run(home, "keys", "new", service, "--no-passphrase")
        run(home, "ca", "sign", "--ca", "ops", "--name", service, "--group", "prod",
            "--identity", service, passphrase="ca passphrase")  # fmt: skip
    shown = json.loads(run(home, "keys", "show", "api", "--json").stdout)
    assert shown["certificate"]["name"] == "api"
    assert shown["certificate"]["groups"] == ["prod"]

    store = Keystore.open(home)
    api, db = store.identity("api"), store.identity("db")
    trust = store.trust()
    left, right = trio.testing.memory_stream_pair()
    client = SecureStream(left, identity=api, trust=trust, expect="db")
    server = SecureStream(right, identity=db, trust=trust, server_side=True)
    await handshake_both(client, server)
    assert (client.peer.name, server.peer.name) == ("db", "api")
    assert server.peer.certificate is not None

    # The same two services by pinned key, in a second keystore with no CA.
    pinned_home = tmp_path / "pinned"
    run(pinned_home, "peers", "add", "api", run(home, "keys", "export", "api").stdout.strip())
    run(pinned_home, "peers", "add", "db", run(home, "keys", "export", "db").stdout.strip())
    pinned = Keystore.open(pinned_home).trust()
    assert pinned.cas() == {}
    left, right = trio.testing.memory_stream_pair()
    client = SecureStream(left, identity=api, trust=pinned, expect="db")
    server = SecureStream(right, identity=db, trust=pinned, server_side=True)
    await handshake_both(client, server)
    assert server.peer.certificate is None  # trusted because pinned
    assert server.peer.name == "api"


def test_every_verb_has_help() -> None:
    for verb in [
        ("keys", "new"), ("keys", "list"), ("keys", "show"), ("keys", "export"),
        ("keys", "passwd"), ("keys", "rotate"), ("keys", "upgrade"), ("keys", "delete"),
        ("peers", "add"), ("peers", "list"), ("peers", "remove"),
        ("ca", "init"), ("ca", "sign"), ("ca", "print"), ("ca", "verify"),
        ("ca", "trust"), ("ca", "revoke"),
    ]:  # fmt: skip
        result = run(Path("/nonexistent"), *verb, "--help")
        assert result.stdout.startswith(f"Usage: securesess {' '.join(verb)} "), verb


def test_json_listings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "api", "--no-passphrase")
    run(home, "keys", "new", "vault", passphrase="secret")
    rows = json.loads(run(home, "keys", "list", "--json").stdout)
    assert [(r["name"], r["encrypted"]) for r in rows] == [("api", False), ("vault", True)]
    token = run(home, "keys", "export", "api").stdout.strip()
    run(home, "peers", "add", "friend", token, "--group", "a", "--group", "b")
    peers = json.loads(run(home, "peers", "list", "--json").stdout)
    exported = json.loads(run(home, "keys", "export", "api", "--json").stdout)
    assert token == exported["token"] == f"{exported['public_key']}:{exported['signing_key']}"
    assert peers == [
        {
            "name": "friend",
            "public_key": exported["public_key"],
            "fingerprint": exported["fingerprint"],
            "signing_key": exported["signing_key"],
            "signing_fingerprint": exported["signing_fingerprint"],
            "groups": ["a", "b"],
        }
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "show", "nobody"), "no identity named 'nobody'"),
        (("peers", "add", "x", "not-a-key"), "not valid base64"),
        (("peers", "add", "x", "AAAA"), "32 bytes"),
        (("peers", "remove", "nobody"), "no pinned peer is named 'nobody'"),
        (("keys", "new", "bad/name", "--no-passphrase"), "not allowed"),
        (("ca", "sign", "--ca", "none", "--name", "x", "--identity", "api"), "no CA named"),
        (("keys", "show", "vault"), None),
    ],
)
def test_errors_are_one_line_and_change_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str | None
) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "api", "--no-passphrase")
    run(home, "keys", "new", "vault", passphrase="secret")
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and p.name != ".lock"}
    result = run(home, *args, check=False)
    if message is None:
        assert result.returncode == 0  # showing needs no passphrase
        return
    assert message in error_line(result)
    after = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def test_a_wrong_passphrase_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "vault", passphrase="secret")
    result = run(home, "keys", "rotate", "vault", passphrase="guess", check=False)
    assert "wrong passphrase" in error_line(result)
    no_tty = run(home, "keys", "rotate", "vault", check=False)
    assert "a passphrase is needed" in error_line(no_tty)


def test_passphrase_from_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = tmp_path / "passphrase"
    secret.write_text("from a file\n")
    run(home, "keys", "new", "vault", "--passphrase-file", str(secret))
    assert Keystore.open(home).identity("vault", passphrase="from a file").name == "vault"


def test_keys_are_sealed_at_the_cost_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cost(name: str) -> str:
        text = (home / "identities" / f"{name}.key").read_text()
        return next(line for line in text.splitlines() if line.startswith("Argon2id: "))

    home = tmp_path / "home"
    run(home, "keys", "new", "fast", "--kdf", "interactive", passphrase="secret")
    assert cost("fast") == "Argon2id: ops=2,mem=67108864"
    monkeypatch.delenv("SECURESESS_KDF")  # the suite's own choice of the cheap cost
    run(home, "keys", "new", "vault", passphrase="secret")
    assert cost("vault") == "Argon2id: ops=3,mem=268435456"
    monkeypatch.setenv("SECURESESS_NEW_PASSPHRASE", "new secret")
    run(home, "keys", "passwd", "fast", passphrase="secret")  # sealed anew: at the default cost
    assert cost("fast") == "Argon2id: ops=3,mem=268435456"
    result = run(home, "keys", "new", "x", "--kdf", "weak", passphrase="secret", check=False)
    assert result.returncode == 2
    assert "'weak' is not one of" in result.stderr


def test_the_trust_command_ca_init_prints_carries_the_cas_expiry(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    printed = run(home, "ca", "init", "ops", "--valid", "2y", "--no-passphrase").stdout
    command = printed.splitlines()[-1].split("securesess ", 1)[1].split()
    assert command[-2] == "--not-after"
    run(other, *command)
    expiry = Keystore.open(home).ca_info("ops")["not_after"]
    assert Keystore.open(other).trust().ca_validity("ops") == (None, expiry)
    # A date, or a time with its zone; UTC unless it says.
    run(other, "ca", "trust", base64.b64encode(bytes(32)).decode(), "--name", "next",
        "--not-after", "2999-01-01")  # fmt: skip
    assert Keystore.open(other).trust().ca_validity("next") == (None, 32472144000)
    bad = run(other, "ca", "trust", base64.b64encode(bytes(range(32))).decode(),
              "--not-after", "next year", check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "is not a date like" in bad.stderr
    past = run(other, "ca", "trust", base64.b64encode(bytes(range(32))).decode(),
               "--not-after", "2001-01-01T00:00:00Z", check=False)  # fmt: skip
    assert "trusting it would admit no one" in error_line(past)


def test_a_deleted_revocation_list_is_an_error_not_an_empty_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "api", "--no-passphrase")
    key = run(home, "keys", "export", "api").stdout.strip()
    run(home, "peers", "add", "api", key)
    run(home, "ca", "revoke", key)
    (home / "revoked.toml").unlink()
    for verb in (("peers", "list"), ("ca", "revoke", key)):
        assert "revoked.toml is missing" in error_line(run(home, *verb, check=False))
    assert not (home / "revoked.toml").exists()


def test_revocation_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "ca", "init", "ops", "--no-passphrase")
    run(home, "keys", "new", "api", "--no-passphrase")
    certificate = tmp_path / "api.crt"
    run(home, "ca", "sign", "--ca", "ops", "--name", "api", "--identity", "api",
        "-o", str(certificate))  # fmt: skip
    assert "valid: api" in run(home, "ca", "verify", str(certificate)).stdout
    printed = json.loads(run(home, "ca", "print", str(certificate), "--json").stdout)
    run(home, "ca", "revoke", str(printed["serial"]))
    assert "has been revoked" in error_line(
        run(home, "ca", "verify", str(certificate), check=False)
    )


def test_a_certificate_expiring_soon_draws_a_warning(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "ca", "init", "ops", "--no-passphrase")
    run(home, "keys", "new", "api", "--no-passphrase")
    run(home, "ca", "sign", "--ca", "ops", "--name", "api", "--identity", "api", "--valid", "10d")
    result = run(home, "keys", "show", "api")
    # Signed for 10 days and seen seconds later: 10 days, not 9.
    assert "securesess: warning: the certificate of 'api' expires in 10 days" in result.stderr
    run(home, "ca", "sign", "--ca", "ops", "--name", "api", "--identity", "api", "--valid", "1d")
    result = run(home, "keys", "show", "api")
    assert "securesess: warning: the certificate of 'api' expires in 1 day\n" in result.stderr


def test_removing_a_passphrase_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "vault", passphrase="secret")
    result = run(home, "keys", "passwd", "vault", "--no-passphrase", passphrase="secret")
    assert result.stdout == "removed the passphrase of vault: its key is now stored unencrypted\n"
    assert Keystore.open(home).identity("vault").name == "vault"


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Keystore.open(home)
    env = {**os.environ, "SECURESESS_HOME": str(home)}
    keys = [os.urandom(32) for _ in range(8)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "securesess",
                "peers",
                "add",
                f"peer{i}",
                base64.b64encode(key).decode(),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, key in enumerate(keys)
    ]
    for process in processes:
        assert process.wait(timeout=60) == 0
    trust = Keystore.open(home).trust()
    assert sorted(peer.name or "" for peer in trust) == [f"peer{i}" for i in range(8)]


def test_killing_the_cli_mid_write_leaves_a_loadable_keystore(tmp_path: Path) -> None:
    """SIGKILL the CLI at random moments while it writes; every time, the
    keystore must load, and each file must be either the old or the new one."""
    home = tmp_path / "home"
    run(home, "keys", "new", "api", "--no-passphrase")
    env = {**os.environ, "SECURESESS_HOME": str(home)}
    chance = random.Random(1234)
    for attempt in range(12):
        before = Keystore.open(home).trust()
        command = (
            ["peers", "add", f"peer{attempt}", base64.b64encode(os.urandom(32)).decode()]
            if attempt % 2 == 0
            else ["keys", "rotate", "api"]
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "securesess", *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(chance.uniform(0.05, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        store = Keystore.open(home)
        after = store.trust()  # loads: no half-written TOML
        store.identity("api")  # loads: no half-written key
        names_before = {peer.name for peer in before}
        names_after = {peer.name for peer in after}
        assert names_after in (names_before, names_before | {f"peer{attempt}"})
    # The next write sweeps away temporary files that killed writers left.
    run(home, "peers", "add", "last", base64.b64encode(os.urandom(32)).decode())
    assert list(home.rglob("*.tmp")) == []


def test_the_hub_command_refuses_bad_setups_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "hub", "--no-passphrase")
    good = tmp_path / "policy.toml"
    good.write_text('[[rule]]\nany_peer = true\nsessions = ["*"]\nrights = ["join"]\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nany_peer = true\nsessions = ["*"]\nrights = ["fly"]\n')
    listen = ("--listen", "127.0.0.1:0")
    line = error_line(run(home, "hub", *listen, "--identity", "nobody", "--policy", str(good),
                          check=False))  # fmt: skip
    assert "nobody" in line
    line = error_line(run(home, "hub", *listen, "--identity", "hub", "--policy", str(bad),
                          check=False))  # fmt: skip
    assert "unknown right 'fly'" in line
    result = run(home, "hub", "--listen", "nowhere", "--identity", "hub", "--policy", str(good),
                 check=False)  # fmt: skip
    assert result.returncode == 2
    assert "is not HOST:PORT" in result.stderr


async def test_the_hub_command_serves_reloads_and_stops_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "hub", "--no-passphrase")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nnames = ["nobody"]\nsessions = []\nrights = ["join"]\n')
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "securesess", "hub", "--listen", "127.0.0.1:0",
         "--identity", "hub", "--policy", str(policy), "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    with trio.fail_after(20):
        first = await process.stdout.receive_some()
        assert first.startswith(b"listening on 127.0.0.1:")
        assert Keystore.open(home).identity("hub").fingerprint.encode() in first
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
        log = b""
        while chunk := await process.stderr.receive_some():
            log += chunk
    assert b"its sessions list is empty" in log  # problems are logged at start
    assert b"reloaded" in log
    assert b"stopping on SIGTERM" in log


@pytest.mark.parametrize("serial", [str(2**64), "١٢٣"])
def test_a_bad_serial_is_refused_and_revocation_goes_on(tmp_path: Path, serial: str) -> None:
    # An operator's typo used to be written to revoked.toml, which every
    # later load refused: no reload, no further revocation, no fresh start.
    home = tmp_path / "home"
    run(home, "ca", "init", "ops", "--no-passphrase")
    run(home, "keys", "new", "api", "--no-passphrase")
    before = (home / "revoked.toml").read_bytes() if (home / "revoked.toml").exists() else None
    result = run(home, "ca", "revoke", serial, "--ca", "ops", check=False)
    assert result.returncode == 1
    assert "serial" in error_line(result)
    after = (home / "revoked.toml").read_bytes() if (home / "revoked.toml").exists() else None
    assert after == before
    key = base64.b64encode(Keystore.open(home).identity("api").public_key).decode()
    assert "revoked key" in run(home, "ca", "revoke", key).stdout
    assert Keystore.open(home).trust().is_revoked(base64.b64decode(key))


def test_keys_list_lists_the_rest_and_names_a_damaged_key_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("api", "db", "web"):
        run(home, "keys", "new", name, "--no-passphrase")
    damaged = home / "identities" / "db.key"
    damaged.write_bytes(damaged.read_bytes()[:40])
    result = run(home, "keys", "list", check=False)
    assert result.returncode == 1
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["api", "db", "web"]
    assert "db" in result.stdout.splitlines()[1]
    assert "(unreadable)" in result.stdout
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("securesess: warning: ")
    assert "db.key is truncated" in warning
    listed = json.loads(run(home, "keys", "list", "--json", check=False).stdout)
    assert [row["name"] for row in listed if "error" not in row] == ["api", "web"]


def test_a_hub_whose_port_is_taken_says_so_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "keys", "new", "hub", "--no-passphrase")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "all"\nnames = ["api"]\n', encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(home, "hub", "--listen", f"127.0.0.1:{port}", "--identity", "hub",
                     "--policy", str(policy), check=False)  # fmt: skip
    refusal = "cannot listen on 127.0.0.1:{}: [Errno 98] Address already in use"
    assert error_line(result) == "securesess: error: " + refusal.format(port)
