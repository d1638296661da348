"""Identities and trust: key pairs, pinned peers, a small CA and revocation.

Files only, never the network.
"""

from keystore.certificate import Certificate, sign_certificate
from keystore.encoding import decode_key, encode_key, fingerprint
from keystore.errors import (
    CertificateError,
    CertificateExpiredError,
    CertificateMismatchError,
    CertificateNotYetValidError,
    DuplicateNameError,
    DuplicatePeerError,
    InsecurePermissionsError,
    InvalidCertificateError,
    KeystoreCorruptError,
    KeystoreError,
    RevokedError,
    UnknownAuthorityError,
    UnknownNameError,
    UntrustedPeerError,
    WrongPassphraseError,
)
from keystore.identity import Identity
from keystore.trust import Peer, TrustStore

__all__ = [
    "Certificate",
    "CertificateError",
    "CertificateExpiredError",
    "CertificateMismatchError",
    "CertificateNotYetValidError",
    "DuplicateNameError",
    "DuplicatePeerError",
    "Identity",
    "InsecurePermissionsError",
    "InvalidCertificateError",
    "KeystoreCorruptError",
    "KeystoreError",
    "Peer",
    "RevokedError",
    "TrustStore",
    "UnknownAuthorityError",
    "UnknownNameError",
    "UntrustedPeerError",
    "WrongPassphraseError",
    "decode_key",
    "encode_key",
    "fingerprint",
    "sign_certificate",
]
