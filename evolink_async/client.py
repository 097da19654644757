"""``EvolinkClient``: the async client of the Evolink video API.

One client holds one aiohttp session, the API key, and the limits that every request of the
process shares (request rate, tasks in flight, credits), so a bot serving many users on one key
stays within the key's limits. Batches (``generate_many``) and handles (``submit``) go through
the dispatcher; this module only knows single requests.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ._env import DEFAULT_BASE_URL, env_api_key, env_base_url, env_time_scale
from ._generate import Generate
from ._poll_read import read_within
from ._requests import Requests
from ._retry import RetryPolicy
from ._transport import RetryEvent, Transport
from .api import EvolinkAPI
from .callbacks import CallbackReceiver
from .dispatcher import Batch, Dispatcher, Event, Item, TaskHandle
from .download import DownloadResult, download_file
from .errors import DownloadError, TaskCancelledError, TaskFailedError
from .limits import (
    Budget,
    Estimator,
    LearnedPrices,
    Limits,
    LimitSettings,
    PriceTable,
    RateGate,
    SlotLimit,
    build_limits,
)
from .models import Task, TaskStatus, VideoRequest
from .poller import Poller, PollPolicy

if TYPE_CHECKING:
    pass

__all__ = ["DEFAULT_BASE_URL", "FILES_BASE_URL", "TIME_SCALE_HEADER", "EvolinkClient"]

#: the Files API of the production service (another host, the same key)
FILES_BASE_URL = "https://files-api.evolink.ai"

logger = logging.getLogger("evolink_async")


class _RetryListeners(list[Callable[[RetryEvent], None]]):
    """The client's retry listeners, called in turn before every retry."""

    def __call__(self, event: RetryEvent) -> None:
        for listener in list(self):
            listener(event)


def _build_poller(client: EvolinkClient, time_scale: float, *, callbacks: bool) -> Poller:
    """The client's one poller: reads by the API's ``get_task``/``get_tasks`` (``known``)."""
    return Poller(
        lambda task_id, known=None: client.api.get_task(task_id, known=known),
        client.poll_policy,
        fetch_many=lambda ids, known=None: client.api.get_tasks(ids, known=known),
        known=True,
        time_scale=time_scale,
        callbacks=callbacks,
    )


#: the header on which a simulator states its time scale (the real gateway never sends it)
TIME_SCALE_HEADER = "X-Evolink-Simulator-Time-Scale"


def _resolve_time_scale(time_scale: float | None) -> float | None:
    """The fixed time scale (the argument, else ``$EVOLINK_TIME_SCALE``); ``None``: adopt the
    one a simulator states on its answers (1.0 until then)."""
    if time_scale is not None and not (0 < time_scale < math.inf):
        raise ValueError("time_scale must be > 0")
    return time_scale if time_scale is not None else env_time_scale()


class _AdoptTimeScale:
    """Shown the headers of every answer: applies a simulator's stated time scale to the poll
    plan, so that a client pointed at ``evolink-async simulate --time-scale 0.05`` polls on the
    simulator's timeline without being told. Only values in (0, 1] are taken."""

    __slots__ = ("poller",)

    def __init__(self, poller: Poller) -> None:
        self.poller = poller

    def __call__(self, headers: Mapping[str, str]) -> None:
        raw = headers.get(TIME_SCALE_HEADER)
        if raw is None:
            return
        try:
            scale = float(raw)
        except ValueError:
            return
        if 0 < scale <= 1 and scale != self.poller.time_scale:
            logger.info("the simulator runs at time scale %g: polling on its timeline", scale)
            self.poller.time_scale = scale
            for task_id in self.poller.tracked_ids():  # planned on the old scale: read now
                self.poller.wake(task_id)


def _limits(
    numbers: tuple[float | None, int, int | None, float | None],
    api_key: str | None,
    poller: Poller,
    limits: Limits | None,
) -> Limits:
    """The client's limits for its ``(rate, burst, max_in_flight, budget)`` (see
    ``limits.build_limits``); a concurrency 429 shrinks to at most the poller's tasks."""
    key = (env_api_key() if api_key is None else api_key) or ""
    running, grow_every = (lambda: poller.tracked), 60.0 * poller.time_scale
    settings = LimitSettings(*numbers, api_key=key, running=running, grow_every=grow_every)
    return build_limits(settings, limits)


def _video_url(task_or_url: Task | str) -> str:
    """The URL to download: a completed task's video, or the URL itself."""
    if not isinstance(task_or_url, Task):
        return task_or_url
    url = task_or_url.video_url
    if url is None:
        raise DownloadError(
            task_or_url.id, f"task is {task_or_url.raw_status or 'not completed'}, no video"
        )
    return url


class EvolinkClient(Requests, Generate):
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
    * ``limits``: where they live: ``RedisLimits(url)`` shares them with every process on the
      key (so does ``$EVOLINK_REDIS_URL``); by default, in this process.

    ``files_base_url``: the Files API of :meth:`upload_file` (default: ``FILES_BASE_URL`` for
    the production service, else ``base_url``, which a simulator or a proxy serves it on).

    ``time_scale`` compresses the task timeline for a simulator that runs faster than real
    time: the service's ``estimated_time`` and the poll plan (``PollPolicy``, in the service's
    seconds) are multiplied by it. By default it is ``$EVOLINK_TIME_SCALE``, else the scale a
    simulator states on its answers (the real service states none: 1.0). HTTP-level timing
    (``Retry-After``, request timeouts, ``rate``) is always in real seconds.
    """

    _closed = False  # set by aclose()

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
        time_scale: float | None = None,
        verify_ssl: bool = True,
        callbacks: CallbackReceiver | None = None,
        limits: Limits | None = None,
        files_base_url: str | None = None,
        idempotency: bool = True,
    ) -> None:
        scale = _resolve_time_scale(time_scale)
        self.prices, self.estimator = prices or PriceTable(), estimator
        #: prices the service showed to be above the table's (used for later reservations)
        self.learned_prices = LearnedPrices()
        self.poll_policy, self.task_timeout = poll or PollPolicy(), task_timeout
        self.callbacks, self._retry_listeners = callbacks, _RetryListeners()
        self._poller = _build_poller(self, scale or 1.0, callbacks=callbacks is not None)
        if callbacks is not None:
            callbacks.bind(self._poller)  # the receiver wakes this client's tasks
        self.limits = _limits((rate, burst, max_in_flight, budget), api_key, self._poller, limits)
        self._transport = Transport(
            api_key=env_api_key() if api_key is None else api_key,
            base_url=env_base_url() if base_url is None else base_url,
            session=session,
            timeout=timeout,
            retry=retry,
            gate=self.limits,
            verify_ssl=verify_ssl,
            on_retry=self._retry_listeners,
            on_headers=_AdoptTimeScale(self._poller) if scale is None else None,
        )
        self.api = EvolinkAPI(
            self._transport,
            callback_url=(lambda: callbacks.callback_url) if callbacks is not None else None,
            files_base_url=files_base_url
            or (FILES_BASE_URL if self._transport.base_url == DEFAULT_BASE_URL else None),
            idempotency=idempotency,
        )
        self._dispatcher = Dispatcher(
            self.api,
            self._poller,
            self.limits,
            price=self._price,
            time_scale=scale or 1.0,
            task_timeout=task_timeout,
            learn=self.learned_prices.learn,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"<EvolinkClient base_url={self.base_url!r}"
            f" api_key=<{'set' if self.has_api_key else 'missing'}>"
            f" rate={self.rate_limiter.effective_rate:g}/s in_flight={self.in_flight}>"
        )

    async def __aenter__(self) -> EvolinkClient:
        await self.limits.__aenter__()  # shared limits run their background tasks in it
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.aclose()
        finally:
            await self.limits.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop polling, cancel and await everything the client started, close the session."""
        if self._closed:
            return
        self._closed = True
        await self._dispatcher.aclose()
        await self._poller.aclose()
        await self._transport.aclose()
        await self.limits.aclose()

    @property
    def time_scale(self) -> float:
        """The task timeline's scale in use: the one given, ``$EVOLINK_TIME_SCALE``, or the one
        a simulator stated on its answers (1.0 for the real service)."""
        return self._poller.time_scale

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def has_api_key(self) -> bool:
        return self._transport.has_api_key

    @property
    def transport(self) -> Transport:
        """The HTTP layer (request counters, retry policy)."""
        return self._transport

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on first use when none was given)."""
        return self._transport.session

    @property
    def rate_limiter(self) -> RateGate:
        """The request rate every request of this client shares."""
        return self.limits.rate

    @property
    def concurrency(self) -> SlotLimit | None:
        """Tasks in flight at once (``None``: not limited locally)."""
        return self.limits.concurrency

    @property
    def budget(self) -> Budget | None:
        """Credits that may be reserved in all (``None``: no budget)."""
        return self.limits.budget

    @property
    def in_flight(self) -> int:
        return self._poller.tracked

    def add_retry_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        """Call ``listener`` before every retry of a request (instrumentation)."""
        self._retry_listeners.append(listener)

    def remove_retry_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        self._retry_listeners.remove(listener)

    def _price(self, model: str, duration: int | None, extra: Mapping[str, Any]) -> float | None:
        """What a create costs: the estimator's figure, else the price table's, raised to
        what the service charged for the same (model, duration, quality) when that was more."""
        price: float | None = None
        if self.estimator is not None:
            price = self.estimator(model, duration, extra)
        if price is None:
            price = self.prices.price(model, duration)
        return self.learned_prices.adjust(model, duration, extra, price)

    # -- waiting and downloading -------------------------------------------------------------

    @property
    def poller(self) -> Poller:
        """The one poller of this client (its loop runs while tasks are tracked)."""
        if self._closed:
            raise RuntimeError("the client is closed")
        return self._poller

    async def wait(
        self,
        task: Task | str,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Task], object] | None = None,
    ) -> Task:
        """Wait until the task is completed and return it.

        Reads through the client's one poller, planned from ``estimated_time`` and progress.
        Raises ``TaskFailedError`` if it fails, ``TaskCancelledError`` (a ``TaskFailedError``)
        if it was cancelled, ``TaskStalledError`` if it keeps an unknown status too long, and
        ``TaskTimeoutError`` when ``timeout`` (seconds; default the client's ``task_timeout``)
        passes first: a read in flight is cut off then.
        """
        limit = self.task_timeout if timeout is None else timeout
        if isinstance(task, str):  # read it first (its estimate plans the next reads), in time
            task, limit = await read_within(self.get_task, task, limit)
            if on_progress is not None:
                on_progress(task)
        handle = self.poller.track(task, timeout=limit, on_update=on_progress)
        result = await handle.wait()
        if isinstance(result, BaseException):
            raise result
        if result.is_cancelled:
            raise TaskCancelledError(result)
        if result.status is not TaskStatus.COMPLETED:
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
        url = _video_url(task_or_url)
        return await download_file(
            self._transport.session, url, Path(path), max_bytes=max_bytes, on_progress=on_progress
        )

    # -- many tasks: the dispatcher ----------------------------------------------------------

    @property
    def dispatcher(self) -> Dispatcher:
        if self._closed:
            raise RuntimeError("the client is closed")
        return self._dispatcher

    async def submit(
        self,
        request: VideoRequest | Mapping[str, Any] | str,
        *,
        timeout: float | None = None,
        max_attempts: int = 3,
        on_event: Callable[[Event], object] | None = None,
    ) -> TaskHandle:
        """Queue one request and return its handle at once, in state ``queued`` with its
        ``queue_position``; bad input raises here, before anything is queued. It is created
        through the client's limits in submission order (``await handle.created()`` waits for
        that); ``await handle`` gives its ``Outcome`` (a create's error included). ``on_event``
        sees ``Submitted``, ``Progress`` (reads, and estimates between them every
        ``client.dispatcher.progress_every`` seconds of service time), then the end."""
        return await self.dispatcher.submit(
            request, timeout=timeout, max_attempts=max_attempts, on_event=on_event
        )

    def generate_many(
        self,
        requests: Iterable[Item] | AsyncIterable[Item],
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
        An ``Attach(task_id, request, attempts)`` item follows a task an earlier run created.
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
