"""HTTP transport: one aiohttp session, safe retries, error mapping, redaction.

Retry rules (the "never pay twice" rule of the design):

* GET requests are idempotent: retried on connection errors, timeouts, 429 and 5xx.
* A create (POST /v1/videos/generations) is retried only when the service certainly did not
  take it: the connection could not be opened, or it answered 429, 500, 502 or 503. When the
  request may have reached the service and no answer came (a timeout, a connection dropped after
  sending, a 504 from a gateway), ``APIConnectionError``/``APITimeoutError`` is raised with
  ``maybe_created=True`` and the request is **not** retried.

Waits are exponential with full jitter, and at least what ``Retry-After`` (seconds or an HTTP
date) or a "retry after N seconds" message asks. ``set_testing(True)`` zeroes every wait.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import aiohttp
import attrs

from . import __about__
from ._codec import loads_json
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DecodeError,
    EvolinkError,
    InsufficientCreditsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
)

__all__ = [
    "RateGate",
    "RetryEvent",
    "RetryPolicy",
    "Transport",
    "error_from_response",
    "parse_retry_after",
    "set_testing",
]

logger = logging.getLogger("evolink_async")

_TESTING = False


def set_testing(enabled: bool) -> None:
    """Zero every retry wait (for tests of code that uses the SDK). Affects all clients."""
    global _TESTING  # noqa: PLW0603 - a process-wide testing switch, like stamina's
    _TESTING = enabled


@attrs.frozen
class RetryPolicy:
    """How requests are retried.

    ``attempts`` counts the first try; ``wait_initial`` doubles each retry up to ``wait_max``;
    ``jitter`` is the randomized fraction of each wait (1.0 = full jitter); a ``Retry-After``
    longer than ``max_retry_after`` is not waited for: the error is raised instead.
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    wait_initial: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    wait_max: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(
        default=1.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    max_retry_after: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1-based), jitter applied."""
        if _TESTING:
            return 0.0
        base = min(self.wait_max, self.wait_initial * (2.0 ** (retry - 1)))
        r: float = (rng or random).random()
        return base * (1.0 - self.jitter) + base * self.jitter * r


class RateGate(Protocol):
    """What the transport needs of a rate limiter (``limits.RateLimiter`` is one)."""

    async def acquire(self) -> None: ...

    def on_rate_limited(self, retry_after: float | None) -> None: ...


@attrs.frozen
class RetryEvent:
    """Told to ``on_retry`` before a retry: which request, which attempt failed, and why."""

    method: str
    path: str
    attempt: int
    error: EvolinkError
    wait: float


_RETRY_MSG = re.compile(r"retry\s+after\s+(\d+(?:\.\d+)?)\s*(?:s\b|sec|second)", re.IGNORECASE)


def parse_retry_after(header: str | None, message: str | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date) or an error message."""
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    if message:
        match = _RETRY_MSG.search(message)
        if match:
            return float(match.group(1))
    return None


_STATUS_CLASSES: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
}


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace")
    text = re.sub(r"<[^>]*>", " ", text)  # HTML from a proxy: keep the words
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> APIError:
    """Map a non-2xx answer to its exception class; HTML or empty bodies keep the right class."""
    headers = headers or {}
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
        for name in ("type", "param", "fallback_suggestion"):
            value = err.get(name)
            fields[name] = value if isinstance(value, str) else None
    elif isinstance(data, dict) and isinstance(data.get("message"), str):
        message = data["message"]
    if not message:
        message = _excerpt(body) if body else "(empty body)"
    request_id = headers.get("x-request-id") or headers.get("X-Request-Id")
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    if cls in (RateLimitError, ServerError):
        retry_after = parse_retry_after(headers.get("Retry-After"), message)
        return cls(status, message, request_id=request_id, retry_after=retry_after, **fields)
    return cls(status, message, request_id=request_id, **fields)


# A create is retried on these statuses only: the service said no, it took nothing.
_CREATE_RETRY_STATUSES = frozenset({429, 500, 502, 503})
_GET_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Transport:
    """One aiohttp session, the API key, the retry policy and the shared rate gate."""

    __slots__ = (
        "_api_key",
        "_owns_session",
        "_rng",
        "_session",
        "base_url",
        "counters",
        "max_response_bytes",
        "on_retry",
        "rate_gate",
        "retry",
        "timeout",
        "user_agent",
        "verify_ssl",
    )

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        rate_gate: RateGate | None = None,
        verify_ssl: bool = True,
        max_response_bytes: int = 4 * 1024 * 1024,
        on_retry: Callable[[RetryEvent], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.rate_gate = rate_gate
        self.verify_ssl = verify_ssl
        self.max_response_bytes = max_response_bytes
        self.on_retry = on_retry
        self.user_agent = f"evolink-async/{__about__.__version__}"
        self._rng = random.Random(seed)
        #: requests made, by "METHOD path-kind status" (status "error" when no answer)
        self.counters: Counter[str] = Counter()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"<Transport base_url={self.base_url!r} api_key=<{key}> requests={self.requests}>"

    @property
    def requests(self) -> int:
        """API requests sent so far (every attempt counts)."""
        return sum(self.counters.values())

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session given to the client is closed")
            connector = aiohttp.TCPConnector(limit=100, ssl=self.verify_ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        if not self._api_key:
            raise AuthenticationError(
                401, "no API key: pass api_key= or set EVOLINK_API_KEY", type="authentication_error"
            )
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not _TESTING:
            await asyncio.sleep(seconds)

    async def request(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        json: Any = None,
        create: bool = False,
        kind: str | None = None,
    ) -> Any:
        """Send one API request with retries; return the decoded JSON body.

        ``create=True`` applies the never-pay-twice rule (see the module docstring).
        """
        headers = self._headers()
        url = self.base_url + path
        kind = kind or path
        retry_statuses = _CREATE_RETRY_STATUSES if create else _GET_RETRY_STATUSES
        attempt = 0
        while True:
            attempt += 1
            if self.rate_gate is not None:
                await self.rate_gate.acquire()
            start = time.monotonic()
            error: EvolinkError
            try:
                status, resp_headers, body = await self._send(method, url, headers, json)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # The connection was never opened: nothing reached the service.
                self.counters[f"{method} {kind} error"] += 1
                error = _connection_error(exc, maybe_created=False)
                retryable = True
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.counters[f"{method} {kind} error"] += 1
                error = _connection_error(exc, maybe_created=create)
                retryable = not create
            else:
                self.counters[f"{method} {kind} {status}"] += 1
                logger.debug(
                    "%s %s -> %s attempt=%d elapsed=%.3fs",
                    method,
                    path,
                    status,
                    attempt,
                    time.monotonic() - start,
                )
                if self._api_key:  # a server echoing the key must not put it in an error
                    body = body.replace(self._api_key.encode(), b"[redacted]")
                if 200 <= status < 300:
                    if len(body) > self.max_response_bytes:
                        raise DecodeError(
                            f"{method} {path}: response body over {self.max_response_bytes} bytes"
                        )
                    return loads_json(body, f"{method} {path} response") if body else None
                error = error_from_response(status, body, resp_headers)
                if create and status == 504:
                    error = APITimeoutError(
                        f"{method} {path}: gateway timeout (HTTP 504): {error.message}",
                        maybe_created=True,
                    )
                    retryable = False
                else:
                    retryable = status in retry_statuses
                if isinstance(error, RateLimitError) and self.rate_gate is not None:
                    ra = error.retry_after
                    self.rate_gate.on_rate_limited(ra)
            if isinstance(error, APIConnectionError):
                logger.debug(
                    "%s %s -> %s attempt=%d elapsed=%.3fs",
                    method,
                    path,
                    type(error).__name__,
                    attempt,
                    time.monotonic() - start,
                )
            if not retryable or attempt >= self.retry.attempts:
                raise error
            wait = self.retry.backoff(attempt, self._rng)
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                if retry_after > self.retry.max_retry_after:
                    raise error
                if isinstance(error, RateLimitError) and self.rate_gate is not None:
                    wait = 0.0  # the gate itself holds every request until Retry-After passed
                else:
                    wait = max(wait, retry_after)
            if self.on_retry is not None:
                self.on_retry(RetryEvent(method, path, attempt, error, wait))
            logger.debug("%s %s retry %d in %.3fs: %s", method, path, attempt, wait, error)
            await self._sleep(wait)

    async def _send(
        self, method: str, url: str, headers: dict[str, str], json: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 30.0))
        async with self.session.request(
            method, url, json=json, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            # read(n) returns what has arrived, up to n: read on until the end or the cap + 1
            limit = self.max_response_bytes + 1
            body = bytearray()
            while len(body) < limit:
                chunk = await resp.content.read(limit - len(body))
                if not chunk:
                    break
                body += chunk
            return resp.status, resp.headers, bytes(body)


def _connection_error(exc: BaseException, *, maybe_created: bool) -> APIConnectionError:
    what = type(exc).__name__
    detail = str(exc)
    text = f"{what}: {detail}" if detail else what
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return APITimeoutError(f"request timed out ({text})", maybe_created=maybe_created)
    return APIConnectionError(f"connection failed ({text})", maybe_created=maybe_created)
