"""The simulator answers like the documented Evolink API: shapes, errors, lifecycle, limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_simulator_support import Api, poll_until, running

from evolink_async import EvolinkClient
from evolink_async.testing import (
    FATAL_TASK_ERRORS,
    RETRYABLE_TASK_ERRORS,
    ManualClock,
    Simulator,
)

# The seed page's example answer (sora-2-preview, "A cat playing piano").
SEED_ANSWER: dict[str, Any] = {
    "created": 1757169743,
    "id": "task-unified-1757169743-7cvnl5zw",
    "model": "sora-2-preview",
    "object": "video.generation.task",
    "progress": 0,
    "status": "pending",
    "task_info": {"can_cancel": True, "estimated_time": 300, "video_duration": 9},
    "type": "video",
    "usage": {"billing_rule": "per_call", "credits_reserved": 7, "user_group": "default"},
}
TASK_ID = re.compile(r"^task-unified-(\d+)-[a-z0-9]{8}$")


def _shape(value: Any) -> Any:
    """Keys and JSON types of a value (numbers as one type), recursively."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


async def test_seed_example_request_gets_exactly_the_seed_fields_and_types() -> None:
    async with running() as (sim, api):
        reply = await api.create(model="sora-2-preview", prompt="A cat playing piano")

    assert reply.status == 200
    assert _shape(SEED_ANSWER) == _shape(reply.body)
    body = reply.body
    match = TASK_ID.match(body["id"])
    assert match is not None
    assert int(match.group(1)) == body["created"] == int(sim.clock.now())
    assert isinstance(body["created"], int)
    assert isinstance(body["task_info"]["estimated_time"], int)
    expected = {
        "model": "sora-2-preview",
        "object": "video.generation.task",
        "progress": 0,
        "status": "pending",
        "type": "video",
        "usage": {"billing_rule": "per_call", "credits_reserved": 23.04, "user_group": "default"},
    }
    assert expected == {k: body[k] for k in expected}
    assert {k: body["task_info"][k] for k in ("can_cancel", "video_duration")} == {
        "can_cancel": True,
        "video_duration": 4,
    }


@pytest.mark.parametrize(("duration", "price"), [(4, 23.04), (8, 46.08), (12, 69.12)])
async def test_price_is_the_published_one_for_each_duration(duration: int, price: float) -> None:
    async with running() as (_, api):
        reply = await api.create(duration=duration)
    assert (200, price, duration) == (
        reply.status,
        reply.body["usage"]["credits_reserved"],
        reply.body["task_info"]["video_duration"],
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-evo-wrong"}, {"Authorization": "Basic sk-evo-simulator-key"}],
)
async def test_missing_or_wrong_key_is_401_with_documented_body(headers: dict[str, str]) -> None:
    async with running() as (sim, api):
        for method, path in (("POST", "/v1/videos/generations"), ("GET", "/v1/credits")):
            reply = await api.request(method, path, auth=False, headers=headers, json={})
            assert (
                reply.status,
                reply.body["error"]["message"],
                reply.body["error"]["type"],
            ) == (401, "Invalid or expired token", "authentication_error")
            assert "code" in reply.body["error"]
        assert sim.tasks == {}


LONG_HOST = "a" * 2040


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"duration": 5}, "duration"),
        ({"duration": "8"}, "duration"),
        ({"duration": True}, "duration"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 5001}, "prompt"),
        ({"image_urls": ["https://a.example/1.png", "https://a.example/2.png"]}, "image_urls"),
        ({"image_urls": "https://a.example/1.png"}, "image_urls"),
        ({"image_urls": ["not a url"]}, "image_urls"),
        ({"callback_url": "http://hooks.example.com/done"}, "callback_url"),
        ({"callback_url": "https://127.0.0.1/done"}, "callback_url"),
        ({"callback_url": "https://127.1/done"}, "callback_url"),
        ({"callback_url": "https://10.1.2.3/done"}, "callback_url"),
        ({"callback_url": "https://172.20.0.1/done"}, "callback_url"),
        ({"callback_url": "https://192.168.1.1/done"}, "callback_url"),
        ({"callback_url": "https://169.254.169.254/latest"}, "callback_url"),
        ({"callback_url": "https://[::1]/done"}, "callback_url"),
        ({"callback_url": "https://[fe80::1]/done"}, "callback_url"),
        ({"callback_url": "https://[::ffff:10.0.0.1]/done"}, "callback_url"),
        ({"callback_url": "https://localhost:8443/done"}, "callback_url"),
        ({"callback_url": f"https://{LONG_HOST}.example.com/"}, "callback_url"),
        ({"callback_url": 42}, "callback_url"),
    ],
)
async def test_invalid_field_is_400_naming_the_param(fields: dict[str, Any], param: str) -> None:
    async with running() as (sim, api):
        reply = await api.create(**fields)
    error = reply.body["error"]
    assert (400, "invalid_parameter", "invalid_request_error", param) == (
        reply.status,
        error["code"],
        error["type"],
        error["param"],
    )
    assert error["message"].startswith(f"Invalid {param} parameter")
    assert sim.tasks == {}


async def test_valid_optional_fields_and_unknown_extras_are_accepted() -> None:
    async with running() as (_, api):
        reply = await api.create(
            aspect_ratio="720x1280",
            duration=12,
            image_urls=["https://img.example.com/a.png"],
            callback_url="https://hooks.example.com/" + "p" * 1900,
            some_future_field={"x": 1},
        )
    assert (reply.status, reply.body["task_info"]["video_duration"]) == (200, 12)


async def test_loopback_callback_accepted_when_insecure_callbacks_allowed() -> None:
    async with running(allow_insecure_callbacks=True) as (_, api):
        reply = await api.create(callback_url="http://127.0.0.1:9/hook")
    assert reply.status == 200


@pytest.mark.parametrize("data", [b"[1, 2]", b"not json", b'"prompt"', b""])
async def test_body_that_is_not_a_json_object_is_400(data: bytes) -> None:
    async with running() as (_, api):
        reply = await api.request("POST", "/v1/videos/generations", data=data)
    assert (reply.status, reply.body["error"]["type"]) == (400, "invalid_request_error")


async def test_unknown_model_is_404_model_not_found() -> None:
    async with running() as (_, api):
        reply = await api.create(model="sora-9")
    assert (
        reply.status,
        reply.body["error"]["message"],
        reply.body["error"]["type"],
    ) == (404, "Specified model not found", "not_found_error")


@pytest.mark.parametrize(
    ("fields", "status", "duration"),
    [
        ({"model": "sora-2"}, 200, 10),
        ({"model": "sora-2", "duration": 15}, 200, 15),
        ({"model": "sora-2", "duration": 4}, 400, None),
        ({"model": "sora-2-pro"}, 200, 15),
        ({"model": "sora-2-pro", "duration": 25, "quality": "standard"}, 200, 25),
        ({"model": "veo-3.1-fast-generate-preview", "duration": 6}, 200, 6),
        ({"model": "veo-3.1-fast-generate-preview", "prompt": "x" * 2001}, 400, None),
    ],
)
async def test_other_models_follow_their_own_rules(
    fields: dict[str, Any], status: int, duration: int | None
) -> None:
    async with running() as (_, api):
        reply = await api.create(**fields)
    assert reply.status == status
    if duration is not None:
        assert (fields["model"], duration) == (
            reply.body["model"],
            reply.body["task_info"]["video_duration"],
        )


async def test_task_id_without_prefix_is_400_invalid_task_id() -> None:
    async with running() as (_, api):
        reply = await api.task("1757169743-7cvnl5zw")
    assert (
        reply.status,
        reply.body["error"]["code"],
        reply.body["error"]["message"],
    ) == (400, "invalid_task_id", "Invalid task ID format, must start with 'task-unified-'")


async def test_unknown_task_is_404_not_found_or_expired() -> None:
    async with running() as (_, api):
        reply = await api.task("task-unified-1757169743-zzzzzzzz")
    assert (
        reply.status,
        reply.body["error"]["message"],
        reply.body["error"]["type"],
    ) == (404, "Task not found or expired", "not_found_error")


async def test_lifecycle_pending_processing_completed_on_a_manual_clock() -> None:
    async with running(credits=100.0) as (sim, api):
        task_id = await api.created_id()
        task = sim.tasks[task_id]
        seen = [(await api.task(task_id)).body]
        sim.advance(task.started_at - sim.clock.now() + 0.01)
        seen.append((await api.task(task_id)).body)
        sim.advance(task.generation_time / 2)
        seen.append((await api.task(task_id)).body)
        sim.advance(task.finished_at - sim.clock.now() + 0.001)
        seen.append((await api.task(task_id)).body)
        credits = (await api.request("GET", "/v1/credits")).body["data"]["token"]

    statuses = [(b["status"], b["progress"], b["task_info"]["can_cancel"]) for b in seen]
    assert statuses == [
        ("pending", 0, True),
        ("processing", 1, True),
        ("processing", 50, True),
        ("completed", 100, False),
    ]
    assert ["results" in b for b in seen] == [False, False, False, True]
    assert not any("error" in b for b in seen)
    assert re.match(
        rf"^{sim.base_url}/files/{task_id}\.mp4\?expires=\d+&sig=\w+$", seen[-1]["results"][0]
    )
    assert (round(100 - 23.04, 4), 23.04) == (credits["remaining_credits"], credits["used_credits"])
    assert (
        sim.stats.peak_active_tasks,
        sim.stats.credits_reserved,
        sim.stats.credits_spent,
    ) == (1, 23.04, 23.04)


async def test_progress_only_rises_while_processing() -> None:
    async with running(queue_delay=(0.0, 0.0)) as (sim, api):
        task_id = await api.created_id()
        progress = []
        for _ in range(39):
            sim.advance(sim.tasks[task_id].generation_time / 40)
            progress.append((await api.task(task_id)).body["progress"])
        sim.advance(sim.tasks[task_id].generation_time)
        progress.append((await api.task(task_id)).body["progress"])
    assert sorted(set(progress)) == progress  # strictly rising
    assert (progress[0], progress[-2], progress[-1]) == (3, 96, 100)


@pytest.mark.parametrize(
    ("knobs", "codes"),
    [
        ({"retryable_failure_rate": 1.0}, RETRYABLE_TASK_ERRORS),
        ({"fatal_failure_rate": 1.0}, FATAL_TASK_ERRORS),
        (
            {"failure_rate": 1.0, "failure_codes": ("content_policy_violation",)},
            ("content_policy_violation",),
        ),
    ],
)
async def test_injected_failures_use_documented_codes_and_release_credits(
    knobs: dict[str, Any], codes: tuple[str, ...]
) -> None:
    async with running(credits=1000.0, **knobs) as (sim, api):
        ids = [await api.created_id() for _ in range(12)]
        sim.advance(10_000)
        bodies = [(await api.task(task_id)).body for task_id in ids]
        credits = (await api.request("GET", "/v1/credits")).body["data"]["token"]

    assert {"failed"} == {b["status"] for b in bodies}
    assert {b["error"]["code"] for b in bodies} <= set(codes)
    assert all(isinstance(b["error"]["message"], str) and "results" not in b for b in bodies)
    assert all(0 <= b["progress"] < 100 for b in bodies)
    assert (credits["remaining_credits"], credits["used_credits"]) == (1000.0, 0.0)


async def test_control_methods_complete_fail_and_cancel_tasks() -> None:
    async with running() as (sim, api):
        done, failed, cancelled = [await api.created_id() for _ in range(3)]
        sim.complete_task(done)
        sim.fail_task(failed, "content_policy_violation")
        sim.cancel_task(cancelled)
        bodies = [(await api.task(i)).body for i in (done, failed, cancelled)]
        with pytest.raises(ValueError, match="already completed"):
            sim.cancel_task(done)

    assert [(b["status"], b.get("error", {}).get("code")) for b in bodies] == [
        ("completed", None),
        ("failed", "content_policy_violation"),
        ("failed", "request_cancelled"),
    ]
    assert (bodies[1]["progress"], bodies[2]["progress"]) == (0, 0)


async def test_credits_answer_has_the_documented_shape() -> None:
    async with running(credits=500.0) as (sim, api):
        reply = await api.request("GET", "/v1/credits")
        sim.set_credits(12.5)
        after = await api.request("GET", "/v1/credits")
    assert reply.body == {
        "data": {
            "token": {"remaining_credits": 500.0, "unlimited_credits": False, "used_credits": 0.0},
            "user": {"remaining_credits": 500.0, "used_credits": 0.0},
        },
        "message": "",
        "success": True,
    }
    assert after.body["data"]["token"]["remaining_credits"] == 12.5


async def test_rate_limit_is_429_with_integer_retry_after() -> None:
    async with running(rate_limit=2, rate_window=60.0) as (sim, api):
        replies = [await api.request("GET", "/v1/credits") for _ in range(3)]
        create = await api.create()
    assert [r.status for r in [*replies, create]] == [200, 200, 429, 429]
    error = replies[2].body["error"]
    assert (
        error["type"],
        error["message"].startswith("Rate limit exceeded, retry after "),
    ) == ("rate_limit_error", True)
    retry_after = int(replies[2].headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert f"retry after {retry_after} seconds" in error["message"]
    assert (sim.stats.rate_limited, len(sim.tasks)) == (2, 0)


async def test_concurrency_limit_is_429_until_a_task_finishes() -> None:
    async with running(max_concurrent=2) as (sim, api):
        first = await api.created_id()
        await api.created_id()
        refused = await api.create()
        sim.advance(sim.tasks[first].finished_at - sim.clock.now() + 0.001)
        admitted = await api.create()
    assert (refused.status, refused.body["error"]["type"]) == (429, "rate_limit_error")
    assert "concurrent" in refused.body["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert admitted.status == 200
    assert (sim.stats.peak_active_tasks, sim.stats.rate_limited) == (2, 1)


async def test_insufficient_credits_is_402_and_failed_tasks_give_credits_back() -> None:
    async with running(credits=30.0) as (sim, api):
        first = await api.created_id()
        refused = await api.create()
        sim.fail_task(first, "service_error")
        admitted = await api.create()
    error = refused.body["error"]
    assert (
        refused.status,
        error["message"],
        error["type"],
    ) == (402, "Insufficient quota", "insufficient_quota_error")
    assert "fallback_suggestion" in error
    assert admitted.status == 200
    assert (sim.stats.credits_reserved, sim.stats.credits_released) == (46.08, 23.04)


async def test_estimated_time_is_within_estimate_error_of_the_real_duration() -> None:
    async with running(estimate_error=0.1) as (sim, api):
        ids = [await api.created_id(duration=d) for d in (4, 8, 12) * 5]
    for task_id in ids:
        task = sim.tasks[task_id]
        actual = task.finished_at - task.created_at
        assert abs(task.estimated_time - actual) <= 0.1 * actual + 1


async def test_fixture_simulator_completes_a_task_in_scaled_real_time(
    evolink_simulator: Simulator,
) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(evolink_simulator, session)
        task_id = await api.created_id()

        async def completed() -> bool:
            return bool((await api.task(task_id)).body["status"] == "completed")

        await poll_until(completed)
    task = evolink_simulator.tasks[task_id]
    assert task.detection_delay is not None
    assert task.detection_delay >= 0


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(start=100.0)
    clock.advance(2.5)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert clock.now() == 102.5


async def test_a_simulator_on_the_same_state_file_answers_for_the_earlier_ones_tasks(
    tmp_path: Path,
) -> None:
    state = tmp_path / "sim.jsonl"
    async with Simulator(time_scale=0.01, seed=5, state_path=str(state)) as first:
        async with EvolinkClient(first.api_key, first.base_url, rate=None) as client:
            task = await client.create_video(prompt="kept", duration=4)
        created_at = first.tasks[task.id].created_at
    with state.open("a") as torn:  # a crash mid-line: that task was never answered
        torn.write('{"id": "task-unified-torn", "prom')
    async with Simulator(time_scale=0.01, seed=5, state_path=str(state)) as second:
        assert [task.id] == list(second.tasks)
        assert created_at == second.tasks[task.id].created_at
        assert second.clock.now() > created_at  # the timeline went on
        async with EvolinkClient(second.api_key, second.base_url, rate=None) as client:
            done = await client.wait(task.id)
            fresh = await client.create_video(prompt="new", duration=4)
        assert done.video_url is not None
        assert fresh.id != task.id
        assert {"kept": 1, "new": 1} == dict(second.stats.creates_per_prompt)
