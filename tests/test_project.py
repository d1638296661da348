"""The promises the repository makes to a newcomer: the README's commands are
the ones CI runs, and the installed ``securesess`` command works."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# Installing the project puts the console script beside the interpreter.
SECURESESS = Path(sys.executable).with_name("securesess")


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", quick_start)


def test_the_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    install_and_demo, test_command = _readme_commands()
    assert install_and_demo.endswith("securesess demo")
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines


def _lower_bounds() -> dict[str, str]:
    """Every requirement of pyproject.toml, as name -> its declared minimum."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = [
        *project["build-system"]["requires"],
        *project["project"]["dependencies"],
        *(r for extra in project["project"]["optional-dependencies"].values() for r in extra),
    ]
    bounds = {}
    for requirement in requirements:
        # One shape only, so that each has a minimum CI can install exactly.
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)>=([0-9][0-9.]*)", requirement)
        assert match, f"{requirement!r}: declare a lower bound, as name>=version"
        bounds[_normalized(match[1])] = match[2]
    return bounds


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_ci_proves_every_declared_minimum() -> None:
    constraints = (ROOT / "constraints-minimum.txt").read_text(encoding="utf-8")
    pinned = {}
    for line in constraints.splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[_normalized(name)] = version
    assert pinned == _lower_bounds()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'PIP_CONSTRAINT="$PWD/constraints-minimum.txt"' in ci


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SECURESESS, "demo"], capture_output=True, text=True, timeout=60, check=True
    )


def test_the_securesess_command_runs_the_demo(demo: subprocess.CompletedProcess[str]) -> None:
    lines = demo.stdout.splitlines()

    def said(speaker: str, text: str) -> bool:
        return any(line.startswith(speaker + " ") and text in line for line in lines)

    assert said("hub", "listening on 127.0.0.1:")
    for service in ("api", "db"):
        assert said(service, "authenticated the hub as hub (SHA256:")
        assert said(service, "by its certificate (serial 1) from CA 'demo-ca'")
        assert said(service, f"the hub authenticated us as {service} (SHA256:")
    assert said("legend", "a message id SEQ@N is the session's event SEQ")
    assert said("db", "from api (member #")
    assert said("db", "'SELECT balance FROM accounts WHERE id = 42'")
    assert said("db", "sees variable 'currency' = 'EUR' (version 1, set by api)")
    assert said("api", "received direct message")
    assert said("outsider", "refused at connect: no rule of the hub's policy admits outsider")
    assert said("outsider", "(close code 3: access denied)")
    # The evidence of end-to-end sealing: keys from the members, content the hub cannot open.
    # Whichever of the two joins first begins epoch 1, the other joins in epoch 2.
    assert said("db", ": its keys are made by the members, never the hub")
    assert any("in epoch 1: its keys are made by the members" in line for line in lines)
    assert said("db", ", which api is not in")
    relayed = next(line for line in lines if "stopped after relaying" in line)
    match = re.search(r"relaying (\d+) sealed contents \((\d+) bytes\) and (\d+) commits", relayed)
    assert match, relayed
    # Four contents; a commit per join (or one for both, when both entered
    # before the first), and one when api left.
    assert int(match[1]) == 4
    assert int(match[3]) in (2, 3)
    assert "it never held a key that opens them" in relayed
    assert "done: the keystore and its keys are deleted" in lines[-1]
    assert demo.stderr == ""


def test_the_demo_narrates_in_causal_order(demo: subprocess.CompletedProcess[str]) -> None:
    """What a process learnt from another is printed after that process said it did it."""
    lines = demo.stdout.splitlines()

    def at(speaker: str, text: str) -> int:
        (index,) = [
            i for i, line in enumerate(lines) if line.startswith(speaker + " ") and text in line
        ]
        return index

    assert at("api", "sends the session a message") < at("db", "received message")
    assert at("api", "sets variable 'currency'") < at("db", "sees variable 'currency'")
    assert at("db", "sends a direct message to api") < at("api", "received direct message")
    assert at("api", "leaves session") < at("db", "sees api (member #")


def test_the_securesess_command_has_help() -> None:
    result = subprocess.run([SECURESESS, "--help"], capture_output=True, text=True, check=True)
    assert "demo" in result.stdout
