"""What the dispatcher tells: an ``Outcome`` per request, live events, ``BatchStats``, and the
items ``generate_many`` takes (requests, and ``Attach`` for a task an earlier run created)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import attrs

from ..errors import EvolinkError, InvalidRequestError, ServiceUnreachableError
from ..models import Task, TaskStatus, VideoRequest

__all__ = [
    "Attach",
    "BatchStats",
    "BeforeCreate",
    "BudgetSkipped",
    "Completed",
    "Event",
    "Failed",
    "Item",
    "Outcome",
    "OutcomeStatus",
    "Paused",
    "Progress",
    "RateLimited",
    "RequestLike",
    "Resumed",
    "Retrying",
    "Submitted",
    "as_request",
]

OutcomeStatus = Literal["completed", "failed", "cancelled", "unknown", "skipped"]
RequestLike = VideoRequest | Mapping[str, Any] | str
#: ``await before_create(index, request, attempt)`` runs just before each create is sent
#: (after admission); an exception from it fails that attempt without sending anything. It
#: may return the idempotency key the create is to carry (None: the API picks one).
BeforeCreate = Callable[[int, VideoRequest, int], Awaitable[str | None]]


@attrs.frozen
class Attach:
    """An item of ``generate_many``: follow task ``task_id``, created by an earlier run for
    ``request`` after ``attempts`` attempts, instead of creating one.

    It is admitted through the same concurrency slots as a request but reserves no credits (the
    earlier run counted them), sends no create and calls no ``before_create``; the poller tracks
    it by id and it ends in an ordinary ``Outcome`` (``credits`` 0.0). A retryable task failure
    with ``attempts < max_attempts`` is resubmitted through the ordinary create path, attempt
    numbers going on from ``attempts``.
    """

    task_id: str
    request: VideoRequest
    attempts: int = 1


#: what ``generate_many`` pulls: a request (or what ``as_request`` makes one of) or an Attach
Item = RequestLike | Attach


def as_request(item: RequestLike) -> VideoRequest:
    """A ``VideoRequest`` from a request, a dict with the API's field names, or a prompt."""
    if isinstance(item, VideoRequest):
        return item
    if isinstance(item, str):
        return VideoRequest(prompt=item)
    if isinstance(item, Mapping):
        return VideoRequest.from_json(item)
    raise InvalidRequestError("request", item, "must be a VideoRequest, a mapping or a prompt")


@attrs.frozen
class Outcome:
    """What became of one request.

    ``status``: ``completed`` (``task`` has the video URL), ``failed`` (``error`` says why,
    e.g. a ``TaskFailedError`` with the task's code), ``cancelled`` (the task was cancelled at
    the service; ``error`` is a ``TaskCancelledError``; never retried), ``unknown`` (the create
    may or may not have been taken: not resubmitted; ``error`` has ``maybe_created=True``), or
    ``skipped`` (never sent: the budget could not pay for it, or the request was invalid).

    ``index`` is the request's 0-based position in the input (``prompts[outcome.index]`` is its
    prompt); for ``client.submit`` it counts the client's submissions from 0. A batch job's
    manifest carries the prompt file's line number separately (``line``, 1-based).
    """

    index: int
    request: VideoRequest | None
    status: OutcomeStatus
    task: Task | None = None
    error: EvolinkError | None = None
    attempts: int = 0
    credits: float = 0.0
    task_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def task_id(self) -> str | None:
        return self.task_ids[-1] if self.task_ids else None

    @property
    def video_url(self) -> str | None:
        return self.task.video_url if self.task is not None else None


# -- events -----------------------------------------------------------------------------------


@attrs.frozen
class Submitted:
    """A task was created for request ``index`` (attempt ``attempt``)."""

    index: int
    task_id: str
    attempt: int
    credits_reserved: float | None


@attrs.frozen
class Progress:
    """A poll saw the task; ``status``/``progress`` as the service reported them. With
    ``estimated=True`` no read happened: ``progress`` is the SDK's estimate between reads of a
    ``submit``-ted task (from ``estimated_time`` and the rate of progress), above everything
    told before and below 100; a later read may say less (``TaskHandle.current_progress()``
    keeps showing the higher value)."""

    index: int
    task_id: str
    status: TaskStatus
    progress: int | None
    estimated: bool = False


@attrs.frozen
class Retrying:
    """Request ``index`` is submitted again after ``reason`` (a retryable task failure or a
    create the service refused); ``task`` is the failed task, if a task failed."""

    index: int
    attempt: int
    reason: str
    task_id: str | None = None
    task: Task | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class RateLimited:
    """The service answered 429; every request pauses ``retry_after`` seconds."""

    retry_after: float | None
    effective_rate: float
    concurrency: bool


@attrs.frozen
class Paused:
    """The service cannot be reached (after creates succeeded): creates wait, none is sent
    (and no new intent is written) until a create gets through; the next try in ``retry_in``
    seconds. ``reason`` says why (``"connection refused"``), ``where`` names host:port."""

    reason: str
    where: str
    retry_in: float
    error: ServiceUnreachableError = attrs.field(eq=False, repr=False)


@attrs.frozen
class Resumed:
    """A create got through again after ``paused_for`` seconds of creates paused."""

    paused_for: float


@attrs.frozen
class BudgetSkipped:
    """Request ``index`` was not sent: the budget cannot pay ``needed`` credits."""

    index: int
    needed: float | None
    reason: str


@attrs.frozen
class Completed:
    outcome: Outcome


@attrs.frozen
class Failed:
    """A request ended ``failed``, ``cancelled`` or ``unknown`` (see ``outcome.status``)."""

    outcome: Outcome


Event = (
    Submitted
    | Progress
    | Retrying
    | RateLimited
    | Paused
    | Resumed
    | BudgetSkipped
    | Completed
    | Failed
)


@attrs.define
class BatchStats:
    """Live counters of a batch (``generate_many``) or of all ``submit`` calls."""

    queued: int = 0
    submitting: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    cancelled: int = 0
    retries: int = 0
    creates: int = 0
    rate_limited: int = 0
    credits_spent: float = 0.0
    requests: int = 0
    effective_rate: float = 0.0
    credits_reserved: float = 0.0
    #: ids of tasks created and not finished (still running on the service)
    in_flight_task_ids: list[str] = attrs.field(factory=list)

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.unknown + self.skipped + self.cancelled
