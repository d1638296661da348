"""``securesess peers``: pinned peers, keys trusted by name like known_hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from keystore.cli_input import home_option, open_store
from keystore.cli_keys import signing_fields
from keystore.cli_output import EXIT_CODES, Result, prints_result
from keystore.encoding import decode_public_token, encode_key, fingerprint

__all__ = ["peers"]


@click.group(epilog=EXIT_CODES)
def peers() -> None:
    """Pinned peers: keys this process trusts by name, like known_hosts."""


def _peer_data(
    name: str, public_key: bytes, signing_key: bytes | None, groups: list[str]
) -> dict[str, Any]:
    return {
        "name": name,
        "public_key": encode_key(public_key),
        "fingerprint": fingerprint(public_key),
        **signing_fields(signing_key),
        "groups": groups,
    }


@peers.command("add", epilog=EXIT_CODES)
@click.argument("name")
@click.argument("public_key")
@click.option("--group", "groups", multiple=True, help="A group the peer belongs to (repeatable).")
@home_option
@prints_result
def peers_add(name: str, public_key: str, groups: tuple[str, ...], home: Path | None) -> Result:
    """Pin PUBLIC_KEY under NAME: what 'keys export' prints (the X25519 key and
    the signing key, joined by ':'), or the X25519 key alone (base64)."""
    key, signing = decode_public_token(public_key)
    open_store(home).add_peer(name, key, groups, signing_key=signing)
    data = _peer_data(name, key, signing, sorted(set(groups)))
    signs = "" if signing is None else f", signing key {fingerprint(signing)}"
    return Result(data, f"pinned {name}: {fingerprint(key)}{signs}")


@peers.command("list", epilog=EXIT_CODES)
@home_option
@prints_result
def peers_list(home: Path | None) -> Result:
    """List pinned peers (a JSON array of them, with --json)."""
    rows = [
        _peer_data(peer.name or "", peer.public_key, peer.signing_key, sorted(peer.groups))
        for peer in open_store(home).trust()
    ]
    lines = [
        f"{row['name']:<20} {row['fingerprint']}  {', '.join(row['groups'])}".rstrip()
        for row in rows
    ]
    return Result(rows, "\n".join(lines) if lines else "no pinned peers")


@peers.command("remove", epilog=EXIT_CODES)
@click.argument("name")
@home_option
@prints_result
def peers_remove(name: str, home: Path | None) -> Result:
    """Unpin peer NAME."""
    open_store(home).remove_peer(name)
    return Result({"name": name}, f"removed {name}")
