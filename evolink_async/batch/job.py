"""The batch job: plan (from the journal) → the dispatcher → downloads → the manifest.

See :mod:`evolink_async.batch` for what a run does and how it resumes. The job keeps no line
state of its own: every fact lives in the :class:`~.ledger.Ledger`; the job turns the
dispatcher's events and outcomes into ledger transitions and journal records.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import anyio
import anyio.abc
import anyio.to_thread

from ..dispatcher import Batch, Item
from ..errors import InsufficientCreditsError, JournalError, ServiceUnreachableError
from ..limits import CreditBudget
from ._credits import check_credits, quota_stop
from ._downloads import Downloader, check_files
from ._events import Recorder
from ._linekeys import LineKeys
from ._uploads import upload_all, with_uploads
from ._writer import JournalWriter
from .input import BatchLine, PromptFormat, duplicate_lines, load_prompts
from .journal import Journal, LineState, key_seed
from .ledger import BatchProgress, Ledger, LedgerLine
from .ledger_journal import LedgerJournal
from .manifest import (
    BatchSummary,
    ManifestEntry,
    remove_stale_temps,
    render,
    summarize,
    write_manifest,
)
from .plan import Plan, check_fingerprints, plan
from .store import LedgerConfig

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["BatchJob", "run_batch"]

#: seconds a stopping job waits for creates already sent to be answered
_STOP_GRACE = 30.0


class BatchJob:
    """One run of a batch over an output directory; see :mod:`evolink_async.batch`.

    ``await job.run()`` returns a :class:`BatchSummary`; ``job.progress()`` gives live counts;
    ``job.stop()`` (safe to call from a signal handler on the loop) stops admitting and makes
    ``run`` return soon with the journal and manifest written.

    Options: ``budget`` (credits for the whole batch, earlier runs included), ``max_attempts``
    (creates per line, retryable task failures included), ``task_timeout`` (seconds per task;
    default the client's ``task_timeout``), ``retry_unknown``, ``retry_failed`` (submit the
    lines an earlier run left ``failed`` again, as new attempts), ``download`` (False: keep URLs
    only), ``download_concurrency`` (files fetched at once), ``check_credits`` (read the
    credits first; raise ``CreditsShortError`` before sending anything when they cannot pay
    for the lines to submit at the known prices), ``ledger`` (:class:`LedgerConfig`).

    A 402 on a create (balance, key limit, daily limit) stops new creates; the tasks in flight
    finish; the lines not sent are ``skipped`` with the reason, and a later run sends them.
    """

    def __init__(
        self,
        client: EvolinkClient,
        lines: Iterable[BatchLine],
        out_dir: str | os.PathLike[str],
        *,
        budget: float | None = None,
        max_attempts: int = 3,
        task_timeout: float | None = None,
        retry_unknown: bool = False,
        retry_failed: bool = False,
        download: bool = True,
        download_concurrency: int = 4,
        check_credits: bool = False,
        ledger: LedgerConfig = LedgerConfig(),  # noqa: B008 - frozen, so shared safely
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if download_concurrency < 1:
            raise ValueError(f"download_concurrency must be at least 1, got {download_concurrency}")
        if budget is not None and budget < 0:
            raise ValueError(f"budget must not be negative, got {budget}")
        self.client = client
        self.out_dir = Path(out_dir)
        self.budget = budget
        self.max_attempts = max_attempts
        self.task_timeout = task_timeout
        self.retry_unknown, self.retry_failed = retry_unknown, retry_failed
        self.download = download
        self.check_credits, self.ledger = check_credits, ledger
        self._uploaded: dict[str, str] = {}  # placeholder URL → uploaded URL
        self._quota: tuple[str, str] | None = None  # (code, reason) once a 402 stopped creates
        self._entries = {entry.line: entry for entry in lines}
        price = client.prices.price
        self._ledger = Ledger(
            LedgerLine(e.line, e.prompt, price(e.request.model, e.request.duration) or 0.0)
            for e in self._entries.values()
        )
        self._download_concurrency = download_concurrency
        self._rec: Recorder | None = None
        self._downloads: Downloader | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._stop_requested: anyio.Event | None = None
        self._stopping = False
        self._halted = False
        self._interrupted = False
        self._aborted: str | None = None
        #: the service could not be reached before any create got through (raised by run)
        self._unreachable: ServiceUnreachableError | None = None
        self._started = False
        self._ready = False
        self._start_time = time.monotonic()
        self._requests_at_start = 0

    def __repr__(self) -> str:
        p = self.progress()
        return f"<BatchJob {str(self.out_dir)!r} done={p.done}/{p.total} stopping={p.stopping}>"

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop admitting; ``run`` returns once creates on the wire are answered."""
        self._interrupted = True
        self._request_stop()

    def _request_stop(self) -> None:
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    def _quota_stop(self, exc: InsufficientCreditsError) -> None:
        if self._quota is None:
            self._quota = quota_stop(exc)

    def _no_new_creates(self) -> bool:
        return self._stopping or self._quota is not None

    def _abort(self, reason: str) -> None:
        if self._aborted is None and not self._interrupted:
            self._aborted = reason
        self._request_stop()

    def progress(self) -> BatchProgress:
        """Live counts, credits and requests of this run."""
        requests = self.client.transport.requests - self._requests_at_start if self._started else 0
        outage = self._rec.outage if self._rec is not None else None
        return self._ledger.progress(
            outage=outage.reason if outage is not None else None,
            outage_retry=outage.retry_in if outage is not None else 0.0,
            requests=requests,
            rate_limited=self._rec.rate_limited if self._rec is not None else 0,
            retries=self._rec.retries if self._rec is not None else 0,
            budget=self.budget,
            paused=self.client.limits.rate.pause_left,
            elapsed=time.monotonic() - self._start_time,
            stopping=self._stopping,
        )

    # -- the run -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the directory is locked, the journal read and the lines planned: every
        error of the input and the output directory has been raised by then."""
        return self._ready

    async def run(self, *, on_ready: Callable[[], object] | None = None) -> BatchSummary:
        """Run the job once. Raises ``JournalLockedError`` when another job holds the
        directory, :class:`BatchInputError` when the journal holds other requests for these
        lines (nothing is submitted then), and ``JournalError`` if the journal fails.
        ``on_ready`` is called when the job is :attr:`ready`, before anything is sent."""
        if self._started:
            raise RuntimeError("a BatchJob runs once")
        self._started = True
        self._start_time = time.monotonic()
        self._requests_at_start = self.client.transport.requests
        self._stop_requested = anyio.Event()
        if self._stopping:
            self._stop_requested.set()
        journal = await LedgerJournal.open_ledger(self.out_dir, self.ledger)
        try:
            todo = await self._plan(journal.state)
            if self.check_credits:
                await check_credits(self.client, self._ledger, todo.submit)
            files = [self._entries[n].uploads for n in todo.submit if self._entries[n].uploads]
            self._uploaded = await upload_all(self.client, files)  # each file once
            self._ready = True
            if on_ready is not None:
                on_ready()
            writer = self._wire(journal, await _line_keys(self, journal, todo))
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(writer.run)
                    try:
                        await self._execute(todo)
                    finally:
                        writer.close()
            finally:
                with anyio.CancelScope(shield=True):
                    entries = _manifest_entries(self)
                    manifest = await anyio.to_thread.run_sync(write_manifest, self.out_dir, entries)
        finally:
            with anyio.CancelScope(shield=True):
                await journal.aclose()
        if writer.error is not None:
            err = writer.error
            raise err if isinstance(err, JournalError) else JournalError(str(err))
        if self._unreachable is not None:  # nothing was created: the rerun sends every line
            raise self._unreachable
        return summarize(
            entries,
            manifest,
            requests=self.client.transport.requests - self._requests_at_start,
            elapsed=time.monotonic() - self._start_time,
            download=self.download,
            interrupted=self._interrupted,
            aborted=self._aborted,
            duplicates=duplicate_lines(self._entries.values()),
        )

    def _wire(self, journal: Journal, keys: LineKeys) -> JournalWriter:
        """Build the run's journal writer, event recorder and downloader."""
        writer = JournalWriter(lambda exc: self._abort(f"the journal cannot be written: {exc}"))
        self._rec = Recorder(
            self._ledger,
            journal,
            writer,
            download=self.download,
            on_download=self._start_download,
            on_abort=self._abort,
            stopping=self._no_new_creates,
            fingerprints={n: e.fingerprint for n, e in self._entries.items()},
            on_quota=self._quota_stop,
            keys=keys,
        )
        self._downloads = Downloader(
            self.client, self.out_dir, self._rec, self._download_concurrency, lambda: self._stopping
        )
        return writer

    async def _plan(self, state: dict[int, LineState]) -> Plan:
        """Sort lines by what the journal says: submit, re-attach, download, or done."""
        check_fingerprints(self._entries.values(), state, self.out_dir)
        run = anyio.to_thread.run_sync
        if self.ledger.journal is None:  # a lent journal: its owner cleaned the directory
            await run(remove_stale_temps, self.out_dir)
        checks = [
            (n, s) for n, s in state.items() if n in self._entries and s.phase == "downloaded"
        ]
        present = await run(check_files, self.out_dir, checks) if checks else {}
        flags = {"retry_unknown": self.retry_unknown, "retry_failed": self.retry_failed}
        keys = self.client.api.idempotency
        return plan(self._ledger, state, present, download=self.download, keys=keys, **flags)

    async def _execute(self, todo: Plan) -> None:
        async with anyio.create_task_group() as watch:
            watch.start_soon(self._watch_stop)
            try:
                await self._passes(todo)
            finally:
                watch.cancel_scope.cancel()

    async def _passes(self, todo: Plan) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._stopping and self._halted:  # stopped before it began
                    tg.cancel_scope.cancel()
                for line in todo.fetch:
                    self._start_download(line)
                if todo.reattach or todo.submit:
                    tg.start_soon(self._dispatch, list(todo.reattach), list(todo.submit))
        finally:
            self._tg = None

    async def _watch_stop(self) -> None:
        """On stop: let creates on the wire be answered, then end the run's work."""
        assert self._stop_requested is not None
        assert self._rec is not None
        await self._stop_requested.wait()
        with anyio.move_on_after(_STOP_GRACE):
            # (a create waiting out an outage is queued again: no wait for it)
            while self._ledger.count("posting"):
                await self._rec.changed.wait()
        self._halted = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- submitting and re-attaching through the dispatcher -----------------------------

    async def _dispatch(self, reattach: list[int], submit: list[int]) -> None:
        """Send the lines through ONE dispatcher batch and follow them until each ends: the
        tasks earlier runs created (``reattach``) as ``Attach`` items, then new submissions.
        Both are admitted through the same slots and retried through the same path."""
        if self._stopping:
            return
        assert self._rec is not None
        rec = self._rec
        lines = reattach + submit
        attach = set(reattach)

        def source() -> Iterator[Item]:
            for line in lines:
                if self._no_new_creates():
                    return
                request = with_uploads(self._entries[line].request, self._uploaded)
                yield rec.attach(line, request) if line in attach else request

        left = self._ledger.budget_left(self.budget)
        # the batch's budget counts what re-attached tasks hold as spent; if one fails and the
        # line is submitted again, the recorder gives its credits back to this budget
        budget = CreditBudget(left) if left is not None else None
        rec.refund = budget.grow if budget is not None else None
        batch: Batch = self.client.dispatcher.generate_many(
            source(),
            budget=budget,
            max_attempts=self.max_attempts,
            timeout=self.task_timeout,
            on_event=functools.partial(rec.on_event, lines),
            before_create=functools.partial(rec.before_create, lines),
        )
        try:
            # the recorder took each outcome from its Completed/Failed/BudgetSkipped event,
            # the moment it happened; iterating only drives the batch to its end
            async for _ in batch:
                pass
        except ServiceUnreachableError as exc:  # before any create got through: stop now
            self._unreachable = exc
            self._abort(str(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await batch.aclose()

    # -- downloading ---------------------------------------------------------------------

    def _start_download(self, line: int) -> None:
        if self._tg is not None and self._downloads is not None:
            self._tg.start_soon(self._downloads.download, line)


def _manifest_entries(job: BatchJob) -> list[ManifestEntry]:
    """The manifest of the job's lines as they are now."""
    if job._quota is not None and not job._interrupted and job._aborted is None:
        return [render(ln, *job._quota) for ln in job._ledger]
    why = "interrupted" if job._interrupted else "aborted"
    reason = (
        "the batch was interrupted"
        if job._interrupted
        else f"the batch stopped: {job._aborted or 'internal error'}"
    )
    return [render(ln, why, reason) for ln in job._ledger]


async def _line_keys(job: BatchJob, journal: Journal, todo: Plan) -> LineKeys:
    """The idempotency keys of this run's creates: derived from the job's seed (journaled
    once), the lines of ``todo.resend`` with their journaled key; none when the client sends
    no keys."""
    seed = None
    if job.client.api.idempotency and todo.submit:
        seed = await key_seed(journal)
    fingerprints = {n: e.fingerprint for n, e in job._entries.items()}
    return LineKeys(seed, fingerprints, lambda n: job._ledger[n].attempts, todo.resend)


async def run_batch(
    client: EvolinkClient,
    source: str | os.PathLike[str] | IO[str] | Sequence[BatchLine],
    out_dir: str | os.PathLike[str],
    *,
    fmt: PromptFormat = "auto",
    model: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
    budget: float | None = None,
    max_attempts: int = 3,
    task_timeout: float | None = None,
    retry_unknown: bool = False,
    retry_failed: bool = False,
    download: bool = True,
    download_concurrency: int = 4,
    check_credits: bool = False,
) -> BatchSummary:
    """Load and validate ``source`` (a prompts file, ``"-"``, a text stream, or
    :class:`BatchLine` objects), then run a :class:`BatchJob` on ``out_dir``."""
    lines: list[BatchLine]
    if isinstance(source, (list, tuple)):
        lines = list(cast("Sequence[BatchLine]", source))
    else:
        lines = await anyio.to_thread.run_sync(
            functools.partial(
                load_prompts,
                cast("str | os.PathLike[str] | IO[str]", source),
                fmt=fmt,
                model=model,
                duration=duration,
                aspect_ratio=aspect_ratio,
            )
        )
    job = BatchJob(
        client,
        lines,
        out_dir,
        budget=budget,
        max_attempts=max_attempts,
        task_timeout=task_timeout,
        retry_unknown=retry_unknown,
        retry_failed=retry_failed,
        download=download,
        download_concurrency=download_concurrency,
        check_credits=check_credits,
    )
    return await job.run()
