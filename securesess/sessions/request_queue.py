"""The hub client's outgoing requests: a queue, and the writer task that drains it.

Requests are queued whole and sent in batches by one writer task, so a
cancelled caller never leaves half a request on the wire (a cancelled
``send_all`` would break the stream for every session on it). The queue
counts the bytes queued and sent since the start, so a caller can wait for
its own request to have gone out: a request's answer is awaited only from
then, and a slow link that keeps taking bytes is no timeout.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, final

import trio

from securesess.errors import HubTimeout
from securesess.sessions.delivery import take

__all__ = ["OUTGOING_LIMIT", "RequestQueue"]

#: Requests buffered for the writer before callers wait; also the most one
#: batch takes, so that progress shows even over a slow link.
OUTGOING_LIMIT: Final = 1 << 20


@final
class RequestQueue:
    """What waits to be sent to the hub.

    ``check`` raises the connection's failure, if it has one: every wait
    ends with it, as :meth:`fail` wakes them all.
    """

    __slots__ = (
        "_check",
        "_items",
        "_queued_bytes",
        "_room",
        "_sent",
        "_timeout",
        "_wake",
        "queued_total",
        "sent_total",
    )

    def __init__(self, timeout: float, check: Callable[[], None]) -> None:
        self._timeout = timeout
        self._check = check
        self._items: deque[bytes] = deque()
        self._queued_bytes = 0
        # Bytes queued, and handed to the stream, since the start.
        self.queued_total = 0
        self.sent_total = 0
        self._wake = trio.Event()
        self._room = trio.Event()  # set (and replaced) when the writer drains
        self._sent = trio.Event()  # set (and replaced) when a batch has gone out

    def queue(self, data: bytes) -> None:
        """Queue one whole request; never waits (the reader queues too)."""
        self._items.append(data)
        self._queued_bytes += len(data)
        self.queued_total += len(data)
        self._wake.set()

    async def wait_for_room(self) -> None:
        """Wait until the queue is under :data:`OUTGOING_LIMIT`, for at most the timeout.

        Raises:
            HubTimeout: the hub took none of our requests for that long.
        """
        if self._queued_bytes <= OUTGOING_LIMIT:
            # The common case, and a cancel scope costs more than the whole
            # request otherwise does: only a wait needs a deadline.
            return
        with trio.move_on_after(self._timeout):
            while self._queued_bytes > OUTGOING_LIMIT:
                await self._room.wait()
                self._check()
        if self._queued_bytes > OUTGOING_LIMIT:
            raise HubTimeout(f"the hub took none of our requests for {self._timeout:g} s")

    async def until_sent(self, end: int, deadline: trio.CancelScope) -> None:
        """Wait until the first ``end`` bytes queued have gone out, for as
        long as the writer makes progress: each batch that goes out moves
        ``deadline`` (the caller's scope, which then times its answer too)
        ``timeout`` seconds on, so a slow link may take a while over a big
        request, and a hub that reads nothing never lets it go: the
        caller's scope then ends the wait, and the caller tells which.
        """
        while self.sent_total < end:
            await self._sent.wait()
            self._check()
            deadline.deadline = trio.current_time() + self._timeout

    async def write(self, stream: trio.abc.SendStream) -> None:
        """The writer task: send what is queued, a batch at a time, until the stream fails."""
        items = self._items
        while True:
            if not items:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            taken: list[bytes] = []
            size = take(items, OUTGOING_LIMIT, taken)
            self._queued_bytes -= size
            self._room.set()
            self._room = trio.Event()
            await stream.send_all(b"".join(taken))
            self.sent_total += size
            self._sent.set()
            self._sent = trio.Event()

    def fail(self) -> None:
        """Wake every wait: the connection is over (``check`` now raises)."""
        self._room.set()
        self._sent.set()
