"""Reliability under faults: a fault soak of the batch job against the simulator, a crash soak
(SIGKILL at seeded random moments, resumed each time), and the output directory's lock.

Issue 8's promises: nothing lost, no credit paid twice, ghosts reported ``unknown``, the budget
held, no exception or warning escaping. The soak's measured figures are written to
``soak-figures.json`` under the test's tmp dir and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from mp4_support import served_clip

from evolink_async import EvolinkClient, RetryEvent, RetryPolicy
from evolink_async.batch import MANIFEST_FILENAME, BatchJob, parse_prompts, video_filename
from evolink_async.errors import ServerError
from evolink_async.journal import JOURNAL_FILENAME, replay
from evolink_async.models import FATAL_TASK_ERROR_CODES, RETRYABLE_TASK_ERROR_CODES
from evolink_async.testing import Simulator, ThreadedSimulator
from evolink_async.testing._stats import DROPPED

REPO = Path(__file__).resolve().parent.parent
PRICE = 23.04  # sora-2-preview, 4 s: every prompt of these tests
KEY = "sk-evo-reliability-SECRET-5f2c9a"
API_ENDPOINTS = ("create", "get_task", "credits")

# ----------------------------------------------------------------------------- fault soak

SOAK_PROMPTS = 500
SOAK_BUDGET = 480 * PRICE  # binds: ~1 in 25 prompts cannot be paid for
REQUEST_TIMEOUT = 0.5  # the client's per-request timeout (real s)
SLOW_SECONDS = 0.8  # a "slow" answer comes after this (real s): beyond the timeout


def read_manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]


def html_or_json(event: RetryEvent) -> str | None:
    """How a retried 5xx answer looked: a JSON error body, an HTML page or an empty body."""
    err = event.error
    if not isinstance(err, ServerError):
        return None
    if err.type is not None:
        return "json"
    return "empty" if err.message == "(empty body)" else "html"


def asyncio_trouble(records: list[logging.LogRecord]) -> list[str]:
    """Log records that mean something escaped: errors, unclosed sessions, destroyed tasks."""
    bad = ("Unclosed", "Task was destroyed", "never retrieved", "internal error")
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR or any(b in r.getMessage() for b in bad)
    ]


@pytest.mark.soak
async def test_fault_soak_of_500_prompts_loses_nothing_and_pays_no_prompt_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    prompts = [f"soak {i:03d}: a paper lantern drifting over a lake" for i in range(SOAK_PROMPTS)]
    lines = parse_prompts(prompts, fmt="txt")
    out = tmp_path / "clips"
    retries: Counter[str] = Counter()

    def on_retry(event: RetryEvent) -> None:
        retries[type(event.error).__name__] += 1
        kind = html_or_json(event)
        if kind is not None:
            retries[f"5xx-{kind}"] += 1

    started = time.monotonic()
    async with Simulator(
        time_scale=0.001,
        seed=2024,
        api_key=KEY,
        error_5xx_rate=0.05,
        html_error_fraction=0.5,
        slow_rate=0.02,
        slow_seconds=SLOW_SECONDS,
        ghost_rate=0.01,
        retryable_failure_rate=0.05,
        fatal_failure_rate=0.05,
        rate_limit=100,  # requests a second: below the client's 250/s
        max_concurrent=24,  # below the client's 32 in flight
        download_fail_rate=0.10,
    ) as sim:
        async with EvolinkClient(
            KEY,
            sim.base_url,
            rate=250,
            burst=25,
            max_in_flight=32,
            timeout=REQUEST_TIMEOUT,
            retry=RetryPolicy(attempts=5, wait_initial=0.02, wait_max=0.2, max_retry_after=5),
            time_scale=0.001,
        ) as client:
            client.add_retry_listener(on_retry)
            job = BatchJob(
                client,
                lines,
                out,
                budget=SOAK_BUDGET,
                max_attempts=3,
                task_timeout=60.0,
                download_concurrency=8,
            )
            summary = await job.run()
        stats = sim.stats
        tasks = list(sim.tasks.values())  # in creation order
    elapsed = time.monotonic() - started
    gc.collect()  # an unclosed session or a pending task would complain now

    manifest = read_manifest(out)
    by_prompt = {e["prompt"]: e for e in manifest}

    # every prompt has exactly one manifest line, in input order
    assert list(range(1, SOAK_PROMPTS + 1)) == [e["line"] for e in manifest]
    assert prompts == [e["prompt"] for e in manifest]

    # completed ones have their file, of the served size
    completed = [e for e in manifest if e["status"] == "completed"]
    lost = [
        e["line"]
        for e in completed
        if e["video"] is None
        or e["video"] != video_filename(e["line"], e["task_id"])
        or (data := (out / e["video"]).read_bytes()) != served_clip(e["task_id"], data)
    ]
    # and every task the service completed for a line the batch knows about is that line's clip
    known = {e["task_id"] for e in manifest if e["task_id"] is not None}
    lost += [
        by_prompt[t.prompt]["line"]
        for t in tasks
        if t.id in known and t.error_code is None and by_prompt[t.prompt]["status"] != "completed"
    ]
    assert [] == lost

    # no prompt created twice, except to retry a retryable task failure
    sim_tasks: dict[str, list[Any]] = {}
    for t in tasks:
        sim_tasks.setdefault(t.prompt, []).append(t)
    duplicates = [
        p
        for p, ts in sim_tasks.items()
        if any(t.error_code not in RETRYABLE_TASK_ERROR_CODES for t in ts[:-1])
    ]
    assert [] == duplicates
    assert [] == [
        e["line"] for e in manifest if stats.creates_per_prompt[e["prompt"]] > e["attempts"]
    ]
    assert max(stats.creates_per_prompt.values()) <= 3

    # ghost and slow creates are sent again with their key: the gateway replays the task
    ghost_or_slow = set(stats.ghost_task_ids) | set(stats.slow_task_ids)
    maybe = {sim.tasks[i].prompt for i in ghost_or_slow}
    assert maybe  # the seed injects some
    assert "unknown" not in {by_prompt[p]["status"] for p in maybe}
    assert stats.replayed >= len(ghost_or_slow)
    assert [] == [e["line"] for e in manifest if e["status"] == "unknown"]

    # failed lines carry the task's own error code
    failed = [e for e in manifest if e["status"] == "failed"]
    codes = FATAL_TASK_ERROR_CODES | RETRYABLE_TASK_ERROR_CODES
    assert {e["error"]["code"] for e in failed} <= codes
    for e in failed:
        assert sim.tasks[e["task_id"]].error_code == e["error"]["code"]
        if e["error"]["code"] in RETRYABLE_TASK_ERROR_CODES:
            assert 3 == e["attempts"]

    # the budget held: at the service, and as the batch counts it
    skipped = [e for e in manifest if e["status"] == "skipped"]
    assert {"budget_exceeded"} >= {e["error"]["code"] for e in skipped}
    held = sum(e["credits"] for e in manifest if e["status"] in ("completed", "unknown"))
    assert held <= SOAK_BUDGET + 1e-6
    assert stats.credits_spent <= SOAK_BUDGET + 1e-6

    # no exception escaped, nothing left running, nothing logged as an error
    assert [] == asyncio_trouble(caplog.records)
    assert summary.total == SOAK_PROMPTS
    assert summary.completed == len(completed) == summary.downloaded

    faults = {
        "5xx": sum(stats.count(e, s) for e in API_ENDPOINTS for s in (502, 503)),
        "5xx_retried_html": retries["5xx-html"],
        "5xx_retried_empty": retries["5xx-empty"],
        "5xx_retried_json": retries["5xx-json"],
        "slow_creates": len(stats.slow_task_ids),
        "timeouts_retried": retries["APITimeoutError"],
        "dropped_connections": sum(stats.count(e, DROPPED) for e in API_ENDPOINTS),
        "ghost_creates": len(stats.ghost_task_ids),
        "task_failures_retryable": sum(t.error_code in RETRYABLE_TASK_ERROR_CODES for t in tasks),
        "task_failures_fatal": sum(t.error_code in FATAL_TASK_ERROR_CODES for t in tasks),
        "rate_limited_429": stats.rate_limited,
        "first_downloads_failed": sum(
            t.download_fault is not None and t.downloads > 0 for t in tasks
        ),
    }
    figures = {
        "prompts": SOAK_PROMPTS,
        "faults": faults,
        "outcomes": summary.counts,
        "creates": len(tasks),
        "api_requests": summary.requests,
        "results_lost": len(lost),
        "duplicates": len(duplicates),
        "credits_held": round(held, 2),
        "budget": round(SOAK_BUDGET, 2),
        "seconds": round(elapsed, 1),
    }
    (tmp_path / "soak-figures.json").write_text(json.dumps(figures, indent=2))
    print("\nfault soak:", json.dumps(figures))
    for kind in ("5xx", "ghost_creates", "slow_creates", "first_downloads_failed"):
        assert faults[kind] > 0, kind
    assert faults["rate_limited_429"] > 0
    assert faults["task_failures_retryable"] > 0
    assert faults["task_failures_fatal"] > 0


# ----------------------------------------------------------------------------- crash soak

CRASH_PROMPTS = 60
CRASH_KILLS = 5
CRASH_SEED = 20240808


CRASH_BUDGET = (CRASH_PROMPTS - 6) * PRICE + 1  # pays for all but six prompts


@pytest.fixture
def crash_sim() -> Iterator[Simulator]:
    # Clips take 0.3 to 1.5 real seconds, so that tasks are in flight at every kill. A fifth of
    # the creates are taken and then answered 502 (once per prompt), 2% of requests dropped.
    with ThreadedSimulator(
        time_scale=0.005,
        api_key=KEY,
        seed=31,
        create_fault="502",
        create_fault_rate=0.2,
        ghost_rate=0.02,
    ) as sim:
        yield sim


def batch_argv(source: Path, out: Path, sim: Simulator) -> list[str]:
    return [
        sys.executable,
        "-m",
        "evolink_async",
        "batch",
        str(source),
        "--out",
        str(out),
        "--concurrency",
        "8",
        "--rate",
        "200",
        "--quiet",
        "--base-url",
        sim.base_url,
        "--api-key",
        KEY,
        "--time-scale",
        str(sim.config.time_scale),
    ]


class BatchProcess:
    """``python -m evolink_async batch ...`` with its output in files (no pipe to drain)."""

    def __init__(self, argv: list[str], logs: Path, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOLINK_")}
        self.stdout_path = logs / f"{name}.out"
        self.stderr_path = logs / f"{name}.err"
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=stdout, stderr=stderr, text=True
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()


def journal_records(out: Path) -> int:
    path = out / JOURNAL_FILENAME
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


def wait_for_journal(out: Path, records: int, proc: BatchProcess, limit: float = 30.0) -> bool:
    """Poll until the journal has ``records`` lines (True) or the process ended (False)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if journal_records(out) >= records:
            return True
        if proc.proc.poll() is not None:
            return False
        time.sleep(0.005)
    pytest.fail(f"the journal did not reach {records} records within {limit} s: {proc.output}")


def test_crash_soak_five_sigkills_then_resume_gives_a_complete_manifest_and_no_double_create(
    crash_sim: Simulator, tmp_path: Path
) -> None:
    """Five SIGKILLs at random points with faults on (creates taken then answered 502, dropped
    connections), then a final run: every prompt billed at most once (the simulator's ledger),
    none ``unknown`` (intent-only lines are sent again with their journaled key), and the
    budget never exceeded by the sum of the service's own figures."""
    sim = crash_sim
    rng = random.Random(CRASH_SEED)
    prompts = [f"crash {i:02d}: a heron taking off at dawn" for i in range(CRASH_PROMPTS)]
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "clips"
    argv = [*batch_argv(source, out, sim), "--budget", str(CRASH_BUDGET)]

    kills = 0
    maybe_sent: set[int] = set()  # lines with an intent and no created record at some kill
    for run in range(CRASH_KILLS):
        proc = BatchProcess(argv, tmp_path, f"run{run}")
        target = journal_records(out) + rng.randint(4, 30)
        try:
            reached = wait_for_journal(out, target, proc)
        finally:
            proc.kill()
        assert KEY not in proc.output
        kills += reached
        at_kill = replay(out)  # never corrupt, whatever the moment
        maybe_sent |= {n for n, s in at_kill.items() if s.phase == "intent"}
    assert CRASH_KILLS == kills  # every run was killed mid-way, none finished by itself
    assert maybe_sent  # some kills caught creates on the wire

    final = BatchProcess(argv, tmp_path, "final")
    code = final.wait()
    assert KEY not in final.output
    state = replay(out)
    manifest = read_manifest(out)

    # the manifest is complete: one line per prompt, in order; none unknown
    assert list(range(1, CRASH_PROMPTS + 1)) == [e["line"] for e in manifest]
    assert prompts == [e["prompt"] for e in manifest]
    statuses = Counter(e["status"] for e in manifest)
    assert set(statuses) <= {"completed", "skipped"}, statuses
    for e in manifest:
        if e["status"] == "completed":
            data = (out / e["video"]).read_bytes()
            assert served_clip(e["task_id"], data) == data
        else:
            assert "budget_exceeded" == e["error"]["code"]
    assert (1 if statuses["skipped"] else 0) == code

    # the simulator billed no prompt twice, and never more than the budget
    assert {} == {p: n for p, n in sim.stats.creates_per_prompt.items() if n > 1}
    assert sim.stats.credits_reserved <= CRASH_BUDGET
    journaled = {s.task_id for s in state.values() if s.task_id is not None}
    assert set(sim.tasks) <= journaled  # every task the service created is some line's
    assert sim.stats.create_faults > 0
    leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith((".tmp", ".part")))
    assert [] == leftovers
    print(
        f"\ncrash soak: {kills} SIGKILLs, {CRASH_PROMPTS} prompts, {len(sim.tasks)} creates, "
        f"{sim.stats.create_faults} creates answered 502, {sim.stats.replayed} replays, "
        f"{len(maybe_sent)} lines intent-only at a kill, {dict(statuses)}, "
        f"credits {sim.stats.credits_reserved:.2f} of {CRASH_BUDGET:.2f}, 0 created twice"
    )


BUDGET_PROMPTS = 12
BUDGET_IN_FLIGHT = 8  # batch_argv's --concurrency
BUDGET_CLIPS = 10
BUDGET = BUDGET_CLIPS * PRICE + 1  # pays for ten clips, not eleven


@pytest.mark.parametrize("keys", [True, False], ids=["keys", "no-idempotency"])
def test_a_rerun_after_a_sigkill_counts_intent_only_lines_as_spent_and_keeps_its_budget(
    tmp_path: Path, keys: bool
) -> None:
    """Issue 11 / issue 12 attack 3: a batch killed while creates are in flight (intent
    journaled, no answer) is rerun with the same budget. With keys, the intent-only lines are
    sent again with their journaled key first: the gateway answers with the original tasks (no
    new charge) and they complete. Without keys they count as spent at their price and are
    reported. Either way the rerun reserves only what is left and the service never creates
    more than the budget pays for."""
    prompts = [f"budget {i:02d}: a kite over the dunes" for i in range(BUDGET_PROMPTS)]
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "clips"
    # every answer comes after 30 real seconds: the creates stay in flight until the kill
    with ThreadedSimulator(
        time_scale=0.005, api_key=KEY, seed=11, slow_rate=1.0, slow_seconds=30, idempotency=keys
    ) as sim:
        # --allow-partial: no credits check first (it would wait for the slow service too)
        argv = [*batch_argv(source, out, sim), "--budget", str(BUDGET), "--allow-partial"]
        argv += [] if keys else ["--no-idempotency"]
        first = BatchProcess(argv, tmp_path, "first")
        try:
            assert wait_for_journal(out, BUDGET_IN_FLIGHT + keys, first)  # + the seed record
        finally:
            first.kill()
        at_kill = replay(out)
        created_before = len(sim.tasks)
        sim.config = attrs.evolve(sim.config, slow_rate=0.0)  # the service answers again
        rerun = BatchProcess(argv, tmp_path, "rerun")
        code = rerun.wait()
        tasks_per_prompt = Counter(t.prompt for t in sim.tasks.values())
        replayed = sim.stats.replayed
    assert KEY not in first.output + rerun.output
    intent_only = {n for n, s in at_kill.items() if s.phase == "intent"}
    assert BUDGET_IN_FLIGHT == len(intent_only)
    assert created_before <= BUDGET_IN_FLIGHT
    assert keys == all(at_kill[n].key is not None for n in intent_only)
    # with keys, every task the first process created (counted at the kill, or created later
    # from a request still in the server's hands) is replayed to the rerun, not made again
    assert (replayed >= created_before) if keys else (replayed == 0)
    manifest = read_manifest(out)
    assert list(range(1, BUDGET_PROMPTS + 1)) == [e["line"] for e in manifest]

    by_line = {e["line"]: (e["status"], (e["error"] or {}).get("code")) for e in manifest}
    if keys:  # sent again with their key: the original tasks, completed
        assert {n: ("completed", None) for n in intent_only} == {n: by_line[n] for n in intent_only}
    else:  # reported, not resubmitted
        assert {n: ("unknown", "maybe_created") for n in intent_only} == {
            n: by_line[n] for n in intent_only
        }
    # the rerun counted them as spent: the budget left room for two more clips only
    rest = [e for e in manifest if e["line"] not in intent_only]
    assert Counter({"completed": 2, "skipped": 2}) == Counter(e["status"] for e in rest)
    assert {"budget_exceeded"} == {e["error"]["code"] for e in rest if e["status"] == "skipped"}
    assert 1 == code
    # one task per line at most, never more than the budget pays for: with keys, one for each
    # resent line (its original task, or a new one if its create never reached the service);
    # two for new lines
    prompt_of = {i + 1: p for i, p in enumerate(prompts)}
    assert {1} == set(tasks_per_prompt.values())
    assert 2 == sum(
        n for p, n in tasks_per_prompt.items() if p not in {prompt_of[k] for k in intent_only}
    )
    if keys:
        assert intent_only == {k for k in intent_only if tasks_per_prompt[prompt_of[k]] == 1}
    assert sum(tasks_per_prompt.values()) * PRICE <= BUDGET
    assert sim.stats.credits_reserved <= BUDGET
    assert {} == {p: n for p, n in sim.stats.creates_per_prompt.items() if n > 1}


async def test_a_rerun_removes_the_partial_downloads_a_killed_run_left_and_nothing_else(
    tmp_path: Path,
) -> None:
    out = tmp_path / "clips"
    out.mkdir()
    stale = [".00001-task-unified-1-abcdefgh.mp4.0a1b2c3d.part", ".manifest.jsonl.77.tmp"]
    kept = [".notes.0a1b2c3d.part", "00001-mine.mp4.part", "keep.txt"]
    for name in stale + kept:
        (out / name).write_bytes(b"partial")
    async with (
        Simulator(time_scale=0.001, api_key=KEY) as sim,
        EvolinkClient(KEY, sim.base_url, rate=None, time_scale=0.001) as client,
    ):
        summary = await BatchJob(client, parse_prompts(["one"], fmt="txt"), out).run()
    assert summary.ok
    names = {p.name for p in out.iterdir()}
    assert set() == names & set(stale)
    assert set(kept) <= names


def test_a_second_batch_process_on_the_same_directory_is_refused_and_corrupts_nothing(
    crash_sim: Simulator, tmp_path: Path
) -> None:
    sim = crash_sim
    prompts = [f"lock {i:02d}: two cranes in the fog" for i in range(16)]
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "clips"
    argv = batch_argv(source, out, sim)

    first = BatchProcess(argv, tmp_path, "first")
    try:
        assert wait_for_journal(out, 4, first)
        second = BatchProcess(argv, tmp_path, "second")
        assert 2 == second.wait(timeout=30)
        message = second.stderr_path.read_text()
        assert f"another evolink-async batch is running on {out} (pid {first.proc.pid})" in message
        assert 0 == first.wait(timeout=60)
    finally:
        first.kill()
    manifest = read_manifest(out)
    assert prompts == [e["prompt"] for e in manifest]
    assert {"completed"} == {e["status"] for e in manifest}
    assert {} == {p: n for p, n in sim.stats.creates_per_prompt.items() if n != 1}
    assert set(range(1, 17)) == {n for n, s in replay(out).items() if s.phase == "downloaded"}
