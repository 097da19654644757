"""One worker of a shared job vs one batch: the same prompts, the same concurrency.

    python benchmarks/bench_worker.py                   # 100 prompts, concurrency 16
    python benchmarks/bench_worker.py --prompts 200 --concurrency 32 --no-pg

Each contender gets a fresh simulator with the same seed (task k has the same queue and
generation time for everyone) and a fresh output directory:

* ``batch``: ``BatchJob`` over the prompts (its SQLite ledger in the directory);
* ``worker sqlite``: one worker on a job in the directory's SQLite ledger, groups of 8;
* ``worker postgresql``: the same on a throwaway PostgreSQL cluster (tests/pg_support.py);
* ``worker, one group at a time``: ``concurrency=1``, so the next group is claimed only when
  the last one has ended (what a worker did before it kept several groups in flight).

Prints the wall time, clips per minute, the simulator's peak of tasks active at once, and each
contender's time against the batch's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from evolink_async import EvolinkClient
from evolink_async.batch import BatchJob, parse_prompts
from evolink_async.batch.store import LEDGER_FILENAME, LedgerConfig, LedgerStore
from evolink_async.batch.worker import create_job, run_worker
from evolink_async.testing import Simulator

GROUP = 8
Run = Callable[[EvolinkClient, Path], Awaitable[Any]]


def _lines(n: int) -> list[Any]:
    return parse_prompts([f"a clip of benchmark scene {i}" for i in range(1, n + 1)], fmt="txt")


async def _contender(run: Run, args: argparse.Namespace) -> tuple[float, int, int]:
    """Run one contender; returns (seconds, tasks created, peak of active tasks)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Simulator(time_scale=args.scale, seed=args.seed) as sim:
            async with EvolinkClient(
                sim.api_key,
                sim.base_url,
                rate=None,
                max_in_flight=args.concurrency,
                time_scale=args.scale,
            ) as client:
                t0 = time.perf_counter()
                await run(client, Path(tmp))
                elapsed = time.perf_counter() - t0
            return elapsed, len(sim.tasks), sim.stats.peak_active_tasks


def batch(args: argparse.Namespace) -> Run:
    async def run(client: EvolinkClient, out: Path) -> None:
        await BatchJob(client, _lines(args.prompts), out).run()

    return run


def worker(args: argparse.Namespace, url: Callable[[], str] | None, *, concurrency: int) -> Run:
    async def run(client: EvolinkClient, out: Path) -> None:
        where = url() if url is not None else f"sqlite:///{out / LEDGER_FILENAME}"
        async with await LedgerStore.aopen(None, url=where, job="bench") as store:
            price = client.prices.price
            await create_job(store, _lines(args.prompts), lambda r: price(r.model, r.duration))
        config = LedgerConfig(None if url is None else where, "bench")
        await run_worker(client, out, config, group=GROUP, concurrency=concurrency)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scale", type=float, default=0.01, help="simulator time scale")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    contenders: list[tuple[str, Run]] = [
        ("batch", batch(args)),
        ("worker sqlite", worker(args, None, concurrency=args.concurrency)),
    ]
    cluster = None
    if not args.no_pg:
        from pg_support import PgCluster, find_pg_bin  # noqa: PLC0415

        bindir = find_pg_bin()
        if bindir is not None:
            cluster = PgCluster(bindir)
            cluster.start()
            pg = worker(args, cluster.create_database, concurrency=args.concurrency)
            contenders.append(("worker postgresql", pg))
    contenders.append(("worker, one group at a time", worker(args, None, concurrency=1)))
    print(
        f"{args.prompts} prompts, concurrency {args.concurrency}, groups of {GROUP}, "
        f"time scale {args.scale}, seed {args.seed}"
    )
    base = None
    try:
        for name, run in contenders:
            elapsed, created, peak = anyio.run(_contender, run, args)
            base = base or elapsed
            print(
                f"{name:<30} {elapsed:7.2f} s  {created / elapsed * 60:7.1f} clips/min  "
                f"peak {peak:3d} tasks active  x{elapsed / base:.2f} the batch's time"
            )
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
