"""The checks that apply a registry entry (:class:`ModelSpec`) to a request, and the shared
checks every model gets, known or not. Each failure names the field and the rule."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from ._model_spec import SHARED_MAX_IMAGES, SHARED_PROMPT_MAX, TYPED_FIELDS, ModelSpec
from .errors import InvalidRequestError

__all__ = ["RequestFields", "check_shared", "check_spec", "field_name"]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


class RequestFields(Protocol):
    """What the checks read of a request (``models.VideoRequest`` is one)."""

    @property
    def model(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def aspect_ratio(self) -> str | None: ...
    @property
    def duration(self) -> int | None: ...
    @property
    def image_urls(self) -> tuple[str, ...]: ...
    @property
    def callback_url(self) -> str | None: ...
    @property
    def extra(self) -> Mapping[str, Any]: ...
    @property
    def image_start(self) -> str | None: ...
    @property
    def image_end(self) -> str | None: ...
    @property
    def video_urls(self) -> tuple[str, ...]: ...
    @property
    def audio_urls(self) -> tuple[str, ...]: ...
    @property
    def model_params(self) -> Mapping[str, Any] | None: ...


def field_name(name: str) -> str:
    """How an error names a body field: typed fields plainly, the rest as ``extra.<name>``."""
    return name if name in TYPED_FIELDS else f"extra.{name}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_shared(req: RequestFields) -> None:
    """What every model gets, even one the registry does not know: a non-empty prompt within
    5000 characters, a positive integer duration, at most 30 image URLs."""
    if not req.prompt.strip():
        raise InvalidRequestError("prompt", req.prompt, "is required and must not be blank")
    if len(req.prompt) > SHARED_PROMPT_MAX:
        raise InvalidRequestError(
            "prompt",
            req.prompt,
            f"must be at most {SHARED_PROMPT_MAX} characters (got {len(req.prompt)})",
        )
    if req.duration is not None and (not _is_int(req.duration) or req.duration < 1):
        raise InvalidRequestError("duration", req.duration, "must be a positive integer")
    if len(req.image_urls) > SHARED_MAX_IMAGES:
        raise InvalidRequestError(
            "image_urls", list(req.image_urls), f"at most {SHARED_MAX_IMAGES} image URLs"
        )


def _validate_image_url(url: object, field: str, *, inline: bool = False) -> None:
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(field, url, "must be a non-empty URL string")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidRequestError(field, url, f"is not a valid URL ({exc})") from None
    if inline and (parts.scheme.lower() == "data" or not parts.scheme):
        return
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InvalidRequestError(field, url, "must be an http(s) URL the service can download")
    path = parts.path.lower()
    last = path.rsplit("/", 1)[-1]
    if "." in last and not last.endswith(_IMAGE_EXTENSIONS):
        raise InvalidRequestError(
            field, url, "must be a .jpg, .jpeg, .png or .webp image (at most 10 MB)"
        )


def _not_a_field(spec: ModelSpec, name: str) -> str:
    """The rule an unknown field of a known model breaks, with the nearest field's name."""
    candidates = sorted(spec.extra_fields | TYPED_FIELDS)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f"is not a field of {spec.name}; did you mean {close[0]!r}?"
    other = ", ".join(sorted(spec.extra_fields))
    listed = f"its other fields: {other}" if other else "it has no other fields"
    return f"is not a field of {spec.name} ({listed})"


def _validate_extra(spec: ModelSpec, extra: Mapping[str, Any]) -> None:
    for name in extra:
        if name not in spec.extra_fields:
            raise InvalidRequestError(field_name(name), extra[name], _not_a_field(spec, name))
    for name in sorted(spec.required_extra):
        if name not in extra:
            raise InvalidRequestError(f"extra.{name}", None, f"is required for {spec.name}")
    choices_by_name = dict(spec.extra_choices)
    if spec.qualities is not None:
        choices_by_name["quality"] = spec.qualities
    for name, choices in choices_by_name.items():
        if name in extra and (
            not isinstance(extra[name], (str, int)) or extra[name] not in choices
        ):
            allowed = ", ".join(map(str, choices))
            raise InvalidRequestError(
                f"extra.{name}", extra[name], f"must be one of {allowed} for {spec.name}"
            )
    for name, (low, high) in spec.extra_ranges.items():
        if name in extra:
            value = extra[name]
            if not _is_int(value) or not low <= value <= high:
                raise InvalidRequestError(
                    f"extra.{name}", value, f"must be an integer from {low} to {high}"
                )
    for name in sorted(spec.extra_bools):
        if name in extra and not isinstance(extra[name], bool):
            raise InvalidRequestError(f"extra.{name}", extra[name], "must be true or false")
    for name in sorted(spec.extra_strings):
        if name in extra and not isinstance(extra[name], str):
            raise InvalidRequestError(f"extra.{name}", extra[name], "must be a string")


def _present(req: RequestFields, name: str) -> bool:
    if name in TYPED_FIELDS:
        value = getattr(req, name)
        if name == "prompt":
            return bool(value.strip())
        return value is not None and value not in ((), {})
    return name in req.extra


def _check_prompt_and_duration(spec: ModelSpec, req: RequestFields) -> None:
    if spec.prompt_required and not req.prompt.strip():
        raise InvalidRequestError("prompt", req.prompt, "is required and must not be blank")
    if spec.prompt_max is not None and len(req.prompt) > spec.prompt_max:
        raise InvalidRequestError(
            "prompt",
            req.prompt,
            f"must be at most {spec.prompt_max} characters for {spec.name} (got {len(req.prompt)})",
        )
    if req.duration is None:
        return
    allowed = (*spec.durations, -1) if spec.duration_auto else spec.durations
    if not allowed:  # not published: the shared rule
        if not _is_int(req.duration) or req.duration < 1:
            raise InvalidRequestError("duration", req.duration, "must be a positive integer")
        return
    if not _is_int(req.duration) or req.duration not in allowed:
        raise InvalidRequestError(
            "duration", req.duration, f"must be one of {_spell(allowed)} seconds for {spec.name}"
        )


def _spell(values: tuple[int, ...]) -> str:
    """``4, 8, 12``; a long run of whole seconds as ``4 to 30``; -1 as ``-1 (auto)``."""
    auto = -1 in values
    plain = tuple(v for v in values if v != -1)
    if len(plain) > 4 and plain == tuple(range(plain[0], plain[-1] + 1)):
        text = f"{plain[0]} to {plain[-1]}"
    else:
        text = ", ".join(map(str, plain))
    return f"{text} or -1 (auto)" if auto and text else ("-1 (auto)" if auto else text)


def _check_count(spec: ModelSpec, field: str, count: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if count > high:
        raise InvalidRequestError(field, count, f"at most {high} item(s) for {spec.name}")
    if count < low:
        raise InvalidRequestError(field, count, f"at least {low} item(s) for {spec.name}")


def _check_media(spec: ModelSpec, req: RequestFields) -> None:
    if len(req.image_urls) > spec.max_images:
        raise InvalidRequestError(
            "image_urls",
            list(req.image_urls),
            f"at most {spec.max_images} image(s) for {spec.name}",
        )
    if len(req.image_urls) < spec.min_images:
        raise InvalidRequestError(
            "image_urls",
            list(req.image_urls),
            f"at least {spec.min_images} image(s) for {spec.name}",
        )
    for i, url in enumerate(req.image_urls):
        _validate_image_url(url, f"image_urls[{i}]", inline=spec.inline_images)
    for frame in ("image_start", "image_end"):
        value = getattr(req, frame)
        if value is None:
            continue
        if frame not in spec.frames:
            raise InvalidRequestError(frame, value, f"is not accepted by {spec.name}")
        _validate_image_url(value, frame)
    for field, bounds in (("video_urls", spec.video_urls), ("audio_urls", spec.audio_urls)):
        count = len(getattr(req, field))
        if bounds is None:
            if count:
                raise InvalidRequestError(field, count, f"is not accepted by {spec.name}")
            continue
        _check_count(spec, field, count, bounds)


def _check_model_params(spec: ModelSpec, params: Mapping[str, Any] | None) -> None:
    if params is None or spec.model_params is None:
        return  # an unpublished model_params is sent as given (the escape hatch)
    for key in params:
        if key not in spec.model_params:
            known = ", ".join(sorted(spec.model_params))
            raise InvalidRequestError(
                f"model_params.{key}", params[key], f"is not a parameter of {spec.name} ({known})"
            )
    for key in sorted(spec.required_params):
        if key not in params:
            raise InvalidRequestError(f"model_params.{key}", None, f"is required for {spec.name}")


def check_spec(spec: ModelSpec, req: RequestFields) -> None:
    """Raise :class:`InvalidRequestError` for the first published rule of ``spec`` that ``req``
    breaks: required fields, prompt, duration, aspect ratio, media, extra fields."""
    for name in sorted(spec.required - {"prompt"}):
        if not _present(req, name):
            raise InvalidRequestError(field_name(name), None, f"is required for {spec.name}")
    _check_prompt_and_duration(spec, req)
    if (
        req.aspect_ratio is not None
        and spec.aspect_ratios is not None
        and req.aspect_ratio not in spec.aspect_ratios
    ):
        allowed = ", ".join(spec.aspect_ratios)
        raise InvalidRequestError(
            "aspect_ratio", req.aspect_ratio, f"must be one of {allowed} for {spec.name}"
        )
    _check_media(spec, req)
    _validate_extra(spec, req.extra)
    _check_model_params(spec, req.model_params)
    if spec.name == "sora-2-pro" and "quality" in req.extra:
        duration = req.duration if req.duration is not None else spec.default_duration
        needed = "high" if duration == 15 else "standard"
        if req.extra["quality"] != needed:
            raise InvalidRequestError(
                "extra.quality",
                req.extra["quality"],
                f"must be {needed!r} for a {duration} s sora-2-pro video",
            )
