"""HTTP transport: one aiohttp session, safe retries, error mapping, redaction.

Retry rules (the "never pay twice" rule of the design):

* GET requests are idempotent: retried on connection errors, timeouts, 429 and 5xx.
* A create (POST /v1/videos/generations) with an idempotency key (``Idempotency-Key`` and
  ``X-Evo-Run-Id``) is retried **with the same key** when its outcome is unknown: a timeout or
  a connection dropped after sending, any 5xx (520/522/524 included), ``paid_outcome_unknown``;
  the gateway answers a repeat with the original task (``Idempotency-Replayed: true``). It is
  also retried when the service certainly took nothing: the connection could not be opened
  (``ServiceUnreachableError`` once the retries are spent), or a 429.
  ``idempotency_conflict`` is raised at once (``IdempotencyConflictError``).
* A create without a key is retried only when the service certainly took nothing (no
  connection, 429). When it may have been taken (no answer, any 5xx), the error is raised with
  ``maybe_created=True`` and the request is **not** retried.

Waits come from the one retry engine (``_retry``): exponential with full jitter, and at least
what ``Retry-After`` (seconds or an HTTP date) or a "retry after N seconds" message asks.
``set_testing(True)`` zeroes every wait. Every request first passes the gate of the limits, which
is told of every 429 (it pauses the rate and shrinks concurrency itself).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, Protocol

import aiohttp
import attrs
from yarl import URL

from . import __about__
from ._codec import loads_json
from ._error_answers import error_from_response
from ._redact import protect, redact, redact_bytes
from ._request_url import RequestURLs
from ._retry import RetryPolicy, is_testing
from ._unreachable import NEVER_OPENED, OpenedConnector, unreachable_error
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    DecodeError,
    EvolinkError,
    PaidOutcomeUnknownError,
    RateLimitError,
    ServerError,
)

__all__ = [
    "Gate",
    "RetryEvent",
    "Transport",
    "error_from_response",
]

logger = logging.getLogger("evolink_async")


class Gate(Protocol):
    """What the transport needs of the limits (``limits.Limits`` is one): a gate every request
    passes, told of every 429."""

    async def acquire(self) -> None: ...

    def take_now(self) -> bool: ...

    def on_rate_limited(self, error: RateLimitError) -> None: ...


@attrs.frozen
class RetryEvent:
    """Told to ``on_retry`` before a retry: which request, which attempt failed, and why."""

    method: str
    path: str
    attempt: int
    error: EvolinkError
    wait: float


_GET_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@attrs.define(slots=True)
class _Call:
    """One API request as the retry loop sees it."""

    method: Literal["GET", "POST"]
    path: str
    url: str | URL
    kind: str
    json: Any
    create: bool
    headers: dict[str, str]
    #: the create's idempotency key (None: a create that must never be sent twice)
    key: str | None = None
    #: the gateway answered with the original response of this key
    replayed: bool = False
    #: an attempt of this create may have been taken (a later refused one does not undo it)
    maybe_taken: bool = False


class Transport:
    """One aiohttp session, the API key, the retry policy and the gate of the limits."""

    __slots__ = (
        "__weakref__",
        "_api_key",
        "_connect_listeners",
        "_headers_made",
        "_owns_session",
        "_rng",
        "_session",
        "_session_headers",
        "_timeout_made",
        "_urls",
        "base_url",
        "connected",
        "counters",
        "gate",
        "max_response_bytes",
        "on_headers",
        "on_retry",
        "replays",
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
        gate: Gate | None = None,
        verify_ssl: bool = True,
        max_response_bytes: int = 4 * 1024 * 1024,
        on_retry: Callable[[RetryEvent], None] | None = None,
        on_headers: Callable[[Mapping[str, str]], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self._api_key = api_key
        protect(self, api_key)
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.gate = gate
        self.verify_ssl = verify_ssl
        self.max_response_bytes = max_response_bytes
        self.on_retry = on_retry
        #: shown the headers of every answer (the client reads a simulator's time scale there)
        self.on_headers = on_headers
        self.user_agent = f"evolink-async/{__about__.__version__}"
        self._rng = random.Random(seed)
        #: requests made, by "METHOD path-kind status" (status "error" when no answer)
        self.counters: Counter[str] = Counter()
        #: creates the gateway answered as a replay of an earlier request with the same key
        self.replays = 0
        #: a connection was opened (or, on a session given by the caller, an attempt got past
        #: connecting): the service can be reached
        self.connected = False
        self._connect_listeners: list[Callable[[], None]] = []
        self._headers_made: tuple[str, dict[str, str]] | None = None
        #: the headers an owned session sends by default (None: sent with each request)
        self._session_headers: dict[str, str] | None = None
        self._timeout_made: aiohttp.ClientTimeout | None = None
        self._urls = RequestURLs(self.base_url)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"<Transport base_url={self.base_url!r} api_key=<{key}> requests={self.requests}>"

    @property
    def has_api_key(self) -> bool:
        """Whether an API key was given (its value is never shown)."""
        return bool(self._api_key)

    @property
    def requests(self) -> int:
        """API requests sent so far (every attempt counts)."""
        return sum(self.counters.values())

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session given to the client is closed")
            connector = OpenedConnector(self._opened, limit=100, ssl=self.verify_ssl)
            # the common headers go with every request by default, merged once per request
            # by aiohttp instead of twice; a request with other headers still sends its own
            self._session_headers = self._headers() if self._api_key else None
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                headers=self._session_headers,
            )
        return self._session

    def _opened(self) -> None:
        if not self.connected:
            self._connected_now()

    def when_connected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once, when a connection to the service is first opened (or, on
        a session given by the caller, an attempt first gets past connecting); never when
        one was opened already (``connected``)."""
        self._connect_listeners.append(listener)

    def _connected_now(self) -> None:
        self.connected = True
        listeners, self._connect_listeners = self._connect_listeners, []
        for listener in listeners:
            listener()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        """The headers of every request, made once (aiohttp copies them; a create copies
        them before adding its own)."""
        made = self._headers_made
        if made is not None and made[0] is self.user_agent:
            return made[1]
        if not self._api_key:
            raise AuthenticationError(
                401, "no API key: pass api_key= or set EVOLINK_API_KEY", type="authentication_error"
            )
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        self._headers_made = (self.user_agent, headers)
        return headers

    def _url(self, path: str) -> str | URL:
        urls = self._urls
        if urls.base is not self.base_url:  # base_url was changed
            urls = self._urls = RequestURLs(self.base_url)
        return urls.join(path)

    def _timeout(self) -> aiohttp.ClientTimeout:
        made = self._timeout_made
        if made is None or made.total != self.timeout:
            made = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 30.0))
            self._timeout_made = made
        return made

    def request(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        json: Any = None,
        create: bool = False,
        kind: str | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Send one API request with retries; await it for the decoded JSON body (the retry
        loop's own coroutine: one frame less on every resumption of the request).

        ``create=True`` applies the never-pay-twice rule of a create without a key (see the
        module docstring).
        """
        try:
            headers = self._headers()
        except AuthenticationError as exc:
            return _fail(exc)  # raised when awaited, as from any coroutine
        call = _Call(method, path, self._url(path), kind or path, json, create, headers)
        return self._run(call)

    async def create(
        self, path: str, *, json: Any, idempotency_key: str | None, kind: str = "create"
    ) -> tuple[Any, bool]:
        """POST a paid create; return the decoded body and whether the gateway replayed it.

        With ``idempotency_key`` the request carries ``Idempotency-Key`` and ``X-Evo-Run-Id``
        and an unknown outcome is retried with the same key; without, never.
        """
        headers = dict(self._headers())
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
            headers["X-Evo-Run-Id"] = idempotency_key
        call = _Call("POST", path, self._url(path), kind, json, True, headers, idempotency_key)
        body = await self._run(call)
        if call.replayed:
            self.replays += 1
            logger.info("%s %s: the gateway replayed the original answer", "POST", path)
        return body, call.replayed

    async def _run(self, call: _Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            gate = self.gate
            # a read takes a free token without a checkpoint; a create always checks that
            # its caller was not cancelled before it may be sent
            if gate is not None and (call.create or not gate.take_now()):
                await gate.acquire()
            value, retryable = await self._attempt(call, attempt)
            if retryable is None:
                return value
            error: EvolinkError = value
            call.maybe_taken = call.maybe_taken or bool(getattr(error, "maybe_created", False))
            if not retryable or attempt >= self.retry.attempts:
                raise error
            wait = self._wait_before_retry(error, attempt)
            if self.on_retry is not None:
                self.on_retry(RetryEvent(call.method, call.path, attempt, error, wait))
            logger.debug(
                "%s %s retry %d in %.3fs: %s", call.method, call.path, attempt, wait, error
            )
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not is_testing():
            await asyncio.sleep(seconds)

    def _wait_before_retry(self, error: EvolinkError, attempt: int) -> float:
        """The wait before the next try; raises ``error`` when its Retry-After is too long."""
        wait = self.retry.backoff(attempt, self._rng)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.retry.max_retry_after:
                raise error
            if isinstance(error, RateLimitError) and self.gate is not None:
                wait = 0.0  # the gate itself holds every request until Retry-After passed
            else:
                wait = max(wait, retry_after)
        return wait

    async def _attempt(self, call: _Call, attempt: int) -> tuple[Any, bool | None]:
        """One try: ``(decoded body, None)``, or ``(error, whether it may be retried)``."""
        start = time.monotonic()
        session = self.session
        headers = None if call.headers is self._session_headers else call.headers
        try:
            async with session.request(
                call.method,
                call.url,
                json=call.json,
                headers=headers,
                timeout=self._timeout(),
                allow_redirects=False,
            ) as resp:
                status, resp_headers = resp.status, resp.headers
                length = resp.content_length
                if length is not None and length <= self.max_response_bytes:
                    body = await resp.read()  # a declared length within the cap: at once
                else:
                    body = await _read_capped(resp, self.max_response_bytes + 1)
            if self.on_headers is not None:
                self.on_headers(resp_headers)
        except NEVER_OPENED as exc:  # refused, DNS, TLS: this attempt reached nothing
            self.counters[f"{call.method} {call.kind} error"] += 1
            error: EvolinkError = unreachable_error(
                exc, str(call.url), maybe_created=call.maybe_taken
            )
            _log(call, type(error).__name__, attempt, start)
            return error, True
        except aiohttp.ConnectionTimeoutError as exc:  # never opened either
            self.counters[f"{call.method} {call.kind} error"] += 1
            error = _connection_error(exc, maybe_created=False)
            _log(call, type(error).__name__, attempt, start)
            return error, True
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if not self.connected:
                self._connected_now()
            self.counters[f"{call.method} {call.kind} error"] += 1
            error = _connection_error(exc, maybe_created=call.create)
            _log(call, type(error).__name__, attempt, start)
            # sent, no answer: a create may have been taken; only its own key may repeat it
            return error, not call.create or call.key is not None
        if not self.connected:
            self._connected_now()
        self.counters[f"{call.method} {call.kind} {status}"] += 1
        _log(call, status, attempt, start)
        body = redact_bytes(body)  # a server echoing the key must not put it anywhere
        if 200 <= status < 300:
            if len(body) > self.max_response_bytes:
                raise DecodeError(
                    f"{call.method} {call.path}: response body over {self.max_response_bytes} bytes"
                )
            label = f"{call.method} {call.path} response"
            if call.create:
                call.replayed = resp_headers.get("Idempotency-Replayed", "").lower() == "true"
            return (loads_json(body, label) if body else None), None
        return _answer_error(call, status, body, resp_headers, self.gate)


def _answer_error(
    call: _Call, status: int, body: bytes, headers: Mapping[str, str], gate: Gate | None
) -> tuple[EvolinkError, bool]:
    """An error answer, and whether the request may be sent again (the gate is told of a
    429)."""
    error = error_from_response(status, body, headers)
    if isinstance(error, RateLimitError) and gate is not None:
        gate.on_rate_limited(error)
    if not call.create:
        return error, status in _GET_RETRY_STATUSES
    return _create_error(call, status, error)


def _log(call: _Call, result: object, attempt: int, start: float) -> None:
    if not logger.isEnabledFor(logging.DEBUG):
        return
    logger.debug(
        "%s %s -> %s attempt=%d elapsed=%.3fs",
        call.method,
        call.path,
        result,
        attempt,
        time.monotonic() - start,
    )


async def _fail(error: BaseException) -> Any:
    raise error


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, up to ``limit`` bytes (no length declared, or one over the cap): ``read(n)``
    returns what has arrived, up to n, so read on until the end or the limit."""
    body = bytearray()
    while len(body) < limit:
        chunk = await resp.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _create_error(call: _Call, status: int, error: APIError) -> tuple[EvolinkError, bool]:
    """A create's error answer, and whether it may be sent again: a 429 always (nothing was
    taken); an unknown outcome (5xx, ``paid_outcome_unknown``) only with its key."""
    if status == 429 and not isinstance(error, PaidOutcomeUnknownError):
        return error, True
    if status == 504:
        timeout = APITimeoutError(
            f"{call.method} {call.path}: gateway timeout (HTTP 504): {error.message}",
            maybe_created=True,
        )
        return timeout, call.key is not None
    if isinstance(error, ServerError):  # a 5xx, or paid_outcome_unknown whatever its status
        error.maybe_created = True
        return error, call.key is not None
    return error, False


def _connection_error(exc: BaseException, *, maybe_created: bool) -> APIConnectionError:
    what = type(exc).__name__
    detail = redact(str(exc))
    text = f"{what}: {detail}" if detail else what
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return APITimeoutError(f"request timed out ({text})", maybe_created=maybe_created)
    return APIConnectionError(f"connection failed ({text})", maybe_created=maybe_created)
