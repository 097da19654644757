"""Shared jobs: ``worker`` joins a job; ``job status|export|cancel`` watch and steer it;
``batch PROMPTS --ledger postgresql://... --job NAME`` creates (or joins) it and works on it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..batch import BatchLine
from ..batch.claims import cancel_job, job_counts
from ..batch.store import LedgerConfig, LedgerStore, redact_url
from ..batch.worker import create_job, run_worker, worker_name
from ..errors import JournalError
from .app import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, Interrupts, UsageError, err, run, service

__all__ = ["add_job", "add_worker", "job_command", "shared_batch", "worker_command"]


def _add_ledger(parser: argparse.ArgumentParser, *, required: bool) -> None:
    from .parser import job_name, ledger_url  # noqa: PLC0415 - parser imports this module

    parser.add_argument("--ledger", type=ledger_url, required=required, metavar="URL",
                        help="the job's ledger: postgresql://...")  # fmt: skip
    parser.add_argument("--job", type=job_name, required=True, metavar="NAME",
                        help="the job's name in the ledger")  # fmt: skip


def add_worker(sub: Any) -> None:
    from .parser import add_connection  # noqa: PLC0415

    worker = sub.add_parser(
        "worker",
        help="join a shared job and work on it",
        description="Claim lines of a job kept in PostgreSQL, a few at a time, and generate "
        "them into --out; a worker that dies loses its lines to the others.",
    )
    _add_ledger(worker, required=True)
    worker.add_argument("--out", type=Path, required=True, metavar="DIR", help="clips go here")
    worker.add_argument("--group", type=int, default=8, metavar="N", help="lines per claim")
    worker.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                        help="lease of claimed lines, renewed every third of it")  # fmt: skip
    worker.add_argument("--concurrency", type=int, default=16, metavar="N",
                        help="tasks in flight at once; the worker claims the next group while "
                        "fewer of its lines are open")  # fmt: skip
    add_connection(worker)
    worker.set_defaults(handler=worker_command)


def add_job(sub: Any) -> None:
    job = sub.add_parser(
        "job",
        help="watch or steer a shared job",
        description="status: counts by state, credits, workers, ETA; export: the job's "
        "manifest (JSON lines) on stdout; cancel: no new creates, for every worker.",
    )
    job.add_argument("action", choices=("status", "export", "cancel"))
    _add_ledger(job, required=True)
    job.set_defaults(handler=job_command)


async def _work(args: argparse.Namespace, lines: list[BatchLine] | None) -> int:
    config = LedgerConfig(args.ledger, args.job)
    async with service(args, max_in_flight=args.concurrency) as client:
        if lines is not None:
            async with await LedgerStore.aopen(None, url=args.ledger, job=args.job) as store:
                await create_job(
                    store,
                    lines,
                    lambda r: client.prices.price(r.model, r.duration),
                    getattr(args, "budget", None),
                )
        name = worker_name()
        print(f"worker {name}: job {args.job} on {redact_url(args.ledger)}", flush=True)
        report = await run_worker(
            client, args.out, config, worker=name, group=getattr(args, "group", 8),
            lease=getattr(args, "lease", 30.0),
        )  # fmt: skip
    print(f"worker {name}: {len(report.lines)} lines in {report.groups} groups, "
          f"{len(report.taken_over)} taken over", flush=True)  # fmt: skip
    return EXIT_OK


def _guarded(args: argparse.Namespace, lines: list[BatchLine] | None) -> int:
    async def command(interrupts: Interrupts) -> int:
        try:
            return await _work(args, lines)
        except UsageError:
            return EXIT_USAGE
        except JournalError as exc:
            err(str(exc))
            return EXIT_SOME_FAILED

    return run(command)


def worker_command(args: argparse.Namespace) -> int:
    """Join ``--job`` in ``--ledger`` and work until nothing is left."""
    return _guarded(args, None)


def shared_batch(args: argparse.Namespace, lines: list[BatchLine]) -> int:
    """``batch --ledger postgresql://...``: create or join the job, then work on it."""
    return _guarded(args, lines)


def job_command(args: argparse.Namespace) -> int:
    """``job status|export|cancel``."""

    async def command(interrupts: Interrupts) -> int:
        try:
            async with await LedgerStore.aopen(None, url=args.ledger, job=args.job) as store:
                if args.action == "cancel":
                    await cancel_job(store)
                    print(f"job {args.job}: cancelled (no new creates)")
                elif args.action == "export":
                    await _export(store)
                else:
                    await _status(store)
        except JournalError as exc:
            err(str(exc))
            return EXIT_SOME_FAILED
        return EXIT_OK

    return run(command)


_STATUS = {"downloaded": "completed", "pending": "skipped", "intent": "unknown"}


async def _export(store: LedgerStore) -> None:
    """One manifest entry per line of the job; ``path`` where its clip was downloaded (on
    ``host``), ``credits`` what it was charged (completed) or reserved."""
    rows = await store.engine.query(
        "SELECT line, request, phase, status, task_id, path, url, error, attempts, "
        "COALESCE(charged, credits), host, out_dir FROM lines WHERE job = ? ORDER BY line",
        (store.job,),
    )
    for line, request, phase, status, task_id, path, url, error, attempts, *more in rows:
        credits, host, out_dir = more
        prompt = json.loads(request).get("prompt") if request else None
        where = path if path is None or out_dir is None else str(Path(out_dir) / path)
        entry = {
            "line": int(line), "prompt": prompt,
            "status": _STATUS.get(phase) or status or phase, "task_id": task_id,
            "video": None if path is None else Path(path).name, "path": where, "url": url,
            "error": None if error is None else json.loads(error),
            "attempts": int(attempts), "credits": credits, "host": host,
        }  # fmt: skip
        sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")


async def _status(store: LedgerStore) -> None:
    counts = await job_counts(store)
    total = sum(counts.phases.values())
    done = counts.phases.get("downloaded", 0) + counts.phases.get("finished", 0)
    print(f"job {store.job}: {done}/{total} done" + (" (cancelled)" if counts.cancelled else ""))
    for phase, n in sorted(counts.phases.items()):
        print(f"  {phase:<16}{n}")
    budget = "unlimited" if counts.budget is None else f"{counts.budget:g}"
    print(f"credits: reserved {counts.reserved:g}, charged {counts.charged:g}, budget {budget}")
    now = time.time()
    for worker, beat in sorted(counts.workers.items()):
        when = dt.datetime.fromtimestamp(beat, dt.timezone.utc).isoformat(timespec="seconds")
        print(f"worker {worker}: last heartbeat {when} ({now - beat:.0f}s ago)")
    first = await store.engine.query("SELECT MIN(ts) FROM events WHERE job = ?", (store.job,))
    print(f"eta: {_eta(first[0][0], done, total, now)}")


def _eta(first: str | None, done: int, total: int, now: float) -> str:
    if first is None or done == 0:
        return "unknown"
    elapsed = now - dt.datetime.fromisoformat(first).timestamp()
    remaining = (total - done) * elapsed / done
    return f"{remaining:.0f}s" if done < total else "done"
