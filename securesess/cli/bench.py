"""``securesess bench``."""

from __future__ import annotations

import dataclasses

import click

from keystore.cli_output import (
    EXIT_CODES,
)
from securesess.cli.options import byte_size


@click.command(epilog=EXIT_CODES)
@click.option(
    "--bytes",
    "total_bytes",
    metavar="SIZE",
    callback=byte_size,
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
    help="Timed 64-byte round trips per transport, and per path of the tunnel test, after a"
    " tenth as many untimed.  [default: 10000; --quick: 200]",
)
@click.option(
    "--idle",
    "idle_connections",
    type=click.IntRange(min=1),
    help="Idle connections to open when measuring memory per connection, and idle members"
    " when measuring the hub's memory per member.  [default: 200; --quick: 20]",
)
@click.option(
    "--tunnel/--no-tunnel",
    default=True,
    help="Also measure a tunnel: throughput and round trips to a plain TCP service through"
    " a tunnel's client and server ends, against a direct connection.  [default: --tunnel]",
)
@click.option(
    "--tunnel-bytes",
    metavar="SIZE",
    callback=byte_size,
    help="Bytes per tunnel throughput run, direct and through the tunnel, e.g. 256M."
    "  [default: 256M; --quick: 8M]",
)
@click.option(
    "--hub/--no-hub",
    default=True,
    help="Also measure the hub: messages per second through one session, fan-out latency,"
    " memory per idle member.  [default: --hub]",
)
@click.option(
    "--hub-messages",
    type=click.IntRange(min=1),
    help="Messages to deliver per hub throughput configuration (16 KiB messages: an eighth)."
    "  [default: 100000; --quick: 5000]",
)
@click.option(
    "--fanouts",
    "hub_fanouts",
    type=click.IntRange(min=1),
    help="Timed broadcasts to 100 hub members for fan-out latency, after a tenth as many"
    " untimed.  [default: 200; --quick: 20]",
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
    tunnel: bool,
    tunnel_bytes: int | None,
    hub: bool,
    hub_messages: int | None,
    hub_fanouts: int | None,
    quick: bool,
    as_json: bool,
) -> None:
    """Measure SecureStream against raw TCP and TLS 1.3 (trio.SSLStream) on loopback.

    For each transport: bulk throughput between two processes, handshakes
    per second (connect, mutual authentication, close), the round-trip time
    of a 64-byte request, and memory per idle connection. Prints a table
    with SecureStream's ratios to raw TCP and to TLS, and the project's
    targets. Then (unless --no-tunnel) a tunnel: throughput and round trips
    from this process to a plain TCP backend, directly and through a
    tunnel's client end and server end, each of the three in its own
    process. Then (unless --no-hub) the hub, in its own process: messages
    per second delivered through one session of 2, 10 and 100 members
    (64-byte and 16 KiB messages), fan-out latency to 100 members, and
    memory per idle member. Progress goes to stderr. Takes a few minutes.
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
        tunnel=tunnel,
        tunnel_bytes=tunnel_bytes or base.tunnel_bytes,
        hub=hub,
        hub_messages=hub_messages or base.hub_messages,
        hub_fanouts=hub_fanouts or base.hub_fanouts,
    )
    results = bench_package.run(settings, progress=lambda step: click.echo(step, err=True))
    click.echo(results.to_json() if as_json else results.table())
