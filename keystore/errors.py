"""Errors of the keystore layer: one base class, one subclass per mistake."""

from __future__ import annotations

__all__ = ["DuplicatePeerError", "KeystoreError", "UntrustedPeerError"]


class KeystoreError(Exception):
    """Base class of every error raised by :mod:`keystore`."""


class DuplicatePeerError(KeystoreError, ValueError):
    """A peer name or key is already in the trust store."""


class UntrustedPeerError(KeystoreError):
    """A peer's key is neither pinned nor vouched for by a trusted authority."""
