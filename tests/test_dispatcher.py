"""The dispatcher against the simulator: limits, retries, ghosts, polls, many tasks, cancellation.

Every assertion is on counters (the simulator's and the SDK's), never on wall time. The
simulator runs at ``TS`` real seconds per service second (a 3-minute clip takes 0.2 s) and the
client is given the same ``time_scale``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from evolink_async import (
    APIConnectionError,
    Batch,
    BudgetExceededError,
    BudgetSkipped,
    Completed,
    Event,
    EvolinkClient,
    Failed,
    Outcome,
    Progress,
    RateLimited,
    RateLimiter,
    Retrying,
    Submitted,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    VideoRequest,
)
from evolink_async.dispatcher._run import Promise
from evolink_async.limits import RateSlot
from evolink_async.testing import (
    FATAL_TASK_ERRORS,
    RETRYABLE_TASK_ERRORS,
    ManualClock,
    Simulator,
    SimulatorStats,
)

TS = 0.001


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_internal_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The dispatcher logs (and swallows) errors of its own tasks and of callbacks: none here."""
    yield
    errors = [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and r.name.startswith("evolink_async")
    ]
    assert [] == errors


@asynccontextmanager
async def service(
    sim_knobs: dict[str, Any] | None = None, **client_kw: Any
) -> AsyncIterator[tuple[Simulator, EvolinkClient]]:
    """A started simulator and a client on it with the same time_scale (rate unlimited unless
    given). Checks that nothing of the SDK nor the simulator is left running afterwards."""
    knobs: dict[str, Any] = {"time_scale": TS, "seed": 1, **(sim_knobs or {})}
    client_kw.setdefault("rate", None)
    client_kw.setdefault("time_scale", knobs["time_scale"] if "clock" not in knobs else 1.0)
    async with Simulator(**knobs) as sim:
        async with EvolinkClient(sim.api_key, sim.base_url, **client_kw) as client:
            yield sim, client
        assert [] == sdk_tasks()
    # the simulator's request handlers (a "slow" one sleeping) may take a moment to unwind
    await until(lambda: not other_tasks())


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


def sdk_tasks(*, poller: bool = True) -> list[str]:
    """Running tasks whose coroutine is the SDK's (not the simulator's, not aiohttp's); without
    the client's poller (which stops by itself once idle) when ``poller=False``."""
    names = []
    for task in other_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "evolink_async" not in filename or "testing" in filename:
            continue
        if poller or not task.get_name().startswith("evolink-poll"):
            names.append(f"{task.get_name()}: {code.co_qualname if code else '?'}")
    return names


def prompts(n: int, prefix: str = "prompt") -> list[str]:
    return [f"{prefix} {i}" for i in range(n)]


async def collect(
    client: EvolinkClient, requests: Iterable[Any], **kw: Any
) -> tuple[list[Outcome], list[Event]]:
    events: list[Event] = []
    outcomes = [o async for o in client.generate_many(requests, on_event=events.append, **kw)]
    return outcomes, events


def assert_one_outcome_each(outcomes: Sequence[Outcome], n: int) -> None:
    assert list(range(n)) == sorted(o.index for o in outcomes)


async def until(check: Callable[[], bool], *, attempts: int = 1000) -> None:
    """Yield to the loop until ``check()`` holds (bounded; no timing assertion)."""
    for _ in range(attempts):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


def by_kind(events: Iterable[Event]) -> Counter[str]:
    return Counter(type(e).__name__ for e in events)


# --------------------------------------------------------------------------------------------
# the three limits, 200 prompts
# --------------------------------------------------------------------------------------------


async def test_200_prompts_never_exceed_max_in_flight_and_each_yields_one_outcome() -> None:
    # short clips (20-65 s): 20 rounds of 10 take 1 s, not 4
    knobs = {"max_concurrent": 10, "generation_time": (20.0, 60.0), "queue_delay": (0.0, 5.0)}
    async with service(knobs, max_in_flight=10) as (sim, client):
        outcomes, events = await collect(client, prompts(200))

    assert_one_outcome_each(outcomes, 200)
    assert {"completed": 200} == Counter(o.status for o in outcomes)
    assert sim.stats.peak_active_tasks <= 10
    assert 0 == sim.stats.rate_limited  # never a "too many concurrent tasks" 429
    assert 0 == sim.stats.count("create", 429)
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert 200 == len(sim.stats.creates_per_prompt)
    assert 200 == by_kind(events)["Submitted"] == by_kind(events)["Completed"]
    assert all(o.task is not None and o.video_url for o in outcomes)


async def test_outcome_index_is_the_0_based_position_of_the_request_in_the_input() -> None:
    # Before: indexes counted from 1, so prompts[outcome.index] was the next prompt.
    inputs = [*prompts(6), {"no_prompt": True}, "last"]
    async with service({"generation_time": (20.0, 60.0)}) as (_, client):
        outcomes, _ = await collect(client, inputs)
        handle = await client.submit("one more")
        extra = await handle

    assert list(range(len(inputs))) == sorted(o.index for o in outcomes)
    for o in outcomes:
        if o.status == "skipped":
            assert inputs[o.index] == {"no_prompt": True}
        else:
            assert o.request is not None
            assert inputs[o.index] == o.request.prompt
    assert 0 == extra.index  # the client's first submit()


async def test_a_batch_max_in_flight_below_the_client_s_is_kept() -> None:
    async with service({"max_concurrent": 5}, max_in_flight=50) as (sim, client):
        outcomes, _ = await collect(client, prompts(40), max_in_flight=5)
    assert {"completed": 40} == Counter(o.status for o in outcomes)
    assert sim.stats.peak_active_tasks <= 5
    assert 0 == sim.stats.rate_limited


class GrantLog(RateLimiter):
    """A ``RateLimiter`` that logs, for each request it lets go, the slot it granted and the
    time the request went: the SDK's two promises, checked apart from the event loop's lag.

    Times of sending (and of arrival) are not bounded by the rate alone: a wake-up late by
    ``L`` (a loaded machine, a long loop iteration) lets go at once requests whose slots were
    up to ``L`` apart, so a 1-second window of them can hold ``rate * L`` more (seen: 106 sent
    in a second at 100/s + 5 on a busy box). What the SDK controls is exact: the slots it
    grants, and that no request goes before its slot.
    """

    def __init__(self, rate: float, burst: int) -> None:
        super().__init__(rate, burst, clock=self._read_clock)
        self.booked: list[RateSlot] = []
        self.sent: list[tuple[float, float]] = []  # (slot time, time.monotonic() it went)
        self.last_read = 0.0

    def _read_clock(self) -> float:
        self.last_read = time.monotonic()
        return self.last_read

    def take_now(self) -> bool:
        # a free token taken at once: its slot is the one clock reading take_now makes
        if not super().take_now():
            return False
        self.sent.append((self.last_read, time.monotonic()))
        return True

    def book(self, now: float | None = None) -> RateSlot:
        slot = super().book(now)
        self.booked.append(slot)
        return slot

    async def acquire(self) -> None:
        # acquire() books its slot before its first await; it books anew only after a 429,
        # and the tests using this one assert that none came
        mine = len(self.booked)
        await super().acquire()
        if len(self.booked) > mine:  # else take_now let it go, and logged it
            self.sent.append((self.booked[mine].at, time.monotonic()))


def assert_paced(log: GrantLog, arrivals: Sequence[float], most_per_second: int) -> None:
    """Every request passed ``log``; the slots it granted keep ``most_per_second`` in every
    1-second window; no request went, nor reached the service, before its slot."""
    slots = sorted(at for at, _ in log.sent)
    assert len(arrivals) == len(slots)
    assert SimulatorStats(request_times=slots).max_requests_in_window(1.0) <= most_per_second
    assert all(at <= went for at, went in log.sent)
    # the k-th arrival follows the k-th slot: each arrival follows its own slot
    assert all(slot <= arrived for slot, arrived in zip(slots, sorted(arrivals), strict=True))


async def test_200_prompts_stay_within_the_client_rate_in_every_second() -> None:
    rate, burst = 100, 5
    async with service(rate=rate, burst=burst, max_in_flight=50) as (sim, client):
        gate = client.rate_limiter
        log = GrantLog(gate.rate, gate.burst)  # the client's limiter, logged
        client.limits.rate = log  # the gate of every request (white box)
        outcomes, _ = await collect(client, prompts(200))

    assert (rate, burst) == (gate.rate, gate.burst)
    assert 0 == sim.stats.rate_limited
    assert_one_outcome_each(outcomes, 200)
    assert {"completed": 200} == Counter(o.status for o in outcomes)
    # creates and reads all count (the reads of 200 tasks share batch reads: a few dozen)
    assert 200 == sim.stats.count("create")
    assert sim.stats.reads >= 200 / 50
    assert len(log.sent) == sim.stats.total_requests
    assert_paced(log, sim.stats.request_times, rate + burst)


async def test_a_batch_rate_paces_its_creates_and_polls() -> None:
    rate = 40
    async with service(max_in_flight=50) as (sim, client):
        batch = client.generate_many(prompts(50), rate=rate)
        assert batch._run.rate is not None  # the batch's own limiter (white box)
        assert (rate, 1) == (batch._run.rate.rate, batch._run.rate.burst)
        log = batch._run.rate = GrantLog(rate, 1)  # the same, logged
        outcomes = [o async for o in batch]
    assert 0 == sim.stats.rate_limited
    assert {"completed": 50} == Counter(o.status for o in outcomes)
    assert 50 == sim.stats.count("create")
    assert sim.stats.reads >= 50 / 50  # reads of 50 tasks: shared batch reads, a few
    assert len(log.sent) == sim.stats.total_requests  # creates and polls alike
    assert_paced(log, sim.stats.request_times, rate + 1)  # the batch's burst is 1


def durations(n: int) -> list[VideoRequest]:
    cycle = (4, 8, 12)  # 23.04, 46.08, 69.12 credits
    return [VideoRequest(prompt=f"clip {i}", duration=cycle[i % 3]) for i in range(n)]


@pytest.mark.parametrize("where", ["batch", "client"])
async def test_200_prompts_never_spend_or_hold_more_than_the_budget(where: str) -> None:
    budget = 1000.0
    checks: list[float] = []
    client_kw: dict[str, Any] = {"max_in_flight": 10}
    batch_kw: dict[str, Any] = {}
    if where == "client":
        client_kw["budget"] = budget
    else:
        batch_kw["budget"] = budget

    async with service(**client_kw) as (sim, client):
        batches: list[Batch] = []

        def on_event(_: Event) -> None:  # at every event: what is spent and held
            s = batches[0].stats()
            checks.append(s.credits_spent + s.credits_reserved)
            if client.budget is not None:
                checks.append(client.budget.spent + client.budget.reserved)

        batch = client.generate_many(durations(200), on_event=on_event, **batch_kw)
        batches.append(batch)
        outcomes = [o async for o in batch]
        final = batch.stats()

    assert_one_outcome_each(outcomes, 200)
    statuses = Counter(o.status for o in outcomes)
    assert {"completed", "skipped"} == set(statuses)
    assert checks
    assert max(checks) <= budget + 1e-6
    # the service saw no more than the budget, ever (no failures: nothing released)
    assert sim.stats.credits_reserved <= budget + 1e-6
    spent = sum(o.credits for o in outcomes if o.status == "completed")
    assert spent == pytest.approx(sim.stats.credits_reserved)
    assert spent == pytest.approx(final.credits_spent)
    assert budget - spent < 23.04  # it went on until not even the cheapest clip fit
    for o in outcomes:
        if o.status == "skipped":
            assert isinstance(o.error, BudgetExceededError)
            assert () == o.task_ids
            assert o.request is not None
            assert o.request.prompt not in sim.stats.creates_per_prompt
    assert statuses["skipped"] == final.skipped > 100


async def test_an_unaffordable_request_is_skipped_and_a_cheaper_one_after_it_still_runs() -> None:
    requests = [
        VideoRequest(prompt="a", duration=8),  # 46.08
        VideoRequest(prompt="b", duration=8),  # 46.08 -> 92.16
        VideoRequest(prompt="c", duration=8),  # 138.24 > 120: skipped
        VideoRequest(prompt="d", duration=4),  # 115.20 <= 120: fits
    ]
    async with service() as (sim, client):
        outcomes, events = await collect(client, requests, budget=120.0)

    status = {o.index: o.status for o in outcomes}
    assert {0: "completed", 1: "completed", 2: "skipped", 3: "completed"} == status
    skipped = [e for e in events if isinstance(e, BudgetSkipped)]
    assert [2] == [e.index for e in skipped]
    assert 46.08 == skipped[0].needed
    assert {"a": 1, "b": 1, "d": 1} == dict(sim.stats.creates_per_prompt)
    assert 115.2 == pytest.approx(sim.stats.credits_reserved)


async def test_with_a_budget_a_model_without_a_known_price_is_skipped() -> None:
    req = VideoRequest(prompt="x", model="veo-3.1-fast-generate-preview", duration=4)
    async with service() as (sim, client):
        outcomes, _ = await collect(client, [req], budget=100.0)
    assert ["skipped"] == [o.status for o in outcomes]
    assert isinstance(outcomes[0].error, BudgetExceededError)
    assert "estimator" in str(outcomes[0].error)
    assert 0 == sim.stats.count("create")


# --------------------------------------------------------------------------------------------
# the service's own limits lower than the client's
# --------------------------------------------------------------------------------------------


async def test_service_limits_below_the_client_s_are_absorbed_and_nothing_is_lost() -> None:
    n = 24
    knobs = {"max_concurrent": 4, "rate_limit": 20}
    async with service(knobs, rate=100, burst=20, max_in_flight=10) as (sim, client):
        outcomes, events = await collect(client, prompts(n))

    assert_one_outcome_each(outcomes, n)
    assert {"completed": n} == Counter(o.status for o in outcomes)
    assert sim.stats.rate_limited > 0  # the service did say no...
    limited = [e for e in events if isinstance(e, RateLimited)]
    assert limited  # ...and the batch saw it
    assert any(e.concurrency for e in limited)
    assert all(e.effective_rate < 100 for e in limited)  # AIMD lowered the rate
    assert {1} == set(sim.stats.creates_per_prompt.values())  # no prompt created twice
    assert n == len(sim.stats.creates_per_prompt)
    assert sim.stats.peak_active_tasks <= 4


async def test_a_batch_max_in_flight_shrunk_by_concurrency_429s_grows_back() -> None:
    # every prompt meets about one 429 and its whole-second pause: 8 prompts, not 20 (9 s)
    n = 8
    quick = {"max_concurrent": 2, "generation_time": (20.0, 40.0), "queue_delay": (0.0, 5.0)}
    async with service(quick, max_in_flight=None, rate=100, burst=10) as (sim, client):
        shrunk: list[int] = []
        batch = client.generate_many(
            prompts(n),
            max_in_flight=6,
            on_event=lambda e: shrunk.append(limit.limit) if isinstance(e, RateLimited) else None,
        )
        limit = batch._run.concurrency[-1]  # the batch's own limit (white box)
        outcomes = [o async for o in batch]
        assert {"completed": n} == Counter(o.status for o in outcomes)
        assert sim.stats.count("create", 429) > 0
        assert min(shrunk) <= 2  # the service's "too many concurrent tasks" shrank it...
        await until(lambda: limit.limit == 6)  # ...and with time it grows back


async def test_a_service_rate_limit_below_the_client_s_is_absorbed() -> None:
    n = 15
    async with service({"rate_limit": 10}, rate=100, burst=20) as (sim, client):
        outcomes, events = await collect(client, prompts(n))

    assert {"completed": n} == Counter(o.status for o in outcomes)
    assert sim.stats.rate_limited > 0  # 15 creates at once against 10 a second
    limited = [e for e in events if isinstance(e, RateLimited)]
    assert limited
    assert not any(e.concurrency for e in limited)
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert n == len(sim.stats.creates_per_prompt)


# --------------------------------------------------------------------------------------------
# task failures, ghosts, timeouts
# --------------------------------------------------------------------------------------------


async def test_retryable_failures_are_resubmitted_and_fatal_ones_reported_with_their_code() -> None:
    n = 150
    knobs = {"retryable_failure_rate": 0.10, "fatal_failure_rate": 0.05, "seed": 4}
    async with service(knobs, max_in_flight=40) as (sim, client):
        outcomes, events = await collect(client, prompts(n), max_attempts=3)
        tasks = dict(sim.stats.tasks)

    assert_one_outcome_each(outcomes, n)
    retrying = Counter(e.index for e in events if isinstance(e, Retrying))
    statuses: Counter[str] = Counter()
    for o in outcomes:
        assert o.request is not None
        attempts = [tasks[t] for t in o.task_ids]
        codes = [t.error_code for t in attempts]
        # one create per attempt, no more
        assert o.attempts == len(attempts) == sim.stats.creates_per_prompt[o.request.prompt]
        assert retrying[o.index] == o.attempts - 1
        # only retryable failures were tried again
        assert all(code in RETRYABLE_TASK_ERRORS for code in codes[:-1])
        last = codes[-1]
        if last is None:
            statuses["completed"] += 1
            assert "completed" == o.status
        elif last in FATAL_TASK_ERRORS:
            statuses["fatal"] += 1
            assert "failed" == o.status
            assert isinstance(o.error, TaskFailedError)
            assert last == o.error.code
            assert not o.error.retryable
        else:
            statuses["gave up"] += 1
            assert last in RETRYABLE_TASK_ERRORS
            assert 3 == o.attempts
            assert "failed" == o.status
            assert isinstance(o.error, TaskFailedError)
            assert last == o.error.code
    retried = [o for o in outcomes if o.attempts > 1]
    assert retried  # the seed gives both kinds
    assert statuses["fatal"] > 0
    assert sum(o.attempts - 1 for o in outcomes) == sum(retrying.values())
    assert n - len(retried) == sum(1 for v in sim.stats.creates_per_prompt.values() if v == 1)
    # prompts created more than once are exactly the retried ones
    assert {o.request.prompt for o in retried if o.request} == {
        p for p, v in sim.stats.creates_per_prompt.items() if v > 1
    }


async def test_ghost_creates_without_keys_are_reported_unknown_and_never_created_twice() -> None:
    n = 120
    knobs = {"ghost_rate": 0.1, "seed": 2, "idempotency": False}
    async with service(knobs, max_in_flight=30, idempotency=False) as (sim, client):
        outcomes, _ = await collect(client, prompts(n), max_attempts=1)
        ghosts = {sim.stats.tasks[t].prompt for t in sim.stats.ghost_task_ids}

    assert_one_outcome_each(outcomes, n)
    assert ghosts  # the seed makes some creates ghosts
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert n == len(sim.stats.creates_per_prompt)
    unknown = {o.request.prompt for o in outcomes if o.status == "unknown" and o.request}
    assert ghosts == unknown
    for o in outcomes:
        if o.status == "unknown":
            assert isinstance(o.error, APIConnectionError)
            assert o.error.maybe_created
            assert 1 == o.attempts
        else:
            assert "completed" == o.status
    # reads (batch reads, and single GETs) were dropped too: retried, harmlessly
    assert sim.stats.count("get_task", 0) + sim.stats.count("tasks_batch", 0) > 0


async def test_ghost_creates_with_keys_are_sent_again_with_their_key_and_complete_once() -> None:
    n = 120
    async with service({"ghost_rate": 0.1, "seed": 2}, max_in_flight=30) as (sim, client):
        outcomes, _ = await collect(client, prompts(n), max_attempts=1)
        ghosts = {sim.stats.tasks[t].prompt for t in sim.stats.ghost_task_ids}

    assert_one_outcome_each(outcomes, n)
    assert ghosts  # the seed makes some creates ghosts
    assert {"completed": n} == Counter(o.status for o in outcomes)
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert n == len(sim.stats.creates_per_prompt)
    assert sim.stats.replayed >= len(ghosts)


#: The client's timeout in the test below: it must only be longer than any answered create
#: takes, 40 of them at once on one loop shared with the simulator (≤ 0.1 s on a loaded 2-core
#: box, spikes above 0.2 s seen, hence not 0.2). The slow answers come after the simulator has
#: closed (it cancels them), so nothing else bounds it; each slow GET costs one such timeout.
CREATE_TIMEOUT = 1.0


async def test_creates_answered_after_the_client_timeout_are_unknown_not_resubmitted() -> None:
    n = 40
    knobs = {"slow_rate": 0.15, "slow_seconds": 3600.0, "seed": 3, "idempotency": False}
    async with service(knobs, max_in_flight=40, timeout=CREATE_TIMEOUT, idempotency=False) as (
        sim,
        client,
    ):
        outcomes, _ = await collect(client, prompts(n), max_attempts=1)
        slow = {sim.stats.tasks[t].prompt for t in sim.stats.slow_task_ids}

    assert slow
    assert {1} == set(sim.stats.creates_per_prompt.values())
    unknown = {o.request.prompt for o in outcomes if o.status == "unknown" and o.request}
    assert slow == unknown
    assert all(
        isinstance(o.error, APIConnectionError) and o.error.maybe_created
        for o in outcomes
        if o.status == "unknown"
    )
    assert n - len(slow) == sum(o.status == "completed" for o in outcomes)


async def test_creates_answered_after_the_client_timeout_are_sent_again_with_their_key() -> None:
    n = 40
    knobs = {"slow_rate": 0.15, "slow_seconds": 3600.0, "seed": 3}
    async with service(knobs, max_in_flight=40, timeout=CREATE_TIMEOUT) as (sim, client):
        outcomes, _ = await collect(client, prompts(n), max_attempts=1)
        slow = {sim.stats.tasks[t].prompt for t in sim.stats.slow_task_ids}

    assert slow
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert n == len(sim.stats.creates_per_prompt)
    assert {"completed": n} == Counter(o.status for o in outcomes)


# --------------------------------------------------------------------------------------------
# polling cost
# --------------------------------------------------------------------------------------------


async def test_with_honest_estimates_a_task_costs_fewer_than_four_polls() -> None:
    n = 150
    async with service({"estimate_error": 0.0, "seed": 5}, max_in_flight=50) as (sim, client):
        outcomes, _ = await collect(client, prompts(n))
    completed = sum(o.status == "completed" for o in outcomes)
    assert n == completed
    polls_per_task = sim.stats.count("get_task") / completed
    assert polls_per_task < 4
    assert polls_per_task < 2  # the design's goal: "about one or two polls per task"


# --------------------------------------------------------------------------------------------
# many tasks, one poller
# --------------------------------------------------------------------------------------------


async def _asyncio_tasks_with_in_flight(n: int) -> tuple[int, int]:
    """Create ``n`` tasks that never finish (a ManualClock simulator); return the number of
    running asyncio tasks once all are in flight, and the number tracked by the poller."""
    # client time_scale 1: the first polls are planned minutes away, so none happens here
    async with service({"clock": ManualClock()}, max_in_flight=n) as (_sim, client):
        batch = client.generate_many(prompts(n))
        consumer = asyncio.create_task(anext(batch, None))  # iterating starts the batch
        await until(lambda: batch.stats().in_flight == n, attempts=10_000)
        running = len(asyncio.all_tasks())
        tracked = client.poller.tracked
        assert n == len(batch.stats().in_flight_task_ids)
        assert 0 == client.poller.polls
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await batch.aclose()
        assert 0 == client.poller.tracked
    return running, tracked


async def test_10000_tasks_in_flight_are_tracked_by_one_poller_without_more_asyncio_tasks() -> None:
    small_running, small_tracked = await _asyncio_tasks_with_in_flight(1000)
    big_running, big_tracked = await _asyncio_tasks_with_in_flight(10_000)
    assert (1000, 10_000) == (small_tracked, big_tracked)
    assert big_running <= 60
    assert big_running <= small_running + 5  # does not grow with the number of tasks


# --------------------------------------------------------------------------------------------
# cancellation
# --------------------------------------------------------------------------------------------

# Tasks that take a (simulated) while: the first ends before most of the others.
LONG: dict[str, Any] = {"generation_time": (60.0, 3000.0), "queue_delay": (0.0, 0.0), "seed": 6}
#: Tasks that run until the test ends one (a million simulated seconds: 1000 s here). With
#: LONG, whether the tasks still in flight are still processing at the service depends on time:
#: the first to end (seed 6) and the next one end about 50 ms apart, and the poll that sees the
#: first comes up to 10 % late (estimate error) and ±2.5 % (jitter) around it.
ENDLESS: dict[str, Any] = {"generation_time": (1e6, 1e6), "queue_delay": (0.0, 0.0)}


async def test_breaking_out_of_generate_many_stops_everything_and_keeps_the_task_ids() -> None:
    async with service(ENDLESS, max_in_flight=8, rate=100, burst=2) as (sim, client):
        batch = client.generate_many(prompts(40))

        async def end_one_task() -> None:  # the outcome to break on (found by a poll)
            await until(lambda: batch.stats().in_flight == 8)
            sim.complete_task(batch.stats().in_flight_task_ids[0])

        ending = asyncio.create_task(end_one_task())
        async for _ in batch:
            break
        await ending
        ids = batch.stats().in_flight_task_ids
        await batch.aclose()

        assert ids  # the tasks still running at the service are not lost
        assert all(sim.stats.tasks[i].status_at(sim.clock.now()) == "processing" for i in ids)
        assert [] == sdk_tasks(poller=False)  # nothing of the batch runs on
        assert 0 == client.poller.tracked
        await until(lambda: not sdk_tasks())  # and the idle poller stops
        assert client.concurrency is not None
        assert 0 == client.concurrency.in_flight  # every slot was given back
        creates = sim.stats.count("create")
        await asyncio.sleep(0.05)
        assert creates == sim.stats.count("create")  # no admission after the break


async def test_breaking_out_without_a_reference_cleans_up_by_itself() -> None:
    async with service(LONG, max_in_flight=8) as (_sim, client):
        async for _ in client.generate_many(prompts(40)):
            break
        gc.collect()
        await until(lambda: not sdk_tasks())
        assert 0 == client.poller.tracked
        assert client.concurrency is not None
        assert 0 == client.concurrency.in_flight


async def test_cancelling_the_consuming_task_stops_the_batch_and_frees_its_slots() -> None:
    # a batch rate of 20/s: most creates wait for a token, holding the client's slots
    async with service(ENDLESS, max_in_flight=12) as (_sim, client):
        batch = client.generate_many(prompts(40), rate=20)
        seen: list[Outcome] = []

        async def consume() -> None:
            async for outcome in batch:
                seen.append(outcome)

        consumer = asyncio.create_task(consume())
        await until(lambda: batch.stats().in_flight >= 3)
        ids = batch.stats().in_flight_task_ids
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

        assert ids
        assert [] == sdk_tasks(poller=False)
        assert 0 == client.poller.tracked
        await until(lambda: not sdk_tasks())
        assert client.concurrency is not None
        assert 0 == client.concurrency.in_flight  # no slot leaked by a cancelled admission
        assert seen == []


async def test_leaving_the_client_mid_batch_closes_cleanly() -> None:
    async with Simulator(time_scale=TS, **LONG) as sim:
        async with EvolinkClient(
            sim.api_key, sim.base_url, time_scale=TS, rate=None, max_in_flight=8
        ) as client:
            batch = client.generate_many(prompts(40))
            async for _ in batch:
                ids = batch.stats().in_flight_task_ids
                break
        # the client's exit cancelled and awaited what the batch had started
        assert [] == sdk_tasks()
        assert ids
        assert all(i in sim.stats.tasks for i in ids)
        await batch.aclose()  # closing again later is harmless
    await until(lambda: not other_tasks())  # the simulator's handlers unwind too


# --------------------------------------------------------------------------------------------
# submit() and TaskHandle, client.wait()
# --------------------------------------------------------------------------------------------


async def test_submit_returns_a_handle_that_follows_the_task_and_awaits_its_outcome() -> None:
    events: list[Event] = []
    async with service({"generation_time": (100.0, 100.0), "queue_delay": (0.0, 0.0)}) as (
        _sim,
        client,
    ):
        handle = await client.submit("a cat playing piano", on_event=events.append)
        assert ("queued", None, 0) == (handle.state, handle.task_id, handle.queue_position)
        assert await handle.created() == handle.task_id
        assert handle.task_id is not None
        assert handle.task_id.startswith("task-unified-")
        assert handle.status in (TaskStatus.PENDING, TaskStatus.PROCESSING)
        assert not handle.done()
        outcome = await handle
        assert outcome == await handle.result()  # awaitable again

    assert "completed" == outcome.status
    assert handle.done()
    assert "completed" == str(handle.status)  # follows the polls
    assert 100 == handle.progress
    assert handle.task_id == outcome.task_id
    assert outcome.video_url is not None
    assert 1 == outcome.attempts
    assert isinstance(events[0], Submitted)
    assert isinstance(events[-1], Completed)
    assert any(isinstance(e, Progress) for e in events)


async def test_submit_of_a_fatal_failure_gives_a_failed_outcome_with_the_code() -> None:
    async with service({"fatal_failure_rate": 1.0}) as (_sim, client):
        handle = await client.submit("a cat")
        outcome = await handle
    assert "failed" == outcome.status
    assert isinstance(outcome.error, TaskFailedError)
    assert outcome.error.code in FATAL_TASK_ERRORS


async def test_submit_retries_a_retryable_failure_up_to_max_attempts() -> None:
    events: list[Event] = []
    async with service({"retryable_failure_rate": 1.0}) as (sim, client):
        outcome = await (await client.submit("a cat", max_attempts=2, on_event=events.append))
    assert "failed" == outcome.status
    assert 2 == outcome.attempts == len(outcome.task_ids)
    assert 2 == sim.stats.creates_per_prompt["a cat"]
    assert 1 == sum(isinstance(e, Retrying) for e in events)
    assert isinstance(events[-1], Failed)


async def test_wait_raises_task_failed_error_with_the_code() -> None:
    async with service({"fatal_failure_rate": 1.0}) as (_sim, client):
        task = await client.create_video(prompt="a cat")
        with pytest.raises(TaskFailedError) as info:
            await client.wait(task)
    assert info.value.code in FATAL_TASK_ERRORS


async def test_wait_with_a_timeout_raises_task_timeout_error() -> None:
    async with service({"clock": ManualClock()}) as (_sim, client):
        task = await client.create_video(prompt="a cat")
        with pytest.raises(TaskTimeoutError) as info:
            await client.wait(task, timeout=0.05)
        assert 0 == client.poller.tracked
    assert task.id == info.value.task_id


async def test_a_handle_awaited_when_the_client_closes_does_not_hang() -> None:
    async with Simulator(clock=ManualClock()) as sim:
        client = EvolinkClient(sim.api_key, sim.base_url, rate=None)
        handle = await client.submit("a cat")
        await handle.created()
        waiter = asyncio.create_task(handle.result())
        await asyncio.sleep(0)
        await client.aclose()
        outcome = await asyncio.wait_for(waiter, 5)
    assert "failed" == outcome.status
    assert isinstance(outcome.error, TaskTimeoutError)
    assert handle.task_id == outcome.task_id
    await until(lambda: not other_tasks())


async def test_a_status_unknown_to_the_sdk_keeps_being_polled() -> None:
    """A stub service (the simulator only speaks documented statuses)."""
    answers = ["pending", "moderating", "moderating", "completed"]
    polls: list[str] = []

    def body(status: str) -> dict[str, Any]:
        b: dict[str, Any] = {
            "id": "task-unified-1-aaaaaaaa",
            "status": status,
            "progress": 100 if status == "completed" else 0,
            "task_info": {"estimated_time": 1},
            "usage": {"credits_reserved": 23.04},
        }
        if status == "completed":
            b["results"] = ["https://files.example/v.mp4"]
        return b

    async def create(_: web.Request) -> web.Response:
        return web.json_response(body("pending"))

    async def get(_: web.Request) -> web.Response:
        status = answers[min(len(polls) + 1, len(answers) - 1)]
        polls.append(status)
        return web.json_response(body(status))

    app = web.Application()
    app.router.add_post("/v1/videos/generations", create)
    app.router.add_get("/v1/tasks/{task_id}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    seen: list[str] = []
    try:
        async with EvolinkClient("sk-test", f"http://{host}:{port}", rate=None, time_scale=TS) as c:
            task = await c.wait(
                "task-unified-1-aaaaaaaa", on_progress=lambda t: seen.append(t.raw_status)
            )
            outcome = await (await c.submit("a cat"))
    finally:
        await runner.cleanup()
    assert TaskStatus.COMPLETED == task.status
    assert ["moderating", "moderating", "completed"] == seen
    assert "completed" == outcome.status
    assert len(polls) >= 4


async def test_each_request_form_is_accepted_and_an_invalid_one_is_skipped() -> None:
    requests: list[Any] = [
        "a prompt",
        {"prompt": "a mapping", "duration": 8},
        VideoRequest(prompt="a request"),
        {"no_prompt": True},
    ]
    async with service() as (sim, client):
        outcomes, _ = await collect(client, requests)
    assert {0: "completed", 1: "completed", 2: "completed", 3: "skipped"} == {
        o.index: o.status for o in outcomes
    }
    assert {"a prompt", "a mapping", "a request"} == set(sim.stats.creates_per_prompt)


async def test_an_async_iterable_is_pulled_lazily() -> None:
    pulled = 0

    async def source() -> AsyncIterator[str]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield f"p {i}"

    async with service({"clock": ManualClock()}, max_in_flight=5) as (_sim, client):
        batch = client.generate_many(source())
        consumer = asyncio.create_task(anext(batch, None))
        await until(lambda: batch.stats().in_flight == 5)
        await asyncio.sleep(0.02)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await batch.aclose()
    assert pulled < 100  # 5 in flight, a few waiting for a slot: not 10 000 read at once


async def test_a_handle_s_promise_gives_its_first_outcome_and_a_cancelled_one_raises() -> None:
    kept, dropped = Promise(), Promise()
    waiter = asyncio.create_task(kept.wait())
    await asyncio.sleep(0)
    first = Outcome(index=1, request=None, status="completed")
    kept.set(first)
    kept.set(Outcome(index=1, request=None, status="failed"))  # the first outcome stays
    assert first is await waiter
    assert first is await kept.wait()  # awaitable again
    dropped.cancel()
    assert dropped.done()
    with pytest.raises(asyncio.CancelledError):
        await dropped.wait()
