"""A job's credits in the ledger, on both engines: reservations settled per line in the
transaction that records the line's end (final charge, refund), and the schema migration that
brings a version-1 ledger to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pg_support import Opener
from test_journal import FP

from evolink_async.batch.claims import claim, job_counts, set_budget
from evolink_async.batch.store import LedgerStore, add_requests


def requests(n: int) -> dict[int, dict[str, str]]:
    return {line: {"prompt": f"clip {line}", "model": "sora-2-preview"} for line in range(1, n + 1)}


async def line_credits(store: LedgerStore) -> dict[int, tuple[Any, Any]]:
    rows = await store.engine.query(
        "SELECT line, reserved, charged FROM lines WHERE job = ? ORDER BY line", (store.job,)
    )
    return {int(n): (r, c) for n, r, c in rows}


async def assert_sums(store: LedgerStore) -> tuple[float, float]:
    """The job's totals are the sums of its lines' columns; returns them."""
    [(reserved, charged)] = await store.engine.query(
        "SELECT COALESCE(SUM(reserved), 0), COALESCE(SUM(charged), 0) FROM lines WHERE job = ?",
        (store.job,),
    )
    counts = await job_counts(store)
    assert (pytest.approx(float(reserved)), pytest.approx(float(charged))) == (
        counts.reserved,
        counts.charged,
    )
    return counts.reserved, counts.charged


async def run_six_lines(store: LedgerStore) -> None:
    """Six claimed lines of 10 credits, each ending another way."""
    await add_requests(store, requests(6), {n: 10.0 for n in range(1, 7)})
    await claim(store, "w", limit=6, lease=100, now=0)
    for n in range(1, 7):
        await store.intent(n, FP, key=f"k-{n}")
    await store.created(1, "t1", 9.0)
    await store.finished(1, "t1", "completed", url="https://cdn/1", credits=12.5)  # final charge
    await store.created(2, "t2", 9.0)
    await store.finished(2, "t2", "completed", url="https://cdn/2")  # no final figure
    await store.created(3, "t3", 9.0)
    await store.finished(3, "t3", "failed", error={"code": "content_policy_violation"})
    await store.created(4, "t4", 9.0)
    await store.finished(4, "t4", "cancelled", error={"code": "request_cancelled"})
    await store.unknown(5, "no answer to the create")  # it may have been taken: kept
    await store.created(6, "t6", 9.0)
    await store.finished(6, "t6", "failed", error={"code": "server_busy"}, retry=True)


async def test_a_line_s_end_settles_its_reservation(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await run_six_lines(store)
        lines = await line_credits(store)
        totals = await assert_sums(store)
        # the same records again (a resumed run re-journals an end): nothing moves twice
        await store.finished(1, "t1", "completed", url="https://cdn/1", credits=12.5)
        await store.finished(3, "t3", "failed", error={"code": "content_policy_violation"})
        again = await assert_sums(store)
    assert (0.0, 12.5) == lines[1]  # charged the service's final figure
    assert (0.0, 9.0) == lines[2]  # charged what the service reserved at the create
    assert (0.0, 0.0) == lines[3]  # failed: refunded, released
    assert (0.0, 0.0) == lines[4]  # cancelled: refunded, released
    assert (10.0, None) == lines[5]  # unknown: stays reserved
    assert (10.0, None) == lines[6]  # failed, created again at once: stays reserved
    assert (20.0, 21.5) == totals == again


async def test_released_credits_pay_for_other_lines(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(4), {n: 10.0 for n in range(1, 5)})
        await set_budget(store, 20.0)
        first = await claim(store, "a", limit=4, lease=100, now=0)
        assert [] == await claim(store, "b", limit=4, lease=100, now=0)  # 20 of 20 reserved
        await store.intent(1, FP)
        await store.created(1, "t1", 10.0)
        await store.finished(1, "t1", "failed", error={"code": "content_policy_violation"})
        await store.intent(2, FP)
        await store.created(2, "t2", 10.0)
        await store.finished(2, "t2", "completed", url="https://cdn/2", credits=4.0)
        more = await claim(store, "b", limit=4, lease=100, now=1)
        totals = await assert_sums(store)
    assert [1, 2] == [c.line for c in first]
    assert [3] == [c.line for c in more]  # 4 charged + 10 reserved; a 4th line would be 24
    assert (10.0, 4.0) == totals


async def test_a_new_intent_on_a_released_line_reserves_again(
    tmp_path: Path, open_ledger: Opener
) -> None:
    async with await open_ledger(tmp_path) as store:
        await add_requests(store, requests(1), {1: 10.0})
        await claim(store, "a", limit=1, lease=100, now=0)
        await store.intent(1, FP)
        await store.finished(1, "t1", "rejected", error={"code": "invalid_request"})
        released = await assert_sums(store)
        await store.intent(1, FP)  # sent again: held again until it ends
        held = await assert_sums(store)
    assert (0.0, 0.0) == released
    assert (10.0, 0.0) == held


async def test_a_batch_ledger_counts_its_charges(tmp_path: Path, open_ledger: Opener) -> None:
    """A plain batch never claims: its lines hold no reservation, completions are charged."""
    async with await open_ledger(tmp_path) as store:
        await store.intent(1, FP)
        await store.created(1, "t1", 23.04)
        await store.finished(1, "t1", "completed", url="https://cdn/1", credits=20.0)
        await store.intent(2, FP)
        await store.created(2, "t2", 23.04)
        await store.finished(2, "t2", "failed", error={"code": "content_policy_violation"})
        totals = await assert_sums(store)
    assert (0.0, 20.0) == totals


# --------------------------------------------------------------------------- migration


async def _as_version_1(store: LedgerStore) -> None:
    """Turn the store's database into what the first release wrote: no ``lines.charged``
    (nor ``host``, ``out_dir``),
    ``jobs.charged`` 0, and every claimed line's reservation kept whatever its end."""
    await store.engine.run(
        [
            ("ALTER TABLE lines DROP COLUMN charged", ()),
            ("ALTER TABLE lines DROP COLUMN host", ()),
            ("ALTER TABLE lines DROP COLUMN out_dir", ()),
            ("UPDATE lines SET reserved = price WHERE reserved IS NOT NULL", ()),
            (
                "UPDATE jobs SET charged = 0, reserved = "
                "(SELECT SUM(reserved) FROM lines WHERE lines.job = jobs.name)",
                (),
            ),
            ("UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version'", ()),
        ]
    )


async def test_a_version_1_ledger_is_migrated(tmp_path: Path, open_ledger: Opener) -> None:
    async with await open_ledger(tmp_path) as store:
        await run_six_lines(store)
        await _as_version_1(store)
        [(v1_reserved,)] = await store.engine.query("SELECT reserved FROM jobs")
    async with await open_ledger(tmp_path) as store:
        lines = await line_credits(store)
        totals = await assert_sums(store)
        [(version,)] = await store.engine.query(
            "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
        )
    async with await open_ledger(tmp_path) as store:  # opened again: migrated once only
        assert totals == await assert_sums(store)
    assert 60.0 == v1_reserved  # the first release kept every reservation
    assert "2" == version
    # version 1 kept no final charge: a completed line is charged what its create reserved
    assert (0.0, 9.0) == lines[1] == lines[2]
    assert (0.0, 0.0) == lines[3] == lines[4]
    assert (10.0, None) == lines[5]
    assert (0.0, 0.0) == lines[6]  # a failed end without the retry flag: released
    assert (10.0, 18.0) == totals
