"""The tunnel's server end: authenticates each peer, then connects it to the service."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Final, final

import trio

from handshake import NoiseProtocol
from keystore import Identity, Peer, TrustStore
from securesess.constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_HANDSHAKE_RATE,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_HANDSHAKES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    REKEY_AFTER_RECORDS,
    CloseCode,
)
from securesess.errors import (
    HandshakeFailed,
    PeerNotTrusted,
)
from securesess.policy import Policy, readmission
from securesess.stream.admission import handshake_first
from securesess.stream.containment import peer_address
from securesess.stream.protocols import server_protocols
from securesess.stream.secure_stream import SecureStream
from securesess.stream.serve import SecureListener
from securesess.tunnel.end import TunnelEnd
from securesess.tunnel.legs import Connection, Outcome, ending


def client_finishes(protocol: str | Sequence[str] | None, *, with_psk: bool) -> tuple[str, ...]:
    """The protocols among ``protocol`` whose last handshake message the client sends.

    Only that message proves the client is live: in IK the server's part
    ends with its own reply, so a replayed first message would pass for the
    client and make the server end dial the backend for nobody.
    """
    allowed = server_protocols(protocol, with_psk=with_psk)
    live = tuple(name for name in allowed if len(NoiseProtocol.parse(name).pattern.messages) % 2)
    if protocol is not None and live != allowed:
        refused = ", ".join(name for name in allowed if name not in live)
        raise ValueError(
            f"a tunnel's server end needs a handshake the client finishes, such as XX: "
            f"not {refused}, where a replayed first message would pass for the client"
        )
    return live


@final
class TunnelServer(TunnelEnd):
    """The server end: authenticates each peer, then connects it to ``forward``.

    ``policy`` (optional) admits peers beyond what ``trust`` accepts; see
    docs/policy.md (a rule need not list sessions or rights to admit).
    """

    _end = "server"

    def __init__(
        self,
        forward: tuple[str, int],
        *,
        identity: Identity,
        trust: TrustStore,
        policy: Policy | None = None,
        protocol: str | Sequence[str] | None = None,
        psk: bytes | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_concurrent_handshakes: int = DEFAULT_MAX_CONCURRENT_HANDSHAKES,
        max_handshakes_per_source: int | None = DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        max_connections_per_peer: int | None = None,
        handshake_rate: float | None = DEFAULT_HANDSHAKE_RATE,
        handshake_burst: int = DEFAULT_HANDSHAKE_BURST,
        rekey_after_records: int = REKEY_AFTER_RECORDS,
    ) -> None:
        super().__init__(
            forward,
            trust=trust,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
        )
        self.forward: Final = forward
        self.identity: Final = identity
        self._policy = policy
        protocol = client_finishes(protocol, with_psk=psk is not None)
        self._secure_listeners: list[SecureListener] = []
        self._make_listener = partial(
            SecureListener,
            identity=identity,
            authorize=self.authorize,
            protocol=protocol,
            psk=psk,
            handshake_timeout=handshake_timeout,
            rekey_after_records=rekey_after_records,
        )
        self._handle_one = handshake_first(
            self._handle,
            max_concurrent_handshakes=max_concurrent_handshakes,
            max_handshakes_per_source=max_handshakes_per_source,
            max_connections_per_peer=max_connections_per_peer,
            handshake_rate=handshake_rate,
            handshake_burst=handshake_burst,
            on_failure=self._handshake_failed,
        )

    def authorize(self, peer: Peer) -> str | None:
        """The handshake's last check: refuse peers no rule of the policy admits."""
        return None if self._policy is None else self._policy.refusal(peer, service="tunnel")

    def reload(self, *, policy: Policy | None = None, trust: TrustStore | None = None) -> None:
        """Apply a new policy and/or trust store; cut connections of peers they refuse."""
        if trust is not None:
            self._trust = trust
            for listener in self._secure_listeners:
                listener.trust = trust
        if policy is not None:
            self._policy = policy
        self._readmit()

    def _refusal(self, peer: Peer) -> str | None:
        return readmission(peer, self._trust, self._policy, service="tunnel")

    async def _serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._secure_listeners = [
            self._make_listener(listener, trust=self._trust) for listener in listeners
        ]
        await trio.serve_listeners(
            self._handle_one,
            self._secure_listeners,
            handler_nursery=connections,
            task_status=task_status,
        )

    def _handshake_failed(self, stream: SecureStream, failure: HandshakeFailed | str) -> None:
        connection = Connection(
            next(self._numbers), self._end, peer_address(stream), self._target_text
        )
        if isinstance(failure, str):
            connection.end_with(Outcome.REFUSED, failure)
        elif isinstance(failure, PeerNotTrusted):
            connection.end_with(Outcome.REFUSED, str(failure))
        else:
            connection.end_with(Outcome.FAILED, f"handshake: {failure}")
        connection.report()

    async def _handle(self, secure: SecureStream) -> None:
        peer = secure.peer
        connection = self._admit(peer_address(secure), peer)
        plain: trio.SocketStream | None = None
        try:
            with ending(connection):
                # A reload may have run while this handshake was checked
                # against the previous trust store or policy.
                refusal = self._refusal(peer)
                if refusal is not None:
                    close = (CloseCode.ACCESS_DENIED, refusal)
                    connection.end_with(Outcome.REFUSED, refusal, close)
                if not connection.going:
                    return
                # Everything from here on stops when the connection is cut.
                with connection.scope:
                    dialled = await self._dial(connection)
                    if isinstance(dialled, str):
                        reason = f"the service behind the tunnel is unavailable: {dialled}"
                        close = (CloseCode.UNAVAILABLE, reason)
                        connection.end_with(Outcome.REFUSED, reason, close)
                        return
                    plain = dialled
                    names = (f"peer {peer.name or '-'}", "backend")
                    await self._carry(connection, secure, plain, names=names)
        finally:
            await self._close(connection, secure, plain)
