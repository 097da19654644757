"""An append-only JSON-lines journal, so a batch can resume after any crash (even SIGKILL).

A batch run writes ``<dir>/journal.jsonl``: one JSON object per line, each written, flushed
and fsynced before the call that wrote it returns. Every record has ``"ts"`` (UTC, ISO 8601),
``"event"`` and ``"line"`` (the input line it is about)::

    {"ts": "...", "event": "job", "key_seed": "<random hex: the seed of the job's keys>"}
    {"ts": "...", "event": "intent", "line": 7, "fingerprint": "<sha256 of the request>",
     "key": "evb_..."}
    {"ts": "...", "event": "created", "line": 7, "task_id": "task-unified-...", "credits": 23.04}
    {"ts": "...", "event": "finished", "line": 7, "task_id": "...", "status": "completed",
     "error": null, "url": "https://..."}
    {"ts": "...", "event": "downloaded", "line": 7, "task_id": "...", "path": "clips/...",
     "size": 123, "sha256": "..."}
    {"ts": "...", "event": "unknown", "line": 7, "reason": "timeout after the request was sent"}
    {"ts": "...", "event": "download_failed", "line": 7, "task_id": "...", "reason": "..."}

:func:`replay` folds the records into one :class:`LineState` per line. What the phases mean
for a resumed run:

* ``intent``: the request may or may not have reached the service (a crash between the POST
  and its answer). With its idempotency ``key`` it is sent again with that key (the gateway
  answers with the original task); without one (an older journal, or keys turned off) it is
  treated like ``unknown``, never resubmitted silently.
* ``unknown``: the outcome of the submission is not known; sent again with its ``key`` when
  it has one, else resubmitted only when asked.
* ``created``: the service took it; re-attach by ``task_id`` and wait.
* ``finished``: ``status`` says how; a ``completed`` task is downloaded again from ``url``.
  Optional: ``credits`` (a completed task's final charge, ``usage.credits_used``) and
  ``retry: true`` (a failed attempt the run creates again at once).
* ``downloaded``: done, provided the file at ``path`` still has ``size`` bytes.
* ``download_failed``: the task completed (``status``, ``url`` kept) but its clip could not be
  fetched (``error`` says why); downloaded again from ``url``, like ``finished``.

A directory is used by one run at a time: :class:`Journal` holds an exclusive ``flock`` on
``<dir>/.lock`` and on the journal file itself while open (the kernel drops them when the
process dies, however it dies); deleting or replacing ``.lock`` under a running batch does
not let a second run in, since the journal it would write is still locked.
The API key is never written: records with a key such as ``api_key`` or ``authorization`` are
refused, and strings that look like a key or a bearer token are redacted.

Exceptions::

    JournalError            the journal cannot be used
    ├── JournalLockedError  another run holds the directory's lock
    └── JournalCorruptError a line other than the last one is not a valid record
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from .._files import fsync_dir, write_all
from ..errors import JournalCorruptError, JournalError, JournalLockedError
from ._dirlock import O_CLOEXEC, lock_directory, try_lock, unlock
from .records import (
    JOURNAL_FILENAME,
    LOCK_FILENAME,
    LineState,
    Phase,
    encode,
    fingerprint,
    finished_record,
    fold,
    fold_all,
    job_seed,
    parse,
    replay,
)

__all__ = [
    "JOURNAL_FILENAME",
    "LOCK_FILENAME",
    "Journal",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "LineState",
    "Phase",
    "fingerprint",
    "key_seed",
    "replay",
]


def _lock_journal(fd: int, directory: Path) -> None:
    """Lock the journal file itself: the ``.lock`` file can be deleted or swapped by hand
    under a running batch, the journal it writes cannot be shared."""
    try:
        try_lock(fd)
    except OSError as exc:
        if exc.errno not in {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}:
            raise
        raise JournalLockedError(directory) from None


class Journal:
    """The writer of a batch directory's journal; holds the directory's lock while open.

    Open it with ``Journal.open(directory)`` (blocking: for setup code and scripts) or
    ``await Journal.aopen(directory)`` (in a worker thread), and close it with ``close()`` or
    ``await aclose()``, or use it as a context manager::

        async with await Journal.aopen("clips") as journal:
            await journal.intent(7, fingerprint(request))
            ...

    Opening takes the lock, replays the journal into :attr:`state`, and cuts off a torn last
    line so new records start on a clean line. Each append method returns once its record is
    on disk (written, fsynced), and returns the line's new :class:`LineState`. Appends from
    many tasks are serialised by one lock, so records never interleave.
    """

    __slots__ = (
        "_broken",
        "_directory",
        "_fd",
        "_lock_fd",
        "_seed",
        "_size",
        "_state",
        "_write_lock",
    )

    FILENAME: ClassVar[str] = JOURNAL_FILENAME

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """Prepare a journal for ``directory``; nothing is opened until ``open``/``aopen``."""
        self._directory = Path(directory)
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._broken = False
        self._state: dict[int, LineState] = {}
        self._seed: str | None = None
        self._write_lock = anyio.Lock()

    # ----------------------------------------------------------------- open / close

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Journal:
        """Create the directory if needed, lock it, and open its journal (blocking).

        Raises:
            JournalLockedError: another run holds the directory.
            JournalCorruptError: the existing journal is damaged before its last line.
            JournalError: the directory or journal cannot be created or read.
        """
        journal = cls(directory)
        journal._open_sync()
        return journal

    @classmethod
    async def aopen(cls, directory: str | os.PathLike[str]) -> Journal:
        """Like :meth:`open`, with the file system work done in a worker thread."""
        journal = cls(directory)
        await anyio.to_thread.run_sync(journal._open_sync)
        return journal

    def _open_sync(self) -> None:
        if self._lock_fd is not None:
            raise JournalError(f"journal on {self._directory} is already open")
        lock_fd = lock_directory(self._directory)
        try:
            self._open_journal()
        except BaseException as exc:
            unlock(lock_fd)
            if isinstance(exc, OSError):
                raise JournalError(
                    f"cannot open the journal in {self._directory}: {exc.strerror or exc}"
                ) from exc
            raise
        self._lock_fd = lock_fd

    def _open_journal(self) -> None:
        """Read and repair the journal, then open it for appending (lock held)."""
        path = self._directory / JOURNAL_FILENAME
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | O_CLOEXEC, 0o600)
        try:
            _lock_journal(fd, self._directory)
            data = path.read_bytes()
            parsed = parse(data, path)
            if parsed.good_end < len(data):  # a torn last line: cut it off
                os.ftruncate(fd, parsed.good_end)
            if parsed.needs_newline:
                os.write(fd, b"\n")
            self._size = parsed.good_end + parsed.needs_newline
            if parsed.good_end < len(data) or parsed.needs_newline:
                os.fsync(fd)
            if not existed:
                fsync_dir(self._directory)
        except BaseException:
            os.close(fd)
            raise
        self._state = fold_all(parsed.records)
        self._seed = job_seed(parsed.records)
        self._fd = fd

    def close(self) -> None:
        """Close the journal and release the directory's lock. Idempotent."""
        fd, self._fd = self._fd, None
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            if fd is not None:
                os.close(fd)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)

    async def aclose(self) -> None:
        """Wait for appends in progress, then :meth:`close`."""
        async with self._write_lock:
            self.close()

    def __enter__(self) -> Journal:
        if self._fd is None:
            self._open_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Journal:
        if self._fd is None:
            await anyio.to_thread.run_sync(self._open_sync)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    # ----------------------------------------------------------------- state

    @property
    def directory(self) -> Path:
        """The batch directory."""
        return self._directory

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._directory / JOURNAL_FILENAME

    @property
    def closed(self) -> bool:
        """Whether the journal is closed (or was never opened)."""
        return self._fd is None

    @property
    def state(self) -> dict[int, LineState]:
        """The state of each line: what :func:`replay` would return now (a copy)."""
        return dict(self._state)

    def __repr__(self) -> str:
        status = "closed" if self._fd is None else f"open, {len(self._state)} lines"
        return f"<Journal {str(self._directory)!r} {status}>"

    # ----------------------------------------------------------------- appending

    async def intent(
        self, line: int, request_fingerprint: str, key: str | None = None
    ) -> LineState:
        """Record that ``line`` is about to be submitted (with idempotency ``key``). Call it
        *before* the POST."""
        record = {"event": "intent", "line": line, "fingerprint": request_fingerprint}
        return await self._line_event(record if key is None else {**record, "key": key})

    async def created(self, line: int, task_id: str, credits: float | None = None) -> LineState:
        """Record that the service created ``task_id`` for ``line``, reserving ``credits``."""
        return await self._line_event(
            {"event": "created", "line": line, "task_id": task_id, "credits": credits}
        )

    async def finished(
        self,
        line: int,
        task_id: str,
        status: str,
        error: str | Mapping[str, Any] | None = None,
        url: str | None = None,
        *,
        credits: float | None = None,
        retry: bool = False,
    ) -> LineState:
        """Record that ``task_id`` ended with ``status`` (and ``error`` or result ``url``);
        ``credits``: a completed task's final charge; ``retry``: the line is created again."""
        record = finished_record(line, task_id, status, error, url, credits=credits, retry=retry)
        return await self._line_event(record)

    async def downloaded(
        self,
        line: int,
        task_id: str,
        path: str | os.PathLike[str],
        size: int,
        sha256: str,
    ) -> LineState:
        """Record that the result of ``task_id`` is stored at ``path``."""
        return await self._line_event(
            {
                "event": "downloaded",
                "line": line,
                "task_id": task_id,
                "path": os.fspath(path),
                "size": size,
                "sha256": sha256,
            }
        )

    async def download_failed(self, line: int, task_id: str, reason: str) -> LineState:
        """Record that the result of ``task_id`` could not be downloaded, and why."""
        return await self._line_event(
            {"event": "download_failed", "line": line, "task_id": task_id, "reason": reason}
        )

    async def unknown(self, line: int, reason: str) -> LineState:
        """Record that the outcome of ``line``'s submission is unknown, and why."""
        return await self._line_event({"event": "unknown", "line": line, "reason": reason})

    async def _line_event(self, record: dict[str, Any]) -> LineState:
        state = await self.append(record)
        assert state is not None  # a known event with a line always folds
        return state

    async def append(self, record: Mapping[str, Any]) -> LineState | None:
        """Write ``record`` as one line, durably, and fold it into :attr:`state`.

        ``record`` needs an ``"event"`` (str); ``"line"`` (int) is needed for it to count in
        the line states (records without one, e.g. a run header, are kept but not folded).
        ``"ts"`` is added when missing. Returns the line's new state, or ``None``.

        Raises:
            ValueError: a key would carry a credential (``api_key``, ``authorization``, ...),
                or the record is malformed.
            TypeError: a value cannot be written as JSON.
            JournalError: the journal is closed or the write failed.
        """
        data, checked = encode(record)
        async with self._write_lock:
            if self._fd is None:
                raise JournalError(f"journal on {self._directory} is closed")
            # Not cancellable once started: the record is either fully written or not at all.
            await anyio.to_thread.run_sync(self._write_sync, self._fd, data)
            return fold(self._state, checked)

    def _write_sync(self, fd: int, data: bytes) -> None:
        if self._broken:
            raise JournalError(f"journal {self.path} is unusable after a failed write")
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            try:  # take back a partial record so the next one starts on a clean line
                os.ftruncate(fd, self._size)
                os.fsync(fd)
            except OSError:
                self._broken = True
            raise JournalError(f"cannot write to journal {self.path}: {exc}") from exc
        self._size += len(data)


async def key_seed(journal: Journal) -> str:
    """The seed of the job's idempotency keys: journaled once (a ``job`` record) and the same
    for every later run on the directory, so a rerun derives the same key for an attempt."""
    if journal._seed is None:
        seed = secrets.token_hex(16)
        await journal.append({"event": "job", "key_seed": seed})
        journal._seed = seed
    return journal._seed
