"""Identities and trust: key pairs, pinned peers (and later a small CA).

Files only, never the network.
"""

from keystore.errors import DuplicatePeerError, KeystoreError, UntrustedPeerError
from keystore.identity import Identity, fingerprint
from keystore.trust import Peer, TrustStore

__all__ = [
    "DuplicatePeerError",
    "Identity",
    "KeystoreError",
    "Peer",
    "TrustStore",
    "UntrustedPeerError",
    "fingerprint",
]
