"""The ``securesess`` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import resource
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import click
import trio

from keystore import Keystore
from keystore import cli as keystore_cli
from keystore.cli_output import (
    EXIT_CODES,
    OPERATIONAL_ERRORS,
    Result,
    describe_error,
    fail,
    prints_result,
)
from securesess import demo as demo_module
from securesess.policy import Policy
from securesess.sessions.hub import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_CONNECTION_BACKLOG,
    DEFAULT_MAX_PEER_BACKLOG,
    Hub,
)
from securesess.stream.ratelimit import DEFAULT_HANDSHAKE_BURST, DEFAULT_HANDSHAKE_RATE
from securesess.stream.secure_stream import DEFAULT_HANDSHAKE_TIMEOUT
from securesess.stream.serve import (
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    format_address,
)
from securesess.tunnel import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    TunnelClient,
    TunnelServer,
)

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


#: Commands without --json: they run until stopped (or, the demo, narrate),
#: and what they print on stdout is one "listening on" line; their log is on stderr.
WITHOUT_JSON: Final = ("hub", "tunnel", "demo")
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
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


def _log_level_option(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--log-level, whose help says what each level keeps of ``what`` the command logs."""
    return click.option(
        "--log-level",
        type=click.Choice(_LOG_LEVELS),
        default="info",
        show_default=True,
        help=f"What to log on stderr. info: {what}; warning keeps only the trouble;"
        " error, only failures (a reload, an unexpected error); debug adds detail.",
    )


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _address(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """``HOST:PORT``, with IPv6 hosts in brackets: ``[::1]:7000``."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:7000")
    return host, int(port)


def _optional_address(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    return None if value is None else _address(ctx, param, value)


def _handshake_rate_options(
    per_peer: int | None, why: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--handshake-rate, --handshake-burst and --max-handshakes-per-source,
    the per-source handshake limits; and --max-connections-per-peer, its
    default ``per_peer`` (None: off) and ``why`` that default."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--max-connections-per-peer",
            type=click.IntRange(min=0),
            default=per_peer or 0,
            show_default=True,
            help="Connections one peer (one key) may hold at once; at the limit a new one"
            " displaces the oldest that has not proved it is live (a replayed IK message 1),"
            f" or is refused. 0 turns the limit off{why}.",
        )(command)
        return _per_source_options(command)

    return decorate


def _per_source_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--max-handshakes-per-source",
        type=click.IntRange(min=0),
        default=DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        show_default=True,
        help="Handshakes one source may have in progress once half the slots are taken;"
        " more are told busy. 0 turns the limit off.",
    )(command)
    command = click.option(
        "--handshake-burst",
        type=click.IntRange(min=1),
        default=DEFAULT_HANDSHAKE_BURST,
        show_default=True,
        help="Handshakes one source may start at once, beyond --handshake-rate.",
    )(command)
    return click.option(
        "--handshake-rate",
        type=click.FloatRange(min=0),
        default=DEFAULT_HANDSHAKE_RATE,
        show_default=True,
        help="Handshakes a second one source (an IPv4 address or IPv6 /64) may start on"
        " average; more are told busy. 0 turns the limit off.",
    )(command)


def _rate_options(rate: float, burst: int, per_source: int, per_peer: int) -> dict[str, Any]:
    return {
        "handshake_rate": rate or None,
        "handshake_burst": burst,
        "max_handshakes_per_source": per_source or None,
        "max_connections_per_peer": per_peer or None,
    }


main.add_command(keystore_cli.keys)
main.add_command(keystore_cli.peers)
main.add_command(keystore_cli.ca)


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


@main.command(epilog=EXIT_CODES)
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
    callback=_byte_size,
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


@main.command(epilog=EXIT_CODES)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    required=True,
    callback=_address,
    help="Address to serve on; port 0 picks a free one (printed on stdout).",
)
@click.option(
    "--identity", "identity_name", metavar="NAME", required=True, help="The hub's identity."
)
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The access policy (docs/policy.md). SIGHUP reloads it and the trust store.",
)
@click.option(
    "--max-backlog",
    metavar="SIZE",
    callback=_byte_size,
    help=f"Undelivered bytes per member before it is removed.  [default: {DEFAULT_MAX_BACKLOG}]",
)
@click.option(
    "--max-connection-backlog",
    metavar="SIZE",
    callback=_byte_size,
    help="Undelivered bytes of all one connection's memberships before it is disconnected."
    f"  [default: {DEFAULT_MAX_CONNECTION_BACKLOG}]",
)
@click.option(
    "--max-peer-backlog",
    metavar="SIZE",
    callback=_byte_size,
    help="Undelivered bytes of all one peer's connections before the one that goes over is"
    f" disconnected.  [default: {DEFAULT_MAX_PEER_BACKLOG}]",
)
@_log_level_option("connections, refusals, joins, leaves and reloads")
@_handshake_rate_options(DEFAULT_MAX_CONNECTIONS_PER_PEER, "")
@keystore_cli.passphrase_file_option
@keystore_cli.home_option
def hub(
    *,
    listen: tuple[str, int],
    identity_name: str,
    policy_path: Path,
    max_backlog: int | None,
    max_connection_backlog: int | None,
    max_peer_backlog: int | None,
    handshake_rate: float,
    handshake_burst: int,
    max_handshakes_per_source: int,
    max_connections_per_peer: int,
    log_level: str,
    passphrase_file: Path | None,
    home: Path | None,
) -> None:
    """Run a session manager: clients join sessions whose data reaches only their members.

    Peers are authenticated with the keystore's trust (pinned peers, CAs,
    revocations) and admitted by the policy. SIGHUP reloads both: peers
    that lost access are removed at once. SIGTERM or Ctrl-C stops the hub.
    """
    _logging(log_level)
    try:
        identity = keystore_cli.unlock_identity(home, identity_name, passphrase_file)
        trust = Keystore.open(home).trust()
        policy = Policy.load(policy_path, trust=trust)
    except OPERATIONAL_ERRORS as exc:
        fail(describe_error(exc))
    given = {
        "max_backlog": max_backlog,
        "max_connection_backlog": max_connection_backlog,
        "max_peer_backlog": max_peer_backlog,
    }
    limits = {name: value for name, value in given.items() if value is not None}
    server = Hub(identity=identity, trust=trust, policy=policy, **limits)
    serve = partial(
        server.serve,
        **_rate_options(
            handshake_rate, handshake_burst, max_handshakes_per_source, max_connections_per_peer
        ),
    )
    failure = trio.run(_run_hub, server, serve, listen, policy_path, home)
    if failure is not None:
        fail(f"cannot listen on {format_address(*listen)}: {failure}")


async def _run_hub(
    server: Hub,
    serve: Callable[..., Awaitable[None]],
    listen: tuple[str, int],
    policy_path: Path,
    home: Path | None,
) -> OSError | None:
    """Serve until stopped; the error if it cannot listen."""
    log = logging.getLogger("securesess.hub")
    host, port = listen
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(partial(serve, port, host=host))
            except OSError as exc:
                return exc
            who = server.identity.name or "the hub"
            click.echo(
                f"listening on {format_address(host, server.port)} as {who}"
                f" ({server.identity.fingerprint})"
            )
            async for signum in signals:
                if signum != signal.SIGHUP:
                    log.info("stopping on %s", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
                try:
                    new_trust = Keystore.open(home).trust()
                    new_policy = Policy.load(policy_path, trust=new_trust)
                except Exception as exc:  # whatever is wrong in the files, the hub goes on
                    log.error("reload failed, keeping the old policy and trust: %s", exc)
                    continue
                server.reload(policy=new_policy, trust=new_trust)
                log.info("reloaded %s and the trust store", policy_path)
    return None


@main.command(epilog=EXIT_CODES)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    required=True,
    callback=_address,
    help="Where to accept connections: plain ones at the client end, secure ones with"
    " --server. Port 0 picks a free one (printed on stdout).",
)
@click.option(
    "--connect",
    metavar="HOST:PORT",
    callback=_optional_address,
    help="Client end: the server end to carry each connection to.",
)
@click.option("--server", is_flag=True, help="Be the server end: authenticate, then --forward.")
@click.option(
    "--forward",
    metavar="HOST:PORT",
    callback=_optional_address,
    help="Server end: the service to connect each admitted peer to.",
)
@click.option(
    "--identity", "identity_name", metavar="NAME", required=True, help="This end's identity."
)
@click.option(
    "--expect",
    metavar="PEER",
    help="Client end: insist that the server end is this pinned or certified name.",
)
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server end: admit only peers a rule of this policy is about (docs/policy.md);"
    " without it, every peer the keystore trusts is admitted.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CONNECTIONS,
    show_default=True,
    help="Connections carried at once; more are refused.",
)
@click.option(
    "--handshake-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_HANDSHAKE_TIMEOUT,
    show_default=True,
    help="Seconds a handshake may take.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the TCP connection to the far side.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_IDLE_TIMEOUT,
    show_default=True,
    help="Seconds a connection may carry nothing either way before it is cut. 0: never.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM or Ctrl-C, seconds open connections get to finish before they are cut.",
)
@_log_level_option("one line per connection, and reloads")
@_handshake_rate_options(
    None,
    " (the default at the server end: --max-connections bounds them, and a replay cannot"
    " open one there)",
)
@keystore_cli.passphrase_file_option
@keystore_cli.home_option
def tunnel(
    *,
    listen: tuple[str, int],
    connect: tuple[str, int] | None,
    server: bool,
    forward: tuple[str, int] | None,
    identity_name: str,
    expect: str | None,
    policy_path: Path | None,
    max_connections: int,
    handshake_timeout: float,
    connect_timeout: float,
    idle_timeout: float,
    drain_timeout: float,
    handshake_rate: float,
    handshake_burst: int,
    max_handshakes_per_source: int,
    max_connections_per_peer: int,
    log_level: str,
    passphrase_file: Path | None,
    home: Path | None,
) -> None:
    """Carry plain TCP connections over authenticated, encrypted streams (like spiped).

    \b
    Client end, next to an application that cannot be changed:
      securesess tunnel --listen 127.0.0.1:6380 --connect db.internal:7380 \\
                        --identity api --expect db
    Server end, next to the service:
      securesess tunnel --server --listen 0.0.0.0:7380 --forward 127.0.0.1:6379 \\
                        --identity db --policy tunnel.toml

    The server end connects to the service only for a peer that completed
    the handshake and that the keystore's trust (and --policy) admits. Each
    connection ends with one log line on stderr: peer, bytes, duration,
    outcome. SIGHUP reloads the trust store and the policy, cutting
    connections of peers no longer admitted; SIGTERM or Ctrl-C stops
    accepting and lets open connections finish (--drain-timeout); a second
    one cuts them at once.
    """
    if server:
        if forward is None:
            raise click.UsageError("--server needs --forward HOST:PORT")
        if connect is not None or expect is not None:
            raise click.UsageError("--connect and --expect are for the client end, not --server")
    else:
        if connect is None:
            raise click.UsageError("give --connect HOST:PORT, or --server with --forward")
        if forward is not None or policy_path is not None:
            raise click.UsageError("--forward and --policy are for the server end (--server)")
    _logging(log_level)
    try:
        identity = keystore_cli.unlock_identity(home, identity_name, passphrase_file)
        trust = Keystore.open(home).trust()
        policy = None if policy_path is None else Policy.load(policy_path, trust=trust)
    except OPERATIONAL_ERRORS as exc:
        fail(describe_error(exc))
    end: TunnelServer | TunnelClient
    if forward is not None:
        end = TunnelServer(
            forward,
            identity=identity,
            trust=trust,
            policy=policy,
            max_connections=max_connections,
            handshake_timeout=handshake_timeout,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout or None,
            **_rate_options(
                handshake_rate, handshake_burst, max_handshakes_per_source, max_connections_per_peer
            ),
        )
    else:
        assert connect is not None
        end = TunnelClient(
            connect,
            identity=identity,
            trust=trust,
            expect=expect,
            max_connections=max_connections,
            handshake_timeout=handshake_timeout,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout or None,
        )
    _allow_descriptors(2 * max_connections + 64)  # two sockets per carried connection
    failure = trio.run(_run_tunnel, end, listen, policy_path, home, drain_timeout)
    if failure is not None:
        fail(f"cannot listen on {format_address(*listen)}: {failure}")


def _allow_descriptors(needed: int) -> None:
    """Raise the soft limit on open files towards ``needed``, as far as the hard one allows.

    The common soft limit of 1024 would refuse connections well below
    --max-connections, with errors far from their cause.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _run_tunnel(
    end: TunnelServer | TunnelClient,
    listen: tuple[str, int],
    policy_path: Path | None,
    home: Path | None,
    drain_timeout: float,
) -> OSError | None:
    """Serve until stopped; the error if it cannot listen."""
    log = logging.getLogger("securesess.tunnel")
    host, port = listen
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[object]) -> None:
                await end.serve(port, host=host, task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop waiting for signals

            try:
                await nursery.start(serve)
            except OSError as exc:
                return exc
            who = end.identity.name or "this end"
            if isinstance(end, TunnelServer):
                carrying = f"forwarding to {format_address(*end.forward)}"
            else:
                carrying = f"tunnelling to {format_address(*end.connect)}"
            click.echo(
                f"listening on {format_address(host, end.port)} as {who}"
                f" ({end.identity.fingerprint}), {carrying}"
            )
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    _reload_tunnel(end, policy_path, home, log)
                elif not stopping:
                    stopping = True
                    log.info("%s: draining", name)
                    nursery.start_soon(end.drain, drain_timeout)
                else:
                    log.info("%s again: cutting every connection", name)
                    nursery.cancel_scope.cancel()
    return None


def _reload_tunnel(
    end: TunnelServer | TunnelClient,
    policy_path: Path | None,
    home: Path | None,
    log: logging.Logger,
) -> None:
    try:
        trust = Keystore.open(home).trust()
        policy = None if policy_path is None else Policy.load(policy_path, trust=trust)
    except Exception as exc:  # whatever is wrong in the files, the tunnel goes on
        log.error("reload failed, keeping the old trust and policy: %s", exc)
        return
    if isinstance(end, TunnelServer):
        end.reload(policy=policy, trust=trust)
    else:
        end.reload(trust=trust)
    log.info("reloaded the trust store%s", "" if policy_path is None else f" and {policy_path}")


@main.group(epilog=EXIT_CODES)
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
