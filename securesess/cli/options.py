"""Options and parsers shared by the commands that serve."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Final

import click

from securesess.constants import (
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_HANDSHAKE_RATE,
    DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
)
from securesess.stream.options import AdmissionLimits

_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_SIZE = re.compile(r"([0-9]+)\s*([KMG]?)(?:I?B)?", re.IGNORECASE)
_SCALES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A positive byte count, optionally with a binary suffix: 512K, 32M, 1G."""
    if value is None:
        return None
    match = _SIZE.fullmatch(value.strip())
    if match is None or int(match[1]) == 0:
        raise click.BadParameter(f"{value!r} is not a size such as 1073741824, 512K, 32M or 1G")
    return int(match[1]) * _SCALES[match[2].upper()]


def log_level_option(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--log-level, whose help says what each level keeps of ``what`` the command logs."""
    return click.option(
        "--log-level",
        type=click.Choice(_LOG_LEVELS),
        default="info",
        show_default=True,
        help=f"What to log on stderr. info: {what}; warning keeps only the trouble;"
        " error, only failures (a reload, an unexpected error); debug adds detail.",
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def address(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """``HOST:PORT``, with IPv6 hosts in brackets: ``[::1]:7000``."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:7000")
    return host, int(port)


def optional_address(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    return None if value is None else address(ctx, param, value)


def handshake_rate_options(
    per_peer: int | None, why: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--handshake-rate, --handshake-burst and --max-handshakes-per-source,
    the per-source handshake limits; and --max-connections-per-peer, its
    default ``per_peer`` (None: off) and ``why`` that default."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--max-connections-per-peer",
            type=click.IntRange(min=0),
            default=per_peer or 0,
            show_default=True,
            help="Connections one peer (one key) may hold at once; at the limit a new one"
            " displaces the oldest that has not proved it is live (a replayed IK message 1),"
            f" or is refused. 0 turns the limit off{why}.",
        )(command)
        return per_source_options(command)

    return decorate


def per_source_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--max-handshakes-per-source",
        type=click.IntRange(min=0),
        default=DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        show_default=True,
        help="Handshakes one source may have in progress once half the slots are taken;"
        " more are told busy. 0 turns the limit off.",
    )(command)
    command = click.option(
        "--handshake-burst",
        type=click.IntRange(min=1),
        default=DEFAULT_HANDSHAKE_BURST,
        show_default=True,
        help="Handshakes one source may start at once, beyond --handshake-rate.",
    )(command)
    return click.option(
        "--handshake-rate",
        type=click.FloatRange(min=0),
        default=DEFAULT_HANDSHAKE_RATE,
        show_default=True,
        help="Handshakes a second one source (an IPv4 address or IPv6 /64) may start on"
        " average; more are told busy. 0 turns the limit off.",
    )(command)


def admission_limits(rate: float, burst: int, per_source: int, per_peer: int) -> AdmissionLimits:
    """The admission limits of the handshake options; 0 turns a limit off."""
    return AdmissionLimits(
        handshake_rate=rate or None,
        handshake_burst=burst,
        max_handshakes_per_source=per_source or None,
        max_connections_per_peer=per_peer or None,
    )
