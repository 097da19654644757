"""``RedisLimits``: one API key's limits shared by every process that uses it, through Redis.

``EvolinkClient(limits=RedisLimits("redis://host:6379/0"))``: the request rate, the 429
pauses and slow-down, the tasks in flight and the credit budget live in Redis under a
namespace, by default a keyed hash of the API key (never the key). Each change is one atomic
Lua script run (:mod:`._redis_lua`); no lock is held across a round trip.

Its listener (grants and pauses published by other processes), lease renewer and flusher run
in a task group of its async context: ``async with RedisLimits(url) as shared:`` (an
``EvolinkClient`` used with ``async with`` enters its limits), cancelled and awaited on exit.

Redis unreachable: every request that needs the limits fails with
:class:`~evolink_async.errors.SharedLimitsError`; nothing runs unlimited.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._redis_link import Link, default_namespace
from ._redis_parts import RedisBudget, RedisRate, RedisSlots
from ._redis_trace import Trace
from .bundle import Limits, LimitSettings

__all__ = ["RedisLimits", "default_namespace"]


class RedisLimits(Limits):
    """Limits shared through Redis at ``url`` under ``namespace`` (default: from the API key).

    ``rate_window``: the rate counts as the service does, at most ``max(burst, rate x
    rate_window)`` requests in any ``rate_window`` seconds (a burst after a quiet spell goes at
    once); ``0``: a GCRA instead (``burst`` at once, then evenly spaced).
    ``lease_ttl``: seconds after which a dead process's concurrency slots come back (live
    processes renew theirs every third of it). ``trace``: keep a debug timeline of the waits
    (:attr:`trace_events`; off by default). ``release_on_failure`` as for
    :class:`~.credits.CreditBudget`. The client's ``rate``, ``burst``, ``max_in_flight`` and
    ``budget`` become the namespace's; the first process sets the budget's total.
    """

    __slots__ = (
        "_depth",
        "_group",
        "_link",
        "_namespace",
        "lease_ttl",
        "rate_window",
        "release_on_failure",
        "trace",
        "url",
    )

    def __init__(
        self,
        url: str,
        namespace: str | None = None,
        *,
        lease_ttl: float = 60.0,
        release_on_failure: bool = True,
        rate_window: float = 1.0,
        trace: bool = False,
    ) -> None:
        super().__init__()
        self.url = url
        self._namespace = namespace
        self.lease_ttl = float(lease_ttl)
        self.rate_window = max(0.0, float(rate_window))
        self.release_on_failure = release_on_failure
        self.trace = trace
        self._link: Link | None = None
        self._group: TaskGroup | None = None
        self._depth = 0

    async def __aenter__(self) -> RedisLimits:
        """Open the task group of the listener, renewer and flusher (re-entrant: the client
        enters the limits too; the outermost context owns the group)."""
        if self._depth == 0:
            group = anyio.create_task_group()
            await group.__aenter__()
            self._group = group
            if self._link is not None:
                self._link.attach(group)
        self._depth += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving the outermost context: send what is queued, close the connection, cancel
        the group's tasks and wait for them."""
        self._depth -= 1
        if self._depth > 0 or self._group is None:
            return
        group, self._group = self._group, None
        try:
            await self.aclose()
        finally:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)

    def configure(self, settings: LimitSettings) -> None:
        """Build the shared parts for a client's settings (once)."""
        if self._link is not None:
            raise RuntimeError("these RedisLimits already serve a client")
        namespace = self._namespace or default_namespace(settings.api_key)
        link = Link(self.url, namespace, lease_ttl=self.lease_ttl)
        if self.trace:
            link.trace = Trace()
        self._link = link
        if self._group is not None:
            link.attach(self._group)
        self.rate = RedisRate(link, settings.rate, settings.burst, window=self.rate_window)
        if settings.max_in_flight:
            self.concurrency = RedisSlots(
                link, settings.max_in_flight, grow_every=settings.grow_every
            )
        if settings.budget is not None:
            self.budget = RedisBudget(
                link, settings.budget, release_on_failure=self.release_on_failure
            )
        self.running = settings.running

    @property
    def namespace(self) -> str | None:
        """The namespace in use (``None`` until a client configured these limits)."""
        return self._link.namespace if self._link is not None else self._namespace

    @property
    def runs_in(self) -> str:
        """Where the listener, lease renewer and flusher run: ``"group"`` (this object's async
        context), ``"own task"`` (never entered), ``"nowhere"`` (not started, or closed)."""
        return self._link.runs_in if self._link is not None else "nowhere"

    @property
    def round_trips(self) -> int:
        """Redis round trips (script calls) so far."""
        return self._link.round_trips if self._link is not None else 0

    @property
    def trips_by_op(self) -> dict[str, int]:
        """Round trips by the operation that made them (book, lease, reserve, ...)."""
        return dict(self._link.trips_by_op) if self._link is not None else {}

    @property
    def queued_changes(self) -> int:
        """Changes (releases, settles) queued here and not sent to Redis yet."""
        return self._link.queued_changes if self._link is not None else 0

    @property
    def trace_events(self) -> list[dict[str, Any]]:
        """The debug timeline (``trace=True``; empty otherwise): see :mod:`._redis_trace`."""
        link = self._link
        return list(link.trace.events) if link is not None and link.trace is not None else []

    async def check(self) -> None:
        """Reach Redis now and set (or check) the shared budget: a client that asks for a
        budget the namespace does not have fails here, before anything is sent."""
        if isinstance(self.budget, RedisBudget):
            await self.budget.check()
        elif self._link is not None:
            await self._link.call({"op": "renew", "ids": [], "ttl": self.lease_ttl})

    async def aclose(self) -> None:
        """Send what is queued (released leases, settled credits) and close the connection."""
        if self._link is not None:
            await self._link.aclose()

    def __repr__(self) -> str:
        return (
            f"<RedisLimits namespace={self.namespace} rate={self.rate!r}"
            f" concurrency={self.concurrency!r} budget={self.budget!r}"
            f" round_trips={self.round_trips}>"
        )
