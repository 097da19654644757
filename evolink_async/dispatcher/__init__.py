"""The dispatcher: admit requests within the limits, create tasks, hand them to the poller.

A request is admitted when a concurrency slot, a credit reservation and a rate token (taken by
the transport for every request) are all available. Once created, a task costs no coroutine of
its own: the one poller tracks it and calls back when it ends. Retryable task failures are
resubmitted (a new create with a new idempotency key, counted in ``attempts``); fatal ones end
the request at once; a create whose outcome is still unknown after the transport sent it again
with its key (or at once, without keys) is reported ``unknown`` and never resubmitted by the
SDK. ``before_create`` may give each attempt's key (a batch journals it). A task an earlier run
created comes in as an ``Attach`` item and goes through the same admission and retry paths.

A batch holds at most its tightest concurrency limit in requests created or outcomes not yet
taken by its consumer: a consumer that stops (a ``break``) stops the creates; ``async with``
(or ``aclose()``) cancels and awaits the rest.

``Dispatcher(api, poller, limits, price=...)`` gets its collaborators explicitly.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from ..limits import (
    Budget,
    ConcurrencyLimit,
    CreditBudget,
    Estimator,
    Limits,
    RateLimiter,
    SlotLimit,
)
from ..poller import Poller
from ._admission import Job, Run, Services, TaskAPI
from ._handle import HandleState, TaskHandle
from ._run import BatchRun, Promise
from ._submit import SubmitRun
from .events import (
    Attach,
    BatchStats,
    BeforeCreate,
    BudgetSkipped,
    Completed,
    Event,
    Failed,
    Item,
    Outcome,
    OutcomeStatus,
    Paused,
    Progress,
    RateLimited,
    RequestLike,
    Resumed,
    Retrying,
    Submitted,
    as_request,
)

__all__ = [
    "Attach",
    "Batch",
    "BatchStats",
    "BeforeCreate",
    "BudgetSkipped",
    "Completed",
    "Dispatcher",
    "Event",
    "Failed",
    "HandleState",
    "Item",
    "Outcome",
    "OutcomeStatus",
    "Paused",
    "Progress",
    "RateLimited",
    "RequestLike",
    "Resumed",
    "Retrying",
    "Submitted",
    "TaskAPI",
    "TaskHandle",
    "as_request",
]


class Batch:
    """The async iterator ``generate_many`` returns: yields one ``Outcome`` per request as each
    finishes. ``stats()`` gives live counters; leaving ``async with`` or ``aclose()`` (or
    breaking out of ``async for``) cancels what is left and awaits it."""

    def __init__(self, run: BatchRun, agen: AsyncIterator[Outcome]) -> None:
        self._run = run
        self._agen = agen

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> Outcome:
        return await self._agen.__anext__()

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        aclose = getattr(self._agen, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._run.aclose()

    def stats(self) -> BatchStats:
        return self._run.snapshot()


class Dispatcher:
    """Admits requests within the limits. ``api`` creates tasks, ``poller`` follows them,
    ``limits`` are the client's (its concurrency and budget apply to every request; the
    transport takes the rate), ``price`` tells what a create costs (``None``: unknown).
    ``time_scale`` scales the regrowth of a batch's own concurrency limit; ``task_timeout`` is
    the default deadline of a task; ``learn`` is told of a service figure above ``price``'s.
    Reached as ``client.dispatcher``."""

    def __init__(
        self,
        api: TaskAPI,
        poller: Poller,
        limits: Limits,
        *,
        price: Estimator,
        time_scale: float = 1.0,
        task_timeout: float | None = 1800.0,
        learn: Callable[[str, int | None, Mapping[str, Any], float], None] | None = None,
        progress_every: float | None = 2.0,
    ) -> None:
        self._services = Services(api, poller, limits, price, time_scale, task_timeout, learn)
        api.when_connected(self._services.reach.connection_opened)
        self._runs: set[Run] = set()
        self._single: SubmitRun | None = None
        self._index = 0
        self._progress_every = progress_every

    @property
    def progress_every(self) -> float | None:
        """Seconds of service time between the progress estimates told to a submitted
        request's ``on_event`` while its task runs (default 2; ``None``: none)."""
        return self._progress_every

    @progress_every.setter
    def progress_every(self, every: float | None) -> None:
        if every is not None and not every > 0:
            raise ValueError("progress_every must be > 0 or None")
        self._progress_every = every
        if self._single is not None:
            self._single.ticker.every = every

    def __repr__(self) -> str:
        return f"<Dispatcher runs={len(self._runs)}>"

    @property
    def progress_ticks(self) -> int:
        """How many times the one progress ticker has run (it runs only while a submitted
        request with an ``on_event`` has a task running)."""
        return self._single.ticker.ticks if self._single is not None else 0

    def _client_limits(self) -> tuple[list[SlotLimit], list[Budget]]:
        limits = self._services.limits
        conc = [limits.concurrency] if limits.concurrency is not None else []
        budgets = [limits.budget] if limits.budget is not None else []
        return conc, budgets

    @property
    def reached(self) -> bool:
        """Whether a create of this client got through (before it, a service that cannot be
        reached stops a batch at once; after it, an outage pauses the creates)."""
        return self._services.reach.created

    def stats(self) -> BatchStats:
        """Counters of the requests made through ``submit``."""
        return self._single.snapshot() if self._single is not None else BatchStats()

    async def aclose(self) -> None:
        for run in list(self._runs):
            await run.aclose()
        self._runs.clear()

    async def submit(
        self,
        request: RequestLike,
        *,
        timeout: float | None = None,
        max_attempts: int = 3,
        on_event: Callable[[Event], object] | None = None,
    ) -> TaskHandle:
        """Queue one request and return its handle at once, in state ``queued`` (bad input
        raises here, before anything is queued). The request is created when its turn, a
        slot and its credits come; an error of the create ends in the handle's outcome."""
        req = as_request(request)
        run = self._submit_run()
        limit = self._services.task_timeout if timeout is None else timeout
        job = Job(index=self._index, request=req, max_attempts=max_attempts, timeout=limit)
        self._index += 1
        future = Promise()
        run.futures[job.index] = future
        if on_event is not None:
            run.handlers[job.index] = on_event
        run.enqueue(job)
        return TaskHandle(job, future, run)

    def _submit_run(self) -> SubmitRun:
        if self._single is None:
            conc, budgets = self._client_limits()
            self._single = SubmitRun(
                self._services,
                progress_every=self._progress_every,
                concurrency=conc,
                budgets=budgets,
            )
            self._runs.add(self._single)
        return self._single

    def generate_many(
        self,
        requests: Iterable[Item] | AsyncIterable[Item],
        *,
        max_in_flight: int | None = None,
        rate: float | None = None,
        budget: float | CreditBudget | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        on_event: Callable[[Event], object] | None = None,
        before_create: BeforeCreate | None = None,
    ) -> Batch:
        """One batch: requests (or ``Attach`` items) pulled lazily, numbered from 1 in the
        order pulled; one ``Outcome`` each. ``budget`` limits this batch further: a total, or
        a ``CreditBudget`` the caller keeps (to ``grow`` it while the batch runs)."""
        conc, budgets = self._client_limits()
        own: ConcurrencyLimit | None = None
        if max_in_flight is not None:
            # like the client's: shrunk by "too many concurrent tasks" 429s, it grows back
            # (without grow_every a 429 caused by another user of the key shrank it for good)
            own = ConcurrencyLimit(max_in_flight, grow_every=60.0 * self._services.time_scale)
            conc.append(own)
        if isinstance(budget, CreditBudget):
            budgets.append(budget)
        elif budget is not None:
            budgets.append(CreditBudget(budget))
        run = BatchRun(
            self._services,
            concurrency=conc,
            budgets=budgets,
            rate=RateLimiter(rate, 1) if rate is not None else None,
            on_event=on_event,
            before_create=before_create,
        )
        limit = self._services.task_timeout if timeout is None else timeout
        return Batch(run, self._generate(run, own, requests, max_attempts, limit))

    async def _generate(
        self,
        run: BatchRun,
        own: ConcurrencyLimit | None,
        requests: Iterable[Item] | AsyncIterable[Item],
        max_attempts: int,
        timeout: float | None,
    ) -> AsyncIterator[Outcome]:
        limits = self._services.limits
        self._runs.add(run)
        limits.subscribe(run.on_throttle)
        if own is not None:
            limits.add_concurrency(own)
        run.spawn(run.feed(requests, max_attempts, timeout))
        try:
            while True:
                while run.out:
                    outcome = run.out.popleft()
                    run.changed.set()  # room in the buffer: the feeder may go on
                    yield outcome
                if run.fatal is not None and not run.stats.submitting:  # never reached
                    raise run.fatal
                if run.finished:
                    return
                run.ready.clear()
                if run.out or run.finished:
                    continue
                await run.ready.wait()
        finally:
            limits.unsubscribe(run.on_throttle)
            if own is not None:
                limits.discard_concurrency(own)
            await run.aclose()
            self._runs.discard(run)
