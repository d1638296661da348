"""Secure streams: frames, records, the handshake over a stream, listeners and sockets.

The layer every other part of securesess stands on: a :class:`SecureStream`
carries one authenticated, encrypted byte stream; the modules here build it
from the bottom up (``frames`` → ``records`` → ``secure_stream``), and
``serve`` and ``sockets`` put it on the network.
"""
