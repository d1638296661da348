"""How a responder answers a handshake, and how the initiator reads the answer.

Three answers, docs/protocol.md §2 and §3:

- busy, in place of any handshake: an empty list of allowed names;
- after the last Noise message, the first record: ACCEPT, the initiator is
  admitted; or CLOSE with a code and a reason, it is not.

Until ACCEPT arrives, the initiator holds keys but is not yet admitted: the
record before ACCEPT is the answer, and anything else in its place (data, a
malformed CLOSE) fails the handshake. Sans-IO, as the connection it serves.
"""

from __future__ import annotations

from typing import Final, Literal

from keystore import Peer, fingerprint
from securesess.errors import (
    HandshakeFailed,
    PeerNotTrusted,
    ProtocolViolation,
    RecordAuthenticationFailed,
)
from securesess.stream.authenticate import Authenticator, Refusal
from securesess.stream.events import Refused
from securesess.stream.frames import frame
from securesess.stream.noise_exchange import Keys
from securesess.stream.records import (
    RecordReader,
    RecordType,
    RecordWriter,
    close_body,
    parse_close,
)

__all__ = ["BUSY_ANSWER", "admit", "read_answer"]

#: The responder's answer when it takes no handshake now: an empty allowed list.
BUSY_ANSWER: Final = b"\0\0" + frame(b"")


def admit(authenticator: Authenticator, keys: Keys, out: bytearray) -> Peer:
    """The initiator, if ``authenticator`` admits it.

    Raises:
        PeerNotTrusted: it does not; the CLOSE that tells the initiator why
            has been queued into ``out``.
    """
    key = keys.noise.remote_static
    assert key is not None  # XX and IK both carry the initiator's key
    try:
        return authenticator(key, keys.certificate)
    except Refusal as refusal:
        writer = RecordWriter(keys.noise.into_transport())
        out += writer.seal(RecordType.CLOSE, close_body(refusal.code, refusal.reason))
        raise PeerNotTrusted(
            f"refused the client: {refusal.reason}", fingerprint=fingerprint(key)
        ) from None


def read_answer(reader: RecordReader) -> Literal[True] | Refused | None:
    """The responder's first record: True for ACCEPT, :class:`Refused` for a
    CLOSE, None while it has not all arrived. (A REKEY before it is read past.)

    Raises:
        HandshakeFailed: the answer is not authentic, or not an answer.
    """
    while True:
        try:
            result = reader.read(0)
        except (ProtocolViolation, RecordAuthenticationFailed) as exc:
            raise HandshakeFailed(str(exc)) from exc
        if result is None:
            return None
        data, control = result
        if data:
            raise HandshakeFailed("the server sent data before accepting")
        if control is not None:
            break
    record_type, body = control
    if record_type == RecordType.CLOSE:
        try:
            aborted = parse_close(body)
        except ProtocolViolation as exc:
            raise HandshakeFailed(f"the server refused with a malformed reason: {exc}") from exc
        return Refused(aborted.code, aborted.reason)
    if record_type != RecordType.ACCEPT:
        raise HandshakeFailed("the server's first record was not ACCEPT")
    return True
