"""Who is in an epoch: each member's number and the keys it seals and signs with.

A roster travels in the clear inside a commit (the hub knows the membership
anyway) and is covered by the committer's signature. Encoding (big-endian)::

    u32 count
    per member, by increasing member number:
      u64 member     the hub's number for this membership
      32  static key (X25519): where the epoch secret is wrapped
      32  signing key (Ed25519): what the member's content is verified with
      u16 len || certificate, or len 0 when the member is pinned

No member takes the hub's word for another's keys: each member checks
every entry with its own trust (:data:`Vouch`), by the pin or the CA
certificate that binds the signing key to the static key.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, final

from securesess.sessions.sealing.errors import MalformedSealing

__all__ = ["KEY_LEN", "MAX_MEMBERS", "Credential", "Roster", "RosterEntry", "Vouch"]

KEY_LEN: Final = 32
#: Members one roster may name: a wrap each makes a commit O(n); at 65,535
#: members a commit is some 8 MiB, still one hub message.
MAX_MEMBERS: Final = 65_535
_ENTRY: Final = struct.Struct(">Q32s32sH")
_COUNT: Final = struct.Struct(">I")


@final
@dataclass(frozen=True, slots=True)
class Credential:
    """A member's public keys, and the certificate that vouches for them."""

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


@final
@dataclass(frozen=True, slots=True)
class RosterEntry:
    member: int
    credential: Credential


@final
class Roster(Mapping[int, Credential]):
    """An epoch's members, by member number."""

    __slots__ = ("_members",)

    def __init__(self, entries: Iterable[RosterEntry]) -> None:
        members: dict[int, Credential] = {}
        for entry in entries:
            if not 0 <= entry.member < 1 << 63:
                raise ValueError(f"member number {entry.member} is out of range")
            if entry.member in members:
                raise ValueError(f"member #{entry.member} is in the roster twice")
            members[entry.member] = entry.credential
        if len(members) > MAX_MEMBERS:
            raise ValueError(f"a roster names at most {MAX_MEMBERS} members")
        self._members: Final = dict(sorted(members.items()))

    def __getitem__(self, member: int) -> Credential:
        return self._members[member]

    def __iter__(self) -> Iterator[int]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def encode(self) -> bytes:
        parts = [_COUNT.pack(len(self._members))]
        for member, cred in self._members.items():
            parts.append(
                _ENTRY.pack(member, cred.static_key, cred.signing_key, len(cred.certificate))
            )
            parts.append(cred.certificate)
        return b"".join(parts)

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Roster, int]:
        """A roster from ``data`` at ``offset``, and the offset after it.

        Raises:
            MalformedSealing: short, unordered, repeated or oversized.
        """
        try:
            (count,) = _COUNT.unpack_from(data, offset)
            offset += _COUNT.size
            if count > MAX_MEMBERS:
                raise MalformedSealing(f"a roster of {count} members is over the limit")
            entries = []
            previous = -1
            for _ in range(count):
                member, static, signing, cert_len = _ENTRY.unpack_from(data, offset)
                offset += _ENTRY.size
                if member <= previous or member >= 1 << 63:
                    raise MalformedSealing("a roster's members are not in increasing order")
                previous = member
                certificate = data[offset : offset + cert_len]
                if len(certificate) != cert_len:
                    raise MalformedSealing("a roster ends inside a certificate")
                offset += cert_len
                entries.append(RosterEntry(member, Credential(static, signing, certificate)))
        except struct.error:
            raise MalformedSealing("a roster ends early") from None
        return cls(entries), offset

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Roster) and self._members == other._members

    def __hash__(self) -> int:
        return hash(tuple(self._members.items()))

    def __repr__(self) -> str:
        return f"Roster(members={list(self._members)})"
