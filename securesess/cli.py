"""The ``securesess`` command line."""

from __future__ import annotations

import dataclasses
import re

import click

from keystore import cli as keystore_cli
from securesess import demo as demo_module

_SIZE = re.compile(r"([0-9]+)\s*([KMG]?)(?:I?B)?", re.IGNORECASE)
_SCALES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A positive byte count, optionally with a binary suffix: 512K, 32M, 1G."""
    if value is None:
        return None
    match = _SIZE.fullmatch(value.strip())
    if match is None or int(match[1]) == 0:
        raise click.BadParameter(f"{value!r} is not a size such as 1073741824, 512K, 32M or 1G")
    return int(match[1]) * _SCALES[match[2].upper()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="securesess")
def main() -> None:
    """Authenticated, encrypted channels and sessions for Trio services."""


main.add_command(keystore_cli.keys)
main.add_command(keystore_cli.peers)
main.add_command(keystore_cli.ca)


@main.command()
def demo() -> None:
    """Show two parties completing a Noise handshake and exchanging a message."""
    demo_module.run(click.echo)


@main.command()
@click.option(
    "--bytes",
    "total_bytes",
    metavar="SIZE",
    callback=_byte_size,
    help="Bytes per throughput run, e.g. 1G or 256M.  [default: 1G; --quick: 32M]",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    help="Rounds over all transports; each transport's best round counts."
    "  [default: 3; --quick: 1]",
)
@click.option(
    "--seconds",
    "handshake_seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="How long to run handshakes per transport.  [default: 2; --quick: 0.3]",
)
@click.option(
    "--handshakes",
    type=click.IntRange(min=1),
    help="Run exactly this many handshakes per transport instead of for --seconds.",
)
@click.option(
    "--round-trips",
    type=click.IntRange(min=1),
    help="Timed 64-byte round trips per transport, after a tenth as many untimed."
    "  [default: 10000; --quick: 200]",
)
@click.option(
    "--idle",
    "idle_connections",
    type=click.IntRange(min=1),
    help="Idle connections to open when measuring memory per connection."
    "  [default: 200; --quick: 20]",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Shrink every workload so the run takes seconds: a smoke test, not a measurement."
    " Options given explicitly still apply.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON, not a table.")
def bench(
    *,
    total_bytes: int | None,
    repeat: int | None,
    handshake_seconds: float | None,
    handshakes: int | None,
    round_trips: int | None,
    idle_connections: int | None,
    quick: bool,
    as_json: bool,
) -> None:
    """Measure SecureStream against raw TCP and TLS 1.3 (trio.SSLStream) on loopback.

    For each transport: bulk throughput between two processes, handshakes
    per second (connect, mutual authentication, close), the round-trip time
    of a 64-byte request, and memory per idle connection. Prints a table
    with SecureStream's ratios to raw TCP and to TLS, and the project's
    targets. Progress goes to stderr. Takes a couple of minutes.
    """
    # Imported here so that other commands do not pay for loading the
    # benchmark (certificate building, workloads, reporting) at start-up.
    from securesess import bench as bench_package  # noqa: PLC0415

    base = bench_package.QUICK if quick else bench_package.FULL
    # Every option is positive when given, so "or" only picks up the omitted ones.
    settings = dataclasses.replace(
        base,
        total_bytes=total_bytes or base.total_bytes,
        repeat=repeat or base.repeat,
        handshake_seconds=handshake_seconds or base.handshake_seconds,
        handshakes=handshakes or base.handshakes,
        round_trips=round_trips or base.round_trips,
        idle_connections=idle_connections or base.idle_connections,
    )
    results = bench_package.run(settings, progress=lambda step: click.echo(step, err=True))
    click.echo(results.to_json() if as_json else results.table())
