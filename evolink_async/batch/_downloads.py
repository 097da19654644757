"""Downloading the clips of completed lines into the output directory."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import DownloadError, EvolinkError, JournalError
from ._events import Recorder, error_info
from .input import video_filename
from .journal import LineState
from .ledger import LedgerLine

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["Downloader", "check_files"]


def check_files(out_dir: Path, checks: Sequence[tuple[int, LineState]]) -> dict[int, bool]:
    """For each journaled download: is the file there with its size? (blocking)"""
    ok: dict[int, bool] = {}
    for line, s in checks:
        try:
            size = (out_dir / Path(s.path or "").name).stat().st_size
        except OSError:
            ok[line] = False
        else:
            ok[line] = s.size is not None and size == s.size
    return ok


class Downloader:
    """Fetches completed lines' clips, at most ``concurrency`` at once; a stopped job
    (``stopping()`` true) starts no new download."""

    def __init__(
        self,
        client: EvolinkClient,
        out_dir: Path,
        recorder: Recorder,
        concurrency: int,
        stopping: Callable[[], bool],
    ) -> None:
        self.client = client
        self.out_dir = out_dir
        self.rec = recorder
        self.slots = anyio.CapacityLimiter(concurrency)
        self.stopping = stopping

    async def download(self, line: int) -> None:
        """Fetch ``line``'s clip and journal it (or why it failed)."""
        rec, ln = self.rec, self.rec.ledger[line]
        assert ln.task_id is not None
        task_id = ln.task_id
        async with self.slots:
            if self.stopping():
                return
            name = video_filename(line, task_id)
            try:
                result = await self._fetch(ln, name)
            except DownloadError as exc:
                rec.writer.post(
                    functools.partial(rec.journal.download_failed, line, task_id, str(exc))
                )
                rec.ledger.download_failed(line, error_info(exc))
                return
            try:
                await rec.writer.write(
                    functools.partial(
                        rec.journal.downloaded, line, task_id, name, result.size, result.sha256
                    )
                )
            except JournalError:
                return  # the job is aborting; the line stays "downloading" (interrupted)
            rec.ledger.downloaded(line, name)

    async def _fetch(self, ln: LedgerLine, name: str) -> Any:
        assert ln.url is not None
        assert ln.task_id is not None
        dest = self.out_dir / name
        try:
            return await self.client.download(ln.url, dest)
        except DownloadError as exc:
            if exc.status not in (401, 403, 404, 410):
                raise
            # The link may have expired: ask the service for a fresh one, once.
            try:
                task = await self.client.get_task(ln.task_id)
            except EvolinkError:
                raise exc from None
            fresh = task.video_url
            if fresh is None or fresh == ln.url:
                raise
            self.rec.ledger.set_url(ln.line, fresh)
            return await self.client.download(fresh, dest)
