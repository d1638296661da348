"""``securesess policy``: check access policies."""

from __future__ import annotations

from pathlib import Path

import click

from keystore import Keystore
from keystore import cli as keystore_cli
from keystore.cli_output import (
    EXIT_CODES,
    Result,
    prints_result,
)
from securesess.policy import Policy


@click.group(epilog=EXIT_CODES)
def policy() -> None:
    """Check access policies."""


@policy.command("check", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@keystore_cli.home_option
@prints_result
def policy_check(file: Path, home: Path | None) -> Result:
    """Parse policy FILE against the keystore's trust; report rules that can never match.

    Exits 1 if the policy is invalid or has such rules.
    """
    parsed = Policy.load(file, trust=Keystore.open(home).trust())
    for problem in parsed.problems:
        click.echo(f"securesess: problem: {problem}", err=True)
    data = {
        "file": str(file),
        "rules": [rule.name for rule in parsed.rules],
        "problems": list(parsed.problems),
    }
    text = f"{file}: {len(parsed.rules)} rules, {len(parsed.problems)} problems"
    return Result(data, text, status=1 if parsed.problems else 0)
