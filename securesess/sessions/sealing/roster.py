"""Who is in an epoch: each member's number and the keys it seals, signs and receives with.

A roster travels in the clear inside a commit (the hub knows the membership
anyway) and is covered by the committer's signature. Encoding (big-endian)::

    u32 count
    per member, by increasing member number:
      u64 member          the hub's number for this membership
      32  static key      (X25519) the identity, as the pin or certificate names it
      32  signing key     (Ed25519) what the member's content is verified with
      32  membership key  (X25519) where epoch secrets and direct messages are sealed
      64  binding         Ed25519 signature by the signing key over
                          "securesess membership v1\\0" || u8 len || session name
                          || u64 member || static key || membership key
      u16 len || certificate, or len 0 when the member is pinned

No member takes the hub's word for another's keys: each member checks every
new entry with its own trust (:data:`Vouch`), which binds the signing key to
the static key by the pin or the CA certificate, and checks the binding,
which ties a fresh membership key to that signing key, this session and
this member number.

Why a membership key and not the static key: a member makes a new one for
each membership and forgets it when the membership ends. An old commit a hub
kept therefore opens for no later membership of the same process (so a hub
cannot walk a rejoining member back into an epoch that removed members still
hold), and a static key stolen later unwraps no recorded epoch secret.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping
from dataclasses import dataclass
from typing import Final, final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from securesess.sessions.sealing.errors import ForgedContent, MalformedSealing
from securesess.sessions.sealing.schedule import name_field

__all__ = [
    "KEY_LEN",
    "MAX_MEMBERS",
    "MAX_MEMBER_NUMBER",
    "Credential",
    "Roster",
    "RosterEntry",
    "Vouch",
    "binding_message",
]

KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
#: Members one roster may name. A commit holds an entry (170 bytes and the
#: certificate) and a wrap (82 bytes) for each: about 16 MiB at this limit
#: without certificates, far beyond what a session is meant for; the limit
#: is there so that a count field cannot promise more than that.
MAX_MEMBERS: Final = 65_535
#: Member numbers are below 2**63, so they fit a signed 64-bit integer too.
MAX_MEMBER_NUMBER: Final = (1 << 63) - 1
_BINDING: Final = b"securesess membership v1\0"
_ENTRY: Final = struct.Struct(">Q32s32s32s64sH")
_COUNT: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


@final
@dataclass(frozen=True, slots=True)
class Credential:
    """A member's identity keys, and the certificate that vouches for them."""

    static_key: bytes
    signing_key: bytes
    certificate: bytes = b""

    def __post_init__(self) -> None:
        if len(self.static_key) != KEY_LEN or len(self.signing_key) != KEY_LEN:
            raise ValueError("a credential's keys are 32 bytes each")
        if len(self.certificate) > 0xFFFF:
            raise ValueError("a certificate is at most 65,535 bytes")


#: A member's trust, asked about each credential in a roster: returns if it
#: vouches for the static key *and* the signing key together, else raises
#: :class:`~securesess.sessions.sealing.errors.UntrustedMember`.
Vouch = Callable[[Credential], None]


def binding_message(session: str, member: int, static_key: bytes, membership_key: bytes) -> bytes:
    """What a member signs to claim ``membership_key`` for one membership."""
    return _BINDING + name_field(session) + _U64.pack(member) + static_key + membership_key


@final
@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One member of an epoch; :meth:`make` is how a member writes its own."""

    member: int
    credential: Credential
    membership_key: bytes
    binding: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.member <= MAX_MEMBER_NUMBER:
            raise ValueError(f"member number {self.member} is out of range")
        if len(self.membership_key) != KEY_LEN or len(self.binding) != SIGNATURE_LEN:
            raise ValueError("a membership key is 32 bytes and its binding 64")

    @classmethod
    def make(
        cls,
        *,
        session: str,
        member: int,
        credential: Credential,
        membership_key: bytes,
        signing_key: Ed25519PrivateKey,
    ) -> RosterEntry:
        message = binding_message(session, member, credential.static_key, membership_key)
        return cls(member, credential, membership_key, signing_key.sign(message))

    def encode(self) -> bytes:
        """The entry's bytes, as a roster holds them (and ENTER carries them)."""
        cred = self.credential
        return (
            _ENTRY.pack(
                self.member,
                cred.static_key,
                cred.signing_key,
                self.membership_key,
                self.binding,
                len(cred.certificate),
            )
            + cred.certificate
        )

    @classmethod
    def decode_from(
        cls, data: bytes, offset: int = 0, known: Mapping[bytes, RosterEntry] | None = None
    ) -> tuple[RosterEntry, int]:
        """An entry from ``data`` at ``offset``, and the offset after it;
        ``known`` entries, by their encoding, are taken as they are rather
        than decoded again (a roster mostly repeats the one before it).

        Raises:
            MalformedSealing: short, or a member number out of range.
        """
        try:
            member, static, signing, membership, binding, cert_len = _ENTRY.unpack_from(
                data, offset
            )
        except struct.error:
            raise MalformedSealing("a roster entry ends early") from None
        if known:
            end = offset + _ENTRY.size + cert_len
            entry = known.get(data[offset:end])
            if entry is not None:
                return entry, end
        if member > MAX_MEMBER_NUMBER:
            raise MalformedSealing(f"member number {member} is out of range")
        offset += _ENTRY.size
        certificate = bytes(data[offset : offset + cert_len])
        if len(certificate) != cert_len:
            raise MalformedSealing("a roster entry ends inside a certificate")
        credential = Credential(static, signing, certificate)
        return cls(member, credential, membership, binding), offset + cert_len

    @classmethod
    def decode(cls, data: bytes) -> RosterEntry:
        """Exactly one entry.

        Raises:
            MalformedSealing: malformed, or with bytes after it.
        """
        entry, end = cls.decode_from(data)
        if end != len(data):
            raise MalformedSealing("a roster entry has bytes after it")
        return entry

    def check_binding(self, session: str) -> None:
        """Raises:
        ForgedContent: the membership key is not signed by this entry's
            signing key for this session and member number.
        """
        message = binding_message(
            session, self.member, self.credential.static_key, self.membership_key
        )
        try:
            Ed25519PublicKey.from_public_bytes(self.credential.signing_key).verify(
                self.binding, message
            )
        except (InvalidSignature, ValueError):
            raise ForgedContent(
                f"member #{self.member}'s membership key is not signed by its signing key"
            ) from None


@final
class Roster(Mapping[int, RosterEntry]):
    """An epoch's members, by member number."""

    __slots__ = ("_encodings", "_members")

    def __init__(self, entries: Iterable[RosterEntry]) -> None:
        members: dict[int, RosterEntry] = {}
        for entry in entries:
            if entry.member in members:
                raise ValueError(f"member #{entry.member} is in the roster twice")
            members[entry.member] = entry
            if len(members) > MAX_MEMBERS:
                raise ValueError(f"a roster names at most {MAX_MEMBERS} members")
        self._members: Final = dict(sorted(members.items()))
        self._encodings: dict[bytes, RosterEntry] | None = None

    def ids(self) -> KeysView[int]:
        """The member numbers, as a dict's keys (fast set operations)."""
        return self._members.keys()

    def by_encoding(self) -> Mapping[bytes, RosterEntry]:
        """Each entry by its bytes (made once)."""
        if self._encodings is None:
            self._encodings = {entry.encode(): entry for entry in self._members.values()}
        return self._encodings

    def __getitem__(self, member: int) -> RosterEntry:
        return self._members[member]

    def __iter__(self) -> Iterator[int]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def encode(self) -> bytes:
        return b"".join(
            [_COUNT.pack(len(self._members)), *(e.encode() for e in self._members.values())]
        )

    @classmethod
    def decode_from(
        cls, data: bytes, offset: int, known: Roster | None = None
    ) -> tuple[Roster, int]:
        """A roster from ``data`` at ``offset``, and the offset after it;
        the entries it shares with ``known`` are ``known``'s own objects.

        Work and memory are bounded by ``len(data)``, whatever the count says:
        each entry is read from bytes that are there.

        Raises:
            MalformedSealing: short, unordered, repeated or oversized.
        """
        try:
            (count,) = _COUNT.unpack_from(data, offset)
        except struct.error:
            raise MalformedSealing("a roster ends early") from None
        offset += _COUNT.size
        if count > MAX_MEMBERS:
            raise MalformedSealing(f"a roster of {count} members is over the limit")
        entries = []
        previous = -1
        encodings = None if known is None else known.by_encoding()
        # Kept for the next roster, which will mostly repeat this one.
        seen: dict[bytes, RosterEntry] = {}
        for _ in range(count):
            start = offset
            entry, offset = RosterEntry.decode_from(data, offset, encodings)
            if entry.member <= previous:
                raise MalformedSealing("a roster's members are not in increasing order")
            previous = entry.member
            entries.append(entry)
            seen[data[start:offset]] = entry
        roster = cls(entries)
        roster._encodings = seen
        return roster, offset

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Roster) and self._members == other._members

    def __hash__(self) -> int:
        return hash(tuple(self._members.items()))

    def __repr__(self) -> str:
        return f"Roster(members={list(self._members)})"
