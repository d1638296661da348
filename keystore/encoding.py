"""How keys are written for people: fingerprints, base64 text, and tokens.

A key is standard base64 of its 32 bytes (44 characters, as WireGuard
writes them). An identity's public half, its X25519 static key and its
Ed25519 signing key, is one token of both joined by ``:``, a character
base64 never uses, so the token splits without doubt and cannot be taken
for a key alone. Commands that take a peer's key take either form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Final

from keystore.errors import MalformedKeyError

__all__ = [
    "decode_key",
    "decode_public_token",
    "encode_key",
    "encode_public_token",
    "fingerprint",
]

_SEPARATOR: Final = ":"


def fingerprint(public_key: bytes) -> str:
    """The SSH-style fingerprint of a public key: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def encode_key(key: bytes) -> str:
    """A 32-byte key as base64 text (the form WireGuard uses)."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, what: str = "public key") -> bytes:
    """Parse base64 text into a 32-byte key.

    Raises:
        MalformedKeyError: (a ValueError) the text is not base64 of exactly 32 bytes.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedKeyError(f"the {what} is not valid base64") from None
    if len(key) != 32:
        raise MalformedKeyError(
            f"a {what} is 32 bytes (44 base64 characters), got {len(key)} bytes"
        )
    return key


def encode_public_token(public_key: bytes, signing_key: bytes | None) -> str:
    """An identity's public half as one token: ``<base64 X25519>:<base64 Ed25519>``,
    or the X25519 key alone when there is no signing key."""
    if signing_key is None:
        return encode_key(public_key)
    return f"{encode_key(public_key)}{_SEPARATOR}{encode_key(signing_key)}"


def decode_public_token(text: str, what: str = "public key") -> tuple[bytes, bytes | None]:
    """A peer's ``(X25519 key, Ed25519 signing key or None)`` from either form
    :func:`encode_public_token` writes.

    Raises:
        MalformedKeyError: (a ValueError) the text is neither a key nor a token of two.
    """
    static, separator, signing = text.strip().partition(_SEPARATOR)
    if not separator:
        return decode_key(static, what), None
    if _SEPARATOR in signing:
        raise MalformedKeyError(
            f"the {what} has more than two parts: write the X25519 key, or it and the "
            "signing key joined by one ':' (as 'securesess keys export' prints them)"
        )
    return decode_key(static, what), decode_key(signing, "signing key")
