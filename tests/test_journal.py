"""Tests for evolink_async.journal."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from evolink_async.journal import (
    JOURNAL_FILENAME,
    LOCK_FILENAME,
    Journal,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    LineState,
    fingerprint,
    replay,
)

FP = "f" * 64


def read_records(directory: Path) -> list[dict[str, Any]]:
    lines = (directory / JOURNAL_FILENAME).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


async def write_every_phase(journal: Journal) -> None:
    """Line 1 goes all the way; the others stop in each of the other phases."""
    await journal.intent(1, FP)
    await journal.created(1, "task-unified-1-aaaaaaaa", 23.04)
    await journal.finished(1, "task-unified-1-aaaaaaaa", "completed", url="https://cdn/1.mp4")
    await journal.downloaded(1, "task-unified-1-aaaaaaaa", Path("clips/00001.mp4"), 1234, "ab" * 32)
    await journal.intent(2, FP)
    await journal.unknown(2, "timeout after the request was sent")
    await journal.intent(3, FP)
    await journal.intent(4, FP)
    await journal.created(4, "task-unified-4-dddddddd", 46)
    await journal.intent(5, FP)
    await journal.created(5, "task-unified-5-eeeeeeee", None)
    await journal.finished(
        5,
        "task-unified-5-eeeeeeee",
        "failed",
        error={"code": "content_policy_violation", "message": "no"},
    )


EVERY_PHASE = {
    1: LineState(
        line=1,
        phase="downloaded",
        task_id="task-unified-1-aaaaaaaa",
        attempts=1,
        status="completed",
        url="https://cdn/1.mp4",
        path="clips/00001.mp4",
        size=1234,
        sha256="ab" * 32,
        credits=23.04,
        fingerprint=FP,
    ),
    2: LineState(
        line=2,
        phase="unknown",
        attempts=1,
        error="timeout after the request was sent",
        fingerprint=FP,
    ),
    3: LineState(line=3, phase="intent", attempts=1, fingerprint=FP),
    4: LineState(
        line=4,
        phase="created",
        task_id="task-unified-4-dddddddd",
        attempts=1,
        credits=46.0,
        fingerprint=FP,
    ),
    5: LineState(
        line=5,
        phase="finished",
        task_id="task-unified-5-eeeeeeee",
        attempts=1,
        status="failed",
        error={"code": "content_policy_violation", "message": "no"},
        fingerprint=FP,
    ),
}


# --------------------------------------------------------------------------- records and replay


async def test_replay_round_trips_every_phase(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        await write_every_phase(journal)
        assert journal.state == EVERY_PHASE

    assert replay(tmp_path) == EVERY_PHASE


async def test_reopened_journal_starts_from_the_replayed_state(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        await write_every_phase(journal)

    async with Journal(tmp_path) as journal:
        assert journal.state == EVERY_PHASE
        state = await journal.created(3, "task-unified-3-cccccccc", 23.04)

    assert (
        LineState(
            line=3,
            phase="created",
            task_id="task-unified-3-cccccccc",
            attempts=1,
            credits=23.04,
            fingerprint=FP,
        )
        == state
    )
    assert state == replay(tmp_path)[3]


async def test_each_record_is_one_json_line_with_ts_event_and_line(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        await journal.intent(7, FP)
        await journal.created(7, "task-unified-7-abcdefgh", 7)

    records = read_records(tmp_path)

    assert [list(record)[:3] for record in records] == [["ts", "event", "line"]] * 2
    assert [{k: v for k, v in r.items() if k != "ts"} for r in records] == [
        {"event": "intent", "line": 7, "fingerprint": FP},
        {"event": "created", "line": 7, "task_id": "task-unified-7-abcdefgh", "credits": 7},
    ]
    for record in records:
        assert dt.datetime.fromisoformat(record["ts"]).tzinfo is not None


async def test_new_intent_starts_a_new_attempt(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        await journal.intent(1, FP)
        await journal.unknown(1, "connection dropped after the request was sent")
        await journal.intent(1, "0" * 64)
        state = await journal.created(1, "task-unified-2-bbbbbbbb", 23.04)

    expected = LineState(
        line=1,
        phase="created",
        task_id="task-unified-2-bbbbbbbb",
        attempts=2,
        credits=23.04,
        fingerprint="0" * 64,
    )
    assert expected == state
    assert {1: expected} == replay(tmp_path)


async def test_records_without_a_line_or_of_unknown_events_are_kept_but_not_folded(
    tmp_path: Path,
) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        header = await journal.append({"event": "run_started", "prompts": "prompts.jsonl"})
        future = await journal.append({"event": "teleported", "line": 1})
        intent = await journal.intent(1, FP)

    assert (header, future) == (None, None)
    assert {1: intent} == replay(tmp_path)
    assert [record["event"] for record in read_records(tmp_path)] == [
        "run_started",
        "teleported",
        "intent",
    ]


@pytest.mark.parametrize("how", ["method", "append"])
async def test_a_download_failure_is_folded_keeping_the_completed_task(
    tmp_path: Path, how: str
) -> None:
    """The job writes ``download_failed`` records: the fold keeps them (one schema), whether
    written by ``download_failed()`` or, as earlier versions did, by ``append()``."""
    task = "task-unified-6-ffffffff"
    async with await Journal.aopen(tmp_path) as journal:
        await journal.intent(6, FP)
        await journal.created(6, task, 23.04)
        await journal.finished(6, task, "completed", url="https://cdn/6.mp4")
        if how == "method":
            state = await journal.download_failed(6, task, "HTTP 403 for the link")
        else:
            record = {"event": "download_failed", "line": 6, "task_id": task}
            state = await journal.append({**record, "reason": "HTTP 403 for the link"})
    expected = LineState(
        line=6,
        phase="download_failed",
        task_id=task,
        attempts=1,
        status="completed",
        error="HTTP 403 for the link",
        url="https://cdn/6.mp4",
        credits=23.04,
        fingerprint=FP,
    )
    assert (expected, {6: expected}) == (state, replay(tmp_path))
    assert ["ts", "event", "line", "task_id", "reason"] == list(read_records(tmp_path)[-1])


def test_replay_of_a_missing_journal_is_empty(tmp_path: Path) -> None:
    assert replay(tmp_path / "never-used") == {}


# --------------------------------------------------------------------------- crashes


async def test_torn_last_line_is_ignored_and_cut_off_on_open(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        await journal.intent(1, FP)
        await journal.created(1, "task-unified-1-aaaaaaaa", 23.04)
    good = (tmp_path / JOURNAL_FILENAME).read_bytes()
    with (tmp_path / JOURNAL_FILENAME).open("ab") as file:  # a crash mid-write
        file.write(b'{"ts":"2025-01-01T00:00:00.000+00:00","event":"fini')
    before = replay(tmp_path)

    async with await Journal.aopen(tmp_path) as journal:
        assert before == journal.state
        assert (tmp_path / JOURNAL_FILENAME).read_bytes() == good
        await journal.finished(1, "task-unified-1-aaaaaaaa", "completed", url="https://cdn/1")

    assert before[1].phase == "created"
    assert replay(tmp_path)[1].phase == "finished"
    assert len(read_records(tmp_path)) == 3


@pytest.mark.parametrize(
    "tail",
    [b"\x00" * 300, b"\xff\xfe garbage", b"[1, 2", b"42\n", b'{"no_event": 1}\n', b"{\n\n  \n"],
)
def test_any_unparsable_last_line_is_tolerated(tmp_path: Path, tail: bytes) -> None:
    first = b'{"ts":"t","event":"intent","line":1,"fingerprint":"x"}\n'
    (tmp_path / JOURNAL_FILENAME).write_bytes(first + tail)

    assert {1: LineState(line=1, phase="intent", attempts=1, fingerprint="x")} == replay(tmp_path)


async def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    first = b'{"ts":"t","event":"intent","line":1,"fingerprint":"x"}'
    (tmp_path / JOURNAL_FILENAME).write_bytes(first)

    async with await Journal.aopen(tmp_path) as journal:
        assert journal.state[1].phase == "intent"
        await journal.unknown(1, "crashed")

    assert [r["event"] for r in read_records(tmp_path)] == ["intent", "unknown"]


async def test_corrupt_middle_line_is_rejected_with_its_number(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILENAME).write_bytes(
        b'{"ts":"t","event":"intent","line":1}\n'
        b"this is not json\n"
        b'{"ts":"t","event":"intent","line":2}\n'
    )

    with pytest.raises(JournalCorruptError) as caught:
        replay(tmp_path)
    assert caught.value.line_number == 2
    assert str(caught.value).startswith(
        f"journal {tmp_path / JOURNAL_FILENAME} is corrupt at line 2: "
    )

    with pytest.raises(JournalCorruptError):
        await Journal.aopen(tmp_path)


def test_failed_open_releases_the_lock(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILENAME).write_bytes(b"bad\n" + b'{"event":"intent","line":1}\n')
    with pytest.raises(JournalCorruptError):
        Journal.open(tmp_path)

    (tmp_path / JOURNAL_FILENAME).unlink()
    Journal.open(tmp_path).close()


# --------------------------------------------------------------------------- the lock


def test_second_open_in_the_same_process_is_locked_out(tmp_path: Path) -> None:
    with Journal.open(tmp_path), pytest.raises(JournalLockedError) as caught:
        Journal.open(tmp_path)

    assert caught.value.pid == os.getpid()
    assert str(caught.value).startswith(
        f"another evolink-async batch is running on {tmp_path} (pid {os.getpid()})"
    )
    Journal.open(tmp_path).close()  # released on close


async def test_async_open_is_locked_out_too(tmp_path: Path) -> None:
    async with Journal(tmp_path):
        with pytest.raises(JournalLockedError):
            await Journal.aopen(tmp_path)
    async with Journal(tmp_path) as journal:
        assert not journal.closed
    assert journal.closed


@pytest.mark.parametrize("swap", ["deleted", "replaced"])
def test_attack_6_a_deleted_or_swapped_lock_file_does_not_let_a_second_run_in(
    tmp_path: Path, swap: str
) -> None:
    # Before: deleting <out>/.lock under a running batch let a second run lock a new file and
    # create the same prompts again. The journal file itself is locked now.
    with Journal.open(tmp_path):
        (tmp_path / LOCK_FILENAME).unlink()
        if swap == "replaced":
            (tmp_path / LOCK_FILENAME).write_text("12345\n")
        with pytest.raises(JournalLockedError):
            Journal.open(tmp_path)
    Journal.open(tmp_path).close()  # released on close


def test_a_swapped_lock_file_in_another_process_is_refused_too(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    (tmp_path / LOCK_FILENAME).unlink()
    with pytest.raises(JournalLockedError):
        Journal.open(tmp_path)


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from evolink_async.journal import Journal
    journal = Journal.open(sys.argv[1])
    asyncio.run(journal.intent(1, "from-the-holder"))
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with the journal open."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_lock_held_by_another_process_refuses_the_open(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(JournalLockedError) as caught:
        Journal.open(tmp_path)

    assert caught.value.pid == holder.pid
    assert "another evolink-async batch is running on" in str(caught.value)


def test_lock_is_released_when_the_holder_is_killed(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()

    with Journal.open(tmp_path) as journal:
        assert {
            1: LineState(line=1, phase="intent", attempts=1, fingerprint="from-the-holder")
        } == (journal.state)


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_appends_from_100_tasks_never_interleave(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:

        async def submit(line: int) -> None:
            await journal.unknown(line, f"reason {line} " + "x" * 20_000)

        async with anyio.create_task_group() as group:
            for line in range(100):
                group.start_soon(submit, line)

    records = read_records(tmp_path)
    assert len(records) == 100
    assert sorted(record["line"] for record in records) == list(range(100))
    assert all(record["reason"].startswith(f"reason {record['line']} ") for record in records)
    assert sorted(replay(tmp_path)) == list(range(100))


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "record",
    [
        {"event": "intent", "line": 1, "api_key": "sk-evo-abc"},
        {"event": "intent", "line": 1, "Authorization": "Bearer sk-evo-abc"},
        {"event": "intent", "line": 1, "headers": {"authorization": "x"}},
        {"event": "intent", "line": 1, "request": [{"X-Api-Key": "x"}]},
    ],
)
async def test_records_with_credential_keys_are_refused(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        with pytest.raises(ValueError, match="credential"):
            await journal.append(record)

    assert (tmp_path / JOURNAL_FILENAME).read_bytes() == b""


async def test_key_like_strings_are_redacted(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        state = await journal.unknown(1, "sent Authorization: Bearer abc.def with sk-evo-123456")

    text = (tmp_path / JOURNAL_FILENAME).read_text("utf-8")
    assert "abc.def" not in text
    assert "sk-evo-123456" not in text
    assert state.error == "sent Authorization: [redacted] with [redacted]"


async def test_invalid_records_are_refused(tmp_path: Path) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        with pytest.raises(ValueError, match="'event'"):
            await journal.append({"line": 1})
        with pytest.raises(ValueError, match="'line'"):
            await journal.append({"event": "intent", "line": "1"})
        with pytest.raises(TypeError):
            await journal.append({"event": "intent", "line": 1, "x": object()})
        with pytest.raises(ValueError, match="JSON compliant"):
            await journal.append({"event": "intent", "line": 1, "x": float("nan")})

    assert (tmp_path / JOURNAL_FILENAME).read_bytes() == b""


async def test_append_after_close_is_an_error(tmp_path: Path) -> None:
    journal = await Journal.aopen(tmp_path)
    await journal.aclose()

    with pytest.raises(JournalError, match="closed"):
        await journal.intent(1, FP)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_sha256_of_canonical_json() -> None:
    request = {"prompt": "a cat", "model": "sora-2-preview", "duration": 4}
    canonical = b'{"duration":4,"model":"sora-2-preview","prompt":"a cat"}'

    assert fingerprint(request) == hashlib.sha256(canonical).hexdigest()


def test_fingerprint_is_stable_across_key_order_and_absent_none() -> None:
    first = {"model": "sora-2", "prompt": "ü", "image_urls": ["a"], "extra": {"b": 1, "a": 2}}
    second = {"extra": {"a": 2, "b": 1}, "image_urls": ["a"], "prompt": "ü", "model": "sora-2"}

    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) == fingerprint({**second, "callback_url": None})
    assert fingerprint(first) != fingerprint({**second, "prompt": "u"})


# --------------------------------------------------------------------------- errors


def test_journal_errors_pickle() -> None:
    locked = pickle.loads(pickle.dumps(JournalLockedError("/d", 12)))
    corrupt = pickle.loads(pickle.dumps(JournalCorruptError("/d/j", 3, "bad")))

    assert (locked.directory, locked.pid) == ("/d", 12)
    assert (corrupt.path, corrupt.line_number, corrupt.reason) == ("/d/j", 3, "bad")
    assert isinstance(locked, JournalError)
    assert isinstance(corrupt, JournalError)
