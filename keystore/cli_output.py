"""How every ``securesess`` command reports: results, warnings, errors, exit codes.

A command that prints a result returns a :class:`Result`; :func:`prints_result`
gives it a ``--json`` flag and prints either the result's text or its data as
one JSON document on stdout (an object; an array of objects for a listing).
Warnings and errors go to stderr, one line each, prefixed ``securesess:``.

The exit codes are the same for every command (:data:`EXIT_CODES`): 0 when
it did what was asked; 1 for an operational error (a file that is missing or
unreadable, an unknown name, a wrong passphrase, an invalid policy or
certificate, a port already taken), reported in one line
``securesess: error: ...``; 2 for a usage error (an unknown option, a missing
argument, a value of the wrong form), reported by click with the usage text.
So a file named on the command line that is missing is an error (1), not a
usage error: the command was written right, the world is not as it says.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn, final

import click

from keystore.errors import KeystoreError

__all__ = [
    "EXIT_CODES",
    "EXIT_ERROR",
    "OPERATIONAL_ERRORS",
    "Refused",
    "Result",
    "describe_error",
    "fail",
    "prints_result",
    "warn",
]

#: The exit code of an operational error; click exits 2 on a usage error.
EXIT_ERROR: Final = 1
#: The convention in words, for ``--help`` and the documentation.
EXIT_CODES: Final = (
    "Exit codes: 0 on success; 1 on an error (a missing or unreadable file, an unknown"
    " name, a wrong passphrase, an invalid policy or certificate), reported in one line"
    " 'securesess: error: ...' on stderr; 2 on a usage error (an unknown option, a"
    " missing argument, a malformed value), with the usage text."
)
#: What a command turns into one error line: the library's typed errors
#: (PolicyError is a ValueError) and the system's (a file, a port).
OPERATIONAL_ERRORS: Final = (KeystoreError, ValueError, OSError)

_JSON_HELP: Final = "Print the result as one JSON document on stdout, not as text."


def fail(message: str) -> NoReturn:
    """Report an operational error in one line on stderr and exit 1."""
    click.echo(f"securesess: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def warn(message: str) -> None:
    click.echo(f"securesess: warning: {message}", err=True)


def describe_error(exc: BaseException) -> str:
    """One line for an operational error; a file's error names the file, without errno."""
    if isinstance(exc, OSError) and exc.strerror:
        filename = exc.filename
        return f"{filename}: {exc.strerror}" if filename is not None else exc.strerror
    return str(exc) or type(exc).__name__


@final
@dataclass(frozen=True, slots=True)
class Result:
    """What a command found or did: ``text`` for people, ``data`` for ``--json``.

    ``data`` holds what ``text`` says, under stable keys, and never a
    secret. ``status`` is the exit code (1 for a listing that found damage,
    or a check that found problems).
    """

    data: dict[str, Any] | list[dict[str, Any]]
    text: str
    status: int = 0


@final
class Refused(Exception):
    """A command's negative answer (a certificate that is not valid): exit 1.

    With ``--json`` the ``data`` is printed on stdout, so a script reads the
    reason as it reads a success; without, ``message`` is the error line.
    """

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.data = data


def prints_result(command: Callable[..., Result]) -> Callable[..., None]:
    """Give a click command function ``--json``, print the :class:`Result` it
    returns, and turn :data:`OPERATIONAL_ERRORS` into one error line and exit 1.

    Apply it below ``@click.command`` and the command's other options.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> None:
        try:
            result = command(*args, **kwargs)
        except Refused as refusal:
            if as_json:
                click.echo(json.dumps(refusal.data, indent=2))
                sys.exit(EXIT_ERROR)
            fail(str(refusal))
        except OPERATIONAL_ERRORS as exc:
            fail(describe_error(exc))
        click.echo(json.dumps(result.data, indent=2) if as_json else result.text.rstrip("\n"))
        if result.status:
            sys.exit(result.status)

    return click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)(wrapper)
