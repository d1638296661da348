"""The keystore: a directory of identities, pins, CAs and revocations.

:class:`Keystore` is the face of it, and every CLI verb is one of its
methods; each part of the directory is kept by a collaborator of its own:

- :mod:`keystore.layout`: where each file is, the writers' lock, and reading
  the files so that a damaged or insecure one is a typed error (atomic
  writes and permission checks are :mod:`keystore._files`);
- :mod:`keystore.identities`: identity key files and their certificates;
- :mod:`keystore.authorities`: this keystore's own CAs, and what they sign;
- :mod:`keystore.trust_files`: pinned peers and trusted CAs, and the
  :class:`~keystore.trust.TrustStore` loaded from them;
- :mod:`keystore.revocations`: the revocation list, which the trust files
  require once written.

Every operation that changes a file takes the lock, reads the current state,
and writes each file atomically, so a crash or a concurrent call leaves every
file either as it was or as it should become.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, final

from keystore._files import ensure_directory
from keystore.authorities import Authorities
from keystore.certificate import Certificate
from keystore.certificate_file import armor_certificate, read_certificate_file
from keystore.errors import KeystoreError
from keystore.identities import Identities
from keystore.identity import Identity
from keystore.layout import ENV_HOME, Layout, Passphrase, default_home
from keystore.revocations import Revocations
from keystore.sealing import Argon2idCost
from keystore.trust import TrustStore
from keystore.trust_files import TrustFiles

__all__ = ["ENV_HOME", "Keystore", "armor_certificate", "default_home", "read_certificate_file"]


@final
class Keystore:
    """A keystore directory. Every CLI verb is a method here first.

    Open one with :meth:`open`; nothing is cached between calls, so several
    processes can share a keystore safely. ``kdf`` is the Argon2id cost of
    the keys it encrypts from now on; a key file is always opened with the
    cost it records.
    """

    __slots__ = ("_authorities", "_identities", "_revocations", "_trust", "kdf", "path")

    def __init__(self, path: Path, *, kdf: Argon2idCost = Argon2idCost.MODERATE) -> None:
        if not isinstance(kdf, Argon2idCost):
            raise TypeError(f"kdf is an Argon2idCost, not {type(kdf).__name__}")
        self.path: Final = path
        self.kdf: Final = kdf
        layout = Layout(path)
        self._revocations: Final = Revocations(layout)
        self._trust: Final = TrustFiles(layout, self._revocations)
        self._authorities: Final = Authorities(layout, self._trust, kdf)
        self._identities: Final = Identities(layout, kdf)

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r})"

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        kdf: Argon2idCost = Argon2idCost.MODERATE,
    ) -> Keystore:
        """The keystore at ``path`` (default: :func:`default_home`), created if absent.

        ``kdf`` is how hard Argon2id works on the passphrases of keys this
        keystore object encrypts: ``Argon2idCost.MODERATE`` (3 passes over
        256 MiB) unless told. Pass ``Argon2idCost.INTERACTIVE`` only where a
        key need not resist offline guessing (tests) or the machine cannot
        spare 256 MiB.

        Raises:
            KeystoreError: the directory cannot be created or used.
        """
        home = Path(path) if path is not None else default_home()
        if home.exists() and not home.is_dir():
            raise KeystoreError(f"{home} exists but is not a directory")
        ensure_directory(home)
        return cls(home, kdf=kdf)

    # -- identities ---------------------------------------------------------------------

    def new_identity(self, name: str, *, passphrase: Passphrase) -> Identity:
        """Create identity ``name``; ``passphrase=None`` stores the key unencrypted.

        Raises:
            DuplicateNameError: an identity with that name exists.
        """
        return self._identities.new(name, passphrase=passphrase)

    def issue_identity(
        self,
        name: str,
        *,
        ca: str,
        ca_passphrase: Passphrase,
        passphrase: Passphrase,
        groups: Iterable[str] = (),
        valid_seconds: int,
    ) -> Identity:
        """Create identity ``name`` with a certificate from CA ``ca`` for the same name.

        What ``keys new`` then ``ca sign --identity`` do, in one call.
        """
        identity = self.new_identity(name, passphrase=passphrase)
        certificate = self.sign(
            ca,
            passphrase=ca_passphrase,
            public_key=identity.public_key,
            signing_key=identity.signing_public_key,
            name=name,
            groups=groups,
            valid_seconds=valid_seconds,
        )
        self.store_certificate(name, certificate)
        return identity.with_certificate(certificate)

    def identity_names(self) -> list[str]:
        return self._identities.names()

    def public_key(self, name: str) -> bytes:
        """An identity's public key, read without its passphrase."""
        return self._identities.public_key(name)

    def signing_public_key(self, name: str) -> bytes | None:
        """An identity's Ed25519 public key, read without its passphrase.

        None when its key file is in the format of an earlier release, which
        had no signing keys: :meth:`identity` or :meth:`upgrade_identity`
        gives it one.
        """
        return self._identities.signing_public_key(name)

    def is_encrypted(self, name: str) -> bool:
        return self._identities.is_encrypted(name)

    def identity(self, name: str, *, passphrase: Passphrase = None) -> Identity:
        """Load identity ``name`` (with its certificate, if it has one).

        The identity always has a signing key: a key file of an earlier
        release, which has none, is upgraded in place first (as
        :meth:`upgrade_identity` does).

        Raises:
            UnknownNameError: no such identity.
            WrongPassphraseError: the passphrase is missing or wrong.
            InsecurePermissionsError: other users can read the key file.
            KeystoreCorruptError: the file is damaged or altered.
            UpgradeRequiredError: the file is of an earlier release and the
                keystore cannot be written to upgrade it.
        """
        return self._identities.load(name, passphrase=passphrase)

    def upgrade_identity(self, name: str, *, passphrase: Passphrase = None) -> bool:
        """Give identity ``name`` a signing key if its key file, from an
        earlier release, has none; False if it already had one.

        The file is resealed as it was: encrypted at the Argon2id cost it
        records (the passphrase stays the same), or unencrypted. Its X25519
        key, and so its certificate and every pin of it, is unchanged.

        Raises:
            The errors of :meth:`identity`, and KeystoreError when the file
            cannot be written.
        """
        return self._identities.upgrade(name, passphrase=passphrase)

    def certificate(self, name: str) -> Certificate | None:
        """The certificate stored for identity ``name``, if any."""
        return self._identities.certificate(name)

    def change_passphrase(self, name: str, *, old: Passphrase, new: Passphrase) -> None:
        """Re-encrypt identity ``name`` under ``new`` (None: store it unencrypted)."""
        self._identities.change_passphrase(name, old=old, new=new)

    def rotate_identity(self, name: str, *, passphrase: Passphrase) -> Identity:
        """Give ``name`` a new key; the old key file moves to ``identities/retired/``.

        The old certificate is retired with it: the new key needs a new one.
        """
        return self._identities.rotate(name, passphrase=passphrase)

    def delete_identity(self, name: str) -> None:
        self._identities.delete(name)

    def store_certificate(self, name: str, certificate: Certificate) -> None:
        """Save ``certificate`` as identity ``name``'s; it must be for that key."""
        self._identities.store_certificate(name, certificate)

    # -- pinned peers -------------------------------------------------------------------

    def add_peer(
        self,
        name: str,
        public_key: bytes,
        groups: Iterable[str] = (),
        *,
        signing_key: bytes | None = None,
    ) -> None:
        """Pin ``public_key`` as ``name``; ``signing_key`` is the peer's Ed25519
        public key, which the pin then vouches for (see :class:`keystore.Peer`).

        Raises:
            DuplicatePeerError: the name, the key or the signing key is already pinned.
        """
        self._trust.add_peer(name, public_key, groups, signing_key=signing_key)

    def remove_peer(self, name: str) -> None:
        self._trust.remove_peer(name)

    # -- certificate authorities ----------------------------------------------------------

    def init_ca(self, name: str, *, passphrase: Passphrase, valid_seconds: int) -> bytes:
        """Create CA ``name`` (an Ed25519 key), trust it here, return its public key.

        The CA is valid from a minute ago (as the certificates it signs are,
        for clocks that differ) for ``valid_seconds``; this keystore trusts
        it for that window only.
        """
        return self._authorities.init(name, passphrase=passphrase, valid_seconds=valid_seconds)

    def ca_is_encrypted(self, name: str) -> bool:
        return self._authorities.is_encrypted(name)

    def ca_names(self) -> list[str]:
        return self._authorities.names()

    def ca_info(self, name: str) -> dict[str, Any]:
        return self._authorities.info(name)

    def sign(
        self,
        ca: str,
        *,
        passphrase: Passphrase,
        public_key: bytes,
        signing_key: bytes | None = None,
        name: str,
        groups: Iterable[str] = (),
        valid_seconds: int,
    ) -> Certificate:
        """Issue a certificate from CA ``ca`` for ``public_key`` as ``name``:
        version 2, binding the subject's Ed25519 ``signing_key`` too, when it
        is given; version 1 otherwise."""
        return self._authorities.sign(
            ca,
            passphrase=passphrase,
            public_key=public_key,
            signing_key=signing_key,
            name=name,
            groups=groups,
            valid_seconds=valid_seconds,
        )

    def trust_ca(
        self,
        name: str,
        public_key: bytes,
        *,
        not_before: int | None = None,
        not_after: int | None = None,
    ) -> None:
        """Trust CA ``public_key`` as ``name``, within its own validity window.

        ``not_after`` (Unix seconds) is when the CA expires, as ``ca init``
        printed it: after it, nothing the CA signed is accepted, even if its
        key is stolen. Without it the CA is trusted until it is removed or
        revoked.

        Raises:
            DuplicatePeerError: the name or the key is already trusted.
            ValueError: the window runs backwards or has already ended.
        """
        self._trust.trust_ca(name, public_key, not_before=not_before, not_after=not_after)

    # -- revocation ---------------------------------------------------------------------

    def revoke_key(self, public_key: bytes) -> None:
        self._revocations.revoke_key(public_key)

    def revoke_serial(self, ca_key: bytes, serial: int) -> None:
        """Revoke the certificate ``serial`` of the CA ``ca_key``.

        Raises:
            ValueError: ``serial`` is not a 64-bit unsigned integer. It is
                refused before anything is written: ``trust()`` refuses a
                revocation list holding one, so it would stop every later
                reload and revocation.
        """
        self._revocations.revoke_serial(ca_key, serial)

    # -- the trust store ------------------------------------------------------------------

    def trust(self) -> TrustStore:
        """A TrustStore of this keystore's pinned peers, trusted CAs and revocations.

        Raises:
            RevocationListMissingError: revoked.toml is gone, though
                peers.toml or cas.toml says this keystore keeps one.
            KeystoreCorruptError: a trust file is damaged.
            InsecurePermissionsError: other users may change a trust file.
        """
        return self._trust.load()
