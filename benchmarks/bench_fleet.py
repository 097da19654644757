"""Several processes on one API key: do they stay within the key's limits together?

1, 2, 4 and 8 worker processes (tests/fleet_worker.py: ``generate_many`` over their share of
the clips) run against ONE simulator that enforces the key's rate R and concurrency C, first
with the limits shared through Redis (``RedisLimits``), then each with its own in-process
limits (each process believes it owns the key). Printed per run: throughput in clips per minute
of service time (and as a share of the key's limit, C clips per task time), 429s (rate and
concurrency), the peak of tasks active at the simulator, Redis round trips per API request.

Throughput, two ways. "clips/min" divides by the slowest worker's whole run (client start-up
and the last download included). "slots busy" is the steady state as the simulator saw it: the
service seconds its C slots held a task, over C x (first create .. last finish); it is what
"within 5 % of the key's limit" is measured on. Where the rest goes, per clip (service
seconds): "detect s" from a task finishing to a client seeing it, "handover s" from a finish
to the next create in its place (detection, the release, the rate's slot for the create).

The time scale (default 0.1: a 100 s clip lasts 10 real seconds) stretches every real-time cost
(a poll interval, an event-loop delay, a rate slot of 1/R s) by 1 / scale in service time.

    .venv/bin/python benchmarks/bench_fleet.py --quick      # 48 clips per run (about 10 min)
    .venv/bin/python benchmarks/bench_fleet.py --json fleet.json
    .venv/bin/python benchmarks/bench_fleet.py --quick --processes 8 --limits redis --breakdown

``--breakdown`` traces the shared limits (``RedisLimits(trace=True)``) and prints the
handover's stages: detect, release, to Redis, grant, rate, send (see ``_stages``).

Needs ``redis-server`` on the PATH (started here on a free loopback port, no persistence).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import SimulatorProcess, machine_info, print_table
from redis_support import start_redis

WORKER = Path(__file__).resolve().parent.parent / "tests" / "fleet_worker.py"
TASK_SECONDS = 100.0  # service seconds a clip takes (fixed: the key's limit is then exact)


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "time_scale": args.time_scale,
        "rate_limit": args.rate,
        "max_concurrent": args.concurrency,
        "queue_delay": [0.0, 0.0],
        "generation_time": [TASK_SECONDS, TASK_SECONDS],
        "estimate_error": 0.0,
        "per_task_clips": False,
        "seed": 7,
    }


def _run(args: argparse.Namespace, n: int, redis_url: str | None) -> dict[str, Any]:
    per = [args.clips // n + (1 if i < args.clips % n else 0) for i in range(n)]
    with SimulatorProcess(_knobs(args)) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOLINK_")}
        base = [sys.executable, str(WORKER), "--base-url", sim.base_url, "--api-key", sim.api_key]
        base += ["--rate", str(args.client_rate), "--concurrency", str(args.concurrency)]
        if redis_url is not None:
            base += ["--redis", redis_url, "--namespace", f"bench-{n}-{time.time_ns()}"]
            if args.breakdown:
                base.append("--trace")
        procs = [
            subprocess.Popen(
                [*base, "--tag", f"w{i}", "--prompts", str(k)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i, k in enumerate(per)
        ]
        summaries = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"a worker failed:\n{err[-3000:]}")
            summaries.append(json.loads(out.strip().splitlines()[-1]))
        stats = sim.stats()
    completed = sum(s["statuses"].get("completed", 0) for s in summaries)
    service_minutes = max(s["seconds"] for s in summaries) / args.time_scale / 60
    steady = _steady(stats, args.concurrency)
    requests = sum(s["requests"] for s in summaries)
    throughput = completed / service_minutes
    limit = args.concurrency * 60 / TASK_SECONDS
    stages = _stages(stats, summaries, args) if redis_url and args.breakdown else {}
    if stages:  # the raw timelines, for a closer look (--json)
        stages["raw"] = {
            "summaries": summaries,
            "tasks": stats["tasks"],
            "times": stats["request_times"],
        }
    return {
        **stages,
        "processes": n,
        "shared": "redis" if redis_url else "none",
        "completed": completed,
        "clips_per_min": throughput,
        "of_limit": throughput / limit,
        "rate_429s": len(stats.get("rate_throttles", [])),
        "all_429s": stats["rate_limited"],
        "peak_active": stats["peak_active_tasks"],
        "peak_rps": stats["peak_requests_per_second"],
        "requests": requests,
        "trips_per_request": sum(s["round_trips"] for s in summaries) / requests,
        **steady,
    }


def _steady(stats: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """The simulator's own view, in service seconds: the key's slots busy from the first create
    to the last finish (no process start-up), the delay before a client saw each task done,
    and the handover gap (a task done, the next task created in its place)."""
    tasks = sorted(stats["tasks"].values(), key=lambda t: t["created_at"])
    done = [t for t in tasks if t["finished_at"] is not None]
    if not done:
        return {"busy": 0.0, "detect_s": 0.0, "handover_s": 0.0}
    window = max(t["finished_at"] for t in done) - tasks[0]["created_at"]
    busy = sum(t["finished_at"] - t["created_at"] for t in done) / (concurrency * window)
    delays = [t["detection_delay_sim"] for t in done if t["detection_delay_sim"] is not None]
    finishes = sorted(t["finished_at"] for t in done)
    creates = [t["created_at"] for t in tasks[concurrency:]]
    gaps = [c - f for f, c in zip(finishes, creates, strict=False)]
    return {
        "busy": busy,
        "detect_s": sum(delays) / max(1, len(delays)),
        "handover_s": sum(gaps) / max(1, len(gaps)),
    }


def _mean_gap(later: list[float], earlier: list[float]) -> float:
    n = min(len(later), len(earlier))
    return sum(later[:n]) / max(1, n) - sum(earlier[:n]) / max(1, n)


def _create_times(summaries: list[dict[str, Any]]) -> dict[str, list[float]]:
    """From the workers' timelines: when each lease was granted, when the create that held
    it reached its rate slot, when each lease was released and when Redis got the release."""
    out: dict[str, list[float]] = {"grant": [], "rated": [], "release": [], "in_redis": []}
    out.update(line=[], ahead=[], rate_wait=[])
    for summary in summaries:
        events = summary.get("trace", [])
        carried = {i: e["t"] for e in events if e["kind"] == "call" for i in e["freed"]}
        for i, e in enumerate(events):
            if e["kind"] == "release":
                out["release"].append(e["t"])
                out["in_redis"].append(carried.get(e["id"], e["t"]))
            if e["kind"] != "lease":
                continue
            rated = next(
                (r for r in events[i + 1 :] if r["kind"] == "rate" and r["task"] == e["task"]),
                None,
            )
            out["grant"].append(e["t"])
            out["line"].append(float(e["line"]))
            if rated is not None:
                out["rated"].append(rated["t"])
                out["ahead"].append(float(rated["ahead"]))
                out["rate_wait"].append(rated["t"] - rated["asked"])
    return out


def _stages(
    stats: dict[str, Any], summaries: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """The handover (a task done -> the next create at the simulator) in stages, in service
    seconds, each the mean over the handovers of one stage's times minus the last's: detect
    (done -> a client saw it), release (-> the lease released in that process), to Redis (->
    the call that carried the release came back), grant (-> a waiter had the lease), rate (->
    its create reached its rate slot), send (-> the create arrived)."""
    c = args.concurrency
    tasks = [t for t in stats["tasks"].values() if t["finished_real"] is not None]
    finishes = sorted(t["finished_real"] for t in tasks)[:-c]
    seen = sorted(t["first_seen_terminal_real"] for t in tasks)[:-c]
    creates = sorted(t["created_real"] for t in stats["tasks"].values())[c:]
    times = _create_times(summaries)
    order = sorted(range(len(times["grant"])), key=lambda k: times["grant"][k])[c:]
    grants = [times["grant"][k] for k in order]
    rated = sorted(times["rated"])[c:]
    release = sorted(times["release"])[:-c]
    in_redis = sorted(times["in_redis"])[:-c]
    s = 1 / args.time_scale
    later = [k for k in order if k < len(times["ahead"])]
    return {
        "st_detect": _mean_gap(seen, finishes) * s,
        "st_release": _mean_gap(release, seen) * s,
        "st_to_redis": _mean_gap(in_redis, release) * s,
        "st_grant": _mean_gap(grants, in_redis) * s,
        "st_rate": _mean_gap(rated, grants) * s,
        "st_send": _mean_gap(creates, rated) * s,
        "from_line": sum(times["line"][k] for k in order) / max(1, len(order)),
        "ahead": sum(times["ahead"][k] for k in later) / max(1, len(later)),
        "create_rate_wait": sum(times["rate_wait"][k] for k in later) * s / max(1, len(later)),
        "reads": sum(stats["requests"].get(e, {}).get("200", 0) for e in _READS),
    }


_READS = ("get_task", "tasks_batch")
_STAGE_COLUMNS = [
    ("processes", "procs"),
    ("st_detect", "detect"),
    ("st_release", "release"),
    ("st_to_redis", "to Redis"),
    ("st_grant", "grant"),
    ("st_rate", "rate"),
    ("st_send", "send"),
    ("from_line", "from line"),
    ("ahead", "slot ahead"),
    ("create_rate_wait", "create's rate wait"),
    ("reads", "reads"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="48 clips a run")
    parser.add_argument("--clips", type=int, default=192)
    parser.add_argument("--rate", type=int, default=10, help="the key's requests a second")
    parser.add_argument("--concurrency", type=int, default=8, help="the key's tasks at once")
    parser.add_argument(
        "--client-rate", type=float, help="the rate the clients are given (default: 0.9 R)"
    )
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="trace the shared limits and print the handover's stages (service s)",
    )
    parser.add_argument(
        "--limits", default="redis,none", help="which runs: redis, none or both (default)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.clips = 48
    if args.client_rate is None:
        args.client_rate = 0.9 * args.rate
    counts = [int(x) for x in args.processes.split(",")]
    rows = []
    print(
        "load average (1/5/15 min) at the start: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_redis(Path(tmp))
        try:
            for n in counts:
                for kind in args.limits.split(","):
                    rows.append(_run(args, n, url if kind == "redis" else None))
        finally:
            server.terminate()
            server.wait(timeout=10)
    limit = args.concurrency * 60 / TASK_SECONDS
    title = (
        f"{args.clips} clips of {TASK_SECONDS:g} s per run; key: rate {args.rate}/s, "
        f"{args.concurrency} at once (limit {limit:g} clips/min); clients' rate "
        f"{args.client_rate:g}/s; time scale {args.time_scale}"
    )
    columns = [
        ("processes", "procs"),
        ("shared", "limits"),
        ("completed", "clips"),
        ("clips_per_min", "clips/min"),
        ("of_limit", "of limit"),
        ("rate_429s", "rate 429s"),
        ("all_429s", "all 429s"),
        ("peak_active", "peak active"),
        ("peak_rps", "peak req/s"),
        ("trips_per_request", "Redis trips/request"),
        ("busy", "slots busy"),
        ("detect_s", "detect s"),
        ("handover_s", "handover s"),
    ]
    print_table(rows, columns, title=title)
    print("load average (1/5/15 min) at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.breakdown:
        staged = [r for r in rows if "st_detect" in r]
        print_table(staged, _STAGE_COLUMNS, title="handover stages with Redis (service s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
