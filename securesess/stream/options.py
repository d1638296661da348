"""What a secure connection, and a server's admission, are configured with.

Every entry point (``SecureStream``, ``wrap_socket``, ``SecureListener``,
``serve_secure``, ``open_secure_stream``, ``connect_hub``, ``Hub``,
``serve_hub``, both tunnel ends) takes one :class:`SecureOptions`, and a
server one :class:`AdmissionLimits`: frozen values, checked once when they
are made, so a bad option fails where it is written rather than on the first
connection, and one value can configure a whole program. The keyword
arguments of each option are accepted beside them, and override them:
``serve_secure(handler, 0, options, handshake_timeout=2)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, TypeVar, cast, final

from keystore import Identity, Peer, TrustStore
from securesess.constants import (
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_HANDSHAKE_RATE,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_HANDSHAKES,
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
    REKEY_AFTER_RECORDS,
)
from securesess.stream.protocols import check_psk, server_protocols

__all__ = [
    "AdmissionArgs",
    "AdmissionLimits",
    "SecureOptions",
    "SecureOptionsArgs",
    "ServeArgs",
    "merged",
    "unexpected",
]

Authorize = Callable[[Peer], str | None]


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SecureOptions:
    """The options of one side of a secure connection.

    Args:
        identity: who we are; its key is our Noise static key.
        trust: whom we accept. A responder refuses any initiator it does not
            trust; an initiator refuses a responder it does not trust.
        expect: the peer we insist on: its 32-byte public key (accepted even
            if not in ``trust``: that is pinning) or its name in ``trust``.
        protocol: the initiator's Noise protocol name (default
            ``Noise_XX_25519_AESGCM_SHA256``; an ``IK`` name needs ``expect``),
            or the names a responder allows (default: XX and IK with every
            cipher and hash).
        psk: a 32-byte network key; both sides must hold it, and only the psk
            protocols are spoken. Never shown in the repr.
        handshake_timeout: seconds the whole handshake may take.
        rekey_after_records: the sending key's budget: a REKEY record goes
            out at the latest as the budget's last record (at least 2, since
            the REKEY counts).
        authorize: a last check on a peer the trust store accepted (an access
            policy, say): it returns None to admit the peer, or the reason to
            refuse it, which the peer is told (close code ACCESS_DENIED).

    Raises:
        ValueError: an option is out of range, or ``protocol`` is not one
            securesess speaks or does not match ``psk``
            (:class:`handshake.ProtocolNameError`, a ValueError).
    """

    identity: Identity
    trust: TrustStore
    expect: bytes | str | None = None
    protocol: str | tuple[str, ...] | None = None
    psk: bytes | None = dataclasses.field(default=None, repr=False)
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    rekey_after_records: int = REKEY_AFTER_RECORDS
    authorize: Authorize | None = None

    def __post_init__(self) -> None:
        if not self.handshake_timeout > 0:  # NaN fails this too
            raise ValueError("handshake_timeout must be positive")
        if self.rekey_after_records < 2:
            raise ValueError("rekey_after_records must be at least 2 (the REKEY itself counts)")
        check_psk(self.psk)
        # Copies, so that a caller's list or bytearray changed later changes nothing here.
        if self.protocol is not None and not isinstance(self.protocol, str):
            object.__setattr__(self, "protocol", tuple(self.protocol))
        if self.expect is not None and not isinstance(self.expect, str):
            object.__setattr__(self, "expect", bytes(self.expect))
        if self.psk is not None:
            object.__setattr__(self, "psk", bytes(self.psk))
        # Each name must be one securesess speaks, with or without a psk as
        # given; which side may use which is the connection's to check.
        server_protocols(self.protocol, with_psk=self.psk is not None)

    def replace(self, **changes: Any) -> SecureOptions:
        """These options with ``changes`` (keywords of :class:`SecureOptions`), checked anew."""
        return dataclasses.replace(self, **changes)


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionLimits:
    """Which handshakes a server runs and which connections it keeps.

    See :func:`~securesess.stream.admission.handshake_first` for how each
    applies; None turns a limit off.

    Args:
        max_concurrent_handshakes: handshakes in progress at once; more
            clients are told "busy" at once.
        max_handshakes_per_source: handshakes one source (an IPv4 address or
            IPv6 /64) may have in progress once half the slots are taken.
        max_connections_per_peer: established connections one peer (one key)
            may hold at once.
        handshake_rate: handshakes a second one source may start on average,
        handshake_burst: beyond bursts of this many.
    """

    max_concurrent_handshakes: int = DEFAULT_MAX_CONCURRENT_HANDSHAKES
    max_handshakes_per_source: int | None = DEFAULT_MAX_HANDSHAKES_PER_SOURCE
    max_connections_per_peer: int | None = DEFAULT_MAX_CONNECTIONS_PER_PEER
    handshake_rate: float | None = DEFAULT_HANDSHAKE_RATE
    handshake_burst: int = DEFAULT_HANDSHAKE_BURST

    def __post_init__(self) -> None:
        if self.max_concurrent_handshakes < 1:
            raise ValueError("max_concurrent_handshakes must be at least 1")
        for name in ("max_handshakes_per_source", "max_connections_per_peer"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None)")
        if self.handshake_rate is not None and not self.handshake_rate > 0:
            raise ValueError("handshake_rate must be positive (or None)")
        if self.handshake_burst < 1:
            raise ValueError("handshake_burst must be at least 1")


class SecureOptionsArgs(TypedDict, total=False):
    """The fields of :class:`SecureOptions`, as keyword arguments beside one."""

    identity: Identity
    trust: TrustStore
    expect: bytes | str | None
    protocol: str | Sequence[str] | None
    psk: bytes | None
    handshake_timeout: float
    rekey_after_records: int
    authorize: Authorize | None


class AdmissionArgs(TypedDict, total=False):
    """The fields of :class:`AdmissionLimits`, as keyword arguments beside them."""

    max_concurrent_handshakes: int
    max_handshakes_per_source: int | None
    max_connections_per_peer: int | None
    handshake_rate: float | None
    handshake_burst: int


class ServeArgs(SecureOptionsArgs, AdmissionArgs, total=False):
    """The keyword arguments of a server: its options and its admission limits."""


_Frozen = TypeVar("_Frozen")


def merged(kind: type[_Frozen], given: _Frozen | None, keywords: Mapping[str, object]) -> _Frozen:
    """``given`` (or the defaults of ``kind``) with those of ``keywords`` that are its fields.

    An entry point's keyword arguments may hold the fields of several
    option types; each takes its own, so one call sorts them all.

    Raises:
        TypeError: ``kind`` has required fields (identity, trust) that
            neither ``given`` nor ``keywords`` provides.
        ValueError: the result is out of range (see ``kind``).
    """
    names = {field.name for field in dataclasses.fields(cast(Any, kind))}
    changes: dict[str, Any] = {key: value for key, value in keywords.items() if key in names}
    if given is None:
        return kind(**changes)
    return cast(_Frozen, dataclasses.replace(cast(Any, given), **changes)) if changes else given


def unexpected(keywords: Mapping[str, object], *kinds: type[Any]) -> None:
    """Refuse keywords that are no field of ``kinds``, as a Python call would.

    Raises:
        TypeError: naming the first such keyword.
    """
    names = {field.name for kind in kinds for field in dataclasses.fields(kind)}
    for key in keywords:
        if key not in names:
            raise TypeError(f"unexpected keyword argument {key!r}")
