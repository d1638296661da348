"""Certificates: a CA's signed statement that a static key belongs to a name.

The model is Nebula's and OpenSSH's certificates, not X.509: a CA is a bare
Ed25519 key, and a certificate is a small, versioned binary record that binds
a peer's X25519 static key (and, from version 2, its Ed25519 signing key) to
a name, groups and a validity window. Encoding (all integers big-endian)::

    u8  version (1 or 2)
    32  subject key: the X25519 static public key
    32  signing key: the subject's Ed25519 public key (version 2 only)
    32  issuer: the CA's Ed25519 public key
    u64 serial, unique per CA
    u64 not_before, u64 not_after: Unix seconds, inclusive
    u8  len || name (UTF-8)
    u8  group count, then per group: u8 len || group (UTF-8)
    64  Ed25519 signature by the issuer over the version's domain || everything above

The domain prefix keeps a CA signature from ever being valid for anything
but a securesess certificate, and each version has its own, so a signature
made over one layout can never be read under another's.

Version 2 exists so that a receiver learns a member's signing key from the
CA, which it trusts, and never from whoever relays the member's messages.
A version 1 certificate still decodes and verifies; its ``signing_key`` is
None.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keystore.encoding import fingerprint
from keystore.errors import CertificateError

__all__ = ["VERSION", "Certificate", "iso_time", "sign_certificate"]

#: The newest certificate version: what :func:`sign_certificate` issues given a signing key.
VERSION: Final = 2
_DOMAINS: Final = {1: b"securesess certificate v1\0", 2: b"securesess certificate v2\0"}
_FIXED: Final = {1: struct.Struct(">B32s32sQQQ"), 2: struct.Struct(">B32s32s32sQQQ")}
_SIGNATURE_LEN: Final = 64
_MAX_TEXT: Final = 255
_MAX_GROUPS: Final = 255


def _text(value: str, what: str) -> bytes:
    encoded = value.encode("utf-8")
    if not encoded or len(encoded) > _MAX_TEXT:
        raise ValueError(f"a {what} is 1 to {_MAX_TEXT} bytes of UTF-8, not {len(encoded)}")
    return encoded


@final
@dataclass(frozen=True, slots=True)
class Certificate:
    """A decoded certificate. Decoding checks the format, not the signature:
    :meth:`verify_signature` (or a TrustStore) does that.

    ``signing_key`` is the subject's Ed25519 public key in a version 2
    certificate, None in a version 1 one.
    """

    subject_key: bytes
    issuer: bytes
    serial: int
    not_before: int
    not_after: int
    name: str
    groups: tuple[str, ...]
    signature: bytes
    encoded: bytes
    signing_key: bytes | None = None

    @property
    def version(self) -> int:
        return 1 if self.signing_key is None else 2

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Certificate:
        """Parse a certificate's binary encoding.

        Raises:
            CertificateError: the bytes are not a well-formed certificate.
        """
        raw = bytes(data)
        if len(raw) < _FIXED[1].size + 2 + _SIGNATURE_LEN:
            raise CertificateError("a certificate is too short")
        version = raw[0]
        layout = _FIXED.get(version)
        if layout is None:
            raise CertificateError(f"unsupported certificate version {version}")
        if len(raw) < layout.size + 2 + _SIGNATURE_LEN:
            raise CertificateError("a certificate is too short")
        signing: bytes | None = None
        if version == 1:
            _, subject, issuer, serial, not_before, not_after = layout.unpack_from(raw)
        else:
            _, subject, signing, issuer, serial, not_before, not_after = layout.unpack_from(raw)
        pos = layout.size
        body_end = len(raw) - _SIGNATURE_LEN

        def text() -> str:
            nonlocal pos
            if pos >= body_end:
                raise CertificateError("a certificate ends inside its names")
            length = raw[pos]
            if length == 0 or pos + 1 + length > body_end:
                raise CertificateError("a certificate has a malformed name or group")
            value = raw[pos + 1 : pos + 1 + length]
            pos += 1 + length
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise CertificateError("a certificate name or group is not UTF-8") from None

        name = text()
        if pos >= body_end:
            raise CertificateError("a certificate ends before its groups")
        count = raw[pos]
        pos += 1
        groups = tuple(text() for _ in range(count))
        if pos != body_end:
            raise CertificateError("a certificate has bytes after its groups")
        if not_before > not_after:
            raise CertificateError("a certificate's validity window ends before it starts")
        return cls(
            subject_key=subject,
            issuer=issuer,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            name=name,
            groups=groups,
            signature=raw[body_end:],
            encoded=raw,
            signing_key=signing,
        )

    def verify_signature(self) -> None:
        """Raises CertificateError unless the issuer's key signed this certificate."""
        signed = _DOMAINS[self.version] + self.encoded[:-_SIGNATURE_LEN]
        try:
            Ed25519PublicKey.from_public_bytes(self.issuer).verify(self.signature, signed)
        except (InvalidSignature, ValueError):
            raise CertificateError("the certificate's signature is not valid") from None

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now <= self.not_after

    def describe(self) -> dict[str, object]:
        """A readable summary (for ``ca print`` and ``--json``)."""
        return {
            "version": self.version,
            "name": self.name,
            "groups": list(self.groups),
            "serial": self.serial,
            "subject_key": fingerprint(self.subject_key),
            "signing_key": None if self.signing_key is None else fingerprint(self.signing_key),
            "issuer": fingerprint(self.issuer),
            "not_before": iso_time(self.not_before),
            "not_after": iso_time(self.not_after),
        }


def iso_time(timestamp: int) -> str:
    """Unix seconds as an ISO 8601 UTC time (``2036-12-07T12:00:00Z``), for people."""
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        # The field is 64 bits; a date past year 9999 has no ISO form, and
        # a certificate's summary (in an error message, say) must not fail.
        return f"{timestamp} s after 1970"


def sign_certificate(
    ca_key: Ed25519PrivateKey,
    *,
    subject_key: bytes,
    signing_key: bytes | None = None,
    name: str,
    groups: Iterable[str] = (),
    serial: int,
    not_before: int,
    not_after: int,
) -> Certificate:
    """Issue a certificate for ``subject_key`` signed by ``ca_key``: version
    2, binding the subject's Ed25519 ``signing_key`` too, when it is given;
    version 1 otherwise."""
    if len(subject_key) != 32:
        raise ValueError(f"a subject key is 32 bytes, got {len(subject_key)}")
    if signing_key is not None and len(signing_key) != 32:
        raise ValueError(f"a signing key is 32 bytes, got {len(signing_key)}")
    group_list = sorted(set(groups))
    if len(group_list) > _MAX_GROUPS:
        raise ValueError(f"a certificate holds at most {_MAX_GROUPS} groups")
    if not 0 <= serial < 2**64:
        raise ValueError("a serial is a 64-bit unsigned integer")
    if not 0 <= not_before <= not_after < 2**64:
        raise ValueError("the validity window must run forwards")
    issuer = ca_key.public_key().public_bytes_raw()
    if signing_key is None:
        version = 1
        fixed = _FIXED[1].pack(1, subject_key, issuer, serial, not_before, not_after)
    else:
        version = 2
        fixed = _FIXED[2].pack(
            2, subject_key, bytes(signing_key), issuer, serial, not_before, not_after
        )
    body = (
        fixed
        + _length_prefixed(_text(name, "name"))
        + bytes((len(group_list),))
        + b"".join(_length_prefixed(_text(group, "group")) for group in group_list)
    )
    return Certificate.decode(body + ca_key.sign(_DOMAINS[version] + body))


def _length_prefixed(value: bytes) -> bytes:
    return bytes((len(value),)) + value
