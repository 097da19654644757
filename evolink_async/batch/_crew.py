"""A worker's groups in flight on its output directory (see :mod:`evolink_async.batch.worker`).

The worker keeps several claimed groups running at once, each a
:class:`~evolink_async.batch.job.BatchJob` on the same ``--out``: the directory's journal is
opened once (it holds the directory's lock for the worker's life) and lent to every group
(``LedgerConfig.journal``), stale temporary files are removed once before any group starts,
and the idempotency keys' seed is journaled once. When a group ends, the worker rewrites
``manifest.jsonl`` with every line it finished so far (a group's own run writes only its
lines; the worker's write follows it, so the file lists them all when the worker ends), and
the lines an earlier worker on the directory completed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from ..models import VideoRequest
from .claims import Claim
from .input import BatchLine
from .job import BatchJob
from .journal import key_seed
from .ledger_journal import LedgerJournal
from .manifest import MANIFEST_FILENAME, ManifestEntry, remove_stale_temps, write_manifest
from .store import LedgerConfig

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["Crew", "WorkerReport"]


@attrs.define
class WorkerReport:
    """What one worker did: groups run, lines it worked on, lines it took over."""

    groups: int = 0
    lines: list[int] = attrs.Factory(list)
    taken_over: list[int] = attrs.Factory(list)


class Crew:
    """The groups a worker runs at once on ``out_dir``: open it with :meth:`opened`."""

    def __init__(
        self,
        client: EvolinkClient,
        out_dir: str | os.PathLike[str],
        config: LedgerConfig,
        job_options: Mapping[str, Any],
        report: WorkerReport,
    ) -> None:
        self.client = client
        self.out_dir = Path(out_dir)
        self.config = config
        self.job_options = dict(job_options)
        self.report = report
        #: every line this worker started a group for
        self.seen: set[int] = set()
        #: the groups running now, by number
        self.running: dict[int, BatchJob] = {}
        self._shared = config
        self._journal: LedgerJournal | None = None
        self._entries: dict[int, ManifestEntry] = {}
        self._ended = anyio.Event()
        self._manifest_lock = anyio.Lock()

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Crew]:
        """Open the directory's journal (locking it) for the groups to share; close it at the
        end (the groups have ended by then)."""
        journal = await LedgerJournal.open_ledger(self.out_dir, self.config)
        try:
            await anyio.to_thread.run_sync(remove_stale_temps, self.out_dir)
            earlier = await anyio.to_thread.run_sync(_completed_entries, self.out_dir)
            self._entries.update((e.line, e) for e in earlier)
            if self.client.api.idempotency:
                await key_seed(journal)  # once, before groups share the journal
            self._shared = attrs.evolve(self.config, journal=journal)
            self._journal = journal
            yield self
        finally:
            self._shared, self._journal = self.config, None
            with anyio.CancelScope(shield=True):
                await journal.aclose()

    def open_lines(self) -> int:
        """Lines of the running groups not yet ended, nor downloading (each waits for, or
        holds, a task)."""
        total = 0
        for job in self.running.values():
            p = job.progress()
            total += p.total - p.done - p.downloading
        return total

    async def changed(self, at_most: float) -> None:
        """Return when a group ends, or after ``at_most`` seconds."""
        with anyio.move_on_after(at_most):
            await self._ended.wait()

    async def start(self, tg: anyio.abc.TaskGroup, claims: list[Claim]) -> None:
        """Run ``claims`` as one more group, in ``tg``: planned from what the ledger says of
        them now (another worker may have written them since this one opened it)."""
        assert self._journal is not None, "start() needs opened()"
        await self._journal.reload([c.line for c in claims])
        number = self.report.groups
        self.report.groups += 1
        self.seen.update(c.line for c in claims)
        self.report.lines.extend(c.line for c in claims)
        self.report.taken_over.extend(c.line for c in claims if c.taken_over)
        lines = [BatchLine(c.line, VideoRequest.from_json(c.request or {})) for c in claims]
        job = BatchJob(self.client, lines, self.out_dir, ledger=self._shared, **self.job_options)
        self.running[number] = job
        tg.start_soon(self._run, number, job)

    async def _run(self, number: int, job: BatchJob) -> None:
        try:
            summary = await job.run()
        finally:
            del self.running[number]
            self._ended.set()
            self._ended = anyio.Event()
        self._entries.update((e.line, e) for e in summary.entries)
        async with self._manifest_lock:
            entries = [self._entries[n] for n in sorted(self._entries)]
            await anyio.to_thread.run_sync(write_manifest, self.out_dir, entries)


def _completed_entries(out_dir: Path) -> list[ManifestEntry]:
    """The completed lines an earlier run of a worker on ``out_dir`` listed in its manifest
    (their clips are here): kept in the manifest of this run. Unreadable lines are skipped."""
    try:
        text = (out_dir / MANIFEST_FILENAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for row in text.splitlines():
        try:
            entry = ManifestEntry(**json.loads(row))
        except (ValueError, TypeError):
            continue
        if entry.status == "completed" and isinstance(entry.line, int):
            found.append(entry)
    return found
