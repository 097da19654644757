"""A worker of a shared job: claim a few lines, run them as a batch, repeat; renew the lease.

:func:`create_job` stores a job's requests (and prices) in the ledger, once; joining an
existing job requires the same requests (its fingerprint). :func:`run_worker` then works on
the job from any machine: it claims up to ``group`` lines under a lease
(:func:`~evolink_async.batch.claims.claim`, which reserves the job's budget in the same
transaction), runs them through :class:`~evolink_async.batch.job.BatchJob` on its own output
directory (writing the shared ledger as it goes), and renews the lease from a background task
while it does. Lines a dead worker held come back after its lease expires and are planned
from what the ledger says: a line with a task id is re-attached (polled), not created again;
an intent-only line is left ``unknown`` (never resubmitted silently) unless the run retries
unknown lines. A worker stops when no claimable line is left and no live worker holds any.
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
import attrs

from ..errors import JournalError
from ..models import VideoRequest
from .claims import Claim, claim, heartbeat, release, set_budget
from .input import BatchLine
from .job import BatchJob
from .store import LedgerConfig, LedgerStore, add_requests

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["WorkerReport", "create_job", "run_worker", "worker_name"]


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


@attrs.define
class WorkerReport:
    """What one worker did: groups run, lines it worked on, lines it took over."""

    groups: int = 0
    lines: list[int] = attrs.Factory(list)
    taken_over: list[int] = attrs.Factory(list)


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
    **job_options: Any,
) -> WorkerReport:
    """Work on ``config``'s job until nothing is left for anyone (see the module docstring).

    ``job_options`` go to each group's :class:`BatchJob` (``max_attempts``, ``download``...).
    ``idle``: seconds between looks while other live workers still hold lines (default
    ``lease / 3``).
    """
    name = worker or worker_name()
    report = WorkerReport()
    seen: set[int] = set()
    async with await LedgerStore.aopen(None, url=_url(config, out_dir), job=config.job) as store:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_beat, store, name, lease)
            while True:
                # lines stay held (the lease renewed) until the worker ends: a line it left
                # unknown is not claimed again by it, nor by another live worker
                got = await claim(store, name, limit=group, lease=lease)
                fresh = [c for c in got if c.line not in seen]
                if not fresh:
                    if not await _others_alive(store, name):
                        break
                    await anyio.sleep(idle if idle is not None else lease / 3)
                    continue
                await _run_group(client, out_dir, config, fresh, job_options)
                seen.update(c.line for c in fresh)
                report.groups += 1
                report.lines.extend(c.line for c in fresh)
                report.taken_over.extend(c.line for c in fresh if c.taken_over)
            tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await release(store, name, sorted(seen))
    return report


def _url(config: LedgerConfig, out_dir: str | os.PathLike[str]) -> str:
    if config.url is not None:
        return config.url
    return f"sqlite:///{Path(out_dir) / 'ledger.sqlite'}"


async def _run_group(
    client: EvolinkClient,
    out_dir: str | os.PathLike[str],
    config: LedgerConfig,
    claims: list[Claim],
    job_options: Mapping[str, Any],
) -> None:
    lines = [BatchLine(c.line, VideoRequest.from_json(c.request or {})) for c in claims]
    job = BatchJob(client, lines, out_dir, ledger=config, **job_options)
    await job.run()
