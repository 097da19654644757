"""A worker keeps several groups in flight on one output directory; its manifest lists every
line it finished; the job's credits end settled (final charges, refunds released); on the
embedded SQLite ledger and on PostgreSQL, against the simulator."""

from __future__ import annotations

import collections
import json
import socket
from pathlib import Path

import anyio
import pytest
from test_batch import client_for
from test_ledger_worker import TEN_CREDITS, make_job

from evolink_async.batch.claims import job_counts, set_budget
from evolink_async.batch.store import LEDGER_FILENAME, LedgerConfig, LedgerStore
from evolink_async.batch.worker import run_worker
from evolink_async.cli import main
from evolink_async.testing import Simulator

#: slow enough that a task outlives the claims of the next groups on a loaded machine
SCALE = 0.003


def where(ledger_url: str | None, out: Path) -> str:
    """The job's ledger: PostgreSQL, or the worker's embedded SQLite in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return ledger_url or f"sqlite:///{out / LEDGER_FILENAME}"


def manifest_lines(out: Path) -> list[int]:
    text = (out / "manifest.jsonl").read_text()
    return [json.loads(row)["line"] for row in text.splitlines()]


async def test_one_worker_keeps_several_groups_in_flight(
    tmp_path: Path, ledger_url: str | None
) -> None:
    out = tmp_path / "w"
    url = where(ledger_url, out)
    await make_job(url, 24)
    config = LedgerConfig(url=ledger_url, job="shared")
    async with Simulator(time_scale=SCALE, seed=31) as sim:
        async with client_for(sim, time_scale=SCALE) as client:
            report = await run_worker(client, out, config, worker="w", group=2, concurrency=6)
        peak = sim.stats.peak_active_tasks
        prompts = collections.Counter(task.prompt for task in sim.tasks.values())
    assert 2 < peak <= 6 + 1  # groups of 2 overlap; at most concurrency + group - 1 lines open
    assert 12 <= report.groups  # groups of 2 (or fewer)
    assert list(range(1, 25)) == sorted(report.lines)
    assert {1} == set(prompts.values())
    assert 24 == len(prompts)
    # the manifest lists every line the worker finished, once, not only its last group's
    assert list(range(1, 25)) == manifest_lines(out)
    assert 24 == len(list(out.glob("*.mp4")))


async def test_each_worker_s_manifest_and_the_export_list_every_line_once(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_job(pg_url, 30)
    config = LedgerConfig(url=pg_url, job="shared")
    reports = {}
    async with Simulator(time_scale=SCALE, seed=32) as sim:

        async def one(name: str) -> None:
            async with client_for(sim, time_scale=SCALE) as client:
                reports[name] = await run_worker(
                    client, tmp_path / name, config, worker=name, group=3, concurrency=6, idle=0.1
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "a")
            tg.start_soon(one, "b")
    for name, report in reports.items():
        assert sorted(report.lines) == manifest_lines(tmp_path / name)
    assert list(range(1, 31)) == sorted(reports["a"].lines + reports["b"].lines)
    capsys.readouterr()
    assert 0 == await anyio.to_thread.run_sync(
        main, ["job", "export", "--ledger", pg_url, "--job", "shared"]
    )
    entries = [json.loads(row) for row in capsys.readouterr().out.splitlines()]
    assert list(range(1, 31)) == [e["line"] for e in entries]  # every line, once, in order
    assert {"completed"} == {e["status"] for e in entries}
    # where each worker put its clip, on this host
    assert all(e["path"].startswith(str(tmp_path / e["path"].split("/")[-2])) for e in entries)
    assert {str(tmp_path / "a"), str(tmp_path / "b")} == {
        str(Path(e["path"]).parent) for e in entries
    }
    assert {socket.gethostname()} == {e["host"] for e in entries}


async def test_the_job_s_credits_end_settled(
    tmp_path: Path, ledger_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Completed lines are charged the service's final figure; failed and cancelled ones
    were refunded and hold nothing; the budget pays for more lines as credits come back."""
    out = tmp_path / "w"
    url = where(ledger_url, out)
    await make_job(url, 30, budget=200.0)  # 20 lines at the 10-credit price
    config = LedgerConfig(url=ledger_url, job="shared")
    knobs = {**TEN_CREDITS, "final_charge_factor": 0.5, "fatal_failure_rate": 0.3}
    async with Simulator(time_scale=0.001, seed=33, cancel_rate=0.1, **knobs) as sim:
        async with client_for(sim) as client:
            await run_worker(client, out, config, worker="w", group=4, concurrency=8)
        completed = [t for t in sim.tasks.values() if t.error_code is None]
        spent = sim.stats.credits_spent
        created = len(sim.tasks)
    async with await LedgerStore.aopen(None, url=url, job="shared") as store:
        counts = await job_counts(store)
        phases = collections.Counter(s.status for s in store.state.values())
    assert completed  # both kinds of end happened
    assert phases["failed"]
    assert 0.0 == counts.reserved  # every line ended: nothing held
    assert pytest.approx(spent) == counts.charged == 5.0 * len(completed)  # half of 10
    # refunds and cheaper final charges paid for more than the 20 lines the price allows
    assert created > 20
    assert counts.charged <= 200.0
    capsys.readouterr()
    args = ["job", "status", "--ledger", url, "--job", "shared"]
    assert 0 == await anyio.to_thread.run_sync(main, args)
    shown = capsys.readouterr().out
    assert f"credits: reserved 0, charged {counts.charged:g}, budget 200" in shown


async def test_a_worker_run_again_on_its_directory_keeps_the_earlier_lines(
    tmp_path: Path, ledger_url: str | None
) -> None:
    out = tmp_path / "w"
    url = where(ledger_url, out)
    await make_job(url, 6, budget=30.0)  # 3 lines now
    config = LedgerConfig(url=ledger_url, job="shared")
    async with (
        Simulator(time_scale=0.001, seed=34, **TEN_CREDITS) as sim,
        client_for(sim) as client,
    ):
        first = await run_worker(client, out, config, worker="w", group=2)
        async with await LedgerStore.aopen(None, url=url, job="shared") as store:
            await set_budget(store, 60.0)  # the other 3 lines
        second = await run_worker(client, out, config, worker="w", group=2)
    assert [1, 2, 3] == sorted(first.lines)
    assert [4, 5, 6] == sorted(second.lines)
    assert list(range(1, 7)) == manifest_lines(out)
