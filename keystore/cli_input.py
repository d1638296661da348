"""How the key management verbs take their input: options, durations, passphrases.

Every verb takes ``--home`` (else ``$SECURESESS_HOME``, else the per-user
config directory). Passphrases come from ``--passphrase-file``,
``$SECURESESS_PASSPHRASE`` or a prompt, in that order.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import click

from keystore.cli_output import fail
from keystore.identity import Identity
from keystore.sealing import Argon2idCost
from keystore.store import Keystore

__all__ = [
    "ENV_KDF",
    "ENV_NEW_PASSPHRASE",
    "ENV_PASSPHRASE",
    "current_passphrase",
    "home_option",
    "kdf_option",
    "new_passphrase",
    "open_store",
    "parse_duration",
    "parse_time",
    "passphrase_file_option",
    "read_passphrase",
    "unlock_identity",
]

ENV_PASSPHRASE: Final = "SECURESESS_PASSPHRASE"
ENV_NEW_PASSPHRASE: Final = "SECURESESS_NEW_PASSPHRASE"
ENV_KDF: Final = "SECURESESS_KDF"
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


def open_store(home: Path | None, kdf: str = "moderate") -> Keystore:
    return Keystore.open(home, kdf=Argon2idCost.named(kdf))


def read_passphrase(
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


def current_passphrase(store: Keystore, name: str, passphrase_file: Path | None) -> str | None:
    """The passphrase of identity ``name``, asked for only if it is encrypted."""
    if not store.is_encrypted(name):
        return None
    return read_passphrase(passphrase_file, env=ENV_PASSPHRASE, prompt=f"Passphrase for {name!r}")


def unlock_identity(home: Path | None, name: str, passphrase_file: Path | None) -> Identity:
    """Load identity ``name`` from the keystore at ``home`` for a command that uses it."""
    store = open_store(home)
    return store.identity(name, passphrase=current_passphrase(store, name, passphrase_file))


def new_passphrase(no_passphrase: bool, passphrase_file: Path | None, what: str) -> str | None:
    if no_passphrase:
        return None
    value = read_passphrase(
        passphrase_file, env=ENV_PASSPHRASE, prompt=f"Passphrase for {what}", confirm=True
    )
    if not value:
        fail("an empty passphrase is not allowed; use --no-passphrase to store the key unencrypted")
    return value
