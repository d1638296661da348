"""The hub protocol's messages: what a client and a hub say over a SecureStream.

Each message is one MessagePack array whose first element is an op code
(docs/protocol.md §7). Both ends parse strictly: an array of the wrong
length, a value of the wrong type, a name that is not a valid session name
or a message over the size limits is a protocol violation, and the side
that reads it closes the connection. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgpack
import msgpack.fallback

from securesess.errors import ProtocolViolation
from securesess.names import (
    check_reason,
    check_session_name,
    check_variable_key,
)
from securesess.sessions.requests import (
    Close,
    Commit,
    Enter,
    Hello,
    Join,
    Leave,
    Remove,
    Request,
    Reseal,
    Send,
    Set,
)
from securesess.sessions.sealing.content import MAX_OVERHEAD

__all__ = [
    "MAX_DATA",
    "MAX_SEALED",
    "VERSION",
    "ErrorCode",
    "MessageReader",
    "Op",
    "decode_hello",
    "decode_request",
    "pack",
]

#: 2: sessions are sealed end to end (docs/protocol.md §10).
VERSION: Final = 2
#: Largest message body or variable value, in bytes, before sealing.
MAX_DATA: Final = 1 << 20
#: Largest byte string on the wire: a body sealed, or a commit.
MAX_SEALED: Final = MAX_DATA + MAX_OVERHEAD
#: Largest request a client may send: one sealed value plus small fields.
MAX_REQUEST: Final = MAX_SEALED + 4096
#: Largest message a hub may send: the answer to a JOIN carries every member
#: and every variable (at most ``max_variable_bytes``, 4 MiB by default).
MAX_ANSWER: Final = 64 << 20
#: Most arrays one hub message may hold: a JOIN answer has two per member
#: and one per variable (some 21,000 at the hub's default limits). Each
#: costs a Python list, ~64 bytes from as little as one encoded byte, so
#: without a cap the largest answer could decode to some 4 GiB.
MAX_ANSWER_ARRAYS: Final = 1 << 17
#: How much a reader asks its stream for at once.
RECEIVE_SIZE: Final = 64 * 1024
_MAX_ID: Final = (1 << 63) - 1


class Op(enum.IntEnum):
    # client -> hub
    HELLO = 1
    JOIN = 2
    LEAVE = 3
    SEND = 4
    SET = 5
    REMOVE = 6
    CLOSE = 7
    ENTER = 8
    COMMIT = 9
    RESEAL = 10
    # hub -> client
    WELCOME = 64
    OK = 65
    ERROR = 66
    MESSAGE = 67
    JOINED = 68
    LEFT = 69
    VARIABLE = 70
    ENDED = 71
    DUE = 72
    EPOCH = 73
    VALUE = 74


class ErrorCode(enum.IntEnum):
    ACCESS_DENIED = 1
    NO_SUCH_SESSION = 2
    ALREADY_MEMBER = 3
    NOT_MEMBER = 4
    SESSION_CLOSED = 5
    VERSION_CONFLICT = 6
    LIMIT_EXCEEDED = 7
    NO_SUCH_MEMBER = 8
    #: Sealed content or a commit the hub will not order (§10.6).
    SEALING = 9


def _no_extensions(code: int, data: bytes) -> object:
    raise ProtocolViolation("the hub protocol has no MessagePack extension types")


def _no_maps(pairs: object) -> object:
    raise ProtocolViolation("the hub protocol has no MessagePack maps")


def _flat(array: list[Any]) -> list[Any]:
    """A request's list_hook: no request holds an array, so an array inside
    one is refused as soon as it is decoded. Otherwise a megabyte of nested
    empty arrays would decode to some 65 MiB of lists, and a client could
    keep that parked one byte short of the end of the message."""
    for item in array:
        if type(item) is list:
            raise ProtocolViolation("a hub request holds no nested arrays")
        # The one extension type msgpack decodes by itself, bypassing
        # ext_hook. A request is flat, so looking here covers all of it.
        if type(item) is msgpack.Timestamp:
            raise ProtocolViolation("the hub protocol has no MessagePack extension types")
    return array


def _has_timestamp(message: list[Any]) -> bool:
    """Whether a timestamp (extension type -1, which msgpack decodes by itself) is inside.

    Iterative: msgpack nests arrays far deeper than Python's recursion limit.
    """
    pending: list[object] = [message]
    while pending:
        value = pending.pop()
        if isinstance(value, msgpack.Timestamp):
            return True
        if type(value) is list:
            pending.extend(value)
    return False


_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def pack(*fields: Any) -> bytes:
    """One message: ``pack(Op.SEND, rid, session, None, data)``."""
    return _packer.pack(fields)  # type: ignore[no-any-return]


class MessageReader:
    """Splits received bytes into messages, enforcing the size limits.

    ``max_message`` bounds one message's encoded size, counted over the bytes
    fed since the last complete message: the unpacker's own buffer limit
    would not do, since it keeps the decoded part of an unfinished message
    outside that buffer. A hub reads requests with ``MAX_REQUEST`` (they have
    no nested arrays, and arrays of at most 8 fields: any other is refused as
    it is decoded); a client reads with ``MAX_ANSWER``.
    """

    __slots__ = (
        "_arrays",
        "_boundary",
        "_fed",
        "_max_message",
        "_redecodes",
        "_unpacker",
        "_walk_for_timestamps",
    )

    def __init__(self, max_message: int = MAX_REQUEST) -> None:
        self._max_message = max_message
        self._fed = 0
        # Where the last complete message ended, in bytes fed so far.
        self._boundary = 0
        # Arrays decoded in the current message (an answer's, see MAX_ANSWER_ARRAYS).
        self._arrays = 0
        requests_only = max_message <= MAX_REQUEST
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max_message + RECEIVE_SIZE,
            # The default (1 MiB) would stay resident per connection once
            # that much had passed through.
            read_size=RECEIVE_SIZE,
            use_list=True,
            raw=False,
            strict_map_key=True,
            max_bin_len=MAX_SEALED,
            max_str_len=MAX_SEALED,
            max_array_len=8 if requests_only else 1 << 20,
            max_map_len=0,  # the protocol has no maps
            ext_hook=_no_extensions,
            # max_map_len=0 still lets an empty map through: refuse every one.
            object_pairs_hook=_no_maps,
            list_hook=_flat if requests_only else self._count_array,
        )
        # msgpack's pure-Python unpacker (PyPy, MSGPACK_PUREPYTHON) decodes an
        # unfinished message again from its start on each feed, calling the
        # list hook again for what it had decoded: count afresh each time.
        # (The C one resumes where it stopped.)
        self._redecodes = isinstance(self._unpacker, msgpack.fallback.Unpacker)
        # A request's list hook has looked at every value for timestamps.
        self._walk_for_timestamps = not requests_only

    def _count_array(self, array: list[Any]) -> list[Any]:
        self._arrays += 1
        if self._arrays > MAX_ANSWER_ARRAYS:
            raise ProtocolViolation(
                f"a hub protocol message holds more than {MAX_ANSWER_ARRAYS} arrays"
            )
        return array

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[list[Any]]:
        """Add received bytes and yield every complete message.

        Raises:
            ProtocolViolation: not MessagePack, over a limit, or not an array.
        """
        if self._redecodes:
            self._arrays = 0
        try:
            self._unpacker.feed(data)
            self._fed += len(data)
            for message in self._unpacker:
                # tell() is exact only here, between messages: the unpacker
                # consumes the bytes of a message it has begun.
                self._boundary = self._unpacker.tell()
                self._arrays = 0
                if type(message) is not list or not message or type(message[0]) is not int:
                    raise ProtocolViolation("a hub protocol message is not an [op, ...] array")
                if self._walk_for_timestamps and _has_timestamp(message):
                    raise ProtocolViolation("the hub protocol has no MessagePack extension types")
                yield message
            if self._fed - self._boundary > self._max_message:
                raise ProtocolViolation(f"a hub protocol message is over {self._max_message} bytes")
        except ProtocolViolation:
            raise
        except (ValueError, msgpack.UnpackException) as exc:
            raise ProtocolViolation(f"a hub protocol message is malformed: {exc}") from None


# -- field checks ---------------------------------------------------------------------


def field_error(message: list[Any], what: str) -> ProtocolViolation:
    name = Op(message[0]).name if message[0] in Op._value2member_map_ else str(message[0])
    return ProtocolViolation(f"a {name} message is malformed: {what}")


def expect_shape(message: list[Any], *types: tuple[type, ...]) -> None:
    """Check the arity of ``message`` and the exact type of each field after the op.

    Exact types, because a MessagePack ``true`` decodes to a bool, which
    Python would otherwise accept wherever an int is expected.
    """
    if len(message) != len(types) + 1:
        raise field_error(message, f"{len(message) - 1} fields instead of {len(types)}")
    for index, allowed in enumerate(types, 1):
        if type(message[index]) not in allowed:
            raise field_error(message, f"field {index} is a {type(message[index]).__name__}")


def expect_id(message: list[Any], index: int) -> int:
    value: int = message[index]
    if not 0 <= value <= _MAX_ID:
        raise field_error(message, f"field {index} is out of range")
    return value


def expect_name(message: list[Any], index: int) -> str:
    try:
        return check_session_name(message[index])
    except ValueError as exc:
        raise field_error(message, str(exc)) from None


def expect_reason(message: list[Any], index: int) -> str:
    try:
        return check_reason(message[index])
    except ValueError as exc:
        raise field_error(message, str(exc)) from None


def expect_key(message: list[Any], index: int) -> str:
    try:
        return check_variable_key(message[index])
    except ValueError as exc:
        raise field_error(message, str(exc)) from None


INT: Final = (int,)
STR: Final = (str,)
BYTES: Final = (bytes,)
BOOL: Final = (bool,)
LIST: Final = (list,)
OPTIONAL_INT: Final = (int, type(None))
OPTIONAL_STR: Final = (str, type(None))


# -- requests -------------------------------------------------------------------------
# Each decoder checks the fields in the order they come, so that a request
# with several bad fields is refused for the first one.


def decode_hello(message: list[Any]) -> Hello:
    """The first message of a connection, which must be a HELLO of our version.

    Raises:
        ProtocolViolation: not a HELLO, malformed, or of another version.
    """
    if message[0] != Op.HELLO:
        raise field_error(message, "the first message must be HELLO")
    expect_shape(message, INT)
    if message[1] != VERSION:
        raise ProtocolViolation(
            f"the client speaks hub protocol version {message[1]}; this hub speaks {VERSION}"
        )
    return Hello(message[1])


def _join(message: list[Any]) -> Join:
    expect_shape(message, INT, STR, BOOL)
    return Join(expect_id(message, 1), expect_name(message, 2), message[3])


def _leave(message: list[Any]) -> Leave:
    expect_shape(message, INT, STR)
    return Leave(expect_id(message, 1), expect_name(message, 2))


def _send(message: list[Any]) -> Send:
    expect_shape(message, INT, STR, OPTIONAL_INT, BYTES)
    return Send(expect_id(message, 1), expect_name(message, 2), message[3], message[4])


def _set(message: list[Any]) -> Set:
    expect_shape(message, INT, STR, STR, BYTES, OPTIONAL_INT)
    rid, name = expect_id(message, 1), expect_name(message, 2)
    return Set(rid, name, expect_key(message, 3), message[4], message[5])


def _remove(message: list[Any]) -> Remove:
    expect_shape(message, INT, STR, INT, STR)
    rid, name = expect_id(message, 1), expect_name(message, 2)
    return Remove(rid, name, message[3], expect_reason(message, 4))


def _close(message: list[Any]) -> Close:
    expect_shape(message, INT, STR, STR)
    return Close(expect_id(message, 1), expect_name(message, 2), expect_reason(message, 3))


def _enter(message: list[Any]) -> Enter:
    expect_shape(message, INT, STR, BYTES)
    return Enter(expect_id(message, 1), expect_name(message, 2), message[3])


def _commit(message: list[Any]) -> Commit:
    expect_shape(message, INT, STR, BYTES)
    return Commit(expect_id(message, 1), expect_name(message, 2), message[3])


def _reseal(message: list[Any]) -> Reseal:
    expect_shape(message, INT, STR, STR, INT, BYTES)
    rid, name, key = expect_id(message, 1), expect_name(message, 2), expect_key(message, 3)
    return Reseal(rid, name, key, expect_id(message, 4), message[5])


_DECODERS: Final[dict[int, Callable[[list[Any]], Request]]] = {
    Op.JOIN: _join,
    Op.LEAVE: _leave,
    Op.SEND: _send,
    Op.SET: _set,
    Op.REMOVE: _remove,
    Op.CLOSE: _close,
    Op.ENTER: _enter,
    Op.COMMIT: _commit,
    Op.RESEAL: _reseal,
}


def decode_request(message: list[Any]) -> Request:
    """A request after HELLO, as :class:`MessageReader` yielded it.

    Raises:
        ProtocolViolation: not a request a client may send now, or malformed.
    """
    decoder = _DECODERS.get(message[0])
    if decoder is None:
        raise field_error(message, "not a request a client may send")
    return decoder(message)
