"""Trust: which peers this process accepts, and what it knows about them.

A peer is trusted if its static key is pinned (like ssh's known_hosts), or
if it presents a valid certificate from a trusted CA (like Nebula). A
revocation list overrides both; it names keys, never encodings, so
re-encoding a certificate cannot dodge it.

A trusted CA may carry a validity window of its own, as a Nebula CA
certificate does. Outside it, nothing the CA signed is accepted, so a CA key
stolen after its expiry certifies no one; and a certificate whose window
reaches outside its CA's is refused, since the CA never issues one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import final

from handshake import InvalidKeyError
from keystore.certificate import Certificate, iso_time
from keystore.encoding import fingerprint
from keystore.errors import (
    AuthorityExpiredError,
    AuthorityNotYetValidError,
    CertificateError,
    CertificateExpiredError,
    CertificateMismatchError,
    CertificateNotYetValidError,
    DuplicatePeerError,
    InvalidCertificateError,
    RevokedError,
    UnknownAuthorityError,
    UnknownNameError,
    UntrustedPeerError,
)

__all__ = ["Peer", "TrustStore"]


@final
@dataclass(frozen=True, slots=True)
class Peer:
    """An authenticated peer: its static key, and what vouches for it.

    ``certificate`` is the CA certificate it presented, or None when it is
    trusted because its key is pinned. ``signing_key`` is its Ed25519
    public key as what vouches for it binds it: the pin's when it is pinned
    (a pin wins, whatever certificate it shows), else a version 2
    certificate's; None when neither binds one. It never comes from the
    peer's word alone, nor from whoever relays its messages.
    """

    name: str | None
    public_key: bytes
    groups: frozenset[str] = field(default_factory=frozenset)
    certificate: Certificate | None = None
    signing_key: bytes | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def __str__(self) -> str:
        return f"{self.name or 'unnamed peer'} ({self.fingerprint})"


def _key(value: bytes | bytearray | memoryview, what: str) -> bytes:
    key = bytes(value)
    if len(key) != 32:
        raise InvalidKeyError(f"a {what} is 32 bytes, got {len(key)}")
    return key


@final
class TrustStore:
    """Pinned peers, trusted CAs and revocations.

    :meth:`verify` is the one question the channel layer asks: given the key a
    peer proved it holds, and the certificate it showed, who is it, if anyone
    we trust?
    """

    __slots__ = (
        "_by_key",
        "_by_name",
        "_ca_windows",
        "_cas",
        "_revoked_keys",
        "_revoked_serials",
    )

    def __init__(self) -> None:
        self._by_name: dict[str, Peer] = {}
        self._by_key: dict[bytes, Peer] = {}
        self._cas: dict[str, bytes] = {}
        self._ca_windows: dict[bytes, tuple[int | None, int | None]] = {}
        self._revoked_keys: set[bytes] = set()
        self._revoked_serials: set[tuple[bytes, int]] = set()

    def __repr__(self) -> str:
        return (
            f"<TrustStore with {len(self._by_name)} pinned peer(s), {len(self._cas)} CA(s), "
            f"{len(self._revoked_keys) + len(self._revoked_serials)} revocation(s)>"
        )

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Peer]:
        return iter(self._by_name.values())

    # -- pinned peers -------------------------------------------------------------

    def add_peer(
        self,
        name: str,
        public_key: bytes | bytearray | memoryview,
        groups: Iterable[str] = (),
        *,
        signing_key: bytes | bytearray | memoryview | None = None,
    ) -> Peer:
        """Pin ``public_key`` under ``name``, and with it the peer's Ed25519
        ``signing_key`` if given.

        Raises:
            DuplicatePeerError: the name, the key or the signing key is already pinned.
            handshake.InvalidKeyError: a key is not 32 bytes.
        """
        key = _key(public_key, "public key")
        signer = None if signing_key is None else _key(signing_key, "signing key")
        if not name:
            raise ValueError("a pinned peer needs a non-empty name")
        if name in self._by_name:
            raise DuplicatePeerError(f"a peer named {name!r} is already pinned")
        if key in self._by_key:
            raise DuplicatePeerError(f"that key is already pinned as {self._by_key[key].name!r}")
        # Two pins sharing a signing key could each sign as the other.
        for other in self._by_name.values():
            if signer is not None and other.signing_key == signer:
                raise DuplicatePeerError(f"that signing key is already pinned as {other.name!r}")
        peer = Peer(name, key, frozenset(groups), signing_key=signer)
        self._by_name[name] = peer
        self._by_key[key] = peer
        return peer

    def remove_peer(self, name: str) -> Peer:
        """Unpin a peer.

        Raises:
            UnknownNameError: no peer has that name.
        """
        try:
            peer = self._by_name.pop(name)
        except KeyError:
            raise UnknownNameError(f"no pinned peer is named {name!r}") from None
        del self._by_key[peer.public_key]
        return peer

    def peer_by_name(self, name: str) -> Peer | None:
        return self._by_name.get(name)

    def peer_by_key(self, public_key: bytes) -> Peer | None:
        return self._by_key.get(bytes(public_key))

    # -- certificate authorities and revocation ----------------------------------------

    def add_ca(
        self,
        name: str,
        public_key: bytes | bytearray | memoryview,
        *,
        not_before: int | None = None,
        not_after: int | None = None,
    ) -> None:
        """Trust certificates signed by the Ed25519 key ``public_key``, from
        ``not_before`` to ``not_after`` (Unix seconds, inclusive; None: no
        bound), the CA's own validity.

        Raises:
            DuplicatePeerError: the name or the key is already trusted.
            ValueError: the window runs backwards or a bound is not a
                64-bit unsigned integer.
        """
        key = _key(public_key, "CA public key")
        for bound in (not_before, not_after):
            if bound is not None and (type(bound) is not int or not 0 <= bound < 2**64):
                raise ValueError(f"a CA's validity bound is Unix seconds, not {bound!r}")
        if not_before is not None and not_after is not None and not_before > not_after:
            raise ValueError("a CA's validity window must run forwards")
        if name in self._cas:
            raise DuplicatePeerError(f"a CA named {name!r} is already trusted")
        if key in self._cas.values():
            raise DuplicatePeerError("that CA key is already trusted")
        self._cas[name] = key
        self._ca_windows[key] = (not_before, not_after)

    def ca_validity(self, name: str) -> tuple[int | None, int | None]:
        """CA ``name``'s own ``(not_before, not_after)``; None where unbounded.

        Raises:
            UnknownNameError: no trusted CA has that name.
        """
        try:
            return self._ca_windows[self._cas[name]]
        except KeyError:
            raise UnknownNameError(f"no trusted CA is named {name!r}") from None

    def cas(self) -> dict[str, bytes]:
        """The trusted CAs, by name."""
        return dict(self._cas)

    def revoke_key(self, public_key: bytes | bytearray | memoryview) -> None:
        """Distrust a peer's static key, or every certificate of a CA key."""
        self._revoked_keys.add(_key(public_key, "public key"))

    def revoke_serial(self, ca_key: bytes | bytearray | memoryview, serial: int) -> None:
        """Distrust the certificate with ``serial`` issued by ``ca_key``."""
        self._revoked_serials.add((_key(ca_key, "CA public key"), serial))

    def is_revoked(self, public_key: bytes) -> bool:
        return public_key in self._revoked_keys

    def revoked_keys(self) -> frozenset[bytes]:
        """The revoked static and CA keys."""
        return frozenset(self._revoked_keys)

    # -- the question ---------------------------------------------------------------

    def verify(
        self,
        public_key: bytes,
        certificate: Certificate | bytes | None = None,
        *,
        now: float | None = None,
    ) -> Peer:
        """The trusted peer holding ``public_key``, vouched for by a pin or by
        ``certificate``.

        Raises:
            RevokedError: the key, the certificate's serial or its CA is revoked.
            UntrustedPeerError: the key is not pinned and no certificate was shown.
            InvalidCertificateError: the certificate is malformed or badly signed.
            CertificateMismatchError: the certificate is for another key.
            UnknownAuthorityError: the certificate's CA is not trusted.
            CertificateExpiredError, CertificateNotYetValidError: outside its
                window; their subclasses AuthorityExpiredError and
                AuthorityNotYetValidError: outside its CA's.
        """
        key_name = fingerprint(public_key)
        if public_key in self._revoked_keys:
            raise RevokedError(f"key {key_name} has been revoked")
        pinned = self._by_key.get(public_key)
        if pinned is not None:
            return pinned
        if certificate is None:
            raise UntrustedPeerError(f"key {key_name} is not pinned and showed no certificate")
        if not isinstance(certificate, Certificate):
            try:
                certificate = Certificate.decode(certificate)
            except CertificateError as exc:
                raise InvalidCertificateError(str(exc)) from None
        return self._check_certificate(public_key, certificate, now)

    def verify_certificate(self, certificate: Certificate, *, now: float | None = None) -> Peer:
        """Check a certificate on its own merits, whatever pins its key may have.

        Raises the errors of :meth:`verify`, except the missing-certificate one.
        """
        key = certificate.subject_key
        if key in self._revoked_keys:
            raise RevokedError(f"key {fingerprint(key)} has been revoked")
        return self._check_certificate(key, certificate, now)

    def _check_certificate(self, public_key: bytes, cert: Certificate, now: float | None) -> Peer:
        subject = f"the certificate for {cert.name!r} (serial {cert.serial})"
        if cert.subject_key != public_key:
            raise CertificateMismatchError(
                f"{subject} is for key {fingerprint(cert.subject_key)}, but the peer proved "
                f"key {fingerprint(public_key)}"
            )
        ca_name = next((name for name, key in self._cas.items() if key == cert.issuer), None)
        if ca_name is None:
            raise UnknownAuthorityError(
                f"{subject} is signed by CA {fingerprint(cert.issuer)}, which is not trusted"
            )
        try:
            cert.verify_signature()
        except CertificateError as exc:
            raise InvalidCertificateError(f"{subject}: {exc}") from None
        if cert.issuer in self._revoked_keys:
            raise RevokedError(f"{subject} is from CA {ca_name!r}, which has been revoked")
        if (cert.issuer, cert.serial) in self._revoked_serials:
            raise RevokedError(f"{subject} has been revoked")
        moment = time.time() if now is None else now
        ca_not_before, ca_not_after = self._ca_windows[cert.issuer]
        if ca_not_after is not None:
            if moment > ca_not_after:
                raise AuthorityExpiredError(
                    f"{subject} is from CA {ca_name!r}, which expired at {iso_time(ca_not_after)}"
                )
            if cert.not_after > ca_not_after:
                raise InvalidCertificateError(
                    f"{subject} outlives CA {ca_name!r}: it is valid until "
                    f"{iso_time(cert.not_after)}, the CA only until {iso_time(ca_not_after)}"
                )
        if ca_not_before is not None:
            if moment < ca_not_before:
                raise AuthorityNotYetValidError(
                    f"{subject} is from CA {ca_name!r}, which is not valid until "
                    f"{iso_time(ca_not_before)}"
                )
            if cert.not_before < ca_not_before:
                raise InvalidCertificateError(
                    f"{subject} starts before CA {ca_name!r}: it is valid from "
                    f"{iso_time(cert.not_before)}, the CA only from {iso_time(ca_not_before)}"
                )
        if moment < cert.not_before:
            raise CertificateNotYetValidError(
                f"{subject} is not valid until {cert.describe()['not_before']}"
            )
        if moment > cert.not_after:
            raise CertificateExpiredError(f"{subject} expired at {cert.describe()['not_after']}")
        return Peer(cert.name, public_key, frozenset(cert.groups), cert, cert.signing_key)
