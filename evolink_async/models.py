"""Typed requests and answers of the Evolink video API.

``VideoRequest`` validates the documented rules of the models it knows when it is built, so a
wrong field fails here, naming the field, the value and the rule, before any credit is spent.
A model it does not know is sent as given. Answers (``Task``, ``Credits``) are decoded
liberally: unknown fields are ignored, missing optional fields are ``None``, and a status the
SDK does not know becomes ``TaskStatus.UNKNOWN`` with the raw string kept in ``raw_status``.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import attrs

from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_MODEL",
    "FATAL_TASK_ERROR_CODES",
    "MODEL_SPECS",
    "RETRYABLE_TASK_ERROR_CODES",
    "Credits",
    "CreditsBalance",
    "ModelSpec",
    "Task",
    "TaskErrorInfo",
    "TaskInfo",
    "TaskStatus",
    "Usage",
    "VideoRequest",
    "validate_callback_url",
]

DEFAULT_MODEL = "sora-2-preview"

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
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, raw: object) -> TaskStatus:
        """Map a raw status string to a member; anything unknown gives ``UNKNOWN``."""
        if isinstance(raw, str):
            try:
                return cls(raw.strip().lower())
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED)

    def __str__(self) -> str:
        return self.value


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_CORE_FIELDS = frozenset(
    {"model", "prompt", "aspect_ratio", "duration", "image_urls", "callback_url"}
)
MAX_CALLBACK_URL = 2048


@attrs.frozen
class ModelSpec:
    """The published rules of one model on POST /v1/videos/generations."""

    name: str
    durations: tuple[int, ...]
    default_duration: int
    prompt_max: int | None = None
    aspect_ratios: tuple[str, ...] | None = None
    max_images: int = 1
    #: field name in ``extra`` → allowed values (validated when present)
    extra_choices: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)
    #: field name in ``extra`` → (min, max) for integer fields
    extra_ranges: Mapping[str, tuple[int, int]] = attrs.field(factory=dict)
    extra_bools: frozenset[str] = frozenset()
    extra_strings: frozenset[str] = frozenset()
    required_extra: frozenset[str] = frozenset()


MODEL_SPECS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "sora-2-preview",
            durations=(4, 8, 12),
            default_duration=4,
            prompt_max=5000,
            aspect_ratios=("1280x720", "720x1280", "16:9", "9:16"),
            max_images=1,
        ),
        ModelSpec(
            "sora-2",
            durations=(10, 15),
            default_duration=10,
            prompt_max=5000,
            aspect_ratios=("16:9", "9:16"),
            max_images=1,
            extra_bools=frozenset({"remove_watermark"}),
        ),
        ModelSpec(
            "sora-2-pro",
            durations=(15, 25),
            default_duration=15,
            max_images=1,
            extra_choices={"quality": ("standard", "high")},
            extra_bools=frozenset({"remove_watermark"}),
        ),
        ModelSpec(
            "sora-2-pro-remix",
            durations=(15, 25),
            default_duration=15,
            prompt_max=2000,
            extra_strings=frozenset({"base_video_task_id"}),
            required_extra=frozenset({"base_video_task_id"}),
        ),
        ModelSpec(
            "veo-3.1-fast-generate-preview",
            durations=(4, 6, 8),
            default_duration=8,
            prompt_max=2000,
            max_images=3,
            extra_choices={
                "generation_type": ("TEXT", "FIRST&LAST", "REFERENCE"),
                "quality": ("720p", "1080p", "4k"),
            },
            extra_ranges={"n": (1, 4)},
            extra_bools=frozenset({"generate_audio"}),
            extra_strings=frozenset({"negative_prompt"}),
        ),
    )
}


def _is_private_host(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def validate_callback_url(url: object, field: str = "callback_url") -> None:
    """Apply the documented callback rules: https, at most 2048 characters, a public host."""
    if not isinstance(url, str):
        raise InvalidRequestError(field, url, "must be a string URL")
    if len(url) > MAX_CALLBACK_URL:
        raise InvalidRequestError(field, url, f"must be at most {MAX_CALLBACK_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise InvalidRequestError(field, url, f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() != "https":
        raise InvalidRequestError(field, url, "must use https (the service refuses http)")
    if not host:
        raise InvalidRequestError(field, url, "must name a host")
    if _is_private_host(host):
        raise InvalidRequestError(
            field, url, "must not point to a loopback, private or link-local host"
        )


def _validate_image_url(url: object, field: str) -> None:
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(field, url, "must be a non-empty URL string")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidRequestError(field, url, f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InvalidRequestError(field, url, "must be an http(s) URL the service can download")
    path = parts.path.lower()
    last = path.rsplit("/", 1)[-1]
    if "." in last and not last.endswith(_IMAGE_EXTENSIONS):
        raise InvalidRequestError(
            field, url, "must be a .jpg, .jpeg, .png or .webp image (at most 10 MB)"
        )


def _validate_extra(spec: ModelSpec, extra: Mapping[str, Any]) -> None:
    for name in spec.required_extra:
        if name not in extra:
            raise InvalidRequestError(f"extra.{name}", None, f"is required for {spec.name}")
    for name, choices in spec.extra_choices.items():
        if name in extra and extra[name] not in choices:
            allowed = ", ".join(map(str, choices))
            raise InvalidRequestError(
                f"extra.{name}", extra[name], f"must be one of {allowed} for {spec.name}"
            )
    for name, (low, high) in spec.extra_ranges.items():
        if name in extra:
            value = extra[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidRequestError(
                    f"extra.{name}", value, f"must be an integer from {low} to {high}"
                )
    for name in spec.extra_bools:
        if name in extra and not isinstance(extra[name], bool):
            raise InvalidRequestError(f"extra.{name}", extra[name], "must be true or false")
    for name in spec.extra_strings:
        if name in extra and not isinstance(extra[name], str):
            raise InvalidRequestError(f"extra.{name}", extra[name], "must be a string")


def _check_common(req: VideoRequest) -> None:
    if not isinstance(req.model, str) or not req.model.strip():
        raise InvalidRequestError("model", req.model, "must be a non-empty string")
    if not isinstance(req.prompt, str):
        raise InvalidRequestError("prompt", req.prompt, "must be a string")
    if not isinstance(req.extra, Mapping):
        raise InvalidRequestError("extra", req.extra, "must be a mapping of field names")
    for key in req.extra:
        if not isinstance(key, str):
            raise InvalidRequestError("extra", key, "field names must be strings")
        if key in _CORE_FIELDS:
            raise InvalidRequestError(
                f"extra.{key}", req.extra[key], f"set {key} through its own argument"
            )
    if req.callback_url is not None:
        validate_callback_url(req.callback_url)
    _check_sendable(req)


_SENDABLE_RULE = (
    "must be sendable as JSON: text without lone surrogates, finite numbers, lists, objects"
)


def _check_sendable(req: VideoRequest) -> None:
    """Every value must go out as strict UTF-8 JSON (a NaN or a lone surrogate, possible in a
    JSON line, would otherwise fail later, in the journal or on the wire)."""
    values: list[tuple[str, Any]] = [
        ("model", req.model),
        ("prompt", req.prompt),
        ("aspect_ratio", req.aspect_ratio),
        ("duration", req.duration),
        *((f"image_urls[{i}]", url) for i, url in enumerate(req.image_urls)),
        ("callback_url", req.callback_url),
        *((f"extra.{key}", {key: value}) for key, value in req.extra.items()),
    ]
    for field, value in values:
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            shown = value[field.removeprefix("extra.")] if field.startswith("extra.") else value
            raise InvalidRequestError(field, shown, _SENDABLE_RULE) from None


def _check_spec(spec: ModelSpec, req: VideoRequest) -> None:
    if not req.prompt.strip():
        raise InvalidRequestError("prompt", req.prompt, "is required and must not be blank")
    if spec.prompt_max is not None and len(req.prompt) > spec.prompt_max:
        raise InvalidRequestError(
            "prompt",
            req.prompt,
            f"must be at most {spec.prompt_max} characters for {spec.name} (got {len(req.prompt)})",
        )
    if req.duration is not None and (
        isinstance(req.duration, bool)
        or not isinstance(req.duration, int)
        or req.duration not in spec.durations
    ):
        allowed = ", ".join(map(str, spec.durations))
        raise InvalidRequestError(
            "duration", req.duration, f"must be one of {allowed} seconds for {spec.name}"
        )
    if (
        req.aspect_ratio is not None
        and spec.aspect_ratios is not None
        and req.aspect_ratio not in spec.aspect_ratios
    ):
        allowed = ", ".join(spec.aspect_ratios)
        raise InvalidRequestError(
            "aspect_ratio", req.aspect_ratio, f"must be one of {allowed} for {spec.name}"
        )
    if len(req.image_urls) > spec.max_images:
        raise InvalidRequestError(
            "image_urls",
            list(req.image_urls),
            f"at most {spec.max_images} image(s) for {spec.name}",
        )
    for i, url in enumerate(req.image_urls):
        _validate_image_url(url, f"image_urls[{i}]")
    _validate_extra(spec, req.extra)
    if spec.name == "sora-2-pro" and "quality" in req.extra:
        duration = req.duration if req.duration is not None else spec.default_duration
        needed = "high" if duration == 15 else "standard"
        if req.extra["quality"] != needed:
            raise InvalidRequestError(
                "extra.quality",
                req.extra["quality"],
                f"must be {needed!r} for a {duration} s sora-2-pro video",
            )


def _image_urls(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise InvalidRequestError("image_urls", value, "must be a list of URLs")


def _extra(value: Any) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if isinstance(value, Mapping):
        return MappingProxyType(dict(value))  # a read-only copy: validated once, stays valid
    raise InvalidRequestError("extra", value, "must be a mapping of field names")


@attrs.frozen
class VideoRequest:
    """One video to generate. Validated when built; ``InvalidRequestError`` names the field.

    ``extra`` carries model-specific or new fields the SDK has no argument for (``quality``,
    ``n``, ``remove_watermark``...); they are sent as given, and checked where a known model
    publishes rules for them.
    """

    prompt: str
    model: str = DEFAULT_MODEL
    aspect_ratio: str | None = None
    duration: int | None = None
    image_urls: tuple[str, ...] = attrs.field(default=(), converter=_image_urls)
    callback_url: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, hash=False)

    def __attrs_post_init__(self) -> None:
        _check_common(self)
        spec = MODEL_SPECS.get(self.model)
        if spec is not None:
            _check_spec(spec, self)

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
        body: dict[str, Any] = {"model": self.model, "prompt": self.prompt}
        if self.aspect_ratio is not None:
            body["aspect_ratio"] = self.aspect_ratio
        if self.duration is not None:
            body["duration"] = self.duration
        if self.image_urls:
            body["image_urls"] = list(self.image_urls)
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
        if "prompt" not in data:
            raise InvalidRequestError("prompt", None, "is required")
        known = {k: data[k] for k in _CORE_FIELDS if k in data}
        extra = {k: v for k, v in data.items() if k not in _CORE_FIELDS}
        if "model" in known and known["model"] is None:
            del known["model"]
        return cls(extra=extra, **known)

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
class Usage:
    billing_rule: str | None = None
    credits_reserved: float | None = None
    user_group: str | None = None
    estimated_cost: float | None = None


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
        """Completed or failed: the task will not change any more."""
        return self.status.is_terminal

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
    def remaining(self) -> float | None:
        """Credits this key can still spend (None when unlimited or unknown)."""
        for balance in (self.token, self.user):
            if balance is not None:
                if balance.unlimited_credits:
                    return None
                if balance.remaining_credits is not None:
                    return balance.remaining_credits
        return None
