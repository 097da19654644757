"""The small figures behind issue 16's request-path work, on the current code.

    python benchmarks/micro_scale.py timings     # µs per call of the pieces of a read
    python benchmarks/micro_scale.py calls       # Python calls per read under cProfile
    python benchmarks/micro_scale.py tracked     # objects the collector walks, a task in flight

* ``timings``: ``redact_bytes`` and ``decode_task`` of a task answer; a wake of a sleeping
  task by an expiring anyio cancel scope against a loop timer that sets an event; a hand-off
  through the poller's read queue against a bare loop turn; a cancel scope with a deadline
  around a read that does not expire.
* ``timings`` also: the URL of a task's read as aiohttp made it from a string (yarl parses
  it; its cache is too small for thousands of tasks) against ``RequestURLs.join``.
* ``tracked``: 2 000 tasks held in flight by one ``generate_many``; the objects the garbage
  collector tracks (and walks in a full collection) that they added, per task, by type.
* ``calls``: the poller reading 10 000 tasks in flight at 2 000 reads a second, and a bare
  aiohttp loop paced at 2 000 GETs a second, each against a simulator in its own process:
  Python calls per read (``cProfile``), the steady stand-in for the CPU ratio of
  ``bench_scale``, which moves by ±20 % from run to run on a shared machine.
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import gc
import itertools
import json
import pstats
import sys
import time
import timeit
from typing import Any

import anyio
from _common import SimulatorProcess, all_in_flight, cpu_seconds, scale_prompt

HOLD = {
    "seed": 1,
    "time_scale": 1.0,
    "queue_delay": [0.0, 0.0],
    "generation_time": [10_000_000.0, 10_000_000.0],
    "credits": 1e12,
}
ANSWER = json.dumps(
    {
        "id": "task-unified-1756817821-4x3rx6ny",
        "object": "video.generation.task",
        "created": 1756817821,
        "model": "sora-2-preview",
        "status": "processing",
        "progress": 45,
        "task_info": {"can_cancel": True, "estimated_time": 100},
        "type": "video",
        "usage": {"billing_rule": "per_call", "credits_reserved": 7.0, "user_group": "default"},
    }
).encode()


def _per_call(fn: Any, n: int = 100_000) -> float:
    return timeit.timeit(fn, number=n) / n * 1e6


async def _cpu_per(n: int, body: Any) -> float:
    c0 = cpu_seconds()
    for _ in range(n):
        await body()
    return (cpu_seconds() - c0) / n * 1e6


async def _timings() -> None:
    from evolink_async._codec import decode_task  # noqa: PLC0415
    from evolink_async._poll_queue import ReadQueue  # noqa: PLC0415
    from evolink_async._redact import protect, redact_bytes  # noqa: PLC0415

    class Owner:
        pass

    owner = Owner()
    protect(owner, "sk-evo-abcdefghijklmnop")  # a key registered, as a client does
    data = json.loads(ANSWER)
    print(f"redact_bytes of a task answer     {_per_call(lambda: redact_bytes(ANSWER)):6.1f} µs")
    print(f"decode_task of a task answer      {_per_call(lambda: decode_task(data)):6.1f} µs")

    loop = asyncio.get_running_loop()

    async def scope_wake() -> None:
        with anyio.move_on_after(0.0002):
            await anyio.Event().wait()

    async def timer_wake() -> None:
        event = anyio.Event()
        handle = loop.call_later(0.0002, event.set)
        await event.wait()
        handle.cancel()

    n = 3000
    print(f"wake by an expiring cancel scope  {await _cpu_per(n, scope_wake):6.1f} µs CPU")
    print(f"wake by a timer setting an event  {await _cpu_per(n, timer_wake):6.1f} µs CPU")

    queue: ReadQueue[int] = ReadQueue()
    got = 0

    async def consumer() -> None:
        nonlocal got
        while True:
            if queue.take() is None:
                await queue.receive()
            got += 1

    async def hand_off() -> None:
        queue.send_nowait(1)
        await asyncio.sleep(0)

    async def turn() -> None:
        await asyncio.sleep(0)

    task = loop.create_task(consumer())
    await asyncio.sleep(0)
    n = 50_000
    handed, bare = await _cpu_per(n, hand_off), await _cpu_per(n, turn)
    task.cancel()
    print(f"read queue hand-off (beyond a turn) {handed - bare:5.1f} µs CPU")

    async def scoped() -> None:
        with anyio.move_on_after(100):
            await asyncio.sleep(0)

    n = 20_000
    extra = await _cpu_per(n, scoped) - await _cpu_per(n, turn)
    print(f"a cancel scope that does not expire {extra:5.1f} µs CPU")
    _url_timings()


def _url_timings() -> None:
    from yarl import URL  # noqa: PLC0415

    from evolink_async._request_url import RequestURLs  # noqa: PLC0415

    base, ids = "http://127.0.0.1:8080", itertools.count()
    urls = RequestURLs(base)
    parsed = _per_call(lambda: URL(f"{base}/v1/tasks/task-unified-1756817821-{next(ids)}"))
    joined = _per_call(lambda: urls.join(f"/v1/tasks/task-unified-1756817821-{next(ids)}"))
    print(f"a task's URL parsed from a string {parsed:6.1f} µs")
    print(f"a task's URL joined to the base   {joined:6.1f} µs")


async def _tracked(base_url: str, key: str, n: int) -> None:
    from evolink_async import EvolinkClient, PollPolicy  # noqa: PLC0415

    policy = PollPolicy(min_interval=600, max_interval=600, first_poll=600, batch=False)
    async with EvolinkClient(
        key, base_url, rate=None, max_in_flight=None, poll=policy, task_timeout=None
    ) as client:
        await client.get_credits()
        gc.collect()
        before = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        async with all_in_flight(client, n):
            gc.collect()
            after = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    added = after - before
    print(f"objects tracked by the collector, a task in flight: {sum(added.values()) / n:.2f}")
    for name, count in added.most_common(10):
        print(f"  {count / n:5.2f} {name}")


def _calls(profile: cProfile.Profile, reads: int) -> float:
    return sum(v[1] for v in pstats.Stats(profile).stats.values()) / reads  # type: ignore[attr-defined]


async def _sdk_calls(base_url: str, key: str, n: int, rate: float) -> float:
    from evolink_async import EvolinkClient, PollPolicy  # noqa: PLC0415

    interval = n / rate
    policy = PollPolicy(
        min_interval=interval, max_interval=interval, first_poll=interval, batch=False
    )
    async with EvolinkClient(
        key, base_url, rate=None, max_in_flight=None, poll=policy, task_timeout=None
    ) as client:
        await client.get_credits()
        async with all_in_flight(client, n):
            await asyncio.sleep(interval)
            profile, polls0 = cProfile.Profile(), client.poller.polls
            profile.enable()
            await asyncio.sleep(6)
            profile.disable()
            return _calls(profile, client.poller.polls - polls0)


async def _raw_calls(base_url: str, key: str, rate: float) -> float:
    import aiohttp  # noqa: PLC0415

    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as session:
        ids = []
        for i in range(100):
            body = {"model": "sora-2-preview", "prompt": scale_prompt(i)}
            async with session.post("/v1/videos/generations", json=body) as resp:
                ids.append((await resp.json())["id"])
        count, t0 = 0, time.monotonic()

        async def worker(first: int) -> None:
            nonlocal count
            i = first
            while time.monotonic() - t0 < 6:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with session.get(f"/v1/tasks/{ids[i % 100]}") as resp:
                    resp.raise_for_status()
                    await resp.json()
                count += 1
                i += 16

        profile = cProfile.Profile()
        profile.enable()
        await asyncio.gather(*(worker(k) for k in range(16)))
        profile.disable()
        return _calls(profile, count)


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "timings"
    if mode == "timings":
        asyncio.run(_timings())
        return 0
    if mode == "tracked":
        with SimulatorProcess(HOLD) as sim:
            asyncio.run(_tracked(sim.base_url, sim.api_key, 2000))
        return 0
    if mode != "calls":
        raise SystemExit("usage: micro_scale.py timings|calls|tracked")
    with SimulatorProcess(HOLD) as sim:
        sdk = asyncio.run(_sdk_calls(sim.base_url, sim.api_key, 10_000, 2000.0))
    with SimulatorProcess(HOLD) as sim:
        raw = asyncio.run(_raw_calls(sim.base_url, sim.api_key, 2000.0))
    ratio = sdk / raw
    print(f"Python calls a read: SDK poller {sdk:.0f}, bare aiohttp {raw:.0f}, ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
