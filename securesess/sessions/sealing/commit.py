"""A commit: the signed start of an epoch, with its secret wrapped to each member.

A member the hub designates makes a fresh epoch secret and wraps it with
HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base
mode, single-shot, empty aad) to the membership key of each member of the
new roster (roster.py says why not to the static key). The hub orders the
commit among the session's messages; every member applies it at that
place, so all agree which content belongs to which epoch.
Encoding (big-endian)::

    u8  version (1)
    u8  len || session name (UTF-8)
    u64 epoch          the epoch this commit begins: the previous one + 1
    32  previous       the transcript hash before this commit
    u64 committer      the member that made it (its number in the roster)
    roster             as in roster.py
    per roster member, in the roster's order:
      u16 len || HPKE ciphertext (enc || sealed epoch secret)
    32  confirmation   HKDF-Expand(secret, "confirm", context(session, epoch, previous))
    64  Ed25519 signature by the committer over "securesess commit v1\\0" || all above

The HPKE ``info`` of a member's wrap is ``"securesess welcome v1\\0" ||
SHA-256(every byte before the wraps) || u64 member``: a wrap opens only for
its member, in this commit. The confirmation lets each member check that the
secret it unwrapped is the one the committer committed to, so a committer
cannot give two members different secrets unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securesess.sessions.sealing.errors import ForgedContent, MalformedSealing
from securesess.sessions.sealing.roster import Roster
from securesess.sessions.sealing.schedule import (
    SECRET_LEN,
    EpochKeys,
    context,
    expand,
    name_field,
)

__all__ = ["MAX_EPOCH", "SUITE", "VERSION", "Commit", "make_commit"]

VERSION: Final = 1
#: The HPKE suite of every wrap and direct message: X25519, as membership keys are.
SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_SIGNED: Final = b"securesess commit v1\0"
_WELCOME: Final = b"securesess welcome v1\0"
_HEAD: Final = struct.Struct(">Q32sQ")
# A wrap: HPKE's encapsulated X25519 key, the sealed secret and its tag.
_WRAP_LEN: Final = 32 + SECRET_LEN + 16
#: The latest epoch a commit may begin: epochs fit a signed 64-bit integer.
MAX_EPOCH: Final = (1 << 63) - 1
_U64: Final = struct.Struct(">Q")
_U16: Final = struct.Struct(">H")
_SIGNATURE_LEN: Final = 64
_CONFIRMATION_LEN: Final = 32


def _confirmation(secret: bytes, session: str, epoch: int, previous: bytes) -> bytes:
    return expand(secret, b"confirm", context(session, epoch, previous))


def _wrap_info(head_digest: bytes, member: int) -> bytes:
    return _WELCOME + head_digest + _U64.pack(member)


def _head(session: str, epoch: int, previous: bytes, committer: int, roster: Roster) -> bytes:
    return (
        bytes([VERSION])
        + name_field(session)
        + _HEAD.pack(epoch, previous, committer)
        + roster.encode()
    )


@final
@dataclass(frozen=True, slots=True)
class Commit:
    """A decoded commit. Decoding checks the format; :meth:`verify` the
    signature and :meth:`open` this member's wrap."""

    session: str
    epoch: int
    previous: bytes
    committer: int
    roster: Roster
    wraps: tuple[bytes, ...] = field(repr=False)
    confirmation: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    encoded: bytes = field(repr=False)
    head_len: int = field(repr=False)

    @classmethod
    def decode(cls, data: bytes, known: Roster | None = None) -> Commit:
        """``known``: a roster whose entries this one may repeat (see
        :meth:`Roster.decode_from`).

        Raises:
        MalformedSealing: the bytes are not a well-formed commit. Nothing
            else, whatever the bytes.
        """
        data = bytes(data)
        try:
            if data[0] != VERSION:
                raise MalformedSealing(f"unsupported commit version {data[0]}")
            name_len = data[1]
            session = data[2 : 2 + name_len].decode("utf-8")
            offset = 2 + name_len
            epoch, previous, committer = _HEAD.unpack_from(data, offset)
            roster, offset = Roster.decode_from(data, offset + _HEAD.size, known)
        except (IndexError, UnicodeDecodeError, struct.error):
            raise MalformedSealing("a commit's header is malformed") from None
        if not session or len(session.encode("utf-8")) != name_len:
            raise MalformedSealing("a commit's session name is malformed")
        head_len = offset
        wraps = []
        for _ in roster:
            if offset + _U16.size > len(data):
                raise MalformedSealing("a commit ends inside its wraps")
            (length,) = _U16.unpack_from(data, offset)
            offset += _U16.size
            wraps.append(data[offset : offset + length])
            offset += length
        # The wraps' lengths were taken on trust; this is where a short one shows.
        if len(data) != offset + _CONFIRMATION_LEN + _SIGNATURE_LEN:
            raise MalformedSealing("a commit's length does not match its contents")
        if committer not in roster:
            raise MalformedSealing(f"the committer #{committer} is not in its own roster")
        if not 1 <= epoch <= MAX_EPOCH:
            raise MalformedSealing(f"epoch {epoch} is out of range")
        return cls(
            session=session,
            epoch=epoch,
            previous=previous,
            committer=committer,
            roster=roster,
            wraps=tuple(wraps),
            confirmation=data[offset : offset + _CONFIRMATION_LEN],
            signature=data[offset + _CONFIRMATION_LEN :],
            encoded=data,
            head_len=head_len,
        )

    def verify(self, signing_key: bytes) -> None:
        """Check the signature with the committer's signing key, as the
        verifier already knows it (from the previous roster, or vouched for).

        Raises:
            ForgedContent: not signed by that key.
        """
        signed = _SIGNED + self.encoded[:-_SIGNATURE_LEN]
        try:
            Ed25519PublicKey.from_public_bytes(signing_key).verify(self.signature, signed)
        except (InvalidSignature, ValueError):
            raise ForgedContent(
                f"the commit of epoch {self.epoch} is not signed by member #{self.committer}"
            ) from None

    def open(self, member: int, membership_key: X25519PrivateKey, transcript: bytes) -> EpochKeys:
        """The new epoch's keys, from ``member``'s wrap. ``transcript`` is the
        hash after this commit (:func:`~.schedule.next_transcript`).

        Raises:
            ForgedContent: the wrap does not open for this key, or its secret
                is not the one the committer confirmed.
            KeyError: ``member`` is not in the roster.
        """
        if member not in self.roster:
            raise KeyError(member)
        index = list(self.roster).index(member)
        info = _wrap_info(hashlib.sha256(self.encoded[: self.head_len]).digest(), member)
        try:
            secret = SUITE.decrypt(self.wraps[index], membership_key, info=info)
        except (InvalidTag, ValueError):
            raise ForgedContent(
                f"the epoch {self.epoch} secret does not open for member #{member}"
            ) from None
        if len(secret) != SECRET_LEN or not hmac.compare_digest(
            _confirmation(secret, self.session, self.epoch, self.previous), self.confirmation
        ):
            raise ForgedContent(f"the epoch {self.epoch} secret is not the one confirmed")
        return EpochKeys(self.session, self.epoch, secret, transcript)


def make_commit(
    *,
    session: str,
    epoch: int,
    previous: bytes,
    committer: int,
    signing_key: Ed25519PrivateKey,
    roster: Roster,
) -> bytes:
    """A signed commit beginning ``epoch`` with a fresh secret.

    The committer keeps nothing of the secret: it opens its own wrap when the
    hub has ordered the commit, like every other member, so a commit the hub
    never orders leaves no key behind.

    Raises:
        ValueError: the committer is not in ``roster``, ``epoch`` is out of
            range, or a member's membership key is not one HPKE can seal to.
    """
    if committer not in roster:
        raise ValueError("the committer must be in the roster it commits")
    if not 1 <= epoch <= MAX_EPOCH or len(previous) != 32:
        raise ValueError("a commit begins an epoch from 1 to 2**63 - 1 after a 32-byte hash")
    secret = secrets.token_bytes(SECRET_LEN)
    head = _head(session, epoch, previous, committer, roster)
    # Hashed once: the head grows with the roster, and every wrap names it.
    digest = hashlib.sha256(head).digest()
    parts = [head]
    for member, entry in roster.items():
        try:
            wrap = SUITE.encrypt(
                secret,
                X25519PublicKey.from_public_bytes(entry.membership_key),
                info=_wrap_info(digest, member),
            )
        except ValueError:
            # A low-order point: only its own member could have signed it.
            raise ValueError(f"member #{member}'s membership key is unusable") from None
        parts.append(_U16.pack(len(wrap)) + wrap)
    parts.append(_confirmation(secret, session, epoch, previous))
    unsigned = b"".join(parts)
    return unsigned + signing_key.sign(_SIGNED + unsigned)


def commit_size(session: str, entry_sizes: Iterable[int]) -> int:
    """How long a commit of ``session`` is whose roster entries are
    ``entry_sizes`` bytes long (so that a hub can refuse a member that would
    make the next commit too long to carry)."""
    sizes = list(entry_sizes)
    fixed = 2 + len(session.encode("utf-8")) + _HEAD.size + 4 + _CONFIRMATION_LEN + _SIGNATURE_LEN
    return fixed + sum(sizes) + len(sizes) * (_U16.size + _WRAP_LEN)
