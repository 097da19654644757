"""The ledger's two SQL engines behind one small interface: SQLite (embedded) and PostgreSQL.

Statements are written once, with ``?`` placeholders; the PostgreSQL engine turns them into
psycopg's ``%s``. Every write goes through :meth:`SqlEngine.transaction`: one transaction,
committed durably before it returns (SQLite: WAL with ``synchronous=FULL``; PostgreSQL: its
default ``synchronous_commit=on``).

Why these drivers:

* SQLite: the standard library's ``sqlite3`` on one connection, each call run in a worker
  thread (``anyio.to_thread``) under one ``anyio.Lock``: no dependency, nothing blocks the
  event loop, and a call in progress is never abandoned half-way (a worker-thread call is not
  cancellable). aiosqlite would add a dependency for the same thread hop.
* PostgreSQL: psycopg 3's ``AsyncConnection`` (the optional extra ``postgres``): it speaks
  asyncio natively, is the maintained successor of psycopg2 with the same SQL conventions,
  and its ``binary`` wheel needs no compiler. asyncpg is faster on bulk reads, which the
  ledger does not do; its ``$1`` placeholders would make the shared statements differ more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from ..errors import JournalError

__all__ = ["Cursor", "PostgresEngine", "SqlEngine", "SqliteEngine", "open_engine"]

Row = tuple[Any, ...]
Op = tuple[str, Sequence[Any]]


class Cursor(Protocol):
    """What a transaction's body gets: run a statement, read its rows."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class SqlEngine(Protocol):
    """One connection to a ledger database."""

    dialect: str

    async def transaction(self, body: Callable[[Cursor], Awaitable[Any]]) -> Any:
        """Run ``body`` in one transaction; commit (durably) if it returns, roll back if not."""
        ...

    async def run(self, ops: Sequence[Op]) -> None:
        """Run ``ops`` in one transaction."""
        ...

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one read and return its rows."""
        ...

    async def aclose(self) -> None: ...


class _SqliteCursor:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        conn = self._conn
        return await anyio.to_thread.run_sync(lambda: conn.execute(sql, tuple(params)).fetchall())


class SqliteEngine:
    """SQLite on one connection, used by one worker thread at a time."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = anyio.Lock()

    @classmethod
    async def connect(cls, path: str | Path) -> SqliteEngine:
        def connect_sync() -> sqlite3.Connection:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
                conn.execute("PRAGMA busy_timeout=30000")
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            return cls(await anyio.to_thread.run_sync(connect_sync))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the ledger {path}: {exc}") from exc

    async def transaction(self, body: Callable[[Cursor], Awaitable[Any]]) -> Any:
        conn = self._conn
        async with self._lock:
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(conn.execute, "BEGIN IMMEDIATE")
                    try:
                        result = await body(_SqliteCursor(conn))
                    except BaseException:
                        await anyio.to_thread.run_sync(conn.execute, "ROLLBACK")
                        raise
                    await anyio.to_thread.run_sync(conn.execute, "COMMIT")
                except sqlite3.Error as exc:
                    raise JournalError(f"the ledger cannot be written: {exc}") from exc
                return result

    async def run(self, ops: Sequence[Op]) -> None:
        def run_sync() -> None:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in ops:
                    conn.execute(sql, tuple(params))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        async with self._lock:
            try:
                await anyio.to_thread.run_sync(run_sync)
            except sqlite3.Error as exc:
                raise JournalError(f"the ledger cannot be written: {exc}") from exc

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._lock:
            try:
                return await _SqliteCursor(self._conn).execute(sql, params)
            except sqlite3.Error as exc:
                raise JournalError(f"the ledger cannot be read: {exc}") from exc

    async def aclose(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._conn.close)


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgCursor:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(_pg(sql), tuple(params))
        if cur.description is None:
            return []
        rows: list[Row] = await cur.fetchall()
        return rows


class PostgresEngine:
    """PostgreSQL through one psycopg 3 ``AsyncConnection``."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = anyio.Lock()

    @classmethod
    async def connect(cls, url: str) -> PostgresEngine:
        try:
            import psycopg  # noqa: PLC0415 - an optional extra, needed only for PostgreSQL
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise JournalError(
                "a PostgreSQL ledger needs psycopg: pip install 'evolink-async[postgres]'"
            ) from exc
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise JournalError(f"cannot connect to the ledger database: {exc}") from None
        return cls(conn)

    async def transaction(self, body: Callable[[Cursor], Awaitable[Any]]) -> Any:
        import psycopg  # noqa: PLC0415

        async with self._lock:
            with anyio.CancelScope(shield=True):
                try:
                    async with self._conn.transaction():
                        return await body(_PgCursor(self._conn))
                except psycopg.Error as exc:
                    raise JournalError(f"the ledger cannot be written: {exc}") from None

    async def run(self, ops: Sequence[Op]) -> None:
        async def body(cur: Cursor) -> None:
            for sql, params in ops:
                await cur.execute(sql, params)

        await self.transaction(body)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        import psycopg  # noqa: PLC0415

        async with self._lock:
            try:
                return await _PgCursor(self._conn).execute(sql, params)
            except psycopg.Error as exc:
                raise JournalError(f"the ledger cannot be read: {exc}") from None

    async def aclose(self) -> None:
        async with self._lock:
            await self._conn.close()


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


async def open_engine(url: str) -> SqlEngine:
    """``postgresql://...`` → PostgreSQL; ``sqlite:///path`` or a plain path → SQLite."""
    if is_postgres_url(url):
        return await PostgresEngine.connect(url)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return await SqliteEngine.connect(path)
