"""The keystore: a directory of identities, pins, CAs and revocations.

Layout (docs/keystore.md has the formats)::

    HOME/                       mode 0700
      .lock                     writers hold an exclusive flock on it
      identities/NAME.key       armoured private key, encrypted unless asked
      identities/NAME.crt       the identity's certificate, if it has one
      identities/retired/       keys replaced by ``keys rotate``
      authorities/NAME.key      a CA's armoured Ed25519 signing key
      authorities/NAME.toml     the CA's public key, validity and next serial
      peers.toml                pinned peers: name, public key, groups
      cas.toml                  trusted CA public keys and their validity
      revoked.toml              revoked keys and (CA, serial) pairs

Once the keystore has written a trust file, revoked.toml exists (empty if
nothing is revoked), and peers.toml and cas.toml say so (``revocations =
"required"``): a revocation list that goes missing afterwards is an error,
not a list of nothing, or deleting it would trust again whatever it named.

Every operation that changes a file takes the lock, reads the current state,
and writes each file atomically, so a crash or a concurrent call leaves every
file either as it was or as it should become.
"""

from __future__ import annotations

import os
import re
import stat
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar, final

import platformdirs
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore._files import (
    check_place,
    check_private,
    ensure_directory,
    locked,
    write_atomically,
)
from keystore.armor import armor, dearmor
from keystore.certificate import Certificate, iso_time, sign_certificate
from keystore.encoding import decode_key, encode_key, fingerprint
from keystore.errors import (
    CertificateError,
    DuplicateNameError,
    InsecurePermissionsError,
    KeystoreCorruptError,
    KeystoreError,
    RevocationListMissingError,
    UnknownNameError,
)
from keystore.identity import Identity
from keystore.sealing import Argon2idCost, is_encrypted, open_secret, seal_secret
from keystore.trust import TrustStore

__all__ = ["ENV_HOME", "Keystore", "armor_certificate", "default_home", "read_certificate_file"]

ENV_HOME: Final = "SECURESESS_HOME"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_IDENTITY_LABEL: Final = "IDENTITY KEY"
_CA_LABEL: Final = "CA KEY"
_CERT_LABEL: Final = "CERTIFICATE"
_REVOKED: Final = "revoked.toml"
_TRUST_FILES: Final = {"peers.toml": "peers", "cas.toml": "cas"}
# The top-level key of a trust file that says revoked.toml must exist.
_REVOCATIONS: Final = "revocations"
_REQUIRED: Final = "required"
_T = TypeVar("_T")

Passphrase = str | bytes | None


def default_home() -> Path:
    """``$SECURESESS_HOME``, else the platform's per-user config directory."""
    from_env = os.environ.get(ENV_HOME)
    if from_env:
        return Path(from_env)
    return Path(platformdirs.user_config_dir("securesess"))


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _passphrase(value: Passphrase) -> bytes | None:
    return value.encode("utf-8") if isinstance(value, str) else value


@final
class Keystore:
    """A keystore directory. Every CLI verb is a method here first.

    Open one with :meth:`open`; nothing is cached between calls, so several
    processes can share a keystore safely. ``kdf`` is the Argon2id cost of
    the keys it encrypts from now on; a key file is always opened with the
    cost it records.
    """

    __slots__ = ("kdf", "path")

    def __init__(self, path: Path, *, kdf: Argon2idCost = Argon2idCost.MODERATE) -> None:
        if not isinstance(kdf, Argon2idCost):
            raise TypeError(f"kdf is an Argon2idCost, not {type(kdf).__name__}")
        self.path: Final = path
        self.kdf: Final = kdf

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

    # -- files ------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with locked(self.path / ".lock"):
            # Holding the lock, no other writer is active: a temporary file
            # left now is from a writer that was killed, and is garbage.
            for stale in self.path.rglob(".*.tmp"):
                stale.unlink(missing_ok=True)
            yield

    def _identity_file(self, name: str) -> Path:
        return self.path / "identities" / f"{_check_name(name, 'an identity')}.key"

    def _certificate_file(self, name: str) -> Path:
        return self.path / "identities" / f"{name}.crt"

    def _ca_files(self, name: str) -> tuple[Path, Path]:
        base = self.path / "authorities" / _check_name(name, "a CA")
        return base.with_suffix(".key"), base.with_suffix(".toml")

    def _read(self, path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UnknownNameError(f"no {what}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None

    def _read_toml(self, filename: str) -> dict[str, Any]:
        """A TOML file of the keystore ({} if absent); see :meth:`_load_toml`."""
        document = self._load_toml(filename)
        return {} if document is None else document

    def _load_toml(self, filename: str) -> dict[str, Any] | None:
        """A TOML file of the keystore (None if absent).

        Raises:
            InsecurePermissionsError: other users may write the file (or own
                it), or a directory it is in, and so pin keys of their own or
                undo a revocation.
        """
        path = self.path / filename
        # Before the file is opened: whoever may write the directory decides
        # what it holds, an absent file included (and so for a link's target).
        check_place(path)
        try:
            with path.open("rb") as file:
                status = os.fstat(file.fileno())
                mode = stat.S_IMODE(status.st_mode)
                if mode & 0o022:
                    raise InsecurePermissionsError(
                        f"{path} is writable by other users (mode {mode:o}), who could make "
                        f"it trust their keys or undo a revocation: chmod go-w {path}"
                    )
                if status.st_uid not in (os.geteuid(), 0):
                    raise InsecurePermissionsError(
                        f"{path} belongs to another user (uid {status.st_uid}), who decides "
                        f"whom it trusts: it must be yours"
                    )
                text = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None
        try:
            return tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise KeystoreCorruptError(f"{path} is damaged: {exc}") from None

    def _write_toml(self, filename: str, data: dict[str, Any]) -> None:
        write_atomically(self.path / filename, tomli_w.dumps(data).encode("utf-8"))

    def _table(self, filename: str, key: str) -> dict[str, Any]:
        table = self._read_toml(filename).get(key, {})
        if not isinstance(table, dict):
            raise KeystoreCorruptError(f"{self.path / filename} is damaged: [{key}] is not a table")
        return table

    def _requires_revocations(self, filename: str) -> bool:
        """Whether trust file ``filename`` says revoked.toml must exist."""
        value = self._read_toml(filename).get(_REVOCATIONS)
        if value is not None and value != _REQUIRED:
            raise KeystoreCorruptError(
                f"{self.path / filename} is damaged: {_REVOCATIONS} is {value!r}, not {_REQUIRED!r}"
            )
        return value is not None

    def _revocations(self) -> dict[str, Any]:
        """The revocation list ({} if there is none, and none is required).

        Raises:
            RevocationListMissingError: revoked.toml is gone, though a trust
                file says the keystore keeps it.
        """
        revoked = self._load_toml(_REVOKED)
        if revoked is not None:
            return revoked
        for filename in _TRUST_FILES:
            if self._requires_revocations(filename):
                path = self.path / _REVOKED
                raise RevocationListMissingError(
                    f"{path} is missing, but {self.path / filename} says this keystore keeps "
                    "one: without it, every key and certificate it revoked would be trusted "
                    "again. Restore it from a backup; if nothing was ever revoked here, an "
                    f"empty one will do (install -m 600 /dev/null {path})"
                )
        return {}

    def _keep_revocations_locked(self) -> None:
        """Make sure revoked.toml exists and every trust file requires it.

        Called by each change to the trust, before it writes: from then on a
        missing revocation list is an error.
        """
        if self._load_toml(_REVOKED) is None:
            self._revocations()  # refuses if it is gone rather than never made
            self._write_toml(_REVOKED, {"keys": [], "serials": []})
        for filename, key in _TRUST_FILES.items():
            if (self.path / filename).exists() and not self._requires_revocations(filename):
                self._write_trust_file(filename, self._table(filename, key))

    def _write_trust_file(self, filename: str, table: dict[str, Any]) -> None:
        self._write_toml(filename, {_REVOCATIONS: _REQUIRED, _TRUST_FILES[filename]: table})

    def _entry(self, filename: str, name: str, entry: Any, parse: Callable[[Any], _T]) -> _T:
        try:
            return parse(entry)
        # Whatever shape the TOML takes (an int for a key, inf for a date),
        # a damaged file is a KeystoreCorruptError, never a stray exception.
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise KeystoreCorruptError(
                f"{self.path / filename} is damaged: entry {name!r} ({exc})"
            ) from None

    # -- identities ---------------------------------------------------------------------

    def new_identity(self, name: str, *, passphrase: Passphrase) -> Identity:
        """Create identity ``name``; ``passphrase=None`` stores the key unencrypted.

        Raises:
            DuplicateNameError: an identity with that name exists.
        """
        path = self._identity_file(name)
        identity = Identity.generate(name)
        with self._writing():
            ensure_directory(path.parent)
            if path.exists():
                raise DuplicateNameError(
                    f"an identity named {name!r} exists; rotate it, or delete it first"
                )
            self._save_identity(path, identity, _passphrase(passphrase))
        return identity

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
            name=name,
            groups=groups,
            valid_seconds=valid_seconds,
        )
        self.store_certificate(name, certificate)
        return identity.with_certificate(certificate)

    def _save_identity(self, path: Path, identity: Identity, passphrase: bytes | None) -> None:
        headers = {"Name": identity.name or "", "Public-Key": encode_key(identity.public_key)}
        sealed = seal_secret(
            _IDENTITY_LABEL, identity.private_bytes(), headers, passphrase, self.kdf
        )
        write_atomically(path, sealed)

    def identity_names(self) -> list[str]:
        directory = self.path / "identities"
        return sorted(p.stem for p in directory.glob("*.key")) if directory.is_dir() else []

    def _armored_identity(self, name: str) -> tuple[Path, Any]:
        path = self._identity_file(name)
        data = self._read(path, f"identity named {name!r} (see 'securesess keys list')")
        return path, dearmor(data, _IDENTITY_LABEL, str(path))

    def public_key(self, name: str) -> bytes:
        """An identity's public key, read without its passphrase."""
        path, armored = self._armored_identity(name)
        return self._entry(str(path), name, armored.headers.get("Public-Key"), decode_key)

    def is_encrypted(self, name: str) -> bool:
        return is_encrypted(self._armored_identity(name)[1])

    def identity(self, name: str, *, passphrase: Passphrase = None) -> Identity:
        """Load identity ``name`` (with its certificate, if it has one).

        Raises:
            UnknownNameError: no such identity.
            WrongPassphraseError: the passphrase is missing or wrong.
            InsecurePermissionsError: other users can read the key file.
            KeystoreCorruptError: the file is damaged or altered.
        """
        path, armored = self._armored_identity(name)
        check_private(path)
        secret = open_secret(armored, _passphrase(passphrase), str(path))
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
            cert_path = self._certificate_file(name)
            raise KeystoreCorruptError(f"{cert_path} does not belong to {name!r}: {exc}") from None

    def certificate(self, name: str) -> Certificate | None:
        """The certificate stored for identity ``name``, if any."""
        path = self._certificate_file(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return _decode_certificate(data, str(path))

    def change_passphrase(self, name: str, *, old: Passphrase, new: Passphrase) -> None:
        """Re-encrypt identity ``name`` under ``new`` (None: store it unencrypted)."""
        with self._writing():
            identity = self.identity(name, passphrase=old)
            self._save_identity(self._identity_file(name), identity, _passphrase(new))

    def rotate_identity(self, name: str, *, passphrase: Passphrase) -> Identity:
        """Give ``name`` a new key; the old key file moves to ``identities/retired/``.

        The old certificate is retired with it: the new key needs a new one.
        """
        with self._writing():
            self.identity(name, passphrase=passphrase)  # prove we may replace it
            path = self._identity_file(name)
            retired = path.parent / "retired"
            ensure_directory(retired)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            write_atomically(retired / f"{name}-{stamp}.key", path.read_bytes())
            certificate = self._certificate_file(name)
            if certificate.exists():
                write_atomically(retired / f"{name}-{stamp}.crt", certificate.read_bytes())
                certificate.unlink()
            identity = Identity.generate(name)
            self._save_identity(path, identity, _passphrase(passphrase))
        return identity

    def delete_identity(self, name: str) -> None:
        with self._writing():
            path = self._identity_file(name)
            if not path.exists():
                raise UnknownNameError(f"no identity named {name!r}")
            self._certificate_file(name).unlink(missing_ok=True)
            path.unlink()

    def store_certificate(self, name: str, certificate: Certificate) -> None:
        """Save ``certificate`` as identity ``name``'s; it must be for that key."""
        with self._writing():
            if certificate.subject_key != self.public_key(name):
                raise CertificateError(
                    f"this certificate is for key {fingerprint(certificate.subject_key)}, "
                    f"not for identity {name!r}"
                )
            write_atomically(self._certificate_file(name), armor_certificate(certificate))

    # -- pinned peers -------------------------------------------------------------------

    def add_peer(self, name: str, public_key: bytes, groups: Iterable[str] = ()) -> None:
        _check_name(name, "a peer")
        with self._writing():
            trust = self.trust()  # refuses duplicates by name and by key
            trust.add_peer(name, public_key, groups)
            self._keep_revocations_locked()
            peers = self._table("peers.toml", "peers")
            peers[name] = {"public_key": encode_key(public_key), "groups": sorted(set(groups))}
            self._write_trust_file("peers.toml", peers)

    def remove_peer(self, name: str) -> None:
        with self._writing():
            peers = self._table("peers.toml", "peers")
            if name not in peers:
                raise UnknownNameError(f"no pinned peer is named {name!r}")
            self._keep_revocations_locked()
            del peers[name]
            self._write_trust_file("peers.toml", peers)

    # -- certificate authorities ----------------------------------------------------------

    def init_ca(self, name: str, *, passphrase: Passphrase, valid_seconds: int) -> bytes:
        """Create CA ``name`` (an Ed25519 key), trust it here, return its public key.

        The CA is valid from a minute ago (as the certificates it signs are,
        for clocks that differ) for ``valid_seconds``; this keystore trusts
        it for that window only.
        """
        if type(valid_seconds) is not int or not 0 < valid_seconds < 2**63:
            raise ValueError(
                f"a CA's validity is a positive number of seconds, not {valid_seconds!r}"
            )
        key_file, state_file = self._ca_files(name)
        with self._writing():
            ensure_directory(key_file.parent)
            if key_file.exists():
                raise DuplicateNameError(f"a CA named {name!r} exists")
            # Before any file is written: the trust must load, and take it.
            if name in self.trust().cas():
                raise DuplicateNameError(f"a CA named {name!r} is already trusted here")
            key = Ed25519PrivateKey.generate()
            public = key.public_key().public_bytes_raw()
            now = int(time.time())
            sealed = seal_secret(
                _CA_LABEL,
                key.private_bytes_raw(),
                {"Name": name, "Public-Key": encode_key(public)},
                _passphrase(passphrase),
                self.kdf,
            )
            write_atomically(key_file, sealed)
            window = {"not_before": now - 60, "not_after": now + valid_seconds}
            state = {"public_key": encode_key(public), **window}
            write_atomically(state_file, tomli_w.dumps({"ca": state, "next_serial": 1}).encode())
            self._trust_ca_locked(name, public, **window)
        return public

    def ca_is_encrypted(self, name: str) -> bool:
        key_file, _ = self._ca_files(name)
        data = self._read(key_file, f"CA signing key named {name!r}")
        return is_encrypted(dearmor(data, _CA_LABEL, str(key_file)))

    def ca_names(self) -> list[str]:
        directory = self.path / "authorities"
        return sorted(p.stem for p in directory.glob("*.key")) if directory.is_dir() else []

    def ca_info(self, name: str) -> dict[str, Any]:
        _, state_file = self._ca_files(name)
        if not state_file.exists():
            raise UnknownNameError(f"no CA named {name!r} in this keystore (see 'securesess ca')")
        relative = str(state_file.relative_to(self.path))
        state = self._read_toml(relative)
        return self._entry(
            relative,
            name,
            state,
            lambda s: {
                "name": name,
                "public_key": decode_key(s["ca"]["public_key"], "CA public key"),
                # Absent from the files of CAs made before it was recorded.
                "not_before": _optional_uint64(s["ca"], "not_before"),
                "not_after": _uint64(s["ca"]["not_after"], "not_after"),
                "next_serial": _uint64(s["next_serial"], "next_serial"),
            },
        )

    def sign(
        self,
        ca: str,
        *,
        passphrase: Passphrase,
        public_key: bytes,
        name: str,
        groups: Iterable[str] = (),
        valid_seconds: int,
    ) -> Certificate:
        """Issue a certificate from CA ``ca`` for ``public_key`` as ``name``."""
        key_file, state_file = self._ca_files(ca)
        with self._writing():
            info = self.ca_info(ca)
            now = int(time.time())
            # Before the passphrase is asked for and its key derived.
            if info["not_after"] < now:
                raise KeystoreError(f"CA {ca!r} has expired: it can no longer sign")
            data = self._read(key_file, f"CA signing key named {ca!r}")
            check_private(key_file)
            secret = open_secret(
                dearmor(data, _CA_LABEL, str(key_file)), _passphrase(passphrase), str(key_file)
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
                name=name,
                groups=groups,
                serial=info["next_serial"],
                not_before=now - 60,  # tolerate clocks a minute apart
                not_after=not_after,
            )
            ca_state: dict[str, Any] = {"public_key": encode_key(info["public_key"])}
            if info["not_before"] is not None:
                ca_state["not_before"] = info["not_before"]
            ca_state["not_after"] = info["not_after"]
            state = {"ca": ca_state, "next_serial": info["next_serial"] + 1}
            write_atomically(state_file, tomli_w.dumps(state).encode())
        return certificate

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
        _check_name(name, "a CA")
        if not_after is not None and type(not_after) is int and not_after < time.time():
            raise ValueError(
                f"CA {name!r} expired at {iso_time(not_after)}: trusting it would admit no one"
            )
        with self._writing():
            self._trust_ca_locked(name, public_key, not_before=not_before, not_after=not_after)

    def _trust_ca_locked(
        self, name: str, public_key: bytes, *, not_before: int | None, not_after: int | None
    ) -> None:
        # The trust store refuses duplicates and a malformed window.
        self.trust().add_ca(name, public_key, not_before=not_before, not_after=not_after)
        self._keep_revocations_locked()
        cas = self._table("cas.toml", "cas")
        entry: dict[str, Any] = {"public_key": encode_key(public_key)}
        if not_before is not None:
            entry["not_before"] = not_before
        if not_after is not None:
            entry["not_after"] = not_after
        cas[name] = entry
        self._write_trust_file("cas.toml", cas)

    # -- revocation ---------------------------------------------------------------------

    def revoke_key(self, public_key: bytes) -> None:
        with self._writing():
            revoked = self._revocations()
            self._keep_revocations_locked()
            keys = set(revoked.get("keys", []))
            keys.add(encode_key(public_key))
            revoked["keys"] = sorted(keys)
            self._write_toml(_REVOKED, revoked)

    def revoke_serial(self, ca_key: bytes, serial: int) -> None:
        """Revoke the certificate ``serial`` of the CA ``ca_key``.

        Raises:
            ValueError: ``serial`` is not a 64-bit unsigned integer. It is
                refused before anything is written: ``trust()`` refuses a
                revocation list holding one, so it would stop every later
                reload and revocation.
        """
        if type(serial) is not int or not 0 <= serial < 2**64:
            raise ValueError(
                f"a certificate serial is an integer from 0 to 2**64-1, not {serial!r}"
            )
        with self._writing():
            revoked = self._revocations()
            self._keep_revocations_locked()
            serials = [dict(entry) for entry in revoked.get("serials", [])]
            entry = {"ca": encode_key(ca_key), "serial": serial}
            if entry not in serials:
                serials.append(entry)
            revoked["serials"] = serials
            self._write_toml(_REVOKED, revoked)

    # -- the trust store ------------------------------------------------------------------

    def trust(self) -> TrustStore:
        """A TrustStore of this keystore's pinned peers, trusted CAs and revocations.

        Raises:
            RevocationListMissingError: revoked.toml is gone, though
                peers.toml or cas.toml says this keystore keeps one.
            KeystoreCorruptError: a trust file is damaged.
            InsecurePermissionsError: other users may change a trust file.
        """
        trust = TrustStore()
        # Each entry is parsed and added inside _entry: the trust store's own
        # checks (an empty name, a duplicate) are about the file too.
        for name, entry in self._table("peers.toml", "peers").items():

            def add_peer(table: Any, name: str = name) -> None:
                groups = [str(group) for group in _list(table, "groups")]
                trust.add_peer(name, decode_key(table["public_key"]), groups)

            self._entry("peers.toml", name, entry, add_peer)
        for name, entry in self._table("cas.toml", "cas").items():

            def add_ca(table: Any, name: str = name) -> None:
                key = decode_key(table["public_key"])
                not_before = _optional_uint64(table, "not_before")
                not_after = _optional_uint64(table, "not_after")
                if not_after is None:
                    # A CA this keystore made before cas.toml recorded its
                    # validity: its own file knows it.
                    not_before, not_after = self._local_ca_window(name, key, not_before)
                trust.add_ca(name, key, not_before=not_before, not_after=not_after)

            self._entry("cas.toml", name, entry, add_ca)
        revoked = self._revocations()

        def revoke_keys(table: Any) -> None:
            for text in _list(table, "keys"):
                trust.revoke_key(decode_key(text))

        def revoke_serials(table: Any) -> None:
            for entry in _list(table, "serials"):
                trust.revoke_serial(decode_key(entry["ca"]), _uint64(entry["serial"], "serial"))

        self._entry("revoked.toml", "keys", revoked, revoke_keys)
        self._entry("revoked.toml", "serials", revoked, revoke_serials)
        return trust

    def _local_ca_window(
        self, name: str, key: bytes, not_before: int | None
    ) -> tuple[int | None, int | None]:
        """The window of this keystore's own CA ``name`` if its key is ``key``."""
        if not _NAME.fullmatch(name) or not self._ca_files(name)[1].exists():
            return not_before, None
        info = self.ca_info(name)
        if info["public_key"] != key:
            return not_before, None
        return (not_before if not_before is not None else info["not_before"]), info["not_after"]


def _optional_uint64(table: Any, key: str) -> int | None:
    value = table.get(key)
    return None if value is None else _uint64(value, key)


def _list(table: Any, key: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list")
    return value


def _uint64(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**64:
        raise ValueError(f"{what} is not a 64-bit unsigned integer")
    return value


def armor_certificate(certificate: Certificate) -> bytes:
    """A certificate as an armoured text file, its name and serial readable."""
    headers = {"Name": certificate.name, "Serial": str(certificate.serial)}
    return armor(_CERT_LABEL, certificate.encoded, headers)


def _decode_certificate(data: bytes, source: str) -> Certificate:
    armored = dearmor(data, _CERT_LABEL, source)
    try:
        return Certificate.decode(armored.body)
    except CertificateError as exc:
        raise KeystoreCorruptError(f"{source} is damaged: {exc}") from None


def read_certificate_file(path: Path) -> Certificate:
    """Load an armoured certificate file (as written by ``ca sign -o``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None
    return _decode_certificate(data, str(path))
