"""The simulator's key ledger (testing/_creates.py): replays, conflicts, the knob that turns
keys off, and the after-create faults, seen with plain aiohttp (no SDK)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_simulator_support import Api, Reply, running

KEY_A = "run_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
KEY_B = "run_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


async def create(api: Api, key: str | None, prompt: str = "A cat playing piano") -> Reply:
    headers = {"Idempotency-Key": key, "X-Evo-Run-Id": key} if key is not None else {}
    body = {"prompt": prompt}
    return await api.request("POST", "/v1/videos/generations", json=body, headers=headers)


async def test_the_same_key_and_body_replays_the_original_answer_without_a_new_task() -> None:
    async with running() as (sim, api):
        first = await create(api, KEY_A)
        again = await create(api, KEY_A)
    assert (200, 200) == (first.status, again.status)
    assert first.body == again.body
    assert ("true", None) == (
        again.headers.get("Idempotency-Replayed"),
        first.headers.get("Idempotency-Replayed"),
    )
    assert ({"A cat playing piano": 1}, 1, 1) == (
        dict(sim.stats.creates_per_prompt),
        len(sim.tasks),
        sim.stats.replayed,
    )


async def test_the_same_key_with_another_body_is_an_idempotency_conflict() -> None:
    async with running() as (sim, api):
        await create(api, KEY_A, "first")
        other = await create(api, KEY_A, "second")
    assert (409, "idempotency_conflict") == (other.status, other.body["error"]["code"])
    assert ({"first": 1}, 1) == (
        dict(sim.stats.creates_per_prompt),
        sim.stats.idempotency_conflicts,
    )


async def test_two_keys_are_two_tasks() -> None:
    async with running() as (sim, api):
        a, b = await create(api, KEY_A), await create(api, KEY_B)
    assert a.body["id"] != b.body["id"]
    assert {"A cat playing piano": 2} == dict(sim.stats.creates_per_prompt)


async def test_with_keys_turned_off_the_header_is_ignored_and_every_create_bills() -> None:
    async with running(idempotency=False) as (sim, api):
        a, b = await create(api, KEY_A), await create(api, KEY_A)
    assert a.body["id"] != b.body["id"]
    assert None is b.headers.get("Idempotency-Replayed")
    assert {"A cat playing piano": 2} == dict(sim.stats.creates_per_prompt)


@pytest.mark.parametrize("key", ["short", "x" * 97, "has space 0123456789"])
async def test_a_malformed_key_is_refused_and_nothing_is_created(key: str) -> None:
    async with running() as (sim, api):
        reply = await create(api, key)
    assert (400, "Idempotency-Key", 0) == (
        reply.status,
        reply.body["error"]["param"],
        len(sim.tasks),
    )


async def test_paid_outcome_unknown_answers_the_first_repeats_then_the_original() -> None:
    async with running(outcome_unknown_replays=2) as (sim, api):
        first = await create(api, KEY_A)
        replies = [await create(api, KEY_A) for _ in range(3)]
    codes = [r.body["error"]["code"] if r.status != 200 else r.body["id"] for r in replies]
    assert ["paid_outcome_unknown", "paid_outcome_unknown", first.body["id"]] == codes
    assert 1 == len(sim.tasks)


@pytest.mark.parametrize("status", [500, 502, 503, 520, 522, 524])
async def test_a_create_fault_answers_a_5xx_after_the_task_was_created(status: int) -> None:
    async with running(create_fault=str(status)) as (sim, api):
        faulted = await create(api, KEY_A)
        replayed = await create(api, KEY_A)
    assert (status, 200, "true") == (
        faulted.status,
        replayed.status,
        replayed.headers.get("Idempotency-Replayed"),
    )
    assert ({"A cat playing piano": 1}, 1) == (
        dict(sim.stats.creates_per_prompt),
        sim.stats.create_faults,
    )


async def test_a_drop_fault_cuts_the_connection_after_the_task_was_created() -> None:
    async with running(create_fault="drop") as (sim, api):
        with pytest.raises(aiohttp.ClientError):
            await create(api, KEY_A)
        replayed = await create(api, KEY_A)
    assert (200, 1) == (replayed.status, len(sim.tasks))


@pytest.mark.parametrize(("limit", "faulted"), [(1, 1), (2, 2), (None, 3)])
async def test_the_fault_limit_counts_faulted_answers_per_prompt(
    limit: int | None, faulted: int
) -> None:
    knobs: dict[str, Any] = {"create_fault": "500", "create_fault_limit": limit}
    async with running(**knobs) as (sim, api):
        statuses = [(await create(api, KEY_A)).status for _ in range(3)]
    assert [500] * faulted + [200] * (3 - faulted) == statuses
    assert 1 == len(sim.tasks)


async def test_a_simulator_on_the_same_state_file_knows_the_earlier_one_s_keys(
    tmp_path: Path,
) -> None:
    state = tmp_path / ".simulator.jsonl"
    async with running(state_path=state) as (_, api):
        first = await create(api, KEY_A)
    async with running(state_path=state) as (sim, api):
        again = await create(api, KEY_A)
        other = await create(api, KEY_A, "another prompt")
    assert (first.body["id"], "true") == (again.body["id"], again.headers["Idempotency-Replayed"])
    # the earlier task, restored, is the only one: nothing billed again
    assert (409, {"A cat playing piano": 1}) == (other.status, dict(sim.stats.creates_per_prompt))
