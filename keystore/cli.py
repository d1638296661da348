"""Key management verbs of the ``securesess`` command: ``keys``, ``peers``, ``ca``.

Every verb takes ``--home`` (else ``$SECURESESS_HOME``, else the per-user
config directory) and prints its result as text or, with ``--json``, as JSON;
errors and exit codes follow :mod:`keystore.cli_output`. Passphrases come
from ``--passphrase-file``, ``$SECURESESS_PASSPHRASE`` or a prompt, in that
order.
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import click

from keystore.certificate import Certificate, iso_time
from keystore.cli_output import EXIT_CODES, Refused, Result, fail, prints_result, warn
from keystore.encoding import decode_key, encode_key, fingerprint
from keystore.errors import KeystoreError, UntrustedPeerError
from keystore.identity import Identity
from keystore.sealing import Argon2idCost
from keystore.store import Keystore, armor_certificate, default_home, read_certificate_file

__all__ = [
    "ca",
    "fail",
    "home_option",
    "keys",
    "passphrase_file_option",
    "peers",
    "unlock_identity",
]

ENV_PASSPHRASE: Final = "SECURESESS_PASSPHRASE"
ENV_NEW_PASSPHRASE: Final = "SECURESESS_NEW_PASSPHRASE"
ENV_KDF: Final = "SECURESESS_KDF"
_SOON: Final = 30 * 86_400
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "y": 365 * 86_400}


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``2y``... in seconds."""
    match = re.fullmatch(r"([0-9]{1,6})([smhdwy])", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 90d, 12h or 1y")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise click.BadParameter("a duration must be positive")
    return seconds


def parse_time(text: str) -> int:
    """``2036-12-07`` or ``2036-12-07T12:00:00Z`` (UTC unless it says) in Unix seconds."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date like 2036-12-07T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SECURESESS_HOME",
    help="Keystore directory [default: $SECURESESS_HOME, else the per-user config directory].",
)
# Not exists=True: a missing file is an error (exit 1, one line), not a usage error.
passphrase_file_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the passphrase from this file [default: ${ENV_PASSPHRASE}, else a prompt].",
)
kdf_option = click.option(
    "--kdf",
    type=click.Choice(["moderate", "sensitive", "interactive"]),
    default="moderate",
    show_default=True,
    envvar=ENV_KDF,
    help="How hard Argon2id works on the new passphrase: moderate is 3 passes over 256 MiB, "
    "sensitive 4 over 1 GiB, interactive 2 over 64 MiB (for tests, or machines that cannot "
    f"spare the memory) [also ${ENV_KDF}].",
)


def _store(home: Path | None, kdf: str = "moderate") -> Keystore:
    return Keystore.open(home, kdf=Argon2idCost.named(kdf))


def _read_passphrase(
    passphrase_file: Path | None, *, env: str, prompt: str, confirm: bool = False
) -> str:
    if passphrase_file is not None:
        return passphrase_file.read_text(encoding="utf-8").rstrip("\n")
    from_env = os.environ.get(env)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        fail(f"a passphrase is needed: set ${env}, use --passphrase-file, or run in a terminal")
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def _current_passphrase(store: Keystore, name: str, passphrase_file: Path | None) -> str | None:
    """The passphrase of identity ``name``, asked for only if it is encrypted."""
    if not store.is_encrypted(name):
        return None
    return _read_passphrase(passphrase_file, env=ENV_PASSPHRASE, prompt=f"Passphrase for {name!r}")


def unlock_identity(home: Path | None, name: str, passphrase_file: Path | None) -> Identity:
    """Load identity ``name`` from the keystore at ``home`` for a command that uses it."""
    store = _store(home)
    return store.identity(name, passphrase=_current_passphrase(store, name, passphrase_file))


def _new_passphrase(no_passphrase: bool, passphrase_file: Path | None, what: str) -> str | None:
    if no_passphrase:
        return None
    value = _read_passphrase(
        passphrase_file, env=ENV_PASSPHRASE, prompt=f"Passphrase for {what}", confirm=True
    )
    if not value:
        fail("an empty passphrase is not allowed; use --no-passphrase to store the key unencrypted")
    return value


def _expiry_warning(not_after: int, what: str) -> None:
    left = not_after - time.time()
    if left < 0:
        warn(f"{what} has expired")
    elif left < _SOON:
        # Rounded, not floored: a certificate signed for 11 days is seen
        # within seconds of its start, and must not say 10.
        days = round(left / 86_400)
        when = "less than a day" if not days else f"{days} day{'s' if days != 1 else ''}"
        warn(f"{what} expires in {when}")


def _ca_names(store: Keystore | None) -> dict[bytes, str]:
    """The names of the CAs ``store`` trusts, by public key."""
    return {} if store is None else {key: name for name, key in store.trust().cas().items()}


def _certificate_summary(certificate: Certificate, cas: dict[bytes, str]) -> dict[str, Any]:
    """``certificate.describe()`` and ``issuer_name``: the trusted CA's name, or None."""
    return {**certificate.describe(), "issuer_name": cas.get(certificate.issuer)}


def _certificate_text(summary: dict[str, Any]) -> str:
    groups = ", ".join(str(g) for g in summary["groups"]) or "(none)"
    issuer = summary["issuer"]
    if summary["issuer_name"] is not None:
        issuer = f"{summary['issuer_name']} ({issuer})"
    return "\n".join(
        [
            f"  name:       {summary['name']}",
            f"  groups:     {groups}",
            f"  serial:     {summary['serial']}",
            f"  key:        {summary['subject_key']}",
            f"  issuer:     {issuer}",
            f"  valid:      {summary['not_before']} to {summary['not_after']}",
        ]
    )


# -- keys ------------------------------------------------------------------------------


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
    store = _store(home, kdf)
    identity = store.new_identity(
        name, passphrase=_new_passphrase(no_passphrase, passphrase_file, f"identity {name!r}")
    )
    data = {
        "name": name,
        "public_key": encode_key(identity.public_key),
        "fingerprint": identity.fingerprint,
    }
    return Result(data, f"created {name}: {data['public_key']} ({identity.fingerprint})")


@keys.command("list", epilog=EXIT_CODES)
@home_option
@prints_result
def keys_list(home: Path | None) -> Result:
    """List identities (a JSON array of them, with --json).

    Exits 1, after listing the others, if a key file is damaged.
    """
    store = _store(home)
    cas = _ca_names(store)
    rows: list[dict[str, Any]] = []
    damaged: list[str] = []
    for name in store.identity_names():
        try:
            certificate = store.certificate(name)
            rows.append(
                {
                    "name": name,
                    "fingerprint": fingerprint(store.public_key(name)),
                    "encrypted": store.is_encrypted(name),
                    "certificate": None
                    if certificate is None
                    else _certificate_summary(certificate, cas),
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
    """Show identity NAME: public key, fingerprint, certificate."""
    store = _store(home)
    public = store.public_key(name)
    certificate = store.certificate(name)
    summary = None if certificate is None else _certificate_summary(certificate, _ca_names(store))
    data = {
        "name": name,
        "public_key": encode_key(public),
        "fingerprint": fingerprint(public),
        "encrypted": store.is_encrypted(name),
        "certificate": summary,
    }
    text = [
        f"identity {name}",
        f"  public key: {data['public_key']}",
        f"  fingerprint: {data['fingerprint']}",
        f"  encrypted:  {'yes' if data['encrypted'] else 'no'}",
    ]
    if certificate is None or summary is None:
        text.append("  certificate: none")
    else:
        text += ["certificate", _certificate_text(summary)]
        _expiry_warning(certificate.not_after, f"the certificate of {name!r}")
    return Result(data, "\n".join(text))


@keys.command("export", epilog=EXIT_CODES)
@click.argument("name")
@home_option
@prints_result
def keys_export(name: str, home: Path | None) -> Result:
    """Print identity NAME's public key (never the private key)."""
    public = _store(home).public_key(name)
    data = {"name": name, "public_key": encode_key(public), "fingerprint": fingerprint(public)}
    return Result(data, encode_key(public))


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
    store = _store(home, kdf)
    old = _current_passphrase(store, name, passphrase_file)
    new = None
    if not no_passphrase:
        new = _read_passphrase(
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
    store = _store(home, kdf)
    passphrase = _current_passphrase(store, name, passphrase_file)
    old = fingerprint(store.public_key(name))
    identity = store.rotate_identity(name, passphrase=passphrase)
    data = {
        "name": name,
        "retired": old,
        "public_key": encode_key(identity.public_key),
        "fingerprint": identity.fingerprint,
    }
    return Result(
        data,
        f"rotated {name}: new key {data['public_key']} ({identity.fingerprint}); {old} retired. "
        "Peers that pinned the old key, and its certificate, need the new one.",
    )


@keys.command("delete", epilog=EXIT_CODES)
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@home_option
@prints_result
def keys_delete(name: str, yes: bool, home: Path | None) -> Result:
    """Delete identity NAME and its certificate."""
    store = _store(home)
    deleted = fingerprint(store.public_key(name))  # fail on an unknown name before asking
    if not yes:
        if not sys.stdin.isatty():
            fail("deleting a key needs --yes when not run in a terminal")
        click.confirm(f"Delete identity {name!r}? This cannot be undone", abort=True)
    store.delete_identity(name)
    return Result({"name": name, "fingerprint": deleted}, f"deleted {name}")


# -- peers -----------------------------------------------------------------------------


@click.group(epilog=EXIT_CODES)
def peers() -> None:
    """Pinned peers: keys this process trusts by name, like known_hosts."""


def _peer_data(name: str, public_key: bytes, groups: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "public_key": encode_key(public_key),
        "fingerprint": fingerprint(public_key),
        "groups": groups,
    }


@peers.command("add", epilog=EXIT_CODES)
@click.argument("name")
@click.argument("public_key")
@click.option("--group", "groups", multiple=True, help="A group the peer belongs to (repeatable).")
@home_option
@prints_result
def peers_add(name: str, public_key: str, groups: tuple[str, ...], home: Path | None) -> Result:
    """Pin PUBLIC_KEY (base64, as 'keys export' prints it) under NAME."""
    key = decode_key(public_key)
    _store(home).add_peer(name, key, groups)
    return Result(_peer_data(name, key, sorted(set(groups))), f"pinned {name}: {fingerprint(key)}")


@peers.command("list", epilog=EXIT_CODES)
@home_option
@prints_result
def peers_list(home: Path | None) -> Result:
    """List pinned peers (a JSON array of them, with --json)."""
    rows = [
        _peer_data(peer.name or "", peer.public_key, sorted(peer.groups))
        for peer in _store(home).trust()
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
    _store(home).remove_peer(name)
    return Result({"name": name}, f"removed {name}")


# -- ca --------------------------------------------------------------------------------


@click.group(epilog=EXIT_CODES)
def ca() -> None:
    """A small certificate authority: issue, inspect, trust and revoke certificates."""


@ca.command("init", epilog=EXIT_CODES)
@click.argument("name")
@click.option("--valid", default="10y", show_default=True, help="How long the CA is valid.")
@click.option("--no-passphrase", is_flag=True, help="Store the CA key unencrypted.")
@passphrase_file_option
@kdf_option
@home_option
@prints_result
def ca_init(
    *,
    name: str,
    valid: str,
    no_passphrase: bool,
    passphrase_file: Path | None,
    kdf: str,
    home: Path | None,
) -> Result:
    """Create CA NAME (trusted by this keystore) and print its public key."""
    store = _store(home, kdf)
    public = store.init_ca(
        name,
        passphrase=_new_passphrase(no_passphrase, passphrase_file, f"CA {name!r}"),
        valid_seconds=parse_duration(valid),
    )
    data = {"name": name, "public_key": encode_key(public), "fingerprint": fingerprint(public)}
    return Result(
        data,
        f"created CA {name}: {data['public_key']}\n"
        f"other keystores trust it with: securesess ca trust {data['public_key']} --name {name} "
        f"--not-after {iso_time(store.ca_info(name)['not_after'])}",
    )


@ca.command("sign", epilog=EXIT_CODES)
@click.option("--ca", "ca_name", required=True, help="The CA that signs.")
@click.option("--name", "subject", required=True, help="The name the certificate binds.")
@click.option("--group", "groups", multiple=True, help="A group (repeatable).")
@click.option("--valid", default="90d", show_default=True, help="How long it is valid.")
@click.option("--identity", help="Certify this keystore's identity (and store it with it).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write it here."
)
@click.argument("public_key", required=False)
@passphrase_file_option
@home_option
@prints_result
def ca_sign(
    *,
    ca_name: str,
    subject: str,
    groups: tuple[str, ...],
    valid: str,
    identity: str | None,
    output: Path | None,
    public_key: str | None,
    passphrase_file: Path | None,
    home: Path | None,
) -> Result:
    """Issue a certificate for PUBLIC_KEY, or for --identity NAME.

    Without --identity or -o, prints the certificate itself (its armoured
    text; under "certificate" with --json).
    """
    if (public_key is None) == (identity is None):
        fail("give either a PUBLIC_KEY or --identity NAME")
    store = _store(home)
    key = store.public_key(identity) if identity is not None else decode_key(public_key or "")
    info = store.ca_info(ca_name)
    _expiry_warning(info["not_after"], f"CA {ca_name!r}")
    passphrase = (
        _read_passphrase(
            passphrase_file, env=ENV_PASSPHRASE, prompt=f"Passphrase for CA {ca_name!r}"
        )
        if store.ca_is_encrypted(ca_name)
        else None
    )
    certificate = store.sign(
        ca_name,
        passphrase=passphrase,
        public_key=key,
        name=subject,
        groups=groups,
        valid_seconds=parse_duration(valid),
    )
    armored = armor_certificate(certificate).decode("ascii")
    lines = []
    if identity is not None:
        store.store_certificate(identity, certificate)
        lines.append(f"certified identity {identity} as {subject!r} (serial {certificate.serial})")
    if output is not None:
        output.write_text(armored, encoding="ascii")
        lines.append(f"wrote {output}")
    elif identity is None:
        lines.append(armored)
    data = {
        **_certificate_summary(certificate, _ca_names(store)),
        "identity": identity,
        "output": None if output is None else str(output),
        "certificate": armored,
    }
    return Result(data, "\n".join(lines))


@ca.command("print", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@home_option
@prints_result
def ca_print(file: Path, home: Path | None) -> Result:
    """Print the contents of certificate FILE; name its issuer if the keystore trusts it."""
    certificate = read_certificate_file(file)
    # Only to name the issuer: a keystore that does not exist is not made.
    existing = (home or default_home()).is_dir()
    summary = _certificate_summary(certificate, _ca_names(_store(home) if existing else None))
    _expiry_warning(certificate.not_after, f"certificate {file}")
    return Result(summary, "certificate\n" + _certificate_text(summary))


@ca.command("verify", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@home_option
@prints_result
def ca_verify(file: Path, home: Path | None) -> Result:
    """Check certificate FILE against this keystore's CAs and revocations.

    Exits 1 if it is not valid (with --json, after printing why).
    """
    certificate = read_certificate_file(file)
    store = _store(home)
    issuer = _ca_names(store).get(certificate.issuer)
    try:
        peer = store.trust().verify_certificate(certificate)
    except UntrustedPeerError as exc:
        data = {"valid": False, "reason": str(exc), "issuer_name": issuer}
        raise Refused(f"not valid: {exc}", data) from None
    _expiry_warning(certificate.not_after, f"certificate {file}")
    groups = sorted(peer.groups)
    data = {"valid": True, "name": peer.name, "groups": groups, "issuer_name": issuer}
    by = "" if issuer is None else f", by CA {issuer}"
    return Result(data, f"valid: {peer.name} ({', '.join(groups) or 'no groups'}){by}")


@ca.command("trust", epilog=EXIT_CODES)
@click.argument("file_or_key")
@click.option("--name", help="What to call the CA here [default: derived from its key].")
@click.option(
    "--not-after",
    metavar="DATE",
    help="When the CA expires, as 'ca init' printed it: nothing it signed is accepted after "
    "[default: trusted until removed or revoked].",
)
@home_option
@prints_result
def ca_trust(
    file_or_key: str, name: str | None, not_after: str | None, home: Path | None
) -> Result:
    """Trust the CA whose public key is FILE_OR_KEY (base64, or a file holding it)."""
    path = Path(file_or_key)
    text = path.read_text(encoding="utf-8").strip() if path.is_file() else file_or_key
    key = decode_key(text.split()[0] if text else text, "CA public key")
    ca_name = name or "ca-" + re.sub(r"[^A-Za-z0-9]", "", fingerprint(key)[7:])[:12]
    expiry = None if not_after is None else parse_time(not_after)
    _store(home).trust_ca(ca_name, key, not_after=expiry)
    data = {
        "name": ca_name,
        "public_key": encode_key(key),
        "fingerprint": fingerprint(key),
        "not_after": None if expiry is None else iso_time(expiry),
    }
    until = "" if expiry is None else f", until {iso_time(expiry)}"
    return Result(data, f"trusting CA {ca_name}: {fingerprint(key)}{until}")


def _issued_here(store: Keystore, ca_name: str, ca_key: bytes) -> int | None:
    """How many serials CA ``ca_name`` has issued from this keystore (1 to that
    number); None when its key is not here, where it may sign elsewhere."""
    if ca_name not in store.ca_names():
        return None
    info = store.ca_info(ca_name)
    return info["next_serial"] - 1 if info["public_key"] == ca_key else None


@ca.command("revoke", epilog=EXIT_CODES)
@click.argument("what")
@click.option("--ca", "ca_name", help="The trusted CA whose SERIAL this is.")
@home_option
@prints_result
def ca_revoke(what: str, ca_name: str | None, home: Path | None) -> Result:
    """Revoke WHAT: a public key (base64), a certificate SERIAL (with --ca), or a CA's name.

    A serial that the CA, kept in this keystore, never issued is revoked
    all the same (a copy of its key may have issued it elsewhere), with a
    warning.
    """
    store = _store(home)
    cas = store.trust().cas()
    if what.isdigit() and not what.isascii():
        fail(f"{what!r}: write a serial with the digits 0 to 9")
    if what.isdigit():
        if ca_name is None:
            if len(cas) != 1:
                fail("which CA issued that serial? name it with --ca")
            ca_name = next(iter(cas))
        if ca_name not in cas:
            fail(f"no trusted CA is named {ca_name!r}")
        serial = int(what)
        store.revoke_serial(cas[ca_name], serial)
        issued = _issued_here(store, ca_name, cas[ca_name])
        known = None if issued is None else 1 <= serial <= issued
        if known is False and issued is not None:
            so_far = {0: "no serial yet", 1: "serial 1"}.get(issued, f"serials 1 to {issued}")
            warn(
                f"serial {serial} was never issued by CA {ca_name} (it has issued {so_far});"
                " revoked anyway"
            )
        data = {"revoked": "serial", "serial": serial, "ca": ca_name, "issued_here": known}
        return Result(data, f"revoked serial {serial} of CA {ca_name}")
    if what in cas:
        store.revoke_key(cas[what])
        data = {"revoked": "ca", "ca": what, "fingerprint": fingerprint(cas[what])}
        return Result(data, f"revoked CA {what}: every certificate it issued is now refused")
    key = decode_key(what)
    store.revoke_key(key)
    return Result(
        {"revoked": "key", "fingerprint": fingerprint(key)}, f"revoked key {fingerprint(key)}"
    )
