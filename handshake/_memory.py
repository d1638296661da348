"""Where a buffer lies in memory, so that no AEAD call gets overlapping buffers.

``cryptography`` never documented what its ``encrypt_into``/``decrypt_into``
do when input and output share memory; since 51.0 it refuses them
(``ValueError``). :class:`~handshake.cipherstate.CipherState` refuses them
itself, with :class:`~handshake.errors.InvalidBufferError`, so the answer
does not change with the version installed.

Python has no call that tells where a buffer starts, but ctypes has two
documented ones: ``c_char.from_buffer`` for a writable buffer, and the
buffer protocol's ``PyObject_GetBuffer`` (in the stable ABI since 3.11)
for a read-only one, which is slower and so only the fallback.
"""

from __future__ import annotations

import ctypes
from typing import ClassVar, Final

from handshake.errors import InvalidBufferError

__all__ = ["overlaps"]


class _PyBuffer(ctypes.Structure):
    # Py_buffer, as the C API documents it (part of the stable ABI since 3.11).
    _fields_: ClassVar = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer: Final = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer: Final = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None
_PYBUF_SIMPLE: Final = 0
_OWNERS: Final = (bytes, bytearray)


def _address(view: memoryview) -> int:
    if not view.readonly:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    buffer = _PyBuffer()
    _get_buffer(view, ctypes.byref(buffer), _PYBUF_SIMPLE)
    try:
        return buffer.buf or 0
    finally:
        _release_buffer(ctypes.byref(buffer))


def overlaps(data: memoryview, out: memoryview) -> bool:
    """Whether flat byte views ``data`` and ``out`` share any byte.

    Raises:
        InvalidBufferError: a view is not contiguous (no AEAD takes one).
    """
    owner, target = data.obj, out.obj
    contiguous = data.c_contiguous and out.c_contiguous
    if owner is not target and type(owner) in _OWNERS and type(target) in _OWNERS and contiguous:
        # The common case, and a cheap one: a bytes or bytearray object
        # allocates its memory itself and never lends it to another
        # object, so two distinct ones never share a byte. (Other
        # exporters, an mmap, an array, a ctypes or NumPy array, can be
        # views of each other's memory: those are compared by address.)
        return False
    if not contiguous:
        raise InvalidBufferError("buffers passed to an AEAD must be contiguous")
    if not data.nbytes or not out.nbytes:
        return False
    data_at, out_at = _address(data), _address(out)
    return data_at < out_at + out.nbytes and out_at < data_at + data.nbytes
