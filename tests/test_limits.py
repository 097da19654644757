"""Unit tests of evolink_async.limits, in virtual time: nothing here waits on the wall clock."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from evolink_async.errors import BudgetExceededError, EvolinkError
from evolink_async.limits import (
    DEFAULT_PRICES,
    ConcurrencyLimit,
    CreditBudget,
    Estimator,
    PriceTable,
    RateLimiter,
    Reservation,
)


class VirtualTime:
    """A fake clock with a sleep that only returns when the test moves the clock."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self.now + delay, anyio.Event())
        self._sleepers.append(entry)
        try:
            await entry[1].wait()
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    async def advance_to(self, target: float) -> None:
        """Move the clock to ``target``, waking each sleeper at its own deadline in turn."""
        await anyio.wait_all_tasks_blocked()
        while True:
            due = [entry for entry in self._sleepers if entry[0] <= target]
            if not due:
                break
            deadline = min(entry[0] for entry in due)
            self.now = max(self.now, deadline)
            for entry in due:
                if entry[0] <= deadline:
                    self._sleepers.remove(entry)
                    entry[1].set()
            await anyio.wait_all_tasks_blocked()
        self.now = max(self.now, target)
        await anyio.wait_all_tasks_blocked()


def recorder(
    clock: VirtualTime, done: list[tuple[str, float]]
) -> Callable[[str, Callable[[], Awaitable[object]]], Coroutine[Any, Any, None]]:
    """A task body that runs a step, then records its name and the virtual time."""

    async def run(name: str, step: Callable[[], Awaitable[object]]) -> None:
        await step()
        done.append((name, clock.now))

    return run


# --------------------------------------------------------------------------------------------
# RateLimiter: the pure core
# --------------------------------------------------------------------------------------------


def test_start_up_burst_is_bounded_by_burst() -> None:
    limiter = RateLimiter(2.0, burst=3, clock=lambda: 0.0)

    waits = [limiter.reserve(0.0) for _ in range(6)]

    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_burst_of_one_spaces_every_request_by_the_interval() -> None:
    limiter = RateLimiter(4.0, clock=lambda: 0.0)

    waits = [limiter.reserve(0.0) for _ in range(4)]

    assert waits == [0.0, 0.25, 0.5, 0.75]


def test_wait_is_counted_from_the_time_of_the_call() -> None:
    limiter = RateLimiter(1.0, clock=lambda: 0.0)
    limiter.reserve(0.0)  # slot at 0

    assert limiter.reserve(0.25) == 0.75  # slot at 1
    assert limiter.reserve(2.0) == 0.0  # the bucket refilled meanwhile


def test_idle_bucket_refills_to_burst_and_no_further() -> None:
    limiter = RateLimiter(1.0, burst=2, clock=lambda: 0.0)
    limiter.reserve(0.0)
    limiter.reserve(0.0)

    waits = [limiter.reserve(100.0) - 0.0 for _ in range(3)]

    assert waits == [0.0, 0.0, 1.0]


def test_book_returns_the_slot_time() -> None:
    limiter = RateLimiter(2.0, clock=lambda: 10.0)

    slots = [limiter.book().at for _ in range(3)]

    assert slots == [10.0, 10.5, 11.0]


def test_rate_limited_pauses_every_new_request_until_retry_after() -> None:
    clock = VirtualTime(5.0)
    limiter = RateLimiter(100.0, burst=10, clock=clock)

    limiter.on_rate_limited(30.0)

    assert limiter.paused_until == 35.0
    assert limiter.reserve(5.0) == 30.0
    assert limiter.reserve(15.0) == 20.0


def test_rate_limited_without_retry_after_pauses_for_the_default() -> None:
    clock = VirtualTime(5.0)
    limiter = RateLimiter(1.0, clock=clock, default_pause=3.0)

    limiter.on_rate_limited(None)

    assert limiter.paused_until == 8.0


def test_rate_limited_moves_booked_slots_behind_the_pause_in_order() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, clock=clock, increase_per_second=0.0)
    first, second, third = limiter.book(0.0), limiter.book(0.0), limiter.book(0.0)
    clock.now = 0.5

    limiter.on_rate_limited(10.0)

    # the slot at 0 has come (it was sent); the others follow the pause at the halved rate
    assert (first.at, second.at, third.at) == (0.0, 10.5, 12.5)


def test_rate_limited_halves_the_effective_rate() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(8.0, clock=clock, increase_per_second=0.0)

    limiter.on_rate_limited(1.0)

    assert (limiter.rate, limiter.effective_rate) == (8.0, 4.0)


def test_slots_after_a_pause_are_spaced_at_the_lowered_rate() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(2.0, burst=1, clock=clock, increase_per_second=0.0)
    limiter.reserve(0.0)  # the bucket is empty now

    limiter.on_rate_limited(5.0)

    assert [limiter.book(1.0).at for _ in range(3)] == [5.0, 6.0, 7.0]


def test_effective_rate_has_a_floor_at_min_rate() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(8.0, clock=clock, min_rate=3.0, increase_per_second=0.0)

    for _ in range(5):
        limiter.on_rate_limited(1.0)
        clock.now = limiter.paused_until

    assert limiter.effective_rate == 3.0


def test_default_min_rate_is_a_sixteenth_of_the_rate() -> None:
    assert RateLimiter(8.0).min_rate == 0.5


def test_rate_limited_during_a_pause_extends_it_without_lowering_the_rate_again() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(8.0, clock=clock, increase_per_second=0.0)
    limiter.on_rate_limited(10.0)
    clock.now = 2.0

    limiter.on_rate_limited(20.0)

    assert (limiter.paused_until, limiter.effective_rate) == (22.0, 4.0)


def test_a_shorter_retry_after_does_not_shorten_the_pause() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(8.0, clock=clock)
    limiter.on_rate_limited(10.0)

    limiter.on_rate_limited(1.0)

    assert limiter.paused_until == 10.0


def test_rate_recovers_additively_after_the_pause_up_to_the_configured_rate() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(8.0, clock=clock, increase_per_second=0.5)
    limiter.on_rate_limited(2.0)  # 4/s from now

    rates = []
    for t in (1.0, 2.0, 4.0, 6.0, 10.0, 100.0):
        clock.now = t
        rates.append(limiter.effective_rate)

    assert rates == [4.0, 4.0, 5.0, 6.0, 8.0, 8.0]


def test_default_recovery_takes_fifteen_seconds_from_half_rate() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(3.0, clock=clock)
    limiter.on_rate_limited(0.0)

    clock.now = 15.0

    assert pytest.approx(limiter.effective_rate) == 3.0


def test_unlimited_never_waits() -> None:
    limiter = RateLimiter.unlimited(clock=lambda: 0.0)

    assert [limiter.reserve(0.0) for _ in range(100)] == [0.0] * 100
    assert (math.inf, math.inf) == (limiter.rate, limiter.tokens)


def test_unlimited_still_honours_rate_limited_pauses() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(None, clock=clock)
    booked = limiter.book(0.0)
    clock.now = 0.0

    limiter.on_rate_limited(7.0)

    assert (booked.at, limiter.book(1.0).at, limiter.book(1.0).at) == (0.0, 7.0, 7.0)
    assert math.inf == limiter.effective_rate


def test_cancelled_newest_slot_is_handed_back() -> None:
    limiter = RateLimiter(1.0, clock=lambda: 0.0)
    limiter.book(0.0)
    last = limiter.book(0.0)

    last.cancel()

    assert limiter.book(0.0).at == 1.0


def test_cancelled_slot_in_the_middle_goes_to_the_next_caller() -> None:
    limiter = RateLimiter(1.0, clock=lambda: 0.0)
    slots = [limiter.book(0.0) for _ in range(3)]  # at 0, 1, 2

    slots[1].cancel()

    assert [limiter.book(0.5).at, limiter.book(0.5).at] == [1.0, 3.0]


def test_cancelling_twice_or_after_the_slot_came_does_nothing() -> None:
    limiter = RateLimiter(1.0, clock=lambda: 0.0)
    first = limiter.book(0.0)
    limiter.book(0.0)
    limiter.book(5.0)  # the slot at 0 is long gone

    first.cancel()
    first.cancel()

    assert limiter.book(5.0).at == 6.0


def test_tokens_show_the_bucket_level() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(2.0, burst=4, clock=clock)
    for _ in range(4):
        limiter.reserve(0.0)
    clock.now = 0.75

    assert limiter.tokens == 1.5
    limiter.reserve(0.75)
    limiter.reserve(0.75)
    assert (limiter.tokens, limiter.pending) == (0.0, 1)


def test_counts_rate_limited_answers() -> None:
    limiter = RateLimiter(2.0, clock=lambda: 0.0)
    limiter.on_rate_limited(1.0)
    limiter.on_rate_limited(None)

    assert limiter.throttles == 2


def test_rate_limiter_repr_shows_live_state() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(5.0, burst=2, clock=clock, increase_per_second=1.0)
    limiter.on_rate_limited(1.2)
    limiter.reserve(0.0)

    assert (
        repr(limiter)
        == "<RateLimiter rate=2.5/s (configured 5) burst=2 tokens=0 paused_for=1.2s waiters=0>"
    )


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0.0,), {}),
        ((-1.0,), {}),
        ((math.nan,), {}),
        ((1.0, 0), {}),
        ((1.0, 1), {"decrease_factor": 0.0}),
        ((1.0, 1), {"decrease_factor": 1.5}),
        ((1.0, 1), {"min_rate": 2.0}),
        ((1.0, 1), {"increase_per_second": -1.0}),
        ((1.0, 1), {"default_pause": -1.0}),
    ],
)
def test_rate_limiter_rejects_bad_arguments(
    args: tuple[float, ...], kwargs: dict[str, float]
) -> None:
    with pytest.raises(ValueError, match=r"must|above"):
        RateLimiter(*args, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# RateLimiter: acquire()
# --------------------------------------------------------------------------------------------


async def test_acquire_returns_at_each_slot_in_order() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(2.0, burst=2, clock=clock, sleep=clock.sleep)
    done: list[tuple[str, float]] = []
    run = recorder(clock, done)

    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(run, name, limiter.acquire)
            await anyio.wait_all_tasks_blocked()
        assert limiter.waiters == 2
        await clock.advance_to(10.0)

    assert done == [("a", 0.0), ("b", 0.0), ("c", 0.5), ("d", 1.0)]
    assert limiter.waiters == 0


async def test_rate_limited_pauses_every_waiter() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, clock=clock, sleep=clock.sleep, increase_per_second=0.0)
    done: list[tuple[str, float]] = []
    run = recorder(clock, done)

    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(run, name, limiter.acquire)
            await anyio.wait_all_tasks_blocked()
        await clock.advance_to(1.5)  # a at 0, b at 1
        limiter.on_rate_limited(10.0)  # pause until 11.5, then 0.5/s
        await clock.advance_to(100.0)

    assert done == [("a", 0.0), ("b", 1.0), ("c", 11.5), ("d", 13.5)]


async def test_a_waiter_whose_slot_came_just_before_a_429_waits_for_the_pause() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, clock=clock, sleep=clock.sleep, increase_per_second=0.0)
    done: list[tuple[str, float]] = []
    run = recorder(clock, done)
    limiter.reserve(0.0)  # someone else took the token at 0

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", limiter.acquire)  # slot at 1
        await anyio.wait_all_tasks_blocked()
        clock.now = 1.0  # the slot comes, but the task has not run yet...
        limiter.on_rate_limited(4.0)  # ...when a 429 arrives
        await clock.advance_to(100.0)

    assert done == [("a", 5.0)]


async def test_cancelled_waiter_gives_its_slot_to_the_next() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, clock=clock, sleep=clock.sleep)
    done: list[tuple[str, float]] = []
    run = recorder(clock, done)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", limiter.acquire)  # slot 0
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await limiter.acquire()  # would have had slot 1
        tg.start_soon(run, "c", limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        await clock.advance_to(10.0)

    assert done == [("a", 0.0), ("c", 1.0)]


async def test_cancelled_waiter_is_no_longer_counted() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, clock=clock, sleep=clock.sleep)
    limiter.reserve(0.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiters == 1
        tg.cancel_scope.cancel()

    assert (limiter.waiters, limiter.pending) == (0, 0)


async def test_acquire_is_a_checkpoint_even_when_a_token_is_free() -> None:
    limiter = RateLimiter.unlimited()

    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
        pytest.fail("acquire() did not raise on a cancelled scope")  # pragma: no cover

    assert scope.cancelled_caught


def test_take_now_takes_free_tokens_at_once_and_books_nothing() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, burst=2, clock=clock, sleep=clock.sleep)

    assert (limiter.take_now(), limiter.take_now(), limiter.take_now()) == (True, True, False)
    assert (limiter.tokens, limiter.pending) == (0.0, 0)
    clock.now = 1.0  # one token back
    assert (limiter.take_now(), limiter.take_now()) == (True, False)


async def test_take_now_yields_to_a_waiter_booked_ahead_and_to_a_pause() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, burst=1, clock=clock, sleep=clock.sleep)
    assert limiter.take_now()

    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # books the slot at t=1
        await anyio.wait_all_tasks_blocked()
        clock.now = 1.0
        assert not limiter.take_now()  # the slot at t=1 is the waiter's
        tg.cancel_scope.cancel()

    limiter.on_rate_limited(5.0)
    clock.now = 3.0
    assert not limiter.take_now()  # paused until t=6
    clock.now = 6.0
    assert limiter.take_now()


async def test_rate_limiter_works_as_an_async_context_manager() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(1.0, burst=2, clock=clock, sleep=clock.sleep)

    async with limiter:
        pass

    assert limiter.tokens == 1.0


# --------------------------------------------------------------------------------------------
# ConcurrencyLimit
# --------------------------------------------------------------------------------------------


async def test_concurrency_limit_admits_up_to_the_limit() -> None:
    limit = ConcurrencyLimit(2)

    first, second = await limit.acquire(), await limit.acquire()

    assert (limit.in_flight, limit.try_acquire()) == (2, None)
    first.release()
    second.release()
    assert limit.in_flight == 0


async def test_waiting_acquirer_gets_the_released_place() -> None:
    limit = ConcurrencyLimit(1)
    permit = await limit.acquire()
    got: list[object] = []

    async def take() -> None:
        got.append(await limit.acquire())

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert (limit.waiters, got) == (1, [])
        permit.release()

    assert (len(got), limit.waiters) == (1, 0)


async def test_permit_release_is_idempotent() -> None:
    limit = ConcurrencyLimit(3)
    permit = await limit.acquire()
    await limit.acquire()

    permit.release()
    permit.release()

    assert (limit.in_flight, permit.released) == (1, True)


async def test_release_without_a_permit_releases_the_oldest() -> None:
    limit = ConcurrencyLimit(3)
    oldest = await limit.acquire()
    newest = await limit.acquire()

    limit.release()

    assert (oldest.released, newest.released, limit.in_flight) == (True, False, 1)


def test_release_without_any_permit_held_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no permit"):
        ConcurrencyLimit(1).release()


async def test_release_of_a_foreign_permit_is_an_error() -> None:
    permit = await ConcurrencyLimit(1).acquire()

    with pytest.raises(ValueError, match="another"):
        ConcurrencyLimit(1).release(permit)


async def test_slot_holds_a_place_for_the_block() -> None:
    limit = ConcurrencyLimit(2)

    async with limit.slot() as permit:
        assert (limit.in_flight, permit.released) == (1, False)

    assert (limit.in_flight, permit.released) == (0, True)


async def test_shrink_lowers_the_limit_and_keeps_running_tasks() -> None:
    limit = ConcurrencyLimit(4)
    permits = [await limit.acquire() for _ in range(3)]

    assert limit.shrink(2) == 2
    assert (limit.limit, limit.in_flight, limit.try_acquire()) == (2, 3, None)
    permits[0].release()
    assert limit.try_acquire() is None  # 2 in flight: still full
    permits[1].release()
    assert limit.try_acquire() is not None


def test_shrink_never_goes_below_one_nor_raises_the_limit() -> None:
    limit = ConcurrencyLimit(4)

    assert limit.shrink(0) == 1
    assert limit.shrink(3) == 1


def test_grow_goes_back_up_to_the_configured_maximum_only() -> None:
    limit = ConcurrencyLimit(3)
    limit.shrink(1)

    assert [limit.grow(), limit.grow(), limit.grow()] == [2, 3, 3]
    assert limit.configured == 3


def test_grow_every_regrows_one_place_per_interval_of_calm() -> None:
    clock = VirtualTime()
    limit = ConcurrencyLimit(5, grow_every=10.0, clock=clock)
    limit.shrink(1)

    limits = []
    for t in (9.0, 10.0, 25.0, 31.0, 500.0):
        clock.now = t
        limits.append(limit.limit)

    assert limits == [1, 2, 3, 4, 5]


async def test_cancelled_concurrency_waiter_does_not_keep_a_place() -> None:
    limit = ConcurrencyLimit(1)
    permit = await limit.acquire()

    with anyio.move_on_after(0):
        await limit.acquire()
    permit.release()

    assert (limit.in_flight, limit.waiters) == (0, 0)


def test_concurrency_limit_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ConcurrencyLimit(0)
    with pytest.raises(TypeError, match="int"):
        ConcurrencyLimit(2.5)  # type: ignore[arg-type]


async def test_concurrency_limit_repr_shows_live_state() -> None:
    limit = ConcurrencyLimit(4)
    await limit.acquire()
    limit.shrink(3)

    assert repr(limit) == "<ConcurrencyLimit in_flight=1 limit=3 (configured 4) waiters=0>"


# --------------------------------------------------------------------------------------------
# PriceTable
# --------------------------------------------------------------------------------------------


def test_price_table_has_the_published_prices() -> None:
    table = PriceTable()

    prices = [table.price("sora-2-preview", d) for d in (4, 8, 12)]

    assert prices == [23.04, 46.08, 69.12]


def test_price_table_uses_the_model_default_duration() -> None:
    assert PriceTable().price("sora-2-preview") == 23.04


def test_price_table_knows_nothing_of_other_models_or_durations() -> None:
    table = PriceTable()

    assert [
        table.price("sora-2", 10),
        table.price("sora-2", None),
        table.price("sora-2-preview", 10),
    ] == [None, None, None]


def test_price_table_is_an_estimator() -> None:
    estimator: Estimator = PriceTable()

    assert estimator("sora-2-preview", 8, {"aspect_ratio": "16:9"}) == 46.08


def test_custom_price_table() -> None:
    table = PriceTable({"veo3": {4: 10.0, 8: 20.0}}, {"veo3": 8})

    assert (
        table.price("veo3"),
        table.price("veo3", 4),
        table.price("sora-2-preview", 4),
    ) == (20.0, 10.0, None)
    assert frozenset({"veo3"}) == table.models


def test_default_prices_are_the_documented_ones() -> None:
    assert DEFAULT_PRICES == {"sora-2-preview": {4: 23.04, 8: 46.08, 12: 69.12}}


def test_price_table_rejects_negative_prices() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        PriceTable({"m": {4: -1.0}})


# --------------------------------------------------------------------------------------------
# CreditBudget
# --------------------------------------------------------------------------------------------


def state(budget: CreditBudget) -> tuple[float, float, float]:
    return (budget.spent, budget.reserved, budget.available)


def test_reservation_holds_credits() -> None:
    budget = CreditBudget(100.0)

    reservation = budget.try_reserve(30.0)

    assert reservation is not None
    assert (reservation.amount, reservation.state) == (30.0, "open")
    assert state(budget) == (0.0, 30.0, 70.0)


def test_commit_turns_the_reservation_into_spending() -> None:
    budget = CreditBudget(100.0)
    reservation = budget.try_reserve(30.0)
    assert reservation is not None

    reservation.commit()

    assert state(budget) == (30.0, 0.0, 70.0)


def test_release_frees_the_reservation() -> None:
    budget = CreditBudget(100.0)
    reservation = budget.try_reserve(30.0)
    assert reservation is not None

    reservation.release()

    assert state(budget) == (0.0, 0.0, 100.0)
    assert reservation.state == "released"


def test_release_spends_when_failures_are_billed() -> None:
    budget = CreditBudget(100.0, release_on_failure=False)
    reservation = budget.try_reserve(30.0)
    assert reservation is not None

    reservation.release()

    assert state(budget) == (30.0, 0.0, 70.0)


def test_closing_twice_does_nothing() -> None:
    budget = CreditBudget(100.0)
    reservation = budget.try_reserve(30.0)
    assert reservation is not None

    reservation.commit()
    reservation.commit()
    reservation.release()
    reservation.settle(5.0)

    assert state(budget) == (30.0, 0.0, 70.0)
    assert (reservation.state, budget.open_reservations) == ("committed", 0)


def test_settle_replaces_the_estimate() -> None:
    budget = CreditBudget(100.0)
    reservation = budget.try_reserve(30.0)
    assert reservation is not None

    reservation.settle(7.0)

    assert (reservation.amount, reservation.estimate) == (7.0, 30.0)
    assert state(budget) == (0.0, 7.0, 93.0)
    reservation.commit()
    assert state(budget) == (7.0, 0.0, 93.0)


def test_settle_above_the_estimate_is_recorded_but_blocks_new_reservations() -> None:
    budget = CreditBudget(50.0)
    first = budget.try_reserve(25.0)
    assert first is not None
    assert budget.try_reserve(25.0) is not None

    first.settle(30.0)

    assert state(budget) == (0.0, 55.0, -5.0)
    assert budget.try_reserve(0.0) is None


def test_try_reserve_returns_none_when_it_does_not_fit() -> None:
    budget = CreditBudget(50.0)
    assert budget.try_reserve(40.0) is not None

    assert budget.try_reserve(20.0) is None
    assert state(budget) == (0.0, 40.0, 10.0)


def test_three_clips_of_four_seconds_fit_their_exact_price() -> None:
    budget = CreditBudget(69.12)

    reservations = [budget.try_reserve(23.04) for _ in range(3)]

    assert None not in reservations
    assert budget.try_reserve(0.01) is None


async def test_reserve_raises_when_the_amount_can_never_fit() -> None:
    budget = CreditBudget(50.0)
    spent = await budget.reserve(30.0)
    spent.commit()

    with pytest.raises(
        BudgetExceededError, match=r"the budget of 50 credits cannot pay 25 more \(30 spent\)"
    ) as info:
        await budget.reserve(25.0)

    assert isinstance(info.value, EvolinkError)


async def test_reserve_raises_at_once_when_reservations_become_spending() -> None:
    budget = CreditBudget(50.0, release_on_failure=False)
    await budget.reserve(30.0)

    with pytest.raises(BudgetExceededError, match="30 held by tasks in flight"):
        await budget.reserve(25.0)


async def test_reserve_waits_for_a_release_then_fits() -> None:
    budget = CreditBudget(50.0)
    held = await budget.reserve(30.0)
    got: list[float] = []

    async def take() -> None:
        got.append((await budget.reserve(25.0)).amount)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert (budget.waiters, got) == (1, [])
        held.release()

    assert (got, budget.waiters) == ([25.0], 0)
    assert state(budget) == (0.0, 25.0, 25.0)


async def test_reserve_waits_for_a_lower_settle_then_fits() -> None:
    budget = CreditBudget(50.0)
    held = await budget.reserve(30.0)
    got: list[float] = []

    async def take() -> None:
        got.append((await budget.reserve(25.0)).amount)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        held.settle(20.0)

    assert got == [25.0]


async def test_waiter_raises_once_a_commit_makes_the_amount_impossible() -> None:
    budget = CreditBudget(50.0)
    held = await budget.reserve(30.0)
    errors: list[BaseException] = []

    async def take() -> None:
        try:
            await budget.reserve(25.0)
        except BudgetExceededError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert errors == []
        held.commit()

    assert len(errors) == 1
    assert state(budget) == (30.0, 0.0, 20.0)


async def test_cancelled_budget_waiter_holds_nothing() -> None:
    budget = CreditBudget(50.0)
    await budget.reserve(30.0)

    with anyio.move_on_after(0):
        await budget.reserve(25.0)

    assert (*state(budget), budget.waiters) == (0.0, 30.0, 20.0, 0)


async def test_growing_a_budget_wakes_a_waiter_that_now_fits() -> None:
    budget = CreditBudget(50.0)
    held = await budget.reserve(40.0)
    got: list[Reservation] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _append(got, budget.reserve(20.0)))
        await anyio.wait_all_tasks_blocked()
        assert [] == got
        budget.grow(10.0)
    assert [20.0] == [r.amount for r in got]
    assert (60.0, 0.0) == (budget.total, budget.available)
    held.commit()
    with pytest.raises(ValueError, match="finite"):
        budget.grow(-1.0)


async def _append(into: list[Reservation], reserving: Awaitable[Reservation]) -> None:
    into.append(await reserving)


def test_unlimited_budget_always_fits() -> None:
    budget = CreditBudget(math.inf)

    assert budget.try_reserve(1e12) is not None


@pytest.mark.parametrize("amount", [-1.0, math.nan, math.inf])
def test_budget_rejects_bad_amounts(amount: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        CreditBudget(10.0).try_reserve(amount)


def test_budget_rejects_a_negative_total() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        CreditBudget(-1.0)


def test_budget_and_reservation_reprs_show_live_state() -> None:
    budget = CreditBudget(100.0)
    reservation = budget.try_reserve(23.04)
    assert reservation is not None
    done = budget.try_reserve(46.08)
    assert done is not None
    done.commit()

    assert (
        repr(budget)
        == "<CreditBudget total=100 spent=46.08 reserved=23.04 available=30.88 open=1 waiters=0>"
    )
    assert repr(reservation) == "<Reservation amount=23.04 open>"
