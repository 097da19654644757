"""The service's HTTP error answers, as one exception the handlers turn into a response.

Body: ``{"error": {"code", "message", "type", "param"?, "fallback_suggestion"?}}``. The
documented string codes are used where the docs give one (``invalid_parameter``,
``invalid_task_id``); 401, 402 and 5xx carry the older integer code (the HTTP status), so a
client meets both forms, as it does on the real service.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "error_body"]

BILLING_URL = "https://evolink.ai/dashboard/billing"


def error_body(
    code: int | str,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    fallback_suggestion: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The documented error body (``details``: the quota figures of a 402)."""
    error: dict[str, Any] = {"code": code, "message": message, "type": type_, **(details or {})}
    if param is not None:
        error["param"] = param
    if fallback_suggestion is not None:
        error["fallback_suggestion"] = fallback_suggestion
    return {"error": error}


class ApiError(Exception):
    """An HTTP error answer of the simulated service."""

    def __init__(
        self,
        status: int,
        code: int | str,
        message: str,
        type_: str,
        *,
        param: str | None = None,
        fallback_suggestion: str | None = None,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(
            code,
            message,
            type_,
            param=param,
            fallback_suggestion=fallback_suggestion,
            details=details,
        )
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}

    @classmethod
    def invalid(cls, param: str, message: str) -> ApiError:
        """400 for one bad field."""
        return cls(400, "invalid_parameter", message, "invalid_request_error", param=param)

    @classmethod
    def unauthorized(cls) -> ApiError:
        return cls(401, 401, "Invalid or expired token", "authentication_error")

    @classmethod
    def insufficient_quota(cls, price: float, remaining: float) -> ApiError:
        return cls(
            402,
            402,
            "Insufficient quota",
            "insufficient_quota_error",
            fallback_suggestion=(
                f"This task needs {price} credits and {remaining} remain; top up at {BILLING_URL}"
            ),
            details={"estimated_credits": price, "account_balance_credits": remaining},
        )

    @classmethod
    def rate_limited(cls, retry_after: int) -> ApiError:
        return cls(
            429,
            "rate_limit_exceeded",
            f"Rate limit exceeded, retry after {retry_after} seconds",
            "rate_limit_error",
            retry_after=retry_after,
        )

    @classmethod
    def too_many_concurrent(cls, limit: int, retry_after: int) -> ApiError:
        return cls(
            429,
            "concurrency_limit_exceeded",
            f"Too many concurrent tasks (limit {limit}), retry after {retry_after} seconds",
            "rate_limit_error",
            retry_after=retry_after,
        )
