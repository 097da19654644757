"""Batch reads, the task list, cancelled tasks, stalled unknown statuses and the deadline of
a read in flight: the poller and the client against the simulator (or a fake ``fetch``).

Assertions are on what was read and what waiters got (the simulator's counters, the poller's
ticks), never on wall time.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web

from evolink_async import (
    EvolinkClient,
    InvalidRequestError,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    TaskCancelledError,
    TaskFailedError,
    TaskStalledError,
    TaskStatus,
    TaskTimeoutError,
)
from evolink_async._transport import error_from_response
from evolink_async.batch import MANIFEST_FILENAME, BatchJob, parse_prompts
from evolink_async.batch._events import error_info
from evolink_async.cli.display import failure_lines
from evolink_async.models import Task, TaskInfo
from evolink_async.poller import Poller
from evolink_async.testing import ManualClock, Simulator
from evolink_async.testing.pytest_plugin import FAST_TIME_SCALE, SimulatorFactory

TID = "task-unified-1-aaaaaaaa"


def _client(sim: Simulator, **kw: object) -> EvolinkClient:
    options: dict[str, object] = {"time_scale": FAST_TIME_SCALE, "rate": None}
    options.update(kw)
    return EvolinkClient(sim.api_key, sim.base_url, **options)  # type: ignore[arg-type]


# -- the simulator's endpoints ------------------------------------------------------------------


async def test_the_batch_endpoint_answers_known_ids_and_leaves_the_others_out(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(queue_delay=(1000.0, 1000.0))
    async with _client(sim) as client:
        a = await client.create_video(prompt="a fox")
        b = await client.create_video(prompt="a hen")
        tasks = await client.get_tasks([b.id, "task-unified-1-nosuchtk", a.id, b.id])
    assert [b.id, a.id] == [t.id for t in tasks]
    assert {TaskStatus.PENDING} == {t.status for t in tasks}
    assert [3] == sim.stats.batch_reads  # duplicates sent once
    assert (1, 0) == (sim.stats.count("tasks_batch", 200), sim.stats.single_reads)


async def test_get_tasks_refuses_more_than_50_ids_locally(evolink_simulator: Simulator) -> None:
    ids = [f"task-unified-1-{i:08d}" for i in range(51)]
    async with _client(evolink_simulator) as client:
        with pytest.raises(InvalidRequestError, match="task_ids"):
            await client.get_tasks(ids)
    assert 0 == evolink_simulator.stats.total_requests


async def test_the_batch_endpoint_can_be_turned_off(make_simulator: SimulatorFactory) -> None:
    sim = await make_simulator(batch_reads=False)
    async with _client(sim) as client:
        with pytest.raises(NotFoundError):
            await client.get_tasks([TID])


async def test_the_task_list_is_newest_first_filtered_and_paged(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(clock=ManualClock(), queue_delay=(0.0, 0.0))
    async with _client(sim, time_scale=1.0) as client:
        ids = []
        for i in range(5):
            ids.append((await client.create_video(prompt=f"clip {i}")).id)
            sim.advance(1.0)
        sim.complete_task(ids[0])
        sim.cancel_task(ids[1])
        everything = [t async for t in client.list_tasks(page_size=2)]
        running = [t.id async for t in client.list_tasks(status="processing")]
        completed = [t async for t in client.list_tasks(status="completed")]
        page = await client.api.list_tasks(page=2, page_size=2)
    assert list(reversed(ids)) == [t.id for t in everything]
    assert list(reversed(ids[2:])) == running
    assert [ids[0]] == [t.id for t in completed]
    assert (True, 1) == (completed[0].has_results, completed[0].result_count)
    assert (5, 2, 2, [ids[2], ids[1]]) == (
        page.total,
        page.page,
        page.page_size,
        [t.id for t in page.items],
    )
    assert 3 + 1 + 1 + 1 == sim.stats.count("tasks_list", 200)  # 3 pages, then 1 each


async def test_list_tasks_stops_at_since(make_simulator: SimulatorFactory) -> None:
    clock = ManualClock()
    sim = await make_simulator(clock=clock)
    async with _client(sim, time_scale=1.0) as client:
        old = await client.create_video(prompt="old")
        sim.advance(7200.0)
        new = await client.create_video(prompt="new")
        since = datetime.datetime.fromtimestamp(clock.now() - 3600, datetime.timezone.utc)
        recent = [t.id async for t in client.list_tasks(since=since)]
        both = [t.id async for t in client.list_tasks(since=old.created)]
    assert [new.id] == recent
    assert [new.id, old.id] == both


# -- cancelled ------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["cancelled", "failed"])
async def test_wait_on_a_cancelled_task_raises_task_cancelled_error(
    make_simulator: SimulatorFactory, style: str
) -> None:
    sim = await make_simulator(cancel_style=style, queue_delay=(1000.0, 1000.0))
    async with _client(sim) as client:
        task = await client.create_video(prompt="cancel me")
        sim.cancel_task(task.id)
        with pytest.raises(TaskCancelledError) as caught:
            await client.wait(task)
    err = caught.value
    assert isinstance(err, TaskFailedError)
    assert ("request_cancelled", False, style) == (err.code, err.retryable, err.task.raw_status)
    assert f"task {task.id} was cancelled" == str(err)


async def test_a_cancelled_task_is_an_outcome_cancelled_and_not_retried(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(cancel_rate=1.0, cancel_style="cancelled", seed=3)
    async with _client(sim) as client:
        batch = client.generate_many(["a", "b", "c"], max_attempts=3)
        outcomes = [o async for o in batch]
        stats = batch.stats()
    assert ["cancelled"] * 3 == [o.status for o in outcomes]
    assert {TaskCancelledError} == {type(o.error) for o in outcomes}
    assert [1, 1, 1] == [o.attempts for o in outcomes]
    assert [0.0, 0.0, 0.0] == [o.credits for o in outcomes]
    assert 3 == sim.stats.count("create", 200)  # never resubmitted
    assert 3 == stats.cancelled


# -- batch reads ----------------------------------------------------------------------------------


async def test_a_thousand_tasks_cost_at_most_ceil_due_over_50_reads_a_tick(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(seed=5, time_scale=0.01)  # all 1000 in flight at once
    async with _client(sim, max_in_flight=None, time_scale=0.01) as client:
        created = await asyncio.gather(*(client.create_video(prompt=f"p{i}") for i in range(1000)))
        done = await asyncio.gather(*(client.wait(t) for t in created))
        ticks = list(client.poller.ticks)
    assert {TaskStatus.COMPLETED} == {t.status for t in done}
    assert all(reads <= math.ceil(due / 50) for due, reads in ticks)
    reads = sum(r for _, r in ticks)
    batch_reads, singles = sim.stats.count("tasks_batch"), sim.stats.single_reads
    assert reads == batch_reads + singles
    assert max(sim.stats.batch_reads) <= 50
    assert sum(sim.stats.batch_reads) + singles == sum(t.polls for t in sim.tasks.values())
    assert batch_reads + singles < 0.5 * len(created)  # reads are shared: < 1 per task


async def test_without_the_batch_endpoint_every_read_is_a_single_get(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(batch_reads=False, seed=6)
    async with _client(sim, max_in_flight=None) as client:
        outcomes = [o async for o in client.generate_many([f"p{i}" for i in range(60)])]
    assert ["completed"] * 60 == [o.status for o in outcomes]
    # asked once, 404, then never again: only reads already on the wire when the first 404
    # came back (at most one per read worker) may also have asked
    assert 1 <= sim.stats.count("tasks_batch") <= PollPolicy().workers
    assert sim.stats.count("get_task") >= 60  # then single GETs: each task read at least once
    assert sim.stats.single_reads == sum(t.polls for t in sim.tasks.values())


class FakeReads:
    """A fake gateway for the poller: ``many`` answers batch reads (leaving ``missing`` out),
    ``one`` answers single reads (404 for ``missing``)."""

    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.batches: list[list[str]] = []
        self.singles: Counter[str] = Counter()

    async def many(self, ids: list[str]) -> list[Task]:
        self.batches.append(ids)
        await asyncio.sleep(0)
        return [_done(i) for i in ids if i not in self.missing]

    async def one(self, task_id: str) -> Task:
        self.singles[task_id] += 1
        await asyncio.sleep(0)
        if task_id in self.missing:
            raise NotFoundError(404, "Task not found or expired")
        return _done(task_id)


def _done(task_id: str) -> Task:
    return Task(id=task_id, status=TaskStatus.COMPLETED, raw_status="completed", progress=100)


def _pending(task_id: str, estimated: float = 100.0) -> Task:
    return Task(
        id=task_id,
        status=TaskStatus.PENDING,
        raw_status="pending",
        progress=0,
        task_info=TaskInfo(estimated_time=estimated),
    )


async def test_an_id_missing_from_a_batch_answer_is_confirmed_by_one_get() -> None:
    ids = [f"task-unified-1-{i:08d}" for i in range(3)]
    fake = FakeReads(missing={ids[1]})
    poller = Poller(fake.one, PollPolicy(jitter=0.0), fetch_many=fake.many, time_scale=0.001)
    tracked = [poller.track(_pending(i)) for i in ids]
    results = [await asyncio.wait_for(t.wait(), 10) for t in tracked]
    await poller.aclose()
    # the missing id was in one batch read and was then confirmed by one GET; the others were
    # read once each (together, or apart when a loaded machine tracked them a service second
    # apart: time_scale=0.001 makes a real millisecond a second)
    assert 1 == sum(ids[1] in b for b in fake.batches)
    reads = Counter(i for b in fake.batches for i in b) + fake.singles
    assert {ids[0]: 1, ids[1]: 2, ids[2]: 1} == dict(reads)
    assert 1 == fake.singles[ids[1]]
    assert isinstance(results[1], NotFoundError)
    assert [TaskStatus.COMPLETED] * 2 == [r.status for r in (results[0], results[2])]  # type: ignore[union-attr]


# -- unknown statuses that never change --------------------------------------------------------


async def test_an_unknown_status_unchanged_too_long_ends_with_task_stalled_error() -> None:
    paused = attrs.evolve(_pending(TID, 10.0), status=TaskStatus.UNKNOWN, raw_status="paused")
    reads: list[str] = []

    async def fetch(task_id: str) -> Task:
        reads.append(task_id)
        await asyncio.sleep(0)
        return paused

    policy = PollPolicy(stall_after=60.0, jitter=0.0)
    poller = Poller(fetch, policy, time_scale=0.001)
    result = await asyncio.wait_for(poller.track(_pending(TID, 10.0)).wait(), 10)
    await poller.aclose()
    assert isinstance(result, TaskStalledError)
    assert ("paused", TID) == (result.status, result.task_id)
    assert result.seconds >= 60.0
    assert len(reads) >= 2  # still read while unknown, until it stalled


async def test_an_unknown_status_that_changes_is_not_a_stall() -> None:
    script = [f"step-{i}" for i in range(40)]

    async def fetch(task_id: str) -> Task:
        await asyncio.sleep(0)
        if not script:
            return _done(task_id)
        return attrs.evolve(
            _pending(TID, 10.0), status=TaskStatus.UNKNOWN, raw_status=script.pop(0)
        )

    policy = PollPolicy(stall_after=1.0, min_interval=1.0, max_interval=2.0, jitter=0.0)
    poller = Poller(fetch, policy, time_scale=0.001)
    result = await asyncio.wait_for(poller.track(_pending(TID, 10.0)).wait(), 10)
    await poller.aclose()
    assert TaskStatus.COMPLETED == result.status  # type: ignore[union-attr]


# -- attack 10: task_timeout bounds a read in flight ---------------------------------------------


@pytest.fixture
async def trickler() -> AsyncIterator[tuple[str, list[int]]]:
    """A server whose task reads send a byte now and then and never finish."""
    started: list[int] = []

    async def trickle(request: web.Request) -> web.StreamResponse:
        started.append(1)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b"{")
        while True:
            await asyncio.sleep(0.01)
            await response.write(b" ")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", trickle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", started
    finally:
        await runner.cleanup()


async def test_task_timeout_cuts_off_a_read_in_flight(
    trickler: tuple[str, list[int]],
) -> None:
    url, started = trickler
    retry = RetryPolicy(attempts=50, wait_initial=0.001, wait_max=0.001)
    poll = PollPolicy(target_delay=0.01, min_interval=0.01)  # the first read comes at once
    # each read attempt may take 0.2 s and is retried 50 times (10 s); the task may take 0.5 s
    async with EvolinkClient(
        "sk-evo-test", url, timeout=0.2, task_timeout=0.5, retry=retry, rate=None, poll=poll
    ) as client:
        with pytest.raises(TaskTimeoutError):
            await asyncio.wait_for(client.wait(_pending(TID, 0.01)), 30)
    # cut off at the deadline: the read was tried at most three times, not 50
    assert 1 <= len(started) <= 3


async def test_task_timeout_cuts_off_the_first_read_of_a_task_given_by_id(
    trickler: tuple[str, list[int]],
) -> None:
    url, started = trickler
    retry = RetryPolicy(attempts=50, wait_initial=0.001, wait_max=0.001)
    async with EvolinkClient(
        "sk-evo-test", url, timeout=0.2, task_timeout=0.5, retry=retry, rate=None
    ) as client:
        with pytest.raises(TaskTimeoutError) as caught:
            await asyncio.wait_for(client.wait(TID), 30)
    assert (TID, 0.5) == (caught.value.task_id, caught.value.timeout)
    assert 1 <= len(started) <= 3  # cut off at 0.5 s: not 50 attempts of 0.2 s


# -- a cancelled line in a batch -----------------------------------------------------------------


@pytest.mark.parametrize("style", ["cancelled", "failed"])
async def test_a_cancelled_task_ends_its_batch_line_cancelled_within_one_read(
    make_simulator: SimulatorFactory, tmp_path: Path, style: str
) -> None:
    # tasks wait 1000 simulated seconds (1 real second) in the queue: time to cancel one
    sim = await make_simulator(cancel_style=style, queue_delay=(1000.0, 1000.0), seed=9)
    out = tmp_path / "out"
    lines = parse_prompts(["a fox", "a hen", "a cat"], fmt="txt")
    async with _client(sim, max_in_flight=10) as client:
        job = asyncio.ensure_future(BatchJob(client, lines, out, max_attempts=3).run())
        for _ in range(2000):
            if len(sim.tasks) == 3:
                break
            await asyncio.sleep(0.001)
        victim = next(t for t in sim.tasks.values() if t.prompt == "a hen")
        sim.cancel_task(victim.id)
        reads_before = victim.polls
        summary = await job
    manifest = [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]
    assert ["completed", "cancelled", "completed"] == [e["status"] for e in manifest]
    assert ("request_cancelled", victim.id, 0.0) == (
        manifest[1]["error"]["code"],
        manifest[1]["task_id"],
        manifest[1]["credits"],
    )
    assert 1 == victim.polls - reads_before  # the first read after the cancel ended it
    assert (1, 3) == (summary.cancelled, sim.stats.count("create", 200))  # not retried
    assert "cancelled" in failure_lines(manifest, download=True).__next__()
    # a rerun keeps the line cancelled (from the journal) and creates nothing
    async with _client(sim) as client:
        again = await BatchJob(client, lines, out).run()
    assert (1, 3) == (again.cancelled, sim.stats.count("create", 200))


def test_a_stalled_line_is_reported_task_stalled_and_left_to_re_attach() -> None:
    paused = attrs.evolve(_pending(TID), status=TaskStatus.UNKNOWN, raw_status="paused")
    info = error_info(TaskStalledError(paused, 900.0))
    assert "task_stalled" == info["code"]
    assert "'paused'" in info["message"]
    assert "re-attach" in info["message"]


@pytest.mark.parametrize("status", [404, 405])
async def test_a_gateway_without_batch_reads_gets_single_gets_for_good(status: int) -> None:
    ids = [f"task-unified-1-{i:08d}" for i in range(4)]
    fake = FakeReads(missing=set())
    batches: list[list[str]] = []

    async def no_batch(task_ids: list[str]) -> list[Task]:
        batches.append(task_ids)
        await asyncio.sleep(0)
        raise error_from_response(status, b"", {})

    poller = Poller(fake.one, PollPolicy(jitter=0.0), fetch_many=no_batch, time_scale=0.001)
    first = [poller.track(_pending(i)) for i in ids[:2]]
    results = [await asyncio.wait_for(t.wait(), 10) for t in first]
    later = [poller.track(_pending(i)) for i in ids[2:]]  # due together: still no batch read
    results += [await asyncio.wait_for(t.wait(), 10) for t in later]
    await poller.aclose()
    assert 1 == len(batches)  # asked once, never again
    assert Counter(dict.fromkeys(ids, 1)) == fake.singles
    assert [TaskStatus.COMPLETED] * 4 == [r.status for r in results]  # type: ignore[union-attr]


async def test_an_answer_after_a_task_was_forgotten_ends_nothing_twice() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def fetch(task_id: str) -> Task:
        started.set()
        await release.wait()
        raise NotFoundError(404, "Task not found or expired")

    ended: list[object] = []
    poller = Poller(fetch, PollPolicy(target_delay=1.0, min_interval=1.0), time_scale=0.001)
    tracked = poller.track(_pending(TID, 0.001), on_done=ended.append)
    await asyncio.wait_for(started.wait(), 10)
    poller.forget(TID)  # its waiters get TaskTimeoutError; on_done is not called
    release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    result = await tracked.wait()
    await poller.aclose()
    assert isinstance(result, TaskTimeoutError)
    assert [] == ended


async def test_against_the_simulator_a_missing_id_is_confirmed_by_one_get(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(clock=ManualClock())  # its tasks never move
    async with _client(sim) as client:
        real = await client.create_video(prompt="still queued")
        est = real.estimated_time
        ghost = attrs.evolve(real, id="task-unified-1-nosuchtk")
        assert est is not None
        # both due at the same instant: one batch read of the two
        results = await asyncio.gather(
            client.wait(real, timeout=est * FAST_TIME_SCALE * 1.5),
            client.wait(ghost),
            return_exceptions=True,
        )
    assert isinstance(results[0], TaskTimeoutError)
    assert isinstance(results[1], NotFoundError)
    # when the two were read together (one batch read of both), the ghost was missing from
    # it; under load they may be read apart (a single GET each): either way exactly one GET
    # answered 404 for the missing id, and no batch read held anything but the two
    assert all(2 == n for n in sim.stats.batch_reads)
    assert 1 == sim.stats.count("get_task", 404)  # the confirmation
