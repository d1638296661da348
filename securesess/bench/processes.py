"""Worker processes (``python -m securesess.bench.worker``), from both sides.

The parent starts a worker with a job (:func:`worker_process`) and asks it
questions (:class:`WorkerProcess`); the worker reads its job and the
commands after it (:class:`JsonLines`) and answers them
(:func:`answer_commands`). Both ways, a message is one JSON object a line.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import trio

from securesess.bench.errors import BenchError

__all__ = [
    "WORKER",
    "JsonLines",
    "WorkerProcess",
    "answer_commands",
    "rss_bytes",
    "worker_process",
]

WORKER: Final = (sys.executable, "-m", "securesess.bench.worker")


class JsonLines:
    """Reads one JSON object per line: the worker's reports, or the worker's job."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> dict[str, Any]:
        report = await self.next_or_none()
        if report is None:
            raise BenchError("the worker process exited without reporting")
        return report

    async def next_or_none(self) -> dict[str, Any] | None:
        """The next object, or None if the stream ends (cleanly) before it."""
        while (end := self._buffer.find(b"\n")) < 0:
            data = await self._stream.receive_some()
            if not data:
                if self._buffer:
                    raise BenchError("the stream ended in the middle of a line")
                return None
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        report: dict[str, Any] = json.loads(line)
        return report


@dataclass(slots=True)
class WorkerProcess:
    """A worker serving something on ``port``, answering the parent's questions.

    Each question is a command line on the worker's stdin, answered by one
    report (:func:`answer_commands`).
    """

    port: int
    _commands: trio.abc.SendStream
    _reports: JsonLines

    async def _ask(self, what: str) -> float:
        await self._commands.send_all(json.dumps({what: True}).encode() + b"\n")
        value: float = (await self._reports.next())[what]
        return value

    async def cpu(self) -> float:
        """The worker's CPU time so far, in seconds."""
        return await self._ask("cpu")

    async def rss(self) -> int:
        """The worker's resident set, in bytes, once it is idle."""
        return int(await self._ask("rss"))

    async def next_report(self) -> dict[str, Any]:
        """The worker's next report unasked for, such as a receiver's per connection."""
        return await self._reports.next()


@contextlib.asynccontextmanager
async def worker_process(job: dict[str, Any]) -> AsyncIterator[WorkerProcess]:
    """A worker running ``job``, for the duration of the block.

    The job goes to the worker's stdin, never to its command line, where
    other users could read any key it holds; the worker first reports
    ``{"port": ...}``. Closing stdin at the end of the block asks a worker
    that serves until then to stop, and ``run_process`` checks that it
    exits cleanly. The caller's
    deadline bounds all of it.
    """
    async with trio.open_nursery() as nursery:
        worker: trio.Process = await nursery.start(
            partial(trio.run_process, WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        )
        assert worker.stdin is not None
        assert worker.stdout is not None
        async with worker.stdin:
            await worker.stdin.send_all(json.dumps(job).encode() + b"\n")
            reports = JsonLines(worker.stdout)
            port = (await reports.next())["port"]
            yield WorkerProcess(port, worker.stdin, reports)


async def answer_commands(commands: JsonLines, report: Callable[[dict[str, Any]], None]) -> None:
    """Worker side of :class:`WorkerProcess`: answer each command until stdin ends.

    ``{"cpu": true}`` is answered with ``{"cpu": seconds}`` (this process's
    CPU time), ``{"rss": true}`` with ``{"rss": bytes}`` once every task is
    blocked (queues drained) and after a collection.
    """
    while (command := await commands.next_or_none()) is not None:
        if command.get("cpu"):
            report({"cpu": time.process_time()})
        elif command.get("rss"):
            # Imported here, not with the module: trio.testing imports pytest
            # where it is installed (a development venv), and its ~12,000
            # objects would make every full collection of the benchmark's
            # processes two to three times slower, showing as latency.
            import trio.testing  # noqa: PLC0415 (see above)

            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            gc.collect()
            report({"rss": rss_bytes()})
        else:
            raise BenchError(f"unknown worker command {command!r}")


def rss_bytes() -> int:
    # statm's second field is the resident set, in pages.
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
