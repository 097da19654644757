"""The batch ledger in SQL: the journal's interface, kept in SQLite (default) or PostgreSQL.

:class:`LedgerStore` has the append methods of :class:`~evolink_async.batch.journal.Journal`
(``intent``, ``created``, ``finished``, ``downloaded``, ``download_failed``, ``unknown``,
``append``) and its :attr:`state`, so a run writes through either. Each record is folded by
:func:`~evolink_async.batch.records.fold` (the same meaning as a journal line), stored in
``events``, and the line's folded state upserted into ``lines``, in one transaction that is
durable before the call returns. Appends made while a transaction is in flight are committed
together in the next one (group commit: the intents of several lines share one transaction).

The embedded default is ``<dir>/ledger.sqlite`` (WAL); ``url="postgresql://..."`` puts the
ledger in PostgreSQL, where several machines can share a job. A directory that holds an old
``journal.jsonl`` is imported into the ledger once, when the ledger first opens there.
The API key is never written (records are checked and redacted as the journal does).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs

from ..errors import JournalError
from ._dirlock import lock_directory, unlock
from ._ledger_ops import line_params, meta_op, record_ops, state_from_row
from ._schema import SCHEMA_VERSION, ddl, migrations
from ._sql import Cursor, SqlEngine, SqliteEngine, open_engine
from .records import JOURNAL_FILENAME, LineState, encode, finished_record, fold, parse

__all__ = [
    "DEFAULT_JOB",
    "LEDGER_FILENAME",
    "LedgerConfig",
    "LedgerStore",
    "add_requests",
    "line_params",
    "read_requests",
    "record_ops",
    "redact_url",
    "reload_lines",
]

LEDGER_FILENAME = "ledger.sqlite"
DEFAULT_JOB = "default"

_SCHEMA_EXISTS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'",
    "postgresql": "SELECT 1 WHERE to_regclass('leases') IS NOT NULL",
}
_LOAD = (
    "SELECT line, phase, task_id, attempts, status, error, url, path, size, sha256, credits, "
    "fingerprint, idempotency_key FROM lines WHERE job = ? AND phase <> 'pending'"
)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


async def _migrate(cur: Cursor, dialect: str) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (a new database is created at it)."""
    rows = await cur.execute("SELECT value FROM ledger_meta WHERE key = 'schema_version'")
    version = int(rows[0][0]) if rows else SCHEMA_VERSION
    for stmt in migrations(dialect, version):
        await cur.execute(stmt)
    await cur.execute(*meta_op("schema_version", max(version, SCHEMA_VERSION)))


@attrs.define(eq=False)
class _Waiter:
    record: dict[str, Any]
    journal_records: int | None = None
    done: bool = False
    state: LineState | None = None
    error: BaseException | None = None


class LedgerStore:
    """A job's ledger: the journal's append interface over an SQL database.

    Open it with ``await LedgerStore.aopen(directory)`` (SQLite in ``<directory>``), or
    ``await LedgerStore.aopen(directory, url="postgresql://...", job="name")``; close it with
    ``await aclose()`` or ``async with``. With a directory, its lock is held while open.
    """

    __slots__ = ("_directory", "_engine", "_job", "_lock_fd", "_pending", "_place", "_state",
                 "_write_lock")  # fmt: skip

    def __init__(self, engine: SqlEngine, job: str, directory: Path | None) -> None:
        self._engine: SqlEngine | None = engine
        self._job = job
        self._directory = directory
        #: where this store's directory is (host, absolute path): recorded with each clip
        self._place = (
            None if directory is None else (socket.gethostname(), str(directory.absolute()))
        )
        self._lock_fd: int | None = None
        self._state: dict[int, LineState] = {}
        self._pending: list[_Waiter] = []
        self._write_lock = anyio.Lock()

    @classmethod
    async def aopen(
        cls,
        directory: str | os.PathLike[str] | None,
        *,
        url: str | None = None,
        job: str = DEFAULT_JOB,
        lock: bool = True,
    ) -> LedgerStore:
        """Open (creating if needed) ``job``'s ledger; lock ``directory`` if one is given
        (``lock=False``: the caller holds the lock already, e.g. the directory's journal).

        Raises:
            JournalLockedError: another run holds the directory.
            JournalError: the ledger cannot be opened or read.
        """
        folder = None if directory is None else Path(directory)
        if folder is None and url is None:
            raise ValueError("a ledger needs a directory or a url")
        lock_fd = None
        if folder is not None and lock:
            lock_fd = await anyio.to_thread.run_sync(lock_directory, folder)
        try:
            assert folder is not None or url is not None
            target = url if url is not None else str(folder / LEDGER_FILENAME)  # type: ignore[operator]
            engine = await open_engine(target)
        except BaseException:
            if lock_fd is not None:
                unlock(lock_fd)
            raise
        store = cls(engine, job, folder)
        store._lock_fd = lock_fd
        try:
            await store._setup()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.aclose()
            raise
        return store

    async def _setup(self) -> None:
        engine = self._require()
        job = self._job

        async def body(cur: Cursor) -> None:
            if engine.dialect == "postgresql":  # concurrent creators wait for the first
                await cur.execute("SELECT pg_advisory_xact_lock(4242015)")
            # DDL only when missing: even IF NOT EXISTS takes table locks that would deadlock
            # with other workers' writes
            if not await cur.execute(_SCHEMA_EXISTS[engine.dialect]):
                for stmt in ddl(engine.dialect):
                    await cur.execute(stmt)
            await _migrate(cur, engine.dialect)
            await cur.execute(
                "INSERT INTO jobs (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (job, _now()),
            )

        await engine.transaction(body)
        await _import_journal(self)
        rows = await engine.query(_LOAD, (job,))
        self._state = {int(row[0]): state_from_row(row) for row in rows}

    def _journal_key(self) -> str:
        assert self._directory is not None
        return f"journal:{self._job}:{self._directory.resolve() / JOURNAL_FILENAME}"

    # ----------------------------------------------------------------- close

    def _require(self) -> SqlEngine:
        if self._engine is None:
            raise JournalError("the ledger is closed")
        return self._engine

    async def aclose(self) -> None:
        """Wait for appends in progress, close the database and release the directory."""
        async with self._write_lock:
            engine, self._engine = self._engine, None
            lock_fd, self._lock_fd = self._lock_fd, None
            try:
                if engine is not None:
                    await engine.aclose()
            finally:
                if lock_fd is not None:
                    unlock(lock_fd)

    async def __aenter__(self) -> LedgerStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    # ----------------------------------------------------------------- state

    @property
    def job(self) -> str:
        return self._job

    @property
    def engine(self) -> SqlEngine:
        """The open database connection (raises :class:`JournalError` once closed)."""
        return self._require()

    @property
    def directory(self) -> Path | None:
        return self._directory

    @property
    def path(self) -> Path | None:
        """The SQLite file, when the ledger is the directory's embedded one."""
        if self._directory is None or not isinstance(self._engine, SqliteEngine):
            return None
        return self._directory / LEDGER_FILENAME

    @property
    def closed(self) -> bool:
        return self._engine is None

    @property
    def state(self) -> dict[int, LineState]:
        """The state of each line that has records (a copy)."""
        return dict(self._state)

    def __repr__(self) -> str:
        kind = "closed" if self._engine is None else self._engine.dialect
        return f"<LedgerStore job={self._job!r} {kind}, {len(self._state)} lines>"

    # ----------------------------------------------------------------- appending

    async def intent(
        self, line: int, request_fingerprint: str, key: str | None = None
    ) -> LineState:
        """Record that ``line`` is about to be submitted (durable before the POST)."""
        record: dict[str, Any] = {
            "event": "intent",
            "line": line,
            "fingerprint": request_fingerprint,
        }
        if key is not None:
            record["key"] = key
        return await self._line_event(record)

    async def created(self, line: int, task_id: str, credits: float | None = None) -> LineState:
        """Record that the service created ``task_id`` for ``line``, reserving ``credits``."""
        record = {"event": "created", "line": line, "task_id": task_id, "credits": credits}
        return await self._line_event(record)

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
        self, line: int, task_id: str, path: str | os.PathLike[str], size: int, sha256: str
    ) -> LineState:
        """Record that the result of ``task_id`` is stored at ``path``."""
        record = {"event": "downloaded", "line": line, "task_id": task_id, "path": os.fspath(path)}
        return await self._line_event({**record, "size": size, "sha256": sha256})

    async def download_failed(self, line: int, task_id: str, reason: str) -> LineState:
        """Record that the result of ``task_id`` could not be downloaded, and why."""
        record = {"event": "download_failed", "line": line, "task_id": task_id, "reason": reason}
        return await self._line_event(record)

    async def unknown(self, line: int, reason: str) -> LineState:
        """Record that the outcome of ``line``'s submission is unknown, and why."""
        return await self._line_event({"event": "unknown", "line": line, "reason": reason})

    async def _line_event(self, record: dict[str, Any]) -> LineState:
        state = await self.append(record)
        assert state is not None  # a known event with a line always folds
        return state

    async def append(
        self, record: Mapping[str, Any], *, journal_records: int | None = None
    ) -> LineState | None:
        """Store ``record`` durably and fold it into :attr:`state` (as ``Journal.append``).

        ``journal_records``: the record is also the journal's record number
        ``journal_records`` (the journal was written first); stored in the same transaction,
        so a crash between the two writes is repaired by the next open.

        Raises:
            ValueError: a key would carry a credential, or the record is malformed.
            TypeError: a value cannot be written as JSON.
            JournalError: the ledger is closed or the write failed.
        """
        _, checked = encode(record)
        waiter = _Waiter(checked, journal_records)
        self._pending.append(waiter)
        try:
            async with self._write_lock:
                if not waiter.done:
                    batch, self._pending = self._pending, []
                    with anyio.CancelScope(shield=True):
                        await self._commit(batch)
        except anyio.get_cancelled_exc_class():
            if not waiter.done and waiter in self._pending:
                self._pending.remove(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.state

    async def _commit(self, batch: list[_Waiter]) -> None:
        """Write ``batch`` in one transaction, then fold it in; on failure every waiter fails."""
        staged = dict(self._state)
        ops: list[Any] = []
        states: list[LineState | None] = []
        for waiter in batch:
            state = fold(staged, waiter.record)
            states.append(state)
            ops.extend(record_ops(self._job, waiter.record, state, self._place))
        mirrored = [w.journal_records for w in batch if w.journal_records is not None]
        if mirrored:
            ops.append(meta_op(self._journal_key(), max(mirrored)))
        try:
            await self._require().run(ops)
        except Exception as exc:
            for waiter in batch:
                waiter.error, waiter.done = exc, True
            return
        self._state = staged
        for waiter, state in zip(batch, states, strict=True):
            waiter.state, waiter.done = state, True


async def _import_journal(store: LedgerStore) -> None:
    """Import the records of ``<dir>/journal.jsonl`` the ledger does not hold yet.

    The first time, that is the whole journal of an older release; afterwards, only a
    tail written by a run that crashed between its journal write and its ledger commit
    (or by an older release run on the directory since).
    """
    if store._directory is None:
        return
    path = store._directory / JOURNAL_FILENAME
    if not await anyio.to_thread.run_sync(path.exists):
        return
    data = await anyio.to_thread.run_sync(path.read_bytes)
    records = parse(data, path).records
    key = store._journal_key()
    job = store._job

    async def body(cur: Cursor) -> None:
        done = await cur.execute("SELECT value FROM ledger_meta WHERE key = ?", (key,))
        start = int(done[0][0]) if done else 0
        if start >= len(records):
            return
        state: dict[int, LineState] = {}
        for row in await cur.execute(_LOAD, (job,)):
            state[int(row[0])] = state_from_row(row)
        for raw in records[start:]:
            _, checked = encode(raw)
            for sql, params in record_ops(job, checked, fold(state, checked), store._place):
                await cur.execute(sql, params)
        await cur.execute(*meta_op(key, len(records)))

    await store.engine.transaction(body)


async def reload_lines(store: LedgerStore, lines: list[int]) -> None:
    """Read ``lines``' state from the database again (another worker may have written
    them since this store opened: lines it claims now)."""
    if not lines:
        return
    marks = ", ".join("?" for _ in lines)
    async with store._write_lock:  # not between a commit's copy of the state and its swap
        rows = await store.engine.query(f"{_LOAD} AND line IN ({marks})", (store._job, *lines))
        for n in lines:
            store._state.pop(n, None)
        store._state.update((int(row[0]), state_from_row(row)) for row in rows)


async def add_requests(
    store: LedgerStore,
    requests: Mapping[int, Mapping[str, Any]],
    prices: Mapping[int, float] | None = None,
) -> None:
    """Store each line's request and price (lines already known keep theirs), as ``pending``."""
    ts = _now()
    sql = (
        "INSERT INTO lines (job, line, request, price, phase, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job, line) DO NOTHING"
    )
    price = prices or {}
    ops = [
        (
            sql,
            (store.job, n, json.dumps(dict(req), ensure_ascii=False), price.get(n), "pending", ts),
        )
        for n, req in sorted(requests.items())
    ]
    await store.engine.run(ops)


async def read_requests(store: LedgerStore) -> dict[int, dict[str, Any]]:
    """The request stored for each line of the store's job."""
    rows = await store.engine.query(
        "SELECT line, request FROM lines WHERE job = ? AND request IS NOT NULL", (store.job,)
    )
    return {int(line): json.loads(text) for line, text in rows}


@attrs.frozen
class LedgerConfig:
    """Where a batch keeps its ledger: ``url`` None for ``<out>/ledger.sqlite``, or
    ``postgresql://...``; ``job`` names the job in it."""

    url: str | None = None
    job: str = DEFAULT_JOB
    #: the output directory's journal, already open, lent to each run instead of opened by
    #: it (a worker's groups share one directory this way; see LedgerJournal.lend)
    journal: object | None = attrs.field(default=None, eq=False)

    def __repr__(self) -> str:  # a URL may carry a password
        return f"LedgerConfig(url={redact_url(self.url)!r}, job={self.job!r})"


def redact_url(url: str | None) -> str | None:
    """``url`` with any password replaced by ``***``."""
    if url is None:
        return None
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
