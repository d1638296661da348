"""Whom a connection admits: the trust store, the expected peer, the access hook.

Pure decisions, no I/O: :class:`Authenticator` takes the static key a peer
proved in the handshake and the certificate it showed, and returns the
:class:`Peer` to admit or raises :class:`Refusal` with the close code and the
reason the peer is told. The connection protocol calls it at the point of
the handshake where docs/protocol.md says a side decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import final

from keystore import Peer, TrustStore, UntrustedPeerError, fingerprint
from securesess.constants import CloseCode

__all__ = ["Authenticator", "Refusal"]

log = logging.getLogger("securesess")


class Refusal(Exception):
    """Why we refuse a peer: the close code and reason a CLOSE record carries."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@final
class Authenticator:
    """Admits a peer the trust store accepts, that is ``expect``, and that ``authorize`` lets in.

    Args:
        trust: whom we accept.
        expect: the peer we insist on: its 32-byte public key (accepted even
            if not in ``trust``: that is pinning) or its name in ``trust``.
        authorize: a last check on a peer the trust store accepted: None to
            admit it, or the reason to refuse it (close code ACCESS_DENIED).

    Raises:
        ValueError: ``expect`` is a key that is not 32 bytes.
    """

    __slots__ = ("_authorize", "_expect", "_trust")

    def __init__(
        self,
        trust: TrustStore,
        *,
        expect: bytes | bytearray | memoryview | str | None = None,
        authorize: Callable[[Peer], str | None] | None = None,
    ) -> None:
        if isinstance(expect, bytes | bytearray | memoryview):
            expect = bytes(expect)
            if len(expect) != 32:
                raise ValueError(f"an expected public key is 32 bytes, got {len(expect)}")
        self._trust = trust
        self._expect: bytes | str | None = expect
        self._authorize = authorize

    def expected_key(self) -> bytes | None:
        """The peer's public key if it is known in advance (what ``IK`` needs)."""
        if isinstance(self._expect, bytes):
            return self._expect
        if isinstance(self._expect, str):
            peer = self._trust.peer_by_name(self._expect)
            return None if peer is None else peer.public_key
        return None

    def __call__(self, public_key: bytes, certificate: bytes | None) -> Peer:
        """The peer that proved ``public_key`` (and showed ``certificate``), if we accept it.

        Raises:
            Refusal: with the close code and reason to give the peer.
        """
        peer = self._trusted(public_key, certificate)
        if self._authorize is not None:
            try:
                reason = self._authorize(peer)
            except Exception:
                # A broken policy hook must refuse, not take the server down.
                log.exception("authorize= raised for %s; refusing it", peer)
                reason = "the server could not decide whether to admit this peer"
            if reason is not None:
                raise Refusal(CloseCode.ACCESS_DENIED, reason)
        return peer

    def _trusted(self, public_key: bytes, certificate: bytes | None) -> Peer:
        expected = self._expect
        if isinstance(expected, bytes):
            # An explicit key is a pin of its own, trusted or not; only a
            # revocation overrides it.
            if public_key != expected:
                raise Refusal(CloseCode.NOT_EXPECTED, "the peer's key is not the expected one")
            if self._trust.is_revoked(public_key):
                raise Refusal(CloseCode.NOT_TRUSTED, f"key {fingerprint(public_key)} is revoked")
            return self._trust.peer_by_key(public_key) or Peer(None, public_key)
        try:
            peer = self._trust.verify(public_key, certificate)
        except UntrustedPeerError as exc:
            raise Refusal(CloseCode.NOT_TRUSTED, str(exc)) from None
        if expected is not None and peer.name != expected:
            raise Refusal(
                CloseCode.NOT_EXPECTED, f"the peer is {peer.name!r}, not the expected {expected!r}"
            )
        return peer
