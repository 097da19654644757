"""Never pay twice, end to end: every create carries an idempotency key, an unknown outcome is
sent again with the same key, and the simulator's ledger of billed tasks says who paid what.

The matrix: {500, 502, 503, 520, 522, 524, dropped connection, timeout} after the service took
the create x {gateway honours keys, gateway ignores keys (idempotency=False)}. Every assertion
is on the simulator's counters, never on wall time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from evolink_async import EvolinkClient, Outcome, RetryPolicy
from evolink_async.testing import Simulator

TS = 0.001
FAULTS = ["500", "502", "503", "520", "522", "524", "drop", "timeout"]
N = 6


@asynccontextmanager
async def service(
    sim_knobs: dict[str, Any], **client_kw: Any
) -> AsyncIterator[tuple[Simulator, EvolinkClient]]:
    knobs: dict[str, Any] = {"time_scale": TS, "seed": 3, "slow_seconds": 1.0, **sim_knobs}
    client_kw.setdefault("rate", None)
    client_kw.setdefault("time_scale", TS)
    client_kw.setdefault("timeout", 0.25)  # a "timeout" fault answers after 1 s
    client_kw.setdefault("retry", RetryPolicy(attempts=4, wait_initial=0.0, wait_max=0.0))
    async with (
        Simulator(**knobs) as sim,
        EvolinkClient(sim.api_key, sim.base_url, **client_kw) as c,
    ):
        yield sim, c


def prompts(n: int = N) -> list[str]:
    return [f"prompt {i}" for i in range(n)]


async def run_batch(client: EvolinkClient, requests: list[str]) -> list[Outcome]:
    async with client.generate_many(requests) as batch:
        return [o async for o in batch]


@pytest.mark.parametrize("fault", FAULTS)
async def test_with_keys_honoured_every_prompt_completes_and_is_billed_exactly_once(
    fault: str,
) -> None:
    async with service({"create_fault": fault}) as (sim, client):
        outcomes = await run_batch(client, prompts())
    assert {"completed": N} == Counter(o.status for o in outcomes)
    assert dict.fromkeys(prompts(), 1) == dict(sim.stats.creates_per_prompt)
    assert (N, N) == (sim.stats.create_faults, sim.stats.replayed)


@pytest.mark.parametrize("fault", FAULTS)
async def test_with_keys_ignored_and_idempotency_off_no_prompt_is_billed_twice(
    fault: str,
) -> None:
    async with service({"create_fault": fault, "idempotency": False}, idempotency=False) as (
        sim,
        client,
    ):
        outcomes = await run_batch(client, prompts())
    assert {"unknown": N} == Counter(o.status for o in outcomes)
    assert dict.fromkeys(prompts(), 1) == dict(sim.stats.creates_per_prompt)
    assert all(o.error is not None and getattr(o.error, "maybe_created", False) for o in outcomes)


@pytest.mark.parametrize("fault", ["500", "524"])
async def test_attack_1_a_persistent_5xx_after_the_create_bills_one_task_per_prompt(
    fault: str,
) -> None:
    # Before: the transport retried a create on 500/502/503 and the dispatcher re-queued every
    # ServerError up to 50 times: one prompt, 255 billed tasks (a 524: 51).
    async with service({"create_fault": fault, "create_fault_limit": None}) as (sim, client):
        outcomes = await run_batch(client, prompts(2))
    assert {"unknown": 2} == Counter(o.status for o in outcomes)
    assert dict.fromkeys(prompts(2), 1) == dict(sim.stats.creates_per_prompt)


async def test_a_single_create_with_keys_survives_a_5xx_after_the_create() -> None:
    async with service({"create_fault": "502"}) as (sim, client):
        task = await client.create_video(prompt="one")
    assert (1, 1, [task.id]) == (
        sim.stats.creates_per_prompt["one"],
        sim.stats.replayed,
        list(sim.tasks),
    )


async def test_paid_outcome_unknown_is_waited_out_with_the_same_key() -> None:
    async with service({"create_fault": "500", "outcome_unknown_replays": 1}) as (sim, client):
        outcomes = await run_batch(client, prompts(3))
    assert {"completed": 3} == Counter(o.status for o in outcomes)
    assert dict.fromkeys(prompts(3), 1) == dict(sim.stats.creates_per_prompt)
