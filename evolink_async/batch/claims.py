"""Workers sharing one job: claims under leases, heartbeats, and the job's budget.

A worker claims a few lines at a time (:func:`claim`): in one transaction it picks lines that
are not done and that no live lease holds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
workers claiming at the same instant skip each other's rows instead of waiting or sharing
them; SQLite serialises writers with ``BEGIN IMMEDIATE``), reserves the price of each line
that still needs a create against the job's budget, and writes its name and lease expiry
on them. :func:`heartbeat` renews a worker's lease on its lines; a worker that stops renewing
(it died) loses them when the lease expires, and the next claim by any worker takes them
over, whatever their phase: a line with a task id is polled by its new owner, an intent-only
line is resent with the same idempotency key (the ledger keeps it per attempt).

The budget counts what the job's lines hold: the price reserved at the claim while a line's
outcome is open, its final charge once completed, nothing once it failed or was cancelled
(the gateway refunds those); the ledger settles a line's credits in the transaction that
records its end (:mod:`._ledger_ops`).

Time is passed in (``now``, seconds), so tests drive it with a fake clock.

Lines that are done (never claimed again): ``downloaded``, and ``finished`` with a status
other than ``completed``. Everything else (``pending``, ``intent``, ``unknown``, ``created``,
``finished``/completed, ``download_failed``) still needs a worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import attrs

from ._sql import Cursor
from .store import LedgerStore

__all__ = [
    "Claim",
    "JobCounts",
    "cancel_job",
    "claim",
    "heartbeat",
    "job_counts",
    "release",
    "set_budget",
]

_CLAIMABLE = (
    "job = ? AND phase <> 'downloaded' AND NOT (phase = 'finished' AND status <> 'completed') "
    "AND (worker IS NULL OR lease_until IS NULL OR lease_until <= ?)"
)


@attrs.frozen
class Claim:
    """A line a worker now holds: its number, phase, task id (if any) and request."""

    line: int
    phase: str
    task_id: str | None
    request: dict[str, Any] | None
    taken_over: bool  # another worker held it before its lease expired


async def claim(
    store: LedgerStore,
    worker: str,
    *,
    limit: int = 8,
    lease: float = 30.0,
    now: float | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` lines for ``worker`` until ``now + lease``; reserve the budget of
    those still to create in the same transaction. Returns nothing once the job is cancelled
    (new creates stop) except lines already past their create."""
    at = time.time() if now is None else now
    job = store.job
    postgres = store.engine.dialect == "postgresql"
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    row_lock = " FOR UPDATE" if postgres else ""

    async def body(cur: Cursor) -> list[Claim]:
        # the job's row is locked first: claims of one job take turns on the budget
        jobs = await cur.execute(
            f"SELECT budget, reserved + charged, cancelled FROM jobs WHERE name = ?{row_lock}",
            (job,),
        )
        budget, used, cancelled = jobs[0]
        rows = await cur.execute(
            "SELECT line, phase, task_id, request, price, reserved, worker FROM lines WHERE "
            f"{_CLAIMABLE} ORDER BY line LIMIT ?{lock}",
            (job, at, limit),
        )
        taken: list[Claim] = []
        spent, added = float(used), 0.0  # used: reserved for open lines, charged for done ones
        for line, phase, task_id, request, price, held, owner in rows:
            if cancelled and phase == "pending":  # never sent: a cancelled job creates nothing
                continue
            needs_create = phase == "pending" and held is None  # (reserved by an earlier claim)
            cost = float(price or 0.0) if needs_create else 0.0
            if needs_create and budget is not None and spent + cost > float(budget) + 1e-9:
                continue  # over budget: left for a run with more budget
            if needs_create:
                spent += cost
                added += cost
                await cur.execute(
                    "UPDATE lines SET reserved = ? WHERE job = ? AND line = ?", (cost, job, line)
                )
            request_value = None if request is None else json.loads(request)
            stolen = owner is not None and owner != worker
            taken.append(Claim(int(line), phase, task_id, request_value, stolen))
        if not taken:
            return []
        marks = ", ".join("?" for _ in taken)
        await cur.execute(
            f"UPDATE lines SET worker = ?, lease_until = ? WHERE job = ? AND line IN ({marks})",
            (worker, at + lease, job, *(c.line for c in taken)),
        )
        await cur.execute("UPDATE jobs SET reserved = reserved + ? WHERE name = ?", (added, job))
        await _beat(cur, job, worker, at, lease)
        return taken

    result: list[Claim] = await store.engine.transaction(body)
    return result


async def _beat(cur: Cursor, job: str, worker: str, at: float, lease: float) -> None:
    await cur.execute(
        "INSERT INTO leases (job, worker, heartbeat, expires) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (job, worker) DO UPDATE SET heartbeat = excluded.heartbeat, "
        "expires = excluded.expires",
        (job, worker, at, at + lease),
    )


async def heartbeat(
    store: LedgerStore, worker: str, *, lease: float = 30.0, now: float | None = None
) -> int:
    """Renew ``worker``'s lease on the lines it still holds; returns how many it holds.
    A line another worker took over (the lease had expired) is not renewed."""
    at = time.time() if now is None else now
    job = store.job

    async def body(cur: Cursor) -> int:
        await _beat(cur, job, worker, at, lease)
        await cur.execute(
            "UPDATE lines SET lease_until = ? WHERE job = ? AND worker = ?",
            (at + lease, job, worker),
        )
        rows = await cur.execute(
            "SELECT COUNT(*) FROM lines WHERE job = ? AND worker = ?", (job, worker)
        )
        return int(rows[0][0])

    count: int = await store.engine.transaction(body)
    return count


async def release(store: LedgerStore, worker: str, lines: list[int]) -> None:
    """Give ``lines`` back (e.g. a worker stopping cleanly): claimable at once by others."""
    if not lines:
        return
    marks = ", ".join("?" for _ in lines)
    await store.engine.run(
        [
            (
                f"UPDATE lines SET worker = NULL, lease_until = NULL "
                f"WHERE job = ? AND worker = ? AND line IN ({marks})",
                (store.job, worker, *lines),
            )
        ]
    )


async def set_budget(store: LedgerStore, budget: float | None) -> None:
    """Set the job's budget (None: unlimited)."""
    await store.engine.run([("UPDATE jobs SET budget = ? WHERE name = ?", (budget, store.job))])


async def cancel_job(store: LedgerStore) -> None:
    """Stop new creates for every worker of the job (lines already created still finish)."""
    await store.engine.run([("UPDATE jobs SET cancelled = 1 WHERE name = ?", (store.job,))])


@attrs.frozen
class JobCounts:
    """What ``job status`` shows: lines by phase, credits, workers and their heartbeats.

    ``reserved``: credits held for lines whose outcome is still open (claimed to create, in
    flight, or unknown); ``charged``: the final charges of completed lines (a failed or
    cancelled line was refunded: it holds nothing). The budget counts both."""

    phases: Mapping[str, int]
    budget: float | None
    reserved: float
    charged: float
    cancelled: bool
    workers: Mapping[str, float]  # worker → last heartbeat (epoch seconds)


async def job_counts(store: LedgerStore) -> JobCounts:
    """Read the job's counts (one snapshot per query; for display)."""
    job = store.job
    engine = store.engine
    phases = await engine.query(
        "SELECT phase, COUNT(*) FROM lines WHERE job = ? GROUP BY phase", (job,)
    )
    [(budget, reserved, charged, cancelled)] = await engine.query(
        "SELECT budget, reserved, charged, cancelled FROM jobs WHERE name = ?", (job,)
    )
    workers = await engine.query("SELECT worker, heartbeat FROM leases WHERE job = ?", (job,))
    return JobCounts(
        phases={str(p): int(n) for p, n in phases},
        budget=None if budget is None else float(budget),
        reserved=float(reserved),
        charged=float(charged),
        cancelled=bool(cancelled),
        workers={str(w): float(h) for w, h in workers},
    )
