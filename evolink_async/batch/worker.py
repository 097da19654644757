"""A worker of a shared job: claim a few lines, run them as a batch, repeat; renew the lease.

:func:`create_job` stores a job's requests (and prices) in the ledger, once; joining an
existing job requires the same requests (its fingerprint). :func:`run_worker` then works on
the job from any machine: it claims up to ``group`` lines under a lease
(:func:`~evolink_async.batch.claims.claim`, which reserves the job's budget in the same
transaction), runs them through :class:`~evolink_async.batch.job.BatchJob` on its own output
directory (writing the shared ledger as it goes), and renews the lease from a background task
while it does. It keeps several groups in flight: it claims the next group whenever fewer than
``concurrency`` of its lines are open (waiting for or holding a task), so one worker keeps the
client's slots as busy as one batch would (:mod:`._crew`). Lines a dead worker held come back
after its lease expires and are planned from what the ledger says: a line with a task id is
re-attached (polled), not created again; an intent-only line is sent again with the
idempotency key its intent recorded (the gateway answers with the original task), or left
``unknown`` when it has none. A worker stops when no claimable
line is left and no live worker holds any.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import JournalError
from ..models import VideoRequest
from ._crew import Crew, WorkerReport
from .claims import claim, heartbeat, release, set_budget
from .input import BatchLine
from .store import LedgerConfig, LedgerStore, add_requests

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["WorkerReport", "create_job", "run_worker", "worker_name"]

#: seconds between looks at the groups' progress while the worker has its fill of lines
_POLL = 0.05
#: lines open at once when the client has no concurrency limit
_DEFAULT_CONCURRENCY = 16


def worker_name() -> str:
    """A name for this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _prompts_sha256(requests: Mapping[int, Mapping[str, Any]]) -> str:
    text = json.dumps(
        {str(n): requests[n] for n in sorted(requests)}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def create_job(
    store: LedgerStore,
    lines: Iterable[BatchLine],
    price: Callable[[VideoRequest], float | None],
    budget: float | None = None,
) -> None:
    """Create the store's job from ``lines``, or join it if it holds the same requests.

    Raises:
        JournalError: the job exists with other requests, or a line has local images to
            upload (a shared job takes URLs only).
    """
    entries = list(lines)
    if any(e.uploads for e in entries):
        raise JournalError("a shared job cannot upload local images: give their URLs instead")
    requests = {e.line: e.request.to_json() for e in entries}
    digest = _prompts_sha256(requests)
    rows = await store.engine.query("SELECT prompts_sha256 FROM jobs WHERE name = ?", (store.job,))
    known = rows[0][0] if rows else None
    if known is not None and known != digest:
        raise JournalError(f"job {store.job!r} exists with other prompts; use another --job name")
    if known is None:
        await add_requests(store, requests, {e.line: price(e.request) or 0.0 for e in entries})
        await store.engine.run(
            [("UPDATE jobs SET prompts_sha256 = ? WHERE name = ?", (digest, store.job))]
        )
    if budget is not None:
        await set_budget(store, budget)


async def _beat(store: LedgerStore, worker: str, lease: float) -> None:
    while True:
        await anyio.sleep(lease / 3)
        await heartbeat(store, worker, lease=lease)


async def _others_alive(store: LedgerStore, worker: str) -> bool:
    """Whether another worker holds unfinished lines under a live lease (they may die, and
    their lines come back)."""
    rows = await store.engine.query(
        "SELECT COUNT(*) FROM lines WHERE job = ? AND worker IS NOT NULL AND worker <> ? "
        "AND lease_until > ? AND phase <> 'downloaded' "
        "AND NOT (phase = 'finished' AND status <> 'completed')",
        (store.job, worker, time.time()),
    )
    return int(rows[0][0]) > 0


async def run_worker(
    client: EvolinkClient,
    out_dir: str | os.PathLike[str],
    config: LedgerConfig,
    *,
    worker: str | None = None,
    group: int = 8,
    lease: float = 30.0,
    idle: float | None = None,
    concurrency: int | None = None,
    **job_options: Any,
) -> WorkerReport:
    """Work on ``config``'s job until nothing is left for anyone (see the module docstring).

    ``job_options`` go to each group's :class:`BatchJob` (``max_attempts``, ``download``...).
    ``concurrency``: lines waiting for or holding a task at once, across the groups in
    flight (default: the client's ``max_in_flight``); the worker claims the next group as soon
    as fewer are open. ``idle``: seconds between looks while other live workers still hold
    lines, or while nothing is claimable (default ``lease / 3``).
    """
    if group < 1:
        raise ValueError(f"group must be at least 1, got {group}")
    report = WorkerReport()
    crew = Crew(client, out_dir, config, job_options, report)
    limit = concurrency if concurrency is not None else _client_concurrency(client)
    async with await LedgerStore.aopen(None, url=_url(config, out_dir), job=config.job) as store:
        name = worker or worker_name()
        async with crew.opened(), anyio.create_task_group() as tg:
            tg.start_soon(_beat, store, name, lease)
            pause = idle if idle is not None else lease / 3
            await _claim_loop(
                store, name, crew, limit=max(1, limit), group=group, lease=lease, pause=pause
            )
            tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await release(store, name, sorted(crew.seen))
    return report


async def _claim_loop(
    store: LedgerStore,
    name: str,
    crew: Crew,
    *,
    limit: int,
    group: int,
    lease: float,
    pause: float,
) -> None:
    """Claim groups while fewer than ``limit`` lines are open; end when nothing is left."""
    async with anyio.create_task_group() as groups:
        while True:
            if crew.open_lines() >= limit:
                await crew.changed(_POLL)  # a line ended, or a group
                continue
            # lines stay held (the lease renewed) until the worker ends: a line it left
            # unknown is not claimed again by it, nor by another live worker
            got = await claim(store, name, limit=group, lease=lease)
            fresh = [c for c in got if c.line not in crew.seen]
            if fresh:
                await crew.start(groups, fresh)
                continue
            if crew.running:
                await crew.changed(pause)
            elif await _others_alive(store, name):
                await anyio.sleep(pause)
            else:
                break


def _client_concurrency(client: EvolinkClient) -> int:
    slots = client.limits.concurrency
    return slots.configured if slots is not None else _DEFAULT_CONCURRENCY


def _url(config: LedgerConfig, out_dir: str | os.PathLike[str]) -> str:
    if config.url is not None:
        return config.url
    return f"sqlite:///{Path(out_dir) / 'ledger.sqlite'}"
