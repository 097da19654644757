"""One process of a fleet on one API key: ``generate_many`` over its own prompts, with the
limits shared through Redis (``--redis URL``) or in-process; prints a JSON summary.

Used by tests/test_limits_fleet.py and benchmarks/bench_fleet.py::

    python tests/fleet_worker.py --base-url URL --api-key KEY --prompts 8 --tag p1 \\
        [--redis redis://127.0.0.1:6379/0 --namespace fleet] --rate 16 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from evolink_async import EvolinkClient, RedisLimits, RetryPolicy


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--tag", default="p")
    p.add_argument("--redis")
    p.add_argument("--namespace")
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--budget", type=float)
    p.add_argument("--lease-ttl", type=float, default=60.0)
    p.add_argument("--duration", type=int, default=4)
    p.add_argument("--trace", action="store_true", help="add the shared limits' debug timeline")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    limits = None
    if args.redis:
        limits = RedisLimits(args.redis, args.namespace, lease_ttl=args.lease_ttl, trace=args.trace)
    started = time.monotonic()
    async with EvolinkClient(
        args.api_key,
        args.base_url,
        rate=args.rate,
        max_in_flight=args.concurrency,
        budget=args.budget,
        limits=limits,
        retry=RetryPolicy(attempts=8, max_retry_after=30.0),
    ) as client:
        if limits is not None:
            await limits.check()  # fail fast: Redis unreachable, or another budget
        prompts = [
            {"prompt": f"{args.tag} clip {i}", "duration": args.duration}
            for i in range(args.prompts)
        ]
        statuses: Counter[str] = Counter()
        async with client.generate_many(prompts) as batch:
            async for outcome in batch:
                statuses[outcome.status] += 1
        requests = client.api.requests
        shared = client.limits if isinstance(client.limits, RedisLimits) else None
        trips = shared.round_trips if shared is not None else 0
        by_op = shared.trips_by_op if shared is not None else {}
        trace = shared.trace_events if shared is not None else []
    return {
        "tag": args.tag,
        "statuses": dict(statuses),
        "requests": requests,
        "round_trips": trips,
        "trips_by_op": by_op,
        "throttles": client.limits.throttles,
        "seconds": time.monotonic() - started,
        "trace": trace,
    }


def main(argv: list[str]) -> int:
    summary = asyncio.run(run(_parse(argv)))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
