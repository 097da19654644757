"""Claims, leases, takeover and the job's budget (evolink_async.batch.claims), on both engines.

Time is a fake clock (``now=``); the race test runs real processes against the real database.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

import anyio
import pytest
from pg_support import Opener
from test_journal import FP

from evolink_async.batch.claims import (
    cancel_job,
    claim,
    heartbeat,
    job_counts,
    release,
    set_budget,
)
from evolink_async.batch.store import LedgerStore, add_requests


def requests(n: int) -> dict[int, dict[str, str]]:
    return {line: {"prompt": f"clip {line}", "model": "sora-2-preview"} for line in range(1, n + 1)}


async def test_two_workers_never_hold_the_same_line(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(10))
        a = await claim(store, "a", limit=4, lease=10, now=0)
        b = await claim(store, "b", limit=4, lease=10, now=1)
        c = await claim(store, "c", limit=4, lease=10, now=2)
    assert [1, 2, 3, 4] == [x.line for x in a]
    assert [5, 6, 7, 8] == [x.line for x in b]
    assert [9, 10] == [x.line for x in c]
    assert {"prompt": "clip 1", "model": "sora-2-preview"} == a[0].request


async def test_takeover_by_lease_expiry(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(4))
        await claim(store, "a", limit=2, lease=10, now=0)  # lines 1, 2
        await claim(store, "b", limit=2, lease=10, now=0)  # lines 3, 4
        await store.intent(1, FP, key="k-1-1")
        await store.created(2, "task-2", 10.0)
        assert 2 == await heartbeat(store, "a", lease=10, now=8)  # a lives on, until 18
        assert [] == await claim(store, "c", limit=4, lease=10, now=9.5)  # nothing expired yet
        taken = await claim(store, "c", limit=4, lease=10, now=12)  # b's expired at 10
        assert [(3, "pending", True), (4, "pending", True)] == [
            (x.line, x.phase, x.taken_over) for x in taken
        ]
        late = await claim(store, "d", limit=4, lease=10, now=19)  # a stopped beating at 8
        assert [(1, "intent", None), (2, "created", "task-2")] == [
            (x.line, x.phase, x.task_id) for x in late
        ]
        assert 0 == await heartbeat(store, "a", lease=10, now=20)  # a holds nothing now
        keys = await store.engine.query("SELECT idempotency_key FROM attempts WHERE line = 1")
    assert [("k-1-1",)] == keys  # the new owner resends line 1 with this key


async def test_done_lines_are_never_claimed(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(3))
        await store.intent(1, FP)
        await store.created(1, "t1", 1.0)
        await store.finished(1, "t1", "completed", url="https://cdn/1")
        await store.downloaded(1, "t1", "clips/1.mp4", 10, "ab" * 32)
        await store.intent(2, FP)
        await store.created(2, "t2", 1.0)
        await store.finished(2, "t2", "failed", error={"code": "content_policy_violation"})
        got = await claim(store, "a", limit=10, lease=10, now=0)
    assert [3] == [x.line for x in got]


async def test_the_budget_is_reserved_with_the_claim(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(6), {n: 10.0 for n in range(1, 7)})
        await set_budget(store, 35.0)
        a = await claim(store, "a", limit=2, lease=10, now=0)
        b = await claim(store, "b", limit=4, lease=10, now=0)
        c = await claim(store, "c", limit=4, lease=10, now=0)
        counts = await job_counts(store)
        # a's lease expires; its reserved lines are taken over without reserving again
        d = await claim(store, "d", limit=4, lease=10, now=11)
        after = await job_counts(store)
    assert [1, 2] == [x.line for x in a]
    assert [3] == [x.line for x in b]  # 30 reserved; a fourth line would make 40 > 35
    assert [] == c
    assert 30.0 == counts.reserved
    assert {1, 2, 3} == {x.line for x in d}
    assert 30.0 == after.reserved
    assert {"a", "b", "d"} == set(after.workers)  # c claimed nothing: no lease


async def test_a_cancelled_job_stops_new_creates_only(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(3))
        await store.intent(2, FP)
        await store.created(2, "t2", 1.0)
        await cancel_job(store)
        got = await claim(store, "a", limit=10, lease=10, now=0)
        counts = await job_counts(store)
    assert [2] == [x.line for x in got]
    assert counts.cancelled
    assert {"pending": 2, "created": 1} == dict(counts.phases)


async def test_a_cancelled_job_does_not_create_a_line_claimed_before(
    tmp_path: Path, open_ledger: Opener
) -> None:
    """A line claimed (and reserved) before the cancel, given back unsent, is not claimed
    again to be created."""
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(2), {1: 10.0, 2: 10.0})
        await claim(store, "a", limit=1, lease=100, now=0)
        await release(store, "a", [1])
        await cancel_job(store)
        got = await claim(store, "b", limit=10, lease=100, now=1)
    assert [] == got


async def test_released_lines_are_claimable_at_once(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(2))
        await claim(store, "a", limit=2, lease=100, now=0)
        await release(store, "a", [2])
        got = await claim(store, "b", limit=2, lease=100, now=1)
    assert [(2, False)] == [(x.line, x.taken_over) for x in got]


# --------------------------------------------------------------------------- a real race

LINES = 300
ROUNDS = 60


def _race_worker(
    directory: str, url: str | None, name: str, barrier: Barrier, conn: object
) -> None:
    async def main() -> list[list[int]]:
        store = await LedgerStore.aopen(
            None, url=url or f"sqlite:///{directory}/race.sqlite", job="race"
        )
        rounds: list[list[int]] = []
        try:
            for _ in range(ROUNDS):
                await anyio.to_thread.run_sync(barrier.wait)
                got = await claim(store, name, limit=3, lease=1000, now=0)
                rounds.append([c.line for c in got])
        finally:
            await store.aclose()
        return rounds

    conn.send(anyio.run(main))  # type: ignore[attr-defined]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_started_at_the_same_instant_never_claim_the_same_line(
    tmp_path: Path,
    ledger_url: str | None,
    workers: int,
) -> None:
    async def setup() -> None:
        url = ledger_url or f"sqlite:///{tmp_path}/race.sqlite"
        async with await LedgerStore.aopen(None, url=url, job="race") as store:
            await add_requests(store, requests(LINES))

    anyio.run(setup)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
    procs = [
        ctx.Process(target=_race_worker, args=(str(tmp_path), ledger_url, f"w{i}", barrier, send))
        for i, (_, send) in enumerate(pipes)
    ]
    for proc in procs:
        proc.start()
    try:
        results = [recv.recv() for recv, _ in pipes]
    finally:
        for proc in procs:
            proc.join(timeout=60)
    claimed = [line for rounds in results for got in rounds for line in got]
    assert len(claimed) == len(set(claimed))  # no line claimed twice
    assert set(range(1, min(LINES, ROUNDS * 3 * workers) + 1)) == set(claimed)
    assert all(0 == proc.exitcode for proc in procs)
