"""The simulator's result files, injected faults, callbacks, stats, determinism and shell use."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from test_simulator_support import Api, receiver, running

import evolink_async.testing as testing_pkg
from evolink_async.testing import Simulator, SimulatorConfig, SimulatorStats, cli, pytest_plugin
from evolink_async.testing._files import task_video


async def _completed_url(sim: Simulator, api: Api) -> str:
    task_id = await api.created_id()
    sim.complete_task(task_id)
    url: str = (await api.task(task_id)).body["results"][0]
    return url


def _served(sim: Simulator) -> bytes:
    """The clip of the simulator's one task (made for it: see test_simulator_clips.py)."""
    [task] = sim.tasks.values()
    return task_video(task)


# -- result files --------------------------------------------------------------------------


async def test_result_video_is_a_real_mp4_with_content_length() -> None:
    async with running() as (sim, api):
        url = await _completed_url(sim, api)
        async with api.session.get(url) as response:
            data = await response.read()
            headers = response.headers
    assert (200, "video/mp4", str(len(data)), "bytes") == (
        response.status,
        headers["Content-Type"],
        headers["Content-Length"],
        headers["Accept-Ranges"],
    )
    assert data[4:8] == b"ftyp"
    assert data == _served(sim)
    assert 1_000 < len(data) < 60_000


@pytest.mark.parametrize(
    ("range_", "first", "last"),
    [("bytes=100-199", 100, 199), ("bytes=5000-", 5000, None), ("bytes=-300", -300, None)],
)
async def test_result_video_honours_range_requests(
    range_: str, first: int, last: int | None
) -> None:
    async with running() as (sim, api):
        url = await _completed_url(sim, api)
        async with api.session.get(url, headers={"Range": range_}) as response:
            body = await response.read()
    video = _served(sim)
    expected = video[first:] if last is None else video[first : last + 1]
    start = first % len(video)
    assert (206, expected) == (response.status, body)
    assert response.headers["Content-Range"] == (
        f"bytes {start}-{start + len(expected) - 1}/{len(video)}"
    )


async def test_unsatisfiable_range_is_416() -> None:
    async with running() as (sim, api):
        url = await _completed_url(sim, api)
        async with api.session.get(url, headers={"Range": "bytes=999999-"}) as response:
            status, content_range = response.status, response.headers["Content-Range"]
    assert (416, f"bytes */{len(_served(sim))}") == (status, content_range)


async def test_result_link_expires_after_link_ttl() -> None:
    async with running(link_ttl=3600.0) as (sim, api):
        url = await _completed_url(sim, api)
        fresh = await api.request("GET", url, auth=False)
        sim.advance(3601)
        stale = await api.request("GET", url, auth=False)
        forged = await api.request("GET", url.replace("sig=", "sig=0"), auth=False)
    assert fresh.status == 200
    assert (stale.status, stale.body["error"]["code"]) == (403, "link_expired")
    assert (forged.status, forged.body["error"]["type"]) == (403, "permission_error")


async def test_failing_download_cuts_the_body_short_then_succeeds() -> None:
    async with running(download_fail_rate=1.0, download_fail_mode="truncate") as (sim, api):
        url = await _completed_url(sim, api)
        with pytest.raises(aiohttp.ClientPayloadError):
            async with api.session.get(url) as response:
                await response.read()
        async with api.session.get(url) as response:
            retried = await response.read()
    assert retried == _served(sim)


async def test_failing_download_mode_503_answers_503_once() -> None:
    async with running(download_fail_rate=1.0, download_fail_mode="503") as (sim, api):
        url = await _completed_url(sim, api)
        first = await api.request("GET", url, auth=False)
        second = await api.request("GET", url, auth=False, headers={"Range": "bytes=0-7"})
    assert (first.status, first.headers["Retry-After"]) == (503, "1")
    assert (second.status, sim.stats.count("files")) == (206, 2)


# -- transport faults ----------------------------------------------------------------------


async def test_ghost_create_drops_the_connection_but_the_task_exists() -> None:
    async with running(ghost_rate=1.0) as (sim, api):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.create(prompt="ghost prompt")
    [task] = sim.tasks.values()
    assert (True, [task.id], {"ghost prompt": 1}) == (
        task.ghost,
        sim.stats.ghost_task_ids,
        dict(sim.stats.creates_per_prompt),
    )
    assert sim.stats.requests[("create", 0)] == 1


async def test_5xx_answers_create_no_task_and_mix_json_html_and_empty_bodies() -> None:
    async with running(error_5xx_rate=1.0, html_error_fraction=0.6) as (sim, api):
        replies = [await api.create() for _ in range(30)]
    assert {r.status for r in replies} == {502, 503}
    kinds = {
        "json" if isinstance(r.body, dict) else "html" if "<html>" in r.body else "empty"
        for r in replies
    }
    assert {"json", "html", "empty"} == kinds
    assert all(r.body == "" for r in replies if "Content-Type" not in r.headers)
    assert sim.tasks == {}


async def test_slow_create_still_creates_the_task() -> None:
    async with running(slow_rate=1.0, slow_seconds=0.05) as (sim, api):
        task_id = await api.created_id()
    assert ([task_id], True) == (sim.stats.slow_task_ids, sim.tasks[task_id].slow)


async def test_faults_spare_the_stats_endpoint() -> None:
    async with running(error_5xx_rate=1.0) as (_, api):
        reply = await api.request("GET", "/_simulator/stats", auth=False)
    assert (reply.status, reply.body["requests"]) == (200, {})


# -- callbacks -----------------------------------------------------------------------------


async def test_callback_is_retried_after_500_and_delivered_with_the_task_body() -> None:
    async with (
        receiver([500, 500, 200]) as hook,
        running(allow_insecure_callbacks=True) as (sim, api),
    ):
        task_id = await api.created_id(callback_url=hook.url)
        sim.advance(sim.tasks[task_id].finished_at - sim.clock.now() + 0.001)
        await sim.drain_callbacks()
        attempts_at_finish = len(hook.bodies)
        for delay in (1, 2):
            sim.advance(delay)
            await sim.drain_callbacks()
        sim.advance(100)
        await sim.drain_callbacks()
        polled = (await api.task(task_id)).body
    callbacks = sim.stats.callbacks
    assert attempts_at_finish == 1
    assert [a.status for a in callbacks.attempts] == [500, 500, 200]
    assert [a.attempt for a in callbacks.attempts] == [0, 1, 2]
    assert (callbacks.attempted, callbacks.delivered, callbacks.gave_up) == (3, 1, 0)
    assert [polled] * 3 == hook.bodies


async def test_callback_gives_up_after_three_retries() -> None:
    async with (
        receiver([503]) as hook,
        running(allow_insecure_callbacks=True) as (sim, api),
    ):
        task_id = await api.created_id(callback_url=hook.url)
        sim.fail_task(task_id, "service_error")
        for delay in (0, 1, 2, 4, 8):
            sim.advance(delay)
            await sim.drain_callbacks()
    assert (
        sim.stats.callbacks.attempted,
        sim.stats.callbacks.delivered,
        sim.stats.callbacks.gave_up,
    ) == (4, 0, 1)
    assert hook.bodies[0]["status"] == "failed"


async def test_dropped_callbacks_are_never_sent() -> None:
    async with (
        receiver() as hook,
        running(allow_insecure_callbacks=True, callback_drop_rate=1.0) as (sim, api),
    ):
        task_id = await api.created_id(callback_url=hook.url)
        sim.complete_task(task_id)
        await sim.drain_callbacks()
    assert (hook.bodies, sim.stats.callbacks.attempted, sim.stats.callbacks.dropped) == ([], 0, 1)


async def test_callbacks_on_a_scaled_clock_arrive_by_themselves() -> None:
    async with (
        receiver() as hook,
        running(manual=False, time_scale=0.0005, allow_insecure_callbacks=True) as (_, api),
    ):
        task_id = await api.created_id(callback_url=hook.url)
        await asyncio.wait_for(hook.received.wait(), timeout=30)
    assert (task_id, "completed") == (hook.bodies[0]["id"], hook.bodies[0]["status"])


async def test_close_cancels_a_callback_still_in_flight() -> None:
    async with receiver() as hook:
        hook.hang.set()
        async with running(allow_insecure_callbacks=True) as (sim, api):
            task_id = await api.created_id(callback_url=hook.url)
            sim.complete_task(task_id)
            await asyncio.wait_for(hook.received.wait(), timeout=30)
        # leaving the block closed the simulator with the POST unanswered: no error, no warning
    assert sim.stats.callbacks.attempted == 0


# -- determinism and stats -----------------------------------------------------------------


async def _outcomes(seed: int) -> list[tuple[Any, ...]]:
    knobs: dict[str, Any] = {"seed": seed, "failure_rate": 0.5, "download_fail_rate": 0.5}
    async with running(**knobs) as (sim, api):
        for i in range(20):
            await api.created_id(prompt=f"clip {i}")
        return [
            (t.id, t.error_code, t.started_at, t.finished_at, t.estimated_time, t.download_fault)
            for t in sim.tasks.values()
        ]


async def test_same_seed_gives_the_same_outcomes() -> None:
    first, again, other = await _outcomes(7), await _outcomes(7), await _outcomes(8)
    assert first == again
    assert first != other
    assert {None} < {o[1] for o in first}  # some fail, some do not


async def test_stats_count_requests_prompts_and_detection() -> None:
    async with running() as (sim, api):
        task_id = await api.created_id(prompt="p")
        await api.created_id(prompt="p")
        await api.task(task_id)
        sim.complete_task(task_id)
        sim.advance(5)
        await api.task(task_id)
        await api.task(task_id)
        stats = (await api.request("GET", "/_simulator/stats", auth=False)).body
    task = sim.tasks[task_id]
    assert (
        dict(sim.stats.creates_per_prompt),
        sim.stats.peak_active_tasks,
        task.detection_delay_sim,
        task.polls,
    ) == ({"p": 2}, 2, 5.0, 3)
    assert stats["requests"] == {"create": {"200": 2}, "get_task": {"200": 3}}
    assert (stats["total_requests"], len(stats["request_times"])) == (5, 5)
    assert stats["tasks"][task_id]["detection_delay_sim"] == 5.0


def test_max_requests_in_window_slides_over_request_times() -> None:
    stats = SimulatorStats(request_times=[0.0, 0.2, 0.9, 1.0, 1.1, 1.95, 3.0])
    assert (
        stats.max_requests_in_window(1.0),
        stats.max_requests_in_window(0.5),
        stats.max_requests_in_window(0.01),
        stats.max_requests_in_window(10.0),
    ) == (4, 3, 1, 7)


def test_config_refuses_impossible_knobs() -> None:
    with pytest.raises(ValueError, match="failure rates"):
        SimulatorConfig(failure_rate=0.7, fatal_failure_rate=0.5)
    with pytest.raises(ValueError, match="low <= high"):
        SimulatorConfig(queue_delay=(5.0, 1.0))
    with pytest.raises(TypeError):
        Simulator(no_such_knob=1)
    with pytest.raises(TypeError, match="ManualClock"):
        Simulator().advance(1)


# -- fixtures and shell --------------------------------------------------------------------


async def test_make_simulator_fixture_applies_knobs(
    make_simulator: pytest_plugin.SimulatorFactory,
) -> None:
    sim = await make_simulator(rate_limit=1, rate_window=60.0)
    async with aiohttp.ClientSession() as session:
        api = Api(sim, session)
        statuses = [(await api.request("GET", "/v1/credits")).status for _ in range(2)]
    assert (statuses, sim.config.time_scale) == ([200, 429], pytest_plugin.FAST_TIME_SCALE)


def test_cli_flags_become_simulator_kwargs() -> None:
    parser = argparse.ArgumentParser()
    cli.add_simulator_arguments(parser)
    ns = parser.parse_args(
        [
            "--port",
            "0",
            "--time-scale",
            "0.01",
            "--rate-limit",
            "5",
            "--queue-delay",
            "1",
            "2",
            "--failure-rate",
            "0.1",
            "--failure-codes",
            "service_error,generation_timeout",
            "--allow-insecure-callbacks",
        ]
    )
    kwargs = cli.simulator_kwargs_from_args(ns)
    assert kwargs == {
        "host": "127.0.0.1",
        "port": 0,
        "api_key": "sk-evo-simulator-key",
        "time_scale": 0.01,
        "rate_limit": 5,
        "queue_delay": (1.0, 2.0),
        "failure_rate": 0.1,
        "failure_codes": ("service_error", "generation_timeout"),
        "allow_insecure_callbacks": True,
    }
    config = Simulator(**kwargs).config
    assert (
        config.time_scale,
        config.rate_limit,
        config.failure_codes,
    ) == (0.01, 5, ("service_error", "generation_timeout"))


async def test_serve_prints_the_base_url_and_key_until_cancelled() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        server = asyncio.create_task(cli.serve(port=0, api_key="sk-evo-shell"))
        for _ in range(200):
            if "API key" in out.getvalue():
                break
            await asyncio.sleep(0.01)
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
    assert "http://127.0.0.1:" in out.getvalue()
    assert "API key: sk-evo-shell" in out.getvalue()


def test_python_dash_m_shows_the_knobs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "evolink_async.testing", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "--ghost-rate" in result.stdout
    assert "--allow-insecure-callbacks" in result.stdout


@pytest.mark.parametrize("module", [testing_pkg, cli, pytest_plugin])
def test_public_modules_export_what_they_define(module: Any) -> None:
    defined = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and str(getattr(obj, "__module__", "")).startswith(module.__name__)
    }
    assert set(module.__all__) <= set(vars(module))
    assert defined <= set(module.__all__)
