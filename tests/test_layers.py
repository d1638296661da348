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


# -- the layers of securesess -------------------------------------------------------------

# Plain modules every layer may use: values, errors and rules, above nothing.
PLAIN = {"securesess.constants", "securesess.errors", "securesess.names", "securesess.policy"}

# Each part, and the parts of the project it may import: only downwards.
BELOW = {"handshake", "keystore"}
LAYERS: dict[str, set[str]] = {
    "securesess.stream": BELOW | PLAIN - {"securesess.policy"} | {"securesess.stream"},
    "securesess.sessions": BELOW | PLAIN | {"securesess.stream", "securesess.sessions"},
    "securesess.tunnel": BELOW | PLAIN | {"securesess.stream", "securesess.tunnel"},
}


def _project_imports(path: Path) -> set[str]:
    """The project modules ``path`` imports, in full (``securesess.stream.records``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in {"handshake", "keystore", "securesess"}}


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCE_FILES = sorted(
    path
    for package in ("handshake", "keystore", "securesess")
    for path in (ROOT / package).glob("**/*.py")
)


@pytest.mark.parametrize(
    ("layer", "path"),
    [
        (layer, path)
        for layer in LAYERS
        for path in sorted((ROOT / layer.replace(".", "/")).glob("**/*.py"))
    ],
    ids=lambda value: value if isinstance(value, str) else str(value.relative_to(ROOT)),
)
def test_each_layer_imports_only_the_layers_below(layer: str, path: Path) -> None:
    allowed = LAYERS[layer]
    for name in _project_imports(path):
        # "from securesess.stream import records" names securesess.stream.records.
        assert any(name == part or name.startswith(part + ".") for part in allowed) or (
            name in {"securesess", "handshake", "keystore"}
        ), f"{path.relative_to(ROOT)} imports {name}, above its layer {layer}"


@pytest.mark.parametrize("module", sorted(PLAIN))
def test_the_plain_modules_import_no_layer(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    for name in _project_imports(path):
        assert name.split(".")[0] in {"handshake", "keystore"} or any(
            name == plain or name.startswith(plain + ".") for plain in PLAIN
        ), f"{path.relative_to(ROOT)} imports {name}: a plain module sits below every layer"


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_private_module_of_another_package(path: Path) -> None:
    package = (
        _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]
    )
    for name in _project_imports(path):
        parts = name.split(".")
        for depth, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:depth])
                assert package == owner or package.startswith(owner + "."), (
                    f"{path.relative_to(ROOT)} imports {name}, private to {owner}"
                )
                break


# The session core and what it works with: no event loop, no socket, no file.
_SESSION_CORE = "core epochs variables outcome store requests wire delivery"
SESSION_CORE_FILES = [
    ROOT / "securesess" / "sessions" / f"{name}.py" for name in _SESSION_CORE.split()
]
FORBIDDEN_IN_SESSION_CORE = FORBIDDEN_IN_HANDSHAKE - {"keystore", "securesess"}


@pytest.mark.parametrize("path", SESSION_CORE_FILES, ids=lambda p: p.name)
def test_the_session_core_is_sans_io(path: Path) -> None:
    assert _imported_modules(path) & FORBIDDEN_IN_SESSION_CORE == set()


# Sealing is computation on bytes: randomness from `secrets`, never `os`.
SEALING_FILES = sorted((ROOT / "securesess" / "sessions" / "sealing").glob("*.py"))


def test_the_sealing_package_has_its_modules() -> None:
    names = {path.stem for path in SEALING_FILES}
    assert names >= {"admission", "commit", "content", "errors", "group", "roster", "schedule"}


@pytest.mark.parametrize("path", SEALING_FILES, ids=lambda p: p.name)
def test_sealing_is_sans_io(path: Path) -> None:
    assert _imported_modules(path) & FORBIDDEN_IN_SESSION_CORE == set()
    assert not _calls_builtin_open(path)
    assert not {"securesess.sessions.hub", "securesess.sessions.client"} & _project_imports(path)


# The connection protocol and what it is built from: bytes in, bytes and events out.
SANS_IO_STREAM = [
    "answer", "authenticate", "connection", "events", "frames", "noise_exchange", "payload",
    "protocols", "records",
]  # fmt: skip


@pytest.mark.parametrize("name", SANS_IO_STREAM)
def test_the_connection_protocol_is_sans_io(name: str) -> None:
    path = ROOT / "securesess" / "stream" / f"{name}.py"
    assert _imported_modules(path) & (FORBIDDEN_IN_HANDSHAKE - {"keystore", "securesess"}) == set()
    assert not _calls_builtin_open(path)


# A module is one idea and a class one responsibility: past these sizes, that
# stops being true, and the module or class is split (docs/architecture.md).
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300
SOURCE_FILES = sorted(
    path
    for package in ("handshake", "keystore", "securesess")
    for path in (ROOT / package).rglob("*.py")
)


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_or_class_is_too_big_to_be_one_idea(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    too_big = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert too_big == []
