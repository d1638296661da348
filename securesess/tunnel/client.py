"""The tunnel's client end: carries each plain connection it accepts to the server end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Unpack, final

import trio

from keystore import Peer, TrustStore
from securesess.constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    CloseCode,
)
from securesess.errors import (
    HandshakeFailed,
    NegotiationFailed,
    PeerNotTrusted,
    PeerRejected,
)
from securesess.policy import readmission
from securesess.stream.containment import contained, peer_address
from securesess.stream.options import SecureOptions, SecureOptionsArgs, merged, unexpected
from securesess.stream.secure_stream import SecureStream
from securesess.tunnel.end import TunnelEnd
from securesess.tunnel.legs import Connection, Outcome, ending


@final
class TunnelClient(TunnelEnd):
    """The client end: carries each plain connection it accepts to the server end."""

    _end = "client"

    def __init__(
        self,
        connect: tuple[str, int],
        options: SecureOptions | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        **keywords: Unpack[SecureOptionsArgs],
    ) -> None:
        unexpected(keywords, SecureOptions)
        secure = merged(SecureOptions, options, keywords)
        super().__init__(
            connect,
            trust=secure.trust,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
        )
        self.connect: Final = connect
        self.identity: Final = secure.identity
        self._options = secure

    def reload(self, *, trust: TrustStore) -> None:
        """Use a new trust store; cut connections to a server it no longer trusts."""
        self._trust = trust
        self._readmit()

    def _refusal(self, peer: Peer) -> str | None:
        # As SecureStream decided: a key given as expect= is a pin of its
        # own, which only a revocation undoes.
        if isinstance(self._options.expect, bytes):
            if self._trust.is_revoked(peer.public_key):
                return f"no longer trusted: key {peer.fingerprint} is revoked"
            return None
        return readmission(peer, self._trust, None, service="tunnel")

    async def _serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.serve_listeners(
            contained(self._handle),
            list(listeners),
            handler_nursery=connections,
            task_status=task_status,
        )

    async def _handle(self, plain: trio.SocketStream) -> None:
        connection = self._admit(peer_address(plain), None)
        secure: SecureStream | None = None
        try:
            with ending(connection):
                if not connection.going:
                    return
                # Everything from here on stops when the connection is cut.
                with connection.scope:
                    dialled = await self._dial(connection)
                    if isinstance(dialled, str):
                        reason = f"cannot reach the tunnel server at {self._target_text}: {dialled}"
                        connection.end_with(Outcome.REFUSED, reason)
                        return
                    try:
                        secure = SecureStream(dialled, self._options, trust=self._trust)
                    except BaseException:
                        await trio.aclose_forcefully(dialled)
                        raise
                    await self._handshake(connection, secure)
                    if connection.going:
                        connection.peer = secure.peer
                        # A reload may have run while the handshake used the old trust.
                        refusal = self._refusal(secure.peer)
                        if refusal is not None:
                            close = (CloseCode.ACCESS_DENIED, refusal)
                            connection.end_with(Outcome.REFUSED, refusal, close)
                            return
                        names = ("server", "application")
                        await self._carry(connection, secure, plain, names=names)
        finally:
            await self._close(connection, secure, plain)

    @staticmethod
    async def _handshake(connection: Connection, secure: SecureStream) -> None:
        try:
            await secure.do_handshake()
        except (PeerRejected, PeerNotTrusted, NegotiationFailed) as exc:
            connection.end_with(Outcome.REFUSED, f"handshake with the tunnel server: {exc}")
        except HandshakeFailed as exc:
            connection.end_with(Outcome.FAILED, f"handshake with the tunnel server: {exc}")
