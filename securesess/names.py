"""What a session name, a variable key and a reason may be.

The hub protocol refuses a message that breaks these rules, and the access
policy refuses a rule that names a session no client could ask for; both
read them here, so the two can never disagree.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = [
    "MAX_KEY",
    "MAX_NAME",
    "MAX_REASON",
    "check_reason",
    "check_session_name",
    "check_variable_key",
]

#: Longest session name and variable key, in UTF-8 bytes.
MAX_NAME: Final = 255
MAX_KEY: Final = 255
#: Longest reason text (REMOVE, CLOSE), in UTF-8 bytes.
MAX_REASON: Final = 200


def _check_text(text: str, limit: int, what: str) -> None:
    encoded = text.encode("utf-8", "surrogatepass")
    if not encoded or len(encoded) > limit:
        raise ValueError(f"a {what} is 1 to {limit} bytes of UTF-8, not {len(encoded)}")
    # Control and unassigned characters would let two names look alike in
    # logs, or smuggle line breaks into them. Printable ASCII has none of
    # them, and is what nearly every name is: no need to look at each
    # character's category (this runs for every request a hub reads).
    if text.isascii() and text.isprintable():
        return
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"} for char in text):
        raise ValueError(f"a {what} may not contain control or invisible characters: {text!r}")


def check_session_name(name: str) -> str:
    """Return ``name`` if it is a valid session name.

    Raises:
        ValueError: empty, longer than 255 bytes, or with control characters.
    """
    _check_text(name, MAX_NAME, "session name")
    return name


def check_variable_key(key: str) -> str:
    """Return ``key`` if it is a valid variable key (the rules of session names)."""
    _check_text(key, MAX_KEY, "variable key")
    return key


def check_reason(reason: str) -> str:
    """Return ``reason`` if it may go into a REMOVE or CLOSE (empty is fine)."""
    if reason:
        _check_text(reason, MAX_REASON, "reason")
    return reason
