"""The poller: the pure planner, and one loop with a few workers driving a fake ``fetch``.

Times are kept tiny with ``time_scale`` (service seconds -> local seconds); assertions are on
what was fetched and what waiters got, never on wall time.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import attrs
import pytest

from evolink_async._poll_read import SCOPE_HORIZON
from evolink_async._retry import is_testing, set_testing
from evolink_async.errors import (
    APIConnectionError,
    BadRequestError,
    EvolinkError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    TaskTimeoutError,
)
from evolink_async.models import Task, TaskErrorInfo, TaskInfo, TaskStatus
from evolink_async.poller import Poller, PollPolicy, TrackedTask, plan_next_poll

POLICY = PollPolicy(min_interval=2.0, max_interval=300.0, first_poll=15.0, jitter=0.0)
#: a poller's local seconds per service second in these tests: a "2 s" min interval is 2 ms
SCALE = 0.001


def task(
    task_id: str = "task-unified-1-aaaaaaaa",
    status: TaskStatus = TaskStatus.PENDING,
    *,
    progress: int | None = 0,
    estimated: float | None = 100.0,
    raw: str | None = None,
    code: str | None = None,
) -> Task:
    return Task(
        id=task_id,
        status=status,
        raw_status=raw if raw is not None else status.value,
        progress=progress,
        task_info=TaskInfo(estimated_time=estimated),
        results=("https://files.example/v.mp4",) if status is TaskStatus.COMPLETED else (),
        error=TaskErrorInfo(code=code, message=code) if code is not None else None,
    )


def done(task_id: str = "task-unified-1-aaaaaaaa") -> Task:
    return task(task_id, TaskStatus.COMPLETED, progress=100)


class Script:
    """A fake ``fetch``: answers each task id with the next item of its script (an exception is
    raised); the last item repeats. Counts the fetches."""

    def __init__(self, scripts: dict[str, list[Task | Exception]] | None = None) -> None:
        self.scripts = scripts or {}
        self.fetches: Counter[str] = Counter()
        self.default: Task | Exception | None = None

    async def __call__(self, task_id: str) -> Task:
        self.fetches[task_id] += 1
        script = self.scripts.get(task_id)
        if script is None:
            item = self.default if self.default is not None else done(task_id)
        else:
            item = script.pop(0) if len(script) > 1 else script[0]
        await asyncio.sleep(0)
        if isinstance(item, Exception):
            raise item
        return item


def make_poller(fetch: Callable[[str], Awaitable[Task]], *, workers: int = 16) -> Poller:
    policy = attrs.evolve(POLICY, workers=workers)
    return Poller(fetch, policy, time_scale=SCALE, seed=1)


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def until(check: Callable[[], bool], *, attempts: int = 500) -> None:
    """Yield to the loop until ``check()`` holds (bounded; no timing assertion)."""
    for _ in range(attempts):
        if check():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not met")


def plan(**kw: object) -> float:
    args: dict[str, object] = {
        "now": 100.0,
        "start": 100.0,
        "estimated": None,
        "zero_at": 100.0,
        "p1": None,
        "p2": None,
        "policy": POLICY,
    }
    args.update(kw)
    return plan_next_poll(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# plan_next_poll (pure)
# --------------------------------------------------------------------------------------------


def test_plan_without_progress_polls_at_the_estimate() -> None:
    assert 50.0 == plan(estimated=50.0)


def test_plan_without_progress_counts_the_time_already_waited() -> None:
    assert 30.0 == plan(now=120.0, estimated=50.0, zero_at=120.0)


def test_plan_without_an_estimate_uses_first_poll() -> None:
    assert 15.0 == plan()


def test_plan_of_an_overdue_task_is_a_fraction_of_its_expected_duration() -> None:
    # expected 50 s, already 60 s: poll again after 8 % of 50 s = 4 s
    assert 4.0 == pytest.approx(plan(now=160.0, estimated=50.0, zero_at=160.0))


def test_plan_from_two_progress_observations_extrapolates_the_rate() -> None:
    # 10 % -> 30 % in 20 s: 1 %/s, 70 % left = 70 s
    assert 70.0 == pytest.approx(plan(now=130.0, estimated=500.0, p1=(110.0, 10), p2=(130.0, 30)))


def test_plan_from_two_observations_subtracts_the_time_since_the_latest() -> None:
    assert 60.0 == pytest.approx(plan(now=140.0, estimated=500.0, p1=(110.0, 10), p2=(130.0, 30)))


def test_plan_from_one_observation_assumes_progress_started_when_last_seen_at_zero() -> None:
    # seen at 0 % at t=110, at 20 % at t=120: 10 s for 20 %, 80 % left = 40 s
    p = (120.0, 20)
    assert 40.0 == pytest.approx(plan(now=120.0, estimated=500.0, zero_at=110.0, p1=p, p2=p))
    # never seen at 0 after tracking started: from the start of tracking (20 s for 20 %)
    assert 80.0 == pytest.approx(plan(now=120.0, estimated=500.0, zero_at=100.0, p1=p, p2=p))


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"estimated": 0.5}, 2.0),  # below min_interval
        ({"estimated": 10_000.0}, 300.0),  # above max_interval
        ({"now": 110.0, "estimated": 500.0, "p1": (110.0, 1), "p2": (110.0, 1)}, 300.0),
        ({"now": 200.0, "estimated": 20.0, "zero_at": 200.0}, 2.0),  # overdue by a lot
    ],
)
def test_plan_is_clamped_to_min_and_max_interval(kw: dict[str, object], expected: float) -> None:
    assert expected == plan(**kw)


def test_plan_scales_the_policy_intervals_by_time_scale() -> None:
    # estimated is already local seconds; min/max/first_poll are service seconds x scale
    assert 0.002 == pytest.approx(plan(estimated=0.0001, scale=0.001))
    assert 0.3 == pytest.approx(plan(estimated=1000.0, scale=0.001))
    assert 0.015 == pytest.approx(plan(scale=0.001))


def test_plan_jitter_stays_within_its_fraction() -> None:
    policy = PollPolicy(min_interval=2.0, max_interval=300.0, jitter=0.1)
    rng = random.Random(7)
    delays = [plan(estimated=50.0, policy=policy, rng=rng) for _ in range(2000)]
    assert all(47.5 <= d <= 52.5 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # it does vary


# --------------------------------------------------------------------------------------------
# The poller
# --------------------------------------------------------------------------------------------


async def test_a_task_is_polled_until_it_completes_and_waiters_get_the_final_task() -> None:
    tid = "task-unified-1-aaaaaaaa"
    fetch = Script(
        {
            tid: [
                task(tid, TaskStatus.PROCESSING, progress=30),
                task(tid, TaskStatus.PROCESSING, progress=60),
                done(tid),
            ]
        }
    )
    poller = make_poller(fetch)
    updates: list[int | None] = []
    finals: list[object] = []
    tracked = poller.track(
        task(tid, estimated=10.0),
        on_update=lambda t: updates.append(t.progress),
        on_done=finals.append,
    )
    result = await tracked.wait()
    assert done(tid) == result
    assert [30, 60, 100] == updates
    assert [done(tid)] == finals
    assert 3 == tracked.polls == poller.polls == fetch.fetches[tid]
    await poller.aclose()


async def test_the_loop_stops_when_nothing_is_tracked_and_restarts_on_demand() -> None:
    fetch = Script()
    poller = make_poller(fetch)
    assert set() == other_tasks()

    first = poller.track(task("task-unified-1-aaaaaaaa", estimated=1.0))
    assert other_tasks()  # the loop (and its workers) started
    await first.wait()
    await until(lambda: not other_tasks())  # idle: the loop and its workers ended
    assert "running=False" in repr(poller)

    second = poller.track(task("task-unified-2-bbbbbbbb", estimated=1.0))
    assert other_tasks()
    assert done("task-unified-2-bbbbbbbb") == await second.wait()
    await until(lambda: not other_tasks())
    assert 2 == poller.polls
    await poller.aclose()


async def test_a_task_tracked_while_the_loop_winds_down_is_still_polled() -> None:
    fetch = Script()
    poller = make_poller(fetch)
    first = poller.track(task("task-unified-1-aaaaaaaa", estimated=1.0))
    await first.wait()
    # the last task just ended; the loop is stopping (its workers being cancelled)
    second = poller.track(task("task-unified-2-bbbbbbbb", estimated=1.0))
    assert done("task-unified-2-bbbbbbbb") == await asyncio.wait_for(second.wait(), 5)
    await poller.aclose()
    assert set() == other_tasks()


async def test_wake_polls_a_task_at_once() -> None:
    tid = "task-unified-1-aaaaaaaa"
    fetch = Script()
    # a 1000 s estimate at scale 1: the planned poll is far away
    poller = Poller(fetch, POLICY, time_scale=1.0)
    tracked = poller.track(task(tid, estimated=1000.0))
    await asyncio.sleep(0.02)
    assert 0 == fetch.fetches[tid]
    assert poller.wake(tid)
    assert done(tid) == await asyncio.wait_for(tracked.wait(), 5)
    assert 1 == fetch.fetches[tid]
    assert not poller.wake(tid)  # no longer tracked
    await poller.aclose()


async def test_deadline_ends_tracking_with_task_timeout_error() -> None:
    tid = "task-unified-1-aaaaaaaa"
    running = task(tid, TaskStatus.PROCESSING, progress=5, estimated=10_000.0)
    fetch = Script({tid: [running]})
    poller = make_poller(fetch)
    ended: list[object] = []
    tracked = poller.track(task(tid, estimated=10_000.0), timeout=0.05, on_done=ended.append)
    result = await asyncio.wait_for(tracked.wait(), 5)
    assert isinstance(result, TaskTimeoutError)
    assert tid == result.task_id
    assert 0.05 == pytest.approx(result.timeout)
    assert running == result.task  # the last state seen
    assert [result] == ended
    assert fetch.fetches[tid] >= 1  # polled at least once before giving up
    assert 0 == poller.tracked
    await poller.aclose()


@pytest.mark.parametrize(
    ("limit", "scoped"), [(10.0, True), (SCOPE_HORIZON - 1.0, True), (SCOPE_HORIZON + 60, False)]
)
async def test_a_read_opens_a_cancel_scope_only_near_its_deadline(
    limit: float, scoped: bool
) -> None:
    tid = "task-unified-1-aaaaaaaa"
    room: list[float] = []

    async def fetch(task_id: str) -> Task:
        room.append(anyio.current_effective_deadline() - anyio.current_time())
        return done(task_id)

    poller = make_poller(fetch)
    tracked = poller.track(task(tid, estimated=10_000.0), timeout=limit)
    poller.wake(tid)
    assert done(tid) == await asyncio.wait_for(tracked.wait(), 5)
    assert [scoped] == [r < limit + 1.0 for r in room]  # inf when no scope was opened
    await poller.aclose()


async def test_a_read_that_outlasts_a_far_deadline_ends_the_task_at_the_next_look() -> None:
    # the clock jumps past the deadline while the read is in flight: no scope was open to cut
    # it off, and the next look ends the task with TaskTimeoutError, the state read kept
    tid = "task-unified-1-aaaaaaaa"
    now = [100.0]
    running = task(tid, TaskStatus.PROCESSING, progress=5, estimated=10_000.0)

    async def fetch(task_id: str) -> Task:
        now[0] += SCOPE_HORIZON * 2  # the read took ten minutes
        return running

    poller = Poller(fetch, POLICY, time_scale=SCALE, seed=1, clock=lambda: now[0])
    tracked = poller.track(task(tid, estimated=10_000.0), timeout=SCOPE_HORIZON + 1.0)
    poller.wake(tid)
    result = await asyncio.wait_for(tracked.wait(), 5)
    assert isinstance(result, TaskTimeoutError)
    assert running == result.task
    await poller.aclose()


async def test_not_found_ends_tracking_with_the_error() -> None:
    tid = "task-unified-1-aaaaaaaa"
    gone = NotFoundError(404, "Task not found or expired")
    poller = make_poller(Script({tid: [gone]}))
    result = await asyncio.wait_for(poller.track(task(tid, estimated=1.0)).wait(), 5)
    assert gone is result
    assert 0 == poller.tracked
    await poller.aclose()


async def test_connection_and_server_errors_keep_polling() -> None:
    tid = "task-unified-1-aaaaaaaa"
    fetch = Script(
        {
            tid: [
                APIConnectionError("connection reset"),
                ServerError(503, "unavailable"),
                APIConnectionError("connection refused"),
                done(tid),
            ]
        }
    )
    poller = make_poller(fetch)
    result = await asyncio.wait_for(poller.track(task(tid, estimated=1.0)).wait(), 5)
    assert done(tid) == result
    assert 4 == fetch.fetches[tid]
    await poller.aclose()


@pytest.mark.parametrize(("testing", "fetches"), [(True, 2), (False, 1)])
async def test_the_wait_after_a_failed_poll_comes_from_the_one_retry_engine(
    testing: bool, fetches: int
) -> None:
    # The clock never moves: a poll is due again only if the wait after the failure is 0,
    # which ``set_testing(True)`` makes it (it zeroes every retry wait of the package).
    tid = "task-unified-1-aaaaaaaa"
    fetch = Script({tid: [ServerError(503, "unavailable"), done(tid)]})
    poller = Poller(fetch, POLICY, time_scale=SCALE, seed=1, clock=lambda: 50.0)
    before = is_testing()
    set_testing(testing)
    try:
        tracked = poller.track(task(tid, estimated=1e6))
        poller.wake(tid)  # due now, at the frozen time
        await until(lambda: fetch.fetches[tid] >= fetches)
        for _ in range(20):  # room for a poll that must not come
            await asyncio.sleep(0.002)
        assert (fetches, testing) == (fetch.fetches[tid], tracked.done())
    finally:
        set_testing(before)
        await poller.aclose()


async def test_a_status_the_sdk_does_not_know_keeps_being_polled() -> None:
    tid = "task-unified-1-aaaaaaaa"
    odd = task(tid, TaskStatus.UNKNOWN, progress=None, raw="queued_for_review")
    seen: list[str] = []
    poller = make_poller(Script({tid: [odd, odd, done(tid)]}))
    tracked = poller.track(task(tid, estimated=1.0), on_update=lambda t: seen.append(t.raw_status))
    assert done(tid) == await asyncio.wait_for(tracked.wait(), 5)
    assert ["queued_for_review", "queued_for_review", "completed"] == seen
    await poller.aclose()


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError(400, "invalid task id"),
        InvalidRequestError("task_id", "x", "must start with 'task-unified-'"),
    ],
)
async def test_an_error_polling_cannot_fix_ends_tracking_and_the_workers_live_on(
    error: EvolinkError,
) -> None:
    bad, good = "task-unified-1-aaaaaaaa", "task-unified-2-bbbbbbbb"
    poller = make_poller(Script({bad: [error]}), workers=1)
    result = await asyncio.wait_for(poller.track(task(bad, estimated=1.0)).wait(), 5)
    assert error is result
    # the one worker survived: the next task is polled
    assert done(good) == await asyncio.wait_for(poller.track(task(good, estimated=1.0)).wait(), 5)
    await poller.aclose()


async def test_a_bug_in_fetch_ends_that_task_with_an_error_not_the_worker() -> None:
    bad, good = "task-unified-1-aaaaaaaa", "task-unified-2-bbbbbbbb"
    poller = make_poller(Script({bad: [KeyError("boom")]}), workers=1)
    result = await asyncio.wait_for(poller.track(task(bad, estimated=1.0)).wait(), 5)
    assert isinstance(result, EvolinkError)
    assert isinstance(result.__cause__, KeyError)
    assert done(good) == await asyncio.wait_for(poller.track(task(good, estimated=1.0)).wait(), 5)
    await poller.aclose()


async def test_a_failing_progress_callback_does_not_stop_polling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tid = "task-unified-1-aaaaaaaa"
    poller = make_poller(Script({tid: [task(tid, TaskStatus.PROCESSING, progress=50), done(tid)]}))

    def explode(_: Task) -> None:
        raise RuntimeError("user bug")

    tracked = poller.track(task(tid, estimated=1.0), on_update=explode)
    assert done(tid) == await asyncio.wait_for(tracked.wait(), 5)
    assert "on_update callback failed" in caplog.text
    await poller.aclose()


async def test_polls_pass_the_task_s_gate() -> None:
    class Gate:
        def __init__(self) -> None:
            self.passed = 0

        async def acquire(self) -> None:
            self.passed += 1

    tid = "task-unified-1-aaaaaaaa"
    gate = Gate()
    poller = make_poller(Script({tid: [task(tid, TaskStatus.PROCESSING, progress=50), done(tid)]}))
    await asyncio.wait_for(poller.track(task(tid, estimated=1.0), gate=gate).wait(), 5)
    assert 2 == gate.passed
    await poller.aclose()


async def test_a_terminal_task_is_done_at_once_without_a_poll() -> None:
    fetch = Script()
    poller = make_poller(fetch)
    tracked = poller.track(done())
    assert tracked.done()
    assert done() == await tracked.wait()
    assert 0 == poller.polls
    assert set() == other_tasks()
    await poller.aclose()


async def test_tracking_the_same_id_twice_shares_one_entry() -> None:
    fetch = Script()
    poller = make_poller(fetch)
    a = poller.track(task(estimated=1.0))
    b = poller.track(task(estimated=1.0))
    assert 1 == poller.tracked
    assert await a.wait() == await b.wait()
    assert 1 == fetch.fetches["task-unified-1-aaaaaaaa"]
    await poller.aclose()


def ids(n: int) -> Iterable[str]:
    return (f"task-unified-1-{i:08d}" for i in range(n))


@pytest.mark.parametrize("n", [10, 5000])
async def test_many_tasks_cost_one_loop_and_a_fixed_number_of_workers(n: int) -> None:
    fetch = Script()
    poller = Poller(fetch, POLICY, time_scale=1.0)  # first polls 100 s away: none happens
    tracked = [poller.track(task(i, estimated=100.0)) for i in ids(n)]
    await asyncio.sleep(0.01)
    assert n == poller.tracked
    # the loop, its workers, and (Python < 3.12) the task asyncio.wait_for wraps the wait in
    assert len(other_tasks()) <= 2 + POLICY.workers
    assert 0 == poller.polls
    await poller.aclose()
    assert set() == other_tasks()
    results = [await t.wait() for t in tracked]
    assert all(isinstance(r, TaskTimeoutError) for r in results)  # closed: waiters are freed


async def test_many_due_tasks_are_all_polled_by_the_workers() -> None:
    fetch = Script()
    poller = make_poller(fetch)
    tracked: list[TrackedTask] = [poller.track(task(i, estimated=1.0)) for i in ids(500)]
    results = await asyncio.wait_for(asyncio.gather(*(t.wait() for t in tracked)), 10)
    assert [done(i) for i in ids(500)] == results
    assert 500 == poller.polls
    await until(lambda: not other_tasks())


async def test_aclose_frees_waiters_and_leaves_no_task_behind() -> None:
    poller = Poller(Script(), POLICY, time_scale=1.0)
    tracked = poller.track(task(estimated=100.0))
    await asyncio.sleep(0)
    await poller.aclose()
    assert set() == other_tasks()
    result = await tracked.wait()
    assert isinstance(result, TaskTimeoutError)
    with pytest.raises(RuntimeError, match="closed"):
        poller.track(task("task-unified-2-bbbbbbbb"))


async def test_forget_stops_tracking_without_calling_on_done() -> None:
    ended: list[object] = []
    poller = Poller(Script(), POLICY, time_scale=1.0)
    tracked = poller.track(task(estimated=100.0), on_done=ended.append)
    await asyncio.sleep(0)
    poller.forget(tracked.task.id)
    assert isinstance(await tracked.wait(), TaskTimeoutError)
    assert [] == ended
    assert 0 == poller.tracked
    # nothing left to poll: the loop stops now, not when the forgotten poll was due (100 s)
    await until(lambda: not other_tasks())
    await poller.aclose()


async def test_aclose_before_the_loop_ever_ran_leaves_no_task_behind() -> None:
    poller = Poller(Script(), POLICY, time_scale=1.0)
    tracked = poller.track(task(estimated=100.0))  # the host task is created, not yet run
    await poller.aclose()
    assert set() == other_tasks()
    assert isinstance(await tracked.wait(), TaskTimeoutError)
    assert "running=False" in repr(poller)


async def test_a_waiter_cancelled_does_not_end_tracking() -> None:
    tid = "task-unified-1-aaaaaaaa"
    poller = Poller(Script(), POLICY, time_scale=1.0)
    tracked = poller.track(task(tid, estimated=100.0))
    waiter = asyncio.ensure_future(tracked.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert 1 == poller.tracked
    assert not tracked.done()
    assert poller.wake(tid)
    assert done(tid) == await asyncio.wait_for(tracked.wait(), 5)
    await poller.aclose()
