"""Planning a resumed run (``evolink_async.batch.plan``): journal state in, ledger states and
what to do with each line out (a table: phase x options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evolink_async.batch import BatchInputError, parse_prompts
from evolink_async.batch.journal import LineState
from evolink_async.batch.ledger import Ledger, LedgerLine
from evolink_async.batch.plan import MAYBE_CREATED, Plan, check_fingerprints, plan

FP = "f" * 64
TASK = "task-unified-1-aaaaaaaa"
URL = "https://cdn/1.mp4"
FAILED = {"code": "content_policy_violation", "message": "no"}


def journaled(phase: str, **facts: Any) -> LineState:
    return LineState(line=1, phase=phase, attempts=1, fingerprint=FP, **facts)  # type: ignore[arg-type]


# (journal state, present, retry_unknown, download) -> (bucket, state, error, task_id, credits)
CASES: list[tuple[str, LineState | None, bool, bool, bool, str, str, Any, str | None]] = [
    ("new", None, False, False, True, "submit", "queued", None, None),
    (
        "intent",
        journaled("intent"),
        False,
        False,
        True,
        "",
        "unknown",
        {"code": "maybe_created", "message": MAYBE_CREATED},
        None,
    ),
    ("intent-retry", journaled("intent"), False, True, True, "submit", "queued", None, None),
    (
        "unknown",
        journaled("unknown", error="timeout"),
        False,
        False,
        True,
        "",
        "unknown",
        {"code": "maybe_created", "message": "timeout"},
        None,
    ),
    (
        "created",
        journaled("created", task_id=TASK, credits=23.04),
        False,
        False,
        True,
        "reattach",
        "submitted",
        None,
        TASK,
    ),
    (
        "completed",
        journaled("finished", task_id=TASK, status="completed", url=URL),
        False,
        False,
        True,
        "fetch",
        "downloading",
        None,
        TASK,
    ),
    (
        "completed-no-download",
        journaled("finished", task_id=TASK, status="completed", url=URL),
        False,
        False,
        False,
        "",
        "completed",
        None,
        TASK,
    ),
    (
        "completed-no-url",
        journaled("finished", task_id=TASK, status="completed"),
        False,
        False,
        True,
        "",
        "completed",
        {"code": "download_failed", "message": "no result URL was journaled"},
        TASK,
    ),
    (
        "download-failed",
        journaled("download_failed", task_id=TASK, status="completed", url=URL, error="403"),
        False,
        False,
        True,
        "fetch",
        "downloading",
        None,
        TASK,
    ),
    (
        "rejected",
        journaled("finished", status="rejected", error=FAILED),
        False,
        False,
        True,
        "submit",
        "queued",
        None,
        None,
    ),
    (
        "failed",
        journaled("finished", task_id=TASK, status="failed", error=FAILED),
        False,
        False,
        True,
        "",
        "failed",
        FAILED,
        TASK,
    ),
    (
        "downloaded",
        journaled("downloaded", task_id=TASK, url=URL, path="clips/00001.mp4", size=9),
        True,
        False,
        True,
        "",
        "completed",
        None,
        TASK,
    ),
    (
        "downloaded-missing",
        journaled("downloaded", task_id=TASK, url=URL, path="clips/00001.mp4", size=9),
        False,
        False,
        True,
        "fetch",
        "downloading",
        None,
        TASK,
    ),
]


Case = tuple[str, LineState | None, bool, bool, bool, str, str, Any, str | None]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in CASES])
def test_the_journal_decides_what_a_resumed_run_does_with_a_line(case: Case) -> None:
    _, state, present, retry_unknown, download, bucket, expected, error, task_id = case
    ledger = Ledger([LedgerLine(1, "a fox", 23.04)])
    got = plan(
        ledger,
        {1: state} if state is not None else {},
        {1: present},
        retry_unknown=retry_unknown,
        download=download,
    )
    buckets = {"submit": Plan(submit=(1,)), "reattach": Plan(reattach=(1,))}
    buckets["fetch"] = Plan(fetch=(1,))
    ln = ledger[1]
    assert (buckets.get(bucket, Plan()), expected, error, task_id) == (
        got,
        ln.state,
        ln.error,
        ln.task_id,
    )
    assert (state.attempts if state is not None else 0) == ln.attempts


def test_a_line_journaled_for_another_request_is_refused() -> None:
    lines = parse_prompts(["a fox", "a hen"], fmt="txt")
    state = {1: LineState(line=1, phase="intent", fingerprint=lines[0].fingerprint)}
    check_fingerprints(lines, state, Path("out"))  # same request: fine
    state[2] = LineState(line=2, phase="intent", fingerprint=FP)
    with pytest.raises(BatchInputError, match="line 2") as info:
        check_fingerprints(lines, state, Path("out"))
    assert [2] == [p.line for p in info.value.problems]
