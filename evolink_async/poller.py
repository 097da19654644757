"""One polling loop for every task in flight.

A heap of (next due time, task id) drives a fixed number of worker coroutines, whatever the
number of tasks tracked: 10 000 tasks cost 10 000 small heap entries, not 10 000 coroutines.
Each task's next read is planned from what the service said (``_poll_plan.plan_window``):
none before the window where it is likely to end (from ``task_info.estimated_time`` and the
rate of progress), then one every ``target_delay``, on a grid shared by all tasks; and from
when the read may come early. The tasks due at one instant are read together, up to 50 per
``POST /v1/tasks/batch`` (``_poll_read``), the room left filled with tasks whose read may
come early (``_poll_due``), so a planning tick costs ``ceil(due / 50)`` requests; a gateway
without batch reads gets single GETs and nothing rides. Reads go through the client's rate
limiter like every request (the transport's gate); a failed read is retried after a backoff
of the one retry engine (``_retry``); a read in flight is cut off at its task's deadline. A
status the SDK does not know is read like ``processing`` until it has not changed for
``stall_after`` (``TaskStalledError``). It knows tasks and due times, nothing of batches or
files. The loop stops when nothing is tracked and starts again on demand.

A poll that saw nothing new costs no decoding: with ``Poller(known=True)``, ``fetch`` and
``fetch_many`` take ``known=`` (the task, or tasks by id, as last seen) and give a task back
as it is when its answer shows the same state (``EvolinkAPI.get_task``/``get_tasks`` do). A
task's owner is told of its states by a ``Watcher`` (one object for all its tasks, holding
nothing per task) or by the two callbacks of ``track``.

Concurrency is anyio's: the scheduling loop and its workers run in an anyio task group, due
reads reach the workers through a queue of anyio events (``_poll_queue``), the loop sleeps on an
``anyio.Event`` (with ``move_on_after`` for the next due time) and stops through a
``CancelScope``. One thing is asyncio's: the *host* task that holds the task group. The poller
starts on demand from ``track`` (a plain function, called from any task), and anyio has no way
to open a task group outside an ``async with`` of a running task, so ``track`` starts one
asyncio task to host it; ``aclose`` cancels its scope and awaits it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from ._poll_due import DueQueue
from ._poll_entry import Callbacks, Entry, Gate, TaskResult, TrackedTask, Watcher
from ._poll_plan import PollPolicy, plan_next_poll, plan_read, plan_safety_poll, plan_window
from ._poll_queue import ReadQueue
from ._poll_read import BATCH_SIZE, Reader
from ._retry import backoff
from .errors import EvolinkError, TaskStalledError, TaskTimeoutError
from .models import TERMINAL_STATUSES, Task

__all__ = [
    "PollPolicy",
    "Poller",
    "TaskResult",
    "TrackedTask",
    "Watcher",
    "plan_next_poll",
    "plan_read",
    "plan_safety_poll",
]

logger = logging.getLogger("evolink_async")


def _plan_entry(entry: Entry, now: float, poller: Poller) -> tuple[float, float | None]:
    """Seconds until the next read of a tracked task, and until it may ride along with other
    reads (``plan_window``, aimed the reads' latency early; None: it may not): with callbacks
    on, the safety net of ``plan_safety_poll``, which does not ride."""
    policy, scale, rng = poller.policy, poller.time_scale, poller._rng
    info = entry.task.task_info
    est = info.estimated_time if info is not None else None
    estimated = None if est is None else est * scale
    if poller.callbacks:
        delay = plan_safety_poll(
            now=now,
            start=entry.start,
            estimated=estimated,
            zero_at=entry.zero_at,
            p1=entry.p1,
            p2=entry.p2,
            policy=policy,
            scale=scale,
            rng=rng,
            polls=entry.polls,
        )
        return delay, None
    early, due = plan_window(
        now=now,
        start=entry.start,
        estimated=estimated,
        zero_at=entry.zero_at,
        p1=entry.p1,
        p2=entry.p2,
        policy=policy,
        scale=scale,
        rng=rng,
        latency=poller.reader.latency,
    )
    return max(0.0, due - now), max(0.0, early - now)


def _failed_poll_wait(policy: PollPolicy, scale: float, failures: int) -> float:
    """After a failed poll: 2, 4, 8, then 16 times ``min_interval`` (zero under
    ``set_testing``)."""
    step = policy.min_interval * scale
    return backoff(failures, initial=2 * step, maximum=16 * step, jitter=0.0)


def _watcher(
    watcher: Watcher | None,
    on_update: Callable[[Task], object] | None,
    on_done: Callable[[TaskResult], object] | None,
) -> Watcher | None:
    if on_update is None and on_done is None:
        return watcher
    if watcher is not None:
        raise ValueError("give track() a watcher or callbacks, not both")
    return Callbacks(on_update, on_done)


async def _wait(event: anyio.Event, delay: float, loop: asyncio.AbstractEventLoop) -> None:
    """Wait until ``event`` is set, or ``delay`` seconds: a timer that sets it, not a cancel
    scope that expires (that cancels the task and unwinds it, a cost at every due time)."""
    timer = loop.call_later(max(0.0, delay), event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()


def _group_reads(due: list[Entry], single: Callable[[Entry], bool]) -> list[list[Entry]]:
    """The due tasks as reads: alone when they must be (``single``), else 50 to a batch, so
    a planning tick sends ``ceil(due / 50)`` batch reads."""
    reads: list[list[Entry]] = []
    together: list[Entry] = []
    for e in due:
        if single(e):
            reads.append([e])
        else:
            together.append(e)
    reads += [together[i : i + BATCH_SIZE] for i in range(0, len(together), BATCH_SIZE)]
    return reads


def _room(due: list[Entry], reader: Reader) -> int:
    """Task ids the batch reads of ``due`` could still carry (none without batch reads)."""
    shared = sum(1 for e in due if not reader.single(e)) if reader.batch else 0
    return -shared % BATCH_SIZE if shared else 0


class Poller:
    """Tracks tasks until they finish, with one scheduling loop and a few read workers.

    ``fetch`` reads one task; ``fetch_many`` (optional) up to 50 in one request, used while
    ``policy.batch`` is on and the gateway has the endpoint. ``known``: see the module."""

    __slots__ = (
        "_clock",
        "_closed",
        "_entries",
        "_host",
        "_queue",
        "_rng",
        "_scope",
        "_sleep_until",
        "_wakeup",
        "_workers",
        "callbacks",
        "policy",
        "reader",
        "ticks",
        "time_scale",
    )

    def __init__(
        self,
        fetch: Callable[..., Awaitable[Task]],
        policy: PollPolicy | None = None,
        *,
        fetch_many: Callable[..., Awaitable[list[Task]]] | None = None,
        known: bool = False,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        callbacks: bool = False,
    ) -> None:
        #: callbacks are on: polls are only the safety net (``plan_safety_poll``)
        self.callbacks = callbacks
        self.policy = policy or PollPolicy()
        self.time_scale = time_scale
        self._clock = clock
        self._rng = random.Random(seed)
        batch = fetch_many if self.policy.batch else None
        self.reader = Reader(fetch, batch, self, clock, known=known)
        self._entries: dict[str, Entry] = {}
        self._queue = DueQueue()
        #: the one asyncio task, hosting the anyio task group (see the module's docstring)
        self._host: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        #: set when the loop should look at the heap again; it sleeps until ``_sleep_until``
        self._wakeup: anyio.Event | None = None
        self._sleep_until = -math.inf
        self._workers = 0
        self._closed = False
        #: (tasks due, reads sent) of each planning tick that sent any (the recent 10 000)
        self.ticks: deque[tuple[int, int]] = deque(maxlen=10_000)

    def __repr__(self) -> str:
        return (
            f"<Poller tracked={len(self._entries)} polls={self.polls} "
            f"workers={self._workers} running={self._host is not None}>"
        )

    @property
    def fetch(self) -> Callable[[str], Awaitable[Task]]:  # how one task is read; replaceable
        return self.reader.fetch

    @fetch.setter
    def fetch(self, fetch: Callable[[str], Awaitable[Task]]) -> None:
        self.reader.fetch, self.reader.known = fetch, False  # it takes the task id alone

    @property
    def polls(self) -> int:
        """Read requests sent (a batch read of 50 tasks is one)."""
        return self.reader.single_reads + self.reader.batch_reads

    @property
    def tracked(self) -> int:
        return len(self._entries)

    def tracked_ids(self) -> list[str]:
        return list(self._entries)

    def track(
        self,
        task: Task,
        *,
        timeout: float | None = None,
        on_update: Callable[[Task], object] | None = None,
        on_done: Callable[[TaskResult], object] | None = None,
        gate: Gate | None = None,
        watcher: Watcher | None = None,
    ) -> TrackedTask:
        """Start tracking ``task`` (already created). Tracking the same id twice shares the
        entry. ``timeout`` (local seconds) gives up with ``TaskTimeoutError``, cutting off a
        read in flight (one begun within 5 minutes of the deadline, ``SCOPE_HORIZON``; an
        earlier one ends by the transport's own timeout first). ``on_update`` is called with
        every state read, ``on_done`` once with the final task or error (or a ``watcher`` is
        told). ``gate``: an extra rate limiter for this task's reads (a batch's own rate)."""
        if self._closed:
            raise RuntimeError("the poller is closed")
        existing = self._entries.get(task.id)
        if existing is not None:
            return TrackedTask(existing)
        now = self._clock()
        entry = Entry(
            task=task,
            start=now,
            deadline=None if timeout is None else now + timeout,
            watcher=_watcher(watcher, on_update, on_done),
            gate=gate,
            zero_at=now,
        )
        self._entries[task.id] = entry
        if task.is_terminal:
            self.finish(entry, task)
        else:
            self._schedule(entry, *_plan_entry(entry, now, self))
            self._ensure_running()
        return TrackedTask(entry)

    def wake(self, task_id: str) -> bool:
        """Read this task now (a callback said it changed). False if it is not tracked.

        Idempotent: waking a task already due, queued or being read adds no read, except
        that a read in flight is followed by one more if the task was still running.
        """
        entry = self._entries.get(task_id)
        if entry is None:
            return False
        if entry.due == float("inf"):  # queued or being read
            entry.woken = True
        elif entry.due > self._clock():
            self._schedule(entry, 0.0)
        return True

    def report(self, task: Task) -> bool:
        """Take a terminal ``task`` as if a read had just returned it, without a GET (a
        callback body the user chose to trust). A task still running is woken instead.
        False if its id is not tracked."""
        entry = self._entries.get(task.id)
        if entry is None:
            return False
        if not task.is_terminal:
            return self.wake(task.id)
        self.observe(entry, task)
        return True

    def forget(self, task_id: str) -> None:
        """Stop tracking a task without a result (its waiters get ``TaskTimeoutError``)."""
        entry = self._entries.pop(task_id, None)
        if entry is not None:
            entry.settle(TaskTimeoutError(task_id, 0.0, entry.task))
        if not self._entries and self._wakeup is not None:
            self._wakeup.set()  # let the loop see it is idle and stop, not at the next due time

    async def aclose(self) -> None:
        """Stop the loop and the workers (cancelled and awaited); tasks still tracked end with
        ``TaskTimeoutError``."""
        self._closed = True
        host = self._host
        if host is not None:
            if self._scope is not None:
                self._scope.cancel()
            await host  # a host not started yet sees ``_closed`` and returns at once
        for task_id in list(self._entries):
            self.forget(task_id)

    # -- what the reader tells (the Sink of ``_poll_read``) -------------------------------

    def observe(self, entry: Entry, task: Task) -> None:
        """Take in a state of the task (read, or reported by a trusted callback)."""
        if self._entries.get(entry.task.id) is not entry:
            return
        now = self._clock()
        entry.note(task, now)
        stall = self.policy.stall_after
        if task.status in TERMINAL_STATUSES:
            self.finish(entry, task)
        elif (
            stall is not None
            and entry.unknown_since is not None
            and now - entry.unknown_since >= stall * self.time_scale
        ):
            self.finish(
                entry, TaskStalledError(task, (now - entry.unknown_since) / self.time_scale)
            )
        else:
            delay, early = (0.0, None) if entry.woken else _plan_entry(entry, now, self)
            entry.woken = False
            self._schedule(entry, delay, early, now)

    def finish(self, entry: Entry, result: TaskResult) -> None:
        if entry.result is not None:  # ended already (forgotten, or a late answer): once only
            return
        if self._entries.get(entry.task.id) is entry:
            del self._entries[entry.task.id]
        entry.resolve(result)
        if not self._entries and self._wakeup is not None:
            self._wakeup.set()  # let the loop see it is idle and stop

    def retry(self, entry: Entry) -> None:
        entry.failures += 1
        self._schedule(entry, _failed_poll_wait(self.policy, self.time_scale, entry.failures))

    def again(self, entry: Entry) -> None:
        self._schedule(entry, 0.0)

    # -- scheduling -----------------------------------------------------------------------

    def _schedule(
        self, entry: Entry, delay: float, early: float | None = None, now: float | None = None
    ) -> None:
        """Queue a read in ``delay`` seconds from ``now`` (default: the clock); from ``early``
        seconds it may ride along."""
        if self._entries.get(entry.task.id) is not entry:
            return  # no longer tracked
        now = self._clock() if now is None else now
        due = now + delay if entry.deadline is None else min(now + delay, entry.deadline)
        ride = early is not None and self.reader.batch
        self._queue.push(entry, due, now + early if ride and early is not None else None)
        if due < self._sleep_until and self._wakeup is not None:
            self._wakeup.set()  # due before the loop would look again: wake it

    def _ensure_running(self) -> None:
        if self._host is None and not self._closed:
            self._host = asyncio.get_running_loop().create_task(self._hold(), name="evolink-poller")

    async def _hold(self) -> None:
        """The host task: runs the loop while anything is tracked (again if a task was tracked
        while it wound down), until idle or closed."""
        try:
            with anyio.CancelScope() as self._scope:
                while self._entries and not self._closed:
                    await self._run()
        finally:
            self._scope = None
            self._host = None

    async def _run(self) -> None:
        """The scheduling loop in this task, the workers in an anyio task group beside it."""
        send = receive = ReadQueue[list[Entry]]()
        async with anyio.create_task_group() as tg:
            for i in range(max(1, self.policy.workers)):
                tg.start_soon(self._worker, receive, name=f"evolink-poll-worker-{i}")
            self._workers = max(1, self.policy.workers)
            try:
                await self._dispatch(send)
            finally:
                self._workers = 0
                self._sleep_until = -math.inf
                tg.cancel_scope.cancel()

    def _send_reads(self, send: ReadQueue[list[Entry]], due: list[Entry]) -> None:
        """Send the due reads, their batches filled up with riders (``DueQueue.riders``)."""
        due += self._queue.riders(self._entries, self._clock(), _room(due, self.reader))
        reads = _group_reads(due, self.reader.single)
        for read in reads:
            send.send_nowait(read)
        self.ticks.append((len(due), len(reads)))

    async def _dispatch(self, send: ReadQueue[list[Entry]]) -> None:
        """Hand the due tasks to the workers; sleep until the next due time or a wake."""
        queue, loop = self._queue, asyncio.get_running_loop()
        while self._entries:
            now = self._clock()
            due = queue.pop_due(self._entries, now)
            if due:
                self._send_reads(send, due)
            wakeup = self._wakeup = anyio.Event()
            if queue:
                self._sleep_until = queue.next_due()
                await _wait(wakeup, self._sleep_until - now, loop)
            else:
                self._sleep_until = math.inf
                await wakeup.wait()
            self._sleep_until = -math.inf

    async def _worker(self, receive: ReadQueue[list[Entry]]) -> None:
        while True:
            read = receive.take()  # no checkpoint when a read is waiting: the read yields
            if read is None:
                read = await receive.receive()
            live = [e for e in read if self._entries.get(e.task.id) is e]
            if not live:
                continue
            try:
                await self.reader.read(live)
            except Exception as exc:  # a bug must not kill the worker and strand its tasks
                logger.exception("read of %s failed unexpectedly", [e.task.id for e in live])
                err = EvolinkError(f"polling failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                for e in live:
                    self.finish(e, err)
