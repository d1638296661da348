"""Handshake payloads: ``u8 type || u16 len || value`` fields (docs/protocol.md §3)."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

from securesess.errors import ProtocolViolation

__all__ = ["CERTIFICATE", "decode_payload", "encode_payload"]

CERTIFICATE: Final = 1
_KNOWN: Final = frozenset({CERTIFICATE})
_HEADER: Final = struct.Struct(">BH")


def encode_payload(fields: Mapping[int, bytes]) -> bytes:
    return b"".join(_HEADER.pack(kind, len(value)) + value for kind, value in fields.items())


def decode_payload(payload: bytes) -> dict[int, bytes]:
    """Parse a payload; unknown types of 128 and above are skipped.

    Raises:
        ProtocolViolation: a field overruns the payload, repeats, or has an
            unknown type below 128.
    """
    fields: dict[int, bytes] = {}
    seen: set[int] = set()
    pos = 0
    while pos < len(payload):
        if len(payload) - pos < _HEADER.size:
            raise ProtocolViolation("handshake payload ends inside a field header")
        kind, length = _HEADER.unpack_from(payload, pos)
        pos += _HEADER.size
        if len(payload) - pos < length:
            raise ProtocolViolation(f"handshake payload field {kind} overruns the payload")
        if kind in seen:
            raise ProtocolViolation(f"handshake payload field {kind} appears twice")
        seen.add(kind)
        if kind in _KNOWN:
            fields[kind] = payload[pos : pos + length]
        elif kind < 128:
            raise ProtocolViolation(f"unknown critical handshake payload field {kind}")
        pos += length
    return fields
