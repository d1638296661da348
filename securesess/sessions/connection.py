"""One client connection of the hub: its stream, its queues, and the writer that empties them.

The hub's reader task decides what to queue (with the session core); the
writer task here sends it, in batches (``Backlogs.take``), and the two
meet on three events: ``wake_writer`` (something to send), ``room`` (the
answers the reader stopped for are sent) and ``writer_done``.
"""

from __future__ import annotations

from typing import Final, final

import trio

from keystore import Peer
from securesess.constants import CloseCode
from securesess.sessions.delivery import Backlogs, Outbox
from securesess.sessions.outcome import Client
from securesess.stream.secure_stream import SecureStream

__all__ = ["HubConnection"]

# Replies a client has not read before the hub stops reading its requests.
_REPLY_LIMIT: Final = 1 << 20
_ABORT_TIMEOUT: Final = 1.0
# How long a client that closed its side gets to read what is still due to it.
_DRAIN_TIMEOUT: Final = 10.0


@final
class HubConnection(Outbox):
    """A client connection's I/O: its stream, its queues, and the events of its two tasks."""

    __slots__ = (
        "client",
        "close",
        "closing",
        "draining",
        "reader_scope",
        "room",
        "stream",
        "wake_writer",
        "writer_done",
    )

    def __init__(self, stream: SecureStream, client: Client) -> None:
        super().__init__(client.peer.public_key)
        self.stream: Final = stream
        self.client: Final = client
        self.wake_writer = trio.Event()
        self.room = trio.Event()
        self.reader_scope: Final = trio.CancelScope()
        self.writer_done: Final = trio.Event()
        # The connection is ending: the writer stops after its current send,
        # or, draining, once it has sent everything queued.
        self.closing = False
        self.draining = False
        #: Why the hub ends this connection, if it does: (close code, reason).
        self.close: tuple[CloseCode, str] | None = None

    @property
    def peer(self) -> Peer:
        """As the trust store knew it when the hub admitted it (the stream's
        ``peer`` is as it was when the handshake checked it)."""
        return self.client.peer

    def wake(self) -> None:
        self.wake_writer.set()

    def end(self, code: CloseCode, reason: str) -> None:
        """Stop reading; the connection closes with ``code`` (unless it already had one)."""
        if self.close is None:
            self.close = (code, reason)
        self.reader_scope.cancel()

    @property
    def unread(self) -> bool:
        """Whether the client is not reading its answers: then the hub stops reading it."""
        return self.reply_bytes > _REPLY_LIMIT

    async def wait_for_room(self) -> None:
        """Wait until the writer has taken the answers queued so far."""
        self.room = trio.Event()
        await self.room.wait()

    async def write_loop(self, backlogs: Backlogs[HubConnection]) -> None:
        try:
            while not self.closing:
                if not self.replies and not self.ready:
                    if self.draining:
                        return
                    self.wake_writer = trio.Event()
                    await self.wake_writer.wait()
                    continue
                batch = backlogs.take(self)
                self.room.set()
                await self.stream.send_all(batch)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.reader_scope.cancel()
        finally:
            self.writer_done.set()

    async def stop_writer(self) -> None:
        """Let a send in progress finish: cancelling it would cut a record in
        half and leave no way to send the CLOSE record. After a clean end of
        input, first send every answer due."""
        if self.close is None:
            self.draining = True
        else:
            self.closing = True
        self.wake()
        with trio.move_on_after(_DRAIN_TIMEOUT if self.draining else _ABORT_TIMEOUT):
            await self.writer_done.wait()

    async def shut(self) -> None:
        """Close the stream, with the hub's reason if it has one, even when cancelled."""
        with trio.CancelScope(shield=True), trio.move_on_after(_ABORT_TIMEOUT):
            if self.close is not None:
                await self.stream.abort(*self.close)
            else:
                await self.stream.aclose()
