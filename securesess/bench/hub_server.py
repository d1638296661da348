"""The hub under test: its keys and its members', and the hub itself in a worker process.

The keys are throwaway ones, written to the run's credentials directory so
that the worker process (:func:`serve`) and the members' side here load the
same identities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from keystore import Identity, TrustStore
from securesess.bench.processes import JsonLines, WorkerProcess, answer_commands, worker_process
from securesess.bench.transports import HOST
from securesess.policy import Policy
from securesess.sessions.hub import serve_hub

__all__ = [
    "hub_identity",
    "hub_process",
    "member_identities",
    "pin_members",
    "serve",
    "write_keys",
]

_POLICY: Final = """\
[[rule]]
name = "bench"
any_peer = true
sessions = ["*"]
rights = ["create", "join", "send", "receive", "set"]
"""
_HUB_KEY: Final = "hub.key"
_MEMBER_KEYS: Final = "hub-members.key"
# A member's static key, then its signing key's seed.
_KEY_SIZE: Final = 64


def _private(identity: Identity) -> bytes:
    assert identity.signing_key is not None, "generated with one"
    return identity.private_bytes() + identity.signing_key.private_bytes_raw()


def write_keys(directory: Path, members: int) -> None:
    """Throwaway keys for the hub and for ``members`` members, in ``directory``."""
    keys = {
        _HUB_KEY: Identity.generate("hub").private_bytes(),
        _MEMBER_KEYS: b"".join(_private(Identity.generate()) for _ in range(members)),
    }
    for name, data in keys.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)


def hub_identity(directory: Path) -> Identity:
    return Identity.from_private_bytes((directory / _HUB_KEY).read_bytes(), "hub")


def member_identities(directory: Path) -> list[Identity]:
    data = (directory / _MEMBER_KEYS).read_bytes()
    return [
        Identity.from_private_bytes(
            data[start : start + 32], f"member-{index}", signing_key=data[start + 32 : start + 64]
        )
        for index, start in enumerate(range(0, len(data), _KEY_SIZE))
    ]


def pin_members(trust: TrustStore, members: list[Identity]) -> TrustStore:
    """``trust`` with every member pinned, signing key and all: the hub
    admits them, and members vouch for each other in sealed sessions."""
    for member in members:
        assert member.name is not None
        trust.add_peer(member.name, member.public_key, signing_key=member.signing_public_key)
    return trust


async def serve(
    credentials: Path, commands: JsonLines, report: Callable[[dict[str, Any]], None]
) -> None:
    """Worker side: run a hub until stdin ends, answering the parent's commands.

    Reports ``{"port": ...}`` once listening, then answers each command
    line with one report (:func:`processes.answer_commands`).
    """
    trust = pin_members(TrustStore(), member_identities(credentials))
    policy = Policy.parse(_POLICY, source="<bench policy>")
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(
            partial(
                serve_hub,
                0,
                identity=hub_identity(credentials),
                trust=trust,
                policy=policy,
                host=HOST,
            )
        )
        report({"port": hub.port})
        await answer_commands(commands, report)
        nursery.cancel_scope.cancel()


def hub_process(credentials: Path) -> contextlib.AbstractAsyncContextManager[WorkerProcess]:
    """A hub in a worker process, for the duration of the block.

    The caller's deadline bounds it; the worker gets a generous one of its
    own in case this process is gone.
    """
    return worker_process({"job": "hub", "credentials": str(credentials), "timeout": 3600})
