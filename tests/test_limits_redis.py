"""The shared limits' Lua script and parts, against a real redis-server (tests/redis_support)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
from redis_support import limit_settings, redis_server_fixture, redis_url_fixture

from evolink_async import EvolinkClient
from evolink_async.errors import BudgetExceededError
from evolink_async.limits import (
    Budget,
    Hold,
    LimitSettings,
    Permit,
    RateGate,
    RedisLimits,
    SharedLimitsError,
    SlotLimit,
)
from evolink_async.limits._redis_link import Link, default_namespace
from evolink_async.limits._redis_parts import RedisPermit
from evolink_async.limits.redis_admin import read_state
from evolink_async.testing import Simulator

__all__ = ["redis_server_fixture", "redis_url_fixture"]

KEY = "sk-test-0123456789abcdef"


def settings(**overrides: Any) -> LimitSettings:
    return limit_settings(KEY, {"rate": 10.0, "burst": 1, "max_in_flight": 2}, overrides)


def book(rate: float = 10.0, burst: int = 1, window: float = 0.0) -> dict[str, Any]:
    return {"op": "book", "rate": rate, "burst": burst, "inc": 0.0, "window": window}


def throttle(pause: float) -> dict[str, Any]:
    return {
        "op": "throttle",
        "pause": pause,
        "inc": 0.0,
        "decrease": 0.5,
        "min_factor": 1 / 16,
        "cooldown": 0.0,
        "default_pause": 2.0,
    }


def lease(i: int, cap: int = 2, ttl: float = 60.0) -> dict[str, Any]:
    op = {"op": "lease", "configured": cap, "ttl": ttl, "id": f"L{i}", "owner": "test"}
    return dict(op, grow_every=0.0)


@pytest.fixture
async def link(redis_url: str) -> Any:
    link = Link(redis_url, "unit")
    yield link
    await link.aclose()


# -- the rate --------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst", "free"), [(10.0, 1, 1), (10.0, 3, 3), (4.0, 2, 2)])
async def test_book_grants_burst_at_once_then_spaces_by_the_interval(
    link: Link, rate: float, burst: int, free: int
) -> None:
    results = [await link.call(book(rate, burst)) for _ in range(free + 3)]
    assert [r["wait"] == 0 for r in results[:free]] == [True] * free
    slots = [float(r["at"]) for r in results[:1] + results[free:]]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(slots)]
    assert [round(1 / rate, 6)] * 3 == gaps


@pytest.mark.parametrize(
    ("rate", "burst", "window", "n", "span"),
    [
        (10.0, 1, 1.0, 10, 1.0),  # the service's count: 10 in any second, at once if quiet
        (9.0, 1, 1.0, 9, 1.0),
        (10.0, 1, 0.5, 5, 0.5),
        (0.5, 1, 1.0, 1, 2.0),  # slower than one a window: one each 1 / rate
        (4.0, 6, 1.0, 6, 1.5),  # a burst above rate x window: sustained at the rate
    ],
)
async def test_a_window_books_n_at_once_then_each_a_span_after_the_nth_before(  # noqa: PLR0917
    link: Link, rate: float, burst: int, window: float, n: int, span: float
) -> None:
    results = [await link.call(book(rate, burst, window)) for _ in range(2 * n + 1)]
    slots = [float(r["at"]) for r in results]
    assert [True] * n == [r["wait"] == 0 for r in results[:n]]
    assert [round(span, 6)] * (n + 1) == [
        round(slots[i] - slots[i - n], 6) for i in range(n, 2 * n + 1)
    ]
    # any window of that span holds at most n slots (what the service counts)
    assert n == max(sum(1 for t in slots if s <= t < s + span) for s in slots)


async def test_a_throttle_pauses_every_booking_and_halves_the_rate_once_an_episode(
    link: Link,
) -> None:
    await link.call(book())
    paused = await link.call(throttle(5.0))
    again = await link.call(throttle(5.0))  # the same 429 seen by another process
    first, second = await link.call(book()), await link.call(book())
    assert first["wait"] >= paused["paused"] - 0.01
    assert first["wait"] >= again["paused"] - 0.01
    assert 5.0 == round(first["rate"], 9)  # 10/s halved once, not twice
    assert round(1 / 5.0, 6) == round(float(second["at"]) - float(first["at"]), 6)


async def test_a_recheck_goes_at_once_unless_a_pause_began(link: Link) -> None:
    assert 0 == (await link.call(dict(book(), recheck=True)))["wait"]
    await link.call(throttle(3.0))
    assert (await link.call(dict(book(), recheck=True)))["wait"] > 2.5


# -- leases ----------------------------------------------------------------------------------


async def subscribed(link: Link) -> None:
    """Wait until the link's listener hears the namespace's channel (grants are published)."""
    with anyio.fail_after(5):
        while not (await link.client.pubsub_numsub(link.channel))[0][1]:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_leases_stop_at_the_cap_and_a_release_serves_the_line_in_order(link: Link) -> None:
    mine = dict(lease(2), id=f"{link.owner}:L2")  # a ticket of this link's process
    granted = [(await link.call(op))["ok"] for op in (lease(0), lease(1), mine)]
    assert [1, 1, 0] == granted
    full = await link.call(lease(3))
    assert 59.0 < full["wait"] <= 60.0  # until the earliest lease expires
    await subscribed(link)
    answers: dict[str, str | None] = {}

    async def wait(ticket: str) -> None:
        answers[ticket] = await link.waits.wait_ticket(ticket, 30.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, mine["id"])
        await anyio.lowlevel.checkpoint()
        link.queue({"op": "unlease", "id": "L0"})
        newcomer = await link.call(lease(4))  # the release went first, and served L2
    assert {mine["id"]: "-"} == answers  # granted by the release's call: no call of its own
    assert 0 == newcomer["ok"]  # L3 waited before it
    assert 1 == (await link.call(mine))["ok"]  # asking again: still L2's (idempotent)
    link.queue({"op": "unlease", "id": "L1"})
    assert 0 == (await link.call(lease(4)))["ok"]  # L3 is served, then L4 waits
    leases = await link.client.zrange(link.key("leases"), 0, -1)
    assert sorted([mine["id"].encode(), b"L3"]) == sorted(leases)


async def test_a_waiter_who_gives_up_leaves_the_line_and_returns_a_grant(link: Link) -> None:
    assert [1, 1, 0, 0] == [(await link.call(lease(i)))["ok"] for i in range(4)]
    await link.call({"op": "unlease", "id": "L0"})  # served to L2, who gave up meanwhile:
    assert await link.client.zscore(link.key("leases"), "L2")
    await link.call({"op": "unqueue", "id": "L2"})  # its slot goes on to L3
    leases = await link.client.zrange(link.key("leases"), 0, -1)
    assert [b"L1", b"L3"] == sorted(leases)
    assert 0 == await link.client.zcard(link.key("queue"))
    assert 0 == await link.client.hlen(link.key("tickets"))


async def test_an_expired_lease_frees_its_slot(link: Link) -> None:
    assert 1 == (await link.call(lease(0, cap=1, ttl=0.05)))["ok"]
    await anyio.sleep(0.1)
    assert 1 == (await link.call(lease(1, cap=1)))["ok"]


async def test_a_renewed_lease_outlives_its_first_expiry(link: Link) -> None:
    await link.call(lease(0, cap=1, ttl=0.2))
    await link.call({"op": "renew", "ids": ["L0"], "ttl": 60.0})
    await anyio.sleep(0.3)
    assert 0 == (await link.call(lease(1, cap=1)))["ok"]


async def test_a_concurrency_429_shrinks_the_shared_cap_once(link: Link) -> None:
    for i in range(3):
        await link.call(lease(i, cap=4))
    link.queue(throttle(1.0))
    link.queue({"op": "shrink", "configured": 4})
    shrunk = await link.call({"op": "shrink", "configured": 4})  # same 429, second report
    assert {"ok": 1, "cap": 2} == shrunk
    assert 2 == (await link.call(lease(9, cap=4)))["cap"]


# -- credits ---------------------------------------------------------------------------------


def reserve(rid: str, amount: float) -> dict[str, Any]:
    op = {"op": "reserve", "amount": amount, "id": rid, "owner": "test", "ttl": 60.0}
    return dict(op, release_on_failure=True)


async def test_budget_reserve_settle_commit_release(link: Link) -> None:
    await link.call({"op": "init_budget", "total": 100.0})
    assert [1, 1, 0] == [(await link.call(reserve(f"r{i}", 40.0)))["ok"] for i in range(3)]
    assert -1 == (await link.call(reserve("big", 101.0)))["ok"]  # can never fit
    link.queue({"op": "settle", "id": "r0", "amount": 30.0})
    link.queue({"op": "close", "id": "r0", "spend": True})
    link.queue({"op": "close", "id": "r1", "spend": False})
    link.queue({"op": "close", "id": "r1", "spend": True})  # closing twice: no effect
    await link.call(None)
    state = await link.call({"op": "init_budget", "total": 100.0})
    # r2, in line, was served by the closes: it holds its 40
    assert {"total": 100.0, "spent": 30.0, "reserved": 40.0} == state
    link.queue({"op": "close", "id": "r2", "spend": False})
    state = await link.call({"op": "init_budget", "total": 100.0})
    assert {"total": 100.0, "spent": 30.0, "reserved": 0.0} == state


@pytest.mark.parametrize(
    ("held", "first", "later", "freed", "served"),
    [
        # the later, smaller request would fit, but waits behind the first
        ([60.0], 50.0, 30.0, ["h0"], ["first", "later"]),
        # what is freed fits the later one only: nobody passes the first in line
        ([60.0, 40.0], 50.0, 40.0, ["h1"], []),
        ([60.0, 40.0], 50.0, 40.0, ["h1", "h0"], ["first", "later"]),
        # a first in line that fits serves the line as far as the credits go
        ([60.0, 40.0], 50.0, 60.0, ["h0"], ["first"]),
    ],
)
async def test_credit_waiters_are_served_first_come_first_served(  # noqa: PLR0917
    link: Link,
    held: list[float],
    first: float,
    later: float,
    freed: list[str],
    served: list[str],
) -> None:
    await link.call({"op": "init_budget", "total": 100.0})
    for i, amount in enumerate(held):
        assert 1 == (await link.call(reserve(f"h{i}", amount)))["ok"]
    assert 0 == (await link.call(reserve("first", first)))["ok"]
    assert 0 == (await link.call(reserve("later", later)))["ok"]
    for rid in freed:
        link.queue({"op": "close", "id": rid, "spend": False})
    await link.call({"op": "init_budget", "total": 100.0})
    granted = await link.client.hkeys(link.key("res"))
    kept = {f"h{i}" for i in range(len(held))} - set(freed)
    assert sorted(kept | set(served)) == sorted(k.decode() for k in granted)


async def test_a_second_process_asking_another_budget_is_refused(redis_url: str) -> None:
    first, second = RedisLimits(redis_url), RedisLimits(redis_url)
    first.configure(settings(budget=100.0))
    second.configure(settings(budget=50.0))
    try:
        await first.check()
        with pytest.raises(SharedLimitsError, match=r"--budget 50: .* budget of 100 credits"):
            await second.check()
    finally:
        await first.aclose()
        await second.aclose()


# -- the parts, through RedisLimits ----------------------------------------------------------


async def test_two_clients_share_slots_and_credits(redis_url: str) -> None:
    a, b = RedisLimits(redis_url), RedisLimits(redis_url)
    a.configure(settings(budget=50.0, max_in_flight=2))
    b.configure(settings(budget=50.0, max_in_flight=2))
    assert a.concurrency is not None
    assert b.concurrency is not None
    assert a.budget is not None
    assert b.budget is not None
    try:
        permits = [await a.concurrency.acquire(), await b.concurrency.acquire()]
        held = await a.budget.reserve(30.0)
        with anyio.move_on_after(0.2) as scope:  # both full: b waits
            await b.concurrency.acquire()
        assert scope.cancelled_caught
        with pytest.raises(BudgetExceededError, match="can never fit"):
            await b.budget.reserve(51.0)
        permits[0].release()
        with anyio.fail_after(5):  # woken by a's release, published by a's next call
            await a.rate.acquire()
            await b.concurrency.acquire()
        held.release()
        with anyio.fail_after(5):
            await a.rate.acquire()
            await b.budget.reserve(50.0)
    finally:
        await a.aclose()
        await b.aclose()


async def test_round_trips_are_counted(redis_url: str) -> None:
    limits = RedisLimits(redis_url)
    limits.configure(settings(rate=1000.0))
    try:
        for _ in range(3):
            await limits.acquire()
        assert 3 == limits.round_trips
    finally:
        await limits.aclose()


async def test_unreachable_redis_fails_clearly_without_the_password(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    limits = RedisLimits(f"redis://user:hunter2@127.0.0.1:{port + 1}/0")
    limits.configure(settings())
    try:
        with pytest.raises(SharedLimitsError, match="cannot be reached") as info:
            await limits.acquire()
        assert "hunter2" not in str(info.value)
    finally:
        await limits.aclose()


async def test_the_namespace_is_a_keyed_hash_and_the_key_never_reaches_redis(
    redis_url: str,
) -> None:
    limits = RedisLimits(redis_url)
    limits.configure(settings(budget=10.0))
    assert limits.budget is not None
    assert limits.concurrency is not None
    try:
        await limits.acquire()
        (await limits.concurrency.acquire()).release()
        (await limits.budget.reserve(1.0)).commit()
        await limits.acquire()
    finally:
        await limits.aclose()
    assert default_namespace(KEY) == limits.namespace
    assert KEY not in (limits.namespace or "")
    client = aioredis.Redis.from_url(redis_url)
    try:
        dump = []
        async for key in client.scan_iter():
            dump.append(key)
            kind = (await client.type(key)).decode()
            if kind == "hash":
                dump.append(
                    json.dumps(
                        {k.decode(): v.decode() for k, v in (await client.hgetall(key)).items()}
                    )
                )
    finally:
        await client.aclose()
    assert dump
    assert KEY not in repr(dump)
    assert KEY not in repr(limits)


async def test_a_batch_whose_shared_limits_are_unreachable_fails_each_line_sending_nothing(
    redis_url: str, evolink_simulator: Simulator
) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    limits = RedisLimits(f"redis://127.0.0.1:{port + 1}/0")
    async with (
        EvolinkClient(
            evolink_simulator.api_key, evolink_simulator.base_url, budget=100.0, limits=limits
        ) as client,
        client.generate_many(["a fox", "a crow"]) as batch,
    ):
        outcomes = [outcome async for outcome in batch]
    assert [("failed", True)] * 2 == [
        (o.status, isinstance(o.error, SharedLimitsError)) for o in outcomes
    ]
    assert 0 == evolink_simulator.stats.total_requests


@pytest.mark.parametrize("backend", ["in-process", "redis"])
def test_both_backends_offer_the_interface_the_dispatcher_sees(
    redis_url: str, backend: str
) -> None:
    limits = RedisLimits(redis_url) if backend == "redis" else None
    client = EvolinkClient(KEY, "http://127.0.0.1:9", budget=10.0, limits=limits)
    parts = (client.limits.rate, client.limits.concurrency, client.limits.budget)
    assert [True, True, True] == [
        isinstance(part, kind)
        for part, kind in zip(parts, (RateGate, SlotLimit, Budget), strict=True)
    ]


async def test_evolink_redis_url_shares_the_limits_under_the_keys_namespace(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOLINK_REDIS_URL", redis_url)
    async with EvolinkClient(KEY, "http://127.0.0.1:9") as client:
        assert isinstance(client.limits, RedisLimits)
        assert default_namespace(KEY) == client.limits.namespace


async def test_a_script_error_is_not_reported_as_unreachable(link: Link) -> None:
    with pytest.raises(SharedLimitsError, match="refused a change") as info:
        await link.call({"op": "no-such-op"})
    assert not info.value.unreachable


# -- waiting in line across processes (each RedisLimits: its own connections and owner) -----


async def queued(limits: RedisLimits, name: str, n: int) -> None:
    """Wait until ``n`` tickets stand in the namespace's line ``name``."""
    client = aioredis.Redis.from_url(limits.url)
    key = f"evolink:{{{limits.namespace}}}:{name}"
    try:
        with anyio.fail_after(5):
            while await client.zcard(key) < n:  # noqa: ASYNC110 (another process's state)
                await anyio.sleep(0.01)
    finally:
        await client.aclose()


async def test_slot_waiters_of_several_processes_are_served_in_arrival_order(
    redis_url: str,
) -> None:
    a, b, c = (RedisLimits(redis_url) for _ in range(3))
    for limits in (a, b, c):
        limits.configure(settings(max_in_flight=1))
    order: list[str] = []
    permits: dict[str, Permit] = {}

    b_served = anyio.Event()

    async def take(name: str, limits: RedisLimits) -> None:
        assert limits.concurrency is not None
        permits[name] = await limits.concurrency.acquire()
        order.append(name)
        if name == "b":
            b_served.set()

    async with a, b, c, anyio.create_task_group() as tg:
        await take("a", a)
        tg.start_soon(take, "b", b)
        await queued(a, "queue", 1)
        tg.start_soon(take, "c", c)
        await queued(a, "queue", 2)
        permits["a"].release()  # sent by a's flusher; its run serves b, the first in line
        with anyio.fail_after(5):
            await b_served.wait()
        assert ["a", "b"] == order
        permits["b"].release()
    assert ["a", "b", "c"] == order
    # a waiter's slot cost it one round trip: the lease asked once, granted by the release
    assert [1, 1] == [b.trips_by_op["lease"], c.trips_by_op["lease"]]


async def test_credit_waiters_of_several_processes_are_served_in_arrival_order(
    redis_url: str,
) -> None:
    a, b, c = (RedisLimits(redis_url) for _ in range(3))
    for limits in (a, b, c):
        limits.configure(settings(budget=100.0))
    got: dict[str, Hold] = {}

    async def reserve_(name: str, limits: RedisLimits, amount: float) -> None:
        assert limits.budget is not None
        got[name] = await limits.budget.reserve(amount)

    async with a, b, c, anyio.create_task_group() as tg:
        await reserve_("a", a, 60.0)
        tg.start_soon(reserve_, "b", b, 50.0)
        await queued(a, "cqueue", 1)
        tg.start_soon(reserve_, "c", c, 30.0)  # it would fit, but b came first
        await queued(a, "cqueue", 2)
        assert ["a"] == sorted(got)
        got["a"].release()
    assert ["a", "b", "c"] == sorted(got)
    assert [1, 1] == [b.trips_by_op["reserve"], c.trips_by_op["reserve"]]


# -- the background tasks belong to the limits' async context ---------------------------------


async def test_the_lease_renewer_runs_in_the_limits_task_group_and_ends_with_it(
    redis_url: str,
) -> None:
    before = set(asyncio.all_tasks())
    limits = RedisLimits(redis_url, lease_ttl=1.5)  # renewed every 0.5 s
    limits.configure(settings())
    assert limits.concurrency is not None
    async with limits:
        permit = await limits.concurrency.acquire()
        assert "group" == limits.runs_in
        await anyio.sleep(2.0)  # past the first expiry: only a renewal keeps the lease
        state = await read_state(redis_url, limits.namespace or "")
        assert [permit_id(permit)] == [lease["id"] for lease in state["leases"]]
        permit.release()
    assert "nowhere" == limits.runs_in
    assert before == set(asyncio.all_tasks())
    state = await read_state(redis_url, limits.namespace or "")
    assert [] == state["leases"]  # the release was sent on the way out


def permit_id(permit: Permit) -> str:
    assert isinstance(permit, RedisPermit)
    return permit.id


async def test_cancelling_the_owner_cancels_and_awaits_the_background(redis_url: str) -> None:
    before = set(asyncio.all_tasks())
    limits = RedisLimits(redis_url)
    limits.configure(settings())
    with anyio.CancelScope() as scope:
        async with limits:
            await limits.acquire()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert before == set(asyncio.all_tasks())


async def test_a_client_used_with_async_with_runs_the_background_in_its_limits(
    redis_url: str,
) -> None:
    before = set(asyncio.all_tasks())
    limits = RedisLimits(redis_url)
    async with EvolinkClient(KEY, "http://127.0.0.1:9", limits=limits):
        await limits.acquire()
        assert "group" == limits.runs_in
    assert "nowhere" == limits.runs_in
    assert before == set(asyncio.all_tasks())
