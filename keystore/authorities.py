"""A keystore's own CAs: their signing keys, and the certificates they issue.

A CA is an Ed25519 key, sealed at rest as an identity's key is, beside a
state file (:mod:`keystore.ca_state`) that records its validity and the
serial it issues next. The keystore that makes a CA trusts it; other
keystores trust it with ``ca trust``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final, final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore._files import check_private, ensure_directory, write_atomically
from keystore.armor import dearmor
from keystore.ca_state import read_ca_state, write_ca_state
from keystore.certificate import Certificate, sign_certificate
from keystore.encoding import encode_key
from keystore.errors import DuplicateNameError, KeystoreCorruptError, KeystoreError
from keystore.layout import Layout, Passphrase, passphrase_bytes
from keystore.sealing import Argon2idCost, is_encrypted, open_secret, seal_secret
from keystore.trust_files import TrustFiles

__all__ = ["Authorities"]

_CA_LABEL: Final = "CA KEY"


@final
class Authorities:
    """The CAs kept in a keystore; ``kdf`` is the cost of the keys it seals."""

    __slots__ = ("_kdf", "_layout", "_trust")

    def __init__(self, layout: Layout, trust: TrustFiles, kdf: Argon2idCost) -> None:
        self._layout: Final = layout
        self._trust: Final = trust
        self._kdf: Final = kdf

    def init(self, name: str, *, passphrase: Passphrase, valid_seconds: int) -> bytes:
        """See :meth:`keystore.Keystore.init_ca`."""
        if type(valid_seconds) is not int or not 0 < valid_seconds < 2**63:
            raise ValueError(
                f"a CA's validity is a positive number of seconds, not {valid_seconds!r}"
            )
        key_file, state_file = self._layout.ca_files(name)
        with self._layout.writing():
            ensure_directory(key_file.parent)
            if key_file.exists():
                raise DuplicateNameError(f"a CA named {name!r} exists")
            # Before any file is written: the trust must load, and take it.
            if name in self._trust.load().cas():
                raise DuplicateNameError(f"a CA named {name!r} is already trusted here")
            key = Ed25519PrivateKey.generate()
            public = key.public_key().public_bytes_raw()
            now = int(time.time())
            sealed = seal_secret(
                _CA_LABEL,
                key.private_bytes_raw(),
                {"Name": name, "Public-Key": encode_key(public)},
                passphrase_bytes(passphrase),
                self._kdf,
            )
            write_atomically(key_file, sealed)
            not_before, not_after = now - 60, now + valid_seconds
            write_ca_state(
                state_file,
                public_key=public,
                not_before=not_before,
                not_after=not_after,
                next_serial=1,
            )
            self._trust.add_ca_locked(name, public, not_before=not_before, not_after=not_after)
        return public

    def is_encrypted(self, name: str) -> bool:
        key_file, _ = self._layout.ca_files(name)
        data = self._layout.read(key_file, f"CA signing key named {name!r}")
        return is_encrypted(dearmor(data, _CA_LABEL, str(key_file)))

    def names(self) -> list[str]:
        return self._layout.key_names("authorities")

    def info(self, name: str) -> dict[str, Any]:
        return read_ca_state(self._layout, name)

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
        """See :meth:`keystore.Keystore.sign`."""
        key_file, state_file = self._layout.ca_files(ca)
        with self._layout.writing():
            info = self.info(ca)
            now = int(time.time())
            # Before the passphrase is asked for and its key derived.
            if info["not_after"] < now:
                raise KeystoreError(f"CA {ca!r} has expired: it can no longer sign")
            data = self._layout.read(key_file, f"CA signing key named {ca!r}")
            check_private(key_file)
            secret = open_secret(
                dearmor(data, _CA_LABEL, str(key_file)),
                passphrase_bytes(passphrase),
                str(key_file),
            )
            try:
                key = Ed25519PrivateKey.from_private_bytes(secret)
            except ValueError:
                raise KeystoreCorruptError(f"{key_file} is damaged") from None
            if key.public_key().public_bytes_raw() != info["public_key"]:
                raise KeystoreCorruptError(f"{key_file} does not match {state_file}")
            not_after = min(now + valid_seconds, info["not_after"])
            certificate = sign_certificate(
                key,
                subject_key=public_key,
                signing_key=signing_key,
                name=name,
                groups=groups,
                serial=info["next_serial"],
                not_before=now - 60,  # tolerate clocks a minute apart
                not_after=not_after,
            )
            write_ca_state(
                state_file,
                public_key=info["public_key"],
                not_before=info["not_before"],
                not_after=info["not_after"],
                next_serial=info["next_serial"] + 1,
            )
        return certificate
