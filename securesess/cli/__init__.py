"""The ``securesess`` command line: a module per command (group), registered on :func:`main`."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
import trio

from keystore import cli as keystore_cli
from keystore.cli_output import EXIT_CODES
from securesess import demo as demo_module
from securesess.cli.bench import bench
from securesess.cli.hub import hub
from securesess.cli.policy import policy
from securesess.cli.tunnel import tunnel

#: Commands without --json: they run until stopped (or, the demo, narrate),
#: and what they print on stdout is one "listening on" line; their log is on stderr.
WITHOUT_JSON: Final = ("hub", "tunnel", "demo")
_EPILOG: Final = (
    "Every command that prints a result prints it as JSON with --json, except "
    + ", ".join(WITHOUT_JSON[:-1])
    + f" and {WITHOUT_JSON[-1]}. "
    + "hub and tunnel log on stderr at --log-level info by default; warning keeps only"
    " the trouble. " + EXIT_CODES
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.version_option(package_name="securesess")
def main() -> None:
    """Authenticated, encrypted channels and sessions for Trio services."""


for _command in (
    keystore_cli.keys,
    keystore_cli.peers,
    keystore_cli.ca,
    bench,
    hub,
    tunnel,
    policy,
):
    main.add_command(_command)
main.add_command(policy)


@main.command(epilog=EXIT_CODES)
@click.option("--party", type=click.Choice(sorted(demo_module.PARTIES)), hidden=True)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), hidden=True)
@click.option("--port", type=int, hidden=True)
def demo(party: str | None, home: Path | None, port: int | None) -> None:
    """Run a hub, two services and an outsider, each a process, and narrate.

    Needs no setup: it makes a throwaway keystore with a CA, and deletes it
    at the end. (--party is how the demo starts its own processes.)
    """
    if party is None:
        demo_module.run(click.echo)
        return
    if home is None or port is None:
        raise click.UsageError("--party needs --home and --port")
    trio.run(demo_module.party, party, home, port, click.echo)
