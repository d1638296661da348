"""Every example runs as a person would run it, so none can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_noise_nk_in_memory() -> None:
    result = subprocess.run(
        [sys.executable, EXAMPLES / "noise_nk_in_memory.py"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.splitlines()[:3] == [
        "server got: hello, server",
        "client got: hello, client",
        "server decrypts: a transport message",
    ]
