"""Tunnels: plain TCP connections carried over SecureStreams, as spiped and stunnel do.

Theory of operation
-------------------

A tunnel has two ends. The **client end** listens for plain connections
(normally on loopback, from an application that cannot be changed) and
carries each over its own SecureStream to the **server end**, which
authenticates the peer, asks the policy, and only then connects to the
backend it forwards to. An unauthenticated, untrusted or refused peer never
causes a backend connection: admission is decided inside the handshake, and
the backend is dialled by the connection handler, which
:func:`~securesess.stream.serve.handshake_first` runs only after a handshake that
succeeded.

Each carried connection is two relays, *up* (application to service) and
*down* (service to application). A relay holds one chunk at a time: it
reads the next only once the last has been handed on, so a slow reader
anywhere pushes back on the writer at the far end through the TCP windows,
and no buffer grows.

Endings map one to one between the legs, so that neither application can
take a cut stream for a complete one:

* a clean end of one direction (a TCP FIN, an ``END`` record) is passed on
  as a half-close, and the other direction goes on;
* anything abnormal (a reset, a record that fails authentication, a
  connection cut without ``END``) ends the whole connection: the plain leg
  is reset (RST), and the secure leg gets a ``CLOSE`` record with the
  reason, which the other end turns into a reset of its own plain leg;
  or, once this end has sent ``END`` (after which the other end reads no
  record), a TCP reset of its own;
* a leg whose direction has ended is still watched, for that reset: an
  application that sends its request and FIN, then resets, ends the
  connection at once, not when the service next writes;
* a connection that carries nothing either way for ``idle_timeout`` (12
  hours by default) is cut, with ``CLOSE`` 8.

Every connection ends with one log line on the ``securesess.tunnel``
logger, in logfmt: its number, from where, the authenticated peer, to where,
bytes each way, duration, and the :class:`Outcome` with its reason.
"""

from securesess.constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
)
from securesess.tunnel.client import TunnelClient
from securesess.tunnel.legs import Outcome
from securesess.tunnel.server import TunnelServer

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "Outcome",
    "TunnelClient",
    "TunnelServer",
]
