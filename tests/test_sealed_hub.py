"""Sealed sessions against the hub, from the attacker's side, at the hub-protocol level.

Issue 15's promises, each tested where it is made: a curious hub that
records every byte it relays sees no plaintext; a malicious hub that
reorders, replays, drops, delivers out of its epoch, forges or replays a
commit, relabels a sender, keeps delivering to a removed member or adds a
member nobody vouches for is caught with a typed error (SessionTampered,
whose ``__cause__`` is the SealingError), and the application never gets
altered or forged data; and a removed member's process, handed every byte
the hub sent the others after its removal, decrypts nothing.

The malicious hub is a real hub behind a man in the middle who holds the
hub's key (tests/malicious_hub.py); the members are the real client. The
attacks on the sans-IO sealing core itself are tests/test_sealing_attacks.py.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import struct
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keystore import Identity
from securesess.sessions.client import HubConnection
from securesess.sessions.events import MemberJoined, MemberLeft, Message, Variable, VariableChanged
from securesess.sessions.sealing import (
    Commit,
    Credential,
    ForgedContent,
    ReplayedContent,
    Roster,
    RosterEntry,
    SealingError,
    StaleEpoch,
    UnknownSender,
    UntrustedMember,
    make_commit,
)
from securesess.sessions.wire import MAX_ANSWER, MessageReader, Op, pack
from tests import sealing_spec as spec
from tests.hubs import HubWorld
from tests.malicious_hub import Link, MaliciousHub, Watch
from tests.test_confinement import POLICY as PROCESS_POLICY
from tests.test_confinement import Agent, World

SESSION = "orders"


def _marker() -> bytes:
    """A string no byte of the protocol holds by chance."""
    return b"MARKER-" + secrets.token_hex(12).encode()


class Cast:
    """Members joined through a malicious hub, each session watched."""

    def __init__(self, hub: MaliciousHub, nursery: trio.Nursery) -> None:
        self.hub = hub
        self.world = hub.world
        self._nursery = nursery
        self._connections: dict[str, HubConnection] = {}

    def link(self, name: str) -> Link:
        return self.hub.links[name]

    async def connect(self, name: str) -> None:
        if name not in self._connections:
            self._connections[name] = await self._nursery.start(self._hold, name)

    async def _hold(self, name: str, task_status: trio.TaskStatus[HubConnection]) -> None:
        # In a task of its own: a connection is closed by the task that opened it.
        async with self.hub.connect(name) as connection:
            task_status.started(connection)
            await trio.sleep_forever()

    async def join(self, name: str, *, create: bool = False) -> Watch:
        await self.connect(name)
        session = await self._connections[name].join(SESSION, create=create)
        watch = Watch(session)
        self._nursery.start_soon(watch.run)
        return watch


@pytest.fixture
async def cast(nursery: trio.Nursery) -> AsyncIterator[Cast]:
    world = HubWorld()
    await world.start(nursery)
    async with trio.open_nursery() as members:
        yield Cast(MaliciousHub(world), members)
        members.cancel_scope.cancel()


async def _trio(cast: Cast) -> tuple[Watch, Watch, Watch]:
    """api (#1), db (#2) and cache (#3) in epoch 3 of the session."""
    return (
        await cast.join("api", create=True),
        await cast.join("db"),
        await cast.join("cache"),
    )


async def _epoch(watch: Watch, epoch: int) -> None:
    """Until ``watch``'s member has applied the commit of ``epoch``."""
    group = watch.session._sealing.group
    with trio.fail_after(5):
        while group.epoch < epoch:
            await trio.sleep(0.01)


def _plaintexts(watch: Watch) -> list[bytes]:
    """Every message body and variable value the application got."""
    return [
        event.data if isinstance(event, Message) else event.value
        for event in watch.events
        if isinstance(event, Message | VariableChanged)
    ]


# -- a curious hub ----------------------------------------------------------------------


async def test_a_curious_hub_relays_messages_direct_messages_and_values_it_cannot_read(
    cast: Cast, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub is honest but records every byte, both ways, of every member's
    connection: the plaintext is never in it, though every member's
    application gets it (a late joiner too, the value sealed again for it)."""
    caplog.set_level("DEBUG")
    marker = _marker()
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    await api.session.set("menu", marker + b"-value")
    await api.session.send(marker + b"-broadcast")
    await db.session.send(marker + b"-direct", to=api.session.me)
    cache = await cast.join("cache")
    await cache.session.send(marker + b"-late")
    await db.message(marker + b"-broadcast")
    await db.message(marker + b"-late")
    await api.message(marker + b"-direct")
    await api.message(marker + b"-late")
    await db.until(lambda w: any(isinstance(e, VariableChanged) for e in w.events))
    assert db.session.get("menu") == Variable(marker + b"-value", 1)
    assert cache.session.get("menu") == Variable(marker + b"-value", 1)
    assert [e.direct for e in api.events if isinstance(e, Message)] == [True, False]

    links = cast.hub.links.values()
    relayed = {message[0] for link in links for message in link.received}
    assert {Op.MESSAGE, Op.VARIABLE, Op.VALUE, Op.EPOCH, Op.DUE} <= relayed
    for link in links:
        assert marker not in link.from_hub, link.name
        assert marker not in link.from_client, link.name
    # Nor in what the hub keeps, or logs.
    hub = cast.world.hub
    assert hub is not None
    stored = hub._core._store.get(SESSION)
    assert stored is not None
    assert all(marker not in value for value, _ in stored.variables.values())
    assert marker.decode() not in caplog.text


# -- a malicious hub: order ---------------------------------------------------------------


async def test_two_messages_of_one_sender_swapped_by_the_hub_are_refused_as_a_replay(
    cast: Cast,
) -> None:
    """(a) The hub swaps two messages of api, and numbers them so that the
    client's own order check passes: the older arrives after the newer."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    held: list[list[Any]] = []

    def swap(link: Link, message: list[Any]) -> list[list[Any]]:
        if message[0] != Op.MESSAGE:
            return [message]
        if not held:
            held.append(message)
            return []
        return [message, held[0]]

    cast.link("db").rule = swap
    await api.session.send(b"first")
    await api.session.send(b"second")
    assert isinstance(await db.tampered(), ReplayedContent)
    # The newer one is the sender's, whole; the older one never arrives.
    assert db.messages == [b"second"]


async def test_an_event_the_hub_moves_back_in_its_own_order_is_never_delivered(
    cast: Cast,
) -> None:
    """(a) The same swap under the hub's own numbers: the client ignores an
    event whose seq it has passed (docs/protocol.md §7). That is a dropped
    message (below), not a session's end: nothing altered gets through."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    held: list[list[Any]] = []

    def swap(link: Link, message: list[Any]) -> list[list[Any]]:
        if message[0] != Op.MESSAGE or len(held) > 1:
            return [message]
        held.append(message)
        return [] if len(held) == 1 else [message, held[0]]

    link = cast.link("db")
    link.rule, link.renumber = swap, False
    for data in (b"first", b"second", b"third"):
        await api.session.send(data)
    await db.message(b"third")
    assert db.messages == [b"second", b"third"]
    assert not db.done.is_set()


@pytest.mark.parametrize("kind", ["message", "direct", "variable"])
async def test_content_the_hub_delivers_twice_is_refused_the_second_time(
    cast: Cast, kind: str
) -> None:
    """(b) The hub replays what it has delivered, under a fresh seq."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    op = Op.VARIABLE if kind == "variable" else Op.MESSAGE
    cast.link("db").rule = lambda link, m: [m, m] if m[0] == op else [m]
    if kind == "variable":
        await api.session.set("menu", b"once")
    else:
        await api.session.send(b"once", to=db.session.me if kind == "direct" else None)
    assert isinstance(await db.tampered(), ReplayedContent)
    assert _plaintexts(db) == [b"once"]


async def test_a_message_the_hub_drops_is_missing_and_nothing_else_changes(cast: Cast) -> None:
    """(c) Dropping is denial of service, which no seal can prevent or, by
    counters alone, detect: a sender's counters skip anyway, over the direct
    messages it sends others. What must hold is that the rest arrives whole
    and in order, and that nothing stands in for what was dropped."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    seen: list[list[Any]] = []

    def drop_the_second(link: Link, message: list[Any]) -> list[list[Any]]:
        if message[0] == Op.MESSAGE:
            seen.append(message)
            if len(seen) == 2:
                return []
        return [message]

    cast.link("db").rule = drop_the_second
    for data in (b"one", b"two", b"three"):
        await api.session.send(data)
    await api.session.send(b"to another", to=api.session.me)  # db's gap from api grows
    await api.session.send(b"four")
    await db.message(b"four")
    assert db.messages == [b"one", b"three", b"four"]
    assert not db.done.is_set()


@pytest.mark.parametrize("when", ["after the commit that ended it", "before its commit"])
async def test_content_delivered_outside_its_epoch_is_refused(cast: Cast, when: str) -> None:
    """(d) The hub holds a message of epoch 2 back until the commit of epoch
    3 has reached db; or holds that commit back from db and delivers a
    message of epoch 3 first."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    held: list[list[Any]] = []
    sealed_in = Op.MESSAGE if when.startswith("after") else Op.EPOCH

    def hold(link: Link, message: list[Any]) -> list[list[Any]]:
        if message[0] == sealed_in and not held:
            held.append(message)
            return []
        if held and message[0] != sealed_in and message[0] in (Op.EPOCH, Op.MESSAGE):
            return [message, held.pop()]
        return [message]

    cast.link("db").rule = hold
    if sealed_in is Op.MESSAGE:
        await api.session.send(b"of epoch 2")
        await cast.link("db").until(lambda m: m[0] == Op.MESSAGE)
        await cast.join("cache")
    else:
        await cast.join("cache")
        await api.session.send(b"of epoch 3")
    # Out of its epoch (StaleEpoch), or caught even before: cache announced
    # by a JOINED that no commit db applied brought in (ForgedContent).
    assert isinstance(await db.tampered(), StaleEpoch | ForgedContent)
    assert db.messages == []


# -- a malicious hub: commits -------------------------------------------------------------

Forgery = Callable[[Cast, list[Any]], list[list[Any]]]


def _epoch_message(genuine: list[Any], commit: bytes, committer: int | None = None) -> list[Any]:
    _, session, seq, by, _, reseals = genuine
    return [Op.EPOCH, session, seq, by if committer is None else committer, commit, reseals]


def _by_a_trusted_outsider(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    """A commit by visitor, whom every member's trust vouches for, but who
    is no member of the epoch: the hub adds it to the roster as #99."""
    commit = Commit.decode(genuine[4])
    visitor = cast.world.identities["visitor"]
    signing = visitor.signing_key
    assert signing is not None
    credential = Credential(visitor.public_key, signing.public_key().public_bytes_raw(), b"")
    entry = RosterEntry.make(
        session=SESSION,
        member=99,
        credential=credential,
        membership_key=X25519PrivateKey.generate().public_key().public_bytes_raw(),
        signing_key=signing,
    )
    roster = Roster([*(commit.roster[m] for m in commit.roster), entry])
    forged = make_commit(
        session=SESSION,
        epoch=commit.epoch,
        previous=commit.previous,
        committer=99,
        signing_key=signing,
        roster=roster,
    )
    return [_epoch_message(genuine, forged, committer=99)]


def _the_hubs_own_secret_as_apis(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    """The hub swaps the epoch's keys for its own: the same roster, a secret
    it chose, signed with a key of its own and said to be api's commit."""
    commit = Commit.decode(genuine[4])
    forged = make_commit(
        session=SESSION,
        epoch=commit.epoch,
        previous=commit.previous,
        committer=commit.committer,
        signing_key=Ed25519PrivateKey.generate(),
        roster=commit.roster,
    )
    return [_epoch_message(genuine, forged)]


def _an_old_commit(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    """The commit of the epoch before, again, in place of the new one."""
    old = next(m for m in cast.link("db").received if m[0] == Op.EPOCH)
    return [_epoch_message(genuine, old[4], committer=old[3])]


def _the_commit_twice(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    return [genuine, genuine]


def _a_newcomers_key_replaced(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    """cache's membership key in the roster replaced by one the hub holds,
    so that cache's wrap would be the hub's to open."""
    data: bytes = genuine[4]
    cache_key = Commit.decode(data).roster[3].membership_key
    assert data.count(cache_key) == 1
    ours = X25519PrivateKey.generate().public_key().public_bytes_raw()
    return [_epoch_message(genuine, data.replace(cache_key, ours))]


def _two_wraps_swapped(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    """api's and db's wraps of the epoch secret change places."""
    data: bytes = genuine[4]
    parsed = spec.parse_commit(data)
    wraps = dict(parsed.wraps)
    wraps[1], wraps[2] = wraps[2], wraps[1]
    body = b"".join(
        struct.pack(">H", len(wraps[e.member])) + wraps[e.member] for e in parsed.entries
    )
    forged = parsed.head + body + parsed.confirmation + parsed.signature
    assert len(forged) == len(data)
    assert forged != data
    return [_epoch_message(genuine, forged)]


def _another_committer_named(cast: Cast, genuine: list[Any]) -> list[list[Any]]:
    """The genuine commit, said to be db's (it is api's)."""
    return [_epoch_message(genuine, genuine[4], committer=2)]


@pytest.mark.parametrize(
    ("forgery", "refusal"),
    [
        (_by_a_trusted_outsider, UnknownSender),
        (_the_hubs_own_secret_as_apis, ForgedContent),
        (_an_old_commit, StaleEpoch),
        (_the_commit_twice, StaleEpoch),
        (_a_newcomers_key_replaced, ForgedContent),
        (_two_wraps_swapped, ForgedContent),
        (_another_committer_named, ForgedContent),
    ],
    ids=lambda p: p.__name__.strip("_").replace("_", " ") if callable(p) else "",
)
async def test_a_commit_the_hub_forged_or_replayed_is_refused_and_its_epoch_reads_nothing(
    cast: Cast, forgery: Forgery, refusal: type[SealingError]
) -> None:
    """(e) When cache joins, db gets a forged epoch 3 instead of api's commit."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")

    def forge(link: Link, message: list[Any]) -> list[list[Any]]:
        if message[0] == Op.EPOCH and Commit.decode(message[4]).epoch == 3:
            return forgery(cast, message)
        return [message]

    cast.link("db").rule = forge
    cache = await cast.join("cache")
    refused = await db.tampered()
    # A commit applied twice is caught by the JOINED the first one promised
    # not coming before it (ForgedContent), if not as stale.
    assert isinstance(refused, refusal) or (
        refusal is StaleEpoch and isinstance(refused, ForgedContent)
    )
    await cache.session.send(b"in epoch 3")
    await api.message(b"in epoch 3")
    assert db.messages == []
    assert db.session._sealing.group.erased


# -- a malicious hub: senders -------------------------------------------------------------


def _relabel(field: int, value: object) -> Callable[[list[Any]], list[Any]]:
    return lambda m: [*m[:field], value, *m[field + 1 :]]


def _flip_last_byte_of_the_ciphertext(m: list[Any]) -> list[Any]:
    data = bytearray(m[4])
    data[-65] ^= 1
    return [*m[:4], bytes(data), *m[5:]]


@pytest.mark.parametrize(
    ("kind", "rewrite"),
    [
        ("message", _relabel(3, 3)),  # api's message, said to be cache's
        ("direct", _relabel(3, 3)),  # api's direct message to db, said to be cache's
        ("variable", _relabel(6, 3)),  # api's value, said to be set by cache
        ("variable", _relabel(3, "other")),  # api's value, under another key
        ("message", _relabel(5, True)),  # a broadcast, said to be for db alone
        ("direct", _relabel(5, False)),  # db's direct message, said to be for all
        ("message", _flip_last_byte_of_the_ciphertext),
        ("variable", _flip_last_byte_of_the_ciphertext),
    ],
    ids=[
        "message-sender",
        "direct-sender",
        "variable-setter",
        "variable-key",
        "broadcast-as-direct",
        "direct-as-broadcast",
        "message-altered",
        "variable-altered",
    ],
)
async def test_content_the_hub_relabels_or_alters_is_refused_as_a_forgery(
    cast: Cast, kind: str, rewrite: Callable[[list[Any]], list[Any]]
) -> None:
    """(f) The hub says api's content is another member's, another key's,
    another kind, or changes a bit of it: no seal lets it."""
    api, db, _ = await _trio(cast)
    op = Op.VARIABLE if kind == "variable" else Op.MESSAGE
    cast.link("db").rule = lambda link, m: [rewrite(m) if m[0] == op else m]
    if kind == "variable":
        await api.session.set("menu", b"api's")
    else:
        await api.session.send(b"api's", to=db.session.me if kind == "direct" else None)
    assert isinstance(await db.tampered(), ForgedContent)
    assert _plaintexts(db) == []
    assert db.session.get("menu") is None
    assert db.session.get("other") is None


async def test_a_member_the_hub_gives_another_peers_name_is_not_shown_under_that_name(
    cast: Cast,
) -> None:
    """(f) The hub keeps cache's key but describes it as ops, an admin: db
    shows cache under the name its own trust gives cache's key."""
    api = await cast.join("api", create=True)
    db = await cast.join("db")

    def rename(link: Link, message: list[Any]) -> list[list[Any]]:
        if message[0] == Op.JOINED and message[3][1] == "cache":
            _, key, _ = message[3][1:]
            return [[*message[:3], [message[3][0], "ops", key, []]]]
        return [message]

    cast.link("db").rule = rename
    cache = await cast.join("cache")
    await cache.session.send(b"from cache")
    await api.message(b"from cache")
    with trio.move_on_after(2):
        await db.until(lambda w: w.done.is_set() or b"from cache" in w.messages)
    names = [e.sender.name for e in db.events if isinstance(e, Message)]
    assert names == ["cache"], names
    joined = [e.member for e in db.events if isinstance(e, MemberJoined)]
    assert [member.name for member in joined] == ["cache"]


# -- a malicious hub: a removed member ----------------------------------------------------


def _copying_to(
    cast: Cast, name: str, *, after_left: int, commits: bool = False, but: tuple[Op, ...] = ()
) -> Callable[[Link, list[Any]], list[list[Any]]]:
    """A rule: deliver what the hub sends, except ``but``; once member
    ``after_left`` has left, copy the content (and the commits, with
    ``commits``) to ``name``'s link too: a hub in league with ``name``."""
    removed = False
    copied = (Op.MESSAGE, Op.VARIABLE, Op.EPOCH) if commits else (Op.MESSAGE, Op.VARIABLE)

    def rule(link: Link, message: list[Any]) -> list[list[Any]]:
        nonlocal removed
        if message[0] in but:
            return []
        if removed and message[0] in copied:
            cast.link(name).deliver(message)
        removed = removed or (message[0] == Op.LEFT and message[3] == after_left)
        return [message]

    return rule


@pytest.mark.parametrize("commit", ["with", "without"])
async def test_a_removed_member_the_hub_keeps_delivering_to_opens_nothing(
    cast: Cast, commit: str
) -> None:
    """(g) ops removes db; the hub, in league with db, does not tell it,
    and hands it everything it relays to api from then on, with or without
    the commit that left db out."""
    ops = await cast.join("ops", create=True)
    api = await cast.join("api")
    db = await cast.join("db")
    db_id = db.session.me.id
    cast.link("db").rule = lambda link, m: [] if m[0] == Op.ENDED else [m]
    copy = _copying_to(cast, "db", after_left=db_id, commits=commit == "with")
    cast.link("api").rule = copy
    marker = _marker()
    await ops.session.remove(db_id)
    await _epoch(ops, 4)
    await _epoch(api, 4)
    await ops.session.send(marker + b"-broadcast")
    await ops.session.send(marker + b"-direct", to=api.session.me)
    await ops.session.set("menu", marker + b"-value")
    await api.message(marker + b"-direct")
    await api.until(lambda w: w.session.get("menu") is not None)
    refusal = await db.tampered()
    assert isinstance(refusal, UnknownSender if commit == "with" else StaleEpoch)
    assert not [data for data in _plaintexts(db) if marker in data]
    assert not any(isinstance(e, MemberLeft) for e in db.events)  # it was never told


async def test_what_a_member_sends_after_seeing_another_removed_is_unreadable_to_it(
    cast: Cast,
) -> None:
    """(g) As above, but the hub also keeps the DUE from ops, so no commit
    ends the epoch db is in (for the 10 s an honest hub would give ops to
    commit): api has seen db leave, and sends. Expected: api waits for an
    epoch without db (or times out) rather than seal for one with it."""
    ops = await cast.join("ops", create=True)
    api = await cast.join("api")
    db = await cast.join("db")
    db_id = db.session.me.id
    cast.link("db").rule = lambda link, m: [] if m[0] == Op.ENDED else [m]
    cast.link("ops").rule = _copying_to(cast, "db", after_left=db_id, but=(Op.DUE,))
    marker = _marker()
    await ops.session.remove(db_id)
    await api.until(lambda w: any(isinstance(e, MemberLeft) for e in w.events))
    with trio.move_on_after(2):
        await api.session.send(marker)
    await trio.sleep(0.2)
    assert not [data for data in _plaintexts(db) if marker in data]


# -- a malicious hub: a member nobody vouches for -----------------------------------------


async def test_a_member_the_hub_trusts_but_the_members_do_not_is_refused_by_each(
    cast: Cast,
) -> None:
    """(h) The hub pins mallory (its own trust admits it, the policy lets it
    join); no member's trust vouches for it. The commit that brings it in is
    refused by every member, its committer included, and nothing mallory
    sends reaches them."""
    world = cast.world
    mallory = Identity.generate("mallory")
    world.identities["mallory"] = mallory
    world.trust.add_peer("mallory", mallory.public_key, ["services"])
    api = await cast.join("api", create=True)
    db = await cast.join("db")
    intruder = await cast.join("mallory")
    for member in (api, db):
        refusal = await member.tampered()
        assert isinstance(refusal, UntrustedMember), refusal
        assert "member #3" in str(refusal), refusal
    with contextlib.suppress(Exception):
        await intruder.session.send(b"from mallory")
    await trio.sleep(0.2)
    assert api.messages == db.messages == []
    assert api.session._sealing.group.erased
    assert db.session._sealing.group.erased


# -- real processes -----------------------------------------------------------------------

#: The confinement tests' policy, and api may remove members of "orders".
ADMIN_POLICY = (
    PROCESS_POLICY
    + """
[[rule]]
name = "admins"
names = ["api"]
sessions = ["orders"]
rights = ["admin"]
"""
)


class Processes(World):
    """test_confinement's world of processes, with members that record what
    the hub sends them."""

    async def member(self, name: str, *, record: bool = True) -> Agent:
        config = {
            "home": str(self.home),
            "identity": name,
            "port": self.port,
            "raw": False,
            "record": record,
        }
        command = [sys.executable, "-m", "tests.hub_agent", json.dumps(config)]
        agent: Agent = await self._spawn(command, name, Agent)
        await agent.ok("connect")
        return agent


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    async with trio.open_nursery() as nursery:
        world = Processes(tmp_path / "keystore", nursery)
        try:
            (world.home / "policy.toml").write_text(ADMIN_POLICY, encoding="utf-8")
            await world.start_hub()
            yield world
        finally:
            with trio.CancelScope(shield=True):
                await world.stop()
            nursery.cancel_scope.cancel()


def _received(agent: Agent) -> bytes:
    """Every plaintext byte the hub sent ``agent`` after its WELCOME."""
    return b"".join(bytes.fromhex(r["recv"]) for r in agent.records if "recv" in r)


def _received_messages(agent: Agent) -> list[list[Any]]:
    return list(MessageReader(MAX_ANSWER).feed(_received(agent)))


async def test_a_hub_process_relays_to_member_processes_nothing_they_did_not_seal(
    processes: Processes,
) -> None:
    """A `securesess hub` process and three member processes; each member
    reports every byte the hub sent it. Messages, a direct message and a
    variable (sealed again for a late joiner) all carry a marker that every
    application gets and that is in none of those bytes, nor the hub's log."""
    marker = _marker().decode()
    api, db = await processes.member("api"), await processes.member("db")
    await api.ok("join", session=SESSION, create=True)
    await db.ok("join", session=SESSION)
    await api.ok("set", session=SESSION, key="menu", value=marker + "-value")
    await api.ok("send", session=SESSION, data=marker + "-broadcast")
    api_id = (await api.ok("epoch", session=SESSION))["roster"][0]
    await db.ok("send", session=SESSION, data=marker + "-direct", to=api_id)
    cache = await processes.member("cache")
    await cache.ok("join", session=SESSION)
    assert (await cache.ok("get", session=SESSION, key="menu"))["value"] == marker + "-value"
    await api.ok("send", session=SESSION, data=marker + "-late")
    await db.event(event="message", data=marker + "-broadcast")
    await db.event(event="variable", key="menu", value=marker + "-value")
    await api.event(event="message", data=marker + "-direct", direct=True)
    await db.event(event="message", data=marker + "-late")
    await cache.event(event="message", data=marker + "-late")

    for agent in (api, db, cache):
        seen = _received(agent)
        ops = {message[0] for message in _received_messages(agent)}
        assert {Op.EPOCH, Op.MESSAGE} <= ops, agent.name
        assert marker.encode() not in seen, agent.name
    assert {m[0] for m in _received_messages(cache)} >= {Op.VALUE}
    assert marker not in processes.hub_log()


async def test_a_removed_member_process_handed_every_later_byte_decrypts_nothing(
    processes: Processes,
) -> None:
    """api removes db's process, which kept every key it held (its epoch's
    secret, roster and membership key) before its client erased them. Then
    it is handed every byte the hub sent api and cache after the removal:
    the commit that left it out and all content after. It opens nothing,
    with its own sealing state, a fresh one, or the hoard; the same hoard
    does open what was sent before the removal (so it is a real one)."""
    marker = _marker().decode()
    api, cache = await processes.member("api"), await processes.member("cache")
    db = await processes.member("db", record=False)
    await api.ok("join", session=SESSION, create=True)
    await cache.ok("join", session=SESSION)
    db_id = (await db.ok("join", session=SESSION))["member"]
    assert (await db.ok("hoard", session=SESSION))["epoch"] == 3
    await api.ok("send", session=SESSION, data="before the removal")
    await db.event(event="message", data="before the removal")
    await cache.event(event="message", data="before the removal")

    await api.ok("remove", session=SESSION, member=db_id)
    await db.event(event="ended", error="SessionClosed")
    for agent in (api, cache):
        with trio.fail_after(5):
            while db_id in (await agent.ok("epoch", session=SESSION))["roster"]:
                await trio.sleep(0.02)
    cache_id = (await cache.ok("epoch", session=SESSION))["roster"][1]
    await api.ok("send", session=SESSION, data=marker + "-broadcast")
    await api.ok("send", session=SESSION, data=marker + "-direct", to=cache_id)
    await api.ok("set", session=SESSION, key="menu", value=marker + "-value")
    await cache.event(event="message", data=marker + "-direct")
    await cache.event(event="variable", value=marker + "-value")

    before: list[list[Any]] = []
    after: list[list[Any]] = []
    for agent in (api, cache):
        messages = _received_messages(agent)
        left = next(i for i, m in enumerate(messages) if m[0] == Op.LEFT and m[3] == db_id)
        after += messages[left + 1 :]
        if agent is cache:
            before = messages[:left]
    kinds = [m[0] for m in after]
    assert kinds.count(Op.EPOCH) == 2, kinds
    assert kinds.count(Op.MESSAGE) >= 2, kinds

    handed = b"".join(pack(*m) for m in after)
    result = await db.ok("try_open", session=SESSION, hex=handed.hex())
    assert result["commits"] == 2, result
    assert result["contents"] >= 3, result
    assert result["opened"] == [], result
    assert set(result["refusals"]) <= {
        "StaleEpoch", "UnknownSender", "ForgedContent", "no wrap opens", "InvalidTag",
    }  # fmt: skip
    # Every attempt refused: four by sealing states and one per context
    # (the hoard's epoch's, and each new one's) for each content; two states
    # and the hoard's wrap for each commit.
    contexts = 1 + result["commits"]
    attempts = result["commits"] * 3 + result["contents"] * (4 + contexts)
    assert sum(result["refusals"].values()) == attempts, result

    control = b"".join(pack(*m) for m in before)
    opened = (await db.ok("try_open", session=SESSION, hex=control.hex()))["opened"]
    assert "before the removal" in opened
    assert not [r for r in db.records if marker in r.get("data", "") + str(r.get("value"))]
