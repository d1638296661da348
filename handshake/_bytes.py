"""Coercion of caller-supplied buffers.

Every public entry point accepts bytes, bytearray and memoryview (Trio's stream
checkers hand over memoryviews), so the checks live in one place.
"""

from __future__ import annotations

from typing import TypeAlias

from handshake.errors import InvalidKeyError

__all__ = ["BytesLike", "as_bytes", "as_key", "as_view"]

BytesLike: TypeAlias = bytes | bytearray | memoryview


def as_view(value: object, what: str) -> memoryview:
    """Return a flat byte view of ``value`` without copying it."""
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, not {type(value).__name__}") from None
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def as_bytes(value: object, what: str) -> bytes:
    """Return ``value`` as immutable bytes (copying only when it is not bytes)."""
    if type(value) is bytes:
        return value
    return as_view(value, what).tobytes()


def as_key(value: object, what: str, length: int = 32) -> bytes:
    """Return a key of exactly ``length`` bytes, or raise a typed error."""
    key = as_bytes(value, what)
    if len(key) != length:
        raise InvalidKeyError(f"{what} must be {length} bytes, got {len(key)}")
    return key
