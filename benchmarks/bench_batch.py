"""A batch against the simulator: evolink-async vs the fixed-interval pollers users write today,
and vs the lower bound of an ideal client.

    python benchmarks/bench_batch.py --quick          # all contenders in under a minute
    python benchmarks/bench_batch.py                  # the full profile (N = 1000, concurrency 50)
    python benchmarks/bench_batch.py --json out.json  # also write the figures

Each contender gets a fresh simulator (its own process, same seed: task number k has the same
queue time and generation time for everyone) and runs in a fresh client process, so that its
CPU time (getrusage) and peak RSS are its own. Times are reported in the *service's* seconds
(real seconds / time scale), the time the fixed pollers' intervals are written in.

Contenders live in ``CONTENDERS``; adding one is a decorated coroutine (see ``register``).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import importlib
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    SimulatorProcess,
    cpu_seconds,
    machine_info,
    peak_rss_mb,
    percentile,
    print_table,
    run_worker,
    sdk_info,
    write_json,
)

THIS = Path(__file__).resolve()
LOWER_BOUND = "lower-bound"
#: task ids one batch read carries (POST /v1/tasks/batch)
BATCH_READ = 50
MODEL = "sora-2-preview"


# -- the workload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One batch. Durations and rates are in the service's seconds; ``time_scale`` is real
    seconds per service second (0.03: a 200 s task takes 6 real seconds)."""

    profile: str
    n: int
    concurrency: int
    rate: float  # the service's limit, requests per service second
    client_rate: float  # the SDK's rate setting, requests per service second
    time_scale: float
    gen_min: float
    gen_max: float
    queue_min: float
    queue_max: float
    estimate_error: float
    seed: int

    def simulator_knobs(self) -> dict[str, Any]:
        """The simulator's knobs: its rate window is one service second."""
        return {
            "seed": self.seed,
            "time_scale": self.time_scale,
            "generation_time": [self.gen_min, self.gen_max],
            "queue_delay": [self.queue_min, self.queue_max],
            "estimate_error": self.estimate_error,
            "max_concurrent": self.concurrency,
            "rate_limit": max(1, round(self.rate)),
            "rate_window": self.time_scale,
            "credits": 1e9,
        }


PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"n": 50, "concurrency": 10, "time_scale": 0.008},
    "full": {"n": 1000, "concurrency": 50, "time_scale": 0.03},
}


@dataclass(frozen=True)
class Context:
    """What a contender gets in its client process."""

    workload: Workload
    base_url: str
    api_key: str
    #: figures a contender may add to its result (shown in the JSON under "extra")
    extra: dict[str, Any] = field(default_factory=dict)

    def prompts(self) -> Iterator[str]:
        for i in range(self.workload.n):
            yield f"benchmark clip {i}: a paper boat drifting down a rainy street, close-up"

    def scaled(self, service_seconds: float) -> float:
        """Service seconds in real seconds."""
        return service_seconds * self.workload.time_scale


# -- contenders ----------------------------------------------------------------------------------

#: What a contender's coroutine returns: at least ``completed`` and ``requests`` (its own count).
ContenderResult = dict[str, Any]


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    run: Callable[[Context], Awaitable[ContenderResult]]
    #: extra simulator knobs this contender needs (e.g. ``{"allow_insecure_callbacks": True}``)
    simulator_knobs: Mapping[str, Any] = field(default_factory=dict)
    #: run when no ``--contenders`` are given
    default: bool = True
    #: modules imported before the client's CPU time is counted (import time is not its cost)
    imports: tuple[str, ...] = ("aiohttp",)


CONTENDERS: dict[str, Contender] = {}


def register(
    name: str,
    description: str,
    *,
    simulator_knobs: Mapping[str, Any] | None = None,
    default: bool = True,
    imports: tuple[str, ...] = ("aiohttp",),
) -> Callable[[Callable[[Context], Awaitable[ContenderResult]]], Any]:
    """Add a contender: ``@register("name", "what it is")`` on ``async def run(ctx)``."""

    def deco(
        fn: Callable[[Context], Awaitable[ContenderResult]],
    ) -> Callable[[Context], Awaitable[ContenderResult]]:
        if name in CONTENDERS or name == LOWER_BOUND:
            raise ValueError(f"contender {name!r} registered twice")
        CONTENDERS[name] = Contender(
            name, description, fn, dict(simulator_knobs or {}), default, imports
        )
        return fn

    return deco


@register(
    "evolink-async",
    "generate_many, SDK defaults (target 5 % of the duration, batch reads); limits, time_scale",
    imports=("aiohttp", "evolink_async"),
)
async def run_evolink(ctx: Context) -> ContenderResult:
    return await _run_evolink(ctx, None)


@register(
    "evolink-target-1s",
    "generate_many with PollPolicy(target_delay=1): a 1 s detection target, batch reads",
    imports=("aiohttp", "evolink_async"),
)
async def run_evolink_target_1s(ctx: Context) -> ContenderResult:
    return await _run_evolink(ctx, 1.0)


async def _run_evolink(ctx: Context, target_delay: float | None) -> ContenderResult:
    from evolink_async import EvolinkClient, PollPolicy  # noqa: PLC0415 - in the worker only

    w = ctx.workload
    counts: Counter[str] = Counter()
    async with EvolinkClient(
        ctx.api_key,
        ctx.base_url,
        rate=w.client_rate / w.time_scale,  # the SDK's rate is per local second
        max_in_flight=w.concurrency,
        time_scale=w.time_scale,
        poll=PollPolicy(target_delay=target_delay),
    ) as client:
        batch = client.generate_many(ctx.prompts())
        async for outcome in batch:
            counts[outcome.status] += 1
        stats = batch.stats()
        ctx.extra.update(
            outcomes=dict(counts),
            polls=client.poller.polls,
            batch_reads=client.poller.reader.batch_reads,
            single_reads=client.poller.reader.single_reads,
            retries=stats.retries,
            client_rate_limited=stats.rate_limited,
        )
        return {"completed": counts["completed"], "requests": client.transport.requests}


class _PlainPoller:
    """What a user writes with aiohttp: one coroutine per prompt, an ``asyncio.Semaphore`` for
    the concurrency, poll every ``interval()`` seconds; on 429/5xx sleep Retry-After, retry."""

    def __init__(self, ctx: Context, interval: Callable[[], float]) -> None:
        self.ctx = ctx
        self.interval = interval
        self.requests = 0
        self.statuses: Counter[int] = Counter()

    async def run(self) -> ContenderResult:
        import aiohttp  # noqa: PLC0415 - imported in the worker only

        ctx = self.ctx
        headers = {"Authorization": f"Bearer {ctx.api_key}"}
        sem = asyncio.Semaphore(ctx.workload.concurrency)

        async with aiohttp.ClientSession(ctx.base_url, headers=headers) as session:

            async def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
                while True:
                    async with session.request(method, path, json=body) as resp:
                        self.requests += 1
                        self.statuses[resp.status] += 1
                        if resp.status == 429 or resp.status >= 500:
                            # honoured as given, like the SDK does: the simulator states
                            # Retry-After in whole real seconds
                            retry_after = float(resp.headers.get("Retry-After", "1"))
                            await asyncio.sleep(retry_after)
                            continue
                        resp.raise_for_status()
                        data: dict[str, Any] = await resp.json()
                        return data

            async def generate(prompt: str) -> dict[str, Any]:
                async with sem:
                    body = {"model": MODEL, "prompt": prompt}
                    task = await call("POST", "/v1/videos/generations", body)
                    while task["status"] not in ("completed", "failed", "cancelled"):
                        await asyncio.sleep(self.interval())
                        task = await call("GET", f"/v1/tasks/{task['id']}")
                    return task

            tasks = await asyncio.gather(*(generate(p) for p in ctx.prompts()))
        ctx.extra["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        completed = sum(1 for t in tasks if t["status"] == "completed")
        return {"completed": completed, "requests": self.requests}


@register("fixed-0.1s", "poll every 0.1 s (the tightest loops users write)")
async def run_fixed_tenth(ctx: Context) -> ContenderResult:
    return await _PlainPoller(ctx, lambda: ctx.scaled(0.1)).run()


@register("fixed-1s", "poll every 1 s (openai-python create_and_poll)")
async def run_fixed_1s(ctx: Context) -> ContenderResult:
    return await _PlainPoller(ctx, lambda: ctx.scaled(1.0)).run()


@register("fixed-0.5s", "poll every 0.5 s (replicate)")
async def run_fixed_half(ctx: Context) -> ContenderResult:
    return await _PlainPoller(ctx, lambda: ctx.scaled(0.5)).run()


@register("fixed-6s", "poll every 6 s +- 1.5 (runway)")
async def run_fixed_6s(ctx: Context) -> ContenderResult:
    rng = random.Random(ctx.workload.seed)
    return await _PlainPoller(ctx, lambda: ctx.scaled(rng.uniform(4.5, 7.5))).run()


@register("fixed-8s", "poll every 8 s (Evolink's own client for video tasks)")
async def run_fixed_8s(ctx: Context) -> ContenderResult:
    return await _PlainPoller(ctx, lambda: ctx.scaled(8.0)).run()


async def _run_with_callbacks(ctx: Context) -> ContenderResult:
    """generate_many with a CallbackReceiver on loopback (the simulator may call http there)."""
    from evolink_async import EvolinkClient  # noqa: PLC0415 - imported in the worker only
    from evolink_async.callbacks import CallbackReceiver  # noqa: PLC0415

    w = ctx.workload
    counts: Counter[str] = Counter()
    # The real service needs a public https URL (behind a proxy or tunnel) instead of None.
    receiver = CallbackReceiver(None, allow_insecure=True)
    async with (
        receiver,
        EvolinkClient(
            ctx.api_key,
            ctx.base_url,
            rate=w.client_rate / w.time_scale,  # the SDK's rate is per local second
            max_in_flight=w.concurrency,
            time_scale=w.time_scale,
            callbacks=receiver,
        ) as client,
    ):
        batch = client.generate_many(ctx.prompts())
        async for outcome in batch:
            counts[outcome.status] += 1
        stats = batch.stats()
        r = receiver.stats
        ctx.extra.update(
            outcomes=dict(counts),
            polls=client.poller.polls,
            retries=stats.retries,
            client_rate_limited=stats.rate_limited,
            callbacks_received=r.received,
            callbacks_woken=r.woken,
            callbacks_ignored=r.ignored,
            callback_duplicates=r.duplicates,
        )
        return {"completed": counts["completed"], "requests": client.transport.requests}


@register(
    "callbacks",
    "generate_many in callback mode: the service POSTs finished tasks to a CallbackReceiver, "
    "each confirmed by one GET; polls only as a safety net",
    simulator_knobs={"allow_insecure_callbacks": True},
    imports=("aiohttp", "evolink_async", "evolink_async.callbacks"),
)
async def run_callbacks(ctx: Context) -> ContenderResult:
    return await _run_with_callbacks(ctx)


@register(
    "callbacks-lossy",
    "callbacks, with 30% of the deliveries lost: the safety-net polls find those",
    simulator_knobs={"allow_insecure_callbacks": True, "callback_drop_rate": 0.3},
    imports=("aiohttp", "evolink_async", "evolink_async.callbacks"),
)
async def run_callbacks_lossy(ctx: Context) -> ContenderResult:
    return await _run_with_callbacks(ctx)


# -- the client process --------------------------------------------------------------------------


def worker_main(name: str, base_url: str, api_key: str, workload: Workload) -> None:
    """Run one contender; print its result as one JSON line."""
    ctx = Context(workload, base_url, api_key)
    contender = CONTENDERS[name]
    for module in contender.imports:
        importlib.import_module(module)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    result = asyncio.run(contender.run(ctx))
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - t0
    result.update(cpu_s=cpu, wall_s=wall, peak_rss_mb=peak_rss_mb(), extra=ctx.extra)
    print(json.dumps(result))


# -- figures -------------------------------------------------------------------------------------


def list_schedule(durations: list[float], slots: int) -> float:
    """Makespan of running ``durations`` in order, each on the first free of ``slots``."""
    return max(list_finishes(durations, slots), default=0.0)


def list_finishes(durations: list[float], slots: int) -> list[float]:
    """When each of ``durations`` ends, run in order, each on the first free of ``slots``."""
    free = [0.0] * max(1, slots)
    ends = []
    for d in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
        ends.append(start + d)
    return ends


def reads_at_target(ends: list[float], durations: list[float], fraction: float) -> int:
    """The fewest batch reads that see every task within ``fraction`` of its duration of its
    end, for a client that knows every end (each read carries up to 50): stab the intervals
    [end, end + fraction * duration] greedily, at the earliest deadline left."""
    spans = sorted((e + fraction * d, e) for e, d in zip(ends, durations, strict=True))
    reads, at, carried = 0, -1.0, BATCH_READ
    for deadline, end in spans:
        if end <= at and carried < BATCH_READ:
            carried += 1
            continue
        reads, at, carried = reads + 1, deadline, 1
    return reads


def task_durations(stats: dict[str, Any]) -> list[float]:
    """Service seconds from creation to finish of every task, in creation order."""
    tasks = sorted(stats["tasks"].values(), key=lambda t: t["created_real"])
    return [t["finished_at"] - t["created_at"] for t in tasks]


def figures_from(
    stats: dict[str, Any], client: dict[str, Any], w: Workload, sim_cpu_s: float
) -> dict[str, Any]:
    """A contender's figures from the simulator's record and the client's counters."""
    tasks = list(stats["tasks"].values())
    requests = sum(
        n
        for ep in ("create", "get_task", "tasks_batch", "tasks_list", "credits")
        for n in stats["requests"].get(ep, {}).values()
    )
    completed = sum(
        1 for t in tasks if t["outcome"] == "completed" and t["first_seen_terminal_at"] is not None
    )
    delays, fracs = [], []
    for t in tasks:
        d = t["detection_delay_sim"]
        if d is None:
            continue
        delays.append(d)
        fracs.append(d / max(1e-9, t["finished_at"] - t["created_at"]))
    # tasks whose first poll already found them finished: their delay is how late it came
    single = [t["detection_delay_sim"] for t in tasks if t["polls"] == 1]
    seen = [t["first_seen_terminal_real"] for t in tasks if t["first_seen_terminal_real"]]
    start = min((t["created_real"] for t in tasks), default=0.0)
    makespan = (max(seen) - start) / w.time_scale if seen else None
    polls = sum(t["polls"] for t in tasks)
    lifetimes = [
        t["first_seen_terminal_at"] - t["created_at"]
        for t in tasks
        if t["first_seen_terminal_at"] is not None
    ]
    cpu = client["cpu_s"]
    per_clip = _request_breakdown(stats, max(completed, 1))
    return {
        "makespan_s": makespan,
        "makespan_ratio": None,  # filled in against the lower bound
        "requests_per_task": requests / completed if completed else None,
        "detect_p50_s": percentile(delays, 50),
        "detect_p95_s": percentile(delays, 95),
        "detect_p95_frac": percentile(fracs, 95),
        "http_429": stats["rate_limited"],
        "cpu_per_task_ms": cpu / completed * 1e3 if completed else None,
        "cpu_per_request_us": cpu / requests * 1e6 if requests else None,
        "peak_rss_mb": client["peak_rss_mb"],
        # more context
        "completed": completed,
        "tasks_created": len(tasks),
        "requests": requests,
        "client_requests": client["requests"],
        "polls_per_task": polls / len(tasks) if tasks else None,
        "mean_poll_interval_s": (sum(lifetimes) / polls) if polls else None,
        "detect_max_s": max(delays) if delays else None,
        "single_poll_frac": len(single) / len(tasks) if tasks else None,
        "detect_p95_single_poll_s": percentile([d for d in single if d is not None], 95),
        # peak over 1-real-second windows, per service second
        "peak_requests_per_s": stats["peak_requests_per_second"] * w.time_scale,
        "client_cpu_s": cpu,
        "client_wall_s": client["wall_s"],
        "client_cpu_util": cpu / client["wall_s"] if client["wall_s"] else None,
        "simulator_cpu_s": sim_cpu_s,
        "requests_per_clip": per_clip,
        "extra": client.get("extra", {}),
    }


def _request_breakdown(stats: dict[str, Any], clips: int) -> dict[str, Any]:
    """Where the requests went, per completed clip: creates, batch reads, single GETs (the
    SDK's confirmations of ids missing from a batch answer are among them), other endpoints;
    and how many tasks a batch read carried on average."""
    by_ep = {ep: sum(codes.values()) for ep, codes in stats["requests"].items()}
    sizes = stats.get("batch_reads", [])
    return {
        "create": by_ep.get("create", 0) / clips,
        "tasks_batch": by_ep.get("tasks_batch", 0) / clips,
        "get_task": by_ep.get("get_task", 0) / clips,
        "other": sum(n for ep, n in by_ep.items() if ep not in _READ_EPS) / clips,
        "tasks_per_batch_read": sum(sizes) / len(sizes) if sizes else None,
    }


_READ_EPS = ("create", "tasks_batch", "get_task", "files")


def lower_bound(durations: list[float], w: Workload) -> dict[str, Any]:
    """An ideal client: knows each task's duration, creates the next task the instant a slot
    frees (in submission order), reads each task once at its finish, in batch reads of 50."""
    ends = list_finishes(durations, w.concurrency)
    schedule = max(ends, default=0.0)
    # a create and a share of a batch read a task (1 + 1/50), at the client's rate
    per_task = 1.0 + 1.0 / BATCH_READ
    by_rate = per_task * len(durations) / w.client_rate if w.client_rate else 0.0
    return {
        "makespan_s": max(schedule, by_rate),
        "makespan_ratio": 1.0,
        "requests_per_task": per_task,
        "detect_p50_s": 0.0,
        "detect_p95_s": 0.0,
        "detect_p95_frac": 0.0,
        "http_429": 0,
        "cpu_per_task_ms": None,
        "cpu_per_request_us": None,
        "peak_rss_mb": None,
        "completed": len(durations),
        "tasks_created": len(durations),
        "schedule_makespan_s": schedule,
        "rate_bound_makespan_s": by_rate,
        # the same ideal client held to issue 13's detection target (every clip seen within
        # 5 % of its duration): one create and the fewest batch reads that achieve it
        "requests_per_task_at_5pct": 1.0 + reads_at_target(ends, durations, 0.05) / n
        if (n := len(durations))
        else None,
    }


# -- the orchestrator ----------------------------------------------------------------------------

COLUMNS = [
    ("name", "contender"),
    ("makespan_s", "makespan s"),
    ("makespan_ratio", "x LB"),
    ("requests_per_task", "req/task"),
    ("detect_p50_s", "detect p50 s"),
    ("detect_p95_s", "p95 s"),
    ("detect_p95_frac", "p95/dur"),
    ("http_429", "429s"),
    ("cpu_per_task_ms", "CPU ms/task"),
    ("cpu_per_request_us", "CPU us/req"),
    ("peak_rss_mb", "peak RSS MB"),
    ("client_cpu_util", "client CPU"),
]


def _print_breakdown(results: Mapping[str, Mapping[str, Any]]) -> None:
    """Requests per clip by endpoint, and tasks per batch read (contenders that used them)."""
    print("\nrequests per clip: create + batch reads + single GETs (+ other); tasks/batch read")
    for name, figs in results.items():
        b = figs.get("requests_per_clip")
        if not b or not b["tasks_batch"]:
            continue
        size = b["tasks_per_batch_read"]
        print(
            f"  {name}: {b['create']:.2f} + {b['tasks_batch']:.2f} + {b['get_task']:.2f}"
            f" (+ {b['other']:.2f}); {size:.1f} tasks/batch read"
        )


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--quick", action="store_true", help="small profile: under 60 s in all")
    prof.add_argument("--full", action="store_true", help="N = 1000, concurrency 50 (default)")
    p.add_argument("--n", type=int, help="prompts (quick 50, full 1000)")
    p.add_argument("--concurrency", type=int, help="service max_concurrent = client's limit")
    p.add_argument(
        "--rate",
        type=int,
        default=200,
        help="service rate limit, whole requests per service second (default 200)",
    )
    p.add_argument(
        "--client-rate", type=float, help="the SDK's rate, per service second (default: --rate)"
    )
    p.add_argument("--time-scale", type=float, help="real s per service s (quick .008, full .03)")
    p.add_argument("--gen-min", type=float, default=60.0, help="generation time low (60)")
    p.add_argument("--gen-max", type=float, default=300.0, help="generation time high (300)")
    p.add_argument("--queue-min", type=float, default=0.0, help="queue time low (0)")
    p.add_argument("--queue-max", type=float, default=30.0, help="queue time high (30)")
    p.add_argument("--estimate-error", type=float, default=0.1, help="estimated_time error (0.1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--contenders",
        help=f"comma-separated subset of: {', '.join(CONTENDERS)} (default: all)",
    )
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    # the client process
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    return p.parse_known_args(argv)


def workload_from(ns: argparse.Namespace) -> Workload:
    profile = "quick" if ns.quick else "full"
    base = PROFILES[profile]
    return Workload(
        profile=profile,
        n=ns.n or base["n"],
        concurrency=ns.concurrency or base["concurrency"],
        rate=ns.rate,
        client_rate=ns.client_rate if ns.client_rate is not None else ns.rate,
        time_scale=ns.time_scale or base["time_scale"],
        gen_min=ns.gen_min,
        gen_max=ns.gen_max,
        queue_min=ns.queue_min,
        queue_max=ns.queue_max,
        estimate_error=ns.estimate_error,
        seed=ns.seed,
    )


def run_contender(c: Contender, w: Workload) -> tuple[dict[str, Any], list[float]]:
    with SimulatorProcess({**w.simulator_knobs(), **c.simulator_knobs}) as sim:
        cpu0 = sim.cpu_seconds()
        client = run_worker(
            THIS,
            [
                "--worker", c.name,
                "--base-url", sim.base_url,
                "--api-key", sim.api_key,
                "--workload", json.dumps(asdict(w)),
            ],
        )  # fmt: skip
        sim_cpu = sim.cpu_seconds() - cpu0
        stats = sim.stats()
    return figures_from(stats, client, w, sim_cpu), task_durations(stats)


def main(argv: list[str] | None = None) -> int:
    ns, unknown = parse_args(argv)
    if ns.worker:
        data = json.loads(ns.workload)
        worker_main(ns.worker, ns.base_url, ns.api_key, Workload(**data))
        return 0
    if unknown:
        print(f"bench_batch: ignoring unknown arguments {unknown}", file=sys.stderr)
    w = workload_from(ns)
    names = (
        ns.contenders.split(",")
        if ns.contenders
        else [n for n, c in CONTENDERS.items() if c.default]
    )
    unknown_names = [n for n in names if n not in CONTENDERS and n != LOWER_BOUND]
    if unknown_names:
        print(f"bench_batch: unknown contenders {unknown_names}", file=sys.stderr)
        return 2
    print(
        f"bench_batch [{w.profile}]: N={w.n} concurrency={w.concurrency} "
        f"rate={w.rate:g}/s (client {w.client_rate:g}/s) time_scale={w.time_scale:g} "
        f"generation {w.gen_min:g}-{w.gen_max:g} s queue {w.queue_min:g}-{w.queue_max:g} s "
        f"seed={w.seed} (load average {machine_info()['loadavg'][0]:g})",
        flush=True,
    )
    machine_before = machine_info()
    results: dict[str, dict[str, Any]] = {}
    durations: list[float] | None = None
    failed: list[str] = []
    t_start = time.monotonic()
    for name in names:
        if name == LOWER_BOUND:
            continue
        t0 = time.monotonic()
        try:
            figs, durs = run_contender(CONTENDERS[name], w)
        except Exception as exc:  # report, go on with the others
            print(f"  {name}: could not run: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        results[name] = figs
        if durations is None:
            durations = durs
        elif len(durs) == len(durations) and any(
            abs(a - b) > 1e-6 for a, b in zip(durs, durations, strict=True)
        ):
            print(f"  warning: {name} saw other task durations", file=sys.stderr)
        print(
            f"  {name}: {time.monotonic() - t0:.1f} s real, {figs['completed']}/{w.n} completed",
            flush=True,
        )
    if durations is None:
        print("bench_batch: no contender could run", file=sys.stderr)
        return 1
    lb = lower_bound(durations[: w.n], w)
    for figs in results.values():
        if figs["makespan_s"] is not None:
            figs["makespan_ratio"] = figs["makespan_s"] / lb["makespan_s"]
    results[LOWER_BOUND] = lb
    rows = [{"name": n, **f} for n, f in results.items()]
    print_table(rows, COLUMNS, title="times in service seconds (real seconds / time_scale)")
    _print_breakdown(results)
    print(
        "an ideal client that knows every end and sees each clip within 5 % of its duration "
        f"needs {lb['requests_per_task_at_5pct']:.3g} requests per clip"
    )
    print(f"total {time.monotonic() - t_start:.0f} s real")
    if ns.json:
        workload = {
            **asdict(w),
            "time_unit": "service seconds (real seconds / time_scale)",
            "lower_bound": "list schedule of the task durations in creation order on "
            "`concurrency` slots; 2 requests a task",
            "mean_task_duration_s": sum(durations) / len(durations),
            "contender_descriptions": {
                n: CONTENDERS[n].description for n in results if n in CONTENDERS
            },
            "machine": machine_before,
            "loadavg_after": machine_info()["loadavg"],
            "sdk": sdk_info(),
            "failed": failed,
        }
        write_json(ns.json, {"workload": workload, "contenders": results})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
