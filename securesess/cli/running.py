"""Serving until a signal: what ``hub`` and ``tunnel`` share.

SIGHUP reloads (the keystore's trust, the policy) and keeps the old ones if
the new files are wrong; SIGTERM or SIGINT stops: at once, or first by a
drain and, on a second signal, at once.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import click
import trio

#: Starts serving, reports started (through the task status) once listening,
#: and returns when there is nothing left to serve (after a drain).
Serve = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Served:
    """What :func:`serve_until_signalled` runs, and how it reacts to signals."""

    serve: Serve
    #: The one line printed on stdout once listening.
    banner: Callable[[], str]
    #: Reads the new configuration and returns how to apply it; raises if it
    #: is wrong, which keeps the old one.
    load: Callable[[], Callable[[], None]]
    #: What a reload replaces, for its log lines ("the policy and the trust store").
    what: str
    log: logging.Logger
    #: A graceful stop for the first SIGTERM or SIGINT (None: stop at once).
    drain: Callable[[], Awaitable[None]] | None = None
    #: A line printed on stdout once stopped, if any: what was served.
    farewell: Callable[[], str] | None = None


async def serve_until_signalled(served: Served) -> OSError | None:
    """Serve until stopped by a signal; the error if it cannot listen."""
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[object]) -> None:
                await served.serve(task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop waiting for signals

            try:
                await nursery.start(serve)
            except OSError as exc:
                return exc
            click.echo(served.banner())
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    _reload(served)
                elif served.drain is None:
                    served.log.info("stopping on %s", name)
                    nursery.cancel_scope.cancel()
                elif not stopping:
                    stopping = True
                    served.log.info("%s: draining", name)
                    nursery.start_soon(served.drain)
                else:
                    served.log.info("%s again: cutting every connection", name)
                    nursery.cancel_scope.cancel()
    if served.farewell is not None:
        click.echo(served.farewell())
    return None


def _reload(served: Served) -> None:
    try:
        apply = served.load()
    except Exception as exc:  # whatever is wrong in the files, the server goes on
        served.log.error("reload failed, keeping the old %s: %s", served.what, exc)
        return
    apply()
    served.log.info("reloaded the %s", served.what)
