"""Typed requests and answers of the Evolink video API.

``VideoRequest`` validates the documented rules of the models it knows when it is built, so a
wrong field fails here, naming the field, the value and the rule, before any credit is spent.
A model it does not know is sent as given. Answers (``Task``, ``Credits``) are decoded
liberally: unknown fields are ignored, missing optional fields are ``None``, and a status the
SDK does not know becomes ``TaskStatus.UNKNOWN`` with the raw string kept in ``raw_status``.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypedDict

import attrs

from ._keys import check_idempotency_key
from ._rules import (
    CORE_FIELDS,
    MODEL_SPECS,
    ModelSpec,
    check_request,
    is_loopback_host,
    is_private_host,
    validate_callback_url,
)
from ._rules import DEFAULT_PRICES as DEFAULT_PRICES  # noqa: PLC0414 - re-exported
from ._rules import MAX_CALLBACK_URL as MAX_CALLBACK_URL  # noqa: PLC0414 - re-exported
from .errors import InvalidRequestError

__all__ = [
    "CANCELLED_CODE",
    "DEFAULT_MODEL",
    "FATAL_TASK_ERROR_CODES",
    "MODEL_SPECS",
    "RETRYABLE_TASK_ERROR_CODES",
    "TERMINAL_STATUSES",
    "Credits",
    "CreditsBalance",
    "ModelSpec",
    "Task",
    "TaskErrorInfo",
    "TaskInfo",
    "TaskPage",
    "TaskStatus",
    "TaskSummary",
    "Usage",
    "UsageCost",
    "VideoFields",
    "VideoRequest",
    "is_loopback_host",
    "is_private_host",
    "validate_callback_url",
]

DEFAULT_MODEL = "sora-2-preview"
#: the task error code of a cancelled task (a ``cancelled`` status without an error gets it)
CANCELLED_CODE = "request_cancelled"

#: Task error codes that are the request's fault: resubmitting the same request will fail again.
FATAL_TASK_ERROR_CODES = frozenset(
    {
        "content_policy_violation",
        "invalid_parameters",
        "image_processing_error",
        "image_dimension_mismatch",
        "request_cancelled",
    }
)
#: Task error codes that are the service's fault: the same request may succeed when resubmitted.
RETRYABLE_TASK_ERROR_CODES = frozenset(
    {
        "generation_failed_no_content",
        "service_error",
        "generation_timeout",
        "resource_exhausted",
        "quota_exceeded",
        "service_unavailable",
        "resource_not_found",
        "unknown_error",
    }
)


class TaskStatus(str, enum.Enum):
    """A task's status. ``UNKNOWN`` stands for any status this SDK version does not know;
    the task's ``raw_status`` keeps the string the service sent."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, raw: object) -> TaskStatus:
        """Map a raw status string to a member; anything unknown gives ``UNKNOWN``."""
        if isinstance(raw, str):
            member = _STATUS_BY_VALUE.get(raw)  # the usual case: no enum lookup, no copy
            if member is not None:
                return member
            try:
                return cls(raw.strip().lower())
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


_STATUS_BY_VALUE: dict[str, TaskStatus] = {member.value: member for member in TaskStatus}
#: the statuses of a task that will not change any more (``TaskStatus.is_terminal``)
TERMINAL_STATUSES = frozenset((TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED))


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def _image_urls(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise InvalidRequestError("image_urls", value, "must be a list of URLs")


def _url_list(field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise InvalidRequestError(field, value, "must be a list of URLs")


def _video_urls(value: Any) -> tuple[str, ...]:
    return _url_list("video_urls", value)


def _audio_urls(value: Any) -> tuple[str, ...]:
    return _url_list("audio_urls", value)


def _model_params(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return MappingProxyType(dict(value))
    raise InvalidRequestError("model_params", value, "must be an object of parameters")


#: the ``extra`` of every request without one: one read-only empty mapping, not one a request
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


def _extra(value: Any) -> Mapping[str, Any]:
    if value is None or (isinstance(value, Mapping) and not value):
        return _NO_EXTRA
    if isinstance(value, Mapping):
        return MappingProxyType(dict(value))  # a read-only copy: validated once, stays valid
    raise InvalidRequestError("extra", value, "must be a mapping of field names")


class VideoFields(TypedDict, total=False):
    """The request's fields as keywords (``create_video(prompt=..., duration=8)``), typed so
    that a type checker refuses ``duration="8"`` or a misspelled name. Fields of one model
    only (``quality``, ``seed``, ``generate_audio``...) go in ``extra``."""

    prompt: str
    model: str
    aspect_ratio: str | None
    duration: int | None
    image_urls: Sequence[str]
    callback_url: str | None
    image_start: str | None
    image_end: str | None
    video_urls: Sequence[str]
    audio_urls: Sequence[str]
    model_params: Mapping[str, Any] | None
    extra: Mapping[str, Any]
    client_request_id: str | None


def _unexpected_keyword(name: str) -> str:
    known = sorted(VideoFields.__annotations__)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unexpected keyword {name!r}{hint} (a field of one model goes in extra={{...}}; "
        f"the keywords are: {', '.join(known)})"
    )


@attrs.frozen
class VideoRequest:
    """One video to generate. Validated when built; ``InvalidRequestError`` names the field.

    ``extra`` carries model-specific or new fields the SDK has no argument for (``quality``,
    ``n``, ``remove_watermark``, ``generate_audio``, ``seed``...); they are sent as given, and
    checked where the registry publishes rules for them. ``image_start``/``image_end`` (first
    and last frame), ``video_urls``, ``audio_urls`` and ``model_params`` have their own typed
    arguments; ``model_params`` is sent as given for a model whose keys are not published.

    The registry (:data:`MODEL_SPECS`) knows every documented video model. A model it does not
    know gets only the shared checks (non-empty prompt within 5000 characters, positive
    integer duration, at most 30 images) and a logged warning. ``prompt`` may be empty only for
    a model that documents it as optional; it is then left out of the body.

    ``client_request_id`` is the idempotency key of this request's create (16-96 characters of
    ``[A-Za-z0-9._-]``), sent as the ``Idempotency-Key`` header, never in the body; leave it
    None for a fresh key per create.
    """

    prompt: str
    model: str = DEFAULT_MODEL
    aspect_ratio: str | None = None
    duration: int | None = None
    image_urls: tuple[str, ...] = attrs.field(default=(), converter=_image_urls)
    callback_url: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, hash=False)
    image_start: str | None = None
    image_end: str | None = None
    video_urls: tuple[str, ...] = attrs.field(default=(), converter=_video_urls)
    audio_urls: tuple[str, ...] = attrs.field(default=(), converter=_audio_urls)
    model_params: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_model_params, hash=False
    )
    client_request_id: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        check_request(self)
        if self.client_request_id is not None:
            check_idempotency_key(self.client_request_id, "client_request_id")

    @property
    def spec(self) -> ModelSpec | None:
        """The published rules of this request's model, or None for a model the SDK doesn't know."""
        return MODEL_SPECS.get(self.model)

    @property
    def effective_duration(self) -> int | None:
        """The duration the service will use: the given one or the model's default."""
        if self.duration is not None:
            return self.duration
        spec = self.spec
        return spec.default_duration if spec is not None else None

    def to_json(self) -> dict[str, Any]:
        """The request body, with the API's field names; unset optional fields are left out."""
        body: dict[str, Any] = {"model": self.model}
        spec = self.spec
        if self.prompt or spec is None or spec.prompt_required:
            body["prompt"] = self.prompt
        if self.aspect_ratio is not None:
            body["aspect_ratio"] = self.aspect_ratio
        if self.duration is not None:
            body["duration"] = self.duration
        if self.image_urls:
            body["image_urls"] = list(self.image_urls)
        for name in ("image_start", "image_end"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.video_urls:
            body["video_urls"] = list(self.video_urls)
        if self.audio_urls:
            body["audio_urls"] = list(self.audio_urls)
        if self.model_params is not None:
            body["model_params"] = dict(self.model_params)
        if self.callback_url is not None:
            body["callback_url"] = self.callback_url
        body.update(self.extra)
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoRequest:
        """Build a request from an object with the API's field names (a line of a .jsonl file);
        fields the SDK has no argument for go to ``extra``."""
        if not isinstance(data, Mapping):
            raise InvalidRequestError("request", data, "must be a JSON object")
        known = {k: data[k] for k in CORE_FIELDS if k in data}
        if "prompt" not in data:
            spec = MODEL_SPECS.get(str(data.get("model") or DEFAULT_MODEL))
            if spec is None or spec.prompt_required:
                raise InvalidRequestError("prompt", None, "is required")
            known["prompt"] = ""
        extra = {k: v for k, v in data.items() if k not in CORE_FIELDS and k != "client_request_id"}
        if "model" in known and known["model"] is None:
            del known["model"]
        return cls(extra=extra, client_request_id=data.get("client_request_id"), **known)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> VideoRequest:
        """Build a request from :class:`VideoFields` keywords (``create_video(prompt=...)``);
        model-specific fields go in ``extra``. Any other keyword is a TypeError naming the
        keyword it most likely meant."""
        for name in fields:
            if name not in VideoFields.__annotations__:
                raise TypeError(_unexpected_keyword(name))
        extra = dict(fields.get("extra") or {})
        typed = {k: v for k, v in fields.items() if k != "extra"}
        if "prompt" not in typed:
            return cls.from_json({**typed, **extra})  # the model may not need one
        return cls(**typed, extra=extra)

    def with_callback(self, url: str | None) -> VideoRequest:
        """A copy with ``callback_url`` set (validated)."""
        return attrs.evolve(self, callback_url=url)


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class TaskInfo:
    can_cancel: bool | None = None
    estimated_time: float | None = None
    video_duration: float | None = None


@attrs.frozen
class UsageCost:
    """``usage.cost`` of a finished task: its final charge in ``credits``."""

    credits: float | None = None


@attrs.frozen
class Usage:
    """``usage`` of a task: ``credits_reserved`` at the create; the final charge of a
    completed task in ``credits_used`` (or ``cost.credits``)."""

    billing_rule: str | None = None
    credits_reserved: float | None = None
    user_group: str | None = None
    estimated_cost: float | None = None
    credits_used: float | None = None
    cost: UsageCost | None = None


@attrs.frozen
class TaskErrorInfo:
    """``error`` of a failed task. ``code`` may be a string or, on older answers, an integer."""

    code: int | str | None = None
    message: str | None = None

    @property
    def retryable(self) -> bool:
        return isinstance(self.code, str) and self.code in RETRYABLE_TASK_ERROR_CODES


@attrs.frozen
class Task:
    """A generation task as the service reports it (POST answer or GET /v1/tasks/{id})."""

    id: str
    status: TaskStatus = TaskStatus.UNKNOWN
    raw_status: str = ""
    progress: int | None = None
    created: int | None = None
    model: str | None = None
    object: str | None = None
    type: str | None = None
    task_info: TaskInfo | None = None
    usage: Usage | None = None
    results: tuple[str, ...] = ()
    error: TaskErrorInfo | None = None

    @property
    def video_url(self) -> str | None:
        """The video's URL (``results[0]``) once completed. It expires after 24 hours."""
        return self.results[0] if self.results else None

    @property
    def is_terminal(self) -> bool:
        """Completed, failed or cancelled: the task will not change any more."""
        return self.status.is_terminal

    @property
    def is_cancelled(self) -> bool:
        """Cancelled: status ``cancelled``, or ``failed`` with code ``request_cancelled`` (the
        service reports a cancel both ways)."""
        if self.status is TaskStatus.CANCELLED:
            return True
        return (
            self.status is TaskStatus.FAILED
            and self.error is not None
            and self.error.code == CANCELLED_CODE
        )

    @property
    def is_retryable_failure(self) -> bool:
        """Failed with a documented code that is the service's fault: resubmitting may succeed."""
        return self.status is TaskStatus.FAILED and self.error is not None and self.error.retryable

    @property
    def estimated_time(self) -> float | None:
        return self.task_info.estimated_time if self.task_info is not None else None

    @property
    def credits_reserved(self) -> float | None:
        return self.usage.credits_reserved if self.usage is not None else None


@attrs.frozen
class TaskSummary:
    """One item of ``GET /v1/tasks`` (the account's task list): no result links; read the task
    itself (``get_task``/``get_tasks``) for those."""

    id: str
    status: TaskStatus = TaskStatus.UNKNOWN
    raw_status: str = ""
    progress: int | None = None
    model: str | None = None
    type: str | None = None
    created_at: int | None = None
    duration: float | None = None
    has_results: bool | None = None
    result_count: int | None = None
    has_error: bool | None = None
    credits_used: float | None = None


@attrs.frozen
class TaskPage:
    """One page of ``GET /v1/tasks``: its items, newest first, and where it stands."""

    items: tuple[TaskSummary, ...] = ()
    total: int = 0
    page: int = 1
    page_size: int = 20


@attrs.frozen
class CreditsBalance:
    remaining_credits: float | None = None
    used_credits: float | None = None
    unlimited_credits: bool | None = None


@attrs.frozen
class Credits:
    """GET /v1/credits: the key's (``token``) and the account's (``user``) balance."""

    token: CreditsBalance | None = None
    user: CreditsBalance | None = None

    @property
    def balance(self) -> float | None:
        """The account's balance (``user.remaining_credits``), shared by all its keys."""
        return self.user.remaining_credits if self.user is not None else None

    @property
    def key_used(self) -> float | None:
        """What this API key has spent (``token.used_credits``)."""
        return self.token.used_credits if self.token is not None else None

    @property
    def key_remaining(self) -> float | None:
        """What is left of this key's own limit; None when the key is unlimited or unknown."""
        if self.token is None or self.token.unlimited_credits:
            return None
        return self.token.remaining_credits

    @property
    def available(self) -> float | None:
        """What a batch can spend now: the smaller of the balance and the key's remaining
        limit (negative figures count as 0); None when neither is known."""
        known = [max(0.0, v) for v in (self.balance, self.key_remaining) if v is not None]
        return min(known) if known else None

    @property
    def remaining(self) -> float | None:
        """Credits this key can still spend (None when unlimited or unknown)."""
        for balance in (self.token, self.user):
            if balance is not None:
                if balance.unlimited_credits:
                    return None
                if balance.remaining_credits is not None:
                    return balance.remaining_credits
        return None
