"""Callback mode: the receiver's hygiene, its wiring into the client, and batches against the
simulator delivering callbacks to a receiver on loopback.

Waits are on events (a poll seen, a callback answered), never on sleeps; the only timeouts are
guards that turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import attrs
import pytest
import pytest_asyncio
from aiohttp import web

from evolink_async import EvolinkClient, InvalidRequestError, PollPolicy, Task, TaskStatus
from evolink_async.callbacks import (
    DEFAULT_MAX_BODY,
    MAX_TASK_ID,
    CallbackReceiver,
    ReceiverStats,
    TaskWaker,
    parse_listen,
)
from evolink_async.dispatcher import Event, Progress
from evolink_async.poller import Poller, plan_safety_poll
from evolink_async.testing import Simulator
from evolink_async.testing.pytest_plugin import SimulatorFactory

#: real seconds per simulated second, for the simulator and the client alike
SCALE = 0.01
#: tasks of 20-65 simulated seconds: a 100-prompt batch takes well under a second
SHORT_TASKS: dict[str, Any] = {"queue_delay": (0.0, 5.0), "generation_time": (20.0, 60.0)}
#: tasks that never end unless the test completes them (a safety poll would come in ~1000 s)
ENDLESS_TASKS: dict[str, Any] = {"queue_delay": (0.0, 0.0), "generation_time": (1e5, 1e5)}
#: a guard against a hang, not a timing assertion
GUARD = 10.0


@attrs.define
class Rig:
    sim: Simulator
    receiver: CallbackReceiver
    client: EvolinkClient


class RigFactory(Protocol):
    async def __call__(self, *, confirm: bool = True, **knobs: Any) -> Rig: ...


@pytest_asyncio.fixture
async def make_rig(make_simulator: SimulatorFactory) -> AsyncIterator[RigFactory]:
    """A simulator that calls loopback, a standalone receiver, and a client in callback mode."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(*, confirm: bool = True, **knobs: Any) -> Rig:
            sim = await make_simulator(time_scale=SCALE, allow_insecure_callbacks=True, **knobs)
            receiver = CallbackReceiver(None, allow_insecure=True, confirm=confirm)
            await stack.enter_async_context(receiver)
            client = EvolinkClient(
                api_key=sim.api_key,
                base_url=sim.base_url,
                rate=None,
                max_in_flight=None,
                time_scale=SCALE,
                callbacks=receiver,
            )
            await stack.enter_async_context(client)
            return Rig(sim, receiver, client)

        yield make


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    """A standalone receiver with no client, and a small body limit."""
    async with CallbackReceiver(None, allow_insecure=True, max_body=1024) as r:
        yield r


async def post(url: str, data: bytes | Any, **kw: Any) -> int:
    """POST raw bytes, a chunked async generator, or (``json=``) an object; the status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, **kw) as response,
    ):
        await response.read()
        return response.status


async def post_json(url: str, body: object) -> int:
    return await post(url, None, json=body)


class GatedFetch:
    """Holds the poller's GETs until ``release`` is set; ``started`` says one is waiting."""

    def __init__(self, poller: Poller) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self._fetch: Callable[[str], Awaitable[Task]] = poller.fetch
        poller.fetch = self

    async def __call__(self, task_id: str) -> Task:
        self.started.set()
        await self.release.wait()
        return await self._fetch(task_id)


def secret_of(receiver: CallbackReceiver) -> str:
    return receiver.callback_url.rsplit("/", 1)[-1]


# -- batches against the simulator -------------------------------------------------------------


async def test_callback_batch_needs_about_one_get_per_task_and_confirms_every_result(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(**SHORT_TASKS)
    outcomes = [o async for o in rig.client.generate_many([f"clip {i}" for i in range(100)])]

    assert 100 * ["completed"] == [o.status for o in outcomes]
    gets_per_task = rig.sim.stats.count("get_task") / 100
    assert gets_per_task < 1.5
    assert 100 == rig.sim.stats.callbacks.delivered == rig.receiver.stats.woken
    # every result is what a GET answered after the task ended, not what a callback said
    for o in outcomes:
        assert o.task_id is not None
        sim_task = rig.sim.tasks[o.task_id]
        assert sim_task.first_seen_terminal_at is not None
        assert rig.sim.task_body(o.task_id)["results"] == [o.video_url]


async def test_lost_callbacks_are_found_by_the_safety_net_polls(make_rig: RigFactory) -> None:
    rig = await make_rig(callback_drop_rate=0.3, **SHORT_TASKS)
    outcomes = [o async for o in rig.client.generate_many([f"clip {i}" for i in range(100)])]

    assert 100 * ["completed"] == [o.status for o in outcomes]
    lost = [t for t in rig.sim.tasks.values() if t.callback_dropped]
    assert len(lost) == rig.sim.stats.callbacks.dropped > 0
    assert 100 - len(lost) == rig.receiver.stats.woken
    assert [] == [t.id for t in lost if t.first_seen_terminal_at is None]
    assert rig.sim.stats.count("get_task") / 100 < 1.5


async def test_forged_callback_does_not_complete_a_task_still_processing(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(**ENDLESS_TASKS)
    polled = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, Progress):
            polled.set()

    handle = await rig.client.submit("a cat", on_event=on_event)
    assert await handle.created() == handle.task_id
    assert handle.task_id is not None
    forged = {
        "id": handle.task_id,
        "status": "completed",
        "progress": 100,
        "results": ["https://evil.example/stolen.mp4"],
    }
    assert 204 == await post_json(rig.receiver.callback_url, forged)
    await asyncio.wait_for(polled.wait(), GUARD)  # the callback's confirming GET

    assert (False, TaskStatus.PROCESSING) == (handle.done(), handle.status)
    rig.sim.complete_task(handle.task_id)
    outcome = await asyncio.wait_for(handle.result(), GUARD)
    assert ("completed", rig.sim.task_body(handle.task_id)["results"]) == (
        outcome.status,
        [outcome.video_url],
    )


async def test_confirm_false_takes_a_terminal_body_without_a_get(make_rig: RigFactory) -> None:
    rig = await make_rig(confirm=False, **ENDLESS_TASKS)
    handle = await rig.client.submit("a cat")
    assert await handle.created() == handle.task_id
    assert handle.task_id is not None
    rig.sim.complete_task(handle.task_id)

    outcome = await asyncio.wait_for(handle.result(), GUARD)
    assert ("completed", 0, 1) == (
        outcome.status,
        rig.sim.tasks[handle.task_id].polls,
        rig.receiver.stats.accepted,
    )


async def test_every_create_carries_the_receivers_url_unless_the_request_has_one(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(**ENDLESS_TASKS)
    ours = await rig.client.create_video(prompt="a cat")
    theirs = await rig.client.create_video(prompt="a dog", callback_url="https://example.com/h")
    handle = await rig.client.submit("a bird")
    assert await handle.created() == handle.task_id
    assert handle.task_id is not None

    assert [rig.receiver.callback_url, "https://example.com/h", rig.receiver.callback_url] == [
        rig.sim.tasks[t].callback_url for t in (ours.id, theirs.id, handle.task_id)
    ]


# -- hygiene: one test each ------------------------------------------------------------------


async def test_unknown_secret_path_is_404_and_logged_redacted(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="evolink_async")
    guess = secrets.token_urlsafe(32)
    url = receiver.callback_url.rsplit("/", 1)[0] + "/" + guess

    assert 404 == await post_json(url, {"id": "task-unified-1"})
    assert ReceiverStats(not_found=1) == receiver.stats
    assert guess not in caplog.text
    assert secret_of(receiver) not in caplog.text
    assert "unknown path" in caplog.text


async def test_body_over_max_body_by_content_length_is_413(receiver: CallbackReceiver) -> None:
    body = b'{"id": "task-unified-1", "pad": "' + 2000 * b"x" + b'"}'
    assert 413 == await post(receiver.callback_url, body)
    assert ReceiverStats(too_large=1) == receiver.stats


async def test_streamed_body_over_max_body_is_413(receiver: CallbackReceiver) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check
        yield b'{"id": "task-unified-1", "pad": "'
        for _ in range(4):
            yield 500 * b"x"
        yield b'"}'

    assert 413 == await post(receiver.callback_url, chunks())
    assert ReceiverStats(too_large=1) == receiver.stats


async def test_non_json_body_is_400(receiver: CallbackReceiver) -> None:
    assert 400 == await post(receiver.callback_url, b"<html>not json</html>")
    assert ReceiverStats(bad_request=1) == receiver.stats


@pytest.mark.parametrize(
    "body",
    [{}, {"status": "completed"}, {"id": ""}, {"id": 42}, ["task-unified-1"], "task-unified-1"],
)
async def test_json_without_a_task_id_is_400(receiver: CallbackReceiver, body: object) -> None:
    assert 400 == await post_json(receiver.callback_url, body)
    assert ReceiverStats(bad_request=1) == receiver.stats


async def test_attack_8_a_megabyte_task_id_is_400_and_not_remembered() -> None:
    async with CallbackReceiver(None, allow_insecure=True) as r:
        assert 400 == await post_json(r.callback_url, {"id": "t" * 1_000_000})
        assert 204 == await post_json(r.callback_url, {"id": "t" * MAX_TASK_ID})

        assert ReceiverStats(received=1, ignored=1, bad_request=1) == r.stats
        assert (1, MAX_TASK_ID) == r.seen


async def test_attack_8_the_remembered_ids_are_capped_in_bytes_as_well_as_in_count() -> None:
    posted = 2_100  # 2,100 ids of the longest length: over the 512 KiB cap, under 10,000
    async with (
        CallbackReceiver(None, allow_insecure=True) as r,
        aiohttp.ClientSession() as session,
    ):
        for i in range(posted):
            task_id = f"task-unified-{i:05d}-".ljust(MAX_TASK_ID, "x")
            async with session.post(r.callback_url, json={"id": task_id}) as response:
                assert 204 == response.status

        count, size = r.seen

    assert ReceiverStats(received=posted, ignored=posted) == r.stats
    assert 512 * 1024 // MAX_TASK_ID == count
    assert count * MAX_TASK_ID == size


async def test_duplicate_deliveries_cost_one_get_and_one_outcome(make_rig: RigFactory) -> None:
    rig = await make_rig(**ENDLESS_TASKS)
    handle = await rig.client.submit("a cat")
    task_id = await handle.created()
    assert task_id is not None
    gate = GatedFetch(rig.client.poller)
    rig.sim.complete_task(task_id)
    await asyncio.wait_for(rig.sim.drain_callbacks(), GUARD)  # the service's own delivery
    await asyncio.wait_for(gate.started.wait(), GUARD)  # its confirming GET is waiting

    body = rig.sim.task_body(task_id)
    assert [204, 204] == [await post_json(rig.receiver.callback_url, body) for _ in range(2)]
    gate.release.set()
    outcome = await asyncio.wait_for(handle.result(), GUARD)
    assert 204 == await post_json(rig.receiver.callback_url, body)  # a retry after the end

    assert ("completed", 1) == (outcome.status, rig.sim.tasks[task_id].polls)
    assert ReceiverStats(received=4, woken=3, ignored=1, duplicates=3) == rig.receiver.stats


async def test_callback_for_an_untracked_id_is_ignored_and_logged_at_debug(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="evolink_async")
    rig = await make_rig(**ENDLESS_TASKS)
    body = {"id": "task-unified-not-ours", "status": "completed", "results": ["https://x.example"]}

    assert 204 == await post_json(rig.receiver.callback_url, body)
    assert ReceiverStats(received=1, ignored=1) == rig.receiver.stats
    assert 0 == rig.sim.stats.count("get_task")
    [record] = [r for r in caplog.records if "does not track" in r.getMessage()]
    assert logging.DEBUG == record.levelno
    assert secret_of(rig.receiver) not in caplog.text


async def test_callback_is_answered_before_the_confirming_get(make_rig: RigFactory) -> None:
    rig = await make_rig(**ENDLESS_TASKS)
    handle = await rig.client.submit("a cat")
    task_id = await handle.created()
    assert task_id is not None
    gate = GatedFetch(rig.client.poller)  # no GET can happen until the test says so
    rig.sim.complete_task(task_id)

    # A receiver that waited for the poll before answering would hang here (guarded).
    await asyncio.wait_for(rig.sim.drain_callbacks(), GUARD)
    [attempt] = rig.sim.stats.callbacks.attempts
    assert (204, 0) == (attempt.status, rig.sim.tasks[task_id].polls)

    await asyncio.wait_for(gate.started.wait(), GUARD)  # the answer did wake the poller
    gate.release.set()
    outcome = await asyncio.wait_for(handle.result(), GUARD)
    assert ("completed", 1) == (outcome.status, rig.sim.tasks[task_id].polls)


# -- the receiver's URL, mounting and wiring ---------------------------------------------------


def test_callback_url_is_the_public_url_plus_an_unguessable_segment() -> None:
    a = CallbackReceiver("https://bot.example.com/hooks/evolink/")
    b = CallbackReceiver("https://bot.example.com/hooks/evolink")
    prefix = "https://bot.example.com/hooks/evolink/"

    assert (True, True) == (a.callback_url.startswith(prefix), b.callback_url.startswith(prefix))
    assert secret_of(a) != secret_of(b)
    assert len(secret_of(a)) >= 43  # token_urlsafe(32)
    assert ("/hooks/evolink", DEFAULT_MAX_BODY) == (a.path, a.max_body)
    assert prefix + "s3cret-s3cret-s3cret" == (
        CallbackReceiver(prefix, secret="s3cret-s3cret-s3cret").callback_url
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://bot.example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.5/hook",
        "https://bot.example.com/hook?x=1",
    ],
)
def test_public_url_must_be_one_the_service_accepts(url: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        CallbackReceiver(url)
    assert "public_url" == info.value.field


def test_insecure_urls_need_allow_insecure() -> None:
    receiver = CallbackReceiver("http://127.0.0.1:8080/hook", allow_insecure=True)
    assert receiver.callback_url.startswith("http://127.0.0.1:8080/hook/")
    with pytest.raises(ValueError, match="allow_insecure"):
        CallbackReceiver(None)


@pytest.mark.parametrize("secret", ["short", "has/slash-has/slash", "spaces are not ok at all"])
def test_a_given_secret_must_be_a_long_url_safe_token(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        CallbackReceiver("https://bot.example.com/hook", secret=secret)


def test_repr_and_redacted_url_hide_the_secret() -> None:
    receiver = CallbackReceiver("https://bot.example.com/hook")
    assert "https://bot.example.com/hook/<secret>" == receiver.redacted_url
    assert secret_of(receiver) not in repr(receiver)


def test_a_receiver_serves_one_client() -> None:
    receiver = CallbackReceiver("https://bot.example.com/hook")
    EvolinkClient(api_key="sk-evo-example", callbacks=receiver)
    with pytest.raises(ValueError, match="another EvolinkClient"):
        EvolinkClient(api_key="sk-evo-example", callbacks=receiver)


@pytest.mark.parametrize("how", ["add_routes", "subapp", "handler"])
async def test_mounted_in_an_existing_application(how: str) -> None:
    receiver = CallbackReceiver("https://bot.example.com/hooks/evolink")
    app = web.Application()
    app.router.add_get("/health", _health)  # the bot's own routes stay as they are
    if how == "add_routes":
        receiver.add_routes(app)
    elif how == "subapp":
        app.add_subapp("/hooks/evolink", receiver.make_app())
    else:
        app.router.add_post("/hooks/evolink/{token}", receiver.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}/hooks/evolink/"
        statuses = [
            await post_json(base + secret_of(receiver), {"id": "task-unified-1"}),
            await post_json(base + "wrong-secret-wrong-secret", {"id": "task-unified-1"}),
        ]
    finally:
        await runner.cleanup()
    assert [204, 404] == statuses
    assert ReceiverStats(received=1, ignored=1, not_found=1) == receiver.stats


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# -- the safety-net plan -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "estimated", "polls", "expected"),
    [
        (0.0, 300.0, 0, 360.0),  # first poll: the expected end plus the grace
        (0.0, None, 0, 75.0),  # no estimate: first_poll (15 s) plus the grace
        (400.0, 300.0, 1, 300.0),  # late and polled once: every max_interval
        (100.0, 300.0, 1, 300.0),  # polled once, ahead of its end: not sooner either
    ],
)
def test_safety_poll_waits_for_the_callback_then_polls_slowly(
    now: float, estimated: float | None, polls: int, expected: float
) -> None:
    policy = PollPolicy(jitter=0.0, max_interval=300.0, callback_grace=60.0)
    delay = plan_safety_poll(
        now=now,
        start=0.0,
        estimated=estimated,
        zero_at=0.0,
        p1=None,
        p2=None,
        policy=policy,
        polls=polls,
    )
    assert expected == delay


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9000", ("0.0.0.0", 9000)),
        ("[::1]:8080", ("::1", 8080)),
        ("hooks.internal:0", ("hooks.internal", 0)),
    ],
)
def test_parse_listen_reads_host_and_port(value: str, expected: tuple[str, int]) -> None:
    assert expected == parse_listen(value)


@pytest.mark.parametrize("value", ["8080", "host:", "host:http", "host:70000", "::1:8080"])
def test_parse_listen_refuses_what_is_not_host_port(value: str) -> None:
    with pytest.raises(ValueError, match="--listen"):
        parse_listen(value)


class RecordingWaker:
    """A ``TaskWaker`` that is no poller: it tracks the ids it is given and records calls."""

    def __init__(self, tracked: set[str]) -> None:
        self.tracked = tracked
        self.woken: list[str] = []
        self.reported: list[Task] = []

    def wake(self, task_id: str) -> bool:
        self.woken.append(task_id)
        return task_id in self.tracked

    def report(self, task: Task) -> bool:
        self.reported.append(task)
        return task.id in self.tracked


@pytest.mark.parametrize(
    ("confirm", "body", "woken", "reported", "stats"),
    [
        (True, {"id": "task-unified-a", "status": "completed"}, 1, 0, {"woken": 1}),
        (False, {"id": "task-unified-a", "status": "completed"}, 0, 1, {"accepted": 1}),
        (False, {"id": "task-unified-a", "status": "processing"}, 1, 0, {"woken": 1}),
        (True, {"id": "task-unified-z", "status": "completed"}, 1, 0, {"ignored": 1}),
    ],
    ids=["confirm", "trusted-terminal", "trusted-running", "untracked"],
)
async def test_a_receiver_talks_only_to_what_can_wake_a_task(
    confirm: bool,
    body: dict[str, Any],
    woken: int,
    reported: int,
    stats: dict[str, int],
) -> None:
    waker = RecordingWaker({"task-unified-a"})
    sink: TaskWaker = waker
    async with CallbackReceiver(None, allow_insecure=True, confirm=confirm) as receiver:
        receiver.bind(sink)
        assert 204 == await post_json(receiver.callback_url, body)
    assert (woken, reported) == (len(waker.woken), len(waker.reported))
    assert ReceiverStats(received=1, **stats) == receiver.stats


def test_a_receiver_binds_one_waker() -> None:
    receiver = CallbackReceiver("https://bot.example.com/hook")
    first = RecordingWaker(set())
    receiver.bind(first)
    receiver.bind(first)  # the same one again: fine
    with pytest.raises(ValueError, match="another EvolinkClient"):
        receiver.bind(RecordingWaker(set()))


def test_the_old_module_name_still_gives_the_same_classes() -> None:
    from evolink_async import webhooks  # noqa: PLC0415 - the old import path itself is tested

    assert (CallbackReceiver, parse_listen) == (webhooks.CallbackReceiver, webhooks.parse_listen)
