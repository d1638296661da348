"""Certificates outlive nothing: waiting, by the wall clock, for one to expire."""

from __future__ import annotations

import time

import trio

from keystore import Certificate

__all__ = ["until_expired"]


async def until_expired(certificate: Certificate) -> None:
    """Return once ``certificate`` has expired: a trust store checks validity
    at the handshake, and a connection may outlive it."""
    # not_after is the last valid second (inclusive), in Unix time, which
    # Trio's clock does not follow (it stands still while the machine
    # sleeps): look at the wall clock again every minute.
    while (left := certificate.not_after + 1 - time.time()) > 0:
        await trio.sleep(min(left, 60.0))
