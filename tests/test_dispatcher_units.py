"""The dispatcher alone: a fake API, a poller on a manual clock, explicit limits.

No simulator and no timed assertion: the test moves the clock forward itself until the batch
ends. Re-attaching a task of an earlier run (``Attach``) and the one place a 429 is handled
(the ``Limits`` bundle) are checked here.
"""

# Tests assert `expected == actual`, the project's test style.

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from evolink_async.dispatcher import Attach, Dispatcher, Event, Outcome, RateLimited
from evolink_async.errors import RateLimitError
from evolink_async.limits import ConcurrencyLimit, CreditBudget, Limits, Throttle
from evolink_async.models import Task, TaskErrorInfo, TaskStatus, VideoRequest
from evolink_async.poller import Poller, PollPolicy

PRICE = 5.0
OLD = "task-unified-1-earlier"


class ManualClock:
    """A clock that only the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeAPI:
    """Creates tasks numbered in order; a task ends with the state the test gave its id
    (``completed`` by default) at its first read."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.reads: list[str] = []
        self.final: dict[str, Task] = {}
        self.requests = 0
        self.keys: list[str | None] = []  # the idempotency key of each create
        self.refuse = 0  # creates to refuse with a 429 first
        self.connected = False  # as the dispatcher sees it: creates go one at a time first
        self.idempotency = False  # the keys are the test's (before_create), not the API's

    def when_connected(self, listener: Callable[[], None]) -> None:
        pass  # never connected: the first create's end lets the next one go

    async def create_video(
        self, request: VideoRequest, *, idempotency_key: str | None = None
    ) -> Task:
        self.requests += 1
        self.keys.append(idempotency_key)
        if self.refuse:
            self.refuse -= 1
            raise rate_limited("slow down")
        task_id = f"task-unified-new-{len(self.created) + 1}"
        self.created.append(task_id)
        return Task(id=task_id, status=TaskStatus.PENDING, raw_status="pending")

    async def get_task(self, task_id: str) -> Task:
        self.requests += 1
        self.reads.append(task_id)
        done = Task(id=task_id, status=TaskStatus.COMPLETED, raw_status="completed", results=("u",))
        return self.final.get(task_id, done)


def failed(task_id: str, code: str) -> Task:
    return Task(
        id=task_id,
        status=TaskStatus.FAILED,
        raw_status="failed",
        error=TaskErrorInfo(code=code, message="x"),
    )


class Rig:
    def __init__(self, *, budget: float | None = None, max_in_flight: int | None = None) -> None:
        self.clock = ManualClock()
        self.api = FakeAPI()
        # the poll plan in tiny real seconds: the loop's waits are short, the clock decides
        policy = PollPolicy(min_interval=1.0, jitter=0.0, workers=2)
        self.poller = Poller(self.api.get_task, policy, time_scale=0.001, clock=self.clock)
        self.limits = Limits(
            concurrency=ConcurrencyLimit(max_in_flight) if max_in_flight else None,
            budget=CreditBudget(budget) if budget is not None else None,
            running=lambda: self.poller.tracked,
        )
        self.dispatcher = Dispatcher(
            self.api, self.poller, self.limits, price=lambda *_: PRICE, task_timeout=None
        )
        self.created_at: list[tuple[int, VideoRequest, int]] = []
        self.events: list[Event] = []

    async def before_create(self, index: int, request: VideoRequest, attempt: int) -> None:
        self.created_at.append((index, request, attempt))

    async def run(self, items: Iterable[Any], **kw: Any) -> list[Outcome]:
        batch = self.dispatcher.generate_many(
            items, before_create=self.before_create, on_event=self.events.append, **kw
        )
        outcomes: list[Outcome] = []

        async def consume() -> None:
            async with batch:
                outcomes.extend([o async for o in batch])

        consumer = asyncio.ensure_future(consume())
        for _ in range(10_000):  # move the clock until the batch is over
            if consumer.done():
                break
            self.clock.now += 1.0
            await asyncio.sleep(0.0005)
        await consumer
        await self.dispatcher.aclose()
        await self.poller.aclose()
        return sorted(outcomes, key=lambda o: o.index)


def request(prompt: str) -> VideoRequest:
    return VideoRequest(prompt=prompt)


async def test_an_attached_task_is_followed_by_id_without_a_create_or_credits() -> None:
    rig = Rig(budget=100.0)
    old, new = request("old"), request("new")
    outcomes = await rig.run([Attach(OLD, old, attempts=1), new])
    assert [
        (0, "completed", (OLD,), 1, 0.0),
        (1, "completed", ("task-unified-new-1",), 1, PRICE),
    ] == [(o.index, o.status, o.task_ids, o.attempts, o.credits) for o in outcomes]
    assert [(1, new, 1)] == rig.created_at  # no before_create for the attached task
    assert (["task-unified-new-1"], OLD in rig.api.reads) == (rig.api.created, True)
    assert rig.limits.budget is not None
    assert (PRICE, 0.0) == (rig.limits.budget.spent, rig.limits.budget.reserved)


async def test_an_attempt_sent_again_keeps_its_key_and_a_new_attempt_gets_a_new_one() -> None:
    rig = Rig()
    rig.api.refuse = 1  # the first create is refused (a 429 the transport gave up on)
    first = "task-unified-new-1"
    rig.api.final[first] = failed(first, "service_error")  # retryable: a new attempt
    own = "caller-key-000000001"
    outcomes = await rig.run([VideoRequest(prompt="x", client_request_id=own)], max_attempts=2)
    assert [("completed", 2)] == [(o.status, o.attempts) for o in outcomes]
    keys = rig.api.keys
    assert [own, own] == keys[:2]  # the refused attempt, sent again with its key
    assert 3 == len(keys)
    assert keys[2] is not None
    assert re.fullmatch(r"run_[0-9a-f]{32}", keys[2])


async def test_a_retryable_failure_of_an_attached_task_is_resubmitted_attempts_going_on() -> None:
    rig = Rig(budget=100.0)
    rig.api.final[OLD] = failed(OLD, "service_error")
    old = request("old")
    [outcome] = await rig.run([Attach(OLD, old, attempts=2)], max_attempts=3)
    assert ("completed", (OLD, "task-unified-new-1"), 3) == (
        outcome.status,
        outcome.task_ids,
        outcome.attempts,
    )
    assert [(0, old, 3)] == rig.created_at  # through the ordinary create path, attempt 3
    assert rig.limits.budget is not None
    assert PRICE == rig.limits.budget.spent  # only the new attempt reserved credits


@pytest.mark.parametrize(
    ("code", "attempts"),
    [("service_error", 3), ("content_policy_violation", 1)],
    ids=["no-attempt-left", "fatal"],
)
async def test_an_attached_task_that_may_not_be_retried_ends_failed(
    code: str, attempts: int
) -> None:
    rig = Rig()
    rig.api.final[OLD] = failed(OLD, code)
    [outcome] = await rig.run([Attach(OLD, request("old"), attempts=attempts)], max_attempts=3)
    assert ("failed", (OLD,), attempts, [], []) == (
        outcome.status,
        outcome.task_ids,
        outcome.attempts,
        rig.api.created,
        rig.created_at,
    )


async def test_an_attached_task_holds_a_concurrency_slot_like_a_created_one() -> None:
    rig = Rig(max_in_flight=1)
    seen_in_flight: list[int] = []
    fetch = rig.api.get_task

    async def get_task(task_id: str) -> Task:
        assert rig.limits.concurrency is not None
        seen_in_flight.append(rig.limits.concurrency.in_flight)
        return await fetch(task_id)

    rig.poller.fetch = get_task
    outcomes = await rig.run([Attach(OLD, request("old")), request("a"), request("b")])
    assert ["completed"] * 3 == [o.status for o in outcomes]
    # one slot: the attached task's read came while it held the only one; creates waited
    assert [1, 1, 1] == seen_in_flight[:3]
    assert rig.api.reads[0] == OLD


def rate_limited(message: str) -> RateLimitError:
    return RateLimitError(429, message, retry_after=0.0)


def test_limits_handle_a_concurrency_429_in_one_place_and_tell_subscribers() -> None:
    running = [3]
    limits = Limits(concurrency=ConcurrencyLimit(8), running=lambda: running[0])
    batch_own = ConcurrencyLimit(6)
    limits.add_concurrency(batch_own)
    told: list[Throttle] = []
    limits.subscribe(told.append)
    limits.on_rate_limited(rate_limited("too many concurrent tasks"))
    limits.on_rate_limited(rate_limited("rate limit exceeded"))
    limits.discard_concurrency(batch_own)
    limits.unsubscribe(told.append)
    limits.on_rate_limited(rate_limited("rate limit exceeded"))
    assert limits.concurrency is not None
    # no permit is held: "in_flight - 1" is below the running tasks, the floor is 1
    assert (3, [True, False], 1, 1, 2) == (
        limits.throttles,
        [t.concurrency for t in told],
        limits.concurrency.limit,
        batch_own.limit,
        limits.rate.throttles - 1,
    )


async def test_a_batch_counts_the_429s_the_limits_saw_as_rate_limited_events() -> None:
    rig = Rig()
    api = rig.api
    create = api.create_video
    limits = rig.limits
    once = [True]

    async def create_video(req: VideoRequest, *, idempotency_key: str | None = None) -> Task:
        if once[0]:  # the transport would tell its gate of the 429, then retry
            once[0] = False
            limits.on_rate_limited(rate_limited("slow down"))
        return await create(req, idempotency_key=idempotency_key)

    api.create_video = create_video  # type: ignore[method-assign]
    outcomes = await rig.run([request("a")])
    stats_events = [e for e in rig.events if isinstance(e, RateLimited)]
    assert (["completed"], 1, 1) == (
        [o.status for o in outcomes],
        len(stats_events),
        limits.throttles,
    )
