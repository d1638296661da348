"""A keystore's identities: key files sealed at rest, and their certificates.

An identity's key file is the armoured private key, sealed under its
passphrase (:mod:`keystore.sealing`) with the name and public key as
headers, so the public key reads without the passphrase, and is checked
against the private key when the file is opened.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final, final

from keystore._files import check_private, ensure_directory, write_atomically
from keystore.armor import Armored, dearmor
from keystore.certificate import Certificate
from keystore.certificate_file import armor_certificate, decode_certificate
from keystore.encoding import decode_key, encode_key, fingerprint
from keystore.errors import (
    CertificateError,
    DuplicateNameError,
    KeystoreCorruptError,
    UnknownNameError,
)
from keystore.identity import Identity
from keystore.layout import Layout, Passphrase, passphrase_bytes
from keystore.sealing import Argon2idCost, is_encrypted, open_secret, seal_secret

__all__ = ["Identities"]

_IDENTITY_LABEL: Final = "IDENTITY KEY"


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

    def _save(self, path: Path, identity: Identity, passphrase: bytes | None) -> None:
        headers = {"Name": identity.name or "", "Public-Key": encode_key(identity.public_key)}
        sealed = seal_secret(
            _IDENTITY_LABEL, identity.private_bytes(), headers, passphrase, self._kdf
        )
        write_atomically(path, sealed)

    def names(self) -> list[str]:
        return self._layout.key_names("identities")

    def _armored(self, name: str) -> tuple[Path, Armored]:
        path = self._layout.identity_file(name)
        data = self._layout.read(path, f"identity named {name!r} (see 'securesess keys list')")
        return path, dearmor(data, _IDENTITY_LABEL, str(path))

    def public_key(self, name: str) -> bytes:
        path, armored = self._armored(name)
        return self._layout.entry(str(path), name, armored.headers.get("Public-Key"), decode_key)

    def is_encrypted(self, name: str) -> bool:
        return is_encrypted(self._armored(name)[1])

    def load(self, name: str, *, passphrase: Passphrase = None) -> Identity:
        """See :meth:`keystore.Keystore.identity`."""
        path, armored = self._armored(name)
        check_private(path)
        secret = open_secret(armored, passphrase_bytes(passphrase), str(path))
        try:
            identity = Identity.from_private_bytes(secret, name)
        except ValueError:
            raise KeystoreCorruptError(f"{path} is damaged: the key is not 32 bytes") from None
        if armored.headers.get("Public-Key") != encode_key(identity.public_key):
            raise KeystoreCorruptError(f"{path} was altered: its public key does not match")
        certificate = self.certificate(name)
        if certificate is None:
            return identity
        try:
            return identity.with_certificate(certificate)
        except ValueError as exc:
            cert_path = self._layout.certificate_file(name)
            raise KeystoreCorruptError(f"{cert_path} does not belong to {name!r}: {exc}") from None

    def certificate(self, name: str) -> Certificate | None:
        path = self._layout.certificate_file(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return decode_certificate(data, str(path))

    def change_passphrase(self, name: str, *, old: Passphrase, new: Passphrase) -> None:
        with self._layout.writing():
            identity = self.load(name, passphrase=old)
            self._save(self._layout.identity_file(name), identity, passphrase_bytes(new))

    def rotate(self, name: str, *, passphrase: Passphrase) -> Identity:
        """See :meth:`keystore.Keystore.rotate_identity`."""
        with self._layout.writing():
            self.load(name, passphrase=passphrase)  # prove we may replace it
            path = self._layout.identity_file(name)
            retired = path.parent / "retired"
            ensure_directory(retired)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            write_atomically(retired / f"{name}-{stamp}.key", path.read_bytes())
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
            write_atomically(self._layout.certificate_file(name), armor_certificate(certificate))
