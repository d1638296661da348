"""What a hub sends a client, read: events routed to their session and opened, errors typed.

The client's reader calls these for each decoded message. An event for a
session we are not (or no longer) in, or one at or before a sequence number
the session has seen, is dropped: the hub may have sent it before our LEAVE
arrived. Anything malformed raises :class:`ProtocolViolation`, and the
connection ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from keystore import Peer
from securesess.errors import (
    AccessDenied,
    AlreadyMember,
    LimitExceeded,
    NoSuchSession,
    NotMember,
    SealingRefused,
    SessionClosed,
    SessionError,
    VersionConflict,
)
from securesess.sessions import wire
from securesess.sessions.events import (
    MemberJoined,
    MemberLeft,
    Message,
    MessageId,
    VariableChanged,
)
from securesess.sessions.join_answer import member_from_fields
from securesess.sessions.sealing import ForgedContent, Kind, Opened, SealingError, UnknownSender
from securesess.sessions.session import Session
from securesess.sessions.wire import ErrorCode, Op

__all__ = ["EVENTS", "error_from", "peer_from", "route_event"]

_ERRORS: Final[dict[int, type[SessionError]]] = {
    ErrorCode.ACCESS_DENIED: AccessDenied,
    ErrorCode.NO_SUCH_SESSION: NoSuchSession,
    ErrorCode.ALREADY_MEMBER: AlreadyMember,
    ErrorCode.NOT_MEMBER: NotMember,
    ErrorCode.NO_SUCH_MEMBER: NotMember,
    ErrorCode.SESSION_CLOSED: SessionClosed,
    ErrorCode.VERSION_CONFLICT: VersionConflict,
    ErrorCode.LIMIT_EXCEEDED: LimitExceeded,
    ErrorCode.SEALING: SealingRefused,
}

#: The operations that are a session's events.
EVENTS: Final = frozenset(
    {Op.MESSAGE, Op.JOINED, Op.LEFT, Op.VARIABLE, Op.ENDED, Op.DUE, Op.EPOCH, Op.VALUE}
)


def peer_from(fields: object) -> Peer:
    """The peer a WELCOME describes (a member's fields without the member id)."""
    member = member_from_fields([0, *fields] if type(fields) is list else fields)
    return Peer(member.name, member.public_key, member.groups)


def error_from(message: list[Any]) -> SessionError:
    """The error an ERROR answer (``[ERROR, rid, code, text, version?]``) stands for."""
    if len(message) not in (4, 5) or type(message[2]) is not int or type(message[3]) is not str:
        raise wire.field_error(message, "malformed error")
    error_type = _ERRORS.get(message[2], SessionError)
    text = message[3]
    if error_type is VersionConflict:
        version = message[4] if len(message) == 5 and type(message[4]) is int else 0
        return VersionConflict(text, version=version)
    return error_type(text)


def route_event(sessions: Mapping[str, Session], message: list[Any]) -> None:
    """Hand one event (its op in :data:`EVENTS`) to the session it belongs to."""
    op = message[0]
    if op == Op.MESSAGE:  # the common case first
        wire.expect_shape(message, wire.STR, wire.INT, wire.INT, wire.BYTES, wire.BOOL)
    elif op == Op.JOINED:
        wire.expect_shape(message, wire.STR, wire.INT, wire.LIST)
    elif op == Op.LEFT:
        wire.expect_shape(message, wire.STR, wire.INT, wire.INT, wire.STR)
    elif op == Op.VARIABLE:
        wire.expect_shape(message, wire.STR, wire.INT, wire.STR, wire.BYTES, wire.INT, wire.INT)
    elif op == Op.EPOCH:
        wire.expect_shape(message, wire.STR, wire.INT, wire.INT, wire.BYTES, wire.BOOL)
    elif op == Op.VALUE:
        wire.expect_shape(message, wire.STR, wire.INT, wire.STR, wire.BYTES, wire.INT)
    elif op == Op.DUE:
        _due(sessions, message)
        return
    else:
        _end(sessions, message)
        return
    session = sessions.get(message[1])
    seq = message[2]
    if session is None or seq <= session._seq or session._ended is not None:
        return
    sealing = session._sealing
    if sealing.unannounced and op != Op.JOINED:
        missing = ", ".join(f"#{m}" for m in sorted(sealing.unannounced))
        session._tampered(ForgedContent(f"the hub did not announce {missing}"), "a commit")
        return
    if op == Op.MESSAGE:
        sender = session.member(message[3])
        if sender is None:
            raise wire.field_error(message, "the sender is not a member")
        direct = message[5]
        opened = _open(session, message[4], sender.id, Kind.DIRECT if direct else Kind.MESSAGE)
        if opened is not None:
            session._push(seq, Message(MessageId(seq, sender.id), sender, opened.body, direct))
    elif op == Op.EPOCH:
        try:
            sealing.apply(message[3], message[4], message[5], session.me.id, session._variables)
            for described in sealing.match(session._members):
                session._add_member(described)
        except SealingError as error:
            session._tampered(error, "a commit")
            return
        session._seq = seq
    elif op == Op.VALUE:
        _value(session, seq, message[3], message[4], message[5])
    elif op == Op.JOINED:
        member = member_from_fields(message[3])
        try:
            member = sealing.announced(member)
        except SealingError as error:
            session._tampered(error, "a member joining")
            return
        session._add_member(member)
        session._push(seq, MemberJoined(member, seq))
        session._check_state()
    elif op == Op.LEFT:
        gone = session._remove_member(message[3])
        if gone is None:
            raise wire.field_error(message, "the member is not in the session")
        session._push(seq, MemberLeft(gone, message[4], seq))
    else:
        key, version, by = message[3], message[5], session.member(message[6])
        if by is None:
            raise wire.field_error(message, "the member that set it is not a member")
        opened = _open(session, message[4], by.id, Kind.VARIABLE, key)
        if opened is not None:
            session._set_variable(key, opened.body, version)
            session._push(seq, VariableChanged(key, opened.body, version, by, seq))
            session._sealing.got_value(key, version)
            session._check_state()


def _open(
    session: Session, data: bytes, sender: int, kind: Kind, key: str | None = None
) -> Opened | None:
    """Open content that the hub says ``sender`` sealed, or end the session."""
    try:
        return session._sealing.open(data, sender, kind, key, session._members)
    except SealingError as error:
        session._tampered(error, f"a {kind.name.lower()}")
        return None


def _value(session: Session, seq: int, key: str, value: bytes, version: int) -> None:
    """A value sealed again by the epoch's committer, for us who joined."""
    committer = session._sealing.committer
    if committer is None:
        session._tampered(UnknownSender("no commit has brought us in"), "a variable's value")
        return
    opened = _open(session, value, committer, Kind.VARIABLE, key)
    if opened is not None:
        session._seq = seq
        session._set_variable(key, opened.body, version)
        session._sealing.got_value(key, version)
        session._check_state()


def _due(sessions: Mapping[str, Session], message: list[Any]) -> None:
    wire.expect_shape(message, wire.STR, wire.INT, wire.LIST, wire.LIST)
    members, entries = message[3], message[4]
    if not all(type(m) is int for m in members) or not all(type(e) is bytes for e in entries):
        raise wire.field_error(message, "the members are not ids, or the entries not bytes")
    session = sessions.get(message[1])
    if session is not None and session._ended is None:
        session._sealing.due(message[2], members, entries)


def _end(sessions: Mapping[str, Session], message: list[Any]) -> None:
    wire.expect_shape(message, wire.STR, wire.INT, wire.STR)
    session = sessions.get(message[1])
    if session is not None:
        session._finish(
            SessionClosed(
                f"no longer a member of session {message[1]!r}: {message[3]}",
                session=message[1],
                reason=message[3],
            )
        )
