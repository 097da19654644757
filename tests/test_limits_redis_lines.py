"""The shared limits' lines of waiters (issue 14): a waiter that died gets nothing for long."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from redis_support import redis_server_fixture, redis_url_fixture

from evolink_async.limits._redis_link import Link
from evolink_async.limits._redis_waits import Waits

__all__ = ["redis_server_fixture", "redis_url_fixture"]


@pytest.fixture
async def link(redis_url: str) -> Any:
    link = Link(redis_url, "lines")
    yield link
    await link.aclose()


def lease(lid: str, ttl: float = 60.0) -> dict[str, Any]:
    op = {"op": "lease", "configured": 1, "ttl": ttl, "id": lid, "owner": "test"}
    return dict(op, grow_every=0.0)


def reserve(rid: str, amount: float, ttl: float = 60.0) -> dict[str, Any]:
    op = {"op": "reserve", "amount": amount, "id": rid, "owner": "test", "ttl": ttl}
    return dict(op, release_on_failure=True)


async def server_now(link: Link) -> float:
    seconds, micros = await link.client.time()
    return float(seconds) + micros / 1e6


async def test_a_slot_served_to_a_waiter_lasts_a_lease_time_from_its_last_sign_of_life(
    link: Link,
) -> None:
    assert 1 == (await link.call(lease("L0")))["ok"]
    assert 0 == (await link.call(lease("L1", ttl=30.0)))["ok"]  # in line, then silent
    last_seen = await server_now(link)
    await anyio.sleep(0.2)
    await link.call({"op": "unlease", "id": "L0"})  # serves L1
    expiry = await link.client.zscore(link.key("leases"), "L1")
    assert expiry is not None
    assert expiry <= last_seen + 30.0  # not a full lease time from the grant


async def test_credits_served_to_a_waiter_that_never_takes_them_go_back(link: Link) -> None:
    await link.call({"op": "init_budget", "total": 100.0})
    assert 1 == (await link.call(reserve("r0", 60.0)))["ok"]
    assert 0 == (await link.call(reserve("gone", 50.0, ttl=0.2)))["ok"]
    assert 0 == (await link.call(reserve("alive", 40.0, ttl=0.2)))["ok"]
    await link.call({"op": "close", "id": "r0", "spend": False})  # serves both, pending
    await link.call({"op": "taken", "id": "alive", "ttl": 60.0})  # only one says it took it
    assert {b"gone", b"alive"} == set(await link.client.hkeys(link.key("res")))
    await anyio.sleep(0.3)  # past "gone"'s lease time from its last sign of life
    state = await link.call({"op": "init_budget", "total": 100.0})
    assert [b"alive"] == await link.client.hkeys(link.key("res"))
    assert 40.0 == state["reserved"]


async def test_a_waiter_asking_again_finds_its_grant_and_takes_it(link: Link) -> None:
    await link.call({"op": "init_budget", "total": 100.0})
    assert 1 == (await link.call(reserve("r0", 60.0)))["ok"]
    assert 0 == (await link.call(reserve("r1", 50.0, ttl=0.2)))["ok"]
    await link.call({"op": "close", "id": "r0", "spend": False})  # served while it slept
    assert 1 == (await link.call(reserve("r1", 50.0, ttl=0.2)))["ok"]  # the go was missed
    await anyio.sleep(0.3)
    await link.call({"op": "renew", "ids": [], "ttl": 60.0})  # a run that expires the pending
    assert [b"r1"] == await link.client.hkeys(link.key("res"))  # taken: it stays


async def test_the_shared_slow_down_recovers_to_the_full_rate(link: Link) -> None:
    book = {"op": "book", "rate": 10.0, "burst": 1, "inc": 100.0, "window": 1.0}
    throttle = {"op": "throttle", "pause": 0.05, "inc": 100.0, "decrease": 0.5}
    throttle.update(min_factor=1 / 16, cooldown=0.0, default_pause=2.0)
    await link.call(throttle)
    assert 5.0 == round((await link.call(book))["rate"], 9)  # halved during the pause
    await anyio.sleep(0.2)  # past the pause: + 100 x the factor a second, capped at 1
    assert 10.0 == (await link.call(book))["rate"]


async def test_the_window_guard_keeps_each_slot_a_window_and_the_guard_after_the_nth_before(
    link: Link,
) -> None:
    book = {"op": "book", "rate": 4.0, "burst": 1, "inc": 0.0, "window": 1.0, "guard": 0.1}
    slots = [float((await link.call(book))["at"]) for _ in range(9)]
    assert [1.1] * 5 == [round(slots[i] - slots[i - 4], 6) for i in range(4, 9)]


@pytest.mark.parametrize(
    ("message", "answer"),
    [(b"go:me:1:L7:0.25", "0.25"), (b"go:me:1:L7:", "-"), (b"ask:me:1:L7", "ask")],
)
async def test_an_answer_heard_before_its_waiter_waits_is_kept_for_it(
    message: bytes, answer: str
) -> None:
    waits = Waits("me:1")
    waits.hear(b"go:other:2:L7:0.5")  # another process's ticket: not ours
    waits.hear(message)  # published by another call before the answer to our own came
    with anyio.fail_after(5):
        assert answer == await waits.wait_ticket("me:1:L7", 30.0)
    assert await waits.wait_ticket("other:2:L7", 0.0) is None  # not kept
    assert [] == waits.waiting


async def test_a_waiter_leaves_the_line_a_lease_time_of_its_own_after_it_was_last_seen(
    link: Link,
) -> None:
    assert 1 == (await link.call(lease("L0")))["ok"]
    assert 0 == (await link.call(lease("long", ttl=60.0)))["ok"]
    assert 0 == (await link.call(lease("short", ttl=0.05)))["ok"]
    await anyio.sleep(0.1)  # past "short"'s lease time, far from "long"'s
    assert 0 == (await link.call(lease("late", ttl=0.05)))["ok"]
    assert [b"long", b"late"] == await link.client.zrange(link.key("queue"), 0, -1)
