"""``EvolinkClient``: the async client of the Evolink video API.

One client holds one aiohttp session, the API key, and the limits that every request of the
process shares (request rate, tasks in flight, credits), so a bot serving many users on one key
stays within the key's limits. Batches (``generate_many``) and handles (``submit``) go through
the dispatcher; this module only knows single requests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from ._codec import decode_credits, decode_task
from ._http import RetryEvent, RetryPolicy, Transport
from .download import DownloadResult, download_file
from .errors import DownloadError, InvalidRequestError, TaskFailedError
from .limits import ConcurrencyLimit, CreditBudget, Estimator, PriceTable, RateLimiter
from .models import Credits, Task, TaskStatus, VideoRequest
from .poller import Poller, PollPolicy

if TYPE_CHECKING:
    from .dispatcher import Batch, Dispatcher, Event, TaskHandle
    from .webhooks import CallbackReceiver

__all__ = ["DEFAULT_BASE_URL", "EvolinkClient"]

DEFAULT_BASE_URL = "https://api.evolink.ai"
_TASK_PREFIX = "task-unified-"


class EvolinkClient:
    """Async client for Evolink's video API. Use it as an async context manager::

        async with EvolinkClient() as client:            # key from $EVOLINK_API_KEY
            task = await client.create_video(prompt="A cat playing piano", duration=8)
            task = await client.wait(task)
            await client.download(task, "cat.mp4")

    Limits shared by every request of this client (``None`` = not limited locally):

    * ``rate``/``burst``: API requests per second (creates and polls alike); a 429 pauses all
      requests for its Retry-After and lowers the rate, which then recovers slowly.
    * ``max_in_flight``: tasks pending or processing at once (submit/generate_many).
    * ``budget``: credits that may be reserved in all; each create reserves its price first.

    ``time_scale`` compresses the task timeline for a simulator that runs faster than real
    time: the service's ``estimated_time`` and the poll plan (``PollPolicy``, in the service's
    seconds) are multiplied by it. Leave it at 1.0 for the real service. HTTP-level timing
    (``Retry-After``, request timeouts, ``rate``) is always in real seconds.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        rate: float | None = 2.0,
        burst: int = 1,
        max_in_flight: int | None = 16,
        budget: float | None = None,
        prices: PriceTable | None = None,
        estimator: Estimator | None = None,
        poll: PollPolicy | None = None,
        task_timeout: float | None = 1800.0,
        time_scale: float = 1.0,
        verify_ssl: bool = True,
        callbacks: CallbackReceiver | None = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("EVOLINK_API_KEY")
        if base_url is None:
            base_url = os.environ.get("EVOLINK_BASE_URL") or DEFAULT_BASE_URL
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.rate_limiter = RateLimiter.unlimited() if rate is None else RateLimiter(rate, burst)
        self.concurrency = (
            ConcurrencyLimit(max_in_flight, grow_every=60.0 * time_scale) if max_in_flight else None
        )
        self.budget = CreditBudget(budget) if budget is not None else None
        self.prices = prices or PriceTable()
        self.estimator = estimator
        self.poll_policy = poll or PollPolicy()
        self.task_timeout = task_timeout
        self.time_scale = time_scale
        self.callbacks = callbacks
        if callbacks is not None:
            callbacks.attach(self)
        self._retry_listeners: list[Callable[[RetryEvent], None]] = []
        self._transport = Transport(
            api_key=api_key,
            base_url=base_url,
            session=session,
            timeout=timeout,
            retry=retry,
            rate_gate=self.rate_limiter,
            verify_ssl=verify_ssl,
            on_retry=self._on_retry,
        )
        self._poller: Poller | None = None
        self._dispatcher: Dispatcher | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"<EvolinkClient base_url={self.base_url!r}"
            f" api_key=<{'set' if self.has_api_key else 'missing'}>"
            f" rate={self.rate_limiter.effective_rate:g}/s in_flight={self.in_flight}>"
        )

    async def __aenter__(self) -> EvolinkClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling, cancel and await everything the client started, close the session."""
        if self._closed:
            return
        self._closed = True
        if self._dispatcher is not None:
            await self._dispatcher.aclose()
        if self._poller is not None:
            await self._poller.aclose()
        await self._transport.aclose()

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def has_api_key(self) -> bool:
        return bool(self._transport._api_key)

    @property
    def transport(self) -> Transport:
        """The HTTP layer (request counters, retry policy)."""
        return self._transport

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on first use when none was given)."""
        return self._transport.session

    @property
    def in_flight(self) -> int:
        return self._poller.tracked if self._poller is not None else 0

    def add_retry_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        self._retry_listeners.append(listener)

    def remove_retry_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        self._retry_listeners.remove(listener)

    def _on_retry(self, event: RetryEvent) -> None:
        for listener in list(self._retry_listeners):
            listener(event)

    # -- single requests ---------------------------------------------------------------------

    async def create_video(self, request: VideoRequest | None = None, /, **fields: Any) -> Task:
        """POST /v1/videos/generations. Give a ``VideoRequest`` or its fields as keywords
        (``prompt=...``, ``duration=...``; unknown keywords go to ``extra``).

        Raises ``InvalidRequestError`` before sending anything when a field breaks a rule. When
        the request may have reached the service but no answer came, raises
        ``APIConnectionError``/``APITimeoutError`` with ``maybe_created=True``, never retrying.
        """
        if request is None:
            request = VideoRequest.from_json(fields)
        elif fields:
            raise TypeError("pass either a VideoRequest or keyword fields, not both")
        elif not isinstance(request, VideoRequest):
            raise TypeError(f"expected a VideoRequest, got {type(request).__name__}")
        body = request.to_json()
        if request.callback_url is None and self.callbacks is not None:
            # set on the wire only: the secret URL stays out of requests, journals and logs
            body["callback_url"] = self.callbacks.callback_url
        data = await self._transport.request(
            "POST", "/v1/videos/generations", json=body, create=True, kind="create"
        )
        return decode_task(data)

    async def get_task(self, task_id: str) -> Task:
        """GET /v1/tasks/{task_id}."""
        return decode_task(await self._get_task_json(task_id))

    async def _get_task_json(self, task_id: str) -> Any:
        if not isinstance(task_id, str) or not task_id.startswith(_TASK_PREFIX):
            raise InvalidRequestError("task_id", task_id, f"must start with {_TASK_PREFIX!r}")
        if "/" in task_id or "?" in task_id or "#" in task_id:
            raise InvalidRequestError("task_id", task_id, "must not contain '/', '?' or '#'")
        return await self._transport.request("GET", f"/v1/tasks/{task_id}", kind="task")

    async def get_credits(self) -> Credits:
        """GET /v1/credits: the key's and the account's balance."""
        return decode_credits(await self._transport.request("GET", "/v1/credits", kind="credits"))

    # -- waiting and downloading -------------------------------------------------------------

    @property
    def poller(self) -> Poller:
        """The one poller of this client (started on demand, stopped when idle)."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._poller is None:
            self._poller = Poller(
                self.get_task,
                self.poll_policy,
                time_scale=self.time_scale,
                callbacks=self.callbacks is not None,
            )
        return self._poller

    async def wait(
        self,
        task: Task | str,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Task], object] | None = None,
    ) -> Task:
        """Wait until the task is completed and return it.

        Polls through the client's one poller, planned from ``estimated_time`` and progress.
        Raises ``TaskFailedError`` if it fails and ``TaskTimeoutError`` when ``timeout``
        (seconds; default the client's ``task_timeout``) passes first.
        """
        if isinstance(task, str):
            task = Task(id=task, status=TaskStatus.PENDING, raw_status="pending")
        limit = self.task_timeout if timeout is None else timeout
        handle = self.poller.track(task, timeout=limit, on_update=on_progress)
        result = await handle.wait()
        if isinstance(result, BaseException):
            raise result
        if result.status is TaskStatus.FAILED:
            raise TaskFailedError(result)
        return result

    async def download(
        self,
        task_or_url: Task | str,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = 2 * 1024**3,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> DownloadResult:
        """Download a completed task's video (or a result URL) to ``path``.

        Streamed to a temporary file beside ``path`` and renamed when complete and checked
        against Content-Length: there is never a partial file at ``path``. Retried with Range
        resume. The API key is not sent to the file host.
        """
        if isinstance(task_or_url, Task):
            url = task_or_url.video_url
            if url is None:
                raise DownloadError(
                    task_or_url.id, f"task is {task_or_url.raw_status or 'not completed'}, no video"
                )
        else:
            url = task_or_url
        return await download_file(
            self._transport.session, url, Path(path), max_bytes=max_bytes, on_progress=on_progress
        )

    # -- many tasks: the dispatcher ----------------------------------------------------------

    @property
    def dispatcher(self) -> Dispatcher:
        from .dispatcher import Dispatcher  # noqa: PLC0415 - the client layer sits below it

        if self._closed:
            raise RuntimeError("the client is closed")
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self)
        return self._dispatcher

    async def submit(
        self,
        request: VideoRequest | Mapping[str, Any] | str,
        *,
        timeout: float | None = None,
        max_attempts: int = 3,
        on_event: Callable[[Event], object] | None = None,
    ) -> TaskHandle:
        """Admit one request through the client's limits and return a handle at once after
        the task was created (``await handle`` or ``handle.result()`` for the final task)."""
        return await self.dispatcher.submit(
            request, timeout=timeout, max_attempts=max_attempts, on_event=on_event
        )

    def generate_many(
        self,
        requests: Iterable[VideoRequest | Mapping[str, Any] | str]
        | AsyncIterable[VideoRequest | Mapping[str, Any] | str],
        *,
        max_in_flight: int | None = None,
        rate: float | None = None,
        budget: float | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        on_event: Callable[[Event], object] | None = None,
    ) -> Batch:
        """Generate many videos; yield one ``Outcome`` per request as each finishes.

        ``requests`` is pulled lazily (a sync or async iterable of ``VideoRequest``, dicts with
        the API's field names, or prompt strings). The client's limits always apply;
        ``max_in_flight``, ``rate`` and ``budget`` limit this batch further. Retryable task
        failures are resubmitted up to ``max_attempts``; an ambiguous create is reported
        ``unknown``, never resubmitted. Breaking out of the loop stops everything cleanly.
        """
        return self.dispatcher.generate_many(
            requests,
            max_in_flight=max_in_flight,
            rate=rate,
            budget=budget,
            max_attempts=max_attempts,
            timeout=timeout,
            on_event=on_event,
        )
