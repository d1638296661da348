"""``securesess tunnel``: either end of a tunnel, until stopped."""

from __future__ import annotations

import contextlib
import logging
import resource
from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
import trio

from keystore import Keystore
from keystore import cli as keystore_cli
from keystore.cli_output import (
    EXIT_CODES,
    OPERATIONAL_ERRORS,
    describe_error,
    fail,
)
from securesess.cli.options import (
    address,
    admission_limits,
    handshake_rate_options,
    log_level_option,
    optional_address,
    setup_logging,
)
from securesess.cli.running import Served, serve_until_signalled
from securesess.constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
)
from securesess.policy import Policy
from securesess.stream.containment import format_address
from securesess.tunnel import TunnelClient, TunnelServer


@click.command(epilog=EXIT_CODES)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    required=True,
    callback=address,
    help="Where to accept connections: plain ones at the client end, secure ones with"
    " --server. Port 0 picks a free one (printed on stdout).",
)
@click.option(
    "--connect",
    metavar="HOST:PORT",
    callback=optional_address,
    help="Client end: the server end to carry each connection to.",
)
@click.option("--server", is_flag=True, help="Be the server end: authenticate, then --forward.")
@click.option(
    "--forward",
    metavar="HOST:PORT",
    callback=optional_address,
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
@log_level_option("one line per connection, and reloads")
@handshake_rate_options(
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
    setup_logging(log_level)
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
            admission=admission_limits(
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
    failure = trio.run(
        serve_until_signalled, _served(end, listen, policy_path, home, drain_timeout)
    )
    if failure is not None:
        fail(f"cannot listen on {format_address(*listen)}: {failure}")


def _served(
    end: TunnelServer | TunnelClient,
    listen: tuple[str, int],
    policy_path: Path | None,
    home: Path | None,
    drain_timeout: float,
) -> Served:
    host, port = listen

    def banner() -> str:
        who = end.identity.name or "this end"
        if isinstance(end, TunnelServer):
            carrying = f"forwarding to {format_address(*end.forward)}"
        else:
            carrying = f"tunnelling to {format_address(*end.connect)}"
        where = format_address(host, end.port)
        return f"listening on {where} as {who} ({end.identity.fingerprint}), {carrying}"

    def load() -> Callable[[], None]:
        trust = Keystore.open(home).trust()
        if isinstance(end, TunnelClient):
            return partial(end.reload, trust=trust)
        policy = None if policy_path is None else Policy.load(policy_path, trust=trust)
        return partial(end.reload, policy=policy, trust=trust)

    return Served(
        serve=partial(end.serve, port, host=host),
        banner=banner,
        load=load,
        what="trust and policy" if isinstance(end, TunnelServer) else "trust",
        log=logging.getLogger("securesess.tunnel"),
        drain=partial(end.drain, drain_timeout),
    )


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
