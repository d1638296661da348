"""Trust: which peers this process accepts, and what it knows about them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import final

from handshake import InvalidKeyError
from keystore.errors import DuplicatePeerError, UntrustedPeerError
from keystore.identity import fingerprint

__all__ = ["Peer", "TrustStore"]


@final
@dataclass(frozen=True, slots=True)
class Peer:
    """An authenticated peer: its static public key and what vouches for it."""

    name: str | None
    public_key: bytes
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def __str__(self) -> str:
        return f"{self.name or 'unnamed peer'} ({self.fingerprint})"


@final
class TrustStore:
    """Pinned peers (name to key, like ssh's known_hosts).

    :meth:`verify` is the one question the channel layer asks: given the key a
    peer proved it holds, who is it, if anyone we trust?
    """

    __slots__ = ("_by_key", "_by_name")

    def __init__(self) -> None:
        self._by_name: dict[str, Peer] = {}
        self._by_key: dict[bytes, Peer] = {}

    def __repr__(self) -> str:
        return f"<TrustStore with {len(self._by_name)} pinned peer(s)>"

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Peer]:
        return iter(self._by_name.values())

    def add_peer(
        self, name: str, public_key: bytes | bytearray | memoryview, groups: Iterable[str] = ()
    ) -> Peer:
        """Pin ``public_key`` under ``name``.

        Raises:
            DuplicatePeerError: the name or the key is already pinned.
            handshake.InvalidKeyError: the key is not 32 bytes.
        """
        key = bytes(public_key)
        if len(key) != 32:
            raise InvalidKeyError(f"a public key is 32 bytes, got {len(key)}")
        if not name:
            raise ValueError("a pinned peer needs a non-empty name")
        if name in self._by_name:
            raise DuplicatePeerError(f"a peer named {name!r} is already pinned")
        if key in self._by_key:
            raise DuplicatePeerError(f"that key is already pinned as {self._by_key[key].name!r}")
        peer = Peer(name, key, frozenset(groups))
        self._by_name[name] = peer
        self._by_key[key] = peer
        return peer

    def remove_peer(self, name: str) -> Peer:
        """Unpin a peer; raises KeyError if no peer has that name."""
        peer = self._by_name.pop(name)
        del self._by_key[peer.public_key]
        return peer

    def peer_by_name(self, name: str) -> Peer | None:
        return self._by_name.get(name)

    def peer_by_key(self, public_key: bytes) -> Peer | None:
        return self._by_key.get(bytes(public_key))

    def verify(self, public_key: bytes) -> Peer:
        """The trusted peer holding ``public_key``.

        Raises:
            UntrustedPeerError: the key is not pinned.
        """
        peer = self._by_key.get(public_key)
        if peer is None:
            raise UntrustedPeerError(f"key {fingerprint(public_key)} is not pinned")
        return peer
