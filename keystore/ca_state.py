"""A CA's state file, ``authorities/NAME.toml``: its public key, validity and next serial.

Both the CA that signs (:mod:`keystore.authorities`) and the trust files
(:mod:`keystore.trust_files`, for CAs made before cas.toml recorded their
validity) read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from keystore._files import write_atomically
from keystore.encoding import decode_key, encode_key
from keystore.errors import UnknownNameError
from keystore.layout import Layout, optional_uint64, uint64

__all__ = ["read_ca_state", "write_ca_state"]


def read_ca_state(layout: Layout, name: str) -> dict[str, Any]:
    """CA ``name``'s state: its name, public key, not_before, not_after and next serial.

    Raises:
        UnknownNameError: this keystore holds no CA of that name.
        KeystoreCorruptError: the file is damaged.
    """
    _, state_file = layout.ca_files(name)
    if not state_file.exists():
        raise UnknownNameError(f"no CA named {name!r} in this keystore (see 'securesess ca')")
    relative = str(state_file.relative_to(layout.path))
    state = layout.read_toml(relative)
    return layout.entry(
        relative,
        name,
        state,
        lambda s: {
            "name": name,
            "public_key": decode_key(s["ca"]["public_key"], "CA public key"),
            # Absent from the files of CAs made before it was recorded.
            "not_before": optional_uint64(s["ca"], "not_before"),
            "not_after": uint64(s["ca"]["not_after"], "not_after"),
            "next_serial": uint64(s["next_serial"], "next_serial"),
        },
    )


def write_ca_state(
    state_file: Path,
    *,
    public_key: bytes,
    not_before: int | None,
    not_after: int,
    next_serial: int,
) -> None:
    """Replace ``state_file``; a ``not_before`` of None (an old CA's) stays absent."""
    ca: dict[str, Any] = {"public_key": encode_key(public_key)}
    if not_before is not None:
        ca["not_before"] = not_before
    ca["not_after"] = not_after
    write_atomically(state_file, tomli_w.dumps({"ca": ca, "next_serial": next_serial}).encode())
