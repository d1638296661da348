"""The revocation list, revoked.toml, and the trust files' promise to keep it.

Once the keystore has written a trust file, revoked.toml exists (empty if
nothing is revoked), and peers.toml and cas.toml say so (``revocations =
"required"``): a revocation list that goes missing afterwards is an error,
not a list of nothing, or deleting it would trust again whatever it named.
"""

from __future__ import annotations

from typing import Any, Final, final

from keystore.encoding import encode_key
from keystore.errors import KeystoreCorruptError, RevocationListMissingError
from keystore.layout import Layout

__all__ = ["REVOKED", "TRUST_FILES", "Revocations"]

REVOKED: Final = "revoked.toml"
#: Each trust file, and the table in it.
TRUST_FILES: Final = {"peers.toml": "peers", "cas.toml": "cas"}
# The top-level key of a trust file that says revoked.toml must exist.
_REVOCATIONS: Final = "revocations"
_REQUIRED: Final = "required"


@final
class Revocations:
    """The revocation list of a keystore's files, and the trust files that require it."""

    __slots__ = ("_layout",)

    def __init__(self, layout: Layout) -> None:
        self._layout: Final = layout

    def _requires_revocations(self, filename: str) -> bool:
        """Whether trust file ``filename`` says revoked.toml must exist."""
        value = self._layout.read_toml(filename).get(_REVOCATIONS)
        if value is not None and value != _REQUIRED:
            raise KeystoreCorruptError(
                f"{self._layout.path / filename} is damaged: {_REVOCATIONS} is {value!r}, "
                f"not {_REQUIRED!r}"
            )
        return value is not None

    def load(self) -> dict[str, Any]:
        """The revocation list ({} if there is none, and none is required).

        Raises:
            RevocationListMissingError: revoked.toml is gone, though a trust
                file says the keystore keeps it.
        """
        revoked = self._layout.load_toml(REVOKED)
        if revoked is not None:
            return revoked
        for filename in TRUST_FILES:
            if self._requires_revocations(filename):
                path = self._layout.path / REVOKED
                raise RevocationListMissingError(
                    f"{path} is missing, but {self._layout.path / filename} says this keystore "
                    "keeps one: without it, every key and certificate it revoked would be "
                    "trusted again. Restore it from a backup; if nothing was ever revoked here, "
                    f"an empty one will do (install -m 600 /dev/null {path})"
                )
        return {}

    def keep_locked(self) -> None:
        """Make sure revoked.toml exists and every trust file requires it.

        Called by each change to the trust, before it writes: from then on a
        missing revocation list is an error.
        """
        if self._layout.load_toml(REVOKED) is None:
            self.load()  # refuses if it is gone rather than never made
            self._layout.write_toml(REVOKED, {"keys": [], "serials": []})
        for filename, key in TRUST_FILES.items():
            if (self._layout.path / filename).exists() and not self._requires_revocations(filename):
                self.write_trust_file(filename, self._layout.table(filename, key))

    def write_trust_file(self, filename: str, table: dict[str, Any]) -> None:
        """Write trust file ``filename`` with ``table``, saying it requires revoked.toml."""
        self._layout.write_toml(filename, {_REVOCATIONS: _REQUIRED, TRUST_FILES[filename]: table})

    def revoke_key(self, public_key: bytes) -> None:
        with self._layout.writing():
            revoked = self.load()
            self.keep_locked()
            keys = set(revoked.get("keys", []))
            keys.add(encode_key(public_key))
            revoked["keys"] = sorted(keys)
            self._layout.write_toml(REVOKED, revoked)

    def revoke_serial(self, ca_key: bytes, serial: int) -> None:
        """See :meth:`keystore.Keystore.revoke_serial`."""
        if type(serial) is not int or not 0 <= serial < 2**64:
            raise ValueError(
                f"a certificate serial is an integer from 0 to 2**64-1, not {serial!r}"
            )
        with self._layout.writing():
            revoked = self.load()
            self.keep_locked()
            serials = [dict(entry) for entry in revoked.get("serials", [])]
            entry = {"ca": encode_key(ca_key), "serial": serial}
            if entry not in serials:
                serials.append(entry)
            revoked["serials"] = serials
            self._layout.write_toml(REVOKED, revoked)
