"""handshake/ stays pure computation, and the layers only import downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# I/O, clocks and event loops: none may reach the protocol core.
FORBIDDEN_IN_HANDSHAKE = {
    "asyncio", "io", "os", "pathlib", "select", "selectors", "shutil", "signal",
    "socket", "socketserver", "ssl", "subprocess", "tempfile", "threading",
    "time", "trio", "urllib", "http", "keystore", "securesess",
}  # fmt: skip


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def _calls_builtin_open(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
        for node in ast.walk(tree)
    )


HANDSHAKE_FILES = sorted((ROOT / "handshake").glob("*.py"))


def test_the_handshake_package_has_modules() -> None:
    assert len(HANDSHAKE_FILES) >= 10


@pytest.mark.parametrize("path", HANDSHAKE_FILES, ids=lambda p: p.name)
def test_handshake_is_sans_io(path: Path) -> None:
    assert _imported_modules(path) & FORBIDDEN_IN_HANDSHAKE == set()
    assert not _calls_builtin_open(path)


@pytest.mark.parametrize("path", sorted((ROOT / "keystore").glob("**/*.py")), ids=str)
def test_keystore_does_not_import_securesess(path: Path) -> None:
    assert "securesess" not in _imported_modules(path)


# The connection protocol and what it is built from: bytes in, bytes and events out.
SANS_IO_STREAM = [
    "authenticate", "connection", "events", "frames", "noise_exchange", "payload",
    "protocols", "records",
]  # fmt: skip


@pytest.mark.parametrize("name", SANS_IO_STREAM)
def test_the_connection_protocol_is_sans_io(name: str) -> None:
    path = ROOT / "securesess" / "stream" / f"{name}.py"
    assert _imported_modules(path) & (FORBIDDEN_IN_HANDSHAKE - {"keystore", "securesess"}) == set()
    assert not _calls_builtin_open(path)
