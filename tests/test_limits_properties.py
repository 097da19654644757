"""Property tests of evolink_async.limits: the rate bound and the credit budget never give way.

The rate limiter is driven through its pure core (``book``/``reserve``) with a fake clock; the
budget through a state machine and through random interleavings of concurrent tasks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from evolink_async.errors import BudgetExceededError
from evolink_async.limits import CreditBudget, RateLimiter, RateSlot, Reservation

TOLERANCE = 1e-6

# --------------------------------------------------------------------------------------------
# RateLimiter
# --------------------------------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def max_grants_in_a_window(times: list[float], length: float) -> int:
    """The largest number of ``times`` inside any closed window of ``length``."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - length - TOLERANCE:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


rates = st.floats(min_value=0.05, max_value=50.0)
bursts = st.integers(min_value=1, max_value=5)
steps = st.floats(min_value=0.0, max_value=3.0)


@settings(max_examples=150, deadline=None)
@given(
    rate=rates,
    burst=bursts,
    calls=st.lists(st.tuples(steps, st.integers(min_value=0, max_value=6)), max_size=25),
)
def test_no_window_gets_more_than_rate_times_length_plus_burst(
    rate: float, burst: int, calls: list[tuple[float, int]]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock=clock)
    grants: list[float] = []
    for dt, count in calls:
        clock.now += dt
        for _ in range(count):
            wait = limiter.reserve(clock.now)
            assert wait >= 0
            grants.append(clock.now + wait)

    assert grants == sorted(grants)  # first come, first served
    for i, start in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= burst + rate * (grants[j] - start) + TOLERANCE


@dataclass
class RateModel:
    """The documented AIMD rule, written out independently of the limiter."""

    rate: float
    min_rate: float
    factor: float
    increase: float
    # (from time, base rate, base time) of each period between two 429s
    periods: list[tuple[float, float, float]] = field(default_factory=list)
    paused_until: float = -math.inf

    def __post_init__(self) -> None:
        self.periods.append((-math.inf, self.rate, -math.inf))

    def rate_at(self, t: float) -> float:
        _, base, base_time = next(p for p in reversed(self.periods) if p[0] <= t)
        if t < base_time or self.increase == 0:
            return base
        return min(self.rate, base + self.increase * (t - base_time))

    def rate_limited(self, now: float, retry_after: float) -> None:
        current = self.rate_at(now)
        if now >= self.paused_until:
            current = max(self.min_rate, current * self.factor)
        self.paused_until = max(self.paused_until, now + retry_after)
        self.periods.append((now, current, self.paused_until))

    def tokens_between(self, a: float, b: float) -> float:
        """∫ rate over [a, b]: exact, the rate being linear between these breakpoints."""
        points = {a, b}
        for start, base, base_time in self.periods:
            points.add(start)
            points.add(base_time)
            if self.increase > 0:
                points.add(base_time + (self.rate - base) / self.increase)
        cuts = sorted(p for p in points if a <= p <= b)
        total = 0.0
        for lo, hi in itertools.pairwise(cuts):
            # evaluate just inside the piece: the rate jumps down at a 429
            eps = (hi - lo) * 1e-9
            total += (hi - lo) * (self.rate_at(lo + eps) + self.rate_at(hi - eps)) / 2
        return total


operations = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), steps),
        st.tuples(st.just("book"), st.integers(min_value=1, max_value=5)),
        st.tuples(st.just("429"), st.one_of(st.none(), st.floats(min_value=0.0, max_value=10.0))),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=10_000)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    rate=rates,
    burst=bursts,
    factor=st.floats(min_value=0.1, max_value=1.0),
    increase=st.one_of(st.just(0.0), st.floats(min_value=0.01, max_value=5.0)),
    ops=operations,
)
def test_429s_pause_everyone_and_the_bound_follows_the_effective_rate(
    rate: float,
    burst: int,
    factor: float,
    increase: float,
    ops: list[tuple[str, object]],
) -> None:
    clock = Clock()
    limiter = RateLimiter(
        rate,
        burst,
        clock=clock,
        decrease_factor=factor,
        increase_per_second=increase,
        default_pause=1.0,
    )
    model = RateModel(rate, limiter.min_rate, factor, increase)
    keep: list[RateSlot] = []  # keeps ids unique
    active: dict[int, tuple[RateSlot, float]] = {}  # slot -> when its owner booked it
    pauses: list[tuple[float, float]] = []
    for op, arg in ops:
        if op == "wait":
            assert isinstance(arg, float)
            clock.now += arg
        elif op == "book":
            assert isinstance(arg, int)
            for _ in range(arg):
                slot = limiter.book(clock.now)
                keep.append(slot)
                active[id(slot)] = (slot, clock.now)
        elif op == "429":
            assert arg is None or isinstance(arg, float)
            limiter.on_rate_limited(arg)
            model.rate_limited(clock.now, 1.0 if arg is None else arg)
            pauses.append((clock.now, model.paused_until))
            assert model.paused_until == limiter.paused_until
            assert math.isclose(model.rate_at(clock.now), limiter.effective_rate)
        else:
            assert isinstance(arg, int)
            waiting = [s for s, _ in active.values() if s.at > clock.now]
            if waiting:
                slot = waiting[arg % len(waiting)]
                slot.cancel()
                del active[id(slot)]

    grants = sorted(slot.at for slot, _ in active.values())
    # never before its owner asked, never inside a pause
    assert all(slot.at >= booked for slot, booked in active.values())
    for start, end in pauses:
        assert not [g for g in grants if start + TOLERANCE < g < end - TOLERANCE]
    # the bound: configured rate, and the effective rate's integral
    for i, start in enumerate(grants):
        for j in range(i, len(grants)):
            count = j - i + 1
            assert count <= burst + rate * (grants[j] - start) + TOLERANCE
            assert count <= burst + model.tokens_between(start, grants[j]) + TOLERANCE


@settings(max_examples=100, deadline=None)
@given(ops=operations)
def test_unlimited_grants_everything_at_once_except_inside_pauses(
    ops: list[tuple[str, object]],
) -> None:
    clock = Clock()
    limiter = RateLimiter.unlimited(clock=clock)
    for op, arg in ops:
        if op == "wait":
            assert isinstance(arg, float)
            clock.now += arg
        elif op == "book":
            assert isinstance(arg, int)
            for _ in range(arg):
                wait = limiter.reserve(clock.now)
                in_pause = clock.now < limiter.paused_until
                assert wait == (limiter.paused_until - clock.now if in_pause else 0.0)
        elif op == "429":
            assert arg is None or isinstance(arg, float)
            limiter.on_rate_limited(arg)


@settings(max_examples=100, deadline=None)
@given(
    rate=rates,
    burst=bursts,
    calls=st.lists(st.tuples(steps, st.integers(min_value=0, max_value=5)), max_size=20),
)
def test_no_one_second_window_gets_more_than_burst_plus_rate(
    rate: float, burst: int, calls: list[tuple[float, int]]
) -> None:
    """Over a one-second window, never more than ``burst + rate`` grants."""
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock=clock)
    grants: list[float] = []
    for dt, count in calls:
        clock.now += dt
        grants.extend(clock.now + limiter.reserve(clock.now) for _ in range(count))

    assert max_grants_in_a_window(grants, 1.0) <= math.floor(burst + rate + TOLERANCE)


# --------------------------------------------------------------------------------------------
# CreditBudget
# --------------------------------------------------------------------------------------------

amounts = st.floats(min_value=0.0, max_value=60.0, allow_nan=False)


class BudgetMachine(RuleBasedStateMachine):
    """Any sequence of reserve/settle/commit/release keeps ``spent + reserved <= total``."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = CreditBudget(0.0)
        self.open: list[Reservation] = []
        self.spent = 0.0

    @initialize(
        total=st.floats(min_value=0.0, max_value=200.0),
        release_on_failure=st.booleans(),
    )
    def start(self, total: float, release_on_failure: bool) -> None:
        self.budget = CreditBudget(total, release_on_failure=release_on_failure)

    @rule(amount=amounts)
    def reserve(self, amount: float) -> None:
        before = self.budget.available
        reservation = self.budget.try_reserve(amount)
        if reservation is None:
            assert amount > before - TOLERANCE
        else:
            self.open.append(reservation)

    @precondition(lambda self: self.open)
    @rule(index=st.integers(min_value=0), share=st.floats(min_value=0.0, max_value=1.0))
    def settle_at_or_below_the_estimate(self, index: int, share: float) -> None:
        reservation = self.open[index % len(self.open)]
        reservation.settle(reservation.amount * share)

    @precondition(lambda self: self.open)
    @rule(index=st.integers(min_value=0))
    def commit(self, index: int) -> None:
        reservation = self.open.pop(index % len(self.open))
        reservation.commit()
        reservation.commit()
        self.spent += reservation.amount

    @precondition(lambda self: self.open)
    @rule(index=st.integers(min_value=0))
    def release(self, index: int) -> None:
        reservation = self.open.pop(index % len(self.open))
        reservation.release()
        reservation.release()
        if not self.budget.release_on_failure:
            self.spent += reservation.amount

    @invariant()
    def never_over_the_total(self) -> None:
        assert self.budget.spent + self.budget.reserved <= self.budget.total + TOLERANCE
        assert self.budget.available >= -TOLERANCE

    @invariant()
    def books_balance(self) -> None:
        assert math.isclose(self.budget.spent, self.spent, abs_tol=TOLERANCE)
        held = math.fsum(r.amount for r in self.open)
        assert math.isclose(self.budget.reserved, held, abs_tol=TOLERANCE)
        assert len(self.open) == self.budget.open_reservations


TestBudgetMachine = BudgetMachine.TestCase
TestBudgetMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


@settings(max_examples=100, deadline=None)
@given(
    total=st.floats(min_value=0.0, max_value=100.0),
    first=amounts,
    over=st.floats(min_value=0.0, max_value=50.0),
    then=st.lists(amounts, max_size=10),
)
def test_a_settle_above_the_estimate_never_lets_a_new_reservation_over_the_total(
    total: float, first: float, over: float, then: list[float]
) -> None:
    budget = CreditBudget(total)
    reservation = budget.try_reserve(first)
    if reservation is not None:
        reservation.settle(first + over)
    for amount in then:
        before = budget.available
        if budget.try_reserve(amount) is not None:
            assert amount <= before + TOLERANCE
            assert budget.available >= -TOLERANCE


@settings(max_examples=60, deadline=None)
@given(
    total=st.floats(min_value=0.0, max_value=150.0),
    release_on_failure=st.booleans(),
    jobs=st.lists(
        st.tuples(amounts, st.integers(min_value=0, max_value=4), st.booleans()),
        min_size=1,
        max_size=12,
    ),
)
def test_concurrent_reservations_never_overspend_and_never_hang(
    total: float, release_on_failure: bool, jobs: list[tuple[float, int, bool]]
) -> None:
    """Tasks reserve (waiting if need be), run a few steps, then commit or fail."""
    budget = CreditBudget(total, release_on_failure=release_on_failure)
    outcomes: list[str] = []

    def check() -> None:
        assert budget.spent + budget.reserved <= total + TOLERANCE

    async def job(amount: float, steps: int, succeeds: bool) -> None:
        try:
            reservation = await budget.reserve(amount)
        except BudgetExceededError:
            floor = budget.spent + (0.0 if release_on_failure else budget.reserved)
            assert floor + amount > total
            outcomes.append("refused")
            return
        check()
        for _ in range(steps):
            await anyio.lowlevel.checkpoint()
            check()
        reservation.settle(amount)
        if succeeds:
            reservation.commit()
        else:
            reservation.release()
        check()
        outcomes.append("done")

    async def main() -> None:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for amount, steps, succeeds in jobs:
                    tg.start_soon(job, amount, steps, succeeds)

    anyio.run(main)

    assert len(jobs) == len(outcomes)
    assert (budget.reserved, budget.waiters) == (0.0, 0)
