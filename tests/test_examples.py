"""Every example runs as a person would run it, so none can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def _run(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, EXAMPLES / name], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_noise_nk_in_memory() -> None:
    assert _run("noise_nk_in_memory.py")[:3] == [
        "server got: hello, server",
        "client got: hello, client",
        "server decrypts: a transport message",
    ]


def test_pinned_echo() -> None:
    lines = _run("pinned_echo.py")
    assert "client: talking to db over Noise_XX_25519_AESGCM_SHA256" in lines
    assert "client: got ping" in lines
    assert any(line.startswith("server: api connected (SHA256:") for line in lines)


def test_ca_identities() -> None:
    lines = _run("ca_identities.py")
    assert "api: connected to db in ['storage']" in lines
    assert "db: api in ['web'] connected, certified by the CA" in lines
    assert "api: got hello api" in lines


def test_api_db_session() -> None:
    lines = _run("api_db_session.py")
    assert any(line.startswith("api: sent query ") for line in lines)
    assert "db: api asks 'SELECT balance FROM accounts WHERE id = 42'" in lines
    assert "db: currency is now 'EUR'" in lines
    assert "api: db answered 'balance: 1024.00'" in lines
    assert lines[-1] == "db: api left"


def test_http_h11() -> None:
    lines = _run("http_h11.py")
    assert "client: GET / -> 200 hello from db" in lines
    assert "client: POST /echo -> 200 ping over HTTP" in lines
    assert "client: GET /missing -> 404 no such page" in lines
    # Keep-alive: all three requests arrive on the one connection.
    assert "server: api sent GET /missing (request 3 on this connection)" in lines


def test_tunnel() -> None:
    lines = _run("tunnel.py")
    assert any(line.startswith("server end: listening on 127.0.0.1:") for line in lines)
    assert "app: fetched 'hello through the tunnel\\n'" in lines
    assert "stranger: refused (ConnectionResetError)" in lines
    # By connection number: the first may finish closing after the second's refusal.
    log = sorted(
        (line for line in lines if line.startswith("server end log:")),
        key=lambda line: int(line.split()[3]),
    )
    assert len(log) == 2
    assert " peer=app " in log[0]
    assert log[0].endswith("outcome=closed")
    assert "outcome=refused" in log[1]
    assert "is not pinned" in log[1]
