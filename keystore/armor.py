"""PEM-style armour: a labelled block of base64, with readable headers.

::

    -----BEGIN SECURESESS CERTIFICATE-----
    Name: api
    Serial: 7

    AQHs5c6Y...
    -----END SECURESESS CERTIFICATE-----

Headers are ``Key: value`` lines before a blank line (as in RFC 1421), so a
person can see what a file holds without decoding it.
"""

from __future__ import annotations

import base64
import binascii
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, final

from keystore.errors import KeystoreCorruptError

__all__ = ["Armored", "armor", "dearmor"]

_WIDTH: Final = 64


@final
@dataclass(frozen=True, slots=True)
class Armored:
    label: str
    headers: dict[str, str]
    body: bytes


def armor(label: str, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    lines = [f"-----BEGIN SECURESESS {label}-----"]
    for key, value in (headers or {}).items():
        if "\n" in value or ":" in key:
            raise ValueError(f"an armour header cannot hold {key!r}: {value!r}")
        lines.append(f"{key}: {value}")
    if headers:
        lines.append("")
    lines += textwrap.wrap(base64.b64encode(body).decode("ascii"), _WIDTH) or [""]
    lines.append(f"-----END SECURESESS {label}-----")
    return ("\n".join(lines) + "\n").encode("ascii")


def dearmor(data: bytes, label: str, source: str) -> Armored:
    """Parse one armoured block with ``label``.

    Raises:
        KeystoreCorruptError: the text is not such a block (truncated,
            wrong label, bad base64); ``source`` names it in the message.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeystoreCorruptError(f"{source} is not a securesess {label.lower()} file") from None
    lines = [line.strip() for line in text.strip().splitlines()]
    begin, end = f"-----BEGIN SECURESESS {label}-----", f"-----END SECURESESS {label}-----"
    if not lines or lines[0] != begin:
        raise KeystoreCorruptError(f"{source} is not a securesess {label.lower()} file")
    if lines[-1] != end:
        raise KeystoreCorruptError(f"{source} is truncated: it has no {end!r} line")
    inner = lines[1:-1]
    headers: dict[str, str] = {}
    if "" in inner:
        split = inner.index("")
        for line in inner[:split]:
            key, separator, value = line.partition(": ")
            if not separator:
                raise KeystoreCorruptError(f"{source} has a malformed header line")
            headers[key] = value
        inner = inner[split + 1 :]
    try:
        body = base64.b64decode("".join(inner), validate=True)
    except (binascii.Error, ValueError):
        raise KeystoreCorruptError(f"{source} is damaged: its body is not valid base64") from None
    return Armored(label, headers, body)
