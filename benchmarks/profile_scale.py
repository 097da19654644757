"""Where a task in flight spends its memory and a poll its CPU (issue 16's profiles).

    python benchmarks/profile_scale.py memory --n 10000            # tracemalloc, per task
    python benchmarks/profile_scale.py cpu --n 10000 --poll-rate 1000 --window 10
    python benchmarks/profile_scale.py cpu --n 100 --poll-rate 50 --window 10   # slow polling
    python benchmarks/profile_scale.py get --window 10      # client.get_task flat out, 16 at once

The workload is bench_scale's in-flight one (tasks that never finish, one GET a poll; or
``--batch`` for batch reads), against a simulator in its own process.

* ``memory``: ``tracemalloc`` snapshots before the batch (session warm) and once all N are in
  flight; the top allocation sites of the difference, in bytes per task in flight.
* ``cpu``: ``pyinstrument`` (statistical, 1 ms) over the polling window; the top functions by
  their own time, and the own time by package, in microseconds per poll. Needs
  ``pip install pyinstrument``.
* ``get``: the same over ``client.get_task`` flat out (16 at once, no poller): the request
  path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from _common import SimulatorProcess, all_in_flight, cpu_seconds, run_worker, scale_prompt

THIS = Path(__file__).resolve()
FOREVER = 10_000_000.0
HOLD_KNOBS = {
    "seed": 1,
    "time_scale": 1.0,
    "queue_delay": [0.0, 0.0],
    "generation_time": [FOREVER, FOREVER],
    "credits": 1e12,
}


async def _hold(base_url: str, api_key: str, p: dict[str, Any]) -> dict[str, Any]:
    import tracemalloc  # noqa: PLC0415

    from evolink_async import EvolinkClient, PollPolicy  # noqa: PLC0415

    n, mode = p["n"], p["mode"]
    if mode == "get":
        return await _flat_out(base_url, api_key, p)
    interval = n / p["poll_rate"]
    policy = PollPolicy(
        min_interval=interval, max_interval=interval, first_poll=interval, batch=p["batch"]
    )
    async with EvolinkClient(
        api_key, base_url, rate=None, max_in_flight=None, poll=policy, task_timeout=None
    ) as client:
        await client.get_credits()
        await anyio.lowlevel.checkpoint()  # anyio's backend is imported at its first use
        gc.collect()
        if mode == "memory":
            tracemalloc.start(p["frames"])
            snap0 = tracemalloc.take_snapshot()
        async with all_in_flight(client, n):
            out: dict[str, Any] = {"n": n, "mode": mode}
            if mode == "memory":
                gc.collect()
                snap1 = tracemalloc.take_snapshot()
                tracemalloc.stop()
                out["top"] = _memory_top(snap1.compare_to(snap0, p["group"]), n, p["top"])
            else:
                await asyncio.sleep(interval)  # every task polled once before the window
                out.update(await _cpu_window(client, p, p["top"]))
    return out


async def _flat_out(base_url: str, api_key: str, p: dict[str, Any]) -> dict[str, Any]:
    from evolink_async import EvolinkClient  # noqa: PLC0415

    async with EvolinkClient(api_key, base_url, rate=None, max_in_flight=None) as client:
        ids = [(await client.create_video(prompt=scale_prompt(i))).id for i in range(100)]
        await client.get_task(ids[0])
        stop = False

        class Counted:  # what _cpu_window reads: requests as "polls"
            polls = 0

        counted = Counted()

        async def work() -> None:
            while not stop:
                await client.get_task(ids[counted.polls % len(ids)])
                counted.polls += 1

        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(work)
            holder = type("Holder", (), {"poller": counted})()
            out = await _cpu_window(holder, p, p["top"])
            stop = True
    return {"n": 0, "mode": "get", **out}


def _memory_top(stats: list[Any], n: int, top: int) -> dict[str, Any]:
    total = sum(s.size_diff for s in stats)
    rows = []
    for s in sorted(stats, key=lambda s: -s.size_diff)[:top]:
        frames = [f"{Path(f.filename).name}:{f.lineno}" for f in s.traceback]
        rows.append(
            {
                "bytes_per_task": s.size_diff / n,
                "blocks_per_task": s.count_diff / n,
                "where": " < ".join(frames[:4]),
            }
        )
    return {"total_bytes_per_task": total / n, "rows": rows}


async def _cpu_window(client: Any, p: dict[str, Any], top: int) -> dict[str, Any]:
    from pyinstrument import Profiler  # noqa: PLC0415

    profiler = Profiler(interval=0.001, async_mode="disabled")
    polls0, cpu0 = client.poller.polls, cpu_seconds()
    profiler.start()
    await asyncio.sleep(p["window"])
    profiler.stop()
    polls, cpu = client.poller.polls - polls0, cpu_seconds() - cpu0
    own: Counter[str] = Counter()
    where: Counter[str] = Counter()
    stack = [profiler.last_session.root_frame()] if profiler.last_session else []
    while stack:
        frame = stack.pop()
        if frame is None:
            continue
        stack.extend(frame.children)
        if frame.is_synthetic:
            continue
        name = f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"
        own[name] += frame.total_self_time
        where[_package(frame.file_path or "")] += frame.total_self_time
    sampled = sum(own.values())
    rows = [
        {"own_us_per_poll": t / polls * 1e6 if polls else None, "share": t / sampled, "fn": f}
        for f, t in own.most_common(top)
    ]
    per_poll = {k: v / polls * 1e6 if polls else None for k, v in where.most_common()}
    return {
        "polls": polls,
        "cpu_us_per_poll": cpu / polls * 1e6 if polls else None,
        "rows": rows,
        "by_package_us_per_poll": per_poll,
    }


def _package(path: str) -> str:
    """Which code a frame is in: evolink_async (by module), aiohttp, anyio, asyncio, ..."""
    parts = Path(path).parts
    for name in ("evolink_async", "aiohttp", "anyio", "asyncio", "yarl", "multidict"):
        if name in parts:
            if name == "evolink_async":
                return "evolink_async/" + "/".join(parts[parts.index(name) + 1 :])
            return name
    return "builtins (socket, select)" if not path or path.startswith("<") else Path(path).name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["memory", "cpu", "get"])
    p.add_argument("--n", type=int, default=10_000, help="tasks in flight")
    p.add_argument("--poll-rate", type=float, default=1000.0, help="polls a second")
    p.add_argument("--window", type=float, default=10.0, help="cpu: seconds profiled")
    p.add_argument("--batch", action="store_true", help="batch reads (default: one GET a poll)")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--frames", type=int, default=1, help="memory: traceback depth")
    p.add_argument("--group", default="lineno", help="memory: lineno, traceback or filename")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    params = {
        "n": ns.n,
        "mode": ns.mode,
        "poll_rate": ns.poll_rate,
        "window": ns.window,
        "batch": ns.batch,
        "top": ns.top,
        "frames": ns.frames,
        "group": ns.group,
    }
    if ns.worker:
        url, key = ns.worker.split(" ", 1)
        print(json.dumps(asyncio.run(_hold(url, key, json.loads(ns.params)))))
        return 0
    t0 = time.monotonic()
    with SimulatorProcess(HOLD_KNOBS) as sim:
        worker = f"{sim.base_url} {sim.api_key}"
        result = run_worker(THIS, ["--worker", worker, "--params", json.dumps(params), ns.mode])
    if ns.mode == "memory":
        top = result["top"]
        print(f"{ns.n} in flight: {top['total_bytes_per_task']:.0f} traced bytes per task")
        for r in top["rows"]:
            print(f"{r['bytes_per_task']:8.1f} B {r['blocks_per_task']:6.2f} blk  {r['where']}")
    else:
        print(f"{result['polls']} polls, {result['cpu_us_per_poll']:.0f} us CPU per poll")
        for r in result["rows"]:
            print(f"{r['own_us_per_poll']:8.1f} us {100 * r['share']:5.1f} %  {r['fn']}")
        print("own time by package, us per poll:")
        for name, us in list(result["by_package_us_per_poll"].items())[: ns.top]:
            print(f"{us:8.1f} us  {name}")
    print(f"({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
