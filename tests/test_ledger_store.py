"""The SQL ledger store (evolink_async.batch.store): one schema, the same tests on both engines.

``open_ledger`` is parametrized over SQLite (``<dir>/ledger.sqlite``) and a real PostgreSQL
cluster (tests/pg_support.py); no mock stands in for either database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from pg_support import Opener
from test_journal import EVERY_PHASE, FP, write_every_phase

from evolink_async.batch.journal import Journal
from evolink_async.batch.store import LEDGER_FILENAME, LedgerStore, add_requests, read_requests
from evolink_async.errors import JournalError, JournalLockedError


async def rows(store: LedgerStore, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return await store.engine.query(sql, params)


async def test_every_phase_survives_a_reopen(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await write_every_phase(store)  # type: ignore[arg-type]  # the journal's interface
        assert EVERY_PHASE == store.state
    async with await open_ledger(tmp_path) as again:
        assert EVERY_PHASE == again.state
        events = await rows(
            again, "SELECT event, line FROM events WHERE job = ? ORDER BY id", "default"
        )
        assert [("intent", 1), ("created", 1), ("finished", 1), ("downloaded", 1)] == events[:4]
        assert 12 == len(events)


async def test_lines_table_holds_the_folded_columns(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await write_every_phase(store)  # type: ignore[arg-type]
        got = await rows(
            store,
            "SELECT line, phase, task_id, attempts, status, size, credits, error FROM lines "
            "WHERE job = ? ORDER BY line",
            "default",
        )
    assert (1, "downloaded", "task-unified-1-aaaaaaaa", 1, "completed", 1234, 23.04, None) == got[0]
    assert {"code": "content_policy_violation", "message": "no"} == json.loads(got[4][7])
    assert [1, 2, 3, 4, 5] == [row[0] for row in got]


async def test_each_attempt_keeps_its_idempotency_key(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await store.intent(7, FP, key="job-7-1")
        await store.unknown(7, "timeout")
        state = await store.intent(7, FP, key="job-7-2")
        got = await rows(
            store,
            "SELECT attempt, idempotency_key FROM attempts WHERE line = ? ORDER BY attempt",
            7,
        )
    assert 2 == state.attempts
    assert [(1, "job-7-1"), (2, "job-7-2")] == got


async def test_concurrent_intents_share_transactions(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        engine = store.engine
        transactions = 0
        real_run = engine.run

        async def counting_run(ops: Any) -> None:
            nonlocal transactions
            transactions += 1
            await real_run(ops)

        engine.run = counting_run  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            for n in range(1, 51):
                tg.start_soon(store.intent, n, FP)
        assert set(range(1, 51)) == set(store.state)
    async with await open_ledger(tmp_path) as again:
        assert set(range(1, 51)) == {n for n, s in again.state.items() if s.phase == "intent"}
    assert 1 <= transactions <= 2  # the 50 intents are grouped, not one transaction each


async def test_jobs_are_separate(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path / "a", job="one") as one:
        await one.intent(1, FP)
    async with await open_ledger(tmp_path / "b", job="two") as two:
        assert {} == two.state
        await two.intent(2, FP)
    async with await open_ledger(tmp_path / "a", job="one") as one:
        assert [1] == list(one.state)


async def test_requests_are_stored_and_pending_lines_have_no_state(
    tmp_path: Path, open_ledger: Opener
) -> None:
    requests = {1: {"prompt": "a cat", "duration": 4}, 2: {"prompt": "un chien é"}}
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests)
        await add_requests(store, {1: {"prompt": "ignored: line 1 keeps its request"}})
        assert {} == store.state
        await store.intent(2, FP)
    async with await open_ledger(tmp_path) as again:
        assert requests == await read_requests(again)
        assert [2] == list(again.state)


async def test_secrets_are_refused_and_redacted(tmp_path: Path, open_ledger: Opener) -> None:
    key = "sk-" + "x" * 40
    async with await open_ledger(tmp_path) as store:
        with pytest.raises(ValueError, match="credential"):
            await store.append({"event": "note", "api_key": key})
        await store.unknown(3, f"Authorization: Bearer {key} was refused")
        text = json.dumps(await rows(store, "SELECT * FROM events"))
        text += json.dumps(await rows(store, "SELECT * FROM lines"))
    assert key not in text
    assert "unknown" in text


async def test_a_closed_ledger_refuses_appends(tmp_path: Path, open_ledger: Opener) -> None:
    store = await open_ledger(tmp_path)
    await store.aclose()
    await store.aclose()  # idempotent
    assert store.closed
    with pytest.raises(JournalError, match="closed"):
        await store.intent(1, FP)


async def test_the_directory_is_locked_while_open(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path):
        with pytest.raises(JournalLockedError) as info:
            await open_ledger(tmp_path)
        assert os.getpid() == info.value.pid
        with pytest.raises(JournalLockedError):
            await Journal.aopen(tmp_path)  # the same lock as the journal's
    async with await open_ledger(tmp_path):
        pass


async def test_an_old_journal_is_imported_once(tmp_path: Path, open_ledger: Opener) -> None:
    async with await Journal.aopen(tmp_path) as journal:
        await write_every_phase(journal)
    async with await open_ledger(tmp_path) as store:
        assert EVERY_PHASE == store.state
        await store.intent(3, FP)
    async with await open_ledger(tmp_path) as again:  # not imported a second time
        assert 2 == again.state[3].attempts
        assert EVERY_PHASE[1] == again.state[1]
        count = await rows(again, "SELECT COUNT(*) FROM events")
    assert [(13,)] == count


def test_the_sqlite_ledger_is_in_wal_mode(tmp_path: Path) -> None:
    async def go() -> None:
        async with await LedgerStore.aopen(tmp_path) as store:
            assert tmp_path / LEDGER_FILENAME == store.path
            assert [("wal",)] == await store.engine.query("PRAGMA journal_mode")
            assert [(2,)] == await store.engine.query("PRAGMA synchronous")  # FULL

    anyio.run(go)


_WRITER = textwrap.dedent(
    """
    import sys, anyio
    from evolink_async.batch.store import LedgerStore

    async def main(directory, url):
        store = await LedgerStore.aopen(directory, url=url or None)
        n = 0
        while True:
            n += 1
            await store.intent(n, "f" * 64, key=f"k-{n}")
            print(n, flush=True)

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


def test_an_acknowledged_intent_survives_sigkill(
    tmp_path: Path, ledger_url: str | None, open_ledger: Opener
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), ledger_url or ""],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            acknowledged = 0
            while acknowledged < 30:
                acknowledged = int(proc.stdout.readline())
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    async def check() -> None:
        async with await open_ledger(tmp_path) as store:
            assert set(range(1, acknowledged + 1)) <= set(store.state)
            keys = await rows(store, "SELECT line, idempotency_key FROM attempts WHERE line <= 30")
        assert {(n, f"k-{n}") for n in range(1, 31)} == set(keys)

    anyio.run(check)
