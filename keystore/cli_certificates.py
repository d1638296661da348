"""How the key management verbs show certificates, and warn of their expiry."""

from __future__ import annotations

import time
from typing import Any, Final

from keystore.certificate import Certificate
from keystore.cli_output import warn
from keystore.store import Keystore

__all__ = ["ca_names", "certificate_summary", "certificate_text", "expiry_warning"]

_SOON: Final = 30 * 86_400


def expiry_warning(not_after: int, what: str) -> None:
    left = not_after - time.time()
    if left < 0:
        warn(f"{what} has expired")
    elif left < _SOON:
        # Rounded, not floored: a certificate signed for 11 days is seen
        # within seconds of its start, and must not say 10.
        days = round(left / 86_400)
        when = "less than a day" if not days else f"{days} day{'s' if days != 1 else ''}"
        warn(f"{what} expires in {when}")


def ca_names(store: Keystore | None) -> dict[bytes, str]:
    """The names of the CAs ``store`` trusts, by public key."""
    return {} if store is None else {key: name for name, key in store.trust().cas().items()}


def certificate_summary(certificate: Certificate, cas: dict[bytes, str]) -> dict[str, Any]:
    """``certificate.describe()`` and ``issuer_name``: the trusted CA's name, or None."""
    return {**certificate.describe(), "issuer_name": cas.get(certificate.issuer)}


def certificate_text(summary: dict[str, Any]) -> str:
    groups = ", ".join(str(g) for g in summary["groups"]) or "(none)"
    issuer = summary["issuer"]
    if summary["issuer_name"] is not None:
        issuer = f"{summary['issuer_name']} ({issuer})"
    return "\n".join(
        [
            f"  name:       {summary['name']}",
            f"  groups:     {groups}",
            f"  serial:     {summary['serial']}",
            f"  key:        {summary['subject_key']}",
            f"  signing:    {summary['signing_key'] or 'none (a version 1 certificate)'}",
            f"  issuer:     {issuer}",
            f"  valid:      {summary['not_before']} to {summary['not_after']}",
        ]
    )
