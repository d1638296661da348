"""What the hub has yet to send, and the budgets that bound it: queues, backlogs, batches.

Each membership has a :class:`Mailbox` (its undelivered events), each
connection an :class:`Outbox` (its answers, and the mailboxes with something
to send, in round-robin order). :class:`Backlogs` counts every undelivered
byte three ways, per member, per connection and per peer key, and notes who
went over a budget; the hub ends those after the request that did it, since
ending them takes the session core. Nothing here does I/O: the hub's
connection overrides :meth:`Outbox.wake` to wake its writer.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, Final, Generic, TypeVar, final

from securesess.sessions.outcome import Member

__all__ = ["Backlogs", "Mailbox", "Outbox", "take"]


def take(queue: deque[bytes], limit: int, into: list[bytes]) -> int:
    """Move items from the front of ``queue`` to ``into`` until ``limit`` bytes
    are reached (the last may pass it: items are never split); their size."""
    taken = 0
    while queue and taken < limit:
        item = queue.popleft()
        into.append(item)
        taken += len(item)
    return taken


# What the writer takes from one mailbox per turn, and per send.
QUANTUM: Final = 64 * 1024
BATCH: Final = 1 << 20


class Outbox:
    """One connection's answers and ready mailboxes."""

    __slots__ = ("backlog", "peer_key", "ready", "replies", "reply_bytes")

    def __init__(self, peer_key: bytes) -> None:
        self.peer_key: Final = peer_key
        self.replies: deque[bytes] = deque()
        self.reply_bytes = 0
        self.ready: deque[Mailbox[Any]] = deque()
        #: Undelivered bytes of all its mailboxes.
        self.backlog = 0

    def wake(self) -> None:
        """There is something new to send: the hub's connection wakes its writer."""

    def reply(self, data: bytes) -> None:
        self.replies.append(data)
        self.reply_bytes += len(data)
        self.wake()


OutboxT = TypeVar("OutboxT", bound=Outbox)


@final
class Mailbox(Generic[OutboxT]):
    """One membership's undelivered events."""

    __slots__ = ("active", "backlog", "member", "outbox", "queue", "scheduled")

    def __init__(self, member: Member, outbox: OutboxT) -> None:
        self.member: Final = member
        self.outbox: Final = outbox
        self.queue: deque[bytes] = deque()
        self.backlog = 0
        self.scheduled = False
        self.active = True


@final
class Backlogs(Generic[OutboxT]):
    """The three backlog budgets, and who is over one."""

    __slots__ = ("lagging", "max_backlog", "max_connection", "max_peer", "overflowing", "peer")

    def __init__(self, *, max_backlog: int, max_connection: int, max_peer: int) -> None:
        self.max_backlog: Final = max_backlog
        self.max_connection: Final = max_connection
        self.max_peer: Final = max_peer
        #: Undelivered bytes per peer key, over all its connections.
        self.peer: Final[Counter[bytes]] = Counter()
        #: Mailboxes over ``max_backlog``, and outboxes over a connection's or
        #: peer's budget, since the hub last looked.
        self.lagging: Final[list[Mailbox[OutboxT]]] = []
        self.overflowing: Final[list[OutboxT]] = []

    def enqueue(self, mailbox: Mailbox[OutboxT], data: bytes) -> None:
        mailbox.queue.append(data)
        mailbox.backlog += len(data)
        outbox = mailbox.outbox
        outbox.backlog += len(data)
        key = outbox.peer_key
        self.peer[key] += len(data)
        if mailbox.backlog > self.max_backlog:
            self.lagging.append(mailbox)
        elif outbox.backlog > self.max_connection or self.peer[key] > self.max_peer:
            self.overflowing.append(outbox)
        if not mailbox.scheduled:
            mailbox.scheduled = True
            outbox.ready.append(mailbox)
            outbox.wake()

    def discard(self, mailbox: Mailbox[OutboxT]) -> None:
        """The membership ended: nothing still queued for it will be sent."""
        mailbox.active = False
        mailbox.queue.clear()
        self._delivered(mailbox.outbox, mailbox.backlog)
        mailbox.backlog = 0

    def excess(self, outbox: OutboxT) -> str | None:
        """Why ``outbox``'s connection is to go, if it is over its own budget."""
        if outbox.backlog > self.max_connection:
            return (
                f"fell too far behind (over {self.max_connection} bytes "
                "undelivered on this connection)"
            )
        return None  # a membership ended since, and took its backlog with it

    def peer_excess(self, peer_key: bytes) -> str | None:
        """Why one of this peer's connections is to go, if the peer is over its budget."""
        if self.peer[peer_key] > self.max_peer:
            return f"fell too far behind (over {self.max_peer} bytes undelivered to this peer)"
        return None

    def take(self, outbox: OutboxT) -> bytes:
        """The next batch to send: every answer, then round-robin from the ready mailboxes."""
        chunks = list(outbox.replies)
        size = outbox.reply_bytes
        outbox.replies.clear()
        outbox.reply_bytes = 0
        ready = outbox.ready
        while ready and size < BATCH:
            mailbox = ready.popleft()
            if not mailbox.active:
                continue
            queue = mailbox.queue
            taken = take(queue, QUANTUM, chunks)
            mailbox.backlog -= taken
            self._delivered(outbox, taken)
            size += taken
            if queue:
                ready.append(mailbox)
            else:
                mailbox.scheduled = False
        return b"".join(chunks)

    def _delivered(self, outbox: Outbox, size: int) -> None:
        """``size`` undelivered bytes of ``outbox`` are sent, or dropped."""
        outbox.backlog -= size
        key = outbox.peer_key
        self.peer[key] -= size
        if not self.peer[key]:
            del self.peer[key]
