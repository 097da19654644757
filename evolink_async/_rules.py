"""The documented rules of a create request: per-model specs (prices included), callback URLs,
private hosts. :mod:`evolink_async.models` re-exports the public names; its ``VideoRequest``
applies the rules when it is built.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Mapping
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import attrs

from .errors import InvalidRequestError

__all__ = [
    "CORE_FIELDS",
    "DEFAULT_PRICES",
    "MAX_CALLBACK_URL",
    "MODEL_SPECS",
    "ModelSpec",
    "RequestFields",
    "check_request",
    "is_loopback_host",
    "is_private_host",
    "validate_callback_url",
]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
#: the body fields a request has its own argument for (everything else goes to ``extra``)
CORE_FIELDS = frozenset(
    {"model", "prompt", "aspect_ratio", "duration", "image_urls", "callback_url"}
)
MAX_CALLBACK_URL = 2048
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


# ---------------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------------


def _host_name(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


def _ip_literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``name`` spells, if it is an IP literal (the legacy IPv4 spellings resolvers
    accept included: ``127.1``, ``2130706433``, ``0x7f.1``); IPv4-mapped IPv6 is unwrapped."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        if not _LEGACY_IPV4.match(name):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_private_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``) and any IP literal that is not globally
    routable: loopback, private, shared, link-local, multicast, reserved, unspecified.

    Brackets, a trailing dot, an IPv6 zone, IPv4-mapped IPv6 and the legacy IPv4 spellings
    (``127.1``, ``2130706433``, ``0x7f.1``) are seen through. Names are not resolved: a public
    name pointing at a private address passes.
    """
    name = _host_name(host)
    if _is_localhost(name):
        return True
    ip = _ip_literal(name)
    if ip is None:
        return False
    return bool(
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``) and loopback IP literals (``127.0.0.0/8``,
    ``::1``), spelled as :func:`is_private_host` reads them. Names are not resolved."""
    name = _host_name(host)
    if _is_localhost(name):
        return True
    ip = _ip_literal(name)
    return ip is not None and ip.is_loopback


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
    if is_private_host(host):
        raise InvalidRequestError(
            field, url, "must not point to a loopback, private or link-local host"
        )


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class ModelSpec:
    """The published rules of one model on POST /v1/videos/generations, and its published
    prices (credits by duration in seconds; empty when the service publishes none)."""

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
    #: duration in seconds → credits, as published
    prices: Mapping[int, float] = attrs.field(factory=dict)


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
            prices={4: 23.04, 8: 46.08, 12: 69.12},
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

DEFAULT_PRICES: Final[Mapping[str, Mapping[int, float]]] = {
    name: dict(spec.prices) for name, spec in MODEL_SPECS.items() if spec.prices
}
"""The only published prices: credits by model and duration in seconds."""


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


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


def check_request(req: RequestFields) -> None:
    """Raise :class:`InvalidRequestError` for the first rule ``req`` breaks: the shared rules,
    then those of its model when the model is known."""
    _check_common(req)
    spec = MODEL_SPECS.get(req.model)
    if spec is not None:
        _check_spec(spec, req)


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


def _check_common(req: RequestFields) -> None:
    if not isinstance(req.model, str) or not req.model.strip():
        raise InvalidRequestError("model", req.model, "must be a non-empty string")
    if not isinstance(req.prompt, str):
        raise InvalidRequestError("prompt", req.prompt, "must be a string")
    if not isinstance(req.extra, Mapping):
        raise InvalidRequestError("extra", req.extra, "must be a mapping of field names")
    for key in req.extra:
        if not isinstance(key, str):
            raise InvalidRequestError("extra", key, "field names must be strings")
        if key in CORE_FIELDS:
            raise InvalidRequestError(
                f"extra.{key}", req.extra[key], f"set {key} through its own argument"
            )
    if req.callback_url is not None:
        validate_callback_url(req.callback_url)
    _check_sendable(req)


_SENDABLE_RULE = (
    "must be sendable as JSON: text without lone surrogates, finite numbers, lists, objects"
)


def _check_sendable(req: RequestFields) -> None:
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


def _check_spec(spec: ModelSpec, req: RequestFields) -> None:
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
