"""The batch ledger's cost: commits per second and the cost per line on SQLite and PostgreSQL.

A job of ``--lines`` (default 10 000) lines is created in one transaction; then ``--sample``
lines go through a worker's whole cycle, each step its own durable commit as in a run:
claim (a group of 8, so 1/8 of a claim per line), intent, created, finished, downloaded.
Prints the time per step and per line, commits per second, and the headroom at 100 creates
per second (how many times faster than needed the ledger is, one writer; a run writes its
records from one task, so this is the ceiling of one worker process).

    python benchmarks/bench_ledger.py                 # SQLite, and PostgreSQL when initdb is found
    python benchmarks/bench_ledger.py --pg postgresql://user@host/db

PostgreSQL without ``--pg``: a throwaway cluster (tests/pg_support.py) on loopback, fsync on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from evolink_async.batch.claims import claim
from evolink_async.batch.store import LedgerStore, add_requests

GROUP = 8
STEPS = ("claim", "intent", "created", "finished", "downloaded")
TARGET_CREATES = 100.0


def _step(store: LedgerStore, step: str, line: int) -> Any:
    task = f"task-{line}"
    if step == "intent":
        return store.intent(line, "f" * 64, f"k-{line}-1")
    if step == "created":
        return store.created(line, task, 10.0)
    if step == "finished":
        return store.finished(line, task, "completed", url="https://x/")
    return store.downloaded(line, task, "clips/x.mp4", 9, "ab" * 32)


async def measure(
    url: str | None, directory: Path, lines: int, sample: int, grouped: bool
) -> dict[str, float]:
    """``grouped``: the 8 lines of a claim write each step concurrently (group commit);
    else one line after another, one commit per record."""
    store = await LedgerStore.aopen(directory if url is None else None, url=url, job="bench")
    try:
        requests = {n: {"model": "sora-2-preview", "prompt": f"c {n}"} for n in range(1, lines + 1)}
        await add_requests(store, requests, dict.fromkeys(requests, 10.0))
        spent = dict.fromkeys(STEPS, 0.0)
        done = 0
        while done < sample:
            t0 = time.perf_counter()
            got = [c.line for c in await claim(store, "bench", limit=GROUP, lease=60)]
            spent["claim"] += time.perf_counter() - t0
            for step in STEPS[1:]:
                t0 = time.perf_counter()
                if grouped:
                    async with anyio.create_task_group() as tg:
                        for line in got:
                            tg.start_soon(_step, store, step, line)
                else:
                    for line in got:
                        await _step(store, step, line)
                spent[step] += time.perf_counter() - t0
            done += len(got)
    finally:
        await store.aclose()
    per = {step: spent[step] / done for step in STEPS}
    per["line"] = sum(per.values())
    per["records_per_s"] = (done * 4 + done / GROUP) / sum(spent.values())
    return per


def report(name: str, per: dict[str, float]) -> None:
    """One engine's figures (``records/s``: one commit each when not grouped)."""
    steps = "  ".join(f"{s} {per[s] * 1e3:.3f}" for s in STEPS)
    print(f"{name:<20} ms/line: {steps}  = {per['line'] * 1e3:.3f} ms/line")
    lines_per_s = 1.0 / per["line"]
    print(
        f"{'':<20} {per['records_per_s']:.0f} records/s, {lines_per_s:.0f} lines/s: "
        f"headroom x{lines_per_s / TARGET_CREATES:.1f} at {TARGET_CREATES:.0f} creates/s"
    )


def bench_pg(where: Any, args: argparse.Namespace) -> None:
    for grouped in (False, True):
        url = where if isinstance(where, str) else where.create_database()
        per = anyio.run(measure, url, Path("."), args.lines, args.sample, grouped)
        report(f"postgresql{' grouped' if grouped else ''}", per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--pg", metavar="URL", help="an existing PostgreSQL database")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    print(f"{args.lines} lines in the job; {args.sample} through the whole cycle")
    for grouped in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            per = anyio.run(measure, None, Path(tmp), args.lines, args.sample, grouped)
            report(f"sqlite{' grouped' if grouped else ''}", per)
    if args.no_pg:
        return
    if args.pg:
        bench_pg(args.pg, args)
        return
    from pg_support import PgCluster, find_pg_bin  # noqa: PLC0415

    bindir = find_pg_bin()
    if bindir is None:
        print("postgresql: skipped (no initdb; pass --pg URL)")
        return
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        bench_pg(cluster, args)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
