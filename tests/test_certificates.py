"""Certificates and the trust decisions made with them, on their own and in
a handshake."""

from __future__ import annotations

import contextlib
import time

import pytest
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from keystore import (
    AuthorityExpiredError,
    AuthorityNotYetValidError,
    Certificate,
    CertificateError,
    CertificateExpiredError,
    CertificateMismatchError,
    CertificateNotYetValidError,
    Identity,
    InvalidCertificateError,
    RevokedError,
    TrustStore,
    UnknownAuthorityError,
    UntrustedPeerError,
    fingerprint,
    sign_certificate,
)
from securesess import PeerNotTrusted, PeerRejected, SecureStream
from tests.streams import handshake_both

NOW = int(time.time())
DAY = 86_400


class CA:
    def __init__(self, name: str = "ops-ca") -> None:
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.public_key = self.key.public_key().public_bytes_raw()
        self.serial = 0

    def issue(
        self,
        identity: Identity,
        *,
        groups: tuple[str, ...] = (),
        start: int = -DAY,
        days: int = 90,
        version: int = 1,
    ) -> Certificate:
        self.serial += 1
        return sign_certificate(
            self.key,
            subject_key=identity.public_key,
            signing_key=identity.signing_public_key if version == 2 else None,
            name=identity.name or "anonymous",
            groups=groups,
            serial=self.serial,
            not_before=NOW + start,
            not_after=NOW + start + days * DAY,
        )


def test_a_certificate_round_trips_and_verifies() -> None:
    ca, api = CA(), Identity.generate("api")
    certificate = ca.issue(api, groups=("web", "ops"))
    decoded = Certificate.decode(certificate.encoded)
    assert decoded == certificate
    assert decoded.groups == ("ops", "web")
    decoded.verify_signature()
    summary = decoded.describe()
    assert summary["name"] == "api"
    assert summary["serial"] == 1
    assert str(summary["not_after"]).endswith("Z")


def test_a_version_2_certificate_round_trips_and_verifies_with_the_signing_key() -> None:
    ca, api = CA(), Identity.generate("api")
    certificate = ca.issue(api, groups=("web",), version=2)
    assert certificate.encoded[0] == 2
    assert certificate.encoded[1:33] == api.public_key
    assert certificate.encoded[33:65] == api.signing_public_key
    decoded = Certificate.decode(certificate.encoded)
    assert decoded == certificate
    assert (decoded.version, decoded.signing_key) == (2, api.signing_public_key)
    decoded.verify_signature()
    assert decoded.describe()["version"] == 2
    assert decoded.describe()["signing_key"] == fingerprint(api.signing_public_key or b"")
    # 32 bytes more than version 1, and nothing else differs in size.
    assert len(decoded.encoded) == len(ca.issue(api, groups=("web",)).encoded) + 32 == 194


def test_a_version_1_certificate_still_decodes_and_verifies_without_a_signing_key() -> None:
    ca, api = CA(), Identity.generate("api")
    certificate = ca.issue(api)
    assert certificate.encoded[0] == 1
    decoded = Certificate.decode(certificate.encoded)
    decoded.verify_signature()
    assert (decoded.version, decoded.signing_key) == (1, None)
    assert decoded.describe()["signing_key"] is None
    assert api.with_certificate(decoded).certificate == decoded


def test_a_version_2_certificate_with_a_changed_signing_key_does_not_verify() -> None:
    ca, api = CA(), Identity.generate("api")
    encoded = bytearray(ca.issue(api, version=2).encoded)
    encoded[40] ^= 1  # inside the signing key
    forged = Certificate.decode(bytes(encoded))
    assert forged.signing_key != api.signing_public_key
    with pytest.raises(CertificateError, match="signature is not valid"):
        forged.verify_signature()
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    with pytest.raises(InvalidCertificateError, match="signature is not valid"):
        trust.verify(api.public_key, bytes(encoded))


def test_a_body_signed_as_version_1_does_not_verify_as_version_2() -> None:
    ca, api = CA(), Identity.generate("api")
    # A version 1 certificate relabelled: read in the version 2 layout, its
    # bytes fall apart, or no longer hold what was signed.
    for groups in ((), ("web",), ("a" * 31,)):
        relabelled = b"\x02" + ca.issue(api, groups=groups).encoded[1:]
        with pytest.raises(CertificateError):
            Certificate.decode(relabelled).verify_signature()
    # A version 2 layout signed under the version 1 domain: each version's
    # domain is its own, so the signature is good for neither.
    genuine = ca.issue(api, version=2)
    body = genuine.encoded[:-64]
    for domain in (b"securesess certificate v1\0", b""):
        forged = Certificate.decode(body + ca.key.sign(domain + body))
        with pytest.raises(CertificateError, match="signature is not valid"):
            forged.verify_signature()


def test_an_identity_refuses_a_version_2_certificate_for_another_signing_key() -> None:
    ca, api = CA(), Identity.generate("api")
    certificate = ca.issue(api, version=2)
    assert api.with_certificate(certificate).certificate == certificate
    same_static = Identity(api.keypair, "api", signing_key=Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="another signing key"):
        same_static.with_certificate(certificate)
    without = Identity(api.keypair, "api")
    with pytest.raises(ValueError, match="another signing key"):
        without.with_certificate(certificate)


def test_trust_by_certificate_names_the_peer() -> None:
    ca, api = CA(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    peer = trust.verify(api.public_key, ca.issue(api, groups=("web",)).encoded)
    assert (peer.name, peer.groups) == ("api", frozenset({"web"}))
    assert peer.certificate is not None


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("no certificate", UntrustedPeerError, "not pinned and showed no certificate"),
        ("unknown CA", UnknownAuthorityError, "which is not trusted"),
        ("someone else's", CertificateMismatchError, "but the peer proved key"),
        ("expired", CertificateExpiredError, "expired at"),
        ("not yet valid", CertificateNotYetValidError, "is not valid until"),
        ("key revoked", RevokedError, "has been revoked"),
        ("serial revoked", RevokedError, r"serial 1\) has been revoked"),
        ("CA revoked", RevokedError, "from CA 'ops-ca', which has been revoked"),
        ("bad signature", InvalidCertificateError, "signature is not valid"),
        ("garbage", InvalidCertificateError, "too short"),
    ],
)
def test_each_refusal_has_a_precise_reason(case: str, error: type[Exception], message: str) -> None:
    ca, api, other = CA(), Identity.generate("api"), Identity.generate("other")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    shown: bytes | None = ca.issue(api).encoded
    if case == "no certificate":
        shown = None
    elif case == "unknown CA":
        shown = CA().issue(api).encoded
    elif case == "someone else's":
        shown = ca.issue(other).encoded
    elif case == "expired":
        shown = ca.issue(api, start=-100 * DAY, days=90).encoded
    elif case == "not yet valid":
        shown = ca.issue(api, start=DAY).encoded
    elif case == "key revoked":
        trust.revoke_key(api.public_key)
    elif case == "serial revoked":
        trust.revoke_serial(ca.public_key, 1)
    elif case == "CA revoked":
        trust.revoke_key(ca.public_key)
    elif case == "bad signature":
        assert shown is not None
        shown = shown[:-1] + bytes([shown[-1] ^ 1])
    elif case == "garbage":
        shown = b"\x01\x02"
    with pytest.raises(error, match=message):
        trust.verify(api.public_key, shown)


def test_revoking_a_key_overrides_a_pin() -> None:
    api = Identity.generate("api")
    trust = TrustStore()
    trust.add_peer("api", api.public_key)
    trust.revoke_key(api.public_key)
    with pytest.raises(RevokedError):
        trust.verify(api.public_key)


def test_re_encoding_cannot_dodge_a_revocation() -> None:
    # Revocation is by key and by (CA, serial), never by the bytes shown.
    ca, api = CA(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    first = ca.issue(api)
    trust.revoke_key(api.public_key)
    second = ca.issue(api, groups=("new",))
    assert first.encoded != second.encoded
    with pytest.raises(RevokedError):
        trust.verify(api.public_key, second.encoded)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x03" + b[1:], "unsupported certificate version 3"),
        (lambda b: b[:-70], "too short"),
        (lambda b: b + b"\x00", "bytes after its groups"),
        (lambda b: b[:89] + b"\x00" + b[90:], "malformed name"),
    ],
)
def test_malformed_certificates(mutate: object, message: str) -> None:
    encoded = CA().issue(Identity.generate("api")).encoded
    with pytest.raises(CertificateError, match=message):
        Certificate.decode(mutate(encoded))  # type: ignore[operator]


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        Certificate.decode(data)


def test_an_identity_refuses_a_certificate_for_another_key() -> None:
    ca, api, other = CA(), Identity.generate("api"), Identity.generate("other")
    with pytest.raises(ValueError, match="another key"):
        api.with_certificate(ca.issue(other))


# -- in a handshake -----------------------------------------------------------------


async def test_a_handshake_tells_each_side_the_signing_key_the_ca_bound() -> None:
    ca = CA()
    api, db = Identity.generate("api"), Identity.generate("db")
    api = api.with_certificate(ca.issue(api, version=2))
    db = db.with_certificate(ca.issue(db))  # version 1: no signing key to learn
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    client, server = _streams(api, db, trust, trust)
    await handshake_both(client, server)
    assert server.peer.signing_key == api.signing_public_key
    assert client.peer.signing_key is None


def _streams(
    client: Identity, server: Identity, client_trust: TrustStore, server_trust: TrustStore
) -> tuple[SecureStream, SecureStream]:
    left, right = trio.testing.memory_stream_pair()
    return (
        SecureStream(left, identity=client, trust=client_trust),
        SecureStream(right, identity=server, trust=server_trust, server_side=True),
    )


async def test_mutual_authentication_by_certificate() -> None:
    ca = CA()
    api = Identity.generate("api")
    db = Identity.generate("db")
    api = api.with_certificate(ca.issue(api, groups=("web",)))
    db = db.with_certificate(ca.issue(db, groups=("storage",)))
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    client, server = _streams(api, db, trust, trust)
    await handshake_both(client, server)
    assert (client.peer.name, client.peer.groups) == ("db", frozenset({"storage"}))
    assert (server.peer.name, server.peer.groups) == ("api", frozenset({"web"}))
    assert server.peer.certificate is not None
    await client.send_all(b"certified")
    assert await server.receive_some() == b"certified"


async def test_an_expired_client_certificate_is_refused_with_the_reason() -> None:
    ca = CA()
    api, db = Identity.generate("api"), Identity.generate("db")
    api = api.with_certificate(ca.issue(api, start=-100 * DAY, days=90))
    db = db.with_certificate(ca.issue(db))
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    client, server = _streams(api, db, trust, trust)
    errors: list[BaseException] = []

    async def run(stream: SecureStream) -> None:
        try:
            await stream.do_handshake()
        except Exception as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, client)
        nursery.start_soon(run, server)
    assert any(isinstance(e, PeerRejected) and "expired" in e.reason for e in errors)
    assert any(isinstance(e, PeerNotTrusted) for e in errors)


async def test_a_client_refuses_a_server_certified_by_an_unknown_ca() -> None:
    ours, theirs = CA("ours"), CA("theirs")
    api, db = Identity.generate("api"), Identity.generate("db")
    api = api.with_certificate(ours.issue(api))
    db = db.with_certificate(theirs.issue(db))
    trust = TrustStore()
    trust.add_ca(ours.name, ours.public_key)
    client, _server = _streams(api, db, trust, trust)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_server.do_handshake)
            with pytest.raises(PeerNotTrusted, match="not trusted"):
                await client.do_handshake()
            nursery.cancel_scope.cancel()


# -- the CA's own validity ---------------------------------------------------------------


def test_a_certificate_from_a_ca_whose_validity_has_ended_is_refused() -> None:
    # The CA key was stolen after it expired: whatever window the thief
    # writes into a certificate, the CA's own has ended.
    ca, api = CA(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key, not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    forged = ca.issue(api, start=-60, days=30)
    with pytest.raises(AuthorityExpiredError, match="is from CA 'ops-ca', which expired at"):
        trust.verify(api.public_key, forged)
    with pytest.raises(CertificateExpiredError):  # what callers that check expiry already catch
        trust.verify_certificate(forged)
    # While the CA was valid, what it signed was accepted.
    issued = ca.issue(api, start=-300 * DAY, days=30)
    assert trust.verify(api.public_key, issued, now=NOW - 280 * DAY).name == "api"


def test_a_certificate_from_a_ca_whose_validity_has_not_begun_is_refused() -> None:
    ca, api = CA(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key, not_before=NOW + DAY, not_after=NOW + 400 * DAY)
    certificate = ca.issue(api, start=2 * DAY)
    with pytest.raises(AuthorityNotYetValidError, match="which is not valid until"):
        trust.verify(api.public_key, certificate)
    assert trust.verify(api.public_key, certificate, now=NOW + 3 * DAY).name == "api"


@pytest.mark.parametrize(
    ("start", "days", "message"),
    [(-DAY, 400, "outlives CA 'ops-ca'"), (-10 * DAY, 30, "starts before CA 'ops-ca'")],
)
def test_a_certificate_reaching_outside_its_cas_window_is_refused(
    start: int, days: int, message: str
) -> None:
    # The CA never signs one (ca sign clamps to its expiry), so one is forged,
    # and leaves a connection admitted by it open after the CA expires.
    ca, api = CA(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key, not_before=NOW - 2 * DAY, not_after=NOW + 100 * DAY)
    with pytest.raises(InvalidCertificateError, match=message):
        trust.verify(api.public_key, ca.issue(api, start=start, days=days))


def test_a_ca_without_a_window_is_trusted_until_removed() -> None:
    ca, api = CA(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca(ca.name, ca.public_key)
    assert trust.ca_validity(ca.name) == (None, None)
    assert trust.verify(api.public_key, ca.issue(api, days=100_000)).name == "api"


@pytest.mark.parametrize(
    ("window", "message"),
    [((NOW, NOW - 1), "must run forwards"), ((None, -1), "Unix seconds"), ((1.5, None), "Unix")],
)
def test_a_bad_ca_window_is_refused(window: tuple[object, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrustStore().add_ca("ops", bytes(32), not_before=window[0], not_after=window[1])  # type: ignore[arg-type]
