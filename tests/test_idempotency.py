"""Never pay twice, end to end: every create carries an idempotency key, an unknown outcome is
sent again with the same key, and the simulator's ledger of billed tasks says who paid what.

The matrix: {500, 502, 503, 520, 522, 524, dropped connection, timeout} after the service took
the create x {gateway honours keys, gateway ignores keys (idempotency=False)}. Every assertion
is on the simulator's counters, never on wall time.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from evolink_async import EvolinkClient, Outcome, RetryPolicy
from evolink_async.batch import MANIFEST_FILENAME, BatchJob, parse_prompts
from evolink_async.batch.journal import Journal
from evolink_async.cli import main as cli_main
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


@pytest.mark.parametrize("keys", [True, False], ids=["keys", "no-idempotency"])
@pytest.mark.parametrize("fault", ["500", "524"])
async def test_attack_1_a_persistent_5xx_after_the_create_bills_one_task_per_prompt(
    fault: str, keys: bool
) -> None:
    # Before: the transport retried a create on 500/502/503 and the dispatcher re-queued every
    # ServerError up to 50 times: one prompt, 255 billed tasks (a 524: 51).
    knobs = {"create_fault": fault, "create_fault_limit": None, "idempotency": keys}
    async with service(knobs, idempotency=keys) as (sim, client):
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


async def until(check: Callable[[], bool], *, attempts: int = 2000) -> None:
    """Yield to the loop until ``check()`` holds (bounded; no timing assertion)."""
    for _ in range(attempts):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


@pytest.mark.parametrize("max_in_flight", [1, 4])
async def test_attack_4_after_a_break_no_more_creates_than_were_in_flight(
    max_in_flight: int,
) -> None:
    # Before: `async for o in batch: break` kept creating (8 creates at the break, 29 three
    # seconds later) until garbage collection: the buffer of undelivered outcomes was 256.
    knobs = {"create_fault": None, "generation_time": (20.0, 60.0), "queue_delay": (0.0, 1.0)}
    async with service(knobs) as (sim, client):
        batch = client.generate_many(prompts(60), max_in_flight=max_in_flight)
        async for _ in batch:
            break
        at_break = len(sim.tasks)
        # everything in flight at the break ends (the simulator's clock drives it)
        await until(lambda: sim.active_tasks == 0 and batch.stats().in_flight == 0)
        await until(lambda: batch.stats().submitting == 0)
        created = len(sim.tasks)
        await batch.aclose()
    assert created - at_break <= max_in_flight
    assert created <= 2 * max_in_flight + 1


@pytest.mark.parametrize("journaled_key", [True, False], ids=["with-key", "older-journal"])
async def test_a_resumed_batch_sends_an_intent_only_line_again_with_its_journaled_key(
    tmp_path: Path, journaled_key: bool
) -> None:
    # A crashed run journaled line 1's intent, and the service took its create; no answer came.
    out = tmp_path / "clips"
    lines = parse_prompts(["one", "two"], fmt="txt")
    key = "evb_" + "1" * 40
    async with service({}) as (sim, client):
        task = await client.create_video(lines[0].request, idempotency_key=key)
        async with await Journal.aopen(out) as journal:
            await journal.intent(1, lines[0].fingerprint, key if journaled_key else None)
        await BatchJob(client, lines, out).run()
        replayed = sim.stats.replayed
    entries = [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]
    first = entries[0]
    if journaled_key:  # sent again with its key: the original task, no new charge
        assert ("completed", task.id, 1) == (first["status"], first["task_id"], replayed)
    else:  # no key to send it again with: reported, never resubmitted behind the user's back
        assert ("unknown", "maybe_created", 0) == (
            first["status"],
            first["error"]["code"],
            replayed,
        )
    assert "completed" == entries[1]["status"]
    assert {"one": 1, "two": 1} == dict(sim.stats.creates_per_prompt)


@pytest.mark.parametrize("flag", [[], ["--no-idempotency"]], ids=["keys", "no-idempotency"])
def test_the_batch_command_journals_each_intent_s_key_unless_told_not_to(
    tmp_path: Path, flag: list[str]
) -> None:
    source = tmp_path / "prompts.txt"
    source.write_text("a kite\na heron\n")
    out = tmp_path / "clips"
    code = cli_main(["batch", str(source), "--out", str(out), "--simulate", "--quiet", *flag])
    records = [json.loads(raw) for raw in (out / "journal.jsonl").read_text().splitlines()]
    intents = [r for r in records if r["event"] == "intent"]
    assert (0, 2) == (code, len(intents))
    if flag:
        assert ([], []) == (
            [r for r in records if r["event"] == "job"],
            [r for r in intents if "key" in r],
        )
    else:
        assert 1 == sum(r["event"] == "job" for r in records)
        assert all(r["key"].startswith("evb_") for r in intents)


async def test_without_keys_a_5xx_after_the_create_is_journaled_unknown_and_a_rerun_keeps_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts(["one", "two"], fmt="txt")
    knobs = {"create_fault": "524", "idempotency": False, "create_fault_limit": None}
    async with service(knobs, idempotency=False) as (sim, client):
        await BatchJob(client, lines, out).run()
        await BatchJob(client, lines, out).run()  # the rerun resubmits nothing
    entries = [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]
    assert [("unknown", "maybe_created")] * 2 == [
        (e["status"], e["error"]["code"]) for e in entries
    ]
    assert {"one": 1, "two": 1} == dict(sim.stats.creates_per_prompt)
