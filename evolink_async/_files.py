"""File-system helpers shared by downloads, the batch journal and the manifest.

All of them block: call them from a worker thread (``anyio.to_thread.run_sync``), never on the
event loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

__all__ = [
    "PART_FILE",
    "atomic_write",
    "fsync_dir",
    "part_name",
    "write_all",
]

#: the name :func:`part_name` gives the temporary file of ``<name>`` (``.<name>.<hex8>.part``)
PART_FILE = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.part")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``directory`` durable; best effort (some file systems
    refuse to open or fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def part_name(name: str) -> str:
    """The temporary name a file ``name`` is written under before its atomic rename:
    ``.<name>.<8 hex>.part``, within NAME_MAX (255 bytes) even for long names."""
    stem = name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    return f".{stem}.{secrets.token_hex(4)}.part"


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, fsynced, renamed over
    ``path``, and the directory fsynced. Readers see the old content or the new, never a mix."""
    dest = Path(path)
    tmp = dest.with_name(part_name(dest.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(dest.parent)
    return dest
