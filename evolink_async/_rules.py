"""The documented rules of a create request: the model registry (its data in
:mod:`._model_table`, its checks in :mod:`._model_checks`), callback URLs, private hosts.
:mod:`evolink_async.models` re-exports the public names; its ``VideoRequest`` applies the rules
when it is built.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from ._model_checks import RequestFields, check_shared, check_spec
from ._model_spec import TYPED_FIELDS, ModelSpec
from ._model_table import LISTED_MODELS, MODEL_SPECS
from .errors import InvalidRequestError

__all__ = [
    "CORE_FIELDS",
    "DEFAULT_PRICES",
    "LISTED_MODELS",
    "MAX_CALLBACK_URL",
    "MODEL_SPECS",
    "ModelSpec",
    "RequestFields",
    "check_request",
    "is_loopback_host",
    "is_private_host",
    "validate_callback_url",
]

logger = logging.getLogger("evolink_async")

#: the body fields a request has its own argument for (everything else goes to ``extra``)
CORE_FIELDS = TYPED_FIELDS
DEFAULT_PRICES: Final[Mapping[str, Mapping[int, float]]] = {
    name: dict(spec.prices) for name, spec in MODEL_SPECS.items() if spec.prices
}
"""The only published prices: credits by model and duration in seconds."""
_warned_models: set[str] = set()
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


def check_request(req: RequestFields) -> None:
    """Raise :class:`InvalidRequestError` for the first rule ``req`` breaks: the rules every
    request shares, then those of its model. A model the registry does not know gets the
    shared checks (non-empty prompt within 5000 characters, positive integer duration, at most
    30 image URLs) and a warning, once per model name."""
    _check_common(req)
    spec = MODEL_SPECS.get(req.model)
    if spec is not None:
        check_spec(spec, req)
        return
    check_shared(req)
    if req.model not in LISTED_MODELS and req.model not in _warned_models:
        _warned_models.add(req.model)
        logger.warning(
            "model %r is not in the registry: sent with the shared checks only", req.model
        )


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
        ("image_start", req.image_start),
        ("image_end", req.image_end),
        *((f"video_urls[{i}]", url) for i, url in enumerate(req.video_urls)),
        *((f"audio_urls[{i}]", url) for i, url in enumerate(req.audio_urls)),
        ("model_params", None if req.model_params is None else dict(req.model_params)),
        ("callback_url", req.callback_url),
        *((f"extra.{key}", {key: value}) for key, value in req.extra.items()),
    ]
    for field, value in values:
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            shown = value[field.removeprefix("extra.")] if field.startswith("extra.") else value
            raise InvalidRequestError(field, shown, _SENDABLE_RULE) from None
