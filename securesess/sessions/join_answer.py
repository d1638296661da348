"""What the hub says a session is when we join it, checked: the client trusts no hub's shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

from securesess.errors import ProtocolViolation
from securesess.policy import Right
from securesess.sessions.events import Member

__all__ = ["JoinAnswer", "member_from_fields"]


def member_from_fields(fields: object) -> Member:
    """A member as the hub describes it (``[id, name, public_key, groups]``)."""
    if (
        type(fields) is not list
        or len(fields) != 4
        or type(fields[0]) is not int
        or type(fields[1]) not in (str, type(None))
        or type(fields[2]) is not bytes
        or len(fields[2]) != 32
        or type(fields[3]) is not list
        or not all(type(group) is str for group in fields[3])
    ):
        raise ProtocolViolation("the hub described a member malformedly")
    return Member(fields[0], fields[1], fields[2], frozenset(fields[3]))


@final
@dataclass(frozen=True, slots=True)
class JoinAnswer:
    """``[member_id, seq, members, variables, rights]``: the variables by key
    and version only, as their values are sealed under epochs we were not in."""

    me: Member
    seq: int
    members: dict[int, Member]
    variables: dict[str, int]
    rights: frozenset[Right]

    @classmethod
    def parse(cls, reply: list[Any]) -> JoinAnswer:
        """Raises:
        ProtocolViolation: malformed.
        """
        if (
            len(reply) != 5
            or type(reply[0]) is not int
            or type(reply[1]) is not int
            or type(reply[2]) is not list
            or type(reply[3]) is not list
            or type(reply[4]) is not list
        ):
            raise ProtocolViolation("the hub's answer to JOIN is malformed")
        members = {member.id: member for member in map(member_from_fields, reply[2])}
        me = members.get(reply[0])
        if me is None:
            raise ProtocolViolation("the hub's answer to JOIN does not list us as a member")
        variables: dict[str, int] = {}
        for entry in reply[3]:
            if (
                type(entry) is not list
                or len(entry) != 2
                or type(entry[0]) is not str
                or type(entry[1]) is not int
            ):
                raise ProtocolViolation("the hub's answer to JOIN has a malformed variable")
            variables[entry[0]] = entry[1]
        try:
            rights = frozenset(Right(right) for right in reply[4])
        except ValueError:
            raise ProtocolViolation("the hub's answer to JOIN names an unknown right") from None
        return cls(me, reply[1], members, variables, rights)
