"""The shared-job commands: batch --ledger postgresql://..., worker, job status|export|cancel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from test_ledger_worker import make_job

from evolink_async.batch.store import LedgerStore
from evolink_async.cli import main
from evolink_async.testing import Simulator

SCALE = "0.001"


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "evolink_async", *argv]


async def run_cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(cli(*argv), check=False)


async def test_batch_creates_the_job_and_a_worker_joins_it(tmp_path: Path, pg_url: str) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a clip {i}\n" for i in range(1, 13)))
    async with Simulator(time_scale=float(SCALE), seed=21) as sim:
        conn = ("--base-url", sim.base_url, "--api-key", sim.api_key, "--time-scale", SCALE)
        async with anyio.create_task_group() as tg:
            results: dict[str, subprocess.CompletedProcess[bytes]] = {}

            async def go(name: str, *argv: str) -> None:
                results[name] = await run_cli(*argv)

            batch_argv = ("batch", str(prompts), "--out", str(tmp_path / "a"), "--ledger", pg_url,
                          "--job", "clips", "--rate", "50", *conn)  # fmt: skip
            await go("batch", *batch_argv)  # creates the job, and works on it
            tg.start_soon(go, "again", *batch_argv)  # joins: the same prompts
            tg.start_soon(
                go, "worker", "worker", "--ledger", pg_url, "--job", "clips",
                "--out", str(tmp_path / "b"), *conn,
            )  # fmt: skip
        assert 12 == len(sim.tasks)  # each prompt created once
    assert [0, 0, 0] == [results[k].returncode for k in ("batch", "again", "worker")]
    assert b"12 lines" in results["batch"].stdout
    async with await LedgerStore.aopen(None, url=pg_url, job="clips") as store:
        assert {"downloaded"} == {s.phase for s in store.state.values()}
        assert 12 == len(store.state)


def test_job_status_export_and_cancel(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(make_job, pg_url, 5, "shared", 100.0)
    capsys.readouterr()
    assert 0 == main(["job", "export", "--ledger", pg_url, "--job", "shared"])
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [1, 2, 3, 4, 5] == [e["line"] for e in entries]
    assert {"skipped"} == {e["status"] for e in entries}
    assert "clip number 3" == entries[2]["prompt"]
    assert 0 == main(["job", "status", "--ledger", pg_url, "--job", "shared"])
    status = capsys.readouterr().out
    assert "job shared: 0/5 done" in status
    assert "pending         5" in status
    assert "budget 100" in status
    assert 0 == main(["job", "cancel", "--ledger", pg_url, "--job", "shared"])
    assert 0 == main(["job", "status", "--ledger", pg_url, "--job", "shared"])
    assert "(cancelled)" in capsys.readouterr().out


def test_job_needs_a_job_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert 2 == main(["job", "status", "--ledger", "postgresql://127.0.0.1:1/x"])
    assert "--job" in capsys.readouterr().err
