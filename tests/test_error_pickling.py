"""Every exception of the SDK crosses a process boundary intact (a worker pool, a result
queue): pickled and loaded, it is the same class with the same message and attributes."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import evolink_async.errors as errors_module
from evolink_async.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    DailyQuotaExceededError,
    DecodeError,
    DownloadError,
    DownloadIntegrityError,
    DownloadTooLargeError,
    EvolinkError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    InvalidRequestError,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    KeyQuotaExceededError,
    NotFoundError,
    PaidOutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    ServiceUnreachableError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskStalledError,
    TaskTimeoutError,
)
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
INSTANCES: list[EvolinkError] = [
    EvolinkError("plain"),
    InvalidRequestError("duration", 7, "must be 4, 8 or 12"),
    DecodeError("not JSON", excerpt="<html>"),
    APIError(418, "teapot", code="x", request_id="req-1"),
    BadRequestError(400, "bad", param="prompt"),
    AuthenticationError(401, "no key", type="authentication_error"),
    InsufficientCreditsError(402, "no credits", details={"balance": 1.5, "estimate": 7.0}),
    KeyQuotaExceededError(402, "key spent", details={"limit": 10, "used": 10}),
    DailyQuotaExceededError(402, "today spent", details={"reset_at": "2026-12-04T00:00:00"}),
    PermissionDeniedError(403, "no"),
    NotFoundError(404, "gone"),
    RequestTooLargeError(413, "big"),
    RateLimitError(429, "slow down", retry_after=2.5),
    ServerError(503, "down", retry_after=1.0),
    PaidOutcomeUnknownError(502, "unknown", retry_after=None),
    IdempotencyConflictError(409, "key reused", code="idempotency_conflict"),
    APIConnectionError("reset", maybe_created=True),
    APITimeoutError("timed out", maybe_created=True),
    ServiceUnreachableError("127.0.0.1", 9, "connection refused", maybe_created=False),
    TaskError("generic"),
    TaskFailedError(FAILED),
    TaskCancelledError(CANCELLED),
    TaskStalledError(ODD, 600.0),
    TaskTimeoutError("task-unified-4-abcdefgh", 1800.0, None),
    BudgetExceededError("over budget"),
    DownloadError("https://cdn.example/a.mp4", "HTTP 500", 500),
    DownloadTooLargeError("https://cdn.example/a.mp4", "over 10 bytes"),
    DownloadIntegrityError("https://cdn.example/a.mp4", "size mismatch"),
    JournalError("cannot use"),
    JournalLockedError("/tmp/out", 1234),
    JournalCorruptError("/tmp/out/journal.jsonl", 3, "not JSON"),
]


def _state(error: BaseException) -> tuple[Any, ...]:
    return (type(error), str(error), error.args, vars(error))


def test_the_table_has_every_exception_class_of_the_sdk() -> None:
    classes = {
        cls
        for _, cls in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(cls, EvolinkError)
    }
    assert classes == {type(error) for error in INSTANCES}


@pytest.mark.parametrize("error", INSTANCES, ids=lambda error: type(error).__name__)
def test_every_exception_pickles_to_the_same_class_message_and_attributes(
    error: EvolinkError,
) -> None:
    loaded = pickle.loads(pickle.dumps(error))
    assert _state(loaded) == _state(error)
