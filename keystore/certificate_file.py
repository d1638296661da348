"""Certificates as armoured text files, their name and serial readable."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from keystore.armor import armor, dearmor
from keystore.certificate import Certificate
from keystore.errors import CertificateError, KeystoreCorruptError, KeystoreError

__all__ = ["armor_certificate", "decode_certificate", "read_certificate_file"]

_CERT_LABEL: Final = "CERTIFICATE"


def armor_certificate(certificate: Certificate) -> bytes:
    """A certificate as an armoured text file, its name and serial readable."""
    headers = {"Name": certificate.name, "Serial": str(certificate.serial)}
    return armor(_CERT_LABEL, certificate.encoded, headers)


def decode_certificate(data: bytes, source: str) -> Certificate:
    """The certificate armoured in ``data``, read from ``source`` (named in errors)."""
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
    return decode_certificate(data, str(path))
