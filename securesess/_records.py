"""The record layer (docs/protocol.md §4), sans-IO.

A record is ``frame(ENCRYPT(type || body))``. :class:`RecordWriter` turns
stream data into as few, as large records as it can, encrypting each in place
in one output buffer so a whole batch leaves in a single ``send_all``.
:class:`RecordReader` decrypts frames one at a time, straight from the bytes
the transport returned into a buffer the caller then owns.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final, final

from handshake import DecryptError, TransportState
from securesess._frames import FrameReader
from securesess.errors import PeerAborted, ProtocolViolation, RecordAuthenticationFailed

__all__ = [
    "MAX_BODY",
    "REKEY_AFTER_RECORDS",
    "CloseCode",
    "Record",
    "RecordReader",
    "RecordType",
    "RecordWriter",
]

_TAG: Final = 16
_U16: Final = struct.Struct(">H")
#: The largest record body: 65535 bytes of ciphertext less the type byte and tag.
MAX_BODY: Final = 65535 - 1 - _TAG
_OVERHEAD: Final = 2 + 1 + _TAG
#: A sender rekeys at the latest after this many records under one key.
REKEY_AFTER_RECORDS: Final = 2**20
_MAX_REASON: Final = 1024
# Records per output buffer: bounds a send's memory to about 1 MiB.
_BATCH_RECORDS: Final = 16


class RecordType(enum.IntEnum):
    DATA = 0
    END = 1
    REKEY = 2
    CLOSE = 3
    ACCEPT = 4


class CloseCode(enum.IntEnum):
    NOT_TRUSTED = 1
    NOT_EXPECTED = 2
    ACCESS_DENIED = 3
    PROTOCOL_VIOLATION = 4
    SHUTTING_DOWN = 5


@final
@dataclass(frozen=True, slots=True)
class Record:
    """A decrypted record other than REKEY (which the reader applies itself)."""

    type: RecordType
    body: bytearray


@final
class RecordWriter:
    """Seals outgoing records and rekeys the sending key on schedule."""

    __slots__ = ("_rekey_after", "_since_rekey", "_transport")

    def __init__(self, transport: TransportState, rekey_after: int = REKEY_AFTER_RECORDS) -> None:
        self._transport = transport
        self._rekey_after = rekey_after
        self._since_rekey = 0

    def batches(self, data: memoryview) -> list[tuple[int, int]]:
        """Split ``data`` into (start, stop) ranges of at most a batch of records."""
        step = MAX_BODY * _BATCH_RECORDS
        return [(start, min(start + step, len(data))) for start in range(0, len(data), step)]

    def seal_data(self, data: memoryview) -> memoryview:
        """DATA records for ``data`` (at most one batch), with REKEY where due."""
        records = -(-len(data) // MAX_BODY)
        # Room for a REKEY before every record: a bound, not a count, and
        # cheaper than predicting where the schedule falls.
        view = memoryview(bytearray(len(data) + 2 * records * _OVERHEAD))
        pos = 0
        for start in range(0, len(data), MAX_BODY):
            pos = self._seal_into(view, pos, RecordType.DATA, data[start : start + MAX_BODY])
        return view[:pos]

    def seal(self, record_type: RecordType, body: bytes = b"") -> memoryview:
        """One control record (END, CLOSE, ACCEPT), with a REKEY first if due."""
        view = memoryview(bytearray(len(body) + 2 * _OVERHEAD))
        return view[: self._seal_into(view, 0, record_type, memoryview(body))]

    def _seal_into(self, out: memoryview, pos: int, record_type: int, body: memoryview) -> int:
        if self._since_rekey + 1 >= self._rekey_after:
            pos = self._seal_one(out, pos, RecordType.REKEY, memoryview(b""))
            self._transport.rekey_outgoing()
            self._since_rekey = 0
        return self._seal_one(out, pos, record_type, body)

    def _seal_one(self, out: memoryview, pos: int, record_type: int, body: memoryview) -> int:
        size = 1 + len(body)
        _U16.pack_into(out, pos, size + _TAG)
        plain = out[pos + 2 : pos + 2 + size + _TAG]
        plain[0] = record_type
        plain[1:size] = body
        # Encrypt in place: the plaintext already sits where the ciphertext goes.
        self._transport.encrypt_into(plain[:size], plain)
        self._since_rekey += 1
        return pos + 2 + size + _TAG


def close_body(code: int, reason: str) -> bytes:
    """The body of a CLOSE record, the reason cut to 1024 bytes of UTF-8."""
    encoded = reason.encode("utf-8")[:_MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
    return _U16.pack(code) + encoded


def parse_close(body: bytearray) -> PeerAborted:
    if len(body) < 2 or len(body) > 2 + _MAX_REASON:
        raise ProtocolViolation(f"a CLOSE record body of {len(body)} bytes")
    try:
        reason = body[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("a CLOSE record whose reason is not UTF-8") from None
    return PeerAborted(_U16.unpack_from(body)[0], reason)


@final
class RecordReader:
    """Decrypts incoming records in order, applying REKEY itself."""

    __slots__ = ("_frames", "_transport")

    def __init__(self, frames: FrameReader, transport: TransportState) -> None:
        self._frames = frames
        self._transport = transport

    def next_record(self) -> Record | None:
        """The next decrypted record, or None when more bytes are needed.

        Raises:
            RecordAuthenticationFailed: the record does not decrypt.
            ProtocolViolation: the record is malformed or of an unknown type.
        """
        while (ciphertext := self._frames.next_frame()) is not None:
            if len(ciphertext) < 1 + _TAG:
                raise ProtocolViolation(f"a record of {len(ciphertext)} bytes is too short")
            plain = bytearray(len(ciphertext) - _TAG)
            try:
                self._transport.decrypt_into(ciphertext, plain)
            except DecryptError as exc:
                raise RecordAuthenticationFailed(
                    "a record failed authentication (tampered, replayed, reordered or forged)"
                ) from exc
            try:
                record_type = RecordType(plain[0])
            except ValueError:
                raise ProtocolViolation(f"unknown record type {plain[0]}") from None
            # Deleting from the front of a bytearray moves a pointer, not the data.
            del plain[:1]
            if record_type is RecordType.REKEY:
                if plain:
                    raise ProtocolViolation("a REKEY record with a body")
                self._transport.rekey_incoming()
                continue
            if record_type in (RecordType.END, RecordType.ACCEPT) and plain:
                raise ProtocolViolation(f"an {record_type.name} record with a body")
            if record_type is RecordType.DATA and not plain:
                raise ProtocolViolation("an empty DATA record")
            return Record(record_type, plain)
        return None
