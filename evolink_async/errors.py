"""Every exception the SDK raises, in one tree.

::

    EvolinkError                       base of everything below
    ├── InvalidRequestError            a request field broke a documented rule (local, nothing sent)
    ├── DecodeError                    a 2xx answer that is not JSON or not of the expected shape
    ├── APIError                       the service answered with a non-2xx status
    │   ├── BadRequestError            400  invalid_request_error
    │   ├── AuthenticationError        401  authentication_error
    │   ├── InsufficientCreditsError   402  the account's balance (.balance, .estimate)
    │   │   ├── KeyQuotaExceededError  402  this key's total limit (.limit, .used, .remaining)
    │   │   └── DailyQuotaExceededError 402 this key's daily limit (.reset_at, .reset_timezone)
    │   ├── PermissionDeniedError      403  permission_error
    │   ├── NotFoundError              404  not_found_error (model or task)
    │   ├── RequestTooLargeError       413  request_too_large_error
    │   ├── RateLimitError             429  rate_limit_error (.retry_after)
    │   ├── ServerError                5xx  (.retry_after, .maybe_created on a create)
    │   │   └── PaidOutcomeUnknownError code paid_outcome_unknown: the key's create is unresolved
    │   └── IdempotencyConflictError   code idempotency_conflict: the key was used for another body
    ├── APIConnectionError             no answer: refused, reset, TLS, DNS (.maybe_created)
    │   ├── APITimeoutError            no answer in time (.maybe_created)
    │   └── ServiceUnreachableError    no connection could be opened (.host, .port, .cause)
    ├── TaskError                      a generation task did not produce a video
    │   ├── TaskFailedError            the task ended ``failed`` (.task, .code, .retryable)
    │   │   └── TaskCancelledError     the task was cancelled (code ``request_cancelled``)
    │   ├── TaskTimeoutError           the task did not finish before its deadline (.task_id)
    │   └── TaskStalledError           an unknown status stayed unchanged too long (.status)
    ├── BudgetExceededError            the credit budget cannot pay for a request
    ├── DownloadError                  a result could not be downloaded (.url, .reason, .status)
    │   ├── DownloadTooLargeError      over the size cap or longer than its Content-Length
    │   └── DownloadIntegrityError     size or checksum mismatch
    └── JournalError                   the batch journal cannot be used
        ├── JournalLockedError         another batch holds the output directory
        └── JournalCorruptError        an unreadable line in the middle of the journal

``maybe_created=True``: a create may have been taken (and billed); only its own key resends it.

No exception message contains the API key.
"""

from __future__ import annotations

import copyreg
import datetime
import math
import os
import zoneinfo
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._redact import redact_url

if TYPE_CHECKING:
    from .models import Task

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "DailyQuotaExceededError",
    "DecodeError",
    "DownloadError",
    "DownloadIntegrityError",
    "DownloadTooLargeError",
    "EvolinkError",
    "IdempotencyConflictError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "KeyQuotaExceededError",
    "NotFoundError",
    "PaidOutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServerError",
    "ServiceUnreachableError",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskStalledError",
    "TaskTimeoutError",
    "quota_error_class",
    "redact_url",
    "shorten",
]


class EvolinkError(Exception):
    """Base class of every exception raised by evolink-async. Every one pickles (to another
    process, a result queue), its attributes kept as they are."""

    def __reduce__(self) -> tuple[Any, ...]:
        # the default rebuilds with ``cls(*args)``, which most subclasses' signatures refuse
        return (copyreg.__newobj__, (type(self), *self.args), self.__dict__)  # type: ignore[attr-defined]


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (ending in ``...``) for a message; a longer
    string is told by its length only (``<str of 6000 characters>``)."""
    if isinstance(value, str) and len(value) > limit:
        return f"<str of {len(value)} characters>"
    text = repr(value)
    if len(text) > limit:
        return text[: limit - 3] + "..."
    return text


class InvalidRequestError(EvolinkError, ValueError):
    """A request field breaks a documented rule; raised locally before any HTTP request.

    ``field`` names the field (``"duration"``, ``"image_urls[0]"``, ``"extra.quality"``),
    ``value`` is the offending value and ``rule`` says what is allowed.
    """

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}={shorten(value)}: {rule}")


class DecodeError(EvolinkError):
    """The service answered 2xx, but the body is not JSON or not of the expected shape."""

    def __init__(self, message: str, *, excerpt: str = "") -> None:
        self.excerpt = excerpt
        super().__init__(f"{message}: {excerpt!r}" if excerpt else message)


class APIError(EvolinkError):
    """The service answered with a non-2xx HTTP status.

    Attributes mirror the documented error body ``{"error": {"code", "message", "type",
    "param"}}``; for an HTML or empty body, ``message`` holds a short excerpt. ``request_id``
    (the body's ``error.request_id``, else the ``x-request-id`` or ``x-oneapi-request-id``
    header) and ``suggestion`` (``error.suggestion``, else ``error.fallback_suggestion``) are
    set when the gateway gave them, and shown in ``str()``; all of it is redacted.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: int | str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        fallback_suggestion: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        self.fallback_suggestion = fallback_suggestion
        self.suggestion = suggestion or fallback_suggestion
        parts = [f"HTTP {status}"]
        if type:
            parts.append(type)
        if code is not None:
            parts.append(f"code={code}")
        if param:
            parts.append(f"param={param}")
        text = f"{' '.join(parts)}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        if self.suggestion:
            text += f" [suggestion: {self.suggestion}]"
        super().__init__(text)


class BadRequestError(APIError):
    """400: the service rejected a field (``param`` names it)."""


class AuthenticationError(APIError):
    """401: the API key is missing, invalid or expired."""


class InsufficientCreditsError(APIError):
    """402: the account's balance cannot pay for the request. ``details`` holds the quota
    figures the gateway gave (``account_balance_credits``, ``estimated_credits``...)."""

    def __init__(
        self, status: int, message: str, *, details: Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        super().__init__(status, message, **kw)
        self.details: Mapping[str, Any] = dict(details or {})

    def _figure(self, name: str) -> float | None:
        value = self.details.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None

    @property
    def balance(self) -> float | None:
        """The account's balance in credits, when the gateway said."""
        return self._figure("account_balance_credits")

    @property
    def estimate(self) -> float | None:
        """What the refused request would have cost, when the gateway said."""
        return self._figure("estimated_credits")


class KeyQuotaExceededError(InsufficientCreditsError):
    """402: this API key's own total credit limit is reached (raise it in the console)."""

    @property
    def limit(self) -> float | None:
        return self._figure("total_limit_credits")

    @property
    def used(self) -> float | None:
        return self._figure("used_credits")

    @property
    def remaining(self) -> float | None:
        return self._figure("remaining_credits")


class DailyQuotaExceededError(InsufficientCreditsError):
    """402: this API key's daily credit limit is reached. It resets by itself at midnight in
    ``reset_timezone``; ``reset_at`` is that instant (None when the zone is unknown)."""

    @property
    def reset_timezone(self) -> str | None:
        zone = self.details.get("reset_timezone")
        return zone if isinstance(zone, str) and zone else None

    @property
    def reset_at(self) -> datetime.datetime | None:
        """The next midnight in ``reset_timezone``, from now."""
        zone = self.reset_timezone
        try:
            tz = zoneinfo.ZoneInfo(zone) if zone is not None else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = None
        if tz is None:
            return None
        now = datetime.datetime.now(tz)
        return datetime.datetime.combine(
            now.date() + datetime.timedelta(days=1), datetime.time(), tzinfo=tz
        )

    @property
    def daily_limit(self) -> float | None:
        return self._figure("daily_limit_credits")

    @property
    def daily_used(self) -> float | None:
        return self._figure("daily_used_credits")


_BALANCE_CODES = frozenset(
    {
        "insufficient_quota",
        "insufficient_user_quota",
        "quota_not_enough",
        "account_balance_insufficient",
    }
)
_KEY_CODES = frozenset({"insufficient_token_quota", "key_quota_exhausted"})
_DAILY_CODES = frozenset({"token_daily_quota_exceeded", "key_daily_quota_exhausted"})
#: the figures a quota error may carry, read from the error body
QUOTA_DETAILS = (
    "key_name",
    "estimated_credits",
    "account_balance_credits",
    "total_limit_credits",
    "used_credits",
    "remaining_credits",
    "daily_limit_credits",
    "daily_used_credits",
    "reset_timezone",
)


def quota_error_class(code: object, status: int) -> type[InsufficientCreditsError] | None:
    """The 402 class of an error answer: by ``error.code`` first (case-insensitive), by the
    status second; None when it is no quota error."""
    if isinstance(code, str):
        lowered = code.strip().lower()
        if lowered in _DAILY_CODES:
            return DailyQuotaExceededError
        if lowered in _KEY_CODES:
            return KeyQuotaExceededError
        if lowered in _BALANCE_CODES:
            return InsufficientCreditsError
    return InsufficientCreditsError if status == 402 else None


class PermissionDeniedError(APIError):
    """403: the key may not use this model or resource."""


class NotFoundError(APIError):
    """404: unknown model, or a task that does not exist or has expired."""


class RequestTooLargeError(APIError):
    """413: the request (usually an image in ``image_urls``) is too large."""


class _RetryAfterMixin:
    retry_after: float | None
    maybe_created: bool = False  # an answer to a create the service may have taken


class RateLimitError(APIError, _RetryAfterMixin):
    """429: too many requests or too many concurrent tasks. ``retry_after`` in seconds, if known."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(status, message, **kw)
        self.retry_after = retry_after

    @property
    def is_concurrency_limit(self) -> bool:
        """True when the service said too many tasks run at once (not too many requests)."""
        return "concurren" in self.message.lower()


class ServerError(APIError, _RetryAfterMixin):
    """5xx: the service or a proxy in front of it failed. ``retry_after`` in seconds, if known."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(status, message, **kw)
        self.retry_after = retry_after


class IdempotencyConflictError(APIError):
    """Code ``idempotency_conflict``: the key was used with another body. Never retried."""


class PaidOutcomeUnknownError(ServerError):
    """Code ``paid_outcome_unknown``: retried later with the same key, never a new one."""

    maybe_created = True


class APIConnectionError(EvolinkError):
    """No HTTP answer: connection refused or reset, DNS or TLS failure.

    ``maybe_created`` is True when a create request may have reached the service: the task may
    exist and be billed. Such a request is retried only with the same idempotency key.
    """

    def __init__(self, message: str, *, maybe_created: bool = False) -> None:
        self.maybe_created = maybe_created
        if maybe_created:
            message += " (the task may have been created)"
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """No HTTP answer within the request timeout."""


class ServiceUnreachableError(APIConnectionError):
    """No connection to the service could be opened (refused, DNS, TLS, no route), so
    this attempt sent nothing. ``maybe_created`` only when an earlier attempt of the same create
    may have been taken. ``host``, ``port`` and ``cause`` (``"connection refused"``, ...)."""

    def __init__(
        self, host: str, port: int | None, cause: str, *, maybe_created: bool = False
    ) -> None:
        self.host, self.port, self.cause = host, port, cause
        shown = f"[{host}]" if ":" in host else host
        self.where = f"{shown}:{port}" if port is not None else shown
        super().__init__(f"cannot reach {self.where}: {cause}", maybe_created=maybe_created)


class TaskError(EvolinkError):
    """A generation task did not produce a video."""


class TaskFailedError(TaskError):
    """The task ended ``failed``. ``code`` is the task error code; ``retryable`` tells whether
    submitting the same request again may succeed (the service's fault, per the documented codes).
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        err = task.error
        self.code = err.code if err is not None else None
        self.retryable = task.is_retryable_failure
        detail = f"{err.code}: {err.message}" if err is not None else "no error detail"
        super().__init__(f"task {task.id} failed ({detail})")


class TaskCancelledError(TaskFailedError):
    """The task was cancelled (status ``cancelled``, or ``failed`` with ``request_cancelled``).
    Not retried: the cancel was somebody's decision. ``code`` is ``request_cancelled``."""

    def __init__(self, task: Task) -> None:
        super().__init__(task)
        self.code = "request_cancelled"
        self.retryable = False
        self.args = (f"task {task.id} was cancelled",)


class TaskStalledError(TaskError):
    """The task reported a status this SDK does not know, unchanged for ``seconds`` (service
    seconds): tracking gave up instead of polling forever. It may still finish later."""

    def __init__(self, task: Task, seconds: float) -> None:
        self.task = task
        self.task_id = task.id
        self.status = task.raw_status
        self.seconds = seconds
        super().__init__(
            f"task {task.id} has reported the unknown status {task.raw_status!r:.40} "
            f"unchanged for {seconds:g} s; gave up waiting"
        )


class TaskTimeoutError(TaskError):
    """The task did not reach a final status before its deadline; it may still finish later.

    ``task`` is the last state seen, if any.
    """

    def __init__(self, task_id: str, timeout: float, task: Task | None = None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.task = task
        super().__init__(f"task {task_id} did not finish within {timeout:g} s")


class BudgetExceededError(EvolinkError):
    """The credit budget cannot pay for this request, now or after running tasks settle."""


class DownloadError(EvolinkError):
    """A download failed.

    Attributes:
        url: the URL without user info, query string and fragment (see :func:`redact_url`).
        reason: what went wrong, in words.
        status: the HTTP status of the answer that decided the failure, if there was one.
    """

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = redact_url(url)
        self.reason = reason
        self.status = status
        super().__init__(self.url, reason, status)

    def __str__(self) -> str:
        return f"download of {self.url} failed: {self.reason}"


class DownloadTooLargeError(DownloadError):
    """The body is larger than ``max_bytes`` or than its announced ``Content-Length``.

    Never retried; the partial file is deleted.
    """


class DownloadIntegrityError(DownloadError):
    """The downloaded file does not match ``expected_size`` or ``expected_sha256``."""


class JournalError(EvolinkError):
    """The journal cannot be opened, read or written."""


class JournalLockedError(JournalError):
    """Another process (or another :class:`Journal` in this one) holds the directory's lock."""

    def __init__(self, directory: str | os.PathLike[str], pid: int | None = None) -> None:
        self.directory = os.fspath(directory)
        self.pid = pid
        held = f" (pid {pid})" if pid is not None else ""
        super().__init__(
            f"another evolink-async batch is running on {self.directory}{held}; "
            "wait for it to finish or stop it, or use another output directory"
        )


class JournalCorruptError(JournalError):
    """A line other than the last is not a valid record: the file was damaged or edited."""

    def __init__(self, path: str | os.PathLike[str], line_number: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.line_number = line_number
        self.reason = reason
        super().__init__(f"journal {self.path} is corrupt at line {line_number}: {reason}")
