"""A batch writes through the SQL ledger (SQLite by default, PostgreSQL with a URL), resumes
from it, and imports an old journal.jsonl directory once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_batch import TIME_SCALE, client_for

from evolink_async.batch import BatchJob, parse_prompts
from evolink_async.batch.ledger_journal import LedgerJournal
from evolink_async.batch.store import (
    LEDGER_FILENAME,
    LedgerConfig,
    LedgerStore,
    redact_url,
)
from evolink_async.cli.parser import build_parser
from evolink_async.journal import Journal, replay
from evolink_async.testing import Simulator

PROMPTS = ["one", "two", "three", "four"]


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest) -> LedgerConfig:
    if request.param == "sqlite":
        return LedgerConfig()
    return LedgerConfig(url=request.getfixturevalue("pg_url"), job="clips")


async def ledger_state(out: Path, config: LedgerConfig) -> dict[int, Any]:
    async with await LedgerStore.aopen(out, url=config.url, job=config.job) as store:
        return store.state


async def test_a_batch_writes_the_ledger_and_the_journal_alike(
    tmp_path: Path, config: LedgerConfig
) -> None:
    out = tmp_path / "clips"
    async with Simulator(time_scale=TIME_SCALE, seed=3) as sim, client_for(sim) as client:
        summary = await BatchJob(
            client, parse_prompts(PROMPTS, fmt="txt"), out, ledger=config
        ).run()
    assert summary.ok
    state = await ledger_state(out, config)
    assert replay(out) == state
    assert {"downloaded"} == {s.phase for s in state.values()}
    assert (config.url is None) == (out / LEDGER_FILENAME).exists()


async def test_an_old_journal_directory_resumes_without_paying_twice(
    tmp_path: Path, config: LedgerConfig
) -> None:
    out = tmp_path / "clips"
    lines = parse_prompts(PROMPTS, fmt="txt")
    async with Simulator(time_scale=TIME_SCALE, seed=5) as sim, client_for(sim) as client:
        # what the current release leaves after a crash: line 1 created, nothing else
        task = await client.create_video(prompt="one", model="sora-2-preview")
        with Journal.open(out) as journal:
            await journal.intent(1, lines[0].fingerprint)
            await journal.created(1, task.id, task.credits_reserved)
        assert not (out / LEDGER_FILENAME).exists()
        summary = await BatchJob(client, lines, out, ledger=config).run()
        assert summary.ok
        assert 4 == len(sim.tasks)  # line 1 re-attached, not created again
    state = await ledger_state(out, config)
    assert task.id == state[1].task_id
    assert 1 == state[1].attempts
    assert {"downloaded"} == {s.phase for s in state.values()}


async def test_a_journal_tail_the_ledger_missed_is_imported(
    tmp_path: Path, config: LedgerConfig
) -> None:
    out = tmp_path / "clips"
    async with Simulator(time_scale=TIME_SCALE, seed=3) as sim, client_for(sim) as client:
        await BatchJob(client, parse_prompts(PROMPTS, fmt="txt"), out, ledger=config).run()
    # a crash between the journal write and the ledger commit leaves the journal ahead
    with Journal.open(out) as journal:
        await journal.download_failed(2, replay(out)[2].task_id or "", "disk vanished")
    async with await LedgerJournal.open_ledger(out, config) as mirrored:
        assert "download_failed" == mirrored.state[2].phase
        assert replay(out) == mirrored.state
    again = await ledger_state(out, config)
    assert "download_failed" == again[2].phase


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ledger", "mysql://x/y"], "--ledger: must start with postgresql:// or sqlite:///"),
        (["--job", "a b"], "--job: must be 1-100 letters"),
        (["--job", ""], "--job: must be 1-100 letters"),
    ],
)
def test_bad_ledger_options_are_refused_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["batch", "prompts.txt", "--out", "o", *argv])
    assert 2 == info.value.code
    assert message in capsys.readouterr().err


def test_a_ledger_url_password_never_shows() -> None:
    url = "postgresql://user:hunter2@db.example:5432/jobs"
    assert "postgresql://user:***@db.example:5432/jobs" == redact_url(url)
    assert "hunter2" not in repr(LedgerConfig(url=url, job="j"))
