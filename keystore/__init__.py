"""Identities and trust: key pairs, pinned peers, a small CA and revocation.

Files only, never the network.
"""

from keystore.certificate import Certificate, sign_certificate
from keystore.encoding import (
    decode_key,
    decode_public_token,
    encode_key,
    encode_public_token,
    fingerprint,
)
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
    KeystoreWriteError,
    MalformedKeyError,
    RevocationListMissingError,
    RevokedError,
    UnknownAuthorityError,
    UnknownNameError,
    UntrustedPeerError,
    UpgradeRequiredError,
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
    "KeystoreWriteError",
    "MalformedKeyError",
    "Peer",
    "RevocationListMissingError",
    "RevokedError",
    "TrustStore",
    "UnknownAuthorityError",
    "UnknownNameError",
    "UntrustedPeerError",
    "UpgradeRequiredError",
    "WrongPassphraseError",
    "armor_certificate",
    "decode_key",
    "decode_public_token",
    "default_home",
    "encode_key",
    "encode_public_token",
    "fingerprint",
    "read_certificate_file",
    "sign_certificate",
]
