"""A non-2xx answer of the service as its exception: the class by error code, then by
status (402 sub-codes by code first); the message, request id and ``Retry-After`` read from the
body and the headers, everything shown passed through the redactor."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._codec import loads_json
from ._redact import redact, redact_bytes, redact_headers
from ._retry import parse_retry_after
from .errors import (
    QUOTA_DETAILS,
    APIError,
    AuthenticationError,
    BadRequestError,
    DecodeError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    NotFoundError,
    PaidOutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    quota_error_class,
)

__all__ = ["error_from_response"]


_STATUS_CLASSES: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
}
# Classified by the error code before the status (the gateway's status for these is not known).
_CODE_CLASSES: Mapping[str, type[APIError]] = {
    "idempotency_conflict": IdempotencyConflictError,
    "paid_outcome_unknown": PaidOutcomeUnknownError,
}


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace")
    text = re.sub(r"<[^>]*>", " ", text)  # HTML from a proxy: keep the words
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name (a plain dict of headers too)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value or None


# "... (request id: abc)" at the end of a gateway message: the id, moved to its attribute
_MESSAGE_REQUEST_ID = re.compile(r"\s*\(request id:?\s*([^()\s]+)\)\s*$", re.IGNORECASE)


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> APIError:
    """Map a non-2xx answer to its exception class; HTML or empty bodies keep the right class.

    The request id comes from ``error.request_id``, else the ``x-request-id`` header, else
    ``x-oneapi-request-id`` (else the ``(request id: ...)`` a message may end with);
    ``suggestion`` from ``error.suggestion``. Everything shown passes the redactor.
    """
    body = redact_bytes(body)
    headers = redact_headers(headers or {})
    fields: dict[str, Any] = {}
    message = ""
    try:
        data = loads_json(body, "error body") if body else None
    except DecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or "")
        code = err.get("code")
        fields["code"] = (
            code if isinstance(code, (int, str)) and not isinstance(code, bool) else None
        )
        for name in ("type", "param", "fallback_suggestion", "suggestion", "request_id"):
            value = err.get(name)
            fields[name] = redact(value) if isinstance(value, str) and value else None
    elif isinstance(data, dict) and isinstance(data.get("message"), str):
        message = data["message"]
    if not message:
        message = _excerpt(body) if body else "(empty body)"
    message = redact(message)
    in_message = _MESSAGE_REQUEST_ID.search(message)
    if in_message:
        message = message[: in_message.start()]
    fields["request_id"] = (
        fields.get("request_id")
        or _header(headers, "x-request-id")
        or _header(headers, "x-oneapi-request-id")
        or (in_message.group(1) if in_message else None)
    )
    cls = _CODE_CLASSES.get(str(fields.get("code"))) or _STATUS_CLASSES.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    quota = quota_error_class(fields.get("code"), status)
    if quota is not None:  # 402 sub-codes: by error.code first, status second
        details = {k: err[k] for k in QUOTA_DETAILS if isinstance(err, dict) and k in err}
        return quota(status, message, details=details, **fields)
    if cls in (RateLimitError, ServerError, PaidOutcomeUnknownError):
        retry_after = parse_retry_after(_header(headers, "Retry-After"), message)
        return cls(status, message, retry_after=retry_after, **fields)
    return cls(status, message, **fields)
