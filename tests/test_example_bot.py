"""The example bot (``examples/bot.py``), run as its users would: 20 users on one client whose
concurrency cap keeps most of them queued; each sees its job queued (with its place in the
queue) -> processing with a progress in [0, 100] -> completed, by polling the app's GET
endpoint; the app shuts down without an unclosed session. Time is the simulator's (scaled)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web

BOT = Path(__file__).resolve().parents[1] / "examples" / "bot.py"
USERS = 20
CAP = 5
#: a "40-60 s" clip takes 0.4-0.6 real seconds; the service's queue is empty
SIMULATOR: dict[str, Any] = {
    "time_scale": 0.01,
    "seed": 3,
    "queue_delay": (0.0, 0.0),
    "generation_time": (40.0, 60.0),
}
RANK = {"queued": 0, "pending": 1, "processing": 2, "completed": 3}


def load_bot() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_bot", BOT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def a_user(session: aiohttp.ClientSession, base: str, n: int) -> list[dict[str, Any]]:
    """Post a job, then look at it (as a page refreshing itself) until it ended."""
    async with session.post(f"{base}/jobs", json={"prompt": f"user {n}: a paper boat"}) as r:
        assert 202 == r.status
        seen = [await r.json()]
    while seen[-1]["state"] in ("queued", "pending", "processing"):
        await asyncio.sleep(0.02)
        async with session.get(f"{base}/jobs/{seen[0]['id']}") as r:
            seen.append(await r.json())
    return seen


async def serve_users(**options: Any) -> list[list[dict[str, Any]]]:
    """Start the example bot (made with ``options``) on a free loopback port, run the users
    against it, stop it; nothing of it is left referenced afterwards."""
    runner = web.AppRunner(load_bot().make_app(SIMULATOR, **options))
    await runner.setup()  # the app's startup: its one client
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            users = [a_user(session, f"http://{host}:{port}", n) for n in range(USERS)]
            return await asyncio.gather(*users)
    finally:
        await runner.cleanup()  # the app's shutdown: the client closes


def check_user(seen: list[dict[str, Any]]) -> None:
    states = [s["state"] for s in seen]
    assert "queued" == states[0]
    assert isinstance(seen[0]["queue_position"], int)
    assert [RANK[s] for s in states] == sorted(RANK[s] for s in states)  # never back
    positions = [s["queue_position"] for s in seen if s["state"] == "queued"]
    assert positions == sorted(positions, reverse=True)  # the queue only moves forward
    running = [s for s in seen if s["state"] == "processing"]
    assert running, states
    assert all(s["progress"] is not None and 0 <= s["progress"] <= 100 for s in running)
    shown = [s["progress"] for s in seen if s["progress"] is not None]
    assert shown == sorted(shown)  # reads and estimates together only rise
    assert all(s["progress"] < 100 for s in seen if s["estimated"])
    assert ("completed", 100, False) == (states[-1], seen[-1]["progress"], seen[-1]["estimated"])
    assert seen[-1]["video_url"] is not None
    assert seen[-1]["error"] is None


async def test_twenty_users_on_one_client_see_queued_processing_completed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR):
        warnings.simplefilter("always")
        users = await serve_users(max_in_flight=CAP, rate=None)  # the example's own poll policy
        gc.collect()  # an unclosed session would say so now
        await asyncio.sleep(0)

    for seen in users:
        check_user(seen)
    # the cap kept users waiting: some were told they had others ahead of them
    assert max(seen[0]["queue_position"] for seen in users) >= USERS - 2 * CAP
    assert {str(n) for n in range(USERS)} == {seen[0]["id"] for seen in users}
    assert [] == [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert [] == [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]
