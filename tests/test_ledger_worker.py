"""Workers sharing one job in PostgreSQL (evolink_async.batch.worker) against one simulator."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from test_batch import TIME_SCALE, client_for

from evolink_async.batch import parse_prompts
from evolink_async.batch.claims import claim, job_counts
from evolink_async.batch.store import LedgerConfig, LedgerStore
from evolink_async.batch.worker import create_job, run_worker
from evolink_async.errors import JournalError
from evolink_async.testing import Simulator

#: the simulator's knob that makes it charge what make_job's price says (10 credits a clip,
#: where its price table says 23.04 for sora-2-preview's 4 s): the job's budget settles each
#: line on the service's final charge, so the two must agree for the counts to be exact
TEN_CREDITS = {"charge_factor": 10.0 / 23.04}


async def make_job(url: str, n: int, job: str = "shared", budget: float | None = None) -> None:
    lines = parse_prompts([f"clip number {i}" for i in range(1, n + 1)], fmt="txt")
    async with await LedgerStore.aopen(None, url=url, job=job) as store:
        await create_job(store, lines, lambda request: 10.0, budget)


async def test_two_workers_share_a_job_and_bill_each_prompt_once(
    tmp_path: Path, pg_url: str
) -> None:
    await make_job(pg_url, 40)
    config = LedgerConfig(url=pg_url, job="shared")
    reports = []
    async with Simulator(time_scale=TIME_SCALE, seed=11) as sim:

        async def one(name: str) -> None:
            async with client_for(sim) as client:
                reports.append(
                    await run_worker(
                        client, tmp_path / name, config, worker=name, group=4, idle=0.1
                    )
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "w1")
            tg.start_soon(one, "w2")
        prompts = collections.Counter(task.prompt for task in sim.tasks.values())
    assert 40 == len(prompts)
    assert {1} == set(prompts.values())  # no prompt billed twice
    worked = sorted(line for report in reports for line in report.lines)
    assert list(range(1, 41)) == worked  # each line worked by exactly one worker
    async with await LedgerStore.aopen(None, url=pg_url, job="shared") as store:
        assert {"downloaded"} == {s.phase for s in store.state.values()}
        paths = await store.engine.query("SELECT COUNT(DISTINCT path) FROM lines")
        counts = await job_counts(store)
    assert [(40,)] == paths
    assert {"downloaded": 40} == dict(counts.phases)
    assert all(len(list((tmp_path / r_name).glob("*.mp4"))) > 0 for r_name in ("w1", "w2"))


async def test_a_dead_worker_s_intent_is_resent_with_its_key(tmp_path: Path, pg_url: str) -> None:
    await make_job(pg_url, 3)
    lines = parse_prompts([f"clip number {i}" for i in range(1, 4)], fmt="txt")
    async with Simulator(time_scale=TIME_SCALE, seed=14) as sim, client_for(sim) as client:
        async with await LedgerStore.aopen(None, url=pg_url, job="shared") as store:
            # the dead worker claimed line 1, recorded its intent and its POST reached the
            # gateway; it died before the answer (and its lease has expired)
            await claim(store, "dead", limit=1, lease=0.0)
            await store.intent(1, lines[0].fingerprint, key="evb_dead_worker_key_1")
        first = await client.create_video(lines[0].request, idempotency_key="evb_dead_worker_key_1")
        report = await run_worker(client, tmp_path / "live", LedgerConfig(pg_url, "shared"))
        prompts = collections.Counter(task.prompt for task in sim.tasks.values())
    assert [1] == report.taken_over
    assert {"clip number 1": 1, "clip number 2": 1, "clip number 3": 1} == dict(prompts)
    async with await LedgerStore.aopen(None, url=pg_url, job="shared") as store:
        assert first.id == store.state[1].task_id  # the original task, not a second one
        assert "downloaded" == store.state[1].phase


async def test_joining_with_other_prompts_is_refused(pg_url: str) -> None:
    await make_job(pg_url, 3)
    with pytest.raises(JournalError, match="other prompts"):
        await make_job(pg_url, 4)
    await make_job(pg_url, 3)  # the same prompts: joins


async def test_the_budget_holds_across_workers(tmp_path: Path, pg_url: str) -> None:
    await make_job(pg_url, 12, budget=75.0)  # 7 lines of 10 credits
    config = LedgerConfig(url=pg_url, job="shared")
    async with Simulator(time_scale=TIME_SCALE, seed=12, **TEN_CREDITS) as sim:

        async def one(name: str) -> None:
            async with client_for(sim) as client:
                await run_worker(client, tmp_path / name, config, worker=name, group=2, idle=0.1)

        async with anyio.create_task_group() as tg:
            for name in ("w1", "w2", "w3"):
                tg.start_soon(one, name)
        created = len(sim.tasks)
    async with await LedgerStore.aopen(None, url=pg_url, job="shared") as store:
        counts = await job_counts(store)
    assert 7 == created
    # every clip completed: its reservation became its final charge
    assert (0.0, 70.0) == (counts.reserved, counts.charged)
    assert {"downloaded": 7, "pending": 5} == dict(counts.phases)


_WORKER = textwrap.dedent(
    """
    import sys, anyio
    from evolink_async import EvolinkClient
    from evolink_async.batch.store import LedgerConfig
    from evolink_async.batch.worker import run_worker

    async def main(base_url, key, url, out, name):
        async with EvolinkClient(key, base_url, rate=None, max_in_flight=8,
                                 time_scale=float(sys.argv[6])) as client:
            report = await run_worker(client, out, LedgerConfig(url, "shared"), worker=name,
                                      group=6, lease=1.0)
        print("taken_over", *report.taken_over, flush=True)

    anyio.run(main, *sys.argv[1:6])
    """
)


async def _held_created(url: str, worker: str) -> int:
    async with await LedgerStore.aopen(None, url=url, job="shared") as store:
        rows = await store.engine.query(
            "SELECT COUNT(*) FROM lines WHERE worker = ? AND phase IN ('intent', 'created')",
            (worker,),
        )
    return int(rows[0][0])


async def _until_holding(url: str, worker: str) -> None:
    """Poll the ledger (another process writes it) until ``worker`` holds a line in flight."""
    held = 0
    while held == 0:
        held = await _held_created(url, worker)
        await anyio.sleep(0.01)


async def kill_one_and_join_late(tmp_path: Path, pg_url: str, n: int, scale: float) -> None:
    """Three worker processes on one job of ``n`` prompts (the budget pays for ``n - 10``);
    one is SIGKILLed while it holds lines in flight, a fourth joins after: every prompt ends
    in exactly one final state, billed at most once (the simulator's ledger), the budget
    holds, and ``job export`` lists every line once."""
    paid = n - 10
    budget = 10.0 * paid + 9.0  # the 10-credit price: room for ``paid`` lines, not one more
    await make_job(pg_url, n, budget=budget)
    async with Simulator(time_scale=scale, seed=13, **TEN_CREDITS) as sim:

        async def start(name: str) -> anyio.abc.Process:
            return await anyio.open_process(
                [sys.executable, "-c", _WORKER, sim.base_url, sim.api_key, pg_url,
                 str(tmp_path / name), name, str(scale)],
                stdout=subprocess.PIPE,
            )  # fmt: skip

        victim = await start("victim")
        others = [await start("w1"), await start("w2")]
        with anyio.fail_after(60):
            await _until_holding(pg_url, "victim")
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        others.append(await start("late"))
        outputs = []
        with anyio.fail_after(100):
            for proc in others:
                await proc.wait()
                assert proc.stdout is not None
                outputs.append((await proc.stdout.receive()).decode())
                await proc.aclose()
        await victim.aclose()
        prompts = collections.Counter(task.prompt for task in sim.tasks.values())
    assert [0, 0, 0] == [proc.returncode for proc in others]
    assert {1} == set(prompts.values())  # billed at most once, per the simulator
    assert len(prompts) <= paid  # the job's budget held across the workers
    taken = [int(x) for out in outputs for x in out.split()[1:]]
    assert taken  # the victim's leased lines were taken over
    async with await LedgerStore.aopen(None, url=pg_url, job="shared") as store:
        state = store.state
        counts = await job_counts(store)
    assert budget >= counts.reserved + counts.charged
    export = await anyio.run_process(
        [sys.executable, "-m", "evolink_async", "job", "export", "--ledger", pg_url,
         "--job", "shared"]
    )  # fmt: skip
    lines = [json.loads(row)["line"] for row in export.stdout.decode().splitlines()]
    assert list(range(1, n + 1)) == lines  # every line once
    phases = collections.Counter(s.phase for s in state.values())
    # every line the budget paid for is downloaded, the victim's intent-only lines too: resent
    # with the idempotency key its intent recorded, the gateway answered with the first task
    assert {"downloaded": len(prompts)} == dict(phases)
    assert n == len(state) + counts.phases.get("pending", 0)  # no line lost
    assert paid == len(state)
    assert (0.0, 10.0 * paid) == (counts.reserved, counts.charged)


async def test_three_workers_one_sigkilled_and_a_fourth_joining_later_light(
    tmp_path: Path, pg_url: str
) -> None:
    """The soak below in small (the default suite's)."""
    await kill_one_and_join_late(tmp_path, pg_url, 60, 0.002)


@pytest.mark.soak
async def test_three_workers_one_sigkilled_and_a_fourth_joining_later(
    tmp_path: Path, pg_url: str
) -> None:
    await kill_one_and_join_late(tmp_path, pg_url, 300, 0.002)
