"""``submit`` returns a handle at once (queued, with its place in the queue), creates in
submission order through the client's limits, and tells progress between reads: estimates from
``estimated_time`` and the rate of progress (``Progress(estimated=True)``), from one shared
ticker, only when somebody listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from evolink_async import (
    Event,
    EvolinkClient,
    Failed,
    InsufficientCreditsError,
    InvalidRequestError,
    Progress,
    Submitted,
    TaskHandle,
    TaskStatus,
)
from evolink_async.dispatcher._progress import MAX_ESTIMATE, Track
from evolink_async.testing import RETRYABLE_TASK_ERRORS, ManualClock, Simulator

TS = 0.002


@asynccontextmanager
async def service(
    sim_knobs: dict[str, Any] | None = None, **client_kw: Any
) -> AsyncIterator[tuple[Simulator, EvolinkClient]]:
    knobs: dict[str, Any] = {"time_scale": TS, "seed": 1, **(sim_knobs or {})}
    client_kw.setdefault("rate", None)
    async with (
        Simulator(**knobs) as sim,
        EvolinkClient(sim.api_key, sim.base_url, **client_kw) as client,
    ):
        yield sim, client


async def created(handle: TaskHandle) -> str:
    task_id = await handle.created()
    assert task_id is not None
    return task_id


# -- the queue ------------------------------------------------------------------------------


async def test_submit_returns_at_once_and_the_queue_moves_in_submission_order() -> None:
    async with service({"clock": ManualClock()}, max_in_flight=1) as (sim, client):
        handles = [await client.submit(f"a cat {n}") for n in range(4)]
        # nothing was sent yet: every handle is queued, numbered by how many are ahead
        assert [("queued", None, n) for n in range(4)] == [
            (h.state, h.task_id, h.queue_position) for h in handles
        ]
        assert 0 == sim.stats.count("create")
        first = await created(handles[0])
        assert ("pending", 0) == (handles[0].state, handles[0].queue_position)
        assert [("queued", 0), ("queued", 1), ("queued", 2)] == [
            (h.state, h.queue_position) for h in handles[1:]
        ]
        sim.complete_task(first)
        second = await created(handles[1])  # its slot came when the first ended
        assert "completed" == (await handles[0]).status
        assert [0, 1] == [h.queue_position for h in handles[2:]]
        assert [first, second] == [t.id for t in sim.stats.tasks.values()]
        for h in handles[1:]:
            sim.complete_task(await created(h))
        outcomes = [await h for h in handles]
    assert ["completed"] * 4 == [o.status for o in outcomes]
    assert [0, 1, 2, 3] == [h.index for h in handles]


async def until(check: Callable[[], bool]) -> None:
    """Yield to the loop until ``check()`` holds (bounded; no timing assertion)."""
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


async def test_a_retried_request_queues_again_behind_those_waiting_for_a_slot() -> None:
    async with service({"clock": ManualClock()}, max_in_flight=1) as (sim, client):
        first = await client.submit("a cat", max_attempts=2)
        failed = await created(first)
        later = [await client.submit(f"a dog {n}") for n in range(2)]
        assert [0, 1] == [h.queue_position for h in later]
        sim.fail_task(failed, RETRYABLE_TASK_ERRORS[0])
        client.poller.wake(failed)  # read it now
        await until(lambda: first.state == "queued")
        running = await created(later[0])  # it waited for the slot: it had it next
        assert (1, 0) == (first.queue_position, later[1].queue_position)
        sim.complete_task(running)
        client.poller.wake(running)
        sim.complete_task(await created(later[1]))
        client.poller.wake(later[1].task_id or "")
        await until(lambda: first.task_id != failed)
        assert ("pending", 0) == (first.state, first.queue_position)
        sim.complete_task(first.task_id or "")
        client.poller.wake(first.task_id or "")
        outcome = await first
    assert ("completed", 2) == (outcome.status, outcome.attempts)
    assert failed == outcome.task_ids[0]


async def test_a_long_queue_holds_no_coroutine_per_request() -> None:
    async with service({"clock": ManualClock()}, max_in_flight=2) as (_sim, client):
        handles = [await client.submit(f"a cat {n}") for n in range(20)]
        await created(handles[1])
        tasks = len(asyncio.all_tasks())  # the feeder has started all it may (16 attempts)
        handles += [await client.submit(f"a dog {n}") for n in range(280)]
        await asyncio.sleep(0)
        assert 297 == handles[-1].queue_position  # all but the two created and itself
        assert tasks == len(asyncio.all_tasks())  # 280 more queued: not one more coroutine


async def test_bad_input_is_refused_by_submit_itself_and_nothing_is_queued() -> None:
    async with service() as (sim, client):
        with pytest.raises(InvalidRequestError) as info:
            await client.submit({"prompt": "a cat", "durration": 8})
        assert 0 == client.dispatcher.stats().queued
    assert "duration" in str(info.value)
    assert 0 == sim.stats.count("create")


async def test_an_error_of_the_create_ends_in_the_outcome_not_in_submit() -> None:
    events: list[Event] = []
    async with service() as (sim, client):
        sim.set_credits(0)
        handle = await client.submit("a cat", on_event=events.append)
        assert "queued" == handle.state
        assert await handle.created() is None  # it ended without a task
        outcome = await handle
    assert ("failed", "failed") == (outcome.status, handle.state)
    assert isinstance(outcome.error, InsufficientCreditsError)
    assert outcome is handle.outcome
    assert [Failed(outcome)] == events  # told to its listener too


async def test_a_handle_queued_when_the_client_closes_ends_cancelled() -> None:
    async with Simulator(clock=ManualClock()) as sim:
        client = EvolinkClient(sim.api_key, sim.base_url, rate=None, max_in_flight=1)
        running = await client.submit("a cat")
        await created(running)
        queued = await client.submit("a dog")
        await client.aclose()
        assert await queued.created() is None  # never created: the waiter does not hang
        with pytest.raises(asyncio.CancelledError):
            await queued
    assert "failed" == (await running).status
    assert 1 == sim.stats.count("create")


# -- progress between reads -----------------------------------------------------------------


async def test_estimates_come_between_reads_rise_and_stay_below_100() -> None:
    events: list[Event] = []
    knobs = {"generation_time": (200.0, 200.0), "queue_delay": (0.0, 0.0), "estimate_error": 0.0}
    async with service(knobs) as (_sim, client):
        client.dispatcher.progress_every = 5.0
        outcome = await (await client.submit("a cat", on_event=events.append))
    assert "completed" == outcome.status
    assert isinstance(events[0], Submitted)
    progress = [e for e in events if isinstance(e, Progress)]
    estimates = [e.progress for e in progress if e.estimated]
    reads = [e for e in progress if not e.estimated]
    # the default plan reads near the expected end only: the estimates fill the time before
    assert len(estimates) >= 10
    assert len(reads) < len(estimates)
    assert estimates == sorted(set(estimates))  # strictly rising
    assert all(e is not None and 0 < e <= MAX_ESTIMATE for e in estimates)
    assert all(e.task_id == outcome.task_id for e in progress)
    assert not any(
        e.estimated for e in events[events.index(reads[-1]) :] if isinstance(e, Progress)
    )


async def test_nobody_listening_means_no_ticker_and_handles_estimate_when_asked() -> None:
    knobs = {"generation_time": (200.0, 200.0), "queue_delay": (0.0, 0.0), "estimate_error": 0.0}
    async with service(knobs) as (_sim, client):
        handle = await client.submit("a cat")
        await created(handle)
        shown: list[tuple[int, bool]] = []
        while not handle.done():
            now = handle.current_progress()
            if now is not None:
                shown.append(now)
            await asyncio.sleep(TS * 5)
        assert 0 == client.dispatcher.progress_ticks
    assert [p for p, _ in shown] == sorted(p for p, _ in shown)
    assert any(estimated for _, estimated in shown)
    assert all(p <= MAX_ESTIMATE for p, estimated in shown if estimated)
    assert (100, False) == handle.current_progress()


async def test_one_ticker_serves_every_listening_task() -> None:
    knobs = {"generation_time": (100.0, 150.0), "queue_delay": (0.0, 0.0)}
    tickers: list[int] = []
    async with service(knobs) as (_sim, client):
        client.dispatcher.progress_every = 5.0
        seen: dict[int, list[Progress]] = {}

        def listen(n: int) -> Any:
            def on_event(event: Event) -> None:
                if isinstance(event, Progress) and event.estimated:
                    seen.setdefault(n, []).append(event)
                    tickers.append(count_tickers())

            return on_event

        handles = [await client.submit(f"cat {n}", on_event=listen(n)) for n in range(30)]
        outcomes = [await h for h in handles]
    assert ["completed"] * 30 == [o.status for o in outcomes]
    assert 30 == len(seen)  # every listener got estimates
    assert {1} == set(tickers)  # from one coroutine, whatever the number of tasks


def count_tickers() -> int:
    return sum(
        getattr(t.get_coro(), "__qualname__", "") == "Ticker._loop" for t in asyncio.all_tasks()
    )


async def test_progress_every_is_checked() -> None:
    async with EvolinkClient("sk-x", "http://127.0.0.1:9") as client:
        with pytest.raises(ValueError, match="progress_every"):
            client.dispatcher.progress_every = 0.0
        client.dispatcher.progress_every = None
        assert client.dispatcher.progress_every is None


# -- the estimate itself (a fake clock: times are plain numbers) ------------------------------

P, Q = TaskStatus.PENDING, TaskStatus.PROCESSING


@pytest.mark.parametrize(
    ("reads", "now", "expected"),
    [
        # the create said pending, 100 s expected: a straight line to the announced end
        ([(0, P, 0, 100.0)], 25, (25, True)),
        ([(0, P, 0, 100.0)], 250, (MAX_ESTIMATE, True)),  # late: never 100 before a read says so
        ([(0, P, 0, None)], 50, (0, False)),  # no estimated_time, one read: nothing to go on
        # two processing reads: their rate (10 %/10 s) beats the announced end
        ([(0, P, 0, 100.0), (10, Q, 20, None), (20, Q, 30, None)], 30, (40, True)),
        # a read below an estimate shown: the estimate stays (shown values only rise)
        ([(0, P, 0, 100.0), (50, Q, 30, None)], 50, (49, True)),
        ([(0, Q, 0, 100.0), (10, TaskStatus.COMPLETED, 100, None)], 20, (100, False)),
    ],
)
def test_the_estimate(
    reads: list[tuple[float, TaskStatus, int, float | None]],
    now: float,
    expected: tuple[int, bool],
) -> None:
    track = Track(0.0)
    for t, status, progress, estimated in reads:
        if t == 50:
            track.current(49.9)  # something was shown just before this read
        track.read(t, status, progress, estimated)
    assert expected == track.current(now)
    assert track.estimate(now) is None  # asked again at the same time: nothing new
