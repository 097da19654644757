"""The client's own cost as work grows: tasks in flight, a long prompt stream, and the CPU of one
request against a bare aiohttp loop.

    python benchmarks/bench_scale.py --quick          # under a minute
    python benchmarks/bench_scale.py                  # full: 100 000-line stream, longer windows
    python benchmarks/bench_scale.py --json out.json

Three parts, each run in a fresh client process against a simulator in its own process:

1. **in flight**: 100, 1 000 and 10 000 tasks held in flight at once (task durations of months,
   so none finish; polls slowed with ``PollPolicy`` to a fixed total rate). Figures: RSS per
   in-flight task, peak RSS, asyncio tasks alive, CPU per poll. The full profile adds a
   100 000-task point (``--big``) with batch reads on, every task read once a minute.
2. **stream**: a 100 000-line prompt file streamed lazily through ``generate_many`` while the
   simulator answers almost at once; RSS sampled every 10 000 outcomes.
3. **floor**: the GETs the SDK's poller sent, replayed by a bare aiohttp loop at the same
   offsets (for the 10 000 run, and in the full profile for a slow run of 50 polls a second
   too), and flat out against ``client.get_task``; the SDK's CPU per request as a ratio. The
   full profile runs these pairs in 5 rounds (``--rounds``) and gives the median ratio and
   each round's, since one round's ratio moves by up to 20 % on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from _common import (
    SimulatorProcess,
    all_in_flight,
    cpu_seconds,
    current_rss_bytes,
    machine_info,
    peak_rss_mb,
    print_table,
    run_worker,
    scale_prompt,
    sdk_info,
    usage,
    usage_per,
    write_json,
)

THIS = Path(__file__).resolve()
MB = 1024 * 1024
MODEL = "sora-2-preview"
#: the SDK's poll workers (PollPolicy.workers default): the floor uses as many connections
WORKERS = 16

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "sizes": [100, 1_000, 10_000],
        "window_s": 3.0,
        "poll_rate": 2000.0,
        "stream_lines": 4_000,
        "sample_every": 400,
        "stream_in_flight": 100,
        "low_rate": None,
        "big": None,
        "big_interval": 60.0,
        "rounds": 1,
        "floor_tasks": None,
    },
    "full": {
        "sizes": [100, 1_000, 10_000],
        "window_s": 10.0,
        "poll_rate": 1000.0,
        "stream_lines": 100_000,
        "sample_every": 10_000,
        "stream_in_flight": 100,
        "low_rate": 50.0,
        "big": 100_000,
        "big_interval": 60.0,
        "rounds": 5,
        "floor_tasks": None,
    },
}

#: tasks that never finish while measured (service seconds)
FOREVER = 10_000_000.0


def _settle_memory() -> int:
    gc.collect()
    return current_rss_bytes()


# -- workers (each in its own process) ------------------------------------------------------------


async def worker_in_flight(
    base_url: str, api_key: str, n: int, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Hold ``n`` tasks in flight; measure memory, asyncio tasks and CPU per poll."""
    from evolink_async import EvolinkClient, PollPolicy  # noqa: PLC0415

    # every task is polled every `interval` seconds: n / interval = poll_rate polls a second;
    # one GET a poll (no batch reads), so that CPU per poll stays the cost of one request.
    # With `batch` (the 100 000 point), due tasks share batch reads of up to 50 and every task
    # is read every `interval` seconds.
    batch_reads = bool(cfg.get("batch"))
    interval = cfg["interval"] if batch_reads else n / cfg["poll_rate"]
    policy = PollPolicy(
        min_interval=interval, max_interval=interval, first_poll=interval, batch=batch_reads
    )
    async with EvolinkClient(
        api_key, base_url, rate=None, max_in_flight=None, poll=policy, task_timeout=None
    ) as client:
        await client.get_credits()  # warm the session up: its cost is not per task
        await anyio.lowlevel.checkpoint()  # and anyio's backend, imported at its first use
        rss0 = _settle_memory()
        tasks0 = len(asyncio.all_tasks())
        t0 = time.monotonic()
        async with all_in_flight(client, n):
            created_s = time.monotonic() - t0
            rss1 = _settle_memory()
            tasks_alive = len(asyncio.all_tasks())
            # a task's first poll comes `interval` after its create: a window of at least one
            # interval from now sees every task polled about once per interval
            window = cfg["window_s"] if batch_reads else max(cfg["window_s"], interval)
            if batch_reads:  # the window starts once the first task created has been read
                await asyncio.sleep(max(0.0, interval - created_s + 1.0))
            polls0, use0, w0 = client.poller.polls, usage(), time.monotonic()
            await asyncio.sleep(window)
            polls1, w1 = client.poller.polls, time.monotonic()
            split = usage_per(use0, polls1 - polls0)
            rss2 = _settle_memory()
            in_flight_end = client.in_flight
    polls = polls1 - polls0
    return {
        "in_flight": n,
        "in_flight_at_end": in_flight_end,
        "create_s": created_s,
        "rss_before_mb": rss0 / MB,
        "rss_in_flight_mb": rss1 / MB,
        "rss_after_window_mb": rss2 / MB,
        "rss_per_task_kb": (rss1 - rss0) / n / 1024,
        "peak_rss_mb": peak_rss_mb(),
        "asyncio_tasks_before": tasks0,
        "asyncio_tasks_alive": tasks_alive,
        "poll_interval_s": interval,
        "batch_reads": batch_reads,
        "polls": polls,
        "polls_per_s": polls / (w1 - w0),
        "cpu_per_poll_us": split["cpu_s"] / polls * 1e6 if polls else None,
        "cpu_util": split["cpu_s"] / (w1 - w0),
        **split,
        "window": [w0, w1],
    }


async def worker_stream(base_url: str, api_key: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Stream a prompt file through generate_many; sample RSS every ``sample_every`` outcomes."""
    from evolink_async import EvolinkClient  # noqa: PLC0415

    lines, every = cfg["stream_lines"], cfg["sample_every"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.txt"
        with path.open("w") as f:
            for i in range(lines):
                f.write(scale_prompt(i) + "\n")

        def read_lines() -> Iterator[str]:
            with path.open() as f:
                for line in f:
                    yield line.rstrip("\n")

        samples: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        async with EvolinkClient(
            api_key,
            base_url,
            rate=None,
            max_in_flight=cfg["stream_in_flight"],
            time_scale=cfg["stream_time_scale"],
        ) as client:
            await client.get_credits()
            await anyio.lowlevel.checkpoint()
            rss0 = _settle_memory()
            cpu0, t0 = cpu_seconds(), time.monotonic()
            done = 0
            async for outcome in client.generate_many(read_lines()):
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
                done += 1
                if done % every == 0:
                    samples.append(
                        {
                            "outcomes": done,
                            "rss_mb": _settle_memory() / MB,
                            "elapsed_s": time.monotonic() - t0,
                            "asyncio_tasks": len(asyncio.all_tasks()),
                        }
                    )
            cpu, wall = cpu_seconds() - cpu0, time.monotonic() - t0
            requests = client.transport.requests
    return {
        "lines": lines,
        "outcomes": counts,
        "rss_start_mb": rss0 / MB,
        "samples": samples,
        "wall_s": wall,
        "outcomes_per_s": lines / wall,
        "requests": requests,
        "cpu_per_outcome_us": cpu / lines * 1e6,
        "cpu_per_request_us": cpu / requests * 1e6 if requests else None,
        "peak_rss_mb": peak_rss_mb(),
    }


async def worker_raw(
    base_url: str, api_key: str, count: int, schedule: list[float] | None, tasks: int = 100
) -> dict[str, Any]:
    """A bare aiohttp loop: ``count`` GETs of task states over WORKERS connections, request
    ``i`` sent ``schedule[i]`` seconds after the start (None: flat out), reading ``tasks``
    tasks in turn (created first, WORKERS at a time)."""
    import aiohttp  # noqa: PLC0415

    if schedule is not None:
        count = len(schedule)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as session:
        ids: list[str] = []

        async def create(first: int) -> None:
            for i in range(first, tasks, WORKERS):
                body = {"model": MODEL, "prompt": scale_prompt(i)}
                async with session.post("/v1/videos/generations", json=body) as resp:
                    ids.append((await resp.json())["id"])

        await asyncio.gather(*(create(k) for k in range(WORKERS)))
        async with session.get(f"/v1/tasks/{ids[0]}") as resp:
            await resp.json()
        next_i = 0
        t0 = time.monotonic() + 0.01
        use0 = usage()

        async def work() -> None:
            nonlocal next_i
            while next_i < count:
                i = next_i
                next_i += 1
                if schedule is not None:
                    delay = t0 + schedule[i] - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                async with session.get(f"/v1/tasks/{ids[i % len(ids)]}") as resp:
                    resp.raise_for_status()
                    await resp.json()

        await asyncio.gather(*(work() for _ in range(WORKERS)))
        wall, split = time.monotonic() - t0, usage_per(use0, count)
    result = {"requests": count, "cpu_per_request_us": split["cpu_s"] / count * 1e6, "wall_s": wall}
    return {**result, "tasks": len(ids), **split}


async def worker_sdk_get(base_url: str, api_key: str, count: int) -> dict[str, Any]:
    """``client.get_task`` flat out over WORKERS coroutines: the SDK's request path alone."""
    from evolink_async import EvolinkClient  # noqa: PLC0415

    async with EvolinkClient(api_key, base_url, rate=None, max_in_flight=None) as client:
        ids = [(await client.create_video(prompt=scale_prompt(i))).id for i in range(100)]
        await client.get_task(ids[0])
        next_i = 0
        t0, use0 = time.monotonic(), usage()

        async def work() -> None:
            nonlocal next_i
            while next_i < count:
                i = next_i
                next_i += 1
                await client.get_task(ids[i % len(ids)])

        await asyncio.gather(*(work() for _ in range(WORKERS)))
        wall, split = time.monotonic() - t0, usage_per(use0, count)
    result = {"requests": count, "cpu_per_request_us": split["cpu_s"] / count * 1e6, "wall_s": wall}
    return {**result, **split}


def worker_main(kind: str, base_url: str, api_key: str, params: dict[str, Any]) -> None:
    import aiohttp  # noqa: F401, PLC0415 - imported before any figure is taken

    if kind != "raw":
        import evolink_async  # noqa: F401, PLC0415
    if kind == "in-flight":
        result = asyncio.run(worker_in_flight(base_url, api_key, params["n"], params))
    elif kind == "stream":
        result = asyncio.run(worker_stream(base_url, api_key, params))
    elif kind == "raw":
        schedule = None
        if params.get("schedule_file"):
            schedule = json.loads(Path(params["schedule_file"]).read_text())
        count, tasks = params.get("count", 0), params.get("tasks", 100)
        result = asyncio.run(worker_raw(base_url, api_key, count, schedule, tasks))
    elif kind == "sdk-get":
        result = asyncio.run(worker_sdk_get(base_url, api_key, params["count"]))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(result))


# -- the orchestrator ----------------------------------------------------------------------------

HOLD_KNOBS = {
    "seed": 1,
    "time_scale": 1.0,
    "queue_delay": [0.0, 0.0],
    "generation_time": [FOREVER, FOREVER],
    "credits": 1e12,
}


def run(
    kind: str, knobs: dict[str, Any], params: dict[str, Any], *, request_times: bool = False
) -> dict[str, Any]:
    """One worker against a fresh simulator; with ``request_times``, the result also has the
    simulator's arrival times of the API requests (``time.monotonic``, the same clock)."""
    with SimulatorProcess(knobs) as sim:
        args = ["--worker", kind, "--base-url", sim.base_url, "--api-key", sim.api_key]
        result = run_worker(THIS, [*args, "--params", json.dumps(params)])
        if request_times:
            result["request_times"] = sim.stats()["request_times"]
    return result


def replay_floor(ref: dict[str, Any], tasks: int | None) -> dict[str, Any]:
    """A bare aiohttp loop sending the GETs an in-flight run's poller sent, at the same
    offsets (the cost of a request depends on the pace: at a few dozen a second each one pays
    a cold wake-up, while polls that fall due together share one), over as many distinct tasks
    as the run held (``tasks``: another number)."""
    w0, w1 = ref["window"]
    schedule = [t - w0 for t in ref["request_times"] if w0 <= t < w1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schedule.json"
        path.write_text(json.dumps(schedule))
        params = {"schedule_file": str(path), "tasks": tasks or ref["in_flight"]}
        return run("raw", HOLD_KNOBS, params)


def floor_round(cfg: dict[str, Any], ref: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One round of the floor: the SDK's poller at the largest size (``ref``: a run already
    made) and, in the full profile, slowly; each replayed by a bare aiohttp loop; then
    ``client.get_task`` and the bare loop flat out."""
    if ref is None:
        ref = run("in-flight", HOLD_KNOBS, {**cfg, "n": cfg["sizes"][-1]}, request_times=True)
    refs = [(f"{ref['in_flight']:,} in flight, {cfg['poll_rate']:.0f}/s", ref)]
    if cfg.get("low_rate"):
        params = {**cfg, "n": 100, "poll_rate": cfg["low_rate"]}
        low = run("in-flight", HOLD_KNOBS, params, request_times=True)
        refs.append((f"100 in flight, slow, {cfg['low_rate']:.0f}/s", low))
    rows = []
    for label, r in refs:
        paced = replay_floor(r, cfg.get("floor_tasks"))
        r.pop("request_times", None)
        rows.append(_floor_row(f"SDK poller, {label}", r["polls"], r["cpu_per_poll_us"], r, paced))
    count = ref["polls"]
    flat = run("raw", HOLD_KNOBS, {"count": count})
    sdk = run("sdk-get", HOLD_KNOBS, {"count": count})
    what = f"client.get_task flat out, {WORKERS} at once"
    rows.append(_floor_row(what, count, sdk["cpu_per_request_us"], sdk, flat))
    return rows


def _floor_row(
    what: str, count: int, sdk_us: float, sdk: dict[str, Any], raw: dict[str, Any]
) -> dict[str, Any]:
    split = ("user_us", "sys_us", "switches")
    return {
        "what": what,
        "requests": count,
        "sdk_cpu_per_request_us": sdk_us,
        "raw_cpu_per_request_us": raw["cpu_per_request_us"],
        "raw_tasks": raw.get("tasks"),
        "sdk_split": {k: sdk.get(k) for k in split},
        "raw_split": {k: raw.get(k) for k in split},
        "ratio": sdk_us / raw["cpu_per_request_us"],
    }


def merge_rounds(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row a pace: the medians over the rounds, and each round's ratio."""
    by_what: dict[str, list[dict[str, Any]]] = {}
    for rows in rounds:
        for row in rows:
            by_what.setdefault(row["what"], []).append(row)
    merged = []
    for what, rows in by_what.items():
        merged.append(
            {
                "what": what,
                "requests": rows[0]["requests"],
                "raw_tasks": rows[0].get("raw_tasks"),
                **{
                    key: statistics.median(r[key] for r in rows)
                    for key in ("sdk_cpu_per_request_us", "raw_cpu_per_request_us", "ratio")
                },
                "ratio_range": " ".join(f"{r['ratio']:.2f}" for r in rows),
                "rounds": rows,
            }
        )
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--quick", action="store_true", help="under 60 s")
    prof.add_argument("--full", action="store_true", help="100 000-line stream (default)")
    p.add_argument("--sizes", help="comma-separated in-flight sizes (default 100,1000,10000)")
    p.add_argument(
        "--big",
        type=int,
        help="the in-flight point with batch reads (full 100 000, quick none; 0: skip)",
    )
    p.add_argument("--lines", type=int, help="stream length (quick 4 000, full 100 000)")
    p.add_argument("--rounds", type=int, help="rounds of the CPU floor (quick 1, full 5)")
    p.add_argument(
        "--floor-tasks",
        type=int,
        help="distinct tasks the bare loop's replay reads (default: as many as the SDK held)",
    )
    p.add_argument("--sample-every", type=int, help="RSS sample period, in outcomes")
    p.add_argument(
        "--window", type=float, help="seconds of polling measured, at least one poll interval"
    )
    p.add_argument(
        "--poll-rate", type=float, help="polls a second in flight (quick 2000, full 1000)"
    )
    p.add_argument(
        "--stream-time-scale",
        type=float,
        default=0.001,
        help="time scale of the stream's simulator (0.001: a 1 s task takes 1 ms)",
    )
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    ns, unknown = p.parse_known_args(argv)
    if ns.worker:
        worker_main(ns.worker, ns.base_url, ns.api_key, json.loads(ns.params))
        return 0
    if unknown:
        print(f"bench_scale: ignoring unknown arguments {unknown}", file=sys.stderr)

    profile = "quick" if ns.quick else "full"
    cfg = dict(PROFILES[profile])
    if ns.sizes:
        cfg["sizes"] = [int(s) for s in ns.sizes.split(",")]
    for key, value in (
        ("stream_lines", ns.lines),
        ("sample_every", ns.sample_every),
        ("window_s", ns.window),
        ("poll_rate", ns.poll_rate),
        ("big", ns.big),
        ("rounds", ns.rounds),
        ("floor_tasks", ns.floor_tasks),
    ):
        if value is not None:
            cfg[key] = value
    cfg["stream_time_scale"] = ns.stream_time_scale
    load = machine_info()["loadavg"][0]
    print(f"bench_scale [{profile}]: {json.dumps(cfg)} (load average {load:g})", flush=True)
    failures: list[str] = []
    machine_before = machine_info()
    t_start = time.monotonic()

    # 1. tasks in flight
    in_flight: list[dict[str, Any]] = []
    for n in cfg["sizes"]:
        try:
            in_flight.append(run("in-flight", HOLD_KNOBS, {**cfg, "n": n}, request_times=True))
        except Exception as exc:
            print(f"  in flight {n}: could not run: {exc}", file=sys.stderr)
            failures.append(f"in-flight-{n}")
            continue
        r = in_flight[-1]
        print(f"  {n} in flight: created in {r['create_s']:.1f} s, {r['polls']} polls", flush=True)
    if cfg.get("big"):
        n = cfg["big"]
        params = {**cfg, "n": n, "batch": True, "interval": cfg["big_interval"]}
        try:
            in_flight.append(run("in-flight", HOLD_KNOBS, params, request_times=True))
        except Exception as exc:
            print(f"  in flight {n}: could not run: {exc}", file=sys.stderr)
            failures.append(f"in-flight-{n}")
        else:
            r = in_flight[-1]
            print(f"  {n} in flight (batch reads): created in {r['create_s']:.1f} s", flush=True)
    for prev, cur in itertools.pairwise(in_flight):
        growth = cur["rss_in_flight_mb"] - cur["rss_before_mb"]
        growth -= prev["rss_in_flight_mb"] - prev["rss_before_mb"]
        cur["rss_marginal_kb"] = growth * 1024 / (cur["in_flight"] - prev["in_flight"])
    print_table(
        in_flight,
        [
            ("in_flight", "in flight"),
            ("rss_before_mb", "RSS before MB"),
            ("rss_in_flight_mb", "RSS loaded MB"),
            ("rss_per_task_kb", "KB/task"),
            ("rss_marginal_kb", "marginal KB/task"),
            ("peak_rss_mb", "peak RSS MB"),
            ("asyncio_tasks_alive", "asyncio tasks"),
            ("batch_reads", "batch reads"),
            ("polls_per_s", "polls/s"),
            ("cpu_per_poll_us", "CPU us/poll"),
            ("cpu_util", "client CPU"),
        ],
        title="tasks in flight (none finish; every task read every n/poll_rate s, one GET a "
        "read; with batch reads every big_interval s, 50 tasks a read)",
    )

    # 2. the prompt stream
    stream: dict[str, Any] | None = None
    knobs = {
        "seed": 1,
        "time_scale": cfg["stream_time_scale"],
        "queue_delay": [0.0, 0.0],
        "generation_time": [1.0, 1.0],
        "estimate_error": 0.0,
        "credits": 1e12,
    }
    try:
        stream = run("stream", knobs, cfg)
    except Exception as exc:
        print(f"  stream: could not run: {exc}", file=sys.stderr)
        failures.append("stream")
    if stream is not None:
        samples = stream["samples"]
        base = samples[0]["rss_mb"] if samples else stream["rss_start_mb"]
        for s in samples:
            s["growth_mb"] = s["rss_mb"] - base
        if len(samples) >= 2:
            span = samples[-1]["outcomes"] - samples[0]["outcomes"]
            stream["growth_mb"] = samples[-1]["rss_mb"] - samples[0]["rss_mb"]
            stream["growth_bytes_per_outcome"] = stream["growth_mb"] * MB / span
        print_table(
            samples,
            [
                ("outcomes", "outcomes"),
                ("rss_mb", "RSS MB"),
                ("growth_mb", "vs first MB"),
                ("asyncio_tasks", "asyncio tasks"),
                ("elapsed_s", "elapsed s"),
            ],
            title=f"stream of {stream['lines']:,} prompts (RSS at start "
            f"{stream['rss_start_mb']:.1f} MB, {stream['outcomes_per_s']:.0f} outcomes/s, "
            f"{stream['cpu_per_request_us']:.0f} us CPU/request, outcomes {stream['outcomes']})",
        )

    # 3. the raw aiohttp floor, in rounds (the ratio of one round moves by +-20 % on a shared
    # machine): each round runs the SDK and the bare loop back to back
    floor: list[dict[str, Any]] = []
    singles = [r for r in in_flight if not r["batch_reads"]]
    rounds: list[list[dict[str, Any]]] = []
    for i in range(cfg["rounds"]):
        try:
            rounds.append(floor_round(cfg, singles[-1] if singles and i == 0 else None))
        except Exception as exc:
            print(f"  floor round {i + 1}: could not run: {exc}", file=sys.stderr)
            failures.append(f"floor-{i + 1}")
            continue
        ratios = ", ".join(f"{r['ratio']:.2f}" for r in rounds[-1])
        print(f"  floor round {i + 1}: ratios {ratios}", flush=True)
    floor = merge_rounds(rounds)
    if floor:
        print_table(
            floor,
            [
                ("what", "GET /v1/tasks/{id}"),
                ("requests", "requests"),
                ("raw_tasks", "raw tasks"),
                ("sdk_cpu_per_request_us", "SDK us/req"),
                ("raw_cpu_per_request_us", "raw aiohttp us/req"),
                ("ratio", "ratio"),
                ("ratio_range", "ratio each round"),
            ],
            title=f"CPU per request against a bare aiohttp loop, median of {len(rounds)} rounds "
            "(the poller's GETs replayed at the same offsets; and flat out)",
        )
    print(f"total {time.monotonic() - t_start:.0f} s real")
    for r in in_flight:
        r.pop("request_times", None)
    if ns.json:
        write_json(
            ns.json,
            {
                "workload": {
                    "profile": profile,
                    **cfg,
                    "machine": machine_before,
                    "loadavg_after": machine_info()["loadavg"],
                    "sdk": sdk_info(),
                },
                "results": {
                    "in_flight": in_flight,
                    "stream": stream,
                    "floor": floor,
                },
                "failed": failures,
            },
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
