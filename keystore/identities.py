"""A keystore's identities: key files sealed at rest, and their certificates.

An identity's key file is its armoured private keys, sealed under its
passphrase (:mod:`keystore.sealing`) with the name and both public keys as
headers, so the public keys read without the passphrase, and are checked
against the private keys when the file is opened::

    Name: api
    Public-Key: <base64 X25519 public key>
    Signing-Key: <base64 Ed25519 public key>
    Encryption: ...

The sealed body is the 32-byte X25519 private key followed by the 32-byte
Ed25519 private key (its seed). Files written before identities had signing
keys have no ``Signing-Key`` header and a body of the X25519 key alone. They
still open, and are upgraded where they lie: loading one gives it a signing
key and writes it back (under the lock, at the Argon2id cost it records),
since an identity without one cannot sign what it sends. Where the keystore
cannot be written, loading it is an :class:`UpgradeRequiredError` rather than
an identity that quietly cannot sign.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final, final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore._files import check_private, ensure_directory, write_atomically
from keystore.armor import Armored, dearmor
from keystore.certificate import Certificate
from keystore.certificate_file import armor_certificate, decode_certificate
from keystore.encoding import decode_key, encode_key, fingerprint
from keystore.errors import (
    CertificateError,
    DuplicateNameError,
    KeystoreCorruptError,
    KeystoreWriteError,
    UnknownNameError,
    UpgradeRequiredError,
)
from keystore.identity import Identity
from keystore.layout import Layout, Passphrase, passphrase_bytes
from keystore.sealing import Argon2idCost, is_encrypted, open_secret, seal_secret, sealed_cost

__all__ = ["Identities"]

_IDENTITY_LABEL: Final = "IDENTITY KEY"
_SIGNING_HEADER: Final = "Signing-Key"
_KEY_LEN: Final = 32


def _with_new_signing_key(identity: Identity) -> Identity:
    """``identity``, of the earlier format, with the signing key it lacked."""
    return Identity(identity.keypair, identity.name, signing_key=Ed25519PrivateKey.generate())


@final
class Identities:
    """The identities kept in a keystore; ``kdf`` is the cost of the keys it seals."""

    __slots__ = ("_kdf", "_layout")

    def __init__(self, layout: Layout, kdf: Argon2idCost) -> None:
        self._layout: Final = layout
        self._kdf: Final = kdf

    def new(self, name: str, *, passphrase: Passphrase) -> Identity:
        """See :meth:`keystore.Keystore.new_identity`."""
        path = self._layout.identity_file(name)
        identity = Identity.generate(name)
        with self._layout.writing():
            ensure_directory(path.parent)
            if path.exists():
                raise DuplicateNameError(
                    f"an identity named {name!r} exists; rotate it, or delete it first"
                )
            self._save(path, identity, passphrase_bytes(passphrase))
        return identity

    def _save(
        self,
        path: Path,
        identity: Identity,
        passphrase: bytes | None,
        cost: Argon2idCost | None = None,
    ) -> None:
        """Seal ``identity`` (which has a signing key) into ``path``, at
        ``cost``, else this keystore's."""
        signing_key = identity.signing_key
        signing_public = identity.signing_public_key
        if signing_key is None or signing_public is None:
            raise ValueError("an identity is saved with its signing key")
        headers = {
            "Name": identity.name or "",
            "Public-Key": encode_key(identity.public_key),
            _SIGNING_HEADER: encode_key(signing_public),
        }
        secret = identity.private_bytes() + signing_key.private_bytes_raw()
        sealed = seal_secret(_IDENTITY_LABEL, secret, headers, passphrase, cost or self._kdf)
        write_atomically(path, sealed)

    def names(self) -> list[str]:
        return self._layout.key_names("identities")

    def _armored(self, name: str) -> tuple[Path, bytes, Armored]:
        path = self._layout.identity_file(name)
        data = self._layout.read(path, f"identity named {name!r} (see 'securesess keys list')")
        return path, data, dearmor(data, _IDENTITY_LABEL, str(path))

    def public_key(self, name: str) -> bytes:
        path, _, armored = self._armored(name)
        return self._layout.entry(str(path), name, armored.headers.get("Public-Key"), decode_key)

    def signing_public_key(self, name: str) -> bytes | None:
        """See :meth:`keystore.Keystore.signing_public_key`."""
        path, _, armored = self._armored(name)
        text = armored.headers.get(_SIGNING_HEADER)
        if text is None:
            return None
        return self._layout.entry(str(path), name, text, lambda t: decode_key(t, "signing key"))

    def is_encrypted(self, name: str) -> bool:
        return is_encrypted(self._armored(name)[2])

    def _open(self, name: str, path: Path, armored: Armored, passphrase: Passphrase) -> Identity:
        """The identity sealed in ``armored``, without its certificate; one
        in the earlier format has no signing key."""
        check_private(path)
        secret = open_secret(armored, passphrase_bytes(passphrase), str(path))
        signing_header = armored.headers.get(_SIGNING_HEADER)
        # The header says which format the body is. It cannot be added or
        # removed unnoticed: in an encrypted file it is sealed with the body,
        # and in either the body's length must then agree with it.
        length = _KEY_LEN if signing_header is None else 2 * _KEY_LEN
        if len(secret) != length:
            raise KeystoreCorruptError(
                f"{path} is damaged: its private keys are not {length} bytes"
            )
        identity = Identity.from_private_bytes(
            secret[:_KEY_LEN], name, signing_key=secret[_KEY_LEN:] or None
        )
        # Checked whether or not the file is encrypted: an unencrypted file
        # has no associated data to catch an edited header.
        if armored.headers.get("Public-Key") != encode_key(identity.public_key):
            raise KeystoreCorruptError(f"{path} was altered: its public key does not match")
        signing_public = identity.signing_public_key
        if signing_public is not None and signing_header != encode_key(signing_public):
            raise KeystoreCorruptError(f"{path} was altered: its signing key does not match")
        return identity

    def load(self, name: str, *, passphrase: Passphrase = None) -> Identity:
        """See :meth:`keystore.Keystore.identity`."""
        path, data, armored = self._armored(name)
        identity = self._open(name, path, armored, passphrase)
        certificate = self.certificate(name)
        # Before an upgrade writes anything: a certificate that does not go
        # with the file leaves it as it is.
        certified = self._certified(name, identity, certificate)
        if identity.signing_key is None:
            upgraded = self._upgrade_in_place(name, data, identity, passphrase)
            certified = self._certified(name, upgraded, certificate)
        return certified

    def _certified(
        self, name: str, identity: Identity, certificate: Certificate | None
    ) -> Identity:
        if certificate is None:
            return identity
        try:
            return identity.with_certificate(certificate)
        except ValueError as exc:
            cert_path = self._layout.certificate_file(name)
            raise KeystoreCorruptError(f"{cert_path} does not belong to {name!r}: {exc}") from None

    def _upgrade_in_place(
        self, name: str, seen: bytes, identity: Identity, passphrase: Passphrase
    ) -> Identity:
        """Give ``identity``, read in the earlier format from the file ``seen``,
        a signing key, and write it back before handing it out."""
        path = self._layout.identity_file(name)
        try:
            with self._layout.writing():
                path, data, armored = self._armored(name)
                if data != seen:
                    # Another process rewrote the file since it was read, most
                    # likely upgrading it: its signing key is the one to use.
                    identity = self._open(name, path, armored, passphrase)
                    if identity.signing_key is not None:
                        return identity
                return self._give_signing_key(path, armored, identity, passphrase)
        except KeystoreWriteError as exc:
            raise UpgradeRequiredError(
                f"{path} has no signing key (an earlier release wrote it) and cannot be "
                f"upgraded here ({exc}): run 'securesess keys upgrade {name}' where the "
                "keystore can be written"
            ) from None

    def _give_signing_key(
        self, path: Path, armored: Armored, identity: Identity, passphrase: Passphrase
    ) -> Identity:
        """Reseal ``identity`` with a new signing key as ``armored`` was sealed:
        encrypted at the cost it records, or not encrypted."""
        upgraded = _with_new_signing_key(identity)
        if is_encrypted(armored):
            cost = sealed_cost(armored, str(path))
            self._save(path, upgraded, passphrase_bytes(passphrase), cost)
        else:
            self._save(path, upgraded, None)
        return upgraded

    def upgrade(self, name: str, *, passphrase: Passphrase) -> bool:
        """See :meth:`keystore.Keystore.upgrade_identity`."""
        with self._layout.writing():
            path, _, armored = self._armored(name)
            if _SIGNING_HEADER in armored.headers:
                return False
            identity = self._open(name, path, armored, passphrase)
            self._certified(name, identity, self.certificate(name))
            self._give_signing_key(path, armored, identity, passphrase)
            return True

    def certificate(self, name: str) -> Certificate | None:
        path = self._layout.certificate_file(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return decode_certificate(data, str(path))

    def change_passphrase(self, name: str, *, old: Passphrase, new: Passphrase) -> None:
        with self._layout.writing():
            path, _, armored = self._armored(name)
            identity = self._open(name, path, armored, old)
            if identity.signing_key is None:
                # Resealing a file of the earlier format upgrades it as well.
                identity = _with_new_signing_key(identity)
            self._save(path, identity, passphrase_bytes(new))

    def rotate(self, name: str, *, passphrase: Passphrase) -> Identity:
        """See :meth:`keystore.Keystore.rotate_identity`."""
        with self._layout.writing():
            path, data, armored = self._armored(name)
            self._open(name, path, armored, passphrase)  # prove we may replace it
            retired = path.parent / "retired"
            ensure_directory(retired)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            # Retired as it was, in whichever format: it is kept, not used.
            write_atomically(retired / f"{name}-{stamp}.key", data)
            certificate = self._layout.certificate_file(name)
            if certificate.exists():
                write_atomically(retired / f"{name}-{stamp}.crt", certificate.read_bytes())
                certificate.unlink()
            identity = Identity.generate(name)
            self._save(path, identity, passphrase_bytes(passphrase))
        return identity

    def delete(self, name: str) -> None:
        with self._layout.writing():
            path = self._layout.identity_file(name)
            if not path.exists():
                raise UnknownNameError(f"no identity named {name!r}")
            self._layout.certificate_file(name).unlink(missing_ok=True)
            path.unlink()

    def store_certificate(self, name: str, certificate: Certificate) -> None:
        with self._layout.writing():
            if certificate.subject_key != self.public_key(name):
                raise CertificateError(
                    f"this certificate is for key {fingerprint(certificate.subject_key)}, "
                    f"not for identity {name!r}"
                )
            signing = certificate.signing_key
            if signing is not None and signing != self.signing_public_key(name):
                raise CertificateError(
                    f"this certificate binds signing key {fingerprint(signing)}, which is not "
                    f"identity {name!r}'s"
                )
            write_atomically(self._layout.certificate_file(name), armor_certificate(certificate))
