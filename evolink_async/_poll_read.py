"""The poller's reads: one task by ``GET /v1/tasks/{id}``, or up to 50 by
``POST /v1/tasks/batch``, each bounded by the tasks' deadlines (a read in flight included).

The reader does the I/O and sorts what came back; what to do with it (observe, finish, try
again later) is the poller's, through the ``Sink`` it is given. It falls back to single reads
for good when the gateway answers the batch endpoint 404 or 405, and confirms an id missing
from a batch answer with one single read.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import anyio

from ._poll_entry import Entry, Gate
from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    DecodeError,
    EvolinkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskTimeoutError,
)
from .models import Task

__all__ = ["BATCH_SIZE", "SCOPE_HORIZON", "Reader", "Sink", "read_within"]

logger = logging.getLogger("evolink_async")

#: task ids one batch read may carry (the gateway's limit)
BATCH_SIZE = 50
#: a task never read yet may be read this fraction of its timeout past its deadline (one look)
GRACE = 0.1
#: a read further than this (local seconds) from its deadline opens no cancel scope, which
#: costs about 9 µs a read (``benchmarks/micro_scale.py timings``): no read lasts that long
#: (the transport's own timeout ends it first), and the deadline still ends the task at the
#: first look after it (``Reader._timed_out``)
SCOPE_HORIZON = 300.0
#: the weight of the latest read in the moving average of ``Reader.latency``
LATENCY_WEIGHT = 0.1
#: a transient failure: the task still exists, read it again later
_TRANSIENT = (APIConnectionError, ServerError, RateLimitError, DecodeError)
#: the key or account is refused: reading again will not help
_REFUSED = (AuthenticationError, PermissionDeniedError)


class Sink(Protocol):
    """What the reader tells the poller about each task it read (or failed to read)."""

    def observe(self, entry: Entry, task: Task) -> None: ...

    def finish(self, entry: Entry, result: Task | EvolinkError) -> None: ...

    def retry(self, entry: Entry) -> None:
        """A transient failure: read it again after the failure backoff."""

    def again(self, entry: Entry) -> None:
        """Read it again at once (single reads after a fallback, a confirmation)."""


class Reader:
    """Reads tasks for the poller (see the module docstring)."""

    __slots__ = (
        "batch",
        "batch_reads",
        "clock",
        "fetch",
        "fetch_many",
        "known",
        "known_many",
        "latency",
        "single_reads",
        "sink",
    )

    def __init__(
        self,
        fetch: Callable[..., Awaitable[Task]],
        fetch_many: Callable[..., Awaitable[list[Task]]] | None,
        sink: Sink,
        clock: Callable[[], float],
        *,
        known: bool = False,
    ) -> None:
        self.fetch = fetch
        self.fetch_many = fetch_many
        #: ``fetch`` / ``fetch_many`` take ``known=``, the task(s) as last seen, and give
        #: them back undecoded when the answer shows no change (``api.EvolinkAPI``'s do)
        self.known = known
        self.known_many = known
        self.sink = sink
        self.clock = clock
        #: batch reads are used (until the gateway says it has none)
        self.batch = fetch_many is not None
        self.single_reads = 0
        self.batch_reads = 0
        #: how long a read takes, sent to answered (local seconds, a moving average): the
        #: planner aims that much earlier
        self.latency = 0.0

    def single(self, entry: Entry) -> bool:
        """Whether this entry must be read on its own."""
        return not self.batch or entry.confirm

    def read(self, entries: Sequence[Entry]) -> Awaitable[None]:
        if len(entries) == 1:  # a batch of one is a GET: the same cost, and a clear 404
            return self._read_one(entries[0])
        return self._read_batch(entries)

    def _timed_out(self, entry: Entry) -> bool:
        """End the entry with ``TaskTimeoutError`` if its deadline has passed."""
        if entry.deadline is not None and self.clock() >= entry.deadline:
            timeout = TaskTimeoutError(entry.task.id, entry.deadline - entry.start, entry.task)
            self.sink.finish(entry, timeout)
            return True
        return False

    def _room(self, entries: Sequence[Entry]) -> float:
        """Seconds this read may take: until the earliest deadline of ``entries`` (inf without
        one); a task never read yet may take a tenth of its timeout more, for one look."""
        now, room = self.clock(), math.inf
        for e in entries:
            if e.deadline is not None:
                left = e.deadline - now
                grace = GRACE * (e.deadline - e.start)
                room = min(room, left if e.polls > 0 else max(left, grace))
        return room

    async def _read_one(self, entry: Entry) -> None:
        if entry.polls > 0 and entry.deadline is not None and self._timed_out(entry):
            return
        entry.woken = entry.confirm = False
        task: Task | None = None
        try:
            with _within(math.inf if entry.deadline is None else self._room([entry])):
                if entry.gate is not None:
                    await entry.gate.acquire()
                sent = self.clock()
                if self.known:
                    task = await self.fetch(entry.task.id, known=entry.task)
                else:
                    task = await self.fetch(entry.task.id)
                self.latency += LATENCY_WEIGHT * (self.clock() - sent - self.latency)
        except NotFoundError as exc:
            self.sink.finish(entry, exc)
            return
        except _TRANSIENT as exc:
            logger.debug("read of %s failed (%s); trying again later", entry.task.id, exc)
            self.sink.retry(entry)
            return
        except EvolinkError as exc:  # any other answer (400, 402, 4xx...): reading won't help
            self.sink.finish(entry, exc)
            return
        finally:
            self.single_reads += 1
            entry.polls += 1
        if task is None:  # the deadline came while the read was in flight
            if not self._timed_out(entry):
                self.sink.again(entry)
            return
        self.sink.observe(entry, task)

    async def _read_batch(self, entries: Sequence[Entry]) -> None:
        live = [e for e in entries if not (e.polls > 0 and self._timed_out(e))]
        if not live:
            return
        for e in live:
            e.woken = False
        tasks: list[Task] | None = None
        assert self.fetch_many is not None
        try:
            with _within(self._room(live)):
                for gate in _distinct_gates(live):
                    await gate.acquire()
                ids = [e.task.id for e in live]
                sent = self.clock()
                if self.known_many:
                    tasks = await self.fetch_many(ids, known={e.task.id: e.task for e in live})
                else:
                    tasks = await self.fetch_many(ids)
                self._took(sent)
        except APIError as exc:
            if isinstance(exc, _REFUSED):
                for e in live:
                    self.sink.finish(e, exc)
                return
            if not isinstance(exc, _TRANSIENT):
                self._fall_back(exc, live)
                return
            self._transient(exc, live)
            return
        except _TRANSIENT as exc:
            self._transient(exc, live)
            return
        finally:
            self.batch_reads += 1
        self._sort(live, tasks)

    def _took(self, sent: float) -> None:
        self.latency += LATENCY_WEIGHT * (self.clock() - sent - self.latency)

    def _sort(self, live: Sequence[Entry], tasks: list[Task] | None) -> None:
        """Hand each entry its task; confirm the ones missing from the answer singly."""
        if tasks is None:  # the earliest deadline came while the read was in flight
            for e in live:
                if not self._timed_out(e):
                    self.sink.again(e)
            return
        found = {t.id: t for t in tasks}
        for e in live:
            e.polls += 1
            task = found.get(e.task.id)
            if task is None:
                e.confirm = True  # absent: wrong, expired or another account's? ask once
                self.sink.again(e)
            else:
                self.sink.observe(e, task)

    def _fall_back(self, exc: APIError, live: Sequence[Entry]) -> None:
        """The batch endpoint answered with an error polling cannot fix: 404/405 means the
        gateway has none (single reads for good); anything else, read these singly once."""
        if exc.status in (404, 405):
            logger.info("no batch reads here (HTTP %s): reading tasks one by one", exc.status)
            self.batch = False
        else:
            logger.warning("batch read failed (%s): reading these tasks one by one", exc)
            for e in live:
                e.confirm = True
        for e in live:
            self.sink.again(e)

    def _transient(self, exc: EvolinkError, live: Sequence[Entry]) -> None:
        logger.debug("batch read of %d tasks failed (%s); trying again later", len(live), exc)
        for e in live:
            e.polls += 1
            self.sink.retry(e)


def _within(room: float) -> AbstractContextManager[object]:
    """A scope cutting a read off after ``room`` seconds; none for no deadline, or for one
    further than ``SCOPE_HORIZON``."""
    return anyio.move_on_after(room) if room < SCOPE_HORIZON else _NO_LIMIT


_NO_LIMIT = contextlib.nullcontext()


def _distinct_gates(entries: Sequence[Entry]) -> list[Gate]:
    gates: dict[int, Gate] = {}
    for e in entries:
        if e.gate is not None:
            gates.setdefault(id(e.gate), e.gate)
    return list(gates.values())


async def read_within(
    fetch: Callable[[str], Awaitable[Task]], task_id: str, limit: float | None
) -> tuple[Task, float | None]:
    """Read one task within ``limit`` seconds (None: no limit), a slow answer cut off with
    ``TaskTimeoutError``; the task and what is left of ``limit`` (a wait's first read)."""
    started = time.monotonic()
    with anyio.move_on_after(math.inf if limit is None else limit):
        task = await fetch(task_id)
        return task, None if limit is None else max(0.0, limit - (time.monotonic() - started))
    raise TaskTimeoutError(task_id, limit or 0.0)
