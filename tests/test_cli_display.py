"""What the batch command shows (cli.display): a rich display on a terminal, plain lines
otherwise, and the lines that did not complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    KEY,
    service_args,
    sim_fixture,  # noqa: F401 - the ``sim`` fixture
    write_prompts,
)

from evolink_async.batch import BatchProgress, BatchSummary, ManifestEntry
from evolink_async.batch.manifest import summarize
from evolink_async.cli import display, main
from evolink_async.testing import Simulator


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_a_terminal_gets_the_rich_display_or_plain_lines_without_rich(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rich: bool,
) -> None:
    monkeypatch.setattr(display, "is_tty", lambda stream: True)
    monkeypatch.setattr(display, "rich_available", lambda: rich)
    source = write_prompts(tmp_path / "p.txt", [f"shown {i}" for i in range(5)])
    out = tmp_path / "clips"
    assert 0 == main(["batch", str(source), "--out", str(out), "--rate", "500", *service_args(sim)])
    text = capsys.readouterr().out
    assert "Batch summary" in text
    assert ("5/5 done" not in text) == rich  # the plain lines say "N/M done"
    assert "completed" in text
    assert KEY not in text


def entry(line: int, status: str, video: str | None, error: Any = None) -> dict[str, Any]:
    """A manifest entry (the keys of a manifest.jsonl line)."""
    return {
        "line": line,
        "prompt": f"prompt {line}",
        "status": status,
        "task_id": f"task-unified-{line}",
        "video": video,
        "url": None,
        "error": error,
        "attempts": 1,
        "credits": 0,
    }


@pytest.mark.parametrize(
    ("entries", "download", "expected"),
    [
        ([entry(1, "completed", "1.mp4")], True, []),
        ([entry(1, "completed", None)], False, []),
        (
            [entry(1, "completed", None, {"code": "download_failed", "message": "HTTP 503"})],
            True,
            ["line 1: completed (download_failed: HTTP 503)"],
        ),
        (
            [entry(2, "failed", None, {"code": "content_policy", "message": "refused"})],
            False,
            ["line 2: failed (content_policy: refused)"],
        ),
        (
            [entry(3, "unknown", None, {"code": "interrupted"})],
            True,
            ["line 3: unknown (interrupted)"],
        ),
        ([entry(4, "failed", None)], True, ["line 4: failed ()"]),
        (
            [entry(1, "completed", "1.mp4"), entry(5, "failed", None, {"message": "m"})],
            True,
            ["line 5: failed (m)"],
        ),
    ],
    ids=[
        "downloaded",
        "no-download",
        "download-failed",
        "failed",
        "code-only",
        "no-error",
        "mixed",
    ],
)
def test_failure_lines_list_the_entries_without_a_clip(
    entries: list[dict[str, Any]], download: bool, expected: list[str]
) -> None:
    assert expected == list(display.failure_lines(entries, download=download))


def progress(**kw: Any) -> BatchProgress:
    return BatchProgress(total=kw.pop("total", 10), **kw)


@pytest.mark.parametrize(
    ("p", "eta", "shown", "hidden"),
    [
        (
            progress(queued=4, submitted=3, processing=1, completed=2, credits=92.16, budget=300),
            None,
            ["queued 4", "running 4 (1 seen processing)", "92.16 credits of 300"],
            ["ETA", "paused", "retries"],
        ),
        (
            progress(completed=8, downloaded=7, download_failed=1, retries=3, rate_limited=2),
            200.0,
            ["retries 3", "downloads 7 ok, 1 failed", "429s 2", "ETA 3 min 20 s"],
            ["of ", "paused"],
        ),
        (
            progress(queued=5, paused=11.2, rate_limited=1),
            4000.0,
            ["paused: rate limited, 12 s", "ETA 1 h 06 min"],
            ["seen processing"],
        ),
        (progress(queued=5, stopping=True), 10.0, ["stopping"], ["ETA"]),
        (
            # an outage wins over a 429 pause: creates wait for the service, not for the rate
            progress(
                queued=5,
                paused=3.0,
                outage="service unreachable (connection refused)",
                outage_retry=3.4,
            ),
            None,
            ["paused: service unreachable (connection refused), retry in 4 s"],
            ["rate limited"],
        ),
    ],
)
def test_the_progress_line_shows_what_a_person_watching_wants(
    p: BatchProgress, eta: float | None, shown: list[str], hidden: list[str]
) -> None:
    line = display.stats_line(p, 2.0, eta)
    for text in shown:
        assert text in line
    for text in hidden:
        assert text not in line


def test_the_eta_follows_the_pace_of_finished_lines() -> None:
    now = [0.0]
    eta = display._Eta(window=60.0, clock=lambda: now[0])
    assert eta.update(0, 100) is None  # no pace yet
    now[0] = 10.0
    assert eta.update(5, 100) == pytest.approx(190.0)  # 5 lines in 10 s: 95 left at 0.5/s
    now[0] = 20.0
    assert eta.update(5, 100) == pytest.approx(380.0)  # slower: 5 in 20 s
    assert 0.0 == eta.update(100, 100)


def test_lines_that_ended_the_same_way_are_listed_once_in_the_summary() -> None:
    budget = {"code": "budget_exceeded", "message": "the budget of 100 credits cannot pay 23 more"}
    entries = [entry(1, "completed", "1.mp4"), entry(2, "failed", None, {"code": "x"})]
    entries += [entry(n, "skipped", None, budget) for n in range(3, 156)]
    summary = summarize_entries(entries)
    lines = display._not_completed(summary)
    assert [
        "line 2: failed (x)",
        "lines 3-155 (153): skipped"
        " (budget_exceeded: the budget of 100 credits cannot pay 23 more)",
    ] == lines
    assert ["lines 2, 4", "6 lines (1, 2, 3, ...)"] == [
        display._lines_text([2, 4]),
        display._lines_text([1, 2, 3, 5, 8, 9]),
    ]


def summarize_entries(entries: list[dict[str, Any]]) -> BatchSummary:
    manifest = [
        ManifestEntry(**{**e, "credits": float(e["credits"])})  # type: ignore[arg-type]
        for e in entries
    ]
    return summarize(
        manifest,
        Path("manifest.jsonl"),
        requests=0,
        elapsed=1.0,
        download=True,
        interrupted=False,
        aborted=None,
    )
