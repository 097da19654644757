"""Several OS processes on one API key share its limits through a real Redis (issue 14).

Each process runs tests/fleet_worker.py (``generate_many`` over its own prompts) against ONE
simulator served from a thread of the test process; the assertions read the simulator's own
counters and the Redis state. The same fleet without Redis is run as a contrast and printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_support import redis_server_fixture, redis_url_fixture

from evolink_async.testing import Simulator, ThreadedSimulator

__all__ = ["redis_server_fixture", "redis_url_fixture"]

WORKER = Path(__file__).with_name("fleet_worker.py")
PRICE = 23.04  # sora-2-preview, 4 s
R, C = 20, 4  # the key's rate (requests a second) and concurrency at the simulator
SHARED_RATE = 16.0  # the rate each process is given: at or below R


def start(sim: Simulator, tag: str, prompts: int, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), "--base-url", sim.base_url, "--api-key", sim.api_key]
    args += ["--tag", tag, "--prompts", str(prompts), "--concurrency", str(C), *extra]
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    env.pop("EVOLINK_REDIS_URL", None)
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=90)
    assert 0 == proc.returncode, err[-2000:]
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def fleet(sim: Simulator, n: int, prompts: int, *extra: str) -> list[dict[str, Any]]:
    procs = [start(sim, f"p{i}", prompts, *extra) for i in range(n)]
    return [finish(p) for p in procs]


def simulator(**knobs: Any) -> ThreadedSimulator:
    defaults: dict[str, Any] = {"time_scale": 0.002, "rate_limit": R, "per_task_clips": False}
    return ThreadedSimulator(**{**defaults, **knobs})


def figures(sim: Simulator, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    stats = sim.stats
    requests = sum(s["requests"] for s in summaries)
    return {
        "peak_active": stats.peak_active_tasks,
        "max_per_second": stats.max_requests_in_window(1.0),
        "rate_429s": len(stats.rate_throttles),
        "charged": round(stats.credits_reserved, 4),
        "completed": sum(s["statuses"].get("completed", 0) for s in summaries),
        "round_trips_per_request": round(sum(s["round_trips"] for s in summaries) / requests, 3),
    }


def test_four_processes_stay_within_the_keys_limits_together(redis_url: str) -> None:
    budget = 10 * PRICE
    limits = ["--rate", str(SHARED_RATE), "--budget", str(budget)]
    with simulator() as sim:
        shared = figures(sim, fleet(sim, 4, 6, *limits, "--redis", redis_url))
    with simulator() as sim:  # the contrast: each process believes it owns the key
        alone = figures(sim, fleet(sim, 4, 6, *limits))
    print(f"\nshared through Redis: {shared}\nwithout Redis:        {alone}")
    assert shared["peak_active"] <= C
    assert shared["max_per_second"] <= R + 1
    assert 0 == shared["rate_429s"]
    assert shared["charged"] <= budget + 1e-6
    assert 10 == shared["completed"]  # the budget pays for exactly ten clips, all made


def _owned(client: redis.Redis, name: str, pid: int) -> dict[str, float]:
    """Members of the hash ``name`` (lease or reservation ids) owned by process ``pid``."""
    items = client.hgetall(f"evolink:{{kill}}:{name}")  # {} while the hash does not exist
    return {k.decode(): 0.0 for k, v in items.items() if f":{pid}:" in v.decode()}


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def test_a_killed_process_gives_its_slots_back_and_keeps_its_credits_counted(
    redis_url: str,
) -> None:
    ttl = 2.0
    extra = ["--redis", redis_url, "--namespace", "kill", "--lease-ttl", str(ttl)]
    extra += ["--rate", str(SHARED_RATE), "--budget", str(1000 * PRICE)]
    client = redis.Redis.from_url(redis_url)
    with simulator() as sim:
        victim = start(sim, "victim", 12, *extra)
        others = [start(sim, f"p{i}", 4, *extra) for i in range(3)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # it holds credits and a slot (it reserves before it takes the slot)
            if _owned(client, "res_owners", victim.pid) and _owned(client, "owners", victim.pid):
                break
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)  # reaped, its pipes closed
        killed_at = _redis_now(client)
        held = _owned(client, "owners", victim.pid)
        summaries = [finish(p) for p in others]
    leases = client.zrange("evolink:{kill}:leases", 0, -1, withscores=True)
    victim_leases = [score for member, score in leases if f":{victim.pid}:" in member.decode()]
    # every lease it held expires within the lease time of its death
    assert all(score <= killed_at + ttl + 1e-3 for score in victim_leases)
    assert held  # it did hold slots when it died
    # the others finished everything
    assert [{"completed": 4}] * 3 == [s["statuses"] for s in summaries]
    # its reservations stay counted: the budget still holds exactly what they hold
    reservations = _owned(client, "res_owners", victim.pid)
    amounts = client.hgetall("evolink:{kill}:res")
    assert reservations
    assert set(reservations) == {k.decode() for k in amounts}
    reserved = float(client.hget("evolink:{kill}:budget", "reserved") or 0)
    assert round(sum(float(v) for v in amounts.values()), 6) == round(reserved, 6)
    client.close()


def test_one_process_429_pauses_every_process(redis_url: str) -> None:
    # a shared rate far above the key's: 429s come, each pausing the whole fleet
    extra = ["--redis", redis_url, "--namespace", "pause", "--rate", "30"]
    with simulator(rate_limit=5) as sim:
        fleet(sim, 3, 4, *extra)
        throttles = list(sim.stats.rate_throttles)
        times = list(sim.stats.request_times)
    assert throttles
    slack = 0.25  # requests already on the wire when the 429 was answered
    inside = [
        (t, retry_after, [r - t for r in times if t + slack < r < t + retry_after])
        for t, retry_after in throttles
    ]
    assert [] == [entry for entry in inside if entry[2]]


@pytest.mark.parametrize("flag", ["--redis"])
def test_the_worker_refuses_a_budget_other_than_the_namespaces(redis_url: str, flag: str) -> None:
    with simulator() as sim:
        first = start(sim, "a", 1, flag, redis_url, "--namespace", "b", "--budget", "100")
        finish(first)
        second = start(sim, "b", 1, flag, redis_url, "--namespace", "b", "--budget", "50")
        _out, err = second.communicate(timeout=60)
    assert 0 != second.returncode
    assert "already has a budget of 100 credits" in err
