"""Every exception of the SDK crosses a process boundary intact (a worker pool, a result
queue): pickled and loaded, it is the same class with the same message and attributes."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

from evolink_async import errors as e
from evolink_async.models import Task, TaskErrorInfo, TaskStatus

FAILED = Task(
    "task-unified-1-abcdefgh",
    TaskStatus.FAILED,
    "failed",
    error=TaskErrorInfo(code="content_policy_violation", message="no"),
)
CANCELLED = Task("task-unified-2-abcdefgh", TaskStatus.CANCELLED, "cancelled")
ODD = Task("task-unified-3-abcdefgh", TaskStatus.UNKNOWN, "queued_for_review")

#: one instance of every exception class, made as the SDK makes it
INSTANCES: list[e.EvolinkError] = [
    e.EvolinkError("plain"),
    e.InvalidRequestError("duration", 7, "must be 4, 8 or 12"),
    e.DecodeError("not JSON", excerpt="<html>"),
    e.APIError(418, "teapot", code="x", request_id="req-1"),
    e.BadRequestError(400, "bad", param="prompt"),
    e.AuthenticationError(401, "no key", type="authentication_error"),
    e.InsufficientCreditsError(402, "no credits", details={"balance": 1.5, "estimate": 7.0}),
    e.KeyQuotaExceededError(402, "key spent", details={"limit": 10, "used": 10}),
    e.DailyQuotaExceededError(402, "today spent", details={"reset_at": "2026-12-04T00:00:00"}),
    e.PermissionDeniedError(403, "no"),
    e.NotFoundError(404, "gone"),
    e.RequestTooLargeError(413, "big"),
    e.RateLimitError(429, "slow down", retry_after=2.5),
    e.ServerError(503, "down", retry_after=1.0),
    e.PaidOutcomeUnknownError(502, "unknown", retry_after=None),
    e.IdempotencyConflictError(409, "key reused", code="idempotency_conflict"),
    e.APIConnectionError("reset", maybe_created=True),
    e.APITimeoutError("timed out", maybe_created=True),
    e.ServiceUnreachableError("127.0.0.1", 9, "connection refused", maybe_created=False),
    e.TaskError("generic"),
    e.TaskFailedError(FAILED),
    e.TaskCancelledError(CANCELLED),
    e.TaskStalledError(ODD, 600.0),
    e.TaskTimeoutError("task-unified-4-abcdefgh", 1800.0, None),
    e.BudgetExceededError("over budget"),
    e.DownloadError("https://cdn.example/a.mp4", "HTTP 500", 500),
    e.DownloadTooLargeError("https://cdn.example/a.mp4", "over 10 bytes"),
    e.DownloadIntegrityError("https://cdn.example/a.mp4", "size mismatch"),
    e.JournalError("cannot use"),
    e.JournalLockedError("/tmp/out", 1234),
    e.JournalCorruptError("/tmp/out/journal.jsonl", 3, "not JSON"),
]


def _state(error: BaseException) -> tuple[Any, ...]:
    return (type(error), str(error), error.args, vars(error))


def test_the_table_has_every_exception_class_of_the_sdk() -> None:
    classes = {
        cls for _, cls in inspect.getmembers(e, inspect.isclass) if issubclass(cls, e.EvolinkError)
    }
    assert classes == {type(error) for error in INSTANCES}


@pytest.mark.parametrize("error", INSTANCES, ids=lambda error: type(error).__name__)
def test_every_exception_pickles_to_the_same_class_message_and_attributes(
    error: e.EvolinkError,
) -> None:
    loaded = pickle.loads(pickle.dumps(error))
    assert _state(loaded) == _state(error)
