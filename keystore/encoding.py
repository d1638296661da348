"""How keys are written for people: fingerprints and base64 text."""

from __future__ import annotations

import base64
import binascii
import hashlib

__all__ = ["decode_key", "encode_key", "fingerprint"]


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
        ValueError: the text is not base64 of exactly 32 bytes.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not valid base64") from None
    if len(key) != 32:
        raise ValueError(f"a {what} is 32 bytes (44 base64 characters), got {len(key)} bytes")
    return key
