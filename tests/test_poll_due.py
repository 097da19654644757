"""The poller's due queue: due reads, and reads that ride along in their batches' free room
(pure, no I/O); then, against the simulator, what riding saves."""

from __future__ import annotations

import gc
import math

import pytest

from evolink_async import EvolinkClient, PollPolicy
from evolink_async._poll_due import DueQueue
from evolink_async._poll_entry import Entry
from evolink_async._poll_plan import plan_window
from evolink_async.models import Task, TaskStatus
from evolink_async.testing.pytest_plugin import SimulatorFactory


def entry(n: int) -> Entry:
    task = Task(id=f"task-{n}", status=TaskStatus.PROCESSING, raw_status="processing")
    return Entry(task=task, start=0.0, deadline=None, watcher=None)


def queued(*plans: tuple[float, float | None]) -> tuple[DueQueue, dict[str, Entry]]:
    """A queue holding one entry per (due, early) plan, ``task-0``, ``task-1``, ..."""
    queue, entries = DueQueue(), {}
    for n, (due, early) in enumerate(plans):
        e = entries[f"task-{n}"] = entry(n)
        queue.push(e, due, early)
    return queue, entries


def ids(entries: list[Entry]) -> list[str]:
    return [e.task.id for e in entries]


def test_reads_due_at_the_very_same_time_are_all_read_in_the_order_queued() -> None:
    queue, entries = queued((5.0, None), (5.0, None), (3.0, None), (5.0, None))
    assert ["task-2", "task-0", "task-1", "task-3"] == ids(queue.pop_due(entries, now=5.0))
    assert 0 == len(queue)


def test_a_task_queued_again_is_read_once_at_its_new_time() -> None:
    queue, entries = queued((5.0, None), (6.0, None))
    queue.push(entries["task-0"], 6.0)  # replanned: the same time as task-1
    assert [] == ids(queue.pop_due(entries, now=5.5))  # the old time is stale
    assert ["task-1", "task-0"] == ids(queue.pop_due(entries, now=6.0))


def test_a_read_never_due_is_never_popped() -> None:
    queue, entries = queued((math.inf, None), (math.inf, None))
    assert math.inf == queue.next_due()
    assert [] == queue.pop_due(entries, now=1e300)


def test_queuing_a_read_allocates_nothing_the_collector_tracks() -> None:
    # a tracked object a read (a tuple in the heap) made the collector run every ~700 reads
    queue, _ = queued((1.0, None))
    many = [entry(n) for n in range(1, 1001)]
    gc.disable()
    try:
        before = gc.get_count()[0]
        for n, e in enumerate(many):
            queue.push(e, 2.0 + n % 7)  # equal due times too
        after = gc.get_count()[0]
    finally:
        gc.enable()
    # the count is the process's: another thread (xdist's) may allocate meanwhile; a tuple
    # a read would add 1 000
    assert after - before < len(many) // 10


@pytest.mark.parametrize(
    ("now", "room", "riders"),
    [
        (10.0, 49, ["task-2", "task-1"]),  # both may come early: the sooner due first
        (10.0, 1, ["task-2"]),  # room for one: the sooner due
        (10.0, 0, []),  # a full batch: nobody rides
        (6.0, 49, ["task-1"]),  # task-2 may not come before 8
    ],
)
def test_riders_fill_the_room_left_soonest_due_first(
    now: float, room: int, riders: list[str]
) -> None:
    queue, entries = queued((10.0, None), (40.0, 5.0), (30.0, 8.0), (50.0, 20.0))
    assert ["task-0"] == ids(queue.pop_due(entries, now=10.0))
    assert riders == ids(queue.riders(entries, now, room))
    for task_id in riders:  # taken: in the stream until replanned
        assert math.inf == entries[task_id].due


def test_a_rider_left_out_rides_later_or_is_read_when_due() -> None:
    queue, entries = queued((10.0, None), (40.0, 5.0), (30.0, 8.0))
    queue.pop_due(entries, now=10.0)
    assert ["task-2"] == ids(queue.riders(entries, 10.0, 1))
    assert ["task-1"] == ids(queue.riders(entries, 12.0, 1))  # still there next time
    queue, entries = queued((10.0, None), (40.0, 5.0))
    queue.pop_due(entries, now=10.0)
    assert [] == ids(queue.riders(entries, 10.0, 0))
    assert ["task-1"] == ids(queue.pop_due(entries, now=40.0))  # and due at its time


def test_a_replanned_or_finished_entry_does_not_ride_on_its_old_plan() -> None:
    queue, entries = queued((40.0, 5.0), (30.0, 8.0))
    queue.push(entries["task-0"], 60.0, 50.0)  # replanned: rides from 50 now
    del entries["task-1"]  # finished
    assert [] == ids(queue.riders(entries, 20.0, 49))
    assert ["task-0"] == ids(queue.riders(entries, 50.0, 49))


def test_an_early_time_not_before_the_due_time_is_no_ride() -> None:
    queue, entries = queued((10.0, 10.0), (10.0, 12.0))
    assert [] == ids(queue.riders(entries, 11.0, 49))
    assert ["task-0", "task-1"] == ids(queue.pop_due(entries, now=10.0))


async def test_riding_reads_save_requests_and_never_add_one_a_tick(
    make_simulator: SimulatorFactory,
) -> None:
    # 40 tasks of 60-120 s in flight at once: each is read a few times (its progress, then its
    # end), but most reads ride in another task's batch read
    sim = await make_simulator(
        seed=3, time_scale=0.01, generation_time=(60.0, 120.0), max_concurrent=40
    )
    async with EvolinkClient(
        sim.api_key, sim.base_url, time_scale=0.01, rate=None, max_in_flight=None
    ) as client:
        outcomes = [o async for o in client.generate_many([f"p{i}" for i in range(40)])]
        ticks = list(client.poller.ticks)
    assert ["completed"] * 40 == [o.status for o in outcomes]
    assert all(reads <= math.ceil(due / 50) for due, reads in ticks)
    reads = sim.stats.count("tasks_batch") + sim.stats.single_reads
    task_reads = sum(t.polls for t in sim.tasks.values())
    assert task_reads >= 2 * 40  # progress read before the window, then the end
    assert 4 * reads <= task_reads  # a request carries 4 task reads or more
    assert reads <= 0.6 * 40


def test_a_fixed_interval_policy_plans_no_rides() -> None:
    fixed = PollPolicy(min_interval=5.0, max_interval=5.0, jitter=0.0)
    early, due = plan_window(
        now=3.0, start=0.0, estimated=100.0, zero_at=0.0, p1=None, p2=None, policy=fixed
    )
    assert early == due == 8.0
