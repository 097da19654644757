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
    return {
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
    args = parser.parse_args(argv)
    if args.quick:
        args.clips = 48
    if args.client_rate is None:
        args.client_rate = 0.9 * args.rate
    counts = [int(x) for x in args.processes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_redis(Path(tmp))
        try:
            for n in counts:
                rows.append(_run(args, n, url))
                rows.append(_run(args, n, None))
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
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
