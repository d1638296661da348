"""The record layer (docs/protocol.md §4), sans-IO.

A record is ``frame(ENCRYPT(type || body))``. :class:`RecordWriter` turns
stream data into as few, as large records as it can, sealing each record's
plaintext into one output buffer so a whole batch leaves in a single
``send_all``; input and output of the AEAD never overlap.
:class:`RecordReader` decrypts frames one at a time, straight from the bytes
the transport returned into a buffer the caller then owns.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from typing import Final, final

from handshake import DecryptError, NonceExhaustedError, TransportState
from securesess.constants import REKEY_AFTER_RECORDS
from securesess.errors import (
    PeerAborted,
    ProtocolViolation,
    RecordAuthenticationFailed,
    RecordLimitReached,
)
from securesess.stream.frames import FrameReader

__all__ = [
    "BATCH",
    "MAX_BODY",
    "RecordReader",
    "RecordType",
    "RecordWriter",
]

_TAG: Final = 16
_U16: Final = struct.Struct(">H")
#: The largest record body: 65535 bytes of ciphertext less the type byte and tag.
MAX_BODY: Final = 65535 - 1 - _TAG
_OVERHEAD: Final = 2 + 1 + _TAG
_MAX_REASON: Final = 1024


class RecordType(enum.IntEnum):
    DATA = 0
    END = 1
    REKEY = 2
    CLOSE = 3
    ACCEPT = 4


_DATA: Final = bytes((RecordType.DATA,))
_REKEY: Final = bytes((RecordType.REKEY,))
_CONTROL: Final = frozenset({RecordType.END, RecordType.CLOSE, RecordType.ACCEPT})


#: Most plaintext sealed into one output buffer: bounds a send's memory to ~1 MiB.
BATCH: Final = MAX_BODY * 16


@final
class RecordWriter:
    """Seals outgoing records and rekeys the sending key on schedule."""

    __slots__ = ("_cipher", "_rekey_after", "_since_rekey")

    def __init__(self, transport: TransportState, rekey_after: int = REKEY_AFTER_RECORDS) -> None:
        cipher = transport.send_cipher
        if cipher is None:
            raise ValueError("this side of the transport cannot send")
        if rekey_after < 2:
            # The REKEY record counts against the budget: a key must carry
            # at least one other record, and the responder's first record
            # (ACCEPT or CLOSE) is never a REKEY.
            raise ValueError("rekey_after_records must be at least 2 (the REKEY itself counts)")
        self._cipher = cipher
        self._rekey_after = rekey_after
        self._since_rekey = 0

    def seal_data(self, data: memoryview) -> memoryview:
        """DATA records for ``data`` (at most :data:`BATCH` bytes), REKEY where due.

        Raises:
            RecordLimitReached: the sending key has used its last nonce.
        """
        records = -(-len(data) // MAX_BODY)
        # Room for a REKEY before every record: a bound, not a count, and
        # cheaper than predicting where the schedule falls.
        out = memoryview(bytearray(len(data) + 2 * records * _OVERHEAD))
        pos = 0
        for start in range(0, len(data), MAX_BODY):
            # Each record's plaintext, ``type || body``, is put together in
            # a bytes object of its own, the one copy of the body, and
            # sealed from there into ``out``: the AEAD never reads and
            # writes one buffer, and an idle stream keeps no buffer for it.
            pos = self._seal(out, pos, _DATA + data[start : start + MAX_BODY])
        return out[:pos]

    def seal(self, record_type: int, body: bytes = b"") -> memoryview:
        """One control record (END, CLOSE, ACCEPT), with a REKEY first if due.

        Raises:
            RecordLimitReached: the sending key has used its last nonce.
        """
        out = memoryview(bytearray(len(body) + 2 * _OVERHEAD))
        return out[: self._seal(out, 0, bytes((record_type,)) + body)]

    def _seal(self, out: memoryview, pos: int, plaintext: bytes) -> int:
        try:
            # The REKEY record is the last one under the old key.
            if self._since_rekey + 1 >= self._rekey_after:
                pos = self._write(out, pos, _REKEY)
                self._cipher.rekey()
                self._since_rekey = 0
            self._since_rekey += 1
            return self._write(out, pos, plaintext)
        except NonceExhaustedError as exc:
            raise RecordLimitReached(
                "this stream has sent 2**64-1 records, all its key allows: open a new one"
            ) from exc

    def _write(self, out: memoryview, pos: int, plaintext: bytes) -> int:
        length = len(plaintext) + _TAG
        out[pos] = length >> 8
        out[pos + 1] = length & 0xFF
        self._cipher.encrypt_into(b"", plaintext, out[pos + 2 : pos + 2 + length])
        return pos + 2 + length


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
    """Decrypts incoming records in order, applying REKEY itself.

    :meth:`read` decrypts every consecutive DATA record already received into
    one buffer, so a large read costs one allocation and one return to the
    caller, not one per record. The records are laid end to end with each
    one's type byte on top of the last byte of the body before it; that byte
    is saved before and put back after, so the bodies come out contiguous
    without a copy.
    """

    __slots__ = ("_cipher", "_failed", "_frames", "_queue")

    def __init__(self, frames: FrameReader, transport: TransportState) -> None:
        cipher = transport.receive_cipher
        if cipher is None:
            raise ValueError("this side of the transport cannot receive")
        self._frames = frames
        self._cipher = cipher
        self._queue: deque[memoryview] = deque()
        # A bad record found behind good ones in the same read: raised by
        # the next read, once the data before it has been delivered.
        self._failed: RecordAuthenticationFailed | ProtocolViolation | None = None

    @property
    def records_read(self) -> int:
        """How many records have authenticated so far (REKEY included)."""
        return self._cipher.n

    def read(self, limit: int) -> tuple[bytearray, tuple[int, bytearray] | None] | None:
        """Decrypt received records: ``(data, control)``, or None if none is complete.

        ``data`` holds the bodies of consecutive DATA records, about ``limit``
        bytes at most (but always at least one whole record); ``control`` is
        the END, CLOSE or ACCEPT record that ended the run, as ``(type, body)``.

        Raises:
            RecordAuthenticationFailed: a record does not decrypt.
            ProtocolViolation: a record is malformed or of an unknown type.
        """
        if self._failed is not None:
            raise self._failed
        queue = self._queue
        while (frame := self._frames.next_frame()) is not None:
            queue.append(frame)
        if not queue:
            return None
        count, total = 0, 0
        for ciphertext in queue:
            body = len(ciphertext) - _TAG - 1
            if count and total + body > limit:
                break
            count += 1
            total += max(body, 0)
        out = bytearray(total + 1)
        end = [0]  # where the data decrypted so far ends (after the scratch byte)
        try:
            control = self._decrypt(count, out, end)
        except (RecordAuthenticationFailed, ProtocolViolation) as exc:
            if end[0] == 0:
                raise
            # Deliver the authenticated data in front of the bad record first.
            # A copy without the traceback: its frames hold views of ``out``,
            # which would keep it from being resized below.
            self._failed = type(exc)(*exc.args)
            control = None
        del out[end[0] + 1 :]  # REKEY records and the control record took no room
        # Dropping the scratch byte in front moves a pointer, not the data.
        del out[:1]
        return out, control

    def _decrypt(self, count: int, out: bytearray, end: list[int]) -> tuple[int, bytearray] | None:
        """Decrypt ``count`` queued records into ``out``; ``end[0]`` follows the data's end."""
        view = memoryview(out)
        queue = self._queue
        pos = 0  # where the next record's type byte goes
        for _ in range(count):
            ciphertext = queue.popleft()
            size = len(ciphertext) - _TAG
            if size < 1:
                raise ProtocolViolation(f"a record of {len(ciphertext)} bytes is too short")
            saved = out[pos]
            try:
                self._cipher.decrypt_into(b"", ciphertext, view[pos : pos + size])
            except DecryptError as exc:
                out[pos] = saved  # the data before it is delivered, intact
                raise RecordAuthenticationFailed(
                    "a record failed authentication (tampered, replayed, reordered or forged)"
                ) from exc
            except NonceExhaustedError as exc:
                # A peer's writer stops before this; one that does not is broken.
                raise ProtocolViolation(
                    "the peer sent more than 2**64-1 records under one key"
                ) from exc
            record_type = out[pos]
            out[pos] = saved
            if record_type == RecordType.DATA:
                if size == 1:
                    raise ProtocolViolation("an empty DATA record")
                pos += size - 1
                end[0] = pos
            elif record_type == RecordType.REKEY:
                if size != 1:
                    raise ProtocolViolation("a REKEY record with a body")
                self._cipher.rekey()
            else:
                control = (record_type, bytearray(view[pos + 1 : pos + size]))
                self._check_control(*control)
                return control
        return None

    @staticmethod
    def _check_control(record_type: int, body: bytearray) -> None:
        if record_type not in _CONTROL:
            raise ProtocolViolation(f"unknown record type {record_type}")
        if body and record_type != RecordType.CLOSE:
            raise ProtocolViolation(f"an {RecordType(record_type).name} record with a body")
