"""The batch job (``evolink_async.batch``) end to end against the simulator: the manifest,
the files, the journal, resuming, stopping, budgets and refusals (input: test_batch_input)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mp4_support import served_clip

from evolink_async import EvolinkClient, JournalLockedError
from evolink_async.batch import (
    MANIFEST_FILENAME,
    BatchInputError,
    BatchJob,
    BatchLine,
    parse_prompts,
    run_batch,
    video_filename,
)
from evolink_async.journal import Journal, fingerprint, replay
from evolink_async.testing import Simulator

TIME_SCALE = 0.001
MANIFEST_KEYS = {
    "line",
    "prompt",
    "status",
    "task_id",
    "video",
    "url",
    "error",
    "attempts",
    "credits",
}
PRICES = {4: 23.04, 8: 46.08, 12: 69.12}


def client_for(sim: Simulator, **kw: Any) -> EvolinkClient:
    kw.setdefault("rate", None)
    kw.setdefault("max_in_flight", 50)
    kw.setdefault("time_scale", TIME_SCALE)
    api_key = kw.pop("api_key", sim.api_key)
    return EvolinkClient(api_key, sim.base_url, **kw)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(time_scale=TIME_SCALE, seed=7) as simulator:
        yield simulator


def read_manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]


def check_clips(out: Path, manifest: list[dict[str, Any]]) -> None:
    """Every line with a video: an MP4 whose size matches the journal and the served file."""
    state = replay(out)
    for entry in manifest:
        if entry["video"] is None:
            continue
        assert video_filename(entry["line"], entry["task_id"]) == entry["video"]
        data = (out / entry["video"]).read_bytes()
        assert b"ftyp" == data[4:8]
        journaled = state[entry["line"]]
        served = served_clip(entry["task_id"], data)  # the task's own clip, whole
        assert (served, len(served)) == (data, journaled.size)
        assert hashlib.sha256(data).hexdigest() == journaled.sha256


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- end to end


async def test_a_50_prompt_txt_batch_gives_a_manifest_in_input_order_and_an_mp4_per_prompt(
    sim: Simulator, tmp_path: Path
) -> None:
    prompts = [f"clip {i}: a lighthouse in a storm, take {i}" for i in range(50)]
    text = "# fifty prompts\n\n" + "\n".join(prompts) + "\n"
    source = write(tmp_path / "prompts.txt", text)
    out = tmp_path / "clips"
    async with client_for(sim) as client:
        summary = await run_batch(client, source, out)

    manifest = read_manifest(out)
    assert [MANIFEST_KEYS] * 50 == [set(e) for e in manifest]
    assert list(range(3, 53)) == [e["line"] for e in manifest]
    assert prompts == [e["prompt"] for e in manifest]
    assert ["completed"] * 50 == [e["status"] for e in manifest]
    assert [None] * 50 == [e["error"] for e in manifest]
    assert [PRICES[4]] * 50 == [e["credits"] for e in manifest]
    assert {1} == set(sim.stats.creates_per_prompt.values())
    check_clips(out, manifest)
    assert (50, 50, 0, True) == (
        summary.completed,
        summary.downloaded,
        summary.failed,
        summary.ok,
    )
    assert round(50 * PRICES[4], 4) == summary.credits
    # 50 creates and at least one read of each task (reads of many tasks share a request)
    assert all(t.polls >= 1 for t in sim.tasks.values())
    reads = sim.stats.single_reads + sim.stats.count("tasks_batch")
    assert summary.requests >= 50 + reads > 50


async def test_a_jsonl_batch_with_mixed_durations_sends_each_line_as_written(
    sim: Simulator, tmp_path: Path
) -> None:
    rows: list[dict[str, Any]] = [
        {"prompt": f"mixed {i}", "duration": d, "aspect_ratio": ar}
        for i, (d, ar) in enumerate(
            [(4, "16:9"), (8, "9:16"), (12, "1280x720"), (8, "720x1280"), (4, "16:9")]
        )
    ]
    rows.append({"prompt": "default duration"})
    source = write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clips"
    async with client_for(sim) as client:
        summary = await run_batch(client, source, out, aspect_ratio="9:16")

    manifest = read_manifest(out)
    assert [r["prompt"] for r in rows] == [e["prompt"] for e in manifest]
    assert ["completed"] * 6 == [e["status"] for e in manifest]
    tasks = [sim.tasks[e["task_id"]] for e in manifest]
    expected = [(r.get("duration", 4), r.get("aspect_ratio", "9:16")) for r in rows]
    assert expected == [(t.duration, t.aspect_ratio) for t in tasks]
    assert [PRICES[d] for d, _ in expected] == [e["credits"] for e in manifest]
    check_clips(out, manifest)
    assert summary.ok


async def test_the_journal_records_intent_before_created_then_finished_and_downloaded(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts(["one", "two"], fmt="txt")
    async with client_for(sim) as client:
        await BatchJob(client, lines, out).run()
    records = [json.loads(raw) for raw in (out / "journal.jsonl").read_text().splitlines()]
    for line in (1, 2):
        events = [r["event"] for r in records if r.get("line") == line]
        assert ["intent", "created", "finished", "downloaded"] == events
    intent = next(r for r in records if r["event"] == "intent" and r["line"] == 1)
    assert fingerprint({"model": "sora-2-preview", "prompt": "one"}) == intent["fingerprint"]
    # the run-level record with the seed of the job's keys comes first; each intent its key
    assert ["job"] == [r["event"] for r in records if "line" not in r]
    keys = [r["key"] for r in records if r["event"] == "intent"]
    assert 2 == len(set(keys))
    assert all(re.fullmatch(r"evb_[0-9a-f]{40}", k) for k in keys)


async def test_nothing_secret_reaches_the_journal_or_the_manifest(tmp_path: Path) -> None:
    key = "sk-evo-very-secret-batch-key"
    async with Simulator(time_scale=TIME_SCALE, api_key=key) as sim:
        out = tmp_path / "clips"
        async with client_for(sim) as client:
            await BatchJob(client, parse_prompts(["a", "b"], fmt="txt"), out).run()
    for name in ("journal.jsonl", MANIFEST_FILENAME):
        assert key not in (out / name).read_text()


# ----------------------------------------------------------------------------- failures


async def test_task_failures_are_retried_or_reported_with_the_task_error(
    tmp_path: Path,
) -> None:
    knobs: dict[str, Any] = {"retryable_failure_rate": 0.3, "fatal_failure_rate": 0.2, "seed": 11}
    async with Simulator(time_scale=TIME_SCALE, **knobs) as sim:
        out = tmp_path / "clips"
        lines = parse_prompts([f"risky {i}" for i in range(20)], fmt="txt")
        async with client_for(sim) as client:
            summary = await BatchJob(client, lines, out, max_attempts=3).run()
    manifest = read_manifest(out)
    failed = [e for e in manifest if e["status"] == "failed"]
    assert failed  # the seed makes some fail for good
    assert summary.failed == len(failed)
    for entry in failed:
        assert entry["video"] is None
        assert 0.0 == entry["credits"]
        assert {"code", "message"} == set(entry["error"])
    retried = [e for e in manifest if e["attempts"] > 1]
    assert retried
    assert all(sim.stats.creates_per_prompt[e["prompt"]] == e["attempts"] for e in manifest)
    check_clips(out, manifest)
    assert not summary.ok


async def test_retry_failed_resubmits_only_the_failed_lines_with_new_keys_paying_once(
    tmp_path: Path,
) -> None:
    knobs: dict[str, Any] = {"fatal_failure_rate": 0.3, "seed": 11}
    async with Simulator(time_scale=TIME_SCALE, **knobs) as sim:
        out = tmp_path / "clips"
        lines = parse_prompts([f"fragile {i}" for i in range(20)], fmt="txt")
        runs = []
        for retry_failed in (False, False, True):
            async with client_for(sim) as client:
                job = BatchJob(client, lines, out, max_attempts=1, retry_failed=retry_failed)
                runs.append((await job.run(), read_manifest(out)))
        charged = sim.config.credits - sim.credits

    (first, before), (plain, unchanged), (retried, after) = runs
    failed = {e["line"]: e["prompt"] for e in before if e["status"] == "failed"}
    assert failed  # the seed makes some fail for good
    assert (plain.failed, unchanged) == (first.failed, before)  # a plain rerun leaves them
    # the retry sent each failed line once more and nothing else, each with a new key
    assert {e["prompt"]: (2 if e["line"] in failed else 1) for e in before} == dict(
        sim.stats.creates_per_prompt
    )
    records = [json.loads(raw) for raw in (out / "journal.jsonl").read_text().splitlines()]
    keys = [(r["line"], r["key"]) for r in records if r["event"] == "intent"]
    assert len(keys) == len(set(keys)) == len(lines) + len(failed)
    assert len({k for _, k in keys}) == len(keys)
    assert {e["line"]: e["status"] for e in after if e["line"] not in failed} == {
        e["line"]: "completed" for e in before if e["line"] not in failed
    }
    assert any(e["status"] == "completed" for e in after if e["line"] in failed)
    # failed tasks are refunded: the service charged the completed clips only, once each
    completed = sum(e["status"] == "completed" for e in after)
    assert (retried.completed, round(charged, 2)) == (completed, round(completed * PRICES[4], 2))


async def test_a_clip_that_cannot_be_downloaded_keeps_its_url_and_the_reason(
    tmp_path: Path,
) -> None:
    # Links expire at once: every download is refused with 403.
    async with Simulator(time_scale=TIME_SCALE, link_ttl=0.001) as sim:
        out = tmp_path / "clips"
        async with client_for(sim) as client:
            summary = await BatchJob(client, parse_prompts(["a"], fmt="txt"), out).run()
    [entry] = read_manifest(out)
    assert ("completed", None) == (entry["status"], entry["video"])
    assert entry["url"].startswith(sim.base_url)
    assert "download_failed" == entry["error"]["code"]
    assert "403" in entry["error"]["message"]
    assert (1, 0, 1, False) == (
        summary.completed,
        summary.downloaded,
        summary.download_failed,
        summary.ok,
    )
    assert [] == list(out.glob("*.mp4"))
    # the journal keeps the failure (its fold knows the record), the URL and the status
    state = replay(out)[1]
    assert ("download_failed", "completed", entry["url"]) == (state.phase, state.status, state.url)
    assert entry["error"]["message"] == state.error


async def test_a_failed_download_is_tried_again_by_the_next_run_without_a_new_create(
    tmp_path: Path,
) -> None:
    async with Simulator(time_scale=TIME_SCALE, link_ttl=0.001) as sim:
        out = tmp_path / "clips"
        lines = parse_prompts(["a"], fmt="txt")
        async with client_for(sim) as client:
            await BatchJob(client, lines, out).run()
            files_before = sum(n for (e, _), n in sim.stats.requests.items() if e == "files")
            summary = await BatchJob(client, lines, out).run()
            files_after = sum(n for (e, _), n in sim.stats.requests.items() if e == "files")
    assert {"a": 1} == dict(sim.stats.creates_per_prompt)
    assert files_after > files_before  # the rerun fetched the clip again
    assert (1, 0, 1) == (summary.completed, summary.downloaded, summary.download_failed)


async def test_the_summary_hands_over_the_manifest_entries(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    async with client_for(sim) as client:
        summary = await BatchJob(client, parse_prompts(["a", "b"], fmt="txt"), out).run()
    assert read_manifest(out) == [e.to_json() for e in summary.entries]
    assert () == summary.failures


async def test_without_downloads_completed_lines_keep_only_their_url(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    async with client_for(sim) as client:
        summary = await BatchJob(
            client, parse_prompts(["a", "b"], fmt="txt"), out, download=False
        ).run()
    manifest = read_manifest(out)
    assert [("completed", None)] * 2 == [(e["status"], e["video"]) for e in manifest]
    assert all(e["url"] for e in manifest)
    assert summary.ok
    assert [] == list(out.glob("*.mp4"))


async def test_the_budget_covers_the_whole_batch_across_runs(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts([f"budgeted {i}" for i in range(5)], fmt="txt")
    budget = 3 * PRICES[4] + 1
    async with client_for(sim) as client:
        first = await BatchJob(client, lines, out, budget=budget).run()
    async with client_for(sim) as client:
        second = await BatchJob(client, lines, out, budget=budget).run()
    assert (3, 2) == (first.completed, first.skipped)
    assert (3, 2) == (second.completed, second.skipped)
    assert 3 == sum(sim.stats.creates_per_prompt.values())
    skipped = [e for e in read_manifest(out) if e["status"] == "skipped"]
    assert ["budget_exceeded"] * 2 == [e["error"]["code"] for e in skipped]


async def test_a_refused_key_stops_admitting_and_the_lines_are_submitted_again_later(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts([f"auth {i}" for i in range(6)], fmt="txt")
    async with client_for(sim, api_key="sk-evo-wrong", max_in_flight=1) as client:
        refused = await BatchJob(client, lines, out).run()
    assert refused.aborted is not None
    assert "401" in refused.aborted
    assert 0 == refused.completed
    assert 0 == sum(sim.stats.creates_per_prompt.values())
    async with client_for(sim) as client:
        summary = await BatchJob(client, lines, out).run()
    assert summary.ok
    assert {1} == set(sim.stats.creates_per_prompt.values())


# ----------------------------------------------------------------------------- resume


async def _journal_lines(
    out: Path, sim: Simulator, lines: list[BatchLine]
) -> tuple[dict[int, str], Path]:
    """Journal a previous run by hand: line 1 downloaded, line 2 created, line 3 intent only
    (never sent), line 4 completed but not downloaded; line 5 untouched."""
    task_ids: dict[int, str] = {}
    async with client_for(sim) as client:
        with Journal.open(out) as journal:
            for bl in lines[:4]:
                await journal.intent(bl.line, bl.fingerprint)
                if bl.line == 3:
                    continue
                task = await client.create_video(bl.request)
                task_ids[bl.line] = task.id
                await journal.created(bl.line, task.id, task.credits_reserved)
                if bl.line == 2:
                    continue
                task = await client.wait(task)
                await journal.finished(bl.line, task.id, "completed", None, task.video_url)
                if bl.line == 1:
                    path = out / video_filename(1, task.id)
                    result = await client.download(task, path)
                    await journal.downloaded(1, task.id, path.name, result.size, result.sha256)
    return task_ids, out / video_filename(1, task_ids[1])


async def test_resume_touches_nothing_done_reattaches_created_tasks_and_reports_unknown(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts([f"resumed {i}" for i in range(1, 6)], fmt="txt")
    task_ids, first_file = await _journal_lines(out, sim, lines)
    before = first_file.stat().st_mtime_ns
    downloads_before = sim.tasks[task_ids[1]].downloads

    async with client_for(sim) as client:
        summary = await BatchJob(client, lines, out).run()

    manifest = read_manifest(out)
    statuses = [(e["line"], e["status"], e["task_id"]) for e in manifest]
    new_id = manifest[4]["task_id"]
    assert [
        (1, "completed", task_ids[1]),
        (2, "completed", task_ids[2]),
        (3, "unknown", None),
        (4, "completed", task_ids[4]),
        (5, "completed", new_id),
    ] == statuses
    assert "maybe_created" == manifest[2]["error"]["code"]
    assert "--retry-unknown" in manifest[2]["error"]["message"]
    counts = {bl.prompt: sim.stats.creates_per_prompt[bl.prompt] for bl in lines}
    assert {"resumed 1": 1, "resumed 2": 1, "resumed 3": 0, "resumed 4": 1, "resumed 5": 1} == (
        counts
    )
    assert before == first_file.stat().st_mtime_ns
    assert downloads_before == sim.tasks[task_ids[1]].downloads
    check_clips(out, manifest)
    assert [1, 1, 1, 1, 1] == [e["attempts"] for e in manifest]
    assert (4, 1) == (summary.completed, summary.unknown)

    async with client_for(sim) as client:
        retried = await BatchJob(client, lines, out, retry_unknown=True).run()
    assert retried.ok
    assert 1 == sim.stats.creates_per_prompt["resumed 3"]
    assert 2 == read_manifest(out)[2]["attempts"]


async def test_a_deleted_clip_is_downloaded_again_on_resume(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts(["kept", "deleted"], fmt="txt")
    async with client_for(sim) as client:
        await BatchJob(client, lines, out).run()
    deleted = out / read_manifest(out)[1]["video"]
    deleted.unlink()
    async with client_for(sim) as client:
        summary = await BatchJob(client, lines, out).run()
    assert summary.ok
    assert deleted.exists()
    assert {1} == set(sim.stats.creates_per_prompt.values())


async def test_a_reattached_task_that_failed_retryably_is_submitted_again(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    [line] = parse_prompts(["flaky"], fmt="txt")
    async with client_for(sim) as client:
        task = await client.create_video(line.request)
    sim.fail_task(task.id, "service_error")
    with Journal.open(out) as journal:
        await journal.intent(1, line.fingerprint)
        await journal.created(1, task.id, task.credits_reserved)
    async with client_for(sim) as client:
        summary = await BatchJob(client, [line], out, max_attempts=3).run()
    [entry] = read_manifest(out)
    assert ("completed", 2) == (entry["status"], entry["attempts"])
    assert task.id != entry["task_id"]
    assert 2 == sim.stats.creates_per_prompt["flaky"]
    assert summary.ok


@pytest.mark.parametrize("spare", [0.0, 0.5])
async def test_a_reattached_task_that_failed_retryably_is_paid_again_from_what_it_held(
    sim: Simulator, tmp_path: Path, spare: float
) -> None:
    """With a budget for one clip (and some spare change), the re-attached task holds all of
    it; when it fails, what it held pays for the line's new create (not ``budget_exceeded``)."""
    out = tmp_path / "clips"
    [line] = parse_prompts(["flaky and tight"], fmt="txt")
    async with client_for(sim) as client:
        task = await client.create_video(line.request)
    assert task.credits_reserved is not None
    sim.fail_task(task.id, "service_error")
    with Journal.open(out) as journal:
        await journal.intent(1, line.fingerprint)
        await journal.created(1, task.id, task.credits_reserved)
    budget = task.credits_reserved + spare
    async with client_for(sim) as client:
        summary = await BatchJob(client, [line], out, max_attempts=3, budget=budget).run()
    [entry] = read_manifest(out)
    assert ("completed", 2) == (entry["status"], entry["attempts"]), entry
    assert 2 == sim.stats.creates_per_prompt["flaky and tight"]
    assert summary.ok


async def test_a_reattached_task_and_new_submissions_share_the_clients_max_in_flight(
    tmp_path: Path,
) -> None:
    """Re-attached tasks go through the dispatcher: with ``max_in_flight=1`` the service never
    runs the old task and a new one at once, and the old task keeps its journaled credits."""
    async with Simulator(time_scale=0.005, seed=11) as sim:
        out = tmp_path / "clips"
        lines = parse_prompts(["earlier", "new one", "new two"], fmt="txt")
        async with client_for(sim, time_scale=0.005) as client:
            task = await client.create_video(lines[0].request)
        with Journal.open(out) as journal:
            await journal.intent(1, lines[0].fingerprint)
            await journal.created(1, task.id, task.credits_reserved)
        assert 1 == sim.active_tasks  # still running when the rerun starts
        async with client_for(sim, time_scale=0.005, max_in_flight=1) as client:
            summary = await BatchJob(client, lines, out).run()
        assert summary.ok
        assert 1 == sim.stats.peak_active_tasks
        manifest = read_manifest(out)
        assert task.id == manifest[0]["task_id"]
        assert task.credits_reserved == manifest[0]["credits"]
        assert all(e["credits"] > 0 for e in manifest)
        assert {"earlier": 1, "new one": 1, "new two": 1} == dict(sim.stats.creates_per_prompt)
        check_clips(out, manifest)


async def test_a_reattached_task_that_failed_retryably_is_journaled_failed_then_created_again(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    [line] = parse_prompts(["flaky again"], fmt="txt")
    async with client_for(sim) as client:
        task = await client.create_video(line.request)
    sim.fail_task(task.id, "service_error", "the GPU fell over")
    with Journal.open(out) as journal:
        await journal.intent(1, line.fingerprint)
        await journal.created(1, task.id, task.credits_reserved)
    async with client_for(sim) as client:
        summary = await BatchJob(client, [line], out, max_attempts=2).run()
    assert summary.ok
    records = [json.loads(raw) for raw in (out / "journal.jsonl").read_text().splitlines()]
    events = [(r["event"], r.get("task_id"), r.get("status")) for r in records]
    [new_id] = {r["task_id"] for r in records if r.get("task_id") not in (None, task.id)}
    assert [
        ("intent", None, None),
        ("created", task.id, None),
        ("finished", task.id, "failed"),
        ("intent", None, None),
        ("created", new_id, None),
        ("finished", new_id, "completed"),
        ("downloaded", new_id, None),
    ] == events
    failed = records[2]["error"]
    assert {"code": "service_error", "message": "the GPU fell over"} == failed


async def test_a_directory_journaled_for_other_prompts_is_refused_before_any_request(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    async with client_for(sim) as client:
        await BatchJob(client, parse_prompts(["first"], fmt="txt"), out).run()
    requests = sim.stats.total_requests
    async with client_for(sim) as client:
        with pytest.raises(BatchInputError, match="line 1: differs from the request journaled"):
            await BatchJob(client, parse_prompts(["second"], fmt="txt"), out).run()
    assert requests == sim.stats.total_requests


async def test_a_second_job_on_a_locked_directory_is_refused(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    with Journal.open(out):
        async with client_for(sim) as client:
            with pytest.raises(JournalLockedError, match="another evolink-async batch"):
                await BatchJob(client, parse_prompts(["a"], fmt="txt"), out).run()
    assert 0 == sim.stats.total_requests


# ----------------------------------------------------------------------------- stopping


async def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (bounded; a failure to get there fails the test)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_stop_stops_admitting_writes_the_manifest_and_a_rerun_finishes_the_batch(
    tmp_path: Path,
) -> None:
    async with Simulator(time_scale=0.005, seed=3) as sim:
        out = tmp_path / "clips"
        lines = parse_prompts([f"stopped {i}" for i in range(20)], fmt="txt")
        async with client_for(sim, time_scale=0.005, max_in_flight=4) as client:
            job = BatchJob(client, lines, out)
            run = asyncio.ensure_future(job.run())
            await _wait_for(lambda: job.progress().submitted + job.progress().processing > 0)
            job.stop()
            summary = await run
        assert summary.interrupted
        manifest = read_manifest(out)
        assert [bl.line for bl in lines] == [e["line"] for e in manifest]
        assert summary.completed < 20
        pending = [e for e in manifest if e["status"] != "completed"]
        assert {"interrupted"} == {e["error"]["code"] for e in pending}
        assert {"interrupted", "unknown"} >= {e["status"] for e in pending}
        assert sum(sim.stats.creates_per_prompt.values()) < 20

        async with client_for(sim, time_scale=0.005) as client:
            again = await BatchJob(client, lines, out).run()
        assert again.ok
        assert {1} == set(sim.stats.creates_per_prompt.values())
        check_clips(out, read_manifest(out))
