"""A run's journal kept in the SQL ledger too: what a batch writes through by default.

:class:`LedgerJournal` is a :class:`~evolink_async.batch.journal.Journal` (so the job, its
writer and its recorder are unchanged) whose every record, once durable in
``journal.jsonl``, is committed to the ledger (:class:`~evolink_async.batch.store.LedgerStore`:
``<dir>/ledger.sqlite`` by default, or ``ledger_url``) with the journal's record count, in
one transaction. Both are durable before an append returns, so an ``intent`` is in both
before its POST.

Why keep the journal file: its format is public (tools and the current release read it, and a
directory must stay resumable by it), and writing it first makes the pair crash-safe without
two-phase commit: a crash between the two writes leaves the journal one record ahead, and
the next open imports that tail into the ledger (an old release's journal is imported the
same way, once). The ledger is what ``job status``/``export`` read, and what several
machines can share.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from .journal import Journal, LineState
from .records import encode
from .store import LedgerConfig, LedgerStore, reload_lines

__all__ = ["LedgerJournal"]


class LedgerJournal(Journal):
    """The directory's journal, mirrored into an SQL ledger (see the module docstring)."""

    __slots__ = ("_count", "_lent", "_mirror_lock", "_store")

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__(directory)
        self._store: LedgerStore | None = None
        self._count = 0
        self._lent = 0
        self._mirror_lock = anyio.Lock()

    @classmethod
    async def open_ledger(
        cls,
        directory: str | os.PathLike[str],
        config: LedgerConfig = LedgerConfig(),  # noqa: B008 - frozen, so shared safely
    ) -> LedgerJournal:
        """Open the directory's journal (taking its lock), then the ledger, importing the
        journal records it lacks. ``config.url`` None: ``<directory>/ledger.sqlite``.
        ``config.journal`` (an open LedgerJournal of ``directory``): that one, lent."""
        if config.journal is not None:
            lent = config.journal
            if not isinstance(lent, LedgerJournal) or lent.directory != Path(directory):
                raise ValueError("config.journal must be an open LedgerJournal of the directory")
            return lent.lend()
        journal = await cls.aopen(directory)
        assert isinstance(journal, LedgerJournal)
        try:
            store = await LedgerStore.aopen(directory, url=config.url, job=config.job, lock=False)
            journal._store = store
            journal._count = await _journal_count(journal)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await journal.aclose()
            raise
        return journal

    @property
    def store(self) -> LedgerStore:
        """The SQL ledger (raises once closed)."""
        if self._store is None:
            raise RuntimeError("the ledger journal is not open")
        return self._store

    @property
    def state(self) -> dict[int, LineState]:
        """The ledger's state of each line (the journal's, plus what the ledger holds beyond
        it, e.g. lines another machine worked on)."""
        if self._store is None:
            return super().state
        return self._store.state

    async def append(self, record: Mapping[str, Any]) -> LineState | None:
        """Write ``record`` to the journal, then to the ledger; both durable on return."""
        _, checked = encode(record)  # one timestamp for both
        async with self._mirror_lock:
            state = await super().append(checked)
            store = self._store
            if store is None:
                return state
            self._count += 1
            with anyio.CancelScope(shield=True):
                await store.append(checked, journal_records=self._count)
        return state

    async def reload(self, lines: list[int]) -> None:
        """Read ``lines``' state from the ledger again (see :func:`~.store.reload_lines`)."""
        await reload_lines(self.store, lines)

    def lend(self) -> LedgerJournal:
        """Lend this open journal to a run: the run's :meth:`aclose` gives it back (the
        journal stays open for its owner and the other borrowers)."""
        if self._store is None:
            raise RuntimeError("the ledger journal is not open")
        self._lent += 1
        return self

    async def aclose(self) -> None:
        """Close the ledger, then the journal (releasing the directory); a borrower's call
        only gives it back (see :meth:`lend`)."""
        if self._lent > 0:
            self._lent -= 1
            return
        async with self._mirror_lock:
            store, self._store = self._store, None
        try:
            if store is not None:
                with anyio.CancelScope(shield=True):
                    await store.aclose()
        finally:
            await super().aclose()


async def _journal_count(journal: Journal) -> int:
    def count() -> int:
        try:
            data = journal.path.read_bytes()
        except FileNotFoundError:
            return 0
        return sum(1 for raw in data.split(b"\n") if raw.strip())

    return await anyio.to_thread.run_sync(count)
