"""From the dispatcher's events and outcomes to ledger transitions and journal records."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence

import anyio

from ..dispatcher import (
    Attach,
    BudgetSkipped,
    Completed,
    Event,
    Failed,
    Outcome,
    Paused,
    Progress,
    RateLimited,
    Resumed,
    Retrying,
    Submitted,
)
from ..errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BudgetExceededError,
    DecodeError,
    DownloadError,
    EvolinkError,
    InsufficientCreditsError,
    JournalError,
    NotFoundError,
    ServiceUnreachableError,
    TaskFailedError,
    TaskStalledError,
    TaskTimeoutError,
)
from ..limits.charges import final_charge
from ..models import TaskStatus, VideoRequest
from ._linekeys import LineKeys
from ._writer import JournalWriter, Op
from .journal import Journal
from .ledger import Ledger

__all__ = ["OutageView", "Recorder", "Stopped", "error_info"]


class Stopped(EvolinkError):
    """Raised by the create hook once the job stops admitting: nothing is sent."""


def error_info(exc: BaseException) -> dict[str, str]:
    """``{"code", "message"}`` for the manifest."""
    if isinstance(exc, TaskFailedError):
        err = exc.task.error
        code = str(err.code) if err is not None and err.code is not None else "task_failed"
        message = err.message if err is not None and err.message else str(exc)
        return {"code": code, "message": message}
    if isinstance(exc, TaskTimeoutError):
        return {
            "code": "task_timeout",
            "message": f"{exc}; it may still finish: run the same command again to re-attach it",
        }
    if isinstance(exc, TaskStalledError):
        return {
            "code": "task_stalled",
            "message": f"{exc}; run the same command again to re-attach it",
        }
    if isinstance(exc, BudgetExceededError):
        return {"code": "budget_exceeded", "message": str(exc)}
    if isinstance(exc, APIError) and getattr(exc, "maybe_created", False):  # a 5xx to a create
        return {"code": "maybe_created", "message": str(exc)}
    if isinstance(exc, APIError):
        api_code = exc.code if exc.code is not None else (exc.type or f"http_{exc.status}")
        info = {"code": str(api_code), "message": str(exc)}
        if exc.request_id:
            info["request_id"] = exc.request_id
        if exc.suggestion:
            info["suggestion"] = exc.suggestion
        return info
    if isinstance(exc, APIConnectionError):
        code = "maybe_created" if exc.maybe_created else "connection_error"
        return {"code": code, "message": str(exc)}
    if isinstance(exc, DecodeError):
        return {"code": "maybe_created", "message": str(exc)}
    if isinstance(exc, DownloadError):
        return {"code": "download_failed", "message": str(exc)}
    return {"code": type(exc).__name__, "message": str(exc)}


class OutageView:
    """Whether creates are paused because the service cannot be reached (from the
    dispatcher's ``Paused`` and ``Resumed``), for a display."""

    __slots__ = ("paused", "retry_at")

    def __init__(self) -> None:
        self.paused: Paused | None = None
        self.retry_at = 0.0  # time.monotonic() of the next try

    def take(self, event: Paused | Resumed) -> None:
        if isinstance(event, Paused):
            self.paused, self.retry_at = event, time.monotonic() + event.retry_in
        else:
            self.paused = None

    @property
    def reason(self) -> str | None:
        """``service unreachable (connection refused)``; None when not paused."""
        return f"service unreachable ({self.paused.reason})" if self.paused else None

    @property
    def retry_in(self) -> float:
        """Seconds to the next try (0 when not paused)."""
        return max(0.0, self.retry_at - time.monotonic()) if self.paused else 0.0


class Recorder:
    """Turns the dispatcher's events and outcomes into ledger transitions and journal records.

    ``on_download`` is called with a line whose clip is to be fetched now; ``on_abort`` with
    the reason the job must stop admitting (the service refused the key or the credits);
    ``on_quota`` (when given) instead with a 402 (balance, key or daily limit): the job stops
    creating but lets the tasks in flight finish;
    ``stopping()`` says whether the job stopped admitting; ``fingerprints`` are the lines'
    request fingerprints, for their intents; ``keys`` gives each attempt's idempotency key
    (journaled in its intent, then sent with the create).

    A task an earlier run created is re-attached through the dispatcher (:meth:`attach`): it
    keeps the credits journaled for it when it completes, and a retryable failure journals
    ``finished failed`` for it before the line is submitted again.
    """

    def __init__(
        self,
        ledger: Ledger,
        journal: Journal,
        writer: JournalWriter,
        *,
        download: bool,
        on_download: Callable[[int], None],
        on_abort: Callable[[str], None],
        stopping: Callable[[], bool],
        fingerprints: Mapping[int, str],
        on_quota: Callable[[InsufficientCreditsError], None] | None = None,
        keys: LineKeys | None = None,
    ) -> None:
        self.ledger = ledger
        self.journal = journal
        self.writer = writer
        self.download = download
        self.on_download = on_download
        self.on_abort = on_abort
        self.on_quota = on_quota
        self.stopping = stopping
        self.fingerprints = fingerprints
        self.keys = keys
        self.rate_limited = 0
        #: whether creates are paused because the service cannot be reached
        self.outage = OutageView()
        #: attempts made again (Retrying events)
        self.retries = 0
        self.changed = anyio.Event()
        #: ids of the tasks of earlier runs that this run re-attached, until they end
        self.attached: set[str] = set()
        #: gives credits back to the batch's budget (what a failed re-attached task held)
        self.refund: Callable[[float], None] | None = None

    def attach(self, line: int, request: VideoRequest) -> Attach:
        """The dispatcher's item that re-attaches the task an earlier run created for ``line``
        (``request``, the line's)."""
        ln = self.ledger[line]
        assert ln.task_id is not None
        self.attached.add(ln.task_id)
        return Attach(ln.task_id, request, attempts=ln.attempts)

    def _post(self, op: Op) -> None:
        self.writer.post(op)

    def touched(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def before_create(
        self, lines: Sequence[int], index: int, request: VideoRequest, attempt: int
    ) -> str | None:
        """The dispatcher's hook: the intent (with the attempt's idempotency key) is on disk
        before the create is sent; returns the key."""
        line = lines[index]
        if self.stopping():
            raise Stopped("not submitted: the batch was stopped")
        key = self.keys.key(line, attempt) if self.keys is not None else None
        self.ledger.post(line)
        try:
            await self.writer.write(
                functools.partial(self.journal.intent, line, self.fingerprints[line], key)
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.ledger.intent_failed(line)
            else:  # cancelled: the intent is written anyway
                self.ledger.intent_cancelled(line)
            self.touched()
            raise
        self.ledger.intent_written(line)
        return key

    def on_event(self, lines: Sequence[int], event: Event) -> None:
        """The dispatcher's ``on_event``: ``lines`` maps its 0-based index to line numbers."""
        if isinstance(event, RateLimited):
            self.rate_limited += 1
            return
        if isinstance(event, (Paused, Resumed)):
            self.outage.take(event)
            self.touched()
            return
        if isinstance(event, (Completed, Failed)):
            self.on_outcome(lines[event.outcome.index], event.outcome)
            return
        line = lines[event.index]
        if isinstance(event, Submitted):
            self.ledger.submitted(line, event.task_id, event.credits_reserved)
            self._post(
                functools.partial(self.journal.created, line, event.task_id, event.credits_reserved)
            )
        elif isinstance(event, Progress):
            if event.status is TaskStatus.PROCESSING:
                self.ledger.processing(line)
        elif isinstance(event, Retrying):
            self.retries += 1
            if event.task_id is not None and event.task_id in self.attached:
                self._attached_failed(line, event)
            else:
                self.ledger.retrying(line)
        elif isinstance(event, BudgetSkipped):
            self.ledger.budget_skipped(line, event.reason)
        self.touched()

    def on_outcome(self, line: int, outcome: Outcome) -> None:
        """Record how a line ended, from its ``Completed`` or ``Failed`` event (a repeat
        would be ignored)."""
        ln = self.ledger[line]
        if ln.final or ln.state == "downloading":
            return
        err = outcome.error
        if outcome.task_id is not None:
            self.ledger.task_known(line, outcome.task_id)
        if outcome.status == "completed" and outcome.task is not None:
            # a re-attached task keeps the credits journaled for it (its outcome says 0.0)
            attached = outcome.task_id in self.attached
            credits = None if attached else outcome.credits
            charge = final_charge(outcome.task)  # journaled: what the job was charged
            self.completed(line, outcome.task.video_url, credits=credits, charge=charge)
        elif outcome.status == "skipped":
            default = {"code": "skipped", "message": ""}
            self.ledger.skipped(line, error_info(err) if err is not None else default)
        elif outcome.status == "cancelled" and outcome.task_id is not None:
            message = error_info(err)["message"] if err is not None else "cancelled"
            info = {"code": "request_cancelled", "message": message}
            journal = functools.partial(
                self.journal.finished, line, outcome.task_id, "cancelled", info
            )
            self._post(journal)
            self.ledger.cancelled(line, info)
        elif outcome.status == "unknown":
            reason = str(err) if err is not None else "the create's outcome is unknown"
            self._post(functools.partial(self.journal.unknown, line, reason))
            self.ledger.unknown(line, {"code": "maybe_created", "message": reason})
        elif isinstance(err, (Stopped, JournalError)):
            self.ledger.stopped(line)  # nothing was sent for this attempt
        else:
            # No Submitted event for the latest attempt: its create itself failed.
            self.failed(line, err, from_create=not ln.sent)
        self.touched()

    def completed(
        self,
        line: int,
        url: str | None,
        *,
        credits: float | None = None,
        charge: float | None = None,
    ) -> None:
        ln = self.ledger[line]
        assert ln.task_id is not None
        finished = self.journal.finished
        self._post(
            functools.partial(finished, line, ln.task_id, "completed", None, url, credits=charge)
        )
        if self.ledger.completed(line, ln.task_id, url, credits=credits, download=self.download):
            self.on_download(line)

    def failed(self, line: int, err: EvolinkError | None, *, from_create: bool) -> None:
        task_id = self.ledger[line].task_id
        info = error_info(err) if err is not None else {"code": "failed", "message": ""}
        refused = isinstance(err, APIError) or (
            isinstance(err, APIConnectionError) and not err.maybe_created
        )
        if not from_create and isinstance(err, (TaskFailedError, NotFoundError)) and task_id:
            code = "task_not_found" if isinstance(err, NotFoundError) else info["code"]
            info = {"code": code, "message": info["message"]}
            self._post(functools.partial(self.journal.finished, line, task_id, "failed", info))
        elif from_create and refused:
            # The service answered the create with an error (or was never reached):
            # nothing was created, so the next run may submit the line again.
            record = {
                "event": "finished",
                "line": line,
                "task_id": None,
                "status": "rejected",
                "error": info,
            }
            self._post(functools.partial(self.journal.append, record))
            if isinstance(err, ServiceUnreachableError):  # never sent: the line waits again
                self.ledger.stopped(line)
                return
            if isinstance(err, InsufficientCreditsError) and self.on_quota is not None:
                # out of credits or over a key limit: no new creates, the line is skipped
                # (nothing was created: the next run submits it again)
                self.on_quota(err)
                self.ledger.skipped(line, info)
                return
            if isinstance(err, (AuthenticationError, InsufficientCreditsError)):
                self.on_abort(f"the service refused a create: {err}")
        # A task timeout (or an error that ended tracking) leaves ``created`` in the journal:
        # the next run re-attaches the task.
        self.ledger.failed(line, info)

    def _attached_failed(self, line: int, event: Retrying) -> None:
        """A re-attached task failed retryably and the dispatcher submits the line again."""
        assert event.task_id is not None
        assert event.task is not None
        self.attached.discard(event.task_id)
        exc = TaskFailedError(event.task)
        if self.stopping():  # the line ends here; its new create will not be sent
            self.failed(line, exc, from_create=False)
        else:
            self.retry_later(line, exc)

    def retry_later(self, line: int, exc: TaskFailedError) -> None:
        """A re-attached task failed retryably: journal it and queue the line again."""
        ln = self.ledger[line]
        task_id, held = ln.task_id, ln.held
        assert task_id is not None
        self._post(
            functools.partial(
                self.journal.finished, line, task_id, "failed", error_info(exc), retry=True
            )
        )
        if self.ledger.requeued(line) and held > 0 and self.refund is not None:
            self.refund(held)
