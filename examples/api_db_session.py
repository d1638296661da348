"""An "api" and a "db" service meet in a hub session: messages, a direct reply, a variable.

The scenario of ``securesess demo``, as code to copy. Here the hub and both
services run in one process for brevity; in production each is its own
process (``securesess hub --listen ... --identity hub --policy policy.toml``
for the hub), and each service only needs the ``connect_hub`` part.
Run it with ``python examples/api_db_session.py``.
"""

from __future__ import annotations

import tempfile
from functools import partial

import trio

import securesess
from keystore import Keystore

POLICY = """
[[rule]]
name = "services"
groups = ["services"]
sessions = ["orders"]
rights = ["create", "join", "send", "receive", "set"]
"""


def issue_identities(store: Keystore) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=3600)
    for name, groups in (("hub", []), ("api", ["services"]), ("db", ["services"])):
        store.issue_identity(
            name, ca="ops", ca_passphrase=None, passphrase=None, groups=groups, valid_seconds=3600
        )


async def api(store: Keystore, port: int, db_joined: trio.Event) -> None:
    trust = store.trust()
    async with (
        securesess.connect_hub(
            "127.0.0.1", port, identity=store.identity("api"), trust=trust, expect="hub"
        ) as hub,
        await hub.join("orders", create=True) as session,
    ):
        await db_joined.wait()
        sent = await session.send(b"SELECT balance FROM accounts WHERE id = 42")
        print(f"api: sent query {sent}")
        await session.set("currency", b"EUR", expect_version=0)
        async for event in session:
            if isinstance(event, securesess.Message) and event.direct:
                print(f"api: {event.sender.name} answered {event.data.decode()!r}")
                break


async def db(store: Keystore, port: int, db_joined: trio.Event) -> None:
    trust = store.trust()
    async with (
        securesess.connect_hub(
            "127.0.0.1", port, identity=store.identity("db"), trust=trust, expect="hub"
        ) as hub,
        await hub.join("orders", create=True) as session,
    ):
        db_joined.set()
        async for event in session:
            if isinstance(event, securesess.Message):
                print(f"db: {event.sender.name} asks {event.data.decode()!r}")
                query = event
            elif isinstance(event, securesess.VariableChanged):
                print(f"db: {event.key} is now {event.value.decode()!r}")
                await session.send(b"balance: 1024.00", to=query.sender)
            elif isinstance(event, securesess.MemberLeft):
                print(f"db: {event.member.name} left")
                break


async def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        store = Keystore.open(home)
        issue_identities(store)
        policy = securesess.Policy.parse(POLICY)
        async with trio.open_nursery() as nursery:
            hub = await nursery.start(
                partial(
                    securesess.serve_hub,
                    0,
                    host="127.0.0.1",
                    identity=store.identity("hub"),
                    trust=store.trust(),
                    policy=policy,
                )
            )
            db_joined = trio.Event()
            async with trio.open_nursery() as services:
                services.start_soon(api, store, hub.port, db_joined)
                services.start_soon(db, store, hub.port, db_joined)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
