"""Identities and trust: key pairs, pinned peers, a small CA and revocation.

Files only, never the network.
"""

from keystore.certificate import Certificate, sign_certificate
from keystore.encoding import decode_key, encode_key, fingerprint
from keystore.errors import (
    AuthorityExpiredError,
    AuthorityNotYetValidError,
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
    RevocationListMissingError,
    RevokedError,
    UnknownAuthorityError,
    UnknownNameError,
    UntrustedPeerError,
    WrongPassphraseError,
)
from keystore.identity import Identity
from keystore.sealing import Argon2idCost
from keystore.store import Keystore, armor_certificate, default_home, read_certificate_file
from keystore.trust import Peer, TrustStore

__all__ = [
    "Argon2idCost",
    "AuthorityExpiredError",
    "AuthorityNotYetValidError",
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
    "Keystore",
    "KeystoreCorruptError",
    "KeystoreError",
    "Peer",
    "RevocationListMissingError",
    "RevokedError",
    "TrustStore",
    "UnknownAuthorityError",
    "UnknownNameError",
    "UntrustedPeerError",
    "WrongPassphraseError",
    "armor_certificate",
    "decode_key",
    "default_home",
    "encode_key",
    "fingerprint",
    "read_certificate_file",
    "sign_certificate",
]
