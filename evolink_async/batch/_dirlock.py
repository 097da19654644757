"""The exclusive lock a run holds on its output directory (``<dir>/.lock``, ``flock``).

The kernel drops it when the process dies, however it dies. The ledger store takes it for a
directory's embedded SQLite ledger, exactly as the journal does for its file.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from ..errors import JournalError, JournalLockedError
from .records import LOCK_FILENAME

__all__ = ["O_CLOEXEC", "lock_directory", "try_lock", "unlock"]

if sys.platform == "win32":  # pragma: no cover - the SDK is developed and tested on POSIX
    import msvcrt

    def try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _holder(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_directory(directory: Path) -> int:
    """Create ``directory`` if needed and lock it (blocking); return the lock's descriptor.

    Raises:
        JournalLockedError: another run holds the directory.
        JournalError: the directory cannot be created or locked.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILENAME, os.O_RDWR | os.O_CREAT | O_CLOEXEC, 0o600)
    except OSError as exc:
        raise JournalError(f"cannot use {directory}: {exc.strerror or exc}") from exc
    try:
        try:
            try_lock(fd)
        except OSError as exc:
            if exc.errno not in {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}:
                raise JournalError(f"cannot lock {directory}: {exc.strerror or exc}") from exc
            raise JournalLockedError(directory, _holder(fd)) from None
        os.ftruncate(fd, 0)  # for the message another run will show
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock(fd: int) -> None:
    """Release the lock taken by :func:`lock_directory`."""
    os.close(fd)
