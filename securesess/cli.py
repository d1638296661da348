"""The ``securesess`` command line."""

from __future__ import annotations

import click

from securesess import demo as demo_module


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="securesess")
def main() -> None:
    """Authenticated, encrypted channels and sessions for Trio services."""


@main.command()
def demo() -> None:
    """Show two parties completing a Noise handshake and exchanging a message."""
    demo_module.run(click.echo)
