"""A malicious hub for the tests: a real hub, and a man in the middle who holds its key.

Each client connects, over a memory stream, to a *front* that shakes hands
with the hub's own identity; the front connects to the real hub (a
:class:`tests.hubs.HubWorld` hub on loopback) with the client's identity.
So the real hub orders the session as it always does, and between it and
each client sits everything a hub that does not follow the rules could do
at the hub-protocol layer: a :class:`Link` records every message in both
directions, and its ``rule`` decides what reaches the client instead of
what the hub sent (nothing, something else, something more, or a copy for
another client's link).

By default a link also renumbers the session events it delivers, so that
each has a ``seq`` above the last one the client got: a malicious hub
would, since a client drops events whose ``seq`` it has seen, and the
sealing, not the hub's counter, is what must catch a replay or a reorder.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
import trio.testing

from securesess import SecureStream, open_secure_stream
from securesess.errors import SessionTampered
from securesess.sessions.client import HubConnection, Session
from securesess.sessions.events import Event, Message
from securesess.sessions.sealing import SealingError
from securesess.sessions.wire import MAX_ANSWER, MessageReader, Op, pack
from tests.hubs import HubWorld

#: Hub messages that carry a session's sequence number (field 2).
SEQUENCED = frozenset({Op.MESSAGE, Op.JOINED, Op.LEFT, Op.VARIABLE, Op.EPOCH, Op.VALUE})

#: What a link delivers instead of a message the hub sent: (link, message) -> messages.
Rule = Callable[["Link", list[Any]], list[list[Any]]]


class Link:
    """One client's connection through the man in the middle."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: Every message the real hub sent this client, as it sent it.
        self.received: list[list[Any]] = []
        #: Every message that reached the client, after the rule.
        self.delivered: list[list[Any]] = []
        #: Every request the client sent.
        self.requests: list[list[Any]] = []
        #: The plaintext bytes of both directions, as they passed.
        self.from_hub = bytearray()
        self.from_client = bytearray()
        self.rule: Rule | None = None
        self.renumber = True
        self._last: dict[str, int] = {}
        self._send, self._receive = trio.open_memory_channel[bytes](math.inf)
        self._changed = trio.Event()

    def deliver(self, message: list[Any]) -> None:
        """Send ``message`` to the client (after what was delivered before)."""
        if message[0] in SEQUENCED:
            session, seq = message[1], message[2]
            if self.renumber:
                seq = max(seq, self._last.get(session, 0) + 1)
                message = [*message[:2], seq, *message[3:]]
            self._last[session] = max(seq, self._last.get(session, 0))
        self.delivered.append(message)
        self._send.send_nowait(pack(*message))

    async def until(self, predicate: Callable[[list[Any]], bool], timeout: float = 5) -> list[Any]:
        """The first message the hub sent this client that matches, once it has."""
        with trio.fail_after(timeout):
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                await self._changed.wait()

    async def run(self, front: SecureStream, upstream: SecureStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._from_client, front, upstream, nursery.cancel_scope)
                nursery.start_soon(self._from_hub, upstream, nursery.cancel_scope)
                nursery.start_soon(self._to_client, front)
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(upstream)
            await trio.aclose_forcefully(front)

    async def _from_client(
        self, front: SecureStream, upstream: SecureStream, scope: trio.CancelScope
    ) -> None:
        reader = MessageReader()
        while data := await front.receive_some():
            self.from_client += data
            self.requests.extend(reader.feed(data))
            await upstream.send_all(data)
        scope.cancel()

    async def _from_hub(self, upstream: SecureStream, scope: trio.CancelScope) -> None:
        reader = MessageReader(MAX_ANSWER)
        while data := await upstream.receive_some():
            self.from_hub += data
            for message in reader.feed(data):
                self.received.append(message)
                self._changed.set()
                self._changed = trio.Event()
                if self.rule is None:
                    self.deliver(message)
                else:
                    for out in self.rule(self, message):
                        self.deliver(out)
        scope.cancel()

    async def _to_client(self, front: SecureStream) -> None:
        async for data in self._receive:
            await front.send_all(data)


class MaliciousHub:
    """The man in the middle of every client of ``world``'s hub (started already)."""

    def __init__(self, world: HubWorld) -> None:
        self.world = world
        self.links: dict[str, Link] = {}

    @contextlib.asynccontextmanager
    async def connect(self, name: str, **options: Any) -> AsyncIterator[HubConnection]:
        """A real client, as ``name``, whose hub is this one."""
        world = self.world
        identity = world.identities[name]
        upstream = await open_secure_stream(
            "127.0.0.1", world.port, identity=identity, trust=world.client_trust, expect="hub"
        )
        ours, theirs = trio.testing.memory_stream_pair()
        client = SecureStream(ours, identity=identity, trust=world.client_trust, expect="hub")
        front = SecureStream(
            theirs, identity=world.hub_identity, trust=world.trust, server_side=True
        )
        link = self.links[name] = Link(name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run, front, upstream)
            options.setdefault("request_timeout", 5)
            async with HubConnection.over(client, **options) as connection:
                yield connection
            nursery.cancel_scope.cancel()


class Watch:
    """Every event a session yields to its application, and how its iteration ended."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.events: list[Event] = []
        self.ended: BaseException | None = None
        self.done = trio.Event()
        self._changed = trio.Event()

    async def run(self) -> None:
        try:
            async for event in self.session:
                self.events.append(event)
                self._changed.set()
                self._changed = trio.Event()
        except Exception as exc:
            self.ended = exc
        self.done.set()
        self._changed.set()

    @property
    def messages(self) -> list[bytes]:
        return [event.data for event in self.events if isinstance(event, Message)]

    async def until(self, predicate: Callable[[Watch], bool], timeout: float = 5) -> None:
        with trio.fail_after(timeout):
            while not predicate(self):
                if self.done.is_set():
                    raise AssertionError(f"the session ended first: {self.ended!r}")
                await self._changed.wait()

    async def message(self, data: bytes, timeout: float = 5) -> None:
        await self.until(lambda watch: data in watch.messages, timeout)

    async def tampered(self, timeout: float = 5) -> SealingError:
        """The refusal that ended the session, once it has."""
        with trio.fail_after(timeout):
            await self.done.wait()
        assert isinstance(self.ended, SessionTampered), self.ended
        cause = self.ended.__cause__
        assert isinstance(cause, SealingError), cause
        return cause
