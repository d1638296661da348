"""``securesess keys``: identities, this process's own key pairs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from keystore.cli_certificates import (
    ca_names,
    certificate_summary,
    certificate_text,
    expiry_warning,
)
from keystore.cli_input import (
    ENV_NEW_PASSPHRASE,
    current_passphrase,
    home_option,
    kdf_option,
    new_passphrase,
    open_store,
    passphrase_file_option,
    read_passphrase,
)
from keystore.cli_output import EXIT_CODES, Result, fail, prints_result, warn
from keystore.encoding import encode_key, encode_public_token, fingerprint
from keystore.errors import KeystoreError

__all__ = ["keys", "signing_fields"]


def signing_fields(signing_key: bytes | None) -> dict[str, Any]:
    """A signing key's ``--json`` fields: its base64 and its fingerprint, or None."""
    return {
        "signing_key": None if signing_key is None else encode_key(signing_key),
        "signing_fingerprint": None if signing_key is None else fingerprint(signing_key),
    }


def _upgrade_hint(name: str) -> str:
    return f"run 'securesess keys upgrade {name}'"


@click.group(epilog=EXIT_CODES)
def keys() -> None:
    """Identities: this process's own key pairs."""


@keys.command("new", epilog=EXIT_CODES)
@click.argument("name")
@click.option("--no-passphrase", is_flag=True, help="Store the key unencrypted (for services).")
@passphrase_file_option
@kdf_option
@home_option
@prints_result
def keys_new(
    *,
    name: str,
    no_passphrase: bool,
    passphrase_file: Path | None,
    kdf: str,
    home: Path | None,
) -> Result:
    """Create identity NAME with a new key."""
    store = open_store(home, kdf)
    identity = store.new_identity(
        name, passphrase=new_passphrase(no_passphrase, passphrase_file, f"identity {name!r}")
    )
    data = {
        "name": name,
        "public_key": encode_key(identity.public_key),
        "fingerprint": identity.fingerprint,
        **signing_fields(identity.signing_public_key),
    }
    return Result(data, f"created {name}: {data['public_key']} ({identity.fingerprint})")


@keys.command("list", epilog=EXIT_CODES)
@home_option
@prints_result
def keys_list(home: Path | None) -> Result:
    """List identities (a JSON array of them, with --json).

    Exits 1, after listing the others, if a key file is damaged.
    """
    store = open_store(home)
    cas = ca_names(store)
    rows: list[dict[str, Any]] = []
    damaged: list[str] = []
    for name in store.identity_names():
        try:
            certificate = store.certificate(name)
            signing = store.signing_public_key(name)
            rows.append(
                {
                    "name": name,
                    "fingerprint": fingerprint(store.public_key(name)),
                    "signing_fingerprint": None if signing is None else fingerprint(signing),
                    "needs_upgrade": signing is None,
                    "encrypted": store.is_encrypted(name),
                    "certificate": None
                    if certificate is None
                    else certificate_summary(certificate, cas),
                }
            )
        except KeystoreError as exc:
            # One damaged file must not hide the others: list them, name it.
            rows.append({"name": name, "error": str(exc)})
            damaged.append(str(exc))
    lines = [
        f"{row['name']:<20} (unreadable)"
        if "error" in row
        else f"{row['name']:<20} {row['fingerprint']}"
        + (
            f"  (needs an upgrade: {_upgrade_hint(row['name'])})"
            if row["needs_upgrade"]
            else f"  signing {row['signing_fingerprint']}"
        )
        + ("" if row["encrypted"] else "  (unencrypted)")
        + ("  (certified)" if row["certificate"] else "")
        for row in rows
    ]
    for problem in damaged:
        warn(problem)
    return Result(rows, "\n".join(lines) if lines else "no identities", status=1 if damaged else 0)


@keys.command("show", epilog=EXIT_CODES)
@click.argument("name")
@home_option
@prints_result
def keys_show(name: str, home: Path | None) -> Result:
    """Show identity NAME: public key, fingerprints, certificate."""
    store = open_store(home)
    public = store.public_key(name)
    signing = store.signing_public_key(name)
    certificate = store.certificate(name)
    summary = None if certificate is None else certificate_summary(certificate, ca_names(store))
    data = {
        "name": name,
        "public_key": encode_key(public),
        "fingerprint": fingerprint(public),
        **signing_fields(signing),
        "needs_upgrade": signing is None,
        "encrypted": store.is_encrypted(name),
        "certificate": summary,
    }
    text = [
        f"identity {name}",
        f"  public key: {data['public_key']}",
        f"  fingerprint: {data['fingerprint']}",
        "  signing key: "
        + (
            f"none (an earlier release wrote this key file): {_upgrade_hint(name)}"
            if signing is None
            else fingerprint(signing)
        ),
        f"  encrypted:  {'yes' if data['encrypted'] else 'no'}",
    ]
    if certificate is None or summary is None:
        text.append("  certificate: none")
    else:
        text += ["certificate", certificate_text(summary)]
        expiry_warning(certificate.not_after, f"the certificate of {name!r}")
    return Result(data, "\n".join(text))


@keys.command("export", epilog=EXIT_CODES)
@click.argument("name")
@home_option
@prints_result
def keys_export(name: str, home: Path | None) -> Result:
    """Print identity NAME's public keys as one token (never a private key).

    The token is the X25519 key and the Ed25519 signing key, each in
    base64, joined by ':'; 'peers add' and 'ca sign' take it as it is. An
    identity that has no signing key yet prints its X25519 key alone.
    """
    store = open_store(home)
    public = store.public_key(name)
    signing = store.signing_public_key(name)
    token = encode_public_token(public, signing)
    if signing is None:
        warn(
            f"identity {name!r} has no signing key yet, so this is its X25519 key alone: "
            f"{_upgrade_hint(name)}, then export it again"
        )
    data = {
        "name": name,
        "public_key": encode_key(public),
        "fingerprint": fingerprint(public),
        **signing_fields(signing),
        "token": token,
    }
    return Result(data, token)


@keys.command("passwd", epilog=EXIT_CODES)
@click.argument("name")
@click.option("--no-passphrase", is_flag=True, help="Store the key unencrypted from now on.")
@passphrase_file_option
@click.option(
    "--new-passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the new passphrase from this file [default: ${ENV_NEW_PASSPHRASE}, else a prompt].",
)
@kdf_option
@home_option
@prints_result
def keys_passwd(
    *,
    name: str,
    no_passphrase: bool,
    passphrase_file: Path | None,
    new_passphrase_file: Path | None,
    kdf: str,
    home: Path | None,
) -> Result:
    """Change the passphrase of identity NAME."""
    store = open_store(home, kdf)
    old = current_passphrase(store, name, passphrase_file)
    new = None
    if not no_passphrase:
        new = read_passphrase(
            new_passphrase_file,
            env=ENV_NEW_PASSPHRASE,
            prompt=f"New passphrase for {name!r}",
            confirm=True,
        )
        if not new:
            fail("an empty passphrase is not allowed; use --no-passphrase instead")
    store.change_passphrase(name, old=old, new=new)
    data = {"name": name, "encrypted": new is not None}
    if new is None:
        return Result(data, f"removed the passphrase of {name}: its key is now stored unencrypted")
    return Result(data, f"changed the passphrase of {name}")


@keys.command("rotate", epilog=EXIT_CODES)
@click.argument("name")
@passphrase_file_option
@kdf_option
@home_option
@prints_result
def keys_rotate(name: str, passphrase_file: Path | None, kdf: str, home: Path | None) -> Result:
    """Give identity NAME a new key; the old one is kept as retired."""
    store = open_store(home, kdf)
    passphrase = current_passphrase(store, name, passphrase_file)
    old = fingerprint(store.public_key(name))
    identity = store.rotate_identity(name, passphrase=passphrase)
    data = {
        "name": name,
        "retired": old,
        "public_key": encode_key(identity.public_key),
        "fingerprint": identity.fingerprint,
        **signing_fields(identity.signing_public_key),
    }
    return Result(
        data,
        f"rotated {name}: new key {data['public_key']} ({identity.fingerprint}); {old} retired. "
        "Peers that pinned the old key, and its certificate, need the new one.",
    )


@keys.command("upgrade", epilog=EXIT_CODES)
@click.argument("names", metavar="[NAME]...", nargs=-1)
@passphrase_file_option
@home_option
@prints_result
def keys_upgrade(names: tuple[str, ...], passphrase_file: Path | None, home: Path | None) -> Result:
    """Give identities written by an earlier release a signing key (all of them without NAME).

    Each key file keeps its passphrase, its Argon2id cost and its X25519
    key, so its pins and certificate stay good; files that have a signing
    key are left as they are. Exits 1, after upgrading the others, if one
    cannot be (a JSON array of the identities, with --json).
    """
    store = open_store(home)
    rows: list[dict[str, Any]] = []
    for name in dict.fromkeys(names or store.identity_names()):
        try:
            upgraded = False
            if store.signing_public_key(name) is None:
                passphrase = current_passphrase(store, name, passphrase_file)
                upgraded = store.upgrade_identity(name, passphrase=passphrase)
                certificate = store.certificate(name)
                if upgraded and certificate is not None and certificate.signing_key is None:
                    warn(
                        f"the certificate of {name!r} (version 1) binds its X25519 key alone: "
                        f"have its CA sign it again (ca sign --identity {name}) to bind both"
                    )
            signing = signing_fields(store.signing_public_key(name))
            rows.append({"name": name, "upgraded": upgraded, **signing})
        except KeystoreError as exc:
            # As keys list does: one file that will not open must not stop the rest.
            rows.append({"name": name, "error": str(exc)})
            warn(str(exc))
    lines = [
        f"{row['name']:<20} (not upgraded)"
        if "error" in row
        else f"{row['name']:<20} "
        + ("upgraded: " if row["upgraded"] else "up to date: ")
        + f"signing {row['signing_fingerprint']}"
        for row in rows
    ]
    failed = any("error" in row for row in rows)
    return Result(rows, "\n".join(lines) if lines else "no identities", status=1 if failed else 0)


@keys.command("delete", epilog=EXIT_CODES)
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@home_option
@prints_result
def keys_delete(name: str, yes: bool, home: Path | None) -> Result:
    """Delete identity NAME and its certificate."""
    store = open_store(home)
    deleted = fingerprint(store.public_key(name))  # fail on an unknown name before asking
    if not yes:
        if not sys.stdin.isatty():
            fail("deleting a key needs --yes when not run in a terminal")
        click.confirm(f"Delete identity {name!r}? This cannot be undone", abort=True)
    store.delete_identity(name)
    return Result({"name": name, "fingerprint": deleted}, f"deleted {name}")
