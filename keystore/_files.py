"""Files that survive crashes and concurrent writers, and keep secrets private.

Every write goes to a temporary file in the same directory, is flushed to
disk, then renamed over the old one, so a reader sees the old file or the
new one, never half of either. Writers take an exclusive lock on the
keystore's lock file first, so two CLI calls cannot interleave their
read-modify-write cycles.

Whoever may write a directory may replace the files in it, so a secret or a
trust file is refused when its directory, or any directory above it, is
writable by other users (unless sticky, as /tmp is) or owned by someone
other than the user or root: ssh's StrictModes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from keystore.errors import InsecurePermissionsError, KeystoreError, KeystoreWriteError

__all__ = ["check_directories", "check_private", "ensure_directory", "locked", "write_atomically"]

_PRIVATE_FILE: Final = 0o600
_PRIVATE_DIRECTORY: Final = 0o700
_SHARED_DIRECTORY: Final = 0o755


def ensure_directory(path: Path) -> None:
    """Create ``path`` as a directory only its owner can enter, and any
    missing parents as directories only their owner can write."""
    try:
        # mkdir(parents=True) would give parents the umask's mode, which is
        # group-writable under a umask of 002, and check_directories refuses.
        for parent in reversed(path.parents):
            if not parent.exists():
                parent.mkdir(mode=_SHARED_DIRECTORY, exist_ok=True)
        path.mkdir(mode=_PRIVATE_DIRECTORY, exist_ok=True)
    except OSError as exc:
        raise KeystoreWriteError(f"cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise KeystoreWriteError(f"cannot use {path}: permission denied (check its owner and mode)")


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): all of it, or none of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
        try:
            # os.write may write less than it was given (a signal, a full
            # disk about to raise): write the rest until all of it is there.
            remaining = memoryview(data)
            while remaining:
                written = os.write(descriptor, remaining)
                if not written:
                    raise OSError(errno.EIO, "the file system took no bytes")
                remaining = remaining[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise KeystoreWriteError(f"cannot write {path}: {exc.strerror}") from None


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold the keystore's exclusive lock for the duration of the block."""
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, _PRIVATE_FILE)
    except OSError as exc:
        raise KeystoreWriteError(f"cannot open the lock file {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def check_directories(directory: Path) -> None:
    """Refuse ``directory`` if another user could replace what it holds.

    Every directory from ``directory`` up to the root, as written and once
    symbolic links are resolved, must belong to this user or root and be
    writable by no one else, unless it is sticky (others may then add
    entries, but not rename or remove this user's).

    Raises:
        InsecurePermissionsError: one of them is open to other users.
        KeystoreError: one of them cannot be examined.
    """
    absolute = directory.absolute()
    chains = [absolute, *absolute.parents]
    resolved = absolute.resolve()
    if resolved != absolute:
        chains += [resolved, *resolved.parents]
    user = os.geteuid()
    for each in dict.fromkeys(chains):
        try:
            status = each.stat()
        except OSError as exc:
            raise KeystoreError(f"cannot examine {each}: {exc.strerror}") from None
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o022 and not mode & stat.S_ISVTX:
            raise InsecurePermissionsError(
                f"{each} is writable by other users (mode {mode:o}), who could replace the "
                f"keystore's files under it: chmod go-w {each}"
            )
        if status.st_uid not in (user, 0):
            raise InsecurePermissionsError(
                f"{each} belongs to another user (uid {status.st_uid}), who could replace the "
                f"keystore's files under it: it must be yours or root's"
            )


def check_place(path: Path) -> None:
    """Refuse ``path`` if another user could replace it: the directories it
    is in, and, when it is a symbolic link, those of the file it leads to
    (which opening it reads), pass :func:`check_directories`."""
    check_directories(path.parent)
    target = path.resolve()
    if target.parent != path.absolute().parent:
        check_directories(target.parent)


def check_private(path: Path) -> None:
    """Refuse a secret file that users other than its owner could read, or
    replace (see :func:`check_place`)."""
    check_place(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecurePermissionsError(
            f"{path} is accessible by other users (mode {mode:o}); "
            f"a private key must be readable by its owner only: chmod 600 {path}"
        )
