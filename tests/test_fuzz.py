"""Fuzzing every parser a peer or a file can reach.

Each test feeds one parser arbitrary input, or valid input with bytes or
values changed, and checks the promise that parser makes: a result, or one
of the errors it documents; never another exception, never a hang, never
altered data, and no half-done step where the code promises all or nothing.
The peers are scripted by hand over in-memory streams, with a clock that
jumps ahead whenever every task waits, so a handshake timeout costs nothing
and a real hang shows up as ``trio.TooSlowError``.

Every test counts its examples per parser in :data:`TRIED` (and the failing
ones in :data:`FAILED`, altered data in :data:`LOST`), for the hardening run
(tests/hardening/fuzz.py). A test marked ``xfail`` has found a bug in the
library that is not fixed yet: its ``reason`` says which, and its
``@example`` reproduces it.

Sections: 1 frames and negotiation; 2 handshake payloads and Noise
messages; 3 the record layer; 4 certificates; 5 the hub protocol; 6 policy
files; 7 keystore files.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import shutil
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import msgpack
import nacl.pwhash
import pytest
import tomli_w
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import StopTest, UnsatisfiedAssumption
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from handshake import (
    DecryptError,
    HandshakeState,
    NoiseProtocol,
    PeerError,
    Token,
    TransportState,
)
from keystore import (
    Certificate,
    CertificateError,
    Identity,
    Keystore,
    KeystoreError,
    TrustStore,
    UntrustedPeerError,
    encode_key,
    sign_certificate,
)
from keystore.armor import armor, dearmor
from securesess import SecureStream
from securesess.constants import CloseCode
from securesess.errors import (
    HandshakeFailed,
    HandshakeTimeout,
    HubTimeout,
    NegotiationFailed,
    PeerAborted,
    PeerRejected,
    PolicyError,
    ProtocolViolation,
    RecordAuthenticationFailed,
    SessionError,
    TruncatedStream,
)
from securesess.policy import Policy, Right
from securesess.sessions.client import HubConnection
from securesess.sessions.hub import Hub
from securesess.sessions.wire import MAX_ANSWER, MAX_REQUEST, VERSION, MessageReader, Op, pack
from securesess.stream.frames import MAX_FRAME, FrameReader, frame
from securesess.stream.payload import CERTIFICATE, decode_payload, encode_payload
from securesess.stream.protocols import prologue, server_protocols
from securesess.stream.records import MAX_BODY, RecordType
from tests.hubs import POLICY, HubWorld
from tests.noise_pairs import PROTOCOL_NAMES, make_pair

# -- counting -------------------------------------------------------------------------

#: Examples run, per parser: one input, or one scripted peer, each.
TRIED: collections.Counter[str] = collections.Counter()
#: Examples that ended otherwise than the parser promises (shrinking included).
FAILED: collections.Counter[str] = collections.Counter()
#: Examples in which data arrived altered, or a forgery was accepted.
LOST: collections.Counter[str] = collections.Counter()
#: The parser each test fuzzes, by test function name.
PARSERS: dict[str, str] = {}

_Test = TypeVar("_Test", bound=Callable[..., None])
# Hypothesis's own control flow passes through a test body: not examples.
_CONTROL: Final = (StopTest, UnsatisfiedAssumption)


def reset_counts() -> None:
    TRIED.clear()
    FAILED.clear()
    LOST.clear()


def fuzzes(parser: str) -> Callable[[_Test], _Test]:
    """Count every example of the decorated test (placed under ``@given``) for ``parser``."""

    def decorate(test: _Test) -> _Test:
        PARSERS[test.__name__] = parser

        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            TRIED[parser] += 1
            try:
                test(*args, **kwargs)
            except _CONTROL:
                TRIED[parser] -= 1
                raise
            except BaseException:
                FAILED[parser] += 1
                raise

        return cast(_Test, counted)

    return decorate


def altered(parser: str, ok: bool) -> bool:
    """Record altered data for ``parser`` unless ``ok``; returns ``ok`` for an assert."""
    if not ok:
        LOST[parser] += 1
    return ok


# The active profile's example count (conftest.py loads "default" or "long").
_EXAMPLES: Final = settings().max_examples


def budget(share: float = 1.0, floor: int = 100) -> settings:
    """A ``share`` of the profile's examples, for tests whose examples run handshakes
    or write files, but at least ``floor`` (or all, if the profile has fewer)."""
    return settings(
        max_examples=max(min(_EXAMPLES, floor), round(_EXAMPLES * share)),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- mutations ------------------------------------------------------------------------

#: One change to a byte string: (kind, position, bytes). Positions wrap around.
Edit = tuple[str, int, bytes]
_EDIT_KINDS: Final = ("flip", "replace", "insert", "delete", "truncate", "duplicate", "extreme")
edit_lists = st.lists(
    st.tuples(
        st.sampled_from(_EDIT_KINDS),
        st.integers(0, 1 << 17),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=3,
)


def mutate(data: bytes, edits: Sequence[Edit]) -> bytes:
    """``data`` with ``edits`` applied in order (any of them may be a no-op)."""
    out = bytearray(data)
    for kind, position, value in edits:
        at = position % (len(out) + 1)
        if kind == "flip" and at < len(out):
            out[at] ^= value[0] or 1
        elif kind == "replace":
            out[at : at + len(value)] = value
        elif kind == "insert":
            out[at:at] = value
        elif kind == "delete":
            del out[at : at + len(value)]
        elif kind == "truncate":
            del out[at:]
        elif kind == "duplicate":
            out[at:at] = out[at : at + 4 * len(value)]
        elif kind == "extreme" and at < len(out):
            out[at] = (0x00, 0xFF, 0x7F, 0x80, 0x01)[value[0] % 5]
    return bytes(out)


#: Any MessagePack value, maps and extension types included.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.sampled_from(["orders", "k", "", "\u2028", "a\x00"])
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=6))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 999_999_999)),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=4) | st.integers(-(2**63), 2**64 - 1), children, max_size=3
        )
    ),
    max_leaves=12,
)


def _nodes(value: object) -> int:
    return 1 + sum(_nodes(item) for item in value) if isinstance(value, list) else 1


def replace_node(value: object, index: int, new: object) -> object:
    """``value`` with its node number ``index`` (pre-order, wrapping) replaced by ``new``."""
    target = index % _nodes(value)

    def walk(node: object) -> object:
        nonlocal target
        if target == 0:
            target = -1
            return new
        target -= 1
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(value)


# -- who takes part -------------------------------------------------------------------

_YEAR: Final = 365 * 24 * 3600


class _World:
    """A CA, a client and a server it certified, and the certificates others hold."""

    def __init__(self) -> None:
        now = int(time.time())
        self.ca = Ed25519PrivateKey.generate()
        rogue = Ed25519PrivateKey.generate()
        client, server = Identity.generate("client"), Identity.generate("server")
        stranger = Identity.generate("stranger")

        def issue(
            key: Ed25519PrivateKey,
            subject: Identity,
            serial: int,
            not_before: int = now - 3600,
            not_after: int = now + 20 * _YEAR,
        ) -> bytes:
            return sign_certificate(
                key,
                subject_key=subject.public_key,
                signing_key=subject.signing_public_key,
                name=subject.name or "",
                groups=["services"],
                serial=serial,
                not_before=not_before,
                not_after=not_after,
            ).encoded

        self.client_certificate = issue(self.ca, client, 1)
        self.server_certificate = issue(self.ca, server, 2)
        self.client = client.with_certificate(Certificate.decode(self.client_certificate))
        self.server = server.with_certificate(Certificate.decode(self.server_certificate))
        #: Certificates that must not vouch for the client's key, or the server's.
        self.foreign = (
            issue(self.ca, stranger, 3),  # for another key
            issue(rogue, client, 4),  # from a CA nobody trusts
            issue(rogue, server, 5),
            issue(self.ca, client, 6, not_before=now - 2 * _YEAR, not_after=now - _YEAR),
            issue(self.ca, server, 7, not_before=now + _YEAR, not_after=now + 2 * _YEAR),
        )
        self.trust = TrustStore()  # both sides trust the CA and pin nobody
        self.trust.add_ca("ops", self.ca.public_key().public_bytes_raw())
        self.psk = bytes(range(32))


WORLD: Final = _World()
_CLIENT_CERT: Final = WORLD.client_certificate
_SERVER_CERT: Final = WORLD.server_certificate


# -- scripted peers -------------------------------------------------------------------

_T = TypeVar("_T")
# Virtual seconds (the clock jumps): far beyond every timeout of the code under test.
_HANG: Final = 3600.0
# Sending in small pieces lets the other side see partial frames; this many at
# most, so that a large message sent a byte at a time costs no more than this.
_MAX_PIECES: Final = 64


def run(main: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``main`` under a clock that jumps whenever every task waits."""
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class _Wire:
    """The raw end of a memory stream, as a scripted peer speaks through it."""

    def __init__(self, stream: trio.abc.Stream, chunk: int | None = None) -> None:
        self.stream = stream
        self.chunk = chunk
        self.frames = FrameReader()
        self.received = bytearray()
        self.eof = False

    async def send(self, data: bytes) -> None:
        try:
            if self.chunk is None:
                await self.stream.send_all(data)
                return
            step = max(self.chunk, len(data) // _MAX_PIECES)
            for start in range(0, len(data), step):
                await self.stream.send_all(data[start : start + step])
                await trio.sleep(0)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _more(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.stream.receive_some(1 << 16)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.received += data
        self.frames.feed(data)
        return True

    async def frame(self) -> bytes | None:
        """The next frame the other side sent, or None if it closed first."""
        while (data := self.frames.next_frame()) is None:
            if not await self._more():
                return None
        return bytes(data)

    async def finish(self, hang: bool) -> None:
        """End our side (unless ``hang``), then read until the other side closes."""
        if not hang:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await cast(trio.abc.HalfCloseableStream, self.stream).send_eof()
        while await self._more():
            while self.frames.next_frame() is not None:
                pass  # the reader takes more bytes only once its frames are out
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.aclose()


def _handshake_state(protocol: str, *, initiator: bool, psk: bytes | None) -> HandshakeState:
    pattern = NoiseProtocol.parse(protocol).pattern
    me = WORLD.client if initiator else WORLD.server
    return HandshakeState(
        protocol,
        initiator=initiator,
        prologue=prologue(protocol),
        s=me.keypair,
        rs=WORLD.server.public_key if pattern.needs_remote_static(initiator) else None,
        psks=[psk] if pattern.psk_count and psk is not None else [],
    )


def _carries_static(protocol: str, index: int) -> bool:
    return Token.S in NoiseProtocol.parse(protocol).pattern.messages[index]


def reference_payload(payload: bytes) -> dict[int, bytes] | None:
    """The fields of a handshake payload as docs/protocol.md §3 defines them, or None."""
    fields: dict[int, bytes] = {}
    seen: set[int] = set()
    pos = 0
    while pos < len(payload):
        if len(payload) - pos < 3:
            return None
        kind, length = payload[pos], int.from_bytes(payload[pos + 1 : pos + 3], "big")
        pos += 3
        if len(payload) - pos < length or kind in seen or (kind < 128 and kind != CERTIFICATE):
            return None
        seen.add(kind)
        if kind == CERTIFICATE:
            fields[kind] = payload[pos : pos + length]
        pos += length
    return fields


def _raw_fields(fields: Sequence[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack(">BH", kind, len(value)) + value for kind, value in fields)


def weighted(strategy: st.SearchStrategy[_T], times: int) -> list[st.SearchStrategy[_T]]:
    """``strategy`` ``times`` over, for st.one_of(): that much more likely than a single one."""
    return [strategy] * times


def payloads(own_certificate: bytes) -> st.SearchStrategy[bytes]:
    """Handshake payloads: the sender's own certificate, others, damaged ones, garbage."""
    return st.one_of(
        *weighted(st.just(encode_payload({CERTIFICATE: own_certificate})), 4),
        st.just(encode_payload({CERTIFICATE: own_certificate, 200: b"optional"})),
        *weighted(st.just(b""), 2),
        st.just(encode_payload({130: b"optional"})),
        st.sampled_from(WORLD.foreign).map(lambda cert: encode_payload({CERTIFICATE: cert})),
        edit_lists.map(lambda edits: encode_payload({CERTIFICATE: mutate(own_certificate, edits)})),
        st.lists(
            st.tuples(st.sampled_from([0, 1, 2, 127, 128, 255]) | st.integers(0, 255), st.binary()),
            max_size=4,
        ).map(_raw_fields),
        st.binary(max_size=200),
    )


def _accepted_certificate(messages: Sequence[bytes]) -> bytes | bool | None:
    """The certificate a receiver keeps from these payloads; False if one is malformed."""
    certificate: bytes | None = None
    for payload in messages:
        fields = reference_payload(payload)
        if fields is None:
            return False
        certificate = fields.get(CERTIFICATE, certificate)
    return certificate


_PLAIN: Final = server_protocols(None, with_psk=False)
_WITH_PSK: Final = server_protocols(None, with_psk=True)


def _seal(transport: TransportState, record_type: int, body: bytes) -> bytes:
    record = frame(transport.encrypt(bytes([record_type]) + body))
    if record_type == RecordType.REKEY:
        transport.rekey_outgoing()
    return record


# -- 1. frames and negotiation ---------------------------------------------------------


def _reference_frames(wire: bytes) -> tuple[list[bytes], bytes]:
    frames, pos = [], 0
    while len(wire) - pos >= 2:
        end = pos + 2 + int.from_bytes(wire[pos : pos + 2], "big")
        if end > len(wire):
            break
        frames.append(wire[pos + 2 : end])
        pos = end
    return frames, wire[pos:]


_frame_streams = st.one_of(
    st.binary(max_size=600),
    st.tuples(
        st.lists(
            st.binary(max_size=40) | st.sampled_from([0, 1, 255, 256, MAX_FRAME]).map(bytes),
            max_size=6,
        ),
        st.binary(max_size=4),
    ).map(lambda parts: b"".join(frame(part) for part in parts[0]) + parts[1]),
)


@given(wire=_frame_streams, cuts=st.lists(st.integers(1, 700), min_size=1, max_size=12))
@budget()
@fuzzes("frame reader")
def test_the_frame_reader_splits_any_bytes_as_their_length_fields_say(
    wire: bytes, cuts: list[int]
) -> None:
    reader = FrameReader()
    views: list[memoryview] = []
    position, step = 0, 0
    while position < len(wire):
        size = cuts[step % len(cuts)]
        step += 1
        reader.feed(wire[position : position + size])
        position += size
        while (view := reader.next_frame()) is not None:
            views.append(view)
    frames, rest = _reference_frames(wire)
    # Views handed out earlier still hold their frames: nothing wrote over them.
    assert [bytes(view) for view in views] == frames
    assert reader.buffered == len(rest)
    assert reader.next_length() == (int.from_bytes(rest[:2], "big") if len(rest) >= 2 else None)


@dataclass(frozen=True)
class ClientScript:
    """What a scripted client sends a real server, from the first byte on."""

    opening: str  # "garbage", "name", "long-name" or "handshake"
    raw: bytes  # the garbage, or the name, or what follows the long name's length
    trailing: bytes  # sent after the name
    length: int  # the long name's length field
    psk_server: bool  # the server allows only psk protocols
    protocol: str  # what a "handshake" opening speaks
    right_psk: bool
    payloads: tuple[bytes, bytes]  # the client's first and second handshake payloads
    edits: tuple[tuple[tuple[Edit, ...], bool], ...]  # per message: edits, to the framed bytes?
    chunk: int | None
    hang: bool  # keep the connection open at the end instead of closing it


_names = st.one_of(
    st.sampled_from(_PLAIN + _WITH_PSK).map(str.encode),
    st.sampled_from(_PLAIN).map(lambda name: name.replace("XX", "NN").encode()),
    st.text(st.characters(max_codepoint=127), max_size=40).map(str.encode),
    st.binary(max_size=300),
    st.tuples(st.sampled_from(_PLAIN), edit_lists).map(lambda x: mutate(x[0].encode(), x[1])),
)


@st.composite
def client_scripts(draw: st.DrawFn) -> ClientScript:
    psk_server = draw(st.booleans())
    protocols = _WITH_PSK if psk_server else _PLAIN
    protocol = draw(st.sampled_from(protocols) | st.sampled_from(_PLAIN + _WITH_PSK))
    per_message = st.tuples(
        st.one_of(*weighted(st.just(()), 3), edit_lists.map(tuple)), st.booleans()
    )
    return ClientScript(
        opening=draw(st.sampled_from(["handshake", "handshake", "name", "garbage", "long-name"])),
        raw=draw(_names),
        trailing=draw(st.binary(max_size=120)),
        length=draw(st.integers(256, MAX_FRAME)),
        psk_server=psk_server,
        protocol=protocol,
        right_psk=draw(st.booleans() | st.just(True)),
        payloads=(draw(payloads(_CLIENT_CERT)), draw(payloads(_CLIENT_CERT))),
        edits=(draw(per_message), draw(per_message)),
        chunk=draw(st.none() | st.integers(1, 70)),
        hang=draw(st.booleans()),
    )


@dataclass
class _ClientRun:
    genuine: bool = False  # every message unchanged, and the server ought to accept us
    accepted: bool = False  # the server's first record was ACCEPT


async def _play_client(wire: _Wire, script: ClientScript, played: _ClientRun) -> None:
    """Speak ``script`` to a real server; after its ACCEPT, send b"hello" and END."""
    if script.opening == "garbage":
        await wire.send(script.raw)
        return
    if script.opening == "name":
        await wire.send(frame(script.raw[:MAX_FRAME]) + script.trailing)
        return
    if script.opening == "long-name":
        await wire.send(script.length.to_bytes(2, "big") + script.raw[: script.length - 1])
        return
    protocol = script.protocol
    psk = WORLD.psk if script.right_psk else bytes(32)
    state = _handshake_state(protocol, initiator=True, psk=psk)
    allowed = _WITH_PSK if script.psk_server else _PLAIN
    sent_payloads: list[bytes] = []
    changed = False
    index = 0
    opening = frame(protocol.encode())
    while not state.is_finished:
        if state.is_my_turn:
            mine = index // 2
            payload = script.payloads[mine]
            sent_payloads.append(payload)
            message = frame(state.write_message(payload))
            edits, framed = script.edits[mine]
            damaged = mutate(message, edits) if framed else frame(mutate(message[2:], edits))
            changed |= damaged != message
            await wire.send(opening + damaged)
            opening = b""
        else:
            answer = await wire.frame()
            if not answer:
                return  # closed, or refused: `00 00` and the list
            try:
                state.read_message(answer)
            except PeerError:
                return  # what we sent was damaged: the server's answer cannot match
        index += 1
    certificate = _accepted_certificate(sent_payloads)
    played.genuine = (
        not changed
        and protocol in allowed
        and (script.right_psk or "psk" not in protocol)
        and certificate == _CLIENT_CERT
    )
    transport = state.into_transport()
    first = await wire.frame()
    if first is None:
        return
    with contextlib.suppress(PeerError):
        if transport.decrypt(first) == bytes([RecordType.ACCEPT]):
            played.accepted = True
            await wire.send(_seal(transport, RecordType.DATA, b"hello"))
            await wire.send(_seal(transport, RecordType.END, b""))


_GENUINE_CLIENT: Final = ClientScript(
    opening="handshake",
    raw=b"",
    trailing=b"",
    length=256,
    psk_server=False,
    protocol="Noise_XX_25519_AESGCM_SHA256",
    right_psk=True,
    payloads=(b"", encode_payload({CERTIFICATE: _CLIENT_CERT})),
    edits=(((), False), ((), False)),
    chunk=None,
    hang=False,
)


@given(script=client_scripts())
@example(script=_GENUINE_CLIENT)
@example(
    script=dataclasses.replace(
        _GENUINE_CLIENT,
        psk_server=True,
        protocol="Noise_IKpsk1_25519_ChaChaPoly_BLAKE2b",
        payloads=(encode_payload({CERTIFICATE: _CLIENT_CERT}), b""),
        chunk=3,
    )
)
@budget(0.25)
@fuzzes("negotiation and handshake, server side")
def test_a_server_reads_any_client_opening_to_a_typed_end(script: ClientScript) -> None:
    allowed = _WITH_PSK if script.psk_server else _PLAIN
    outcome: list[BaseException | None] = []
    received: list[bytes] = []
    played = _ClientRun()

    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        server = SecureStream(
            ours,
            identity=WORLD.server,
            trust=WORLD.trust,
            server_side=True,
            psk=WORLD.psk if script.psk_server else None,
        )
        wire = _Wire(theirs, script.chunk)

        async def respond() -> None:
            try:
                await server.do_handshake()
            except HandshakeFailed as exc:
                outcome.append(exc)
            else:
                outcome.append(None)
                data = bytearray()
                # In IK the server decides on message 1 alone: a client that then
                # cannot go on (a wrong psk) just goes away.
                with trio.move_on_after(_HANG / 2), contextlib.suppress(trio.BrokenResourceError):
                    while chunk := await server.receive_some():
                        data += chunk
                received.append(bytes(data))
            await server.aclose()

        async def play() -> None:
            await _play_client(wire, script, played)
            await wire.finish(script.hang)

        with trio.fail_after(_HANG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(respond)
                nursery.start_soon(play)
        answered = bytes(wire.received)
        if script.opening == "long-name":
            # Judged by the length field alone: no answer, no waiting for the rest.
            assert isinstance(outcome[0], HandshakeFailed)
            assert not isinstance(outcome[0], HandshakeTimeout)
            assert answered == b""
        elif script.opening == "name" and len(script.raw) > 255:
            assert isinstance(outcome[0], HandshakeFailed)
            assert not isinstance(outcome[0], HandshakeTimeout)
            assert answered == b""
        elif script.opening == "name":
            if not script.raw.isascii():
                assert isinstance(outcome[0], HandshakeFailed)
                assert answered == b""
            elif script.raw.decode() not in allowed:
                assert isinstance(outcome[0], NegotiationFailed)
                assert outcome[0].offered == (script.raw.decode(),)
                assert answered == b"\0\0" + frame(",".join(allowed).encode())

    run(main)
    (result,) = outcome
    # What the examples reached, for --hypothesis-show-statistics.
    event(f"{script.opening}: {type(result).__name__}{' (genuine)' * played.genuine}")
    if played.accepted:
        assert result is None
        assert received == [b"hello"]
    if played.genuine:
        assert result is None, f"a genuine client was refused: {result!r}"


@dataclass(frozen=True)
class ServerScript:
    """What a scripted server answers a real client's opening."""

    answer: str  # "garbage", "refuse", "refuse-cut" or "handshake"
    raw: bytes  # the garbage, or the refusal's list of names
    protocol: str  # what the client offers
    right_psk: bool
    payload: bytes  # the server's handshake payload
    edits: tuple[Edit, ...]
    framed: bool  # the edits hit the framed message, length included
    records: tuple[tuple[int, bytes], ...]  # the first records, instead of ACCEPT
    record_edits: tuple[Edit, ...]
    trailing: bytes
    chunk: int | None
    hang: bool


_CLIENT_PROTOCOLS: Final = (
    "Noise_XX_25519_AESGCM_SHA256",
    "Noise_XX_25519_ChaChaPoly_BLAKE2b",
    "Noise_IK_25519_AESGCM_SHA256",
    "Noise_XXpsk3_25519_AESGCM_SHA512",
    "Noise_IKpsk1_25519_ChaChaPoly_BLAKE2s",
)


def _close_body(code: int, reason: bytes) -> bytes:
    return code.to_bytes(2, "big") + reason


_reasons = st.text(max_size=40).map(str.encode) | st.just("é".encode() * 512)
_close_bodies = st.one_of(
    st.builds(_close_body, st.integers(0, 65535), _reasons),
    st.binary(max_size=1),  # too short
    st.builds(_close_body, st.integers(0, 65535), st.just(b"x" * 1025)),  # too long
    st.builds(
        _close_body, st.integers(0, 65535), st.sampled_from([b"\xff", b"a\xc3", b"\xed\xa0\x80"])
    ),
)
_first_records = st.one_of(
    st.just(((RecordType.ACCEPT, b""),)),
    st.just(((RecordType.REKEY, b""), (RecordType.ACCEPT, b""))),
    _close_bodies.map(lambda body: ((RecordType.CLOSE, body),)),
    st.lists(
        st.tuples(st.integers(0, 255), st.binary(max_size=20))
        | st.tuples(st.sampled_from(list(RecordType)), st.just(b"")),
        max_size=3,
    ).map(tuple),
)


@st.composite
def server_scripts(draw: st.DrawFn) -> ServerScript:
    return ServerScript(
        answer=draw(st.sampled_from(["garbage", "refuse", "refuse-cut", "handshake", "handshake"])),
        raw=draw(
            st.binary(max_size=300)
            | st.lists(st.sampled_from([*_PLAIN, "", "x"]), max_size=4).map(
                lambda names: ",".join(names).encode()
            )
        ),
        protocol=draw(st.sampled_from(_CLIENT_PROTOCOLS)),
        right_psk=draw(st.booleans() | st.just(True)),
        payload=draw(payloads(_SERVER_CERT)),
        edits=draw(st.one_of(st.just(()), edit_lists.map(tuple))),
        framed=draw(st.booleans()),
        records=draw(_first_records),
        record_edits=draw(st.one_of(st.just(()), st.just(()), edit_lists.map(tuple))),
        trailing=draw(st.just(b"") | st.binary(max_size=40)),
        chunk=draw(st.none() | st.integers(1, 70)),
        hang=draw(st.booleans()),
    )


@dataclass
class _ServerRun:
    genuine: bool = False  # message 2 unchanged, and the client ought to trust us
    after: int = -1  # where the client's bytes after its last handshake message begin


async def _play_server(wire: _Wire, script: ServerScript, played: _ServerRun) -> None:
    name, first = await wire.frame(), await wire.frame()
    if name is None or first is None:
        return
    if script.answer == "garbage":
        await wire.send(script.raw)
        return
    if script.answer in ("refuse", "refuse-cut"):
        await wire.send(b"\0\0" + (frame(script.raw) if script.answer == "refuse" else b""))
        return
    psk = WORLD.psk if script.right_psk else bytes(32)
    state = _handshake_state(script.protocol, initiator=False, psk=psk)
    try:
        state.read_message(first)  # the real client's, unchanged
    except DecryptError:
        # IKpsk1's message 1 does not decrypt under another PSK: such a
        # server can only hang up.
        return
    message = frame(state.write_message(script.payload))
    damaged = (
        mutate(message, script.edits) if script.framed else frame(mutate(message[2:], script.edits))
    )
    await wire.send(damaged)
    needs_certificate = _carries_static(script.protocol, 1)
    certificate = _accepted_certificate([script.payload])
    played.genuine = (
        damaged == message
        and (script.right_psk or "psk" not in script.protocol)
        and certificate is not False
        and (certificate == _SERVER_CERT or not needs_certificate)
    )
    played.after = len(wire.received)
    if not state.is_finished:
        third = await wire.frame()
        if third is None:
            return
        played.after = len(wire.received) - wire.frames.buffered
        try:
            state.read_message(third)
        except PeerError:
            return
    transport = state.into_transport()
    records = b"".join(_seal(transport, kind, body) for kind, body in script.records)
    await wire.send(mutate(records, script.record_edits) + script.trailing)


def _expected_first_record(
    script: ServerScript,
) -> tuple[type[HandshakeFailed] | None, tuple[int, str] | None]:
    """How a client ends the handshake on these first records (None: it succeeds),
    and the code and reason of a refusal."""
    for kind, body in script.records:
        if kind == RecordType.REKEY and not body:
            continue
        if kind == RecordType.ACCEPT and not body:
            return None, None
        if kind == RecordType.CLOSE and 2 <= len(body) <= 1026:
            try:
                return PeerRejected, (int.from_bytes(body[:2], "big"), body[2:].decode())
            except UnicodeDecodeError:
                break
        break
    return HandshakeFailed, None


_GENUINE_SERVER: Final = ServerScript(
    answer="handshake",
    raw=b"",
    protocol="Noise_XX_25519_AESGCM_SHA256",
    right_psk=True,
    payload=encode_payload({CERTIFICATE: _SERVER_CERT}),
    edits=(),
    framed=False,
    records=((RecordType.ACCEPT, b""),),
    record_edits=(),
    trailing=b"",
    chunk=None,
    hang=False,
)


@given(script=server_scripts())
@example(script=_GENUINE_SERVER)
@example(
    script=dataclasses.replace(
        _GENUINE_SERVER,
        protocol="Noise_IKpsk1_25519_ChaChaPoly_BLAKE2s",
        payload=b"",
        records=((RecordType.CLOSE, _close_body(3, b"no rule admits you")),),
        chunk=5,
    )
)
@budget(0.25)
@fuzzes("negotiation and handshake, client side")
def test_a_client_reads_any_server_answer_to_a_typed_end(script: ServerScript) -> None:
    outcome: list[BaseException | None] = []
    played = _ServerRun()
    ik = NoiseProtocol.parse(script.protocol).pattern.name.startswith("IK")
    with_psk = "psk" in script.protocol

    async def main() -> bytes:
        ours, theirs = trio.testing.memory_stream_pair()
        client = SecureStream(
            ours,
            identity=WORLD.client,
            trust=WORLD.trust,
            protocol=script.protocol,
            psk=WORLD.psk if with_psk else None,
            expect=WORLD.server.public_key if ik else None,
        )
        wire = _Wire(theirs, script.chunk)

        async def initiate() -> None:
            try:
                await client.do_handshake()
            except HandshakeFailed as exc:
                outcome.append(exc)
            else:
                outcome.append(None)
            await client.aclose()

        async def play() -> None:
            await _play_server(wire, script, played)
            await wire.finish(script.hang)

        with trio.fail_after(_HANG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(initiate)
                nursery.start_soon(play)
        return bytes(wire.received)

    from_client = run(main)
    (result,) = outcome
    event(f"{script.answer}: {type(result).__name__}{' (genuine)' * played.genuine}")
    if script.answer == "refuse":
        assert isinstance(result, NegotiationFailed)
        listed = script.raw.decode("ascii", "replace").split(",")
        assert result.supported == tuple(name for name in listed if name)
        assert result.offered == (script.protocol,)
    elif script.answer == "refuse-cut":
        assert isinstance(result, HandshakeFailed)
        assert not isinstance(result, NegotiationFailed)
    if result is not None and played.after >= 0:
        # Refused or failed: after its handshake messages the client sent nothing,
        # not even (in XX) its identity once the server's message 2 failed it.
        assert from_client[played.after :] == b""
    if played.genuine and script.answer == "handshake" and not script.record_edits:
        expected, reason = _expected_first_record(script)
        if expected is None:
            assert result is None, f"a genuine server was refused: {result!r}"
        else:
            assert isinstance(result, expected)
            if expected is PeerRejected:
                assert isinstance(result, PeerRejected)
                assert (result.code, result.reason) == reason
            else:
                assert not isinstance(result, PeerRejected)


# -- 2. handshake payloads and Noise messages ------------------------------------------


_payload_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 1, 2, 127, 128, 200, 255]),
            st.binary(max_size=30),
            st.integers(-3, 3),
        ),
        max_size=5,
    ).map(
        # Fields whose length field is off by a little, now and then.
        lambda fields: b"".join(
            struct.pack(">BH", kind, max(0, len(value) + skew)) + value
            for kind, value, skew in fields
        )
    ),
)


@given(payload=_payload_bytes)
@budget()
@fuzzes("handshake payloads")
def test_a_payload_decodes_exactly_as_the_spec_says_or_is_a_protocol_violation(
    payload: bytes,
) -> None:
    expected = reference_payload(payload)
    try:
        fields = decode_payload(payload)
    except ProtocolViolation:
        assert expected is None
        return
    assert fields == expected
    assert decode_payload(encode_payload(fields)) == fields


_LOW_ORDER: Final = tuple(
    value.to_bytes(32, "little")
    for value in (
        0,
        1,
        2**255 - 20,
        2**255 - 19,
        2**255 - 18,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    )
)

#: What happens to a message: edits, or all of it replaced.
Damage = tuple[str, list[Edit], bytes]
_damage: st.SearchStrategy[Damage] = st.one_of(
    edit_lists.map(lambda edits: ("edit", edits, b"")),
    st.binary(max_size=200).map(lambda data: ("replace", [], data)),
    st.sampled_from([0, 1, MAX_FRAME, MAX_FRAME + 1]).map(lambda n: ("replace", [], b"\x01" * n)),
    st.tuples(st.sampled_from(_LOW_ORDER), st.sampled_from([0, 32, 48, 64])).map(
        lambda point: ("edit", [("replace", point[1], point[0])], b"")
    ),
)


def _damaged(message: bytes, damage: Damage) -> bytes:
    kind, edits, data = damage
    return mutate(message, edits) if kind == "edit" else data


def _finish_handshake(initiator: HandshakeState, responder: HandshakeState) -> None:
    while not initiator.is_finished:
        writer, reader = (initiator, responder) if initiator.is_my_turn else (responder, initiator)
        reader.read_message(writer.write_message(b"payload"))


def _snapshot(state: HandshakeState) -> tuple[object, ...]:
    return (state.handshake_hash, state.remote_static, state.is_my_turn, state.is_finished)


@given(
    protocol=st.sampled_from(_PLAIN + _WITH_PSK) | st.sampled_from(PROTOCOL_NAMES),
    target=st.integers(0, 3),
    damage=_damage,
    transport_damage=_damage,
)
@budget(0.5)
@fuzzes("handshake messages (Noise)")
def test_a_damaged_noise_message_is_refused_whole_or_the_handshake_fails_later(
    protocol: str,
    target: int,
    damage: Damage,
    transport_damage: Damage,
) -> None:
    initiator, responder = make_pair(protocol)
    total = len(initiator.protocol.pattern.messages)
    target %= total
    index, accepted_altered = 0, False
    while not initiator.is_finished:
        writer, reader = (initiator, responder) if initiator.is_my_turn else (responder, initiator)
        message = writer.write_message(b"payload")
        if index == target:
            bad = _damaged(message, damage)
            before = _snapshot(reader)
            try:
                reader.read_message(bad)
            except PeerError:
                # A refused message changed nothing: the genuine one still reads.
                assert _snapshot(reader) == before
            else:
                if bad != message:
                    accepted_altered = True
                    break
                index += 1
                continue
        try:
            assert reader.read_message(message) == b"payload"
        except PeerError:
            assert accepted_altered
        index += 1
    if accepted_altered:
        # Only a message sent before any key exists can be changed unseen (its
        # ephemeral key, its payload), and the next one, keyed by the transcript
        # that now differs, fails.
        with pytest.raises(PeerError):
            _finish_handshake(initiator, responder)
        return
    sender, receiver = initiator.into_transport(), responder.into_transport()
    message = sender.encrypt(b"record")
    bad = _damaged(message, transport_damage)
    nonce = receiver.receiving_nonce
    try:
        receiver.decrypt(bad)
    except PeerError:
        assert receiver.receiving_nonce == nonce
    else:
        assert altered("handshake messages (Noise)", bad == message)
        return
    assert receiver.decrypt(message) == b"record"


# -- 3. the record layer --------------------------------------------------------------


@dataclass(frozen=True)
class Records:
    """Records a scripted peer sends after a genuine handshake."""

    sender: str  # "client" (the real server reads) or "server" (the real client reads)
    protocol: str
    # Type, body (large ones as their size), and the byte to flip if any.
    records: tuple[tuple[int, bytes | int, int | None], ...]
    tail: str  # "eof", "garbage" (then EOF) or "hang"
    garbage: bytes
    chunk: int | None
    max_bytes: int | None
    edits: tuple[Edit, ...] = ()  # to the records' bytes, framing included


def _body(body: bytes | int) -> bytes:
    """A body, or one of that many bytes (large ones are drawn as their size)."""
    return bytes([body % 251]) * body if isinstance(body, int) else body


_data_bodies = st.one_of(
    st.binary(min_size=1, max_size=120),
    st.just(b""),
    st.integers(1000, MAX_BODY),
    st.just(MAX_BODY),
)
_records = st.one_of(
    *weighted(st.tuples(st.just(RecordType.DATA), _data_bodies), 6),
    *weighted(st.tuples(st.just(RecordType.REKEY), st.just(b"")), 2),
    st.tuples(st.just(RecordType.REKEY), st.binary(min_size=1, max_size=4)),
    *weighted(st.tuples(st.just(RecordType.CLOSE), _close_bodies), 2),
    st.tuples(st.just(RecordType.END), st.just(b"") | st.binary(max_size=4)),
    st.tuples(st.just(RecordType.ACCEPT), st.just(b"") | st.binary(max_size=4)),
    st.tuples(st.integers(5, 255), st.binary(max_size=20)),
)
_record_lists = st.tuples(
    st.lists(
        st.tuples(_records, st.one_of(*weighted(st.none(), 9), st.integers(0, 1 << 16))).map(
            lambda pair: (pair[0][0], pair[0][1], pair[1])
        ),
        max_size=8,
    ),
    # Often a proper last record, so that clean ends and aborts are common too.
    st.one_of(
        st.just(()),
        st.just(((RecordType.END, b"", None),)),
        st.builds(_close_body, st.integers(0, 65535), _reasons).map(
            lambda body: ((RecordType.CLOSE, body, None),)
        ),
    ),
).map(lambda parts: (*parts[0], *parts[1]))


@st.composite
def record_scripts(draw: st.DrawFn, records: st.SearchStrategy[Any] = _record_lists) -> Records:
    return Records(
        sender=draw(st.sampled_from(["client", "server"])),
        protocol=draw(st.sampled_from(_CLIENT_PROTOCOLS[:3])),
        records=draw(records),
        tail=draw(st.sampled_from(["eof", "eof", "garbage", "hang"])),
        garbage=draw(st.binary(min_size=1, max_size=80)),
        chunk=draw(st.none() | st.none() | st.integers(1, 4000)),
        max_bytes=draw(st.none() | st.integers(1, 70_000)),
        edits=draw(st.one_of(*weighted(st.just(()), 4), edit_lists.map(tuple))),
    )


@dataclass
class _Delivery:
    received: bytes = b""
    ended: BaseException | str | None = None  # the cause, or "end", or "waiting"
    again: BaseException | bytes | None = None  # what a second receive_some then did
    edited: bool = False  # the records' bytes were changed on their way


def _record_ending(kind: int, body: bytes) -> object:
    """How one record ends the stream (docs/protocol.md §4), or None if it does not."""
    if (kind == RecordType.DATA and body) or (kind == RecordType.REKEY and not body):
        return None
    if kind == RecordType.END and not body:
        return "end"
    if kind == RecordType.CLOSE and 2 <= len(body) <= 1026:
        try:
            return PeerAborted(int.from_bytes(body[:2], "big"), body[2:].decode())
        except UnicodeDecodeError:
            pass
    return ProtocolViolation


_TAIL_ENDINGS: Final[dict[str, object]] = {
    "eof": TruncatedStream,
    "hang": "waiting",
    # Garbage makes frames of any length: too short, failing, or cut by the EOF.
    "garbage": (TruncatedStream, ProtocolViolation, RecordAuthenticationFailed),
}


def _expected_delivery(script: Records) -> tuple[bytes, object]:
    """The data and the ending docs/protocol.md §4 prescribes for these records."""
    data = bytearray()
    for kind, drawn, flip in script.records:
        body = _body(drawn)
        ending = RecordAuthenticationFailed if flip is not None else _record_ending(kind, body)
        if ending is not None:
            return bytes(data), ending
        if kind == RecordType.DATA:
            data += body
    return bytes(data), _TAIL_ENDINGS[script.tail]


async def _deliver(script: Records) -> _Delivery:
    """Run a genuine handshake with a scripted peer, which then sends ``script``."""
    delivery = _Delivery()
    ours, theirs = trio.testing.memory_stream_pair()
    with_psk = "psk" in script.protocol
    ik = "_IK" in script.protocol
    real_is_server = script.sender == "client"
    stream = SecureStream(
        ours,
        identity=WORLD.server if real_is_server else WORLD.client,
        trust=WORLD.trust,
        server_side=real_is_server,
        protocol=None if real_is_server else script.protocol,
        psk=WORLD.psk if with_psk else None,
        expect=None if real_is_server or not ik else WORLD.server.public_key,
    )
    wire = _Wire(theirs, script.chunk)

    async def peer() -> None:
        state = _handshake_state(script.protocol, initiator=real_is_server, psk=WORLD.psk)
        if real_is_server:
            own = _CLIENT_CERT
            await wire.send(frame(script.protocol.encode()))
        else:
            own = _SERVER_CERT
            await wire.frame()  # the real client's protocol name
        index = 0
        while not state.is_finished:
            if state.is_my_turn:
                static = _carries_static(script.protocol, index)
                payload = encode_payload({CERTIFICATE: own}) if static else b""
                await wire.send(frame(state.write_message(payload)))
            else:
                message = await wire.frame()
                assert message is not None
                state.read_message(message)
            index += 1
        transport = state.into_transport()
        wire_bytes = bytearray()
        if real_is_server:
            first = await wire.frame()
            assert first is not None
            assert transport.decrypt(first) == bytes([RecordType.ACCEPT])
        else:
            wire_bytes += _seal(transport, RecordType.ACCEPT, b"")
        records = bytearray()
        for kind, body, flip in script.records:
            record = bytearray(_seal(transport, kind, _body(body)))
            if flip is not None:
                record[2 + flip % (len(record) - 2)] ^= 0x40
            records += record
        damaged = mutate(bytes(records), script.edits)
        delivery.edited = damaged != records
        wire_bytes += damaged
        if script.tail == "garbage":
            wire_bytes += script.garbage
        await wire.send(bytes(wire_bytes))
        await wire.finish(script.tail == "hang")

    async def read() -> None:
        await stream.do_handshake()
        received = bytearray()
        try:
            with trio.move_on_after(_HANG / 2):
                while chunk := await stream.receive_some(script.max_bytes):
                    assert script.max_bytes is None or len(chunk) <= script.max_bytes
                    received += chunk
                delivery.ended = "end"
            if delivery.ended is None:
                delivery.ended = "waiting"
        except trio.BrokenResourceError as exc:
            delivery.ended = exc.__cause__ or exc
        delivery.received = bytes(received)
        if delivery.ended != "waiting":
            # A broken stream stays broken; after END, every read is b"".
            try:
                delivery.again = bytes(await stream.receive_some())
            except trio.BrokenResourceError as exc:
                delivery.again = exc
        await stream.aclose()

    with trio.fail_after(_HANG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer)
            nursery.start_soon(read)
    return delivery


def _ends_as(ended: object, expected: object) -> bool:
    if isinstance(expected, PeerAborted):
        return isinstance(ended, PeerAborted) and (ended.code, ended.reason) == (
            expected.code,
            expected.reason,
        )
    if isinstance(expected, str):
        return ended == expected
    return isinstance(ended, cast(type | tuple[type, ...], expected))


#: How changed bytes may end a stream: where they begin, however they were changed.
_DAMAGE_ENDINGS: Final = (RecordAuthenticationFailed, ProtocolViolation, TruncatedStream)


@given(script=record_scripts())
@budget(0.25)
@fuzzes("record layer")
def test_records_of_any_type_and_body_are_delivered_or_end_the_stream_as_specified(
    script: Records,
) -> None:
    delivery = run(lambda: _deliver(script))
    ended = delivery.ended
    event(f"{script.sender} sent: {ended if isinstance(ended, str) else type(ended).__name__}")
    data, ending = _expected_delivery(script)
    assert altered("record layer", data.startswith(delivery.received))
    if delivery.edited:
        # Wherever the change begins, the stream ends there (unless nothing read
        # it: it came after the last record): never with data or a clean end.
        assert (
            _ends_as(ended, ending)
            or _ends_as(ended, _DAMAGE_ENDINGS)
            or (ended == "waiting" and script.tail == "hang")
        ), repr(ended)
    else:
        assert _ends_as(ended, ending), f"{ended!r} where {ending!r} was due"
    if ended == "end":
        assert delivery.again == b""
    elif ended != "waiting":
        assert isinstance(delivery.again, trio.BrokenResourceError)
    if not delivery.edited and not isinstance(
        ended, ProtocolViolation | RecordAuthenticationFailed
    ):
        assert delivery.received == data


_data_then_a_bad_record = st.tuples(
    st.lists(st.tuples(st.just(RecordType.DATA), st.binary(min_size=1, max_size=50)), min_size=1),
    st.sampled_from([(RecordType.DATA, b"x", 0), (RecordType.DATA, b"", None), (9, b"", None)]),
).map(lambda parts: (*((kind, body, None) for kind, body in parts[0]), parts[1]))


@given(script=record_scripts(_data_then_a_bad_record))
@example(
    script=Records(
        "client",
        _CLIENT_PROTOCOLS[0],
        ((0, b"hello", None), (0, b"world", 0)),
        "eof",
        b"x",
        None,
        None,
    )
)
@budget(0.25)
@fuzzes("record layer")
def test_data_that_arrived_before_a_bad_record_is_delivered_first(script: Records) -> None:
    # In one piece, so that the good records and the bad one arrive in one read.
    delivery = run(lambda: _deliver(dataclasses.replace(script, chunk=None, edits=())))
    data, _ = _expected_delivery(script)
    assert delivery.received == data


# -- 4. certificates ------------------------------------------------------------------


_FIXED: Final = struct.Struct(">B32s32sQQQ")
_FIXED_V2: Final = struct.Struct(">B32s32s32sQQQ")


def reference_certificate(raw: bytes) -> tuple[object, ...] | None:
    """The fields of a certificate as docs/protocol.md §3 lays them out, or None."""
    signing: bytes | None = None
    if raw[:1] == b"\x02":
        if len(raw) < _FIXED_V2.size + 64:
            return None
        version, subject, signing, issuer, serial, not_before, not_after = _FIXED_V2.unpack_from(
            raw
        )
        pos = _FIXED_V2.size
    else:
        if len(raw) < _FIXED.size + 64:
            return None
        version, subject, issuer, serial, not_before, not_after = _FIXED.unpack_from(raw)
        pos = _FIXED.size
    body = raw[:-64]

    def text() -> str:
        nonlocal pos
        if pos >= len(body) or body[pos] == 0 or pos + 1 + body[pos] > len(body):
            raise ValueError("a length overruns the body")
        value = body[pos + 1 : pos + 1 + body[pos]].decode()  # UnicodeDecodeError: ValueError
        pos += 1 + body[pos]
        return value

    try:
        name = text()
        if pos >= len(body):
            return None
        count = body[pos]
        pos += 1
        groups = tuple(text() for _ in range(count))
    except ValueError:
        return None
    if version not in (1, 2) or pos != len(body) or not_before > not_after:
        return None
    return (subject, signing, issuer, serial, not_before, not_after, name, groups)


def _certificate_bytes(
    version: int, windows: tuple[int, int], serial: int, texts: list[bytes], count_skew: int
) -> bytes:
    name, groups = texts[0], texts[1:]
    fixed = (
        _FIXED_V2.pack(version, bytes(32), b"\x03" * 32, b"\x01" * 32, serial, *windows)
        if version == 2
        else _FIXED.pack(version, bytes(32), b"\x01" * 32, serial, *windows)
    )
    return (
        fixed
        + bytes([len(name) % 256])
        + name
        + bytes([(len(groups) + count_skew) % 256])
        + b"".join(bytes([len(group) % 256]) + group for group in groups)
        + b"\x02" * 64
    )


_u64 = st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 2**63, 2**64 - 1, int(time.time())])
_certificate_texts = st.binary(max_size=8) | st.sampled_from(
    [b"", "é".encode(), b"\xff", b"x" * 255]
)
_built_certificates = st.builds(
    _certificate_bytes,
    st.sampled_from([1, 1, 1, 0, 2, 255]),
    st.tuples(_u64, _u64),
    _u64,
    st.lists(_certificate_texts, min_size=1, max_size=5),
    st.sampled_from([0, 0, 0, -1, 1]),
)
_any_certificate_bytes = st.one_of(
    _built_certificates,
    st.tuples(_built_certificates, edit_lists).map(lambda x: mutate(*x)),
    st.tuples(st.sampled_from([_CLIENT_CERT, _SERVER_CERT, *WORLD.foreign]), edit_lists).map(
        lambda x: mutate(*x)
    ),
    st.binary(max_size=400),
)


@given(raw=_any_certificate_bytes)
@budget()
@fuzzes("certificate decoding")
def test_certificate_bytes_decode_as_the_spec_says_and_no_forgery_verifies(raw: bytes) -> None:
    expected = reference_certificate(raw)
    try:
        certificate = Certificate.decode(raw)
    except CertificateError:
        assert expected is None
        return
    assert expected == (
        certificate.subject_key,
        certificate.signing_key,
        certificate.issuer,
        certificate.serial,
        certificate.not_before,
        certificate.not_after,
        certificate.name,
        certificate.groups,
    )
    assert certificate.encoded == raw
    try:
        peer = WORLD.trust.verify(certificate.subject_key, raw)
    except UntrustedPeerError:
        return
    # Only a certificate the CA signed, byte for byte, vouches for anyone.
    assert altered("certificate decoding", raw in (_CLIENT_CERT, _SERVER_CERT, *WORLD.foreign))
    assert peer.certificate == certificate


_FAR: Final = 253402300800  # 10000-01-01: beyond what datetime can show


@given(
    not_before=st.integers(0, 2**64 - 1),
    length=st.integers(0, 2**64 - 1),
    now=st.integers(0, 2**64 - 1) | st.just(int(time.time())),
)
@example(not_before=_FAR, length=0, now=int(time.time()))
@budget(0.25)
@fuzzes("certificate decoding")
def test_a_ca_signed_certificate_with_any_window_is_described_and_verified_or_refused(
    not_before: int, length: int, now: int
) -> None:
    certificate = sign_certificate(
        WORLD.ca,
        subject_key=WORLD.client.public_key,
        name="client",
        serial=9,
        not_before=not_before,
        not_after=min(not_before + length, 2**64 - 1),
    )
    with contextlib.suppress(UntrustedPeerError):
        WORLD.trust.verify(WORLD.client.public_key, certificate.encoded, now=now)
    assert certificate.describe()


# -- 5. the hub protocol --------------------------------------------------------------


def _packed(values: list[object]) -> bytes:
    return b"".join(msgpack.packb(value, use_bin_type=True) for value in values)


_request_values = st.one_of(
    st.tuples(st.just(Op.JOIN), st.integers(0, 9), st.just("orders"), st.booleans()).map(list),
    st.tuples(
        st.just(Op.SEND),
        st.integers(0, 9),
        st.just("orders"),
        st.none() | st.integers(0, 3),
        st.binary(max_size=10),
    ).map(list),
    st.tuples(
        st.just(Op.SET),
        st.integers(0, 9),
        st.just("orders"),
        st.just("k"),
        st.binary(max_size=5),
        st.none() | st.integers(0, 3),
    ).map(list),
    st.tuples(st.sampled_from([Op.LEAVE]), st.integers(0, 9), st.just("orders")).map(list),
    st.tuples(
        st.just(Op.REMOVE),
        st.integers(0, 9),
        st.just("orders"),
        st.integers(0, 3),
        st.text(max_size=5),
    ).map(list),
    st.tuples(st.just(Op.CLOSE), st.integers(0, 9), st.just("orders"), st.text(max_size=5)).map(
        list
    ),
    msgpack_values,
)
_hub_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(_request_values, max_size=6).map(_packed),
    st.tuples(st.lists(_request_values, min_size=1, max_size=6).map(_packed), edit_lists).map(
        lambda x: mutate(*x)
    ),
    st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xc6\x00\x20\x00\x00", b"\x91" * 2000]),
)


@given(
    data=_hub_bytes,
    cuts=st.lists(st.integers(1, 400), min_size=1, max_size=6),
    limit=st.sampled_from([MAX_REQUEST, MAX_ANSWER, 64]),
)
@budget(0.5)
@fuzzes("hub message reader")
def test_the_hub_message_reader_yields_op_arrays_or_a_protocol_violation(
    data: bytes, cuts: list[int], limit: int
) -> None:
    def read(pieces: list[bytes]) -> tuple[list[list[Any]], bool]:
        reader, messages = MessageReader(limit), []
        try:
            for piece in pieces:
                for message in reader.feed(piece):
                    messages.append(message)
        except ProtocolViolation:
            return messages, True
        return messages, False

    pieces, position, step = [], 0, 0
    while position < len(data):
        pieces.append(data[position : position + cuts[step % len(cuts)]])
        position += cuts[step % len(cuts)]
        step += 1
    whole, whole_failed = read([data])
    chunked, chunked_failed = read(pieces)
    for message in (*whole, *chunked):
        assert type(message) is list
        assert message
        assert type(message[0]) is int
    # However the bytes arrive, the messages are the same, up to where one
    # reading stops (a size limit can trip earlier on some splits).
    shorter, longer = sorted((whole, chunked), key=len)
    assert longer[: len(shorter)] == shorter
    if not whole_failed and not chunked_failed:
        assert whole == chunked


_maps_and_extensions = st.sampled_from(
    [{}, msgpack.Timestamp(0, 0), msgpack.ExtType(1, b""), {"a": 1}]
)


@given(
    value=st.tuples(msgpack_values, st.integers(0, 100), _maps_and_extensions).map(
        lambda x: replace_node([Op.OK, 1, x[0]], x[1] + 1, x[2])
    ),
    limit=st.sampled_from([MAX_REQUEST, MAX_ANSWER]),
)
@example(value=[Op.OK, 1, [{}]], limit=MAX_ANSWER)
@budget(0.25)
@fuzzes("hub message reader")
def test_a_map_or_extension_anywhere_in_a_hub_message_is_a_protocol_violation(
    value: list[object], limit: int
) -> None:
    reader = MessageReader(limit)
    try:
        list(reader.feed(msgpack.packb(value, use_bin_type=True)))
    except ProtocolViolation:
        return
    raise AssertionError(f"the reader passed {value!r}")


_HUB_WORLD: Final = HubWorld({"api": ("services",), "db": ("services",)})


@given(data=_hub_bytes, chunk=st.none() | st.integers(1, 50))
@budget(0.25)
@fuzzes("hub protocol, hub side")
def test_whatever_bytes_a_client_sends_the_hub_answers_or_hangs_up_and_stays_whole(
    data: bytes, chunk: int | None
) -> None:
    world = _HUB_WORLD
    hub = Hub(identity=world.hub_identity, trust=world.trust, policy=world.policy())
    answers: list[list[Any]] = []
    ending: list[BaseException | None] = []

    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        client = SecureStream(ours, identity=world.identities["api"], trust=world.client_trust)
        server = SecureStream(
            theirs, identity=world.hub_identity, trust=world.trust, server_side=True
        )
        reader = MessageReader(MAX_ANSWER)

        async def talk() -> None:
            payload = pack(Op.HELLO, VERSION) + data
            step = max(chunk or len(payload), len(payload) // _MAX_PIECES)
            # Once the hub hangs up, what is left cannot be sent.
            with contextlib.suppress(trio.BrokenResourceError):
                for start in range(0, len(payload), step):
                    await client.send_all(payload[start : start + step])
                    await trio.sleep(0)
                await client.send_eof()

        async def listen() -> None:
            try:
                while received := await client.receive_some():
                    answers.extend(reader.feed(received))
            except trio.BrokenResourceError as exc:
                ending.append(exc.__cause__)
            else:
                ending.append(None)

        with trio.fail_after(_HANG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub.handle, server)
                nursery.start_soon(listen)
                await talk()
        await client.aclose()

    run(main)
    (cause,) = ending
    if cause is not None:  # hung up: only ever for a protocol violation
        assert isinstance(cause, PeerAborted)
        assert cause.code == CloseCode.PROTOCOL_VIOLATION
    assert [answer[0] for answer in answers[:1]] in ([], [Op.WELCOME])
    # Events too: a member's direct message to itself reaches it.
    assert all(Op.OK <= answer[0] <= Op.ENDED for answer in answers[1:])
    assert hub.sessions() == {}


@dataclass(frozen=True)
class HubScript:
    """How a scripted hub answers each request of a real client, in turn."""

    answers: tuple[tuple[tuple[str, int, object, tuple[Edit, ...]], ...], ...]
    # Close the stream once the script is spent or the client waits for us;
    # else answer nothing more.
    end: bool


# Virtual seconds a scripted hub waits for a request before it takes the
# client to be waiting for something.
_QUIET: Final = 10.0


_member_description: Final = [1, "client", WORLD.client.public_key, ["services"]]


def _genuine(request: list[Any]) -> list[list[object]]:
    """The right answer to a request of the client below, and what follows it:
    the client commits the session's first epoch, as its only entered member."""
    op, rid = request[0], request[1] if len(request) > 1 else 0
    members = [_member_description]  # alone: the first to enter the session's epochs
    answers: dict[int, list[list[object]]] = {
        Op.HELLO: [[Op.WELCOME, VERSION, ["client", WORLD.client.public_key, ["services"]]]],
        Op.JOIN: [[Op.OK, rid, [1, 5, members, [["k", 1]], sorted(Right)]]],
        Op.SEND: [[Op.OK, rid, 7]],
        Op.SET: [[Op.OK, rid, [2, 8]]],
    }
    if op == Op.ENTER:
        return [[Op.OK, rid, None], [Op.DUE, "orders", 1, [1], [request[3]]]]
    if op == Op.COMMIT:
        return [[Op.OK, rid, 6], [Op.EPOCH, "orders", 6, 1, request[3], True]]
    return answers.get(op, [[Op.OK, rid, None]])


_EVENTS: Final = (
    [Op.MESSAGE, "orders", 10, 2, b"hi", False],
    [Op.JOINED, "orders", 11, [3, "db", b"\x03" * 32, ["services"]]],
    [Op.LEFT, "orders", 12, 2, "left"],
    [Op.VARIABLE, "orders", 13, "k", b"w", 3, 2],
    [Op.ENDED, "orders", 5, "session closed by ops#1: maintenance"],
    [Op.ERROR, 2, 1, "access denied"],
    [Op.ERROR, 4, 6, "version conflict", 4],
)

_hub_messages = st.one_of(
    st.tuples(st.just("genuine"), st.just(0), st.none(), st.just(())),
    st.tuples(st.just("genuine"), st.just(0), st.none(), st.just(())),
    st.tuples(st.just("event"), st.integers(0, len(_EVENTS) - 1), st.none(), st.just(())),
    st.tuples(st.just("node"), st.integers(0, 60), msgpack_values, st.just(())),
    st.tuples(st.just("bytes"), st.just(0), st.none(), edit_lists.map(tuple)),
    st.tuples(st.just("value"), st.just(0), msgpack_values, st.just(())),
    st.tuples(st.just("raw"), st.just(0), st.binary(max_size=40), st.just(())),
)


#: One message of a scripted hub: (kind, number, value, edits).
HubMessage = tuple[str, int, object, tuple[Edit, ...]]


def _hub_message(planned: HubMessage, request: list[Any]) -> bytes:
    """``planned`` made concrete, as the answer to ``request``."""
    kind, number, value, edits = planned
    if kind == "raw":
        return cast(bytes, value)
    if kind == "value":
        return cast(bytes, msgpack.packb(value, use_bin_type=True))
    messages: object = [_EVENTS[number]] if kind == "event" else _genuine(request)
    if kind == "node":
        messages = replace_node(messages, number, value)
    if type(messages) is not list:
        messages = [messages]
    packed = b"".join(cast(bytes, msgpack.packb(m, use_bin_type=True)) for m in messages)
    return mutate(packed, edits) if kind == "bytes" else packed


@given(
    script=st.builds(
        HubScript,
        st.lists(
            st.one_of(
                # Mostly the right answer, so that the client gets further each time.
                *weighted(st.just((("genuine", 0, None, ()),)), 3),
                st.lists(_hub_messages, min_size=1, max_size=3).map(tuple),
            ),
            max_size=9,
        ).map(tuple),
        st.booleans(),
    )
)
@example(script=HubScript(((("genuine", 0, None, ()),),) * 8, end=False))
@budget(0.25)
@fuzzes("hub protocol, client side")
def test_a_client_takes_any_hub_answer_as_a_result_or_a_typed_error(script: HubScript) -> None:
    genuine = (
        all(kind == "genuine" for answers in script.answers for kind, *_ in answers)
        and len(script.answers) == 8
        and all(len(answers) == 1 for answers in script.answers)
    )
    outcome: list[object] = []

    async def hub(stream: SecureStream) -> None:
        reader = MessageReader()
        answers = list(script.answers)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                data = None
                with trio.move_on_after(_QUIET):
                    data = await stream.receive_some()
                if data == b"":
                    return
                closing = script.end and data is None  # the client waits for us: stop
                for request in reader.feed(data or b""):
                    if answers:
                        planned = answers.pop(0)
                        await stream.send_all(
                            b"".join(_hub_message(message, request) for message in planned)
                        )
                    closing |= script.end and not answers
                if closing:
                    # From here on, whatever the client waits for must fail.
                    await stream.aclose()
                    return

    async def client(stream: SecureStream) -> None:
        try:
            async with HubConnection.over(stream) as connection:
                session = await connection.join("orders", create=True)
                outcome.append(await session.send(b"hi"))
                outcome.append(await session.set("k", b"v"))
                outcome.append(await session.set("k", b"w", expect_version=2))
                with trio.move_on_after(1):
                    async for event in session:
                        outcome.append(event)
                await session.leave()
                outcome.append("left")
        except (
            SessionError,
            ProtocolViolation,
            HubTimeout,  # a hub that goes quiet
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as exc:
            outcome.append(exc)

    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        real = SecureStream(ours, identity=WORLD.client, trust=WORLD.trust)
        fake = SecureStream(theirs, identity=WORLD.server, trust=WORLD.trust, server_side=True)
        with trio.fail_after(_HANG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hub, fake)
                with trio.move_on_after(_HANG / 2):
                    await client(real)
                nursery.cancel_scope.cancel()

    run(main)
    event(f"client: {type(outcome[-1]).__name__ if outcome else 'nothing'}")
    if script.end:
        assert outcome, "the hub closed the connection, yet the client still waits"
    if genuine:
        assert outcome[-1] == "left", outcome


# -- 6. policy files ------------------------------------------------------------------

_POLICIES: Final = (
    POLICY,
    f"""
[[rule]]
name = "admission"
keys = ["SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "{encode_key(bytes(range(32)))}"]

[[rule]]
any_peer = true
sessions = ["lobby", "rooms/*", "[ab]?"]
rights = ["join", "receive"]
""",
    "",
)


def _policy_outcome(parse: Callable[[], Policy], source: str) -> None:
    try:
        parsed = parse()
    except PolicyError as exc:
        refusal = str(exc)
    else:
        _ask(parsed)
        return
    # Every refusal names the file, on one line (policy check prints it as one).
    assert source in refusal
    assert "\n" not in refusal


def _ask(parsed: Policy) -> None:
    """Ask a parsed policy every question a hub asks."""
    peer = WORLD.client.certificate
    assert peer is not None
    someone = WORLD.trust.verify(WORLD.client.public_key, peer)
    for session in ("orders", "lobby", "rooms/1"):
        grant = parsed.grant(someone, session)
        assert set(grant.rules) <= {rule.name for rule in parsed.rules}
        for right in Right:
            if right not in grant:
                assert parsed.denial(someone, session, right)
    assert (parsed.refusal(someone) is None) is parsed.admits(someone)


def _lines_of(text: str, picks: list[int]) -> str:
    lines = text.splitlines() or [""]
    return "\n".join(lines[i % len(lines)] for i in picks)


_policy_texts = st.one_of(
    st.tuples(st.sampled_from(_POLICIES), edit_lists).map(
        lambda x: mutate(x[0].encode(), x[1]).decode("utf-8", "replace")
    ),
    st.tuples(st.sampled_from(_POLICIES), st.lists(st.integers(0, 40), max_size=12)).map(
        # Lines of valid policies, dropped, repeated and shuffled.
        lambda x: _lines_of(x[0], x[1])
    ),
)


@given(text=_policy_texts, trusted=st.booleans())
@budget(0.5)
@fuzzes("policy files")
def test_a_damaged_policy_parses_or_is_a_policy_error_naming_the_file(
    text: str, trusted: bool
) -> None:
    trust = WORLD.trust if trusted else None
    _policy_outcome(lambda: Policy.parse(text, source="fuzz.toml", trust=trust), "fuzz.toml")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.tuples(st.sampled_from(_POLICIES), edit_lists).map(
            lambda x: mutate(x[0].encode(), x[1])
        ),
    )
)
@budget(0.25)
@fuzzes("policy files")
def test_a_policy_file_of_any_bytes_loads_or_is_a_policy_error(
    scratch: Path, content: bytes
) -> None:
    path = scratch / "policy.toml"
    path.write_bytes(content)
    _policy_outcome(lambda: Policy.load(path), str(path))


# -- 7. keystore files ----------------------------------------------------------------

_PASSPHRASE: Final = b"fuzz"


def _seal_cheaply(store: Keystore, name: str) -> bytes:
    """Identity ``name``'s key file, encrypted with the cheapest Argon2id the format allows.

    The loader takes the parameters from the file, so fuzzing a file
    encrypted this way costs microseconds per load instead of a second.
    """
    identity = store.identity(name)
    assert identity.signing_key is not None
    assert identity.signing_public_key is not None
    salt = bytes(range(16))
    headers = {
        "Name": name,
        "Public-Key": encode_key(identity.public_key),
        "Signing-Key": encode_key(identity.signing_public_key),
        "Encryption": "argon2id-xchacha20poly1305",
        "Argon2id": "ops=1,mem=8192",
        "Salt": "AAECAwQFBgcICQoLDA0ODw==",
    }
    key = nacl.pwhash.argon2id.kdf(32, _PASSPHRASE, salt, opslimit=1, memlimit=8192)
    nonce = bytes(24)
    associated = "\n".join(f"{k}: {v}" for k, v in headers.items()).encode()
    secret = identity.private_bytes() + identity.signing_key.private_bytes_raw()
    body = nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(secret, associated, nonce, key)
    return armor("IDENTITY KEY", body, headers)


@dataclass(frozen=True)
class _Template:
    """A keystore's files, to rewrite for every example with one of them changed."""

    home: Path
    files: dict[str, bytes]
    keys: dict[str, bytes]  # identity name -> public key

    def store(self, changed: str, content: bytes) -> Keystore:
        shutil.rmtree(self.home, ignore_errors=True)
        for relative, data in {**self.files, changed: content}.items():
            path = self.home / relative
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(descriptor, "wb") as file:
                file.write(data)
        return Keystore.open(self.home)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> _Template:
    base = tmp_path_factory.mktemp("keystore")
    store = Keystore.open(base / "template")
    store.init_ca("ops", passphrase=None, valid_seconds=20 * _YEAR)
    for name in ("api", "db"):
        store.issue_identity(
            name,
            ca="ops",
            ca_passphrase=None,
            passphrase=None,
            groups=["services"],
            valid_seconds=10 * _YEAR,
        )
    store.add_peer("cache", Identity.generate().public_key, ["services"])
    store.add_peer("ops", Identity.generate().public_key)
    store.revoke_key(Identity.generate().public_key)
    store.revoke_serial(store.ca_info("ops")["public_key"], 99)
    (store.path / "identities" / "db.key").write_bytes(_seal_cheaply(store, "db"))
    files = {
        str(path.relative_to(store.path)): path.read_bytes()
        for path in store.path.rglob("*")
        if path.is_file() and path.name != ".lock"
    }
    keys = {name: store.public_key(name) for name in ("api", "db")}
    made = _Template(base / "home", files, keys)
    assert made.store("peers.toml", files["peers.toml"]).identity("db", passphrase=_PASSPHRASE)
    return made


_TOML_SCALARS = st.one_of(
    st.text(max_size=50),
    st.sampled_from([encode_key(bytes(range(32))), encode_key(bytes(31)), "", "SHA256:x"]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
)
_toml_values = st.recursive(
    _TOML_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def _toml_documents(top: str, field_names: Sequence[str]) -> st.SearchStrategy[bytes]:
    """TOML shaped like a keystore file, with values of any type."""
    entries = st.dictionaries(st.sampled_from(field_names) | st.text(max_size=5), _toml_values)
    tables = st.dictionaries(st.text(max_size=8), entries | _toml_values, max_size=3)
    documents = st.dictionaries(
        st.sampled_from([top, "other"]) | st.text(max_size=5), tables | _toml_values, max_size=2
    )
    return documents.map(lambda document: tomli_w.dumps(document).encode())


def _file_contents(template_name: str, shaped: st.SearchStrategy[bytes]) -> st.SearchStrategy[Any]:
    return st.one_of(
        shaped,
        edit_lists.map(lambda edits: ("edit", template_name, edits)),
        st.binary(max_size=200),
    )


def _content(template: _Template, drawn: Any) -> bytes:
    if isinstance(drawn, tuple):
        _, name, edits = drawn
        return mutate(template.files[name], edits)
    return cast(bytes, drawn)


def _trust_or_keystore_error(store: Keystore) -> None:
    with contextlib.suppress(KeystoreError):
        store.trust()


@given(drawn=_file_contents("peers.toml", _toml_documents("peers", ["public_key", "groups"])))
@example(drawn=b'[peers.""]\npublic_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="\n')
@budget(0.25)
@fuzzes("keystore trust files")
def test_any_peers_file_gives_a_trust_store_or_a_keystore_error(
    template: _Template, drawn: Any
) -> None:
    _trust_or_keystore_error(template.store("peers.toml", _content(template, drawn)))


@given(drawn=_file_contents("cas.toml", _toml_documents("cas", ["public_key"])))
@example(drawn=b"[cas.ops]\npublic_key = 1979-05-27\n")
@budget(0.25)
@fuzzes("keystore trust files")
def test_any_cas_file_gives_a_trust_store_or_a_keystore_error(
    template: _Template, drawn: Any
) -> None:
    _trust_or_keystore_error(template.store("cas.toml", _content(template, drawn)))


@given(drawn=_file_contents("revoked.toml", _toml_documents("serials", ["ca", "serial"])))
@example(drawn=b'serials = [{ca = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", serial = inf}]\n')
@budget(0.25)
@fuzzes("keystore trust files")
def test_any_revocations_file_gives_a_trust_store_or_a_keystore_error(
    template: _Template, drawn: Any
) -> None:
    _trust_or_keystore_error(template.store("revoked.toml", _content(template, drawn)))


#: Changes to a genuine key file: bytes edited, lines shuffled, a header line dropped.
_key_changes = st.one_of(
    edit_lists.map(lambda edits: ("edit", edits)),
    st.lists(st.integers(0, 12), max_size=10).map(lambda lines: ("lines", lines)),
    st.sampled_from([b"Name", b"Public-Key", b"Encryption", b"Argon2id", b"Salt", b""]).map(
        lambda header: ("drop", header)
    ),
    st.binary(max_size=300).map(lambda data: ("bytes", data)),
)


def _changed_key(genuine: bytes, change: tuple[str, Any]) -> bytes:
    kind, detail = change
    lines = genuine.splitlines()
    if kind == "edit":
        return mutate(genuine, detail)
    if kind == "lines":
        return b"\n".join(lines[i % len(lines)] for i in detail) + b"\n"
    if kind == "drop":
        return b"\n".join(line for line in lines if not line.startswith(detail + b":")) + b"\n"
    return cast(bytes, detail)


def _cheap_enough(content: bytes) -> bool:
    """Whether the Argon2id parameters a file asks for cost milliseconds, not seconds."""
    try:
        headers = dearmor(content, "IDENTITY KEY", "fuzz").headers
        params = dict(item.split("=", 1) for item in headers["Argon2id"].split(","))
        return int(params["ops"]) * int(params["mem"]) <= 1 << 22
    except (KeystoreError, KeyError, ValueError):
        return True


@given(name=st.sampled_from(["api", "db"]), change=_key_changes)
@budget(0.25)
@fuzzes("keystore identity keys")
def test_any_identity_key_file_loads_the_right_key_or_is_a_keystore_error(
    template: _Template, name: str, change: tuple[str, Any]
) -> None:
    content = _changed_key(template.files[f"identities/{name}.key"], change)
    store = template.store(f"identities/{name}.key", content)
    passphrase = _PASSPHRASE if _cheap_enough(content) else None
    with contextlib.suppress(KeystoreError):
        store.is_encrypted(name)
    try:
        identity = store.identity(name, passphrase=passphrase)
    except KeystoreError:
        return
    # An encrypted key opens only as itself: a changed file fails to decrypt.
    if name == "db":
        assert altered("keystore identity keys", identity.public_key == template.keys[name])
    assert identity.certificate is not None


@given(name=st.sampled_from(["api", "db"]), change=_key_changes)
@example(name="api", change=("drop", b"Public-Key"))
@budget(0.25)
@fuzzes("keystore identity keys")
def test_any_identity_key_file_shows_its_public_key_or_is_a_keystore_error(
    template: _Template, name: str, change: tuple[str, Any]
) -> None:
    content = _changed_key(template.files[f"identities/{name}.key"], change)
    store = template.store(f"identities/{name}.key", content)
    with contextlib.suppress(KeystoreError):
        assert len(store.public_key(name)) == 32


#: Changes to api's certificate file: the text edited, the certificate inside
#: edited and armoured again, db's certificate instead, or any bytes.
_certificate_changes = st.one_of(
    edit_lists.map(lambda edits: ("edit", edits)),
    edit_lists.map(lambda edits: ("inside", edits)),
    st.just(("other", None)),
    st.binary(max_size=300).map(lambda data: ("bytes", data)),
)


def _changed_certificate(template: _Template, change: tuple[str, Any]) -> bytes:
    kind, detail = change
    genuine = template.files["identities/api.crt"]
    if kind == "edit":
        return mutate(genuine, detail)
    if kind == "inside":
        body = dearmor(genuine, "CERTIFICATE", "api.crt").body
        return armor("CERTIFICATE", mutate(body, detail), {"Name": "api", "Serial": "1"})
    if kind == "other":
        return template.files["identities/db.crt"]
    return cast(bytes, detail)


@given(change=_certificate_changes)
@budget(0.25)
@fuzzes("keystore certificates")
def test_any_certificate_file_decodes_or_is_a_keystore_error(
    template: _Template, change: tuple[str, Any]
) -> None:
    store = template.store("identities/api.crt", _changed_certificate(template, change))
    with contextlib.suppress(KeystoreError):
        assert store.certificate("api") is not None


@given(change=_certificate_changes)
@example(change=("other", None))
@budget(0.25)
@fuzzes("keystore certificates")
def test_an_identity_with_any_certificate_file_loads_or_is_a_keystore_error(
    template: _Template, change: tuple[str, Any]
) -> None:
    store = template.store("identities/api.crt", _changed_certificate(template, change))
    try:
        identity = store.identity("api")
    except KeystoreError:
        return
    assert identity.certificate is not None
    assert identity.certificate.subject_key == identity.public_key


@given(
    drawn=_file_contents(
        "authorities/ops.toml", _toml_documents("ca", ["public_key", "not_after", "next_serial"])
    )
)
@example(
    drawn=b'next_serial = 1\n[ca]\npublic_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="\n'
    b"not_after = inf\n"
)
@budget(0.25)
@fuzzes("keystore CA files")
def test_any_ca_state_file_signs_or_is_a_keystore_error(template: _Template, drawn: Any) -> None:
    store = template.store("authorities/ops.toml", _content(template, drawn))
    with contextlib.suppress(KeystoreError):
        store.ca_info("ops")
        store.sign("ops", passphrase=None, public_key=bytes(32), name="x", valid_seconds=60)


@given(drawn=_file_contents("authorities/ops.key", st.binary(max_size=10)))
@budget(0.25)
@fuzzes("keystore CA files")
def test_any_ca_key_file_signs_or_is_a_keystore_error(template: _Template, drawn: Any) -> None:
    store = template.store("authorities/ops.key", _content(template, drawn))
    with contextlib.suppress(KeystoreError):
        store.ca_is_encrypted("ops")
    try:
        # No passphrase: a file that claims to be encrypted is refused before
        # any Argon2id, whatever parameters it asks for.
        certificate = store.sign(
            "ops", passphrase=None, public_key=bytes(32), name="x", valid_seconds=60
        )
    except KeystoreError:
        return
    assert certificate.issuer == store.ca_info("ops")["public_key"]
