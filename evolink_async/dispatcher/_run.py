"""The two kinds of run: the dispatcher's single submits (each outcome to its handle) and one
``generate_many`` (a feeder pulls items lazily, outcomes go to a bounded buffer)."""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import anyio

from ..errors import InvalidRequestError, ServiceUnreachableError, TaskTimeoutError
from ..limits import SharedLimitsError
from ._admission import Job, Run, Services, Signal
from .events import Attach, Completed, Event, Failed, Item, Outcome, as_request

__all__ = ["BatchRun", "Promise", "SingleRun", "aiter_items"]

logger = logging.getLogger("evolink_async")


class Promise:
    """One request's outcome, given once and awaited by any number of waiters (on an
    ``anyio.Event`` made when first needed). ``cancel`` ends it without an outcome: its waiters
    get the cancellation exception, as they did from a cancelled future."""

    __slots__ = ("_event", "cancelled", "outcome")

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.cancelled = False
        self._event: anyio.Event | None = None

    def done(self) -> bool:
        return self.outcome is not None or self.cancelled

    def set(self, outcome: Outcome) -> None:
        if not self.done():
            self.outcome = outcome
            self._wake()

    def cancel(self) -> None:
        if not self.done():
            self.cancelled = True
            self._wake()

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    async def wait(self) -> Outcome:
        if not self.done():
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        if self.outcome is None:
            raise anyio.get_cancelled_exc_class()("the dispatcher closed before it was created")
        return self.outcome


class SingleRun(Run):
    """The requests of ``Dispatcher.submit``: each outcome goes to its own handle."""

    def __init__(self, services: Services, **kw: Any) -> None:
        super().__init__(services, **kw)
        self.futures: dict[int, Promise] = {}
        self.handlers: dict[int, Callable[[Event], object]] = {}

    def listens(self, index: int) -> bool:
        return index in self.handlers

    def emit(self, event: Event) -> None:
        index = event.outcome.index if isinstance(event, (Completed, Failed)) else None
        if index is None:
            index = getattr(event, "index", None)
        handler = self.handlers.get(index) if isinstance(index, int) else None
        if handler is not None:
            try:
                handler(event)
            except Exception:
                logger.exception("on_event handler failed on %r", event)

    def deliver(self, outcome: Outcome) -> None:
        self.handlers.pop(outcome.index, None)
        future = self.futures.pop(outcome.index, None)
        if future is not None:
            future.set(outcome)

    async def aclose(self) -> None:
        """Also settle every handle still awaited: nobody would ever resolve it otherwise.
        A task still running ends ``failed`` with ``TaskTimeoutError`` (as when its deadline
        passes: it may finish later at the service); a request never created is cancelled."""
        self.closed = True
        for task_id, job in self.live_jobs():
            self.finish(job, "failed", TaskTimeoutError(task_id, 0.0, job.task))
        await super().aclose()
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()
        self.handlers.clear()


class BatchRun(Run):
    """One ``generate_many``: a feeder pulls items lazily, outcomes go to a buffer."""

    max_buffer = 256

    def __init__(self, services: Services, **kw: Any) -> None:
        super().__init__(services, **kw)
        self.retry_queue: collections.deque[Job] = collections.deque()
        self.out: collections.deque[Outcome] = collections.deque()
        self.ready = Signal()
        self.feeding = True
        self._pulled = 0
        self._exhausted = False

    def notify(self) -> None:
        self.changed.set()
        self.ready.set()

    def deliver(self, outcome: Outcome) -> None:
        self.out.append(outcome)

    def resubmit(self, job: Job) -> None:
        self.retry_queue.append(job)
        self.notify()

    def halt(self, error: ServiceUnreachableError) -> None:
        """Stop feeding, send no more creates: the consumer raises ``error`` once the creates
        already trying have ended (each within its few retries) and it took every outcome."""
        if self.fatal is None:
            self.fatal = error
        self.notify()

    @property
    def window(self) -> int:
        """Requests this batch may hold at once, created or not yet delivered: the tightest
        concurrency limit (else ``max_buffer``). A consumer that stops taking outcomes stops
        the creates: after a ``break``, no more are sent than were in flight."""
        return min((c.configured for c in self.concurrency), default=self.max_buffer)

    @property
    def _pending(self) -> int:
        return len(self.out) + len(self.live) + self.stats.submitting + len(self.retry_queue)

    @property
    def finished(self) -> bool:
        return not self.feeding and not self.out and not self.live and not self.tasks

    def _job(self, item: Item, max_attempts: int, task_timeout: float | None) -> Job | None:
        """The job of the item at 0-based position ``self._pulled``, or None when it is no
        request (it is then reported ``skipped``, and the batch goes on)."""
        if isinstance(item, Attach):
            job = Job(
                self._pulled, item.request, max_attempts, task_timeout, attempts=item.attempts
            )
            job.attach_id = item.task_id
            return job
        try:
            request = as_request(item)
        except InvalidRequestError as exc:
            self.stats.skipped += 1
            self.deliver(Outcome(index=self._pulled, request=None, status="skipped", error=exc))
            self.notify()
            return None
        return Job(self._pulled, request, max_attempts, task_timeout)

    async def _next_job(
        self, source: AsyncIterator[Item], max_attempts: int, task_timeout: float | None
    ) -> Job | None:
        while True:
            if self.fatal is not None:
                return None
            if self.retry_queue:
                return self.retry_queue.popleft()
            if self._pending >= self.window:  # the consumer is behind: wait for it
                self.changed.clear()
                await self.changed.wait()
                continue
            if not self._exhausted:
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    self._exhausted = True
                    continue
                job = self._job(item, max_attempts, task_timeout)
                self._pulled += 1
                if job is not None:
                    return job
                continue
            if not self.live and self.stats.submitting == 0:
                return None
            self.changed.clear()
            await self.changed.wait()

    async def feed(
        self,
        items: Iterable[Item] | AsyncIterable[Item],
        max_attempts: int,
        task_timeout: float | None,
    ) -> None:
        """Pull items lazily and start an attempt for each, retries first."""
        source = aiter_items(items)
        try:
            # every attempt runs in the feeder's task group: cancelling the feeder (aclose)
            # cancels and awaits them all
            async with anyio.create_task_group() as attempts:
                while True:
                    await self.create_gate.acquire()
                    try:
                        job = await self._next_job(source, max_attempts, task_timeout)
                    except BaseException:
                        self.create_gate.release()
                        raise
                    if job is None:
                        self.create_gate.release()
                        return
                    self.stats.submitting += 1  # counted until the attempt itself takes over
                    attempts.start_soon(self._gated, job)
        finally:
            self.feeding = False
            self.notify()
            await source.aclose()

    async def _gated(self, job: Job) -> None:
        self.stats.submitting -= 1
        try:
            await self.attempt(job)
        except ServiceUnreachableError as exc:  # told while it waited: nothing was sent
            self.halt(exc)
        except SharedLimitsError as exc:  # Redis unreachable: nothing was sent, all given back
            self.finish(job, "failed", exc)
        except Exception:  # a bug must not end the whole batch
            logger.exception("internal error in the dispatcher")
        finally:
            self.create_gate.release()


async def aiter_items(
    items: Iterable[Item] | AsyncIterable[Item],
) -> AsyncGenerator[Item, None]:
    """A sync or async iterable as an async generator (closed when the feeder ends)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
