"""``securesess hub``: run a session manager until stopped."""

from __future__ import annotations

import logging
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
    byte_size,
    handshake_rate_options,
    log_level_option,
    setup_logging,
)
from securesess.cli.running import Served, serve_until_signalled
from securesess.constants import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_CONNECTION_BACKLOG,
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_MAX_PEER_BACKLOG,
)
from securesess.policy import Policy
from securesess.sessions.hub import Hub
from securesess.sessions.limits import HubLimits
from securesess.stream.containment import format_address


@click.command(epilog=EXIT_CODES)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    required=True,
    callback=address,
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
    callback=byte_size,
    help=f"Undelivered bytes per member before it is removed.  [default: {DEFAULT_MAX_BACKLOG}]",
)
@click.option(
    "--max-connection-backlog",
    metavar="SIZE",
    callback=byte_size,
    help="Undelivered bytes of all one connection's memberships before it is disconnected."
    f"  [default: {DEFAULT_MAX_CONNECTION_BACKLOG}]",
)
@click.option(
    "--max-peer-backlog",
    metavar="SIZE",
    callback=byte_size,
    help="Undelivered bytes of all one peer's connections before the one of them holding the"
    f" most is disconnected.  [default: {DEFAULT_MAX_PEER_BACKLOG}]",
)
@log_level_option("connections, refusals, joins, leaves and reloads")
@handshake_rate_options(DEFAULT_MAX_CONNECTIONS_PER_PEER, "")
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
    setup_logging(log_level)
    try:
        identity = keystore_cli.unlock_identity(home, identity_name, passphrase_file)
        trust = Keystore.open(home).trust()
        policy = Policy.load(policy_path, trust=trust)
    except OPERATIONAL_ERRORS as exc:
        fail(describe_error(exc))
    limits = HubLimits(
        max_backlog=max_backlog or DEFAULT_MAX_BACKLOG,
        max_connection_backlog=max_connection_backlog or DEFAULT_MAX_CONNECTION_BACKLOG,
        max_peer_backlog=max_peer_backlog or DEFAULT_MAX_PEER_BACKLOG,
    )
    server = Hub(identity=identity, trust=trust, policy=policy, limits=limits)
    host, port = listen

    def banner() -> str:
        who = server.identity.name or "the hub"
        where = format_address(host, server.port)
        return f"listening on {where} as {who} ({server.identity.fingerprint})"

    def farewell() -> str:
        relayed = server.relayed
        return (
            f"stopped after relaying {relayed.contents} sealed contents "
            f"({relayed.content_bytes} bytes) and {relayed.commits} commits; "
            "it never held a key that opens them"
        )

    def load() -> Callable[[], None]:
        new_trust = Keystore.open(home).trust()
        new_policy = Policy.load(policy_path, trust=new_trust)
        return partial(server.reload, policy=new_policy, trust=new_trust)

    served = Served(
        serve=partial(
            server.serve,
            port,
            host=host,
            admission=admission_limits(
                handshake_rate, handshake_burst, max_handshakes_per_source, max_connections_per_peer
            ),
        ),
        banner=banner,
        load=load,
        what="policy and trust",
        log=logging.getLogger("securesess.hub"),
        farewell=farewell,
    )
    failure = trio.run(serve_until_signalled, served)
    if failure is not None:
        fail(f"cannot listen on {format_address(*listen)}: {failure}")
