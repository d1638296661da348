"""Code in the documentation runs, so it cannot rot."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from securesess.cli import WITHOUT_JSON, main

DOCS = Path(__file__).parent.parent / "docs"


def test_the_testing_guide_is_a_passing_test_module(tmp_path: Path) -> None:
    text = (DOCS / "guides" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    module = tmp_path / "test_service.py"
    module.write_text("\n\n".join(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "trio", "-o", "trio_mode=true", module.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b1[0-9] passed\b", result.stdout), result.stdout


# -- the command line as the documents describe it ----------------------------------------

ROOT = DOCS.parent
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(DOCS.glob("*.md")),
    *sorted((DOCS / "guides").glob("*.md")),
]


def _normalized(text: str) -> str:
    """Prose without Markdown backticks, line breaks or runs of spaces."""
    return re.sub(r"\s+", " ", text.replace("`", ""))


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=10_000)
    assert result.exit_code == 0, result.output
    return _normalized(result.stdout)


def _invocations(text: str) -> Iterator[list[str]]:
    """The ``securesess ...`` commands of a document's shell blocks, as words."""
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            code = re.sub(r"(^|\s)#.*", "", line)  # without its comment
            for match in re.finditer(r"(?:^|[\s(]|bin/)securesess((?:\s+[^\s|;&)]+)*)", code):
                yield shlex.split(match[1], posix=True)


def test_the_commands_in_the_documents_exist_with_their_options() -> None:
    seen = 0
    for document in DOCUMENTS:
        for words in _invocations(document.read_text(encoding="utf-8")):
            command: click.Command = main
            while isinstance(command, click.Group) and words and words[0] in command.commands:
                command = command.commands[words.pop(0)]
            assert not isinstance(command, click.Group), (document.name, words)
            options = {opt for param in command.params for opt in param.opts}
            for word in words:
                if word.startswith("-"):
                    assert word.split("=")[0] in options, (document.name, command.name, word)
            seen += 1
    assert seen > 40  # the parser found the commands


def test_the_help_and_the_documents_agree_on_exit_codes() -> None:
    exit_codes = ["0 on success", "1 on an error", "securesess: error: ...", "2 on a usage error"]
    for where, text in [
        ("securesess --help", _help()),
        ("README.md", _normalized((ROOT / "README.md").read_text(encoding="utf-8"))),
        ("keys.md", _normalized((DOCS / "guides" / "keys.md").read_text(encoding="utf-8"))),
    ]:
        for claim in exit_codes:
            assert claim in text, (where, claim)
    for path in [("keys", "new"), ("ca", "revoke"), ("policy", "check"), ("hub",), ("tunnel",)]:
        assert "Exit codes: 0 on success; 1 on an error" in _help(*path), path


def test_the_help_and_the_documents_agree_on_json() -> None:
    exempt = f"except {', '.join(WITHOUT_JSON[:-1])} and {WITHOUT_JSON[-1]}"
    assert f"prints it as JSON with --json, {exempt}" in _help()
    for document in (ROOT / "README.md", DOCS / "guides" / "keys.md"):
        text = _normalized(document.read_text(encoding="utf-8"))
        assert "prints it as JSON with --json" in text, document.name
        assert exempt in text, document.name


def test_the_help_and_the_documents_agree_on_log_levels() -> None:
    claim = "warning keeps only the trouble"
    assert claim in _help()
    for command in ("hub", "tunnel"):
        option = next(p for p in command_at(command).params if p.name == "log_level")
        assert isinstance(option.type, click.Choice)
        levels = "|".join(str(choice) for choice in option.type.choices)
        assert levels == "debug|info|warning|error"
        assert option.default == "info"
        assert claim in _help(command), command
    hub_guide = _normalized((DOCS / "guides" / "hub.md").read_text(encoding="utf-8"))
    assert "--log-level debug|info|warning|error" in hub_guide
    for document in (ROOT / "README.md", DOCS / "guides" / "hub.md", DOCS / "guides" / "tunnel.md"):
        assert claim in _normalized(document.read_text(encoding="utf-8")), document.name


def command_at(name: str) -> click.Command:
    return main.commands[name]


def test_the_architecture_page_names_every_module_of_the_layers_and_only_real_ones() -> None:
    # The diagram lists each folder's modules by name ("frames.py, records.py"):
    # a module added, moved or renamed must show there.
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```")[1]
    root = DOCS.parent / "securesess"
    named: set[str] = set()
    folder = ""
    for line in diagram.splitlines():
        if re.match(r"\s?\S", line):  # a layer's own line: its folder, or none
            head = re.match(r"\s?securesess/(\w+)/", line)
            folder = head.group(1) if head else ""
        elif folder:
            named.update(f"{folder}/{name}.py" for name in re.findall(r"(\w+)\.py", line))
    for layer in ("stream", "sessions", "tunnel"):
        modules = {
            f"{layer}/{path.name}"
            for path in (root / layer).glob("*.py")
            if path.name != "__init__.py"
        }
        assert modules <= named, f"not on docs/architecture.md: {sorted(modules - named)}"
    assert all((root / module).is_file() for module in named), sorted(
        module for module in named if not (root / module).is_file()
    )
    for module in re.findall(r"`((?:stream|sessions|tunnel|cli)/\w+\.py)`", text):
        assert (root / module).is_file(), module
