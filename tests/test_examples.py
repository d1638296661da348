"""Every example runs as a person would run it, so none can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def _run(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, EXAMPLES / name], capture_output=True, text=True, timeout=60, check=True
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
