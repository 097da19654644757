"""Checks a create request's body against the model's documented rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from evolink_async.models import is_private_host  # the package's public API only

from ._catalog import ModelSpec
from ._errors import ApiError
from ._model_rules import check_rules

__all__ = ["CreateRequest", "validate_create"]

DEFAULT_MODEL = "sora-2-preview"
MAX_CALLBACK_URL = 2048


@attrs.frozen(kw_only=True)
class CreateRequest:
    """A valid create request, defaults filled in."""

    spec: ModelSpec
    prompt: str
    duration: int
    aspect_ratio: str | None
    image_urls: tuple[str, ...]
    callback_url: str | None


def _uri_host(value: object) -> tuple[str, str] | None:
    """(scheme, host) of an absolute http(s) URI, or None."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return parts.scheme, host


def validate_create(
    body: Mapping[str, Any], models: Mapping[str, ModelSpec], *, allow_insecure_callbacks: bool
) -> CreateRequest:
    """The request, or an ApiError (400 with ``param``, or 404 for an unknown model)."""
    model = body.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model:
        raise ApiError.invalid("model", "Invalid model parameter: must be a non-empty string")
    spec = models.get(model)
    if spec is None:
        raise ApiError(404, "model_not_found", "Specified model not found", "not_found_error")

    if spec.rules is not None:
        prompt, given, image_urls = check_rules(body, spec.rules)
        duration = given if given in spec.durations else spec.default_duration
    else:
        prompt, duration, image_urls = _check_plain(body, spec)
    aspect_ratio = body.get("aspect_ratio")

    callback_url = body.get("callback_url")
    if callback_url is not None:
        _check_callback(callback_url, allow_insecure=allow_insecure_callbacks)

    return CreateRequest(
        spec=spec,
        prompt=prompt,
        duration=duration,
        aspect_ratio=aspect_ratio,
        image_urls=tuple(image_urls),
        callback_url=callback_url,
    )


def _check_plain(body: Mapping[str, Any], spec: ModelSpec) -> tuple[str, int, list[Any]]:
    """The checks of a model given without registry rules (``SimulatorConfig(models=...)``)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError.invalid("prompt", "Invalid prompt parameter: prompt is required")
    if len(prompt) > spec.prompt_max:
        raise ApiError.invalid(
            "prompt", f"Invalid prompt parameter: at most {spec.prompt_max} characters"
        )

    allowed = ", ".join(map(str, spec.durations))
    duration = body.get("duration", spec.default_duration)
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise ApiError.invalid("duration", f"Invalid duration parameter: must be one of {allowed}")
    if duration not in spec.durations:
        raise ApiError.invalid(
            "duration", f"Invalid duration parameter {duration}: must be one of {allowed}"
        )

    aspect_ratio = body.get("aspect_ratio")
    if aspect_ratio is not None and aspect_ratio not in spec.aspect_ratios:
        raise ApiError.invalid(
            "aspect_ratio",
            f"Invalid aspect_ratio parameter: must be one of {', '.join(spec.aspect_ratios)}",
        )

    image_urls = body.get("image_urls", [])
    if not isinstance(image_urls, list):
        raise ApiError.invalid("image_urls", "Invalid image_urls parameter: must be an array")
    if len(image_urls) > spec.max_images:
        raise ApiError.invalid(
            "image_urls", f"Invalid image_urls parameter: at most {spec.max_images} image(s)"
        )
    if any(_uri_host(url) is None for url in image_urls):
        raise ApiError.invalid("image_urls", "Invalid image_urls parameter: must be http(s) URLs")

    return prompt, duration, image_urls


def _check_callback(url: object, *, allow_insecure: bool) -> None:
    def bad(why: str) -> ApiError:
        return ApiError.invalid("callback_url", f"Invalid callback_url parameter: {why}")

    scheme_host = _uri_host(url)
    if scheme_host is None:
        raise bad("must be an absolute https URL")
    assert isinstance(url, str)  # _uri_host accepts only strings
    if len(url) > MAX_CALLBACK_URL:
        raise bad(f"at most {MAX_CALLBACK_URL} characters")
    if allow_insecure:
        return
    scheme, host = scheme_host
    if scheme != "https":
        raise bad("only https is allowed")
    if is_private_host(host):
        raise bad("private, loopback and link-local hosts are not allowed")
