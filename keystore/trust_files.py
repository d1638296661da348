"""Whom a keystore trusts: its pinned peers (peers.toml) and CAs (cas.toml).

Each load reads the files afresh into a new :class:`~keystore.trust.TrustStore`,
with the revocation list, so a reload sees what another process wrote.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final, final

from keystore.ca_state import read_ca_state
from keystore.certificate import iso_time
from keystore.encoding import decode_key, encode_key
from keystore.errors import UnknownNameError
from keystore.layout import Layout, check_name, is_name, optional_uint64, toml_list, uint64
from keystore.revocations import Revocations
from keystore.trust import TrustStore

__all__ = ["TrustFiles"]


@final
class TrustFiles:
    """The trust files of a keystore: pinning, trusting CAs, and loading it all."""

    __slots__ = ("_layout", "_revocations")

    def __init__(self, layout: Layout, revocations: Revocations) -> None:
        self._layout: Final = layout
        self._revocations: Final = revocations

    # -- pinned peers -------------------------------------------------------------------

    def add_peer(
        self,
        name: str,
        public_key: bytes,
        groups: Iterable[str] = (),
        *,
        signing_key: bytes | None = None,
    ) -> None:
        check_name(name, "a peer")
        groups = sorted(set(groups))
        with self._layout.writing():
            trust = self.load()  # refuses duplicates by name and by key
            trust.add_peer(name, public_key, groups, signing_key=signing_key)
            self._revocations.keep_locked()
            peers = self._layout.table("peers.toml", "peers")
            entry: dict[str, Any] = {"public_key": encode_key(public_key)}
            if signing_key is not None:
                entry["signing_key"] = encode_key(signing_key)
            entry["groups"] = groups
            peers[name] = entry
            self._revocations.write_trust_file("peers.toml", peers)

    def remove_peer(self, name: str) -> None:
        with self._layout.writing():
            peers = self._layout.table("peers.toml", "peers")
            if name not in peers:
                raise UnknownNameError(f"no pinned peer is named {name!r}")
            self._revocations.keep_locked()
            del peers[name]
            self._revocations.write_trust_file("peers.toml", peers)

    # -- trusted CAs ----------------------------------------------------------------------

    def trust_ca(
        self,
        name: str,
        public_key: bytes,
        *,
        not_before: int | None = None,
        not_after: int | None = None,
    ) -> None:
        """See :meth:`keystore.Keystore.trust_ca`."""
        check_name(name, "a CA")
        if not_after is not None and type(not_after) is int and not_after < time.time():
            raise ValueError(
                f"CA {name!r} expired at {iso_time(not_after)}: trusting it would admit no one"
            )
        with self._layout.writing():
            self.add_ca_locked(name, public_key, not_before=not_before, not_after=not_after)

    def add_ca_locked(
        self, name: str, public_key: bytes, *, not_before: int | None, not_after: int | None
    ) -> None:
        """Trust CA ``name``, the caller holding the lock."""
        # The trust store refuses duplicates and a malformed window.
        self.load().add_ca(name, public_key, not_before=not_before, not_after=not_after)
        self._revocations.keep_locked()
        cas = self._layout.table("cas.toml", "cas")
        entry: dict[str, Any] = {"public_key": encode_key(public_key)}
        if not_before is not None:
            entry["not_before"] = not_before
        if not_after is not None:
            entry["not_after"] = not_after
        cas[name] = entry
        self._revocations.write_trust_file("cas.toml", cas)

    # -- the trust store ------------------------------------------------------------------

    def load(self) -> TrustStore:
        """See :meth:`keystore.Keystore.trust`."""
        trust = TrustStore()
        # Each entry is parsed and added inside entry(): the trust store's own
        # checks (an empty name, a duplicate) are about the file too.
        for name, entry in self._layout.table("peers.toml", "peers").items():

            def add_peer(table: Any, name: str = name) -> None:
                groups = [str(group) for group in toml_list(table, "groups")]
                signing = table.get("signing_key")  # absent from pins of public keys alone
                trust.add_peer(
                    name,
                    decode_key(table["public_key"]),
                    groups,
                    signing_key=None if signing is None else decode_key(signing, "signing key"),
                )

            self._layout.entry("peers.toml", name, entry, add_peer)
        for name, entry in self._layout.table("cas.toml", "cas").items():

            def add_ca(table: Any, name: str = name) -> None:
                key = decode_key(table["public_key"])
                not_before = optional_uint64(table, "not_before")
                not_after = optional_uint64(table, "not_after")
                if not_after is None:
                    # A CA this keystore made before cas.toml recorded its
                    # validity: its own file knows it.
                    not_before, not_after = self._local_ca_window(name, key, not_before)
                trust.add_ca(name, key, not_before=not_before, not_after=not_after)

            self._layout.entry("cas.toml", name, entry, add_ca)
        revoked = self._revocations.load()

        def revoke_keys(table: Any) -> None:
            for text in toml_list(table, "keys"):
                trust.revoke_key(decode_key(text))

        def revoke_serials(table: Any) -> None:
            for entry in toml_list(table, "serials"):
                trust.revoke_serial(decode_key(entry["ca"]), uint64(entry["serial"], "serial"))

        self._layout.entry("revoked.toml", "keys", revoked, revoke_keys)
        self._layout.entry("revoked.toml", "serials", revoked, revoke_serials)
        return trust

    def _local_ca_window(
        self, name: str, key: bytes, not_before: int | None
    ) -> tuple[int | None, int | None]:
        """The window of this keystore's own CA ``name`` if its key is ``key``."""
        if not is_name(name) or not self._layout.ca_files(name)[1].exists():
            return not_before, None
        info = read_ca_state(self._layout, name)
        if info["public_key"] != key:
            return not_before, None
        return (not_before if not_before is not None else info["not_before"]), info["not_after"]
