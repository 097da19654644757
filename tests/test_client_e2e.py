"""The client of the foundation issue against the simulator, end to end: create, wait, download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from evolink_async import (
    Completed,
    Event,
    EvolinkClient,
    InvalidRequestError,
    NotFoundError,
    Submitted,
    TaskFailedError,
    TaskStatus,
    VideoRequest,
)
from evolink_async.testing import Simulator
from evolink_async.testing.pytest_plugin import FAST_TIME_SCALE, SimulatorFactory


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _client(sim: Simulator) -> EvolinkClient:
    return EvolinkClient(sim.api_key, sim.base_url, time_scale=FAST_TIME_SCALE, rate=None)


async def test_create_wait_download_gives_the_served_mp4(
    evolink_simulator: Simulator, tmp_path: Path
) -> None:
    async with _client(evolink_simulator) as client:
        created = await client.create_video(prompt="A cat playing piano", duration=8)
        assert (TaskStatus.PENDING, 0, 46.08) == (
            created.status,
            created.progress,
            created.credits_reserved,
        )
        done = await client.wait(created)
        result = await client.download(done, tmp_path / "cat.mp4")
    data = (tmp_path / "cat.mp4").read_bytes()
    assert (TaskStatus.COMPLETED, 100, created.id) == (done.status, done.progress, done.id)
    assert b"ftyp" == data[4:8]
    assert (len(data), hashlib.sha256(data).hexdigest()) == (result.size, result.sha256)
    assert ["cat.mp4"] == _names(tmp_path)  # no temporary file left beside it


async def test_wait_reports_progress_rising_to_completion(evolink_simulator: Simulator) -> None:
    seen: list[int] = []
    async with _client(evolink_simulator) as client:
        task = await client.create_video(VideoRequest("A paper boat", aspect_ratio="9:16"))
        await client.wait(task, on_progress=lambda t: seen.append(t.progress or 0))
    assert seen == sorted(seen)
    assert 100 == seen[-1]


async def test_wait_raises_task_failed_with_the_documented_code(
    make_simulator: SimulatorFactory,
) -> None:
    sim = await make_simulator(fatal_failure_rate=1.0)
    async with _client(sim) as client:
        task = await client.create_video(prompt="anything")
        with pytest.raises(TaskFailedError) as info:
            await client.wait(task)
    assert (False, task.id) == (info.value.retryable, info.value.task.id)
    assert isinstance(info.value.code, str)


async def test_get_task_of_an_unknown_id_raises_not_found(evolink_simulator: Simulator) -> None:
    async with _client(evolink_simulator) as client:
        with pytest.raises(NotFoundError):
            await client.get_task("task-unified-1757169743-zzzzzzzz")


async def test_credits_go_down_by_the_price_of_a_completed_clip(
    evolink_simulator: Simulator,
) -> None:
    async with _client(evolink_simulator) as client:
        before = await client.get_credits()
        await client.wait(await client.create_video(prompt="a clip", duration=4))
        after = await client.get_credits()
    assert before.remaining is not None
    assert after.remaining is not None
    assert 23.04 == pytest.approx(before.remaining - after.remaining)


async def test_an_invalid_request_reaches_neither_client_nor_simulator(
    evolink_simulator: Simulator,
) -> None:
    async with _client(evolink_simulator) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.create_video(prompt="x", duration=5)
    assert ("duration", 0) == (info.value.field, evolink_simulator.stats.total_requests)


async def test_generate_creates_waits_and_downloads_in_one_call(
    evolink_simulator: Simulator, tmp_path: Path
) -> None:
    events: list[Event] = []
    async with _client(evolink_simulator) as client:
        task = await client.generate(
            "A cat playing piano", out=tmp_path / "cat.mp4", duration=8, on_event=events.append
        )
    assert TaskStatus.COMPLETED == task.status
    assert b"ftyp" == (tmp_path / "cat.mp4").read_bytes()[4:8]
    assert isinstance(events[0], Submitted)
    assert isinstance(events[-1], Completed)
    assert {"A cat playing piano": 1} == dict(evolink_simulator.stats.creates_per_prompt)


async def test_generate_raises_the_failure_and_refuses_a_typo_before_sending(
    make_simulator: SimulatorFactory, tmp_path: Path
) -> None:
    sim = await make_simulator(fatal_failure_rate=1.0)
    async with _client(sim) as client:
        with pytest.raises(TypeError, match="did you mean 'duration'"):
            await client.generate("a typo", durration=8)  # type: ignore[call-arg]
        assert 0 == sim.stats.total_requests
        with pytest.raises(TaskFailedError):
            await client.generate("doomed", out=tmp_path / "never.mp4")
    assert [] == _names(tmp_path)
