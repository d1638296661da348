"""The tunnel's server end: authenticates each peer, then connects it to the service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Unpack, final

import trio

from handshake import NoiseProtocol
from keystore import Peer, TrustStore
from securesess.constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    CloseCode,
)
from securesess.errors import (
    HandshakeFailed,
    PeerNotTrusted,
)
from securesess.policy import Policy, readmission
from securesess.stream.containment import peer_address
from securesess.stream.options import AdmissionLimits, SecureOptions, ServeArgs, merged, unexpected
from securesess.stream.protocols import server_protocols
from securesess.stream.secure_stream import SecureStream
from securesess.stream.serve import SecureServer
from securesess.tunnel.end import TunnelEnd
from securesess.tunnel.legs import Connection, Outcome, ending

# A tunnel's server end, unlike serve_secure, does not limit connections per peer.
_ADMISSION: Final = AdmissionLimits(max_connections_per_peer=None)


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
        options: SecureOptions | None = None,
        *,
        policy: Policy | None = None,
        admission: AdmissionLimits | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        **keywords: Unpack[ServeArgs],
    ) -> None:
        unexpected(keywords, SecureOptions, AdmissionLimits)
        secure = merged(SecureOptions, options, keywords)
        if secure.authorize is not None:
            raise ValueError("a tunnel admits the peers its policy admits: it takes no authorize=")
        super().__init__(
            forward,
            trust=secure.trust,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
        )
        self.forward: Final = forward
        self.identity: Final = secure.identity
        self._policy = policy
        protocol = client_finishes(secure.protocol, with_psk=secure.psk is not None)
        # Connections per peer are the tunnel's own max_connections to bound:
        # a pool behind one client end is one peer.
        limits = merged(AdmissionLimits, admission or _ADMISSION, keywords)
        self._server: Final = SecureServer(
            self._handle,
            secure.replace(protocol=protocol, authorize=self.authorize),
            limits,
            on_failure=self._handshake_failed,
        )

    def authorize(self, peer: Peer) -> str | None:
        """The handshake's last check: refuse peers no rule of the policy admits."""
        return None if self._policy is None else self._policy.refusal(peer, service="tunnel")

    def reload(self, *, policy: Policy | None = None, trust: TrustStore | None = None) -> None:
        """Apply a new policy and/or trust store; cut connections of peers they refuse."""
        if trust is not None:
            self._trust = trust
            self._server.trust = trust
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
        await self._server.serve_listeners(
            listeners, handler_nursery=connections, task_status=task_status
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
