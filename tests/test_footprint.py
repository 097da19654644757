"""The footprint of a task in flight (issue 16): polls that saw no change decode nothing and
make no new ``Task``, equal parts of answers are one object, the rate gate takes a free token
without a turn of the event loop, the poller's hand-off queue, and the watcher of a task.

Assertions are on identities, counts and the order things ran in, never on wall time.
"""

# Tests assert `expected == actual`, the project's test style (ruff's SIM300 is off here).

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from evolink_async._codec import decode_task, decode_tasks, same_state
from evolink_async._poll_queue import ReadQueue
from evolink_async.limits import RateLimiter
from evolink_async.models import Task, TaskStatus
from evolink_async.poller import Poller, PollPolicy, TaskResult

TID = "task-unified-1757169743-7cvnl5zw"


def answer(**changes: Any) -> dict[str, Any]:
    """A GET answer of a task in progress (fresh objects each time, as from the wire)."""
    body: dict[str, Any] = {
        "created": 1757169743,
        "id": TID,
        "model": "sora-2-preview",
        "object": "video.generation.task",
        "progress": 40,
        "status": "processing",
        "task_info": {"can_cancel": True, "estimated_time": 300, "video_duration": 9},
        "type": "video",
        "usage": {"billing_rule": "per_call", "credits_reserved": 7, "user_group": "default"},
    }
    body.update(changes)
    return json.loads(json.dumps(body))


@pytest.mark.parametrize(
    ("changes", "same"),
    [
        ({}, True),
        ({"created": 1}, True),  # informational fields alone do not make a new state
        ({"status": "completed", "progress": 100}, False),
        ({"status": "pending"}, False),
        ({"progress": 41}, False),
        ({"progress": "40"}, True),  # the same progress, spelled as the liberal decoder reads it
        ({"task_info": {"estimated_time": 301}}, False),
        ({"task_info": None}, False),
        ({"id": "task-unified-2-bbbbbbbb"}, False),
    ],
)
def test_an_answer_in_the_same_state_is_the_known_task(changes: dict[str, Any], same: bool) -> None:
    known = decode_task(answer())
    data = answer(**changes)
    assert same == same_state(known, data)
    assert same == (decode_task(data, known) is known)


def test_a_final_status_is_always_decoded() -> None:
    known = decode_task(answer(status="completed", progress=100, results=["https://x/v.mp4"]))
    again = decode_task(answer(status="completed", progress=100, results=["https://x/v.mp4"]))
    assert not same_state(known, answer(status="completed", progress=100))
    assert decode_task(answer(status="completed", progress=100), known) is not known
    assert known == again


def test_a_changed_answer_keeps_the_known_id_and_unchanged_parts() -> None:
    known = decode_task(answer())
    task = decode_task(answer(progress=60), known)
    assert (60, TaskStatus.PROCESSING) == (task.progress, task.status)
    assert task.id is known.id
    assert task.task_info is known.task_info
    assert task.usage is known.usage


def test_equal_parts_of_different_answers_are_one_object() -> None:
    a, b = decode_task(answer()), decode_task(answer(id="task-unified-2-bbbbbbbb"))
    assert a.model is b.model
    assert a.raw_status is b.raw_status
    assert a.usage is b.usage
    assert a.task_info is b.task_info
    assert a.estimated_time is b.estimated_time


def test_a_batch_answer_is_decoded_in_one_pass_reusing_known_tasks() -> None:
    other = "task-unified-2-bbbbbbbb"
    known = {TID: decode_task(answer()), other: decode_task(answer(id=other))}
    items = [answer(), answer(id=other, progress=70), {"id": 5}, "not a task"]
    tasks = decode_tasks({"data": items}, known)
    assert [TID, other] == [t.id for t in tasks]  # invalid items left out
    assert tasks[0] is known[TID]
    assert 70 == tasks[1].progress
    assert tasks[1] is not known[other]


# -- the poller ----------------------------------------------------------------------------------


class KnownFetch:
    """A fetch that takes ``known=`` and gives it back while the script has no new state."""

    def __init__(self, states: list[Task], wanted: int = 0) -> None:
        self.states = states
        self.known: list[Task | None] = []
        self.wanted = wanted
        self.enough = anyio.Event()  # set once `wanted` reads were made

    async def __call__(self, task_id: str, *, known: Task | None = None) -> Task:
        self.known.append(known)
        if len(self.known) >= self.wanted:
            self.enough.set()
        nxt = self.states.pop(0) if self.states else None
        return known if nxt is None and known is not None else nxt or Task(id=task_id)


class Recorder:
    """A watcher of many tasks."""

    def __init__(self) -> None:
        self.updates: list[Task] = []
        self.done: list[tuple[str, TaskResult]] = []

    def task_update(self, task: Task) -> None:
        self.updates.append(task)

    def task_done(self, task_id: str, result: TaskResult) -> None:
        self.done.append((task_id, result))


async def test_the_poller_hands_each_read_the_task_as_last_seen() -> None:
    running = Task(id=TID, status=TaskStatus.PROCESSING, raw_status="processing", progress=5)
    done = Task(id=TID, status=TaskStatus.COMPLETED, raw_status="completed", progress=100)
    fetch = KnownFetch([running], wanted=4)
    policy = PollPolicy(min_interval=0.0, max_interval=0.0, first_poll=0.0, jitter=0.0)
    poller = Poller(fetch, policy, known=True, time_scale=0.001, seed=1)
    watcher = Recorder()
    start = Task(id=TID, status=TaskStatus.PENDING, raw_status="pending")
    tracked = poller.track(start, watcher=watcher)
    with anyio.fail_after(30):
        await fetch.enough.wait()
        fetch.states.append(done)
        result = await tracked.wait()
    await poller.aclose()
    assert done is result
    assert start is fetch.known[0]
    assert all(k is running for k in fetch.known[1:-1])  # unchanged: the same object
    assert all(u is running for u in watcher.updates[:-1])
    assert [(TID, done)] == watcher.done


async def test_a_replaced_fetch_is_given_the_task_id_alone() -> None:
    seen: list[str] = []

    async def fetch(task_id: str) -> Task:
        seen.append(task_id)
        return Task(id=task_id, status=TaskStatus.COMPLETED, raw_status="completed")

    poller = Poller(KnownFetch([]), PollPolicy(first_poll=0.0), known=True, time_scale=0.001)
    poller.fetch = fetch
    tracked = poller.track(Task(id=TID, status=TaskStatus.PENDING))
    with anyio.fail_after(30):
        result = await tracked.wait()
    await poller.aclose()
    assert [TID] == seen
    assert isinstance(result, Task)
    assert result.is_terminal


def test_track_takes_a_watcher_or_callbacks_not_both() -> None:
    poller = Poller(KnownFetch([]))
    with pytest.raises(ValueError, match="not both"):
        poller.track(Task(id=TID), watcher=Recorder(), on_done=print)


# -- the rate gate and the hand-off queue ---------------------------------------------------------


async def test_a_free_token_is_taken_without_a_turn_of_the_event_loop() -> None:
    limiter = RateLimiter(1.0, burst=2)  # the bucket starts full: two tokens are there now
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await limiter.acquire()
        await limiter.acquire()
        assert [] == ran  # neither acquire let the other task run
        with anyio.move_on_after(0):  # the third token is a second away: it waits
            await limiter.acquire()
        assert ["other"] == ran
    assert 0 == limiter.waiters


async def test_the_queue_hands_each_item_to_one_waiting_receiver_in_order() -> None:
    queue: ReadQueue[int] = ReadQueue()
    got: list[tuple[str, int]] = []

    async def receiver(name: str) -> None:
        while True:
            got.append((name, await queue.receive()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver, "a")
        tg.start_soon(receiver, "b")
        await anyio.wait_all_tasks_blocked()
        for i in range(4):
            queue.send_nowait(i)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert [0, 1, 2, 3] == [i for _, i in got]  # first in, first out, none lost
    assert queue.take() is None


async def test_an_item_is_not_lost_when_the_receiver_it_woke_is_cancelled() -> None:
    queue: ReadQueue[str] = ReadQueue()
    got: list[str] = []

    async def keep(scope_out: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_out.append(scope)
            got.append(await queue.receive())

    first: list[anyio.CancelScope] = []
    second: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(keep, first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(keep, second)
        await anyio.wait_all_tasks_blocked()
        queue.send_nowait("item")  # wakes the first receiver...
        first[0].cancel()  # ...which is cancelled before it runs
        await anyio.wait_all_tasks_blocked()
        assert ["item"] == got  # one of them took it
        tg.cancel_scope.cancel()
    assert 0 == len(queue)


def test_known_is_a_mapping_of_ids() -> None:
    known: Mapping[str, Task] = {TID: decode_task(answer())}
    assert [known[TID]] == decode_tasks({"data": [answer()]}, known)
