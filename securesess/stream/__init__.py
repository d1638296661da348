"""Secure streams: frames, records, the handshake over a stream, listeners and sockets.

The layer every other part of securesess stands on: a :class:`SecureStream`
carries one authenticated, encrypted byte stream; the modules here build it
from the bottom up. Sans-IO: ``frames`` → ``records``, ``payload``,
``protocols`` and ``authenticate`` → ``noise_exchange`` → ``connection``
(with its ``events``). On Trio: ``pump`` drives a connection over a
transport and ``secure_stream`` makes that a Trio stream; ``serve`` and
``sockets`` put it on the network.
"""
