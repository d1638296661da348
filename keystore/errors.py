"""Errors of the keystore layer: one base class, one subclass per mistake.

Every message says what is wrong and, where it can, what to do about it, and
none contains key material.
"""

from __future__ import annotations

__all__ = [
    "AuthorityExpiredError",
    "AuthorityNotYetValidError",
    "CertificateError",
    "CertificateExpiredError",
    "CertificateMismatchError",
    "CertificateNotYetValidError",
    "DuplicateNameError",
    "DuplicatePeerError",
    "InsecurePermissionsError",
    "InvalidCertificateError",
    "KeystoreCorruptError",
    "KeystoreError",
    "KeystoreWriteError",
    "MalformedKeyError",
    "RevocationListMissingError",
    "RevokedError",
    "UnknownAuthorityError",
    "UnknownNameError",
    "UntrustedPeerError",
    "UpgradeRequiredError",
    "WrongPassphraseError",
]


class KeystoreError(Exception):
    """Base class of every error raised by :mod:`keystore`."""


class DuplicateNameError(KeystoreError, ValueError):
    """Something with that name already exists."""


class DuplicatePeerError(DuplicateNameError):
    """A peer name or key is already in the trust store."""


class UnknownNameError(KeystoreError, KeyError):
    """Nothing with that name exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WrongPassphraseError(KeystoreError):
    """The passphrase does not decrypt the private key."""


class KeystoreWriteError(KeystoreError):
    """A file of the keystore cannot be written: a read-only file system, a
    directory this user may not write, a full disk."""


class KeystoreCorruptError(KeystoreError):
    """A keystore file is truncated, malformed or altered."""


class UpgradeRequiredError(KeystoreError):
    """An identity's key file is in an earlier format, without a signing
    key, and could not be upgraded where it is (the keystore is read-only).

    The message names the command that upgrades it.
    """


class MalformedKeyError(KeystoreError, ValueError):
    """Text that should be a key (base64, or a public key token) is not one."""


class RevocationListMissingError(KeystoreCorruptError):
    """The keystore keeps a revocation list, and it is gone.

    Read as "nothing revoked", its absence would trust again every key and
    certificate it named.
    """


class InsecurePermissionsError(KeystoreError):
    """A private key file or the keystore directory is open to other users."""


class CertificateError(KeystoreError, ValueError):
    """A certificate is malformed, or its signature does not verify."""


class UntrustedPeerError(KeystoreError):
    """A peer's key is neither pinned nor vouched for by a trusted authority."""


class InvalidCertificateError(UntrustedPeerError):
    """The certificate a peer showed is malformed or badly signed."""


class UnknownAuthorityError(UntrustedPeerError):
    """The certificate's issuer is not a trusted CA."""


class CertificateExpiredError(UntrustedPeerError):
    """The certificate's validity window has ended."""


class CertificateNotYetValidError(UntrustedPeerError):
    """The certificate's validity window has not begun."""


class AuthorityExpiredError(CertificateExpiredError):
    """The validity of the CA that issued the certificate has ended."""


class AuthorityNotYetValidError(CertificateNotYetValidError):
    """The validity of the CA that issued the certificate has not begun."""


class RevokedError(UntrustedPeerError):
    """The key, the certificate's serial or its CA has been revoked."""


class CertificateMismatchError(UntrustedPeerError):
    """The certificate is for a different key than the one the peer proved."""
