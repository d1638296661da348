"""Identities and trust on disk: key pairs, pinned peers, a small CA, revocation.

Files only, never the network. Filled in by the keystore layer; the handshake
layer below it is usable on its own in the meantime.
"""

__all__: list[str] = []
