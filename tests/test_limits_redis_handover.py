"""The handover through the shared limits (issue 14): a slot freed in one process reaches a
waiter in another at once, costs that waiter one round trip, and can be traced."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis_support import limit_settings, redis_server_fixture, redis_url_fixture

from evolink_async.limits import LimitSettings, Permit, RedisLimits, _redis_link

__all__ = ["redis_server_fixture", "redis_url_fixture"]

KEY = "sk-handover-0123456789abcdef"


def settings(**overrides: Any) -> LimitSettings:
    return limit_settings(KEY, {"rate": 1000.0, "burst": 1, "max_in_flight": 1}, overrides)


async def in_line(limits: RedisLimits, n: int) -> None:
    """Wait until ``n`` tickets stand in the namespace's line of slot waiters."""
    client = aioredis.Redis.from_url(limits.url)
    try:
        with anyio.fail_after(5):
            while await client.zcard(f"evolink:{{{limits.namespace}}}:queue") < n:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    finally:
        await client.aclose()


async def wait_for_slot(limits: RedisLimits, got: list[Permit]) -> None:
    assert limits.concurrency is not None
    got.append(await limits.concurrency.acquire())


async def granted(got: list[Permit]) -> None:
    """Wait (bounded) until the slot waiter has its permit, granted from another process."""
    with anyio.fail_after(5):
        while not got:  # noqa: ASYNC110 (granted from the other process)
            await anyio.sleep(0.01)


async def test_a_released_slot_goes_out_at_once_with_the_changes_queued_before_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ordinary changes (a settle) wait for a call to take them along; were the release one
    # of them, the waiter in the other process would wait this long
    monkeypatch.setattr(_redis_link, "FLUSH_DELAY", 3600.0)
    a = RedisLimits(redis_url, "urgent")
    b = RedisLimits(redis_url, "urgent")
    a.configure(settings(budget=100.0))
    b.configure(settings(budget=100.0))
    assert a.concurrency is not None
    assert b.concurrency is not None
    assert a.budget is not None
    got: list[Permit] = []
    async with a, b, anyio.create_task_group() as tg:
        held = await a.concurrency.acquire()
        hold = await a.budget.reserve(40.0)
        tg.start_soon(wait_for_slot, b, got)
        await in_line(a, 1)
        hold.settle(25.0)  # queued, not urgent
        held.release()  # urgent: the flusher sends both now
        await granted(got)
        client = aioredis.Redis.from_url(redis_url)
        try:
            amount = await client.hget(f"evolink:{{{a.namespace}}}:res", getattr(hold, "id", ""))
        finally:
            await client.aclose()
        assert b"25" == amount
        got[0].release()


async def test_a_slot_served_from_the_line_costs_its_waiter_one_round_trip(
    redis_url: str,
) -> None:
    a = RedisLimits(redis_url, "one-trip")
    b = RedisLimits(redis_url, "one-trip", lease_ttl=0.6)  # renewed every 0.2 s
    a.configure(settings())
    b.configure(settings())
    assert a.concurrency is not None
    assert b.concurrency is not None
    got: list[Permit] = []
    async with a, b, anyio.create_task_group() as tg:
        held = await a.concurrency.acquire()
        tg.start_soon(wait_for_slot, b, got)
        await in_line(a, 1)
        held.release()
        await granted(got)
        assert 0 == b.queued_changes  # nothing to say: no "taken" for a lease
        assert 1 == b.trips_by_op["lease"]
        assert "flush" not in b.trips_by_op
        await anyio.sleep(1.0)  # past its first expiry: the renewer keeps it
        client = aioredis.Redis.from_url(redis_url)
        try:
            leases = await client.zrange(f"evolink:{{{b.namespace}}}:leases", 0, -1)
        finally:
            await client.aclose()
        assert [permit_id(got[0]).encode()] == leases
        got[0].release()


def permit_id(permit: Permit) -> str:
    lease_id = getattr(permit, "id", None)
    assert isinstance(lease_id, str)
    return lease_id


@pytest.mark.parametrize("trace", [False, True])
async def test_the_trace_is_off_by_default_and_times_each_step_of_a_create(
    redis_url: str, trace: bool
) -> None:
    limits = RedisLimits(redis_url, f"trace-{trace}", trace=trace)
    limits.configure(settings())
    assert limits.concurrency is not None
    async with limits:
        permit = await limits.concurrency.acquire()
        await limits.rate.acquire()
        permit.release()
        await limits.aclose()
        events = limits.trace_events
    if not trace:
        assert [] == events
        return
    kinds = [e["kind"] for e in events]
    assert ["call", "lease", "rate", "release", "call"] == kinds
    lease, rate, release = events[1], events[2], events[3]
    assert lease["task"] == rate["task"]  # the create's own rate slot (booked with its lease)
    assert rate["ahead"] is True
    assert lease["asked"] <= lease["t"] <= rate["t"] <= release["t"]
    assert [release["id"]] == events[4]["freed"]
    assert KEY not in json.dumps(events)


def window_book(keep: int) -> dict[str, Any]:
    """The rate's booking: 9 in any second (no guard), ``keep`` of them left to creates."""
    op = {"op": "book", "rate": 9.0, "burst": 1, "inc": 0.0, "window": 1.0, "guard": 0.0}
    return dict(op, keep=keep)


def slot_lease(i: int, keep: int) -> dict[str, Any]:
    op = {"op": "lease", "configured": 1, "ttl": 60.0, "id": f"L{i}", "owner": "test"}
    return dict(op, grow_every=0.0, book=window_book(keep))


@pytest.fixture
async def link(redis_url: str) -> Any:
    link = _redis_link.Link(redis_url, "keep")
    yield link
    await link.aclose()


@pytest.mark.parametrize(
    ("keep", "waiters", "at_once"),
    [
        (0, 2, 9),  # nothing kept: reads use the whole window
        (2, 0, 9),  # nobody in line, no create to come: the whole window
        (2, 2, 7),  # creates to come: reads leave them 2
        (2, 1, 8),  # no more kept than creates to come
    ],
)
async def test_reads_leave_slots_of_each_window_to_the_creates_to_come(
    link: _redis_link.Link, keep: int, waiters: int, at_once: int
) -> None:
    assert 1 == (await link.call(slot_lease(0, keep)))["ok"]  # booked a create's slot
    await link.client.delete(link.key("sent"), link.key("rate"))  # a quiet window again
    for i in range(1, waiters + 1):
        assert 0 == (await link.call(slot_lease(i, keep)))["ok"]  # in line
    reads = [await link.call(window_book(keep)) for _ in range(at_once + 1)]
    assert [0.0] * at_once == [r["wait"] for r in reads[:at_once]]
    assert 0.9 < reads[at_once]["wait"] <= 1.0  # a window after the first


async def test_a_create_granted_from_the_line_takes_a_slot_the_reads_left(
    link: _redis_link.Link,
) -> None:
    assert 1 == (await link.call(slot_lease(0, 2)))["ok"]
    await link.client.delete(link.key("sent"), link.key("rate"))
    assert [0, 0] == [(await link.call(slot_lease(i, 2)))["ok"] for i in (1, 2)]
    reads = [await link.call(window_book(2)) for _ in range(7)]
    assert all(r["wait"] == 0.0 for r in reads)
    await link.call({"op": "unlease", "id": "L0"})  # serves L1, its create's slot booked
    sent = [float(x) for x in await link.client.lrange(link.key("sent"), 0, -1)]
    assert 8 == len(sent)
    assert sent[-1] - sent[0] < 0.5  # in the window of the reads, not a window later
    late = await link.call(window_book(2))  # L2 still waits: the reads keep leaving 2
    assert 0.9 < late["wait"] <= 1.0


async def test_a_renewal_serves_a_dead_process_s_expired_slot_to_the_line(
    link: _redis_link.Link,
) -> None:
    dead = dict(slot_lease(0, 0), ttl=0.2)
    assert 1 == (await link.call(dead))["ok"]
    assert 0 == (await link.call(slot_lease(1, 0)))["ok"]  # in line, asleep
    await anyio.sleep(0.3)  # the dead process's lease has expired; nobody asked since
    await link.call({"op": "renew", "ids": [], "ttl": 60.0, "tickets": []})  # a renewer's tick
    assert [b"L1"] == await link.client.zrange(link.key("leases"), 0, -1)
    assert 0 == await link.client.zcard(link.key("queue"))
