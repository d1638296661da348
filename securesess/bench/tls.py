"""Throwaway TLS credentials and contexts for the SSLStream baseline.

The baseline is the TLS a careful operator would deploy against SecureStream:
TLS 1.3 only, both sides present certificates from a private CA (mutual
authentication, like Noise XX with pinned keys), ECDSA P-256 certificates
and X25519 key exchange (the same Diffie-Hellman as Noise_XX_25519).

The certificates are made in memory, but ``SSLContext.load_cert_chain`` only
reads files, so they are written as PEM into a directory the caller owns
(a temporary one); worker processes load their contexts from the same files.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["client_context", "server_context", "write_credentials"]

_CA = "tls-ca.pem"
# Long enough for any run, short enough that a leaked file is useless soon.
_VALIDITY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[x509.ExtensionType],
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # An hour of slack for a clock that is a little behind.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        # Key identifiers: OpenSSL's strict verification mode insists on them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def write_credentials(directory: Path, server_ip: str) -> None:
    """Make a CA and a server and a client certificate, as PEM files in ``directory``.

    The server certificate names ``server_ip`` (the address clients dial, which
    is what hostname checking compares against) and ``localhost``.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(
        "securesess bench CA", ca_key.public_key(), "securesess bench CA", ca_key, [], ca=True
    )
    _write(directory / _CA, ca_cert.public_bytes(serialization.Encoding.PEM))
    leaves: dict[str, list[x509.ExtensionType]] = {
        "server": [
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(server_ip))]
            ),
        ],
        "client": [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
    }
    for role, extensions in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(
            f"securesess bench {role}",
            key.public_key(),
            "securesess bench CA",
            ca_key,
            extensions,
            ca=False,
        )
        _write(directory / f"tls-{role}.pem", cert.public_bytes(serialization.Encoding.PEM))
        _write(
            directory / f"tls-{role}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def _context(purpose: int, directory: Path, role: str) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # With OpenSSL 3 this sets the key-exchange groups: X25519 only.
    context.set_ecdh_curve("X25519")
    context.load_cert_chain(directory / f"tls-{role}.pem", directory / f"tls-{role}.key")
    context.load_verify_locations(directory / _CA)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_context(directory: Path) -> ssl.SSLContext:
    """The server's context: TLS 1.3, and a client certificate is required."""
    context = _context(ssl.PROTOCOL_TLS_SERVER, directory, "server")
    # No session tickets: the benchmark never resumes a session, so tickets
    # would be wasted work in every handshake, and the unread tickets would
    # make a client that only sends reset the connection when it closes.
    context.num_tickets = 0
    return context


def client_context(directory: Path) -> ssl.SSLContext:
    """The client's context: TLS 1.3, verifies the server's certificate and name."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, directory, "client")
