"""The gateway's per-model rules, applied to a create body as the gateway does: a 400
``invalid_parameter`` naming the field. The rules are the package's public registry
(``evolink_async.models.MODEL_SPECS``); this module is the simulator's own reading of them, so
the SDK's local checks and the service's answers can be compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from evolink_async.models import ModelSpec as Rules  # the package's public API only

from ._errors import ApiError

__all__ = ["check_rules"]


def _bad(param: str, why: str) -> ApiError:
    head = param.split(".", 1)[0]
    return ApiError.invalid(param, f"Invalid {head} parameter: {why}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _given(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if name == "prompt":
        return isinstance(value, str) and bool(value.strip())
    return value is not None and value not in ([], {})


def _check_prompt(body: Mapping[str, Any], rules: Rules) -> str:
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise _bad("prompt", "must be a string")
    if "prompt" in rules.required and not prompt.strip():
        raise _bad("prompt", "prompt is required")
    if rules.prompt_max is not None and len(prompt) > rules.prompt_max:
        raise _bad("prompt", f"at most {rules.prompt_max} characters")
    return prompt


def _check_duration(body: Mapping[str, Any], rules: Rules) -> int | None:
    """The duration given (None when absent); 400 when the model does not allow it."""
    if "duration" not in body:
        return None
    duration = body["duration"]
    allowed = set(rules.durations) | ({-1} if rules.duration_auto else set())
    ok = _is_int(duration) and (duration in allowed if allowed else duration >= 1)
    if not ok:
        shown = ", ".join(map(str, sorted(allowed))) or "a positive integer"
        raise _bad("duration", f"{duration!r} is not allowed; must be {shown}")
    return int(duration)


def _url_list(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise _bad(name, "must be an array")
    return value


def _is_link(value: object, *, inline: bool = False) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if inline and (parts.scheme == "data" or not parts.scheme):
        return True
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_count(name: str, items: list[Any], low: int, high: int) -> None:
    if len(items) > high:
        raise _bad(name, f"at most {high} item(s)")
    if len(items) < low:
        raise _bad(name, f"at least {low} item(s)")


def _check_media(body: Mapping[str, Any], rules: Rules) -> list[Any]:
    images = _url_list(body, "image_urls")
    _check_count("image_urls", images, rules.min_images, rules.max_images)
    if not all(_is_link(url, inline=rules.inline_images) for url in images):
        raise _bad("image_urls", "must be http(s) URLs")
    for frame in ("image_start", "image_end"):
        if frame in body:
            if frame not in rules.frames:
                raise _bad(frame, "not supported by this model")
            if not _is_link(body[frame]):
                raise _bad(frame, "must be an http(s) URL")
    for name, bounds in (("video_urls", rules.video_urls), ("audio_urls", rules.audio_urls)):
        items = _url_list(body, name)
        if bounds is None:
            if items:
                raise _bad(name, "not supported by this model")
            continue
        _check_count(name, items, *bounds)
    return images


def _check_fields(body: Mapping[str, Any], rules: Rules) -> None:
    choices = dict(rules.extra_choices)
    if rules.qualities is not None:
        choices["quality"] = rules.qualities
    for name, allowed in choices.items():
        if name in body and body[name] not in allowed:
            raise _bad(name, f"must be one of {', '.join(map(str, allowed))}")
    for name, (low, high) in rules.extra_ranges.items():
        if name in body and not (_is_int(body[name]) and low <= body[name] <= high):
            raise _bad(name, f"must be an integer from {low} to {high}")
    for name in rules.extra_bools:
        if name in body and not isinstance(body[name], bool):
            raise _bad(name, "must be a boolean")
    for name in rules.extra_strings:
        if name in body and not isinstance(body[name], str):
            raise _bad(name, "must be a string")
    params = body.get("model_params")
    if params is not None and not isinstance(params, dict):
        raise _bad("model_params", "must be an object")
    if params is not None and rules.model_params is not None:
        for key in params:
            if key not in rules.model_params:
                raise _bad(f"model_params.{key}", "unknown parameter")
        for key in rules.required_params:
            if key not in params:
                raise _bad(f"model_params.{key}", "is required")


def check_rules(body: Mapping[str, Any], rules: Rules) -> tuple[str, int | None, list[Any]]:
    """(prompt, duration given or None, image URLs) of a body that follows ``rules``; else
    the gateway's 400 naming the first field at fault."""
    for name in sorted((rules.required | rules.required_extra) - {"prompt"}):
        if not _given(body, name):
            raise _bad(name, "is required")
    prompt = _check_prompt(body, rules)
    duration = _check_duration(body, rules)
    ratio = body.get("aspect_ratio")
    if ratio is not None and rules.aspect_ratios is not None and ratio not in rules.aspect_ratios:
        raise _bad("aspect_ratio", f"must be one of {', '.join(rules.aspect_ratios)}")
    images = _check_media(body, rules)
    _check_fields(body, rules)
    if rules.name == "sora-2-pro" and "quality" in body:
        needed = "high" if (duration or rules.default_duration) == 15 else "standard"
        if body["quality"] != needed:
            raise _bad("quality", f"must be {needed} at this duration")
    return prompt, duration, images
