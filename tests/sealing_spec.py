"""docs/protocol.md §10 written out again from the text alone, with nothing
from securesess.sessions.sealing but its key types: the tests read and make
commits and content with this, so the document and the code must agree."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

U64 = struct.Struct(">Q")
HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
CONTENT = b"securesess content v1\0"


def name_field(session: str) -> bytes:
    name = session.encode()
    return bytes([len(name)]) + name


def context(session: str, epoch: int, transcript: bytes) -> bytes:
    return name_field(session) + U64.pack(epoch) + transcript


def expand(secret: bytes, label: bytes, ctx: bytes) -> bytes:
    return HKDFExpand(SHA256(), 32, b"securesess session v1 " + label + b"\0" + ctx).derive(secret)


def transcript_after(previous: bytes, commit: bytes) -> bytes:
    return hashlib.sha256(b"securesess transcript v1\0" + previous + commit).digest()


def wrap_info(head: bytes, member: int) -> bytes:
    return b"securesess welcome v1\0" + hashlib.sha256(head).digest() + U64.pack(member)


@dataclass
class SpecEntry:
    member: int
    static: bytes
    signing: bytes
    membership: bytes
    binding: bytes
    certificate: bytes


@dataclass
class SpecCommit:
    session: str
    epoch: int
    previous: bytes
    committer: int
    head: bytes
    entries: list[SpecEntry]
    wraps: dict[int, bytes]
    confirmation: bytes
    signature: bytes


def parse_commit(data: bytes) -> SpecCommit:
    assert data[0] == 1
    name_len = data[1]
    session = data[2 : 2 + name_len].decode()
    at = 2 + name_len
    epoch, previous, committer = struct.unpack_from(">Q32sQ", data, at)
    at += 48
    (count,) = struct.unpack_from(">I", data, at)
    at += 4
    entries = []
    for _ in range(count):
        member, static, signing, membership, binding, cert_len = struct.unpack_from(
            ">Q32s32s32s64sH", data, at
        )
        at += 170
        entries.append(
            SpecEntry(member, static, signing, membership, binding, data[at : at + cert_len])
        )
        at += cert_len
    head = data[:at]
    wraps = {}
    for entry in entries:
        (length,) = struct.unpack_from(">H", data, at)
        wraps[entry.member] = data[at + 2 : at + 2 + length]
        at += 2 + length
    assert len(data) == at + 96
    return SpecCommit(
        session,
        epoch,
        previous,
        committer,
        head,
        entries,
        wraps,
        data[at : at + 32],
        data[at + 32 :],
    )


def opens_a_wrap(commit: bytes, key: X25519PrivateKey) -> bool:
    """Whether ``key`` opens any wrap of ``commit``, each with its own info."""
    parsed = parse_commit(commit)
    for member, wrap in parsed.wraps.items():
        try:
            HPKE.decrypt(wrap, key, info=wrap_info(parsed.head, member))
        except InvalidTag:
            continue
        return True
    return False


def open_commit(data: bytes, member: int, membership: X25519PrivateKey) -> bytes:
    """The epoch secret, once the signature and confirmation are checked."""
    commit = parse_commit(data)
    signer = next(e for e in commit.entries if e.member == commit.committer)
    Ed25519PublicKey.from_public_bytes(signer.signing).verify(
        commit.signature, b"securesess commit v1\0" + data[:-64]
    )
    secret = HPKE.decrypt(commit.wraps[member], membership, info=wrap_info(commit.head, member))
    confirmation = expand(
        secret, b"confirm", context(commit.session, commit.epoch, commit.previous)
    )
    assert hmac.compare_digest(confirmation, commit.confirmation)
    return secret


def build_commit(
    *,
    session: str,
    epoch: int,
    previous: bytes,
    committer: int,
    roster: bytes,
    membership_keys: dict[int, bytes],
    signing_key: Ed25519PrivateKey,
    secret: bytes,
    wrapped: dict[int, bytes] | None = None,
) -> bytes:
    """A commit of ``roster`` (its encoding) confirming ``secret``; ``wrapped``
    gives some members another secret than the confirmed one."""
    head = b"\1" + name_field(session) + U64.pack(epoch) + previous + U64.pack(committer) + roster
    parts = [head]
    for member, key in membership_keys.items():
        pt = (wrapped or {}).get(member, secret)
        wrap = HPKE.encrypt(
            pt, X25519PublicKey.from_public_bytes(key), info=wrap_info(head, member)
        )
        parts.append(struct.pack(">H", len(wrap)) + wrap)
    parts.append(expand(secret, b"confirm", context(session, epoch, previous)))
    unsigned = b"".join(parts)
    return unsigned + signing_key.sign(b"securesess commit v1\0" + unsigned)


def open_content(
    data: bytes,
    *,
    session: str,
    transcript: bytes,
    secret: bytes,
    signing_keys: dict[int, bytes],
    membership: X25519PrivateKey | None = None,
) -> bytes:
    """The body of sealed content, by §10.5."""
    version, kind, epoch, sender, generation = struct.unpack_from(">BBQQQ", data)
    assert version == 1
    start = 26 + {1: 0, 2: 8, 3: 1 + (data[26] if kind == 3 else 0)}[kind]
    ad = CONTENT + context(session, epoch, transcript) + data[:start]
    ciphertext, signature = data[start:-64], data[-64:]
    Ed25519PublicKey.from_public_bytes(signing_keys[sender]).verify(signature, ad + ciphertext)
    key = expand(secret, b"sender", context(session, epoch, transcript) + U64.pack(sender))
    inner = AESGCM(key).decrypt(b"\0\0\0\0" + U64.pack(generation), ciphertext, ad)
    if kind == 2:
        assert membership is not None
        return HPKE.decrypt(inner, membership, info=ad)
    return inner
