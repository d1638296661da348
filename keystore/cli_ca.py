"""``securesess ca``: a small CA that issues, inspects, trusts and revokes certificates."""

from __future__ import annotations

import re
from pathlib import Path

import click

from keystore.certificate import iso_time
from keystore.certificate_file import armor_certificate, read_certificate_file
from keystore.cli_certificates import (
    ca_names,
    certificate_summary,
    certificate_text,
    expiry_warning,
)
from keystore.cli_input import (
    ENV_PASSPHRASE,
    home_option,
    kdf_option,
    new_passphrase,
    open_store,
    parse_duration,
    parse_time,
    passphrase_file_option,
    read_passphrase,
)
from keystore.cli_output import EXIT_CODES, Refused, Result, fail, prints_result, warn
from keystore.encoding import decode_key, decode_public_token, encode_key, fingerprint
from keystore.errors import UntrustedPeerError
from keystore.layout import default_home
from keystore.store import Keystore

__all__ = ["ca"]


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
    store = open_store(home, kdf)
    public = store.init_ca(
        name,
        passphrase=new_passphrase(no_passphrase, passphrase_file, f"CA {name!r}"),
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

    PUBLIC_KEY is what 'keys export' prints: with the subject's signing key
    (after ':') the certificate is version 2 and binds both keys; with the
    X25519 key alone it is version 1, which earlier releases also accept.
    Without --identity or -o, prints the certificate itself (its armoured
    text; under "certificate" with --json).
    """
    if (public_key is None) == (identity is None):
        fail("give either a PUBLIC_KEY or --identity NAME")
    store = open_store(home)
    if identity is not None:
        key, signing = store.public_key(identity), store.signing_public_key(identity)
        if signing is None:
            warn(
                f"identity {identity!r} has no signing key yet: this certificate (version 1) "
                f"binds its X25519 key alone; run 'securesess keys upgrade {identity}' and "
                "sign again to bind both"
            )
    else:
        key, signing = decode_public_token(public_key or "")
    info = store.ca_info(ca_name)
    expiry_warning(info["not_after"], f"CA {ca_name!r}")
    passphrase = (
        read_passphrase(
            passphrase_file, env=ENV_PASSPHRASE, prompt=f"Passphrase for CA {ca_name!r}"
        )
        if store.ca_is_encrypted(ca_name)
        else None
    )
    certificate = store.sign(
        ca_name,
        passphrase=passphrase,
        public_key=key,
        signing_key=signing,
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
        **certificate_summary(certificate, ca_names(store)),
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
    summary = certificate_summary(certificate, ca_names(open_store(home) if existing else None))
    expiry_warning(certificate.not_after, f"certificate {file}")
    return Result(summary, "certificate\n" + certificate_text(summary))


@ca.command("verify", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@home_option
@prints_result
def ca_verify(file: Path, home: Path | None) -> Result:
    """Check certificate FILE against this keystore's CAs and revocations.

    Exits 1 if it is not valid (with --json, after printing why).
    """
    certificate = read_certificate_file(file)
    store = open_store(home)
    issuer = ca_names(store).get(certificate.issuer)
    try:
        peer = store.trust().verify_certificate(certificate)
    except UntrustedPeerError as exc:
        data = {"valid": False, "reason": str(exc), "issuer_name": issuer}
        raise Refused(f"not valid: {exc}", data) from None
    expiry_warning(certificate.not_after, f"certificate {file}")
    groups = sorted(peer.groups)
    data = {
        "valid": True,
        "name": peer.name,
        "groups": groups,
        "issuer_name": issuer,
        "signing_fingerprint": None if peer.signing_key is None else fingerprint(peer.signing_key),
    }
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
    open_store(home).trust_ca(ca_name, key, not_after=expiry)
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
    """Revoke WHAT: a public key (base64, or as 'keys export' prints it: the
    X25519 key is what is revoked), a certificate SERIAL (with --ca), or a CA's name.

    A serial that the CA, kept in this keystore, never issued is revoked
    all the same (a copy of its key may have issued it elsewhere), with a
    warning.
    """
    store = open_store(home)
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
    key, _ = decode_public_token(what)
    store.revoke_key(key)
    return Result(
        {"revoked": "key", "fingerprint": fingerprint(key)}, f"revoked key {fingerprint(key)}"
    )
