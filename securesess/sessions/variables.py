"""Whether a SET may change a session variable: compare-and-set and the limits, without I/O.

Kept apart from the core's other transitions because what a refusal may
say is subtle: a member without the receive right must learn nothing of
the variables from it, neither which keys exist nor how long their values
are nor their versions.
"""

from __future__ import annotations

from securesess.sessions import requests as rq
from securesess.sessions.outcome import Limits, Member, Refused
from securesess.sessions.store import SessionState
from securesess.sessions.wire import ErrorCode

__all__ = ["admit_set"]


def admit_set(
    session: SessionState[Member], member: Member, request: rq.Set, limits: Limits
) -> int:
    """The bytes the variables will hold once ``request`` is applied, or Refused."""
    key, value, expected = request.key, request.value, request.expected
    if expected is not None and not member.receives:
        # Whether it conflicts would tell whether the variable exists,
        # and its version: what only the receive right may learn.
        raise Refused(
            ErrorCode.ACCESS_DENIED,
            f"a compare-and-set in session {session.name!r} needs the receive right",
        )
    current = session.variables.get(key)
    version = current.version if current is not None else 0
    if expected is not None and expected != version:
        raise Refused(
            ErrorCode.VERSION_CONFLICT,
            f"variable {key!r} of session {session.name!r} is at version {version}, not {expected}",
            version,
        )
    # A member that may not receive is judged at the limits as if the key
    # were new: that an overwrite fits where a new key would not would
    # tell it which keys exist, and how long their values are.
    as_new = current is None or not member.receives
    if as_new and len(session.variables) >= limits.max_variables:
        raise Refused(
            ErrorCode.LIMIT_EXCEEDED,
            f"session {session.name!r} already has {limits.max_variables} variables",
        )
    # Bounded in bytes too: every JOIN answer lists all the variables.
    grown = session.variable_bytes + len(key) + len(value)
    size = grown if current is None else grown - len(key) - len(current.value)
    if (grown if as_new else size) > limits.max_variable_bytes:
        raise Refused(
            ErrorCode.LIMIT_EXCEEDED,
            f"session {session.name!r} would hold more than "
            f"{limits.max_variable_bytes} bytes of variables",
        )
    return size
