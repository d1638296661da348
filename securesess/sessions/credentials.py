"""What a client seals with, and whom it lets into the epochs of its sessions.

A member's sealing state (:class:`~securesess.sessions.sealing.GroupState`)
signs with the identity's Ed25519 key and asks a *vouch* about every other
member a commit names. The vouch here is the client's own trust store, the
one it authenticated the hub with: a member is let in only if a pin or a
certificate from a trusted CA binds its static key to its signing key. What
the hub says about a member (its name, groups and key in JOINED) is never
enough: a hub that could vouch for members could add one of its own.
"""

from __future__ import annotations

from typing import Final, final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from keystore import Identity, Peer, TrustStore
from keystore.errors import KeystoreError
from securesess.sessions.sealing import Credential, GroupState, UntrustedMember

__all__ = ["Credentials"]


@final
class Credentials:
    """One client's keys and trust, for every session it joins."""

    __slots__ = ("_certificate", "_descriptions", "_identity", "trust")

    def __init__(self, identity: Identity, trust: TrustStore) -> None:
        if identity.signing_key is None:
            raise ValueError(
                "this identity has no signing key, which sealed sessions need: "
                "run `securesess keys upgrade` to add one"
            )
        self._identity: Final = identity
        #: Asked at every commit, so a reloaded trust store applies from the next.
        self.trust = trust
        certificate = identity.certificate
        self._certificate: Final = b"" if certificate is None else certificate.encoded
        # Each credential's name and groups, as our trust had them when it
        # first vouched (checking a certificate costs a signature).
        self._descriptions: dict[Credential, tuple[str | None, frozenset[str]]] = {}

    def group(self, session: str, member: int) -> GroupState:
        """A fresh sealing state for membership ``member`` of ``session``."""
        signing_key = self._identity.signing_key
        assert signing_key is not None, "checked when made"
        return GroupState(
            session,
            member,
            static_key=X25519PublicKey.from_public_bytes(self._identity.public_key),
            signing_key=signing_key,
            vouch=self.vouch,
            certificate=self._certificate,
        )

    def vouch(self, credential: Credential) -> None:
        """Whether our trust binds ``credential``'s static key to its signing key.

        Raises:
            UntrustedMember: it does not (or the key is revoked, the
                certificate expired, ...): the reason says which.
        """
        self._peer(credential)

    def _peer(self, credential: Credential) -> Peer:
        certificate = credential.certificate or None
        try:
            peer = self.trust.verify(credential.static_key, certificate)
        except KeystoreError as error:
            raise UntrustedMember(str(error)) from None
        if peer.signing_key is None:
            raise UntrustedMember(f"no signing key is pinned or certified for {peer}")
        if peer.signing_key != credential.signing_key:
            raise UntrustedMember(f"{peer} signs with another key than its pin or certificate says")
        return peer

    def describe(self, credential: Credential) -> tuple[str | None, frozenset[str]]:
        """The name and groups our trust gives ``credential`` (vouched for
        already: a commit that brought it in was applied).

        Raises:
            UntrustedMember: our trust no longer knows it.
        """
        known = self._descriptions.get(credential)
        if known is None:
            peer = self._peer(credential)
            known = self._descriptions[credential] = (peer.name, frozenset(peer.groups))
        return known
