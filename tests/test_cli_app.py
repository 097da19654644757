"""The command line's run (cli.app): a crash (SIGKILL) and Ctrl-C, once and twice, in a real
``python -m evolink_async batch`` process; the rerun resumes without paying twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from cli_support import (
    KEY,
    REPO,
    check_complete,
    fast_client_env,
    service_args,
    write_prompts,
)

from evolink_async.cli import app, main
from evolink_async.journal import replay
from evolink_async.testing import Simulator, ThreadedSimulator


def wait_for_records(journal: Path, event: str, count: int, proc: subprocess.Popen[str]) -> None:
    """Poll the journal until it has ``count`` records of ``event`` (bounded loop)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if journal.exists():
            lines = journal.read_text().splitlines()
            if sum(f'"event":"{event}"' in raw for raw in lines) >= count:
                return
        time.sleep(0.01)
    pytest.fail(f"no {count} {event!r} records in the journal within 30 s")


def start_batch(source: Path, out: Path, sim: Simulator, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "evolink_async", "batch", str(source), "--out", str(out)]
    return subprocess.Popen(
        [*argv, "--concurrency", "6", "--rate", "200", *service_args(sim), *extra],
        cwd=REPO,
        env=fast_client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_rerun_creates_no_prompt_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slow clips (about 0.3 to 1.5 s each), so that tasks are in flight when the kill comes.
    with ThreadedSimulator(time_scale=0.005, api_key=KEY, seed=9) as sim:
        prompts = [f"crash {i}: waves on a beach" for i in range(24)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        proc = start_batch(source, out, sim)
        try:
            wait_for_records(out / "journal.jsonl", "created", 4, proc)
            # Meanwhile, a second batch on the same directory is refused.
            assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
            assert "another evolink-async batch is running" in capsys.readouterr().err
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            assert proc.stdout is not None
            assert proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
        assert -signal.SIGKILL == proc.returncode
        at_kill = replay(out)
        intent_only = {n for n, s in at_kill.items() if s.phase == "intent"}
        running = {n: s.task_id for n, s in at_kill.items() if s.phase == "created"}
        assert running  # tasks were in flight at the kill: the rerun must re-attach them

        code = main(["batch", str(source), "--out", str(out), "--rate", "200", *service_args(sim)])

        manifest = check_complete(out, prompts)
        statuses = {e["line"]: e["status"] for e in manifest}
        # intent-only lines are sent again with their journaled key: completed, billed once
        assert all(at_kill[n].key is not None for n in intent_only)
        assert {"completed"} == set(statuses.values())
        assert 0 == code
        assert {1} == set(sim.stats.creates_per_prompt.values())
        assert running == {n: e["task_id"] for n, e in enumerate(manifest, 1) if n in running}
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err


def test_ctrl_c_writes_journal_and_manifest_exits_130_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    with ThreadedSimulator(time_scale=0.005, api_key=KEY, seed=4) as sim:
        prompts = [f"interrupt {i}: a train at night" for i in range(24)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        proc = start_batch(source, out, sim)
        wait_for_records(out / "journal.jsonl", "created", 4, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)

        assert 130 == proc.returncode, stderr
        assert "interrupted" in stderr
        assert "Batch interrupted:" in stdout
        assert KEY not in stdout + stderr
        manifest = check_complete(out, prompts)
        pending = [e for e in manifest if e["status"] != "completed"]
        assert pending
        assert {"interrupted"} == {e["error"]["code"] for e in pending}

        assert 0 == main(
            [
                "batch",
                str(source),
                "--out",
                str(out),
                "--rate",
                "200",
                "--quiet",
                *service_args(sim),
            ]
        )
        assert {"completed"} == {e["status"] for e in check_complete(out, prompts)}
        assert {1} == set(sim.stats.creates_per_prompt.values())


def test_a_second_ctrl_c_exits_at_once_and_leaves_a_readable_journal(tmp_path: Path) -> None:
    with ThreadedSimulator(time_scale=0.005, api_key=KEY, seed=6) as sim:
        prompts = [f"twice {i}" for i in range(24)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        proc = start_batch(source, out, sim)
        wait_for_records(out / "journal.jsonl", "created", 2, proc)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert 130 == proc.returncode
        replay(out)  # no JournalCorruptError
        assert 0 == main(
            [
                "batch",
                str(source),
                "--out",
                str(out),
                "--rate",
                "200",
                "--quiet",
                "--retry-unknown",
                *service_args(sim),
            ]
        )
        check_complete(out, prompts)
        assert max(sim.stats.creates_per_prompt.values()) <= 2


# ----------------------------------------------------------------------------- in-process


async def until_interrupted(interrupts: app.Interrupts) -> None:
    """Let the loop run the signal handler (bounded by the test timeout); the handler only
    counts, there is no event to wait on."""
    while interrupts.count == 0:  # noqa: ASYNC110
        await anyio.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("entered", [True, False], ids=["inside", "before-entering"])
def test_the_first_interrupt_cancels_the_command_s_scope(
    capsys: pytest.CaptureFixture[str], sig: signal.Signals, entered: bool
) -> None:
    async def command(interrupts: app.Interrupts) -> int:
        scope = interrupts.cancel_scope("stopping the test")
        if not entered:  # an interrupt before the scope is entered cancels it on entry
            os.kill(os.getpid(), sig)
            await until_interrupted(interrupts)
        with scope:
            if entered:
                os.kill(os.getpid(), sig)
            await anyio.sleep_forever()
        return app.EXIT_INTERRUPTED if scope.cancelled_caught else app.EXIT_OK

    assert 130 == app.run(command)
    assert "evolink-async: stopping the test\n" == capsys.readouterr().err


def test_the_first_interrupt_calls_on_first_once(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    async def command(interrupts: app.Interrupts) -> int:
        interrupts.on_first = lambda: calls.append("stop")
        os.kill(os.getpid(), signal.SIGTERM)
        await until_interrupted(interrupts)
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM is not a second Ctrl-C
        while interrupts.count < 2:  # noqa: ASYNC110 - as in until_interrupted
            await anyio.sleep(0.01)
        return app.EXIT_OK

    assert 0 == app.run(command)
    assert ["stop"] == calls
    assert (
        "evolink-async: interrupted: stopping (press Ctrl-C again to quit at once)\n"
        == capsys.readouterr().err
    )


def test_an_interrupted_simulate_batch_resumes_to_all_completed_with_no_task_not_found(
    tmp_path: Path,
) -> None:
    """``--simulate`` keeps its simulator's tasks in the output directory: the rerun's new
    embedded simulator knows the tasks the first one was running, and creates no prompt twice."""
    prompts = [f"demo {i}: a kite over a field" for i in range(16)]
    source = write_prompts(tmp_path / "p.txt", prompts)
    out = tmp_path / "clips"
    argv = [sys.executable, "-m", "evolink_async", "batch", str(source), "--out", str(out)]
    argv += ["--simulate", "--time-scale", "0.01", "--concurrency", "6"]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=fast_client_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    wait_for_records(out / "journal.jsonl", "created", 4, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert 130 == proc.returncode, stderr
    running = {n for n, s in replay(out).items() if s.phase == "created"}
    assert running  # the rerun has tasks of the first simulator to follow

    rerun = subprocess.run(
        [*argv, "--quiet"], cwd=REPO, env=fast_client_env(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip

    assert 0 == rerun.returncode, rerun.stderr
    manifest = check_complete(out, prompts)
    assert {"completed"} == {e["status"] for e in manifest}
    assert "task_not_found" not in (out / "journal.jsonl").read_text()
    kept = [json.loads(raw) for raw in (out / ".simulator.jsonl").read_text().splitlines()]
    created = [r["prompt"] for r in kept if "id" in r]
    assert sorted(prompts) == sorted(created)  # each prompt created once, over both runs
