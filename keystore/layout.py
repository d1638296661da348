"""Where a keystore keeps each file, and how it reads and writes them.

Layout (docs/keystore.md has the formats)::

    HOME/                       mode 0700
      .lock                     writers hold an exclusive flock on it
      identities/NAME.key       armoured private keys, encrypted unless asked
      identities/NAME.crt       the identity's certificate, if it has one
      identities/retired/       keys replaced by ``keys rotate``
      authorities/NAME.key      a CA's armoured Ed25519 signing key
      authorities/NAME.toml     the CA's public key, validity and next serial
      peers.toml                pinned peers: name, public key, groups
      cas.toml                  trusted CA public keys and their validity
      revoked.toml              revoked keys and (CA, serial) pairs

A writer holds the lock (:meth:`Layout.writing`) from reading the current
state to writing the last file it changes; :mod:`keystore._files` writes
each file atomically and checks who may change it.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar, final

import platformdirs
import tomli_w

from keystore._files import check_place, locked, write_atomically
from keystore.errors import (
    InsecurePermissionsError,
    KeystoreCorruptError,
    KeystoreError,
    KeystoreWriteError,
    UnknownNameError,
)

__all__ = [
    "ENV_HOME",
    "Layout",
    "Passphrase",
    "check_name",
    "default_home",
    "is_name",
    "optional_uint64",
    "passphrase_bytes",
    "toml_list",
    "uint64",
]

ENV_HOME: Final = "SECURESESS_HOME"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_T = TypeVar("_T")

Passphrase = str | bytes | None


def default_home() -> Path:
    """``$SECURESESS_HOME``, else the platform's per-user config directory."""
    from_env = os.environ.get(ENV_HOME)
    if from_env:
        return Path(from_env)
    return Path(platformdirs.user_config_dir("securesess"))


def is_name(name: str) -> bool:
    """Whether ``name`` may name an identity, a peer or a CA (and so a file)."""
    return _NAME.fullmatch(name) is not None


def check_name(name: str, what: str) -> str:
    if not is_name(name):
        raise ValueError(
            f"{what} name {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def passphrase_bytes(value: Passphrase) -> bytes | None:
    return value.encode("utf-8") if isinstance(value, str) else value


@final
class Layout:
    """The files of the keystore at ``path``: their names, the writers' lock,
    and reading them, so that a damaged or insecure file is a typed error."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path: Final = path

    @contextmanager
    def writing(self) -> Iterator[None]:
        with locked(self.path / ".lock"):
            # Holding the lock, no other writer is active: a temporary file
            # left now is from a writer that was killed, and is garbage.
            for stale in self.path.rglob(".*.tmp"):
                try:
                    stale.unlink(missing_ok=True)
                except OSError as exc:
                    raise KeystoreWriteError(f"cannot remove {stale}: {exc.strerror}") from None
            yield

    def identity_file(self, name: str) -> Path:
        return self.path / "identities" / f"{check_name(name, 'an identity')}.key"

    def certificate_file(self, name: str) -> Path:
        return self.path / "identities" / f"{name}.crt"

    def ca_files(self, name: str) -> tuple[Path, Path]:
        base = self.path / "authorities" / check_name(name, "a CA")
        return base.with_suffix(".key"), base.with_suffix(".toml")

    def key_names(self, folder: str) -> list[str]:
        """The names of the key files (NAME.key) in ``folder``, sorted."""
        directory = self.path / folder
        return sorted(p.stem for p in directory.glob("*.key")) if directory.is_dir() else []

    def read(self, path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UnknownNameError(f"no {what}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None

    def read_toml(self, filename: str) -> dict[str, Any]:
        """A TOML file of the keystore ({} if absent); see :meth:`load_toml`."""
        document = self.load_toml(filename)
        return {} if document is None else document

    def load_toml(self, filename: str) -> dict[str, Any] | None:
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

    def write_toml(self, filename: str, data: dict[str, Any]) -> None:
        write_atomically(self.path / filename, tomli_w.dumps(data).encode("utf-8"))

    def table(self, filename: str, key: str) -> dict[str, Any]:
        table = self.read_toml(filename).get(key, {})
        if not isinstance(table, dict):
            raise KeystoreCorruptError(f"{self.path / filename} is damaged: [{key}] is not a table")
        return table

    def entry(self, filename: str, name: str, entry: Any, parse: Callable[[Any], _T]) -> _T:
        try:
            return parse(entry)
        # Whatever shape the TOML takes (an int for a key, inf for a date),
        # a damaged file is a KeystoreCorruptError, never a stray exception.
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise KeystoreCorruptError(
                f"{self.path / filename} is damaged: entry {name!r} ({exc})"
            ) from None


def optional_uint64(table: Any, key: str) -> int | None:
    value = table.get(key)
    return None if value is None else uint64(value, key)


def toml_list(table: Any, key: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list")
    return value


def uint64(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**64:
        raise ValueError(f"{what} is not a 64-bit unsigned integer")
    return value
