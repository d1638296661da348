"""Handshake patterns as data (Noise spec sections 7 and 9).

The patterns are written below in the spec's own notation and parsed once at
import, so the table can be checked against the spec by eye. A pattern name in
a protocol name may carry modifiers (``XXpsk0+psk3``); :func:`resolve` applies
them and returns an immutable :class:`HandshakePattern` the state machine
walks without further parsing.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, final

from handshake.errors import ProtocolNameError

__all__ = ["PATTERNS", "HandshakePattern", "Token", "resolve"]


class Token(enum.StrEnum):
    E = "e"
    S = "s"
    EE = "ee"
    ES = "es"
    SE = "se"
    SS = "ss"
    PSK = "psk"


Message = tuple[Token, ...]


@final
@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A pattern with its modifiers applied.

    ``initiator_pre`` and ``responder_pre`` are the pre-messages; message ``i``
    of ``messages`` is sent by the initiator when ``i`` is even. ``psk_count``
    is the number of ``psk`` tokens; they take the caller's PSKs in order.
    """

    name: str
    initiator_pre: Message
    responder_pre: Message
    messages: tuple[Message, ...]
    psk_count: int = 0

    @property
    def one_way(self) -> bool:
        return len(self.messages) == 1

    def needs_local_static(self, initiator: bool) -> bool:
        """Whether the party needs its own static key pair ``s``."""
        pre = self.initiator_pre if initiator else self.responder_pre
        own = self.messages[0 if initiator else 1 :: 2]
        return Token.S in pre or any(Token.S in message for message in own)

    def needs_remote_static(self, initiator: bool) -> bool:
        """Whether the party must know the peer's static public key in advance."""
        return Token.S in (self.responder_pre if initiator else self.initiator_pre)


# Sections 7.4 (one-way), 7.5 (interactive fundamental) and 7.6 (deferred),
# transcribed from revision 34 of the specification.
_SPEC_PATTERNS: Final = """
N:
  <- s
  ...
  -> e, es

K:
  -> s
  <- s
  ...
  -> e, es, ss

X:
  <- s
  ...
  -> e, es, s, ss

NN:
  -> e
  <- e, ee

NK:
  <- s
  ...
  -> e, es
  <- e, ee

NX:
  -> e
  <- e, ee, s, es

KN:
  -> s
  ...
  -> e
  <- e, ee, se

KK:
  -> s
  <- s
  ...
  -> e, es, ss
  <- e, ee, se

KX:
  -> s
  ...
  -> e
  <- e, ee, se, s, es

XN:
  -> e
  <- e, ee
  -> s, se

XK:
  <- s
  ...
  -> e, es
  <- e, ee
  -> s, se

XX:
  -> e
  <- e, ee, s, es
  -> s, se

IN:
  -> e, s
  <- e, ee, se

IK:
  <- s
  ...
  -> e, es, s, ss
  <- e, ee, se

IX:
  -> e, s
  <- e, ee, se, s, es

NK1:
  <- s
  ...
  -> e
  <- e, ee, es

NX1:
  -> e
  <- e, ee, s
  -> es

X1N:
  -> e
  <- e, ee
  -> s
  <- se

X1K:
  <- s
  ...
  -> e, es
  <- e, ee
  -> s
  <- se

XK1:
  <- s
  ...
  -> e
  <- e, ee, es
  -> s, se

X1K1:
  <- s
  ...
  -> e
  <- e, ee, es
  -> s
  <- se

X1X:
  -> e
  <- e, ee, s, es
  -> s
  <- se

XX1:
  -> e
  <- e, ee, s
  -> es, s, se

X1X1:
  -> e
  <- e, ee, s
  -> es, s
  <- se

K1N:
  -> s
  ...
  -> e
  <- e, ee
  -> se

K1K:
  -> s
  <- s
  ...
  -> e, es
  <- e, ee
  -> se

KK1:
  -> s
  <- s
  ...
  -> e
  <- e, ee, se, es

K1K1:
  -> s
  <- s
  ...
  -> e
  <- e, ee, es
  -> se

K1X:
  -> s
  ...
  -> e
  <- e, ee, s, es
  -> se

KX1:
  -> s
  ...
  -> e
  <- e, ee, se, s
  -> es

K1X1:
  -> s
  ...
  -> e
  <- e, ee, s
  -> se, es

I1N:
  -> e, s
  <- e, ee
  -> se

I1K:
  <- s
  ...
  -> e, es, s
  <- e, ee
  -> se

IK1:
  <- s
  ...
  -> e, s
  <- e, ee, se, es

I1K1:
  <- s
  ...
  -> e, s
  <- e, ee, es
  -> se

I1X:
  -> e, s
  <- e, ee, s, es
  -> se

IX1:
  -> e, s
  <- e, ee, se, s
  -> es

I1X1:
  -> e, s
  <- e, ee, s
  -> se, es
"""


def _parse_line(line: str) -> tuple[str, Message]:
    arrow, _, rest = line.partition(" ")
    return arrow, tuple(Token(token.strip()) for token in rest.split(","))


def _parse_pattern(name: str, body: list[str]) -> HandshakePattern:
    if "..." in body:
        split = body.index("...")
        pre, lines = body[:split], body[split + 1 :]
    else:
        pre, lines = [], body
    initiator_pre: Message = ()
    responder_pre: Message = ()
    for line in pre:
        arrow, tokens = _parse_line(line)
        if arrow == "->":
            initiator_pre = tokens
        else:
            responder_pre = tokens
    messages = []
    for index, line in enumerate(lines):
        arrow, tokens = _parse_line(line)
        expected = "->" if index % 2 == 0 else "<-"
        if arrow != expected:
            raise AssertionError(f"pattern {name}: message {index} must go {expected}")
        messages.append(tokens)
    return HandshakePattern(name, initiator_pre, responder_pre, tuple(messages))


def _parse_table(text: str) -> dict[str, HandshakePattern]:
    table: dict[str, HandshakePattern] = {}
    for block in text.strip().split("\n\n"):
        header, *body = (line.strip() for line in block.splitlines())
        name = header.rstrip(":")
        table[name] = _parse_pattern(name, body)
    return table


PATTERNS: Final[dict[str, HandshakePattern]] = _parse_table(_SPEC_PATTERNS)

_PSK_MODIFIER: Final = re.compile(r"psk(0|[1-9][0-9]?)")


def resolve(name_with_modifiers: str) -> HandshakePattern:
    """Look up a pattern and apply its modifiers (only ``pskN`` is supported)."""
    match = re.fullmatch(r"([A-Z][A-Z0-9]*)(.*)", name_with_modifiers)
    base_name, modifier_text = match.groups() if match else (name_with_modifiers, "")
    base = PATTERNS.get(base_name)
    if base is None:
        raise ProtocolNameError(f"unknown handshake pattern {base_name!r}")
    if not modifier_text:
        return base

    positions: list[int] = []
    for modifier in modifier_text.split("+"):
        psk = _PSK_MODIFIER.fullmatch(modifier)
        if psk is None:
            raise ProtocolNameError(f"unsupported pattern modifier {modifier!r}")
        position = int(psk.group(1))
        if position > len(base.messages):
            raise ProtocolNameError(
                f"{modifier} is past the end of {base_name}, which has "
                f"{len(base.messages)} message(s)"
            )
        if positions and position <= positions[-1]:
            # Other implementations match PSKs to positions in ascending order;
            # accepting another order would silently pair the wrong keys.
            raise ProtocolNameError(
                f"psk modifiers must be in ascending order without repeats, not {modifier_text}"
            )
        positions.append(position)

    # psk0 opens the first message; pskN (N >= 1) closes message N.
    messages = [list(message) for message in base.messages]
    for position in positions:
        if position == 0:
            messages[0].insert(0, Token.PSK)
        else:
            messages[position - 1].append(Token.PSK)
    return HandshakePattern(
        name=name_with_modifiers,
        initiator_pre=base.initiator_pre,
        responder_pre=base.responder_pre,
        messages=tuple(tuple(message) for message in messages),
        psk_count=len(positions),
    )
