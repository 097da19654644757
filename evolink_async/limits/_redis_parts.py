"""The three shared limits of :class:`~.redis_limits.RedisLimits`: rate, slots, budget.

Each waits cheaply. The rate: one call books the next shared slot and says how long to sleep.
A lease or credits: one call grants them, or puts a ticket in the namespace's line (every
process's waiters in one line, first come, first served); the call that later frees a slot or
credits grants them to the line in order and publishes it, so a waiter makes no second call
(it asks again only if it heard nothing for a while, which also says it is alive).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import BudgetExceededError
from ._common import fmt
from ._redis_link import Link
from .backend import SharedLimitsError

__all__ = ["RedisBudget", "RedisPermit", "RedisRate", "RedisReservation", "RedisSlots"]

#: the longest sleep of a waiter that heard nothing: its ticket stays in line (the renewer
#: says it is alive) and a dead process's lease is served to the line by any renewal, so
#: asking again only makes up for a lost notification
_MAX_WAIT = 120.0
#: a slot booked ahead and not taken within this many seconds is given up (sent later, it
#: would crowd the slots booked after it)
_AHEAD_GRACE = 0.02
#: seconds added to the rate's window between a slot and the n-th after it: requests leave
#: a little after their slots (an event loop is late, a process is descheduled), and a late
#: burst must not meet the next one in one window of the service
_WINDOW_GUARD = 0.1
#: slots of each window of the rate that requests booked on their own (reads) leave free
#: for the creates, booked along the lease or credits granted to them
_KEEP_FOR_CREATES = 2


class _BudgetReset(Exception):
    """The namespace has no budget any more (an operator reset it)."""


async def _wait_turn(
    link: Link,
    op: dict[str, Any],
    granted: Callable[[dict[str, Any]], float | None],
    *,
    say_taken: bool = True,
) -> bool:
    """Ask for ``op`` (a lease or a reservation, with this process's next rate slot booked
    along) until granted: ``granted(result)`` is ``None`` once it is, else the longest wait
    before asking again. Asked again only on ``ask``, or after that wait without word (the
    ticket stays in line meanwhile: asking again also says the waiter is alive). True when
    granted from the line (by another call), False when by this waiter's own call.
    ``say_taken``: a grant from the line is said taken with the next call (a reservation
    must be, or it goes back; a lease need not: it lasts a lease time from the waiter's
    last sign of life, at most a third of one ago, and the renewer renews it in time)."""
    while True:
        result = await link.call(op, book_ahead=True)
        if result.get("ok") == -2:  # an operator reset the budget: set it again
            raise _BudgetReset
        wait = granted(result)
        if wait is None:
            return False
        answer = await link.waits.wait_ticket(op["id"], min(_MAX_WAIT, wait) or _MAX_WAIT)
        if answer is not None and answer != "ask":
            if answer != "-":
                link.waits.book_ahead(float(answer))
            if say_taken:  # with the next call of this process
                link.queue({"op": "taken", "id": op["id"], "ttl": link.lease_ttl})
            return True


class RedisRate:
    """The namespace's request rate (GCRA in Redis), paused by any process's 429 (AIMD shared)."""

    __slots__ = ("_link", "_op", "_paused_until", "_throttle", "effective_rate", "rate")

    def __init__(
        self,
        link: Link,
        rate: float | None,
        burst: int,
        *,
        window: float = 1.0,
        default_pause: float = 2.0,
        decrease_factor: float = 0.5,
        min_factor: float = 1 / 16,
        increase: float = 1 / 30,
        cooldown: float = 1.0,
    ) -> None:
        self._link = link
        self.rate = 0.0 if rate is None else float(rate)
        self.effective_rate = self.rate
        self._op: dict[str, Any] = {
            "op": "book",
            "rate": self.rate,
            "burst": burst,
            "inc": increase,
            "window": window,
            "guard": _WINDOW_GUARD if window > 0 else 0.0,
            "keep": _KEEP_FOR_CREATES,
        }
        self._throttle: dict[str, Any] = {
            "op": "throttle",
            "inc": increase,
            "decrease": decrease_factor,
            "min_factor": min_factor,
            "cooldown": cooldown,
            "default_pause": default_pause,
        }
        self._paused_until = 0.0
        link.ahead_op = self._op

    @property
    def pause_left(self) -> float:
        """Seconds of a pause this process knows of (its own 429s and the last answer)."""
        return max(0.0, self._paused_until - time.monotonic())

    async def acquire(self) -> None:
        """Take the slot booked ahead with a lease or a reservation, or book the next shared
        slot (one round trip); sleep until it. A pause published meanwhile makes the waiter
        book again."""
        ahead = self._link.waits.take_ahead(_AHEAD_GRACE)
        now = time.monotonic()
        if ahead is not None and now >= self._paused_until:
            left = ahead - now
        else:
            ahead = None
            left = float((await self._book(recheck=False)).get("wait", 0.0))
        trace = self._link.trace
        while left > 0:
            if not await self._link.waits.wait_pause(left):
                break
            left = float((await self._book(recheck=True)).get("wait", 0.0))
        if trace is not None:
            trace.add("rate", asked=now, ahead=ahead is not None)

    async def _book(self, *, recheck: bool) -> dict[str, Any]:
        op = dict(self._op, recheck=recheck) if recheck else self._op
        result = await self._link.call(op)
        if self.rate > 0:
            self.effective_rate = float(result.get("rate", self.rate))
        self._paused_until = time.monotonic() + float(result.get("paused", 0.0))
        return result

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """A 429: pause here now; the shared pause and slow-down go with the next call (the
        retry of this very request, at once), and this process's sleepers book again."""
        pause = self._throttle["default_pause"] if retry_after is None else float(retry_after)
        pause = max(0.0, pause)
        self._paused_until = max(self._paused_until, time.monotonic() + pause)
        self._link.queue(dict(self._throttle, pause=pause))
        self._link.waits.wake_pause()

    def __repr__(self) -> str:
        return (
            f"<RedisRate rate={fmt(self.effective_rate)}/s (configured {fmt(self.rate)})"
            f" namespace={self._link.namespace}>"
        )


class RedisPermit:
    """A lease in the namespace's sorted set; renewed while held, freed by :meth:`release`."""

    __slots__ = ("_link", "id")

    def __init__(self, link: Link, lease_id: str) -> None:
        self._link = link
        self.id = lease_id

    def release(self) -> None:
        if self._link.held.pop(self.id, None) is not None:
            if self._link.trace is not None:
                self._link.trace.add("release", id=self.id)
            self._link.queue({"op": "unlease", "id": self.id}, urgent=True)

    def __repr__(self) -> str:
        return f"<RedisPermit {self.id} {'held' if self.id in self._link.held else 'released'}>"


class RedisSlots:
    """Tasks in flight for the whole namespace: leases that expire with a dead process."""

    __slots__ = ("_grow_every", "_link", "cap", "configured")

    def __init__(self, link: Link, max_in_flight: int, *, grow_every: float = 60.0) -> None:
        self._link = link
        self.configured = max_in_flight
        self.cap = max_in_flight
        self._grow_every = grow_every

    @property
    def in_flight(self) -> int:
        """Leases this process holds."""
        return len(self._link.held)

    async def acquire(self) -> RedisPermit:
        """A lease: at once if a slot is free and nobody waits before us; else a ticket in
        the namespace's line, granted in order by the call that frees a slot (no call of
        ours). One round trip either way, unless the listener missed the grant."""
        link = self._link
        lease_id = f"{link.owner}:{uuid.uuid4().hex[:12]}"
        op = {"op": "lease", "configured": self.configured, "id": lease_id}
        op.update(ttl=link.lease_ttl, owner=link.owner, grow_every=self._grow_every)
        asked = time.monotonic()
        try:
            line = await _wait_turn(link, op, self._granted, say_taken=False)
        except BaseException:
            # gave up waiting (cancelled, Redis down): out of line, a grant given back
            link.queue({"op": "unqueue", "id": lease_id})
            raise
        if link.trace is not None:
            link.trace.add("lease", id=lease_id, asked=asked, line=line)
        link.held[lease_id] = time.monotonic()
        return RedisPermit(link, lease_id)

    def _granted(self, result: dict[str, Any]) -> float | None:
        self.cap = int(result.get("cap", self.cap))
        return _MAX_WAIT if result.get("ok") != 1 else None

    def shrink(self, new_max: int) -> int:
        """A "too many concurrent tasks" 429: the shared cap shrinks in Redis with the 429's
        own pause (once for all processes; ``new_max``, a local figure, is not used)."""
        self._link.queue({"op": "shrink", "configured": self.configured})
        return self.cap

    def __repr__(self) -> str:
        return (
            f"<RedisSlots held_here={self.in_flight} cap={self.cap} (configured {self.configured})>"
        )


class RedisReservation:
    """Credits held in the namespace's budget for one create; closing is idempotent."""

    __slots__ = ("_budget", "amount", "id", "state")

    def __init__(self, budget: RedisBudget, reservation_id: str, amount: float) -> None:
        self._budget = budget
        self.id = reservation_id
        self.amount = amount
        self.state = "open"

    def settle(self, actual: float) -> None:
        if self.state == "open":
            self._budget.queue({"op": "settle", "id": self.id, "amount": float(actual)})
            self._budget.local += float(actual) - self.amount
            self.amount = float(actual)

    def commit(self) -> None:
        self._close(spend=True, state="committed")

    def release(self) -> None:
        self._close(spend=not self._budget.release_on_failure, state="released")

    def _close(self, *, spend: bool, state: str) -> None:
        if self.state == "open":
            self.state = state
            self._budget.local -= self.amount
            self._budget.queue({"op": "close", "id": self.id, "spend": spend})

    def __repr__(self) -> str:
        return f"<RedisReservation amount={fmt(self.amount)} {self.state}>"


class RedisBudget:
    """The namespace's credits: reserve -> settle -> commit/release, each atomic in Redis.

    The first process sets the total; one that asks for another total is refused. A dead
    process's reservations stay counted until settled or cleared by an operator.
    """

    __slots__ = ("_checked", "_link", "local", "release_on_failure", "total")

    def __init__(self, link: Link, total: float, *, release_on_failure: bool = True) -> None:
        self._link = link
        self.total = float(total)
        self.release_on_failure = release_on_failure
        self.local = 0.0  # held by this process's open reservations
        self._checked = False

    @property
    def reserved(self) -> float:
        """Credits this process's open reservations hold."""
        return max(0.0, self.local)

    def queue(self, op: dict[str, Any]) -> None:
        self._link.queue(op)

    async def check(self) -> None:
        """Set the namespace's total, or make sure it is the one asked for."""
        result = await self._link.call({"op": "init_budget", "total": self.total})
        shared = float(result.get("total", self.total))
        if abs(shared - self.total) > 1e-9 * max(1.0, shared):
            raise SharedLimitsError(
                f"--budget {self.total:g}: the shared namespace {self._link.namespace} already"
                f" has a budget of {shared:g} credits (reset it with"
                " `evolink-async limits --reset-budget`)"
            )
        self._checked = True

    async def reserve(self, amount: float) -> RedisReservation:
        if not self._checked:
            await self.check()
        link = self._link
        rid = f"{link.owner}:{uuid.uuid4().hex[:12]}"
        op = {"op": "reserve", "amount": float(amount), "id": rid, "ttl": link.lease_ttl}
        op.update(owner=link.owner, release_on_failure=self.release_on_failure)
        while True:
            try:
                await _wait_turn(link, op, self._granted)
                break
            except _BudgetReset:  # an operator reset the budget: set it again
                await self.check()
            except BaseException:
                link.queue({"op": "unqueue", "id": rid})
                raise
        self.local += float(amount)
        return RedisReservation(self, rid, float(amount))

    @staticmethod
    def _granted(result: dict[str, Any]) -> float | None:
        ok = result.get("ok")
        if ok == -1:
            raise BudgetExceededError(
                f"{result.get('amount', 0):g} credits can never fit in the shared budget:"
                f" total={result.get('total', 0):g} spent={result.get('spent', 0):g}"
                f" reserved={result.get('reserved', 0):g}"
            )
        return None if ok == 1 else _MAX_WAIT

    def __repr__(self) -> str:
        return (
            f"<RedisBudget total={fmt(self.total)} reserved_here={fmt(self.reserved)}"
            f" namespace={self._link.namespace}>"
        )
