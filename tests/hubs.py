"""A hub on loopback TCP with pinned identities, and clients for it, for the tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import trio
import trio.testing

from keystore import Identity, TrustStore
from securesess import SecureStream, open_secure_stream
from securesess.policy import Policy
from securesess.sessions.client import HubConnection, connect_hub
from securesess.sessions.credentials import Credentials
from securesess.sessions.hub import Hub, serve_hub
from securesess.sessions.sealing import GroupState
from securesess.sessions.wire import MAX_ANSWER, VERSION, MessageReader, Op, pack

#: Services meet in "orders"; ops administers everything; auditors only listen;
#: a feeder may only send; visitors are trusted but no rule is about them.
POLICY = """
[[rule]]
name = "services"
groups = ["services"]
sessions = ["orders", "orders/*"]
rights = ["create", "join", "send", "receive", "set"]

[[rule]]
name = "ops"
names = ["ops"]
sessions = ["*"]
rights = ["create", "join", "send", "receive", "set", "admin"]

[[rule]]
name = "auditors"
groups = ["auditors"]
sessions = ["orders"]
rights = ["join", "receive"]

[[rule]]
name = "feeders"
groups = ["feeders"]
sessions = ["orders"]
rights = ["join", "send"]
"""

PEERS: dict[str, tuple[str, ...]] = {
    "api": ("services",),
    "db": ("services",),
    "cache": ("services",),
    "ops": (),
    "auditor": ("auditors",),
    "feeder": ("feeders",),
    "visitor": ("visitors",),
}


class HubWorld:
    """Identities pinned on both sides, and a hub serving them."""

    def __init__(self, peers: dict[str, tuple[str, ...]] = PEERS) -> None:
        self.hub_identity = Identity.generate("hub")
        self.trust = TrustStore()
        self.client_trust = TrustStore()
        self.client_trust.add_peer("hub", self.hub_identity.public_key)
        self.identities: dict[str, Identity] = {}
        for name, groups in peers.items():
            self.add(name, groups)
        self.hub: Hub | None = None

    def add(self, name: str, groups: Iterable[str] = ()) -> Identity:
        """A peer the hub pins, and that every client pins with its signing
        key, so that members vouch for each other in sealed sessions."""
        identity = self.identities[name] = Identity.generate(name)
        self.trust.add_peer(name, identity.public_key, groups)
        self.client_trust.add_peer(
            name, identity.public_key, groups, signing_key=identity.signing_public_key
        )
        return identity

    def policy(self, text: str = POLICY) -> Policy:
        return Policy.parse(text, trust=self.trust)

    async def start(self, nursery: trio.Nursery, policy: str = POLICY, **options: Any) -> Hub:
        self.hub = await nursery.start(
            partial(
                serve_hub,
                0,
                host="127.0.0.1",
                identity=self.hub_identity,
                trust=self.trust,
                policy=self.policy(policy),
                **options,
            )
        )
        return self.hub

    @property
    def port(self) -> int:
        assert self.hub is not None
        return self.hub.port

    def connect(
        self, name: str, *, port: int | None = None, **options: Any
    ) -> contextlib.AbstractAsyncContextManager[HubConnection]:
        """Connect as ``name`` to this hub, or to whatever listens on ``port``."""
        return connect_hub(
            "127.0.0.1",
            self.port if port is None else port,
            identity=self.identities[name],
            trust=self.client_trust,
            expect="hub",
            **options,
        )

    def entry(self, name: str, session: str, member: int) -> bytes:
        """``name``'s roster entry for membership ``member`` of ``session``,
        as its client would ENTER it: a raw client takes part in epochs too."""
        credentials = Credentials(self.identities[name], self.client_trust)
        return credentials.group(session, member).entry.encode()

    async def raw(self, name: str) -> SecureStream:
        """A handshaken stream that has said HELLO, for speaking the protocol by hand."""
        stream = await open_secure_stream(
            "127.0.0.1",
            self.port,
            identity=self.identities[name],
            trust=self.client_trust,
            expect="hub",
        )
        await stream.send_all(pack(Op.HELLO, VERSION))
        return stream


class RawClient:
    """Reads hub messages from a raw stream, one at a time."""

    def __init__(self, stream: SecureStream) -> None:
        self.stream = stream
        self._reader = MessageReader(MAX_ANSWER)
        self._pending: list[list[Any]] = []

    async def next(self) -> list[Any] | None:
        """The next message, or None at the end of the stream."""
        while not self._pending:
            data = await self.stream.receive_some()
            if not data:
                return None
            self._pending.extend(self._reader.feed(data))
        return self._pending.pop(0)

    async def all(self) -> AsyncIterator[list[Any]]:
        while (message := await self.next()) is not None:
            yield message

    async def drain(self) -> list[list[Any]]:
        """Every message until the stream ends (or raises)."""
        return [message async for message in self.all()]


class FakeHub:
    """A hub played by hand, over a memory stream, for the client tests.

    It welcomes api and answers each JOIN by ``on_join(stream, request)``
    (by default: api is member 1, with db as member 2 when ``accomplice``).
    It orders epochs as an honest hub would, for api's real sealing: it
    answers ENTER with a DUE, and a COMMIT with its EPOCH, then calls
    ``after_epoch(stream)``. With ``accomplice``, db is a member too, whose
    sealing the hub holds (:meth:`seal`): a hub and a member in league.
    """

    def __init__(
        self,
        world: HubWorld,
        on_join: Callable[[SecureStream, list[Any]], Awaitable[None]] | None = None,
        *,
        after_epoch: Callable[[SecureStream], Awaitable[None]] | None = None,
        accomplice: bool = False,
        rights: Iterable[str] = ("join", "receive"),
    ) -> None:
        self.api = world.identities["api"]
        ours, theirs = trio.testing.memory_stream_pair()
        #: The client's side, for HubConnection.over.
        self.client = SecureStream(ours, identity=self.api, trust=world.client_trust)
        self._stream = SecureStream(
            theirs, identity=world.hub_identity, trust=world.trust, server_side=True
        )
        self._on_join = on_join
        self._after_epoch = after_epoch
        self._rights = sorted(rights)
        self._world = world
        #: db's sealing state, once a JOIN made it a member.
        self.db: GroupState | None = None
        self._accomplice = accomplice
        #: The sequence number of the EPOCH: events after it take greater ones.
        self.seq = 2

    def answer(self, request: list[Any], rights: Iterable[str] | None = None) -> bytes:
        """OK to a JOIN: api is member 1 (with db as 2), at seq 1, with no variables."""
        members = [[1, "api", self.api.public_key, ["services"]]]
        if self._accomplice:
            db = self._world.identities["db"]
            members.append([2, "db", db.public_key, ["services"]])
            self.db = Credentials(db, self._world.client_trust).group(request[2], 2)
        granted = self._rights if rights is None else sorted(rights)
        return pack(Op.OK, request[1], [1, 1, members, [], granted])

    def seal(self, body: bytes, *, key: str | None = None) -> bytes:
        """``body`` sealed by db, the accomplice member."""
        assert self.db is not None, "db is a member once api has joined"
        return self.db.seal(body, key=key)

    async def run(self) -> None:
        reader = MessageReader()
        stream = self._stream
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await stream.receive_some():
                for request in reader.feed(data):
                    op = request[0]
                    if op == Op.HELLO:
                        me = ["api", self.api.public_key, ["services"]]
                        await stream.send_all(pack(Op.WELCOME, VERSION, me))
                    elif op == Op.JOIN:
                        if self._on_join is None:
                            await stream.send_all(self.answer(request))
                        else:
                            await self._on_join(stream, request)
                    elif op == Op.ENTER:
                        entries = [request[3]]
                        if self.db is not None:
                            entries.append(self.db.entry.encode())
                        members = list(range(1, len(entries) + 1))
                        due = pack(Op.DUE, request[2], 1, members, entries)
                        await stream.send_all(pack(Op.OK, request[1], None) + due)
                    elif op == Op.COMMIT:
                        if self.db is not None:
                            self.db.apply_commit(request[3])
                        epoch = pack(Op.EPOCH, request[2], self.seq, 1, request[3], True)
                        await stream.send_all(pack(Op.OK, request[1], self.seq) + epoch)
                        if self._after_epoch is not None:
                            await self._after_epoch(stream)
