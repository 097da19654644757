"""The manifest (``evolink_async.batch.manifest``): entries rendered from the ledger, the
atomic write, the clean-up of what a killed run left, and the summary's entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evolink_async.batch.ledger import LedgerLine, State
from evolink_async.batch.manifest import (
    MANIFEST_FILENAME,
    ManifestEntry,
    remove_stale_temps,
    render,
    summarize,
    write_manifest,
)

ERR = {"code": "boom", "message": "it broke"}
REASON = "the batch was interrupted"
MAYBE = (
    f"{REASON} while this line's create request was being sent: the task may exist (and be "
    "billed). Not resubmitted; pass --retry-unknown (retry_unknown=True) to submit it again"
)


def line_in(state: State, **facts: Any) -> LedgerLine:
    base: dict[str, Any] = {
        "task_id": "task-1",
        "url": "https://cdn/1.mp4",
        "video": "00001-task-1.mp4",
        "error": ERR,
        "attempts": 2,
        "credits": 23.04,
    }
    base.update(facts)
    return LedgerLine(1, "a fox", 5.0, state, **base)


# state -> (status, video, error, credits) of a manifest written while the line was in it
RENDER: list[tuple[State, str, str | None, dict[str, str] | None, float]] = [
    ("completed", "completed", "00001-task-1.mp4", ERR, 23.04),
    ("failed", "failed", "00001-task-1.mp4", ERR, 0.0),
    ("unknown", "unknown", "00001-task-1.mp4", ERR, 23.04),
    ("skipped", "skipped", "00001-task-1.mp4", ERR, 0.0),
    (
        "submitted",
        "interrupted",
        "00001-task-1.mp4",
        {
            "code": "interrupted",
            "message": f"{REASON} while task task-1 was running; "
            "run the same command again to re-attach it",
        },
        23.04,
    ),
    (
        "downloading",
        "completed",
        None,
        {
            "code": "interrupted",
            "message": f"{REASON} before the clip was downloaded; "
            "run the same command again to download it",
        },
        23.04,
    ),
    ("posting", "unknown", "00001-task-1.mp4", {"code": "maybe_created", "message": MAYBE}, 23.04),
    (
        "maybe_sent",
        "unknown",
        "00001-task-1.mp4",
        {"code": "maybe_created", "message": MAYBE},
        23.04,
    ),
    (
        "queued",
        "interrupted",
        "00001-task-1.mp4",
        {"code": "interrupted", "message": f"not submitted: {REASON}"},
        0.0,
    ),
]


def test_a_line_the_credits_stopped_is_skipped_with_that_reason_not_interrupted() -> None:
    entry = render(line_in("queued"), "daily_quota_exceeded", "the key's daily limit")
    assert ("skipped", "daily_quota_exceeded") == (entry.status, (entry.error or {})["code"])
    running = render(line_in("submitted"), "daily_quota_exceeded", "the key's daily limit")
    assert "unknown" != running.status or running.task_id  # a running task keeps its id


@pytest.mark.parametrize(("state", "status", "video", "error", "credits"), RENDER)
def test_a_line_is_rendered_by_its_state_when_the_run_ends(
    state: State, status: str, video: str | None, error: dict[str, str] | None, credits: float
) -> None:
    expected = ManifestEntry(
        line=1,
        prompt="a fox",
        status=status,  # type: ignore[arg-type]
        task_id="task-1",
        video=video,
        url="https://cdn/1.mp4",
        error=error,
        attempts=2,
        credits=credits,
    )
    assert expected == render(line_in(state), "interrupted", REASON)


def test_processing_renders_like_submitted() -> None:
    assert render(line_in("submitted"), "aborted", "x") == render(
        line_in("processing"), "aborted", "x"
    )


def test_the_file_has_one_object_per_entry_with_the_manifest_keys_in_order(
    tmp_path: Path,
) -> None:
    entries = [render(line_in(s), "interrupted", REASON) for s in ("completed", "queued")]
    path = write_manifest(tmp_path, entries)
    assert tmp_path / MANIFEST_FILENAME == path
    rows = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert [e.to_json() for e in entries] == rows
    assert [
        ["line", "prompt", "status", "task_id", "video", "url", "error", "attempts", "credits"]
    ] * 2 == [list(r) for r in rows]
    assert [MANIFEST_FILENAME] == [p.name for p in tmp_path.iterdir()]  # no temporary left


def test_stale_temporaries_of_killed_runs_are_removed_and_nothing_else(tmp_path: Path) -> None:
    stale = [
        ".00001-task-unified-1-abcdefgh.mp4.0a1b2c3d.part",
        ".manifest.jsonl.77.tmp",
        ".manifest.jsonl.0a1b2c3d.part",
        ".index.html.0a1b2c3d.part",
    ]
    kept = [
        ".notes.0a1b2c3d.part",
        "00001-mine.mp4.part",
        "keep.txt",
        MANIFEST_FILENAME,
        "index.html",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    remove_stale_temps(tmp_path)
    assert sorted(kept) == sorted(p.name for p in tmp_path.iterdir())


def test_the_summary_counts_its_entries_and_hands_them_over(tmp_path: Path) -> None:
    download_failed = {"code": "download_failed", "message": "403"}
    entries = [
        render(line_in("completed"), "interrupted", REASON),
        render(line_in("completed", video=None, error=download_failed), "interrupted", REASON),
        render(line_in("failed", video=None), "interrupted", REASON),
        render(line_in("submitted", video=None), "interrupted", REASON),
        render(line_in("queued", video=None, task_id=None), "interrupted", REASON),
    ]
    summary = summarize(
        entries,
        tmp_path / MANIFEST_FILENAME,
        requests=9,
        elapsed=1.5,
        download=True,
        interrupted=True,
        aborted=None,
    )
    expected = {"completed": 2, "failed": 1, "unknown": 0, "skipped": 0, "interrupted": 2}
    assert expected == summary.counts
    assert (5, 1, 1, round(3 * 23.04, 4)) == (
        summary.total,
        summary.downloaded,
        summary.download_failed,
        summary.credits,
    )
    assert tuple(entries) == summary.entries
    assert tuple(entries[1:]) == summary.failures
    assert not summary.ok
