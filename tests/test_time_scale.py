"""The task timeline's scale: stated by a simulator, adopted by a client that was not told,
overridden by ``time_scale=`` or ``$EVOLINK_TIME_SCALE``."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from evolink_async import EvolinkClient, VideoRequest
from evolink_async.cli import main
from evolink_async.client import TIME_SCALE_HEADER
from evolink_async.testing import Simulator

SCALE = 0.01


def client(sim: Simulator, **kw: Any) -> EvolinkClient:
    return EvolinkClient(sim.api_key, sim.base_url, rate=None, **kw)


async def test_a_client_that_was_not_told_polls_on_the_simulators_timeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An 8 s clip on a simulator at 0.01: noticed within 40 simulated seconds of its end (0.4 s
    of real time; 2 s at the issue's 0.05), as the simulator's own counters show. Unadopted, the
    client would wait out ``estimated_time`` in real seconds (minutes)."""
    monkeypatch.delenv("EVOLINK_TIME_SCALE", raising=False)
    async with Simulator(time_scale=SCALE, seed=3) as sim, client(sim) as c:
        assert 1.0 == c.time_scale
        task = await c.create_video(VideoRequest(prompt="a slow cat", duration=8))
        assert SCALE == c.time_scale
        with anyio.fail_after(60):  # a guard against the old hang, not a measurement
            done = await c.wait(task)
        assert done.video_url is not None
        [delay] = sim.stats.detection_delays()
        assert 0 <= delay <= 40.0


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [(0.5, None, 0.5), (None, "0.25", 0.25), (0.5, "0.25", 0.5)],
    ids=["argument", "environment", "argument-over-environment"],
)
async def test_a_time_scale_the_client_was_told_wins_over_the_simulators(
    monkeypatch: pytest.MonkeyPatch, given: float | None, env: str | None, expected: float
) -> None:
    if env is None:
        monkeypatch.delenv("EVOLINK_TIME_SCALE", raising=False)
    else:
        monkeypatch.setenv("EVOLINK_TIME_SCALE", env)
    async with Simulator(time_scale=SCALE) as sim, client(sim, time_scale=given) as c:
        await c.get_credits()
        assert expected == c.time_scale


async def test_a_simulator_told_to_keep_quiet_states_no_time_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVOLINK_TIME_SCALE", raising=False)
    async with Simulator(time_scale=SCALE, state_time_scale=False) as sim, client(sim) as c:
        await c.get_credits()
        assert 1.0 == c.time_scale


async def test_the_simulator_states_its_time_scale_on_answers_and_its_info_endpoint() -> None:
    async with Simulator(time_scale=SCALE) as sim, aiohttp.ClientSession() as http:
        async with http.get(f"{sim.base_url}/_simulator/info") as resp:
            info = await resp.json()
        async with http.get(f"{sim.base_url}/v1/credits") as resp:  # no key: a 401, stated too
            header = resp.headers.get(TIME_SCALE_HEADER)
    assert SCALE == info["time_scale"]
    assert "sora-2-preview" in info["models"]
    assert SCALE == float(header or "nan")


@pytest.mark.parametrize("raw", ["0", "-1", "fast", "inf"])
def test_a_bad_environment_time_scale_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raw: str
) -> None:
    monkeypatch.setenv("EVOLINK_TIME_SCALE", raw)
    with pytest.raises(ValueError, match=r"\$EVOLINK_TIME_SCALE must be a number > 0"):
        EvolinkClient("k", "http://127.0.0.1:9")
    assert 2 == main(["status", "task-unified-1", "--api-key", "k"])
    assert "$EVOLINK_TIME_SCALE" in capsys.readouterr().err
