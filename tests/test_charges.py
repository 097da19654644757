"""The service's credit figures: checked before they are trusted (issue 12, attack 2), the
final charge settles the budget, and a charge above the price table wins and is learned for
the next reservations (attack 5)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cli_support import KEY as CLI_KEY
from cli_support import TIME_SCALE, read_manifest, service_args, write_prompts
from test_simulator_support import running

from evolink_async import EvolinkClient
from evolink_async.cli import main
from evolink_async.dispatcher import Outcome
from evolink_async.limits import LearnedPrices, final_charge
from evolink_async.models import Task, Usage, UsageCost
from evolink_async.testing import ThreadedSimulator

KEY = "sk-evo-charges-test-0123"
PRICE = 23.04  # sora-2-preview, 4 s


class Gateway:
    """A stub gateway whose creates answer ``credits_reserved`` as given (raw JSON text, so a
    NaN can be sent) and whose tasks complete at once."""

    def __init__(self, reserved: str) -> None:
        self.reserved = reserved
        self.created: list[str] = []

    async def create(self, request: web.Request) -> web.StreamResponse:
        task_id = f"task-unified-1757169743-{len(self.created):08d}"
        self.created.append(task_id)
        return self._task(task_id, "pending")

    async def get(self, request: web.Request) -> web.StreamResponse:
        return self._task(request.match_info["task_id"], "completed")

    def _task(self, task_id: str, status: str) -> web.StreamResponse:
        body = {"id": task_id, "status": status, "model": "sora-2-preview", "usage": {}}
        if status == "completed":
            body["results"] = ["https://cdn.example.com/v.mp4"]
        text = json.dumps(body).replace('"usage": {}', f'"usage": {{"credits_reserved": '
                                                     f"{self.reserved}}}")  # fmt: skip
        return web.Response(text=text, content_type="application/json")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"code": "not_found", "message": "no"}}, status=404)


async def serve(gateway: Gateway) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/videos/generations", gateway.create)
    app.router.add_get("/v1/tasks/{task_id}", gateway.get)
    app.router.add_route("*", "/{tail:.*}", gateway.not_found)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def run_batch(
    base_url: str, prompts: int, budget: float, key: str = KEY, **knobs: Any
) -> list[Outcome]:
    async with EvolinkClient(key, base_url, rate=None, time_scale=0.001, **knobs) as client:
        batch = client.generate_many(
            [{"prompt": f"clip {i}", "duration": 4} for i in range(prompts)],
            budget=budget,
            max_in_flight=2,
        )
        return [outcome async for outcome in batch]


@pytest.mark.parametrize("reserved", ["-5", "NaN", "1e300", "-Infinity"])
async def test_an_insane_credits_reserved_is_ignored_with_a_warning_and_the_task_tracked(
    reserved: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack 2: a negative credits_reserved made settling raise after the create: the
    reservation was released (10 creates against a budget for 2), no outcome came, the task
    was never polled."""
    gateway = Gateway(reserved)
    with caplog.at_level(logging.WARNING, logger="evolink_async"):
        async for base_url in serve(gateway):
            outcomes = await run_batch(base_url, 10, budget=PRICE * 2 + 1)
    statuses = sorted(o.status for o in outcomes)
    tracked = {o.task_id for o in outcomes if o.task_id is not None}
    assert (["completed"] * 2 + ["skipped"] * 8, 2) == (statuses, len(gateway.created))
    assert set(gateway.created) == tracked  # no task id lost
    assert [PRICE, PRICE] == [o.credits for o in outcomes if o.status == "completed"]
    if reserved in ("-5", "1e300"):  # NaN and infinities the decoder drops itself
        assert any("credits_reserved" in r.getMessage() for r in caplog.records)


async def test_the_final_charge_settles_the_budget_and_the_manifest_credits() -> None:
    async with running(manual=False, time_scale=0.001, final_charge_factor=0.5) as (sim, _):
        outcomes = await run_batch(sim.base_url, 3, budget=1000.0, key=sim.api_key)
    assert [PRICE / 2] * 3 == [o.credits for o in outcomes]
    assert round(PRICE / 2 * 3, 4) == round(sim.stats.credits_spent, 4)


async def test_a_charge_above_the_table_wins_and_is_learned_for_the_next_reservations() -> None:
    """Attack 5: a gateway charging more than the price table made the budget overshoot
    (budget 50, spent 2000): its final charges were never read, every reservation used the
    table's price. Now the first completion teaches the price and the budget stops there."""
    async with running(manual=False, time_scale=0.001, final_charge_factor=40.0) as (sim, _):
        client = EvolinkClient(sim.api_key, sim.base_url, rate=None, time_scale=0.001)
        async with client:
            batch = client.generate_many(
                [{"prompt": f"clip {i}", "duration": 4} for i in range(6)],
                budget=50.0,
                max_in_flight=1,
            )
            outcomes = [outcome async for outcome in batch]
            next_price = client.learned_prices.adjust("sora-2-preview", 4, {}, PRICE)
    statuses = [o.status for o in outcomes]
    assert (["completed"] + ["skipped"] * 5, 1) == (statuses, len(sim.tasks))
    assert (921.6, 921.6) == (round(outcomes[0].credits, 4), next_price)
    # spent by the service's own figures: one clip, the one in flight when it was learned
    assert 921.6 == round(sim.stats.credits_spent, 4)


def test_a_charge_at_the_create_above_the_table_is_learned_per_model_duration_quality() -> None:
    learned = LearnedPrices()
    learned.learn("veo-3.1-fast-generate-preview", 8, {"quality": "4k"}, 90.0)
    learned.learn("veo-3.1-fast-generate-preview", 8, {"quality": "4k"}, 60.0)  # lower: kept
    assert (90.0, 50.0, 90.0, 95.0) == (
        learned.adjust("veo-3.1-fast-generate-preview", 8, {"quality": "4k"}, 50.0),
        learned.adjust("veo-3.1-fast-generate-preview", 8, {"quality": "720p"}, 50.0),
        learned.adjust("veo-3.1-fast-generate-preview", 8, {"quality": "4k"}, None),
        learned.adjust("veo-3.1-fast-generate-preview", 8, {"quality": "4k"}, 95.0),
    )


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (Usage(credits_used=12.5, cost=UsageCost(credits=99.0)), 12.5),
        (Usage(cost=UsageCost(credits=7.0)), 7.0),
        (Usage(credits_used=-1.0, cost=UsageCost(credits=7.0)), 7.0),
        (Usage(credits_used=float("inf")), None),
        (Usage(credits_reserved=3.0), None),
        (None, None),
    ],
)
def test_the_final_charge_is_credits_used_else_cost_credits(
    usage: Usage | None, expected: float | None
) -> None:
    assert expected == final_charge(Task(id="task-unified-1-x", usage=usage))


def test_the_manifest_records_each_clips_final_charge_and_the_summary_their_sum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_prompts(tmp_path / "p.txt", [f"clip {i}: dunes" for i in range(3)])
    out = tmp_path / "clips"
    knobs = {"time_scale": TIME_SCALE, "api_key": CLI_KEY, "final_charge_factor": 0.5}
    with ThreadedSimulator(**knobs) as sim:
        argv = ["batch", str(source), "--out", str(out), "--duration", "4", "--rate", "500"]
        code = main([*argv, *service_args(sim)])
    manifest = read_manifest(out)
    assert (0, [11.52] * 3) == (code, [e["credits"] for e in manifest])
    assert "34.56" in capsys.readouterr().out
