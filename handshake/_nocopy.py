"""Refusing to copy objects that hold a live key and nonce counter."""

from __future__ import annotations

from typing import NoReturn

__all__ = ["NoCopy"]


class NoCopy:
    """Refuses ``copy``, ``deepcopy`` and pickling.

    Two copies of a keyed state would encrypt different messages under the
    same key and nonce, which breaks the AEAD completely.
    """

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} cannot be copied or pickled: two copies would "
            "reuse the same key and nonce"
        )

    def __copy__(self) -> NoReturn:
        self._refuse()

    def __deepcopy__(self, memo: object) -> NoReturn:
        self._refuse()

    def __reduce__(self) -> NoReturn:
        self._refuse()
