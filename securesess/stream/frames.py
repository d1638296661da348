"""Frames: every unit on the wire is ``u16 length || bytes`` (docs/protocol.md).

:class:`FrameReader` is sans-IO: feed it what the transport returned, take
complete frames out. A frame that lies wholly inside one read comes back as a
memoryview of that read, without a copy; only a frame split across reads is
reassembled. A length field is at most 65535, so a frame never costs more
than 64 KiB whatever the peer sends.
"""

from __future__ import annotations

import struct
from typing import Final, final

__all__ = ["MAX_FRAME", "FrameReader", "frame"]

MAX_FRAME: Final = 65535
_U16: Final = struct.Struct(">H")
_EMPTY: Final = memoryview(b"")


def frame(data: bytes | bytearray | memoryview) -> bytes:
    """``u16(len(data)) || data``."""
    if len(data) > MAX_FRAME:
        raise ValueError(f"a frame holds at most {MAX_FRAME} bytes, not {len(data)}")
    return _U16.pack(len(data)) + bytes(data)


@final
class FrameReader:
    """Splits a byte stream into frames.

    Call :meth:`next_frame` until it returns None, then :meth:`feed` more
    bytes. Returned views stay valid: the reader never writes into memory
    it has handed out.
    """

    __slots__ = ("_data", "_partial", "_pos", "_ready")

    def __init__(self) -> None:
        self._data = _EMPTY
        self._pos = 0
        self._partial = bytearray()  # the start of a frame split across reads
        self._ready: memoryview | None = None  # a reassembled frame, not yet taken

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        ready = 0 if self._ready is None else len(self._ready)
        return ready + len(self._partial) + len(self._data) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the transport. Only call when next_frame() is None."""
        if self._ready is not None or self._has_complete_frame():
            raise RuntimeError("feed() called while complete frames are waiting")
        view = memoryview(data)
        partial = self._partial
        partial += self._data[self._pos :]
        if partial:
            # Complete the split frame with just the bytes it needs, so the
            # rest of this read is still used in place.
            if len(partial) < 2:
                take = min(2 - len(partial), len(view))
                partial += view[:take]
                view = view[take:]
            if len(partial) >= 2:
                missing = 2 + _U16.unpack_from(partial)[0] - len(partial)
                take = min(missing, len(view))
                partial += view[:take]
                view = view[take:]
                if take == missing:
                    self._ready = memoryview(partial)[2:]
                    self._partial = bytearray()
        self._data = view
        self._pos = 0

    def next_length(self) -> int | None:
        """The length field of the next frame, once its two bytes are here."""
        if self._ready is not None:
            return len(self._ready)
        if self._partial:
            return _U16.unpack_from(self._partial)[0] if len(self._partial) >= 2 else None
        if len(self._data) - self._pos < 2:
            return None
        return self._data[self._pos] << 8 | self._data[self._pos + 1]

    def next_frame(self) -> memoryview | None:
        """The next complete frame's contents, or None if more bytes are needed."""
        if self._ready is not None:
            ready, self._ready = self._ready, None
            return ready
        data, pos = self._data, self._pos
        if len(data) - pos < 2:
            if pos and pos == len(data):
                # All consumed: let go of the read, so an idle stream holds nothing.
                self._data, self._pos = _EMPTY, 0
            return None
        end = pos + 2 + (data[pos] << 8 | data[pos + 1])
        if end > len(data):
            return None
        self._pos = end
        return data[pos + 2 : end]

    def _has_complete_frame(self) -> bool:
        data, pos = self._data, self._pos
        return len(data) - pos >= 2 and pos + 2 + (data[pos] << 8 | data[pos + 1]) <= len(data)
