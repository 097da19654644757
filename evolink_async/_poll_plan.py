"""When to read a task next: the poll policy and the pure planners of the poller
(``plan_read``, the default; ``plan_safety_poll`` with callbacks; ``plan_next_poll``, the
progress planner of earlier versions, kept for its callers)."""

from __future__ import annotations

import math
import random

import attrs

__all__ = [
    "PollPolicy",
    "expected_end",
    "plan_next_poll",
    "plan_read",
    "plan_safety_poll",
    "plan_window",
    "read_grid",
    "snap",
]


@attrs.frozen
class PollPolicy:
    """How tasks are read. All times are in the service's seconds (scaled by the client's
    ``time_scale``).

    ``target_delay``: the detection delay to aim for, the one number most users set: a task is
    read every ``target_delay`` seconds in the window where it is likely to end, and rarely
    before. ``None`` (the default): 5 % of the task's expected duration, never under 1 s.
    Every read of an unfinished task makes the gateway ask its provider, so the plan never
    reads a task more often than the target needs.
    ``window``: until progress says better, the task is expected to end within this
    fraction of its expected duration either side of the expected end (the estimate's
    error), and the dense reads start one target after the earliest; later than expected,
    the pause between reads grows back from ``target_delay`` by this fraction of the
    expected duration per expected duration late. Reads of tasks not yet due ride along in
    other tasks' batch reads when that helps (progress before the window, an end known
    closely), so most reads cost no request of their own.
    ``min_interval``/``max_interval``: no task is read more often / less often than this
    (``min_interval == max_interval`` makes a fixed-interval poller).
    ``first_poll``: when the service gives no ``estimated_time``, the task is expected to take
    this long (Evolink's own client waits about 15 s).
    ``overdue_fraction``: ``plan_next_poll`` only (the progress planner of earlier versions).
    ``stall_after``: a task whose status the SDK does not know, unchanged this long, ends
    with ``TaskStalledError`` (``None``: never).
    ``batch``: read due tasks 50 at a time through ``POST /v1/tasks/batch`` (falls back to
    single reads for good when the gateway does not have it).
    ``workers``: reads in progress at once (the rate limiter still paces them).
    ``callback_grace``: with callbacks on (``EvolinkClient(callbacks=...)``), polls are only
    the safety net for a lost callback: a task is first polled this long after its expected
    end, then every ``max_interval`` (see ``plan_safety_poll``).
    """

    min_interval: float = 1.0
    #: long enough for a first poll at an honest ``estimated_time`` (clips take minutes): a
    #: 60 s cap made ~3.6 GETs per task on the simulator's 1-5 min tasks, 300 s makes ~1.3
    max_interval: float = 300.0
    first_poll: float = 15.0
    overdue_fraction: float = 0.08
    jitter: float = 0.05
    workers: int = 16
    callback_grace: float = 60.0
    target_delay: float | None = attrs.field(default=None)
    window: float = 0.12
    stall_after: float | None = 900.0
    batch: bool = True

    @target_delay.validator
    def _check_target(self, _: object, value: float | None) -> None:
        if value is not None and not value > 0:
            raise ValueError("target_delay must be > 0 seconds (or None for the default)")

    def target_for(self, expected: float) -> float:
        """The detection delay aimed at for a task expected to take ``expected`` service
        seconds: ``target_delay``, or 5 % of ``expected`` and at least 1 s."""
        if self.target_delay is not None:
            return self.target_delay
        return max(1.0, DEFAULT_TARGET_FRACTION * expected)


#: the default target: this fraction of the task's expected duration
DEFAULT_TARGET_FRACTION = 0.05


def read_grid(seconds: float) -> float:
    """The largest power of two (service seconds, at least 1/64) not above ``seconds``.

    Reads are put on this grid (see ``snap``): tasks due at the same instant share one batch
    request, and grids of powers of two nest, so tasks with different targets still meet.
    """
    return 2.0 ** max(-6, math.floor(math.log2(max(seconds, 2.0**-6))))


def snap(now: float, due: float, grid: float) -> float:
    """The last multiple of ``grid`` not after ``due`` (local seconds), but after ``now``:
    never later than planned, so a task read every target is still read within the target."""
    snapped = math.floor(due / grid + 1e-9) * grid
    return snapped if snapped > now else snapped + grid


def expected_end(
    *,
    now: float,
    start: float,
    estimated: float | None,
    zero_at: float,
    p1: tuple[float, int] | None,
    p2: tuple[float, int] | None,
    fallback: float,
    window: float = 0.12,
) -> tuple[float, float, float]:
    """(when the task is expected to end, its expected duration, and how far either side of
    that end it may be, in local seconds).

    ``estimated`` (else ``fallback``) since tracking began puts the end within ``window`` of
    the duration. Progress narrows that: once it moved twice, its rate gives the end, as
    closely as whole-percent readings allow: each reading is the true progress rounded down,
    so the rate is off by up to one percent over the points moved between the readings, and
    the last reading leaves one percent of the run open, and the task ends as its progress
    passes 99 or 100 (gateways differ): the end is where the readings reach 99, give or take
    one percent of the run (and the rate's error over what is left).
    One reading says the end is no later than if the run began when the task was last seen
    not started. Where the progress and the estimate agree, the end is in both; where they
    do not, progress wins.
    """
    total = estimated if estimated else fallback
    guess = (start + total - window * total, start + total + window * total)
    if p1 is not None and p2 is not None and p2[1] > p1[1] and p2[0] > p1[0]:
        moved = p2[1] - p1[1]
        rate = moved / (p2[0] - p1[0])
        left = (99 - p2[1]) / rate
        u = max(left, 0.0) / moved + 1.0 / rate
        seen = (p2[0] + left - u, p2[0] + left + u)
    elif p2 is not None and p2[1] > 0:
        t, p = p2
        started = zero_at if zero_at > start else start
        seen = (t, t + (t - started) * (100 - p) / p)
    else:
        return start + total, total, window * total
    lo, hi = seen
    if estimated and guess[0] < hi and lo < guess[1]:
        lo, hi = max(lo, guess[0]), min(hi, guess[1])
    end = (lo + hi) / 2
    return end, max(end - start, 1e-9), (hi - lo) / 2


def plan_window(
    *,
    now: float,
    start: float,
    estimated: float | None,
    zero_at: float,
    p1: tuple[float, int] | None,
    p2: tuple[float, int] | None,
    policy: PollPolicy,
    scale: float = 1.0,
    rng: random.Random | None = None,
    latency: float = 0.0,
) -> tuple[float, float]:
    """(the earliest local time a read of this task is worth a place in another task's batch
    read, the local time it must be read by): pure; ``scale`` = time_scale.

    Aimed at ``policy.target_for``: the task is likely to end within ``u`` of its expected
    end (``expected_end``), so its first dense read is at ``end - u + target`` (``latency``
    and a small share of the target earlier), then one every target; a task later than
    expected is read less and less often. When ``2 u`` is under the target, that first
    read is the only one, and it may ride along with another task's read from ``end - u``
    (if the task has not ended, that reading places its end better); never sooner than half
    a target after the last read. Before its window a task rides along (every
    ``RIDE_EVERY`` of its duration at most) to read the progress that places it. Due times
    are put on the read grid, so reads of many tasks coincide.
    """
    lo, hi = policy.min_interval * scale, policy.max_interval * scale
    if lo >= hi:  # a fixed-interval poller: every read ``hi`` after the last, no grid, no riding
        return now + hi, now + hi
    end, total, u = expected_end(
        now=now,
        start=start,
        estimated=estimated,
        zero_at=zero_at,
        p1=p1,
        p2=p2,
        fallback=policy.first_poll * scale,
        window=policy.window,
    )
    target = policy.target_for(total / scale) * scale
    # a read sees the task as it arrived, readings are stamped as they return: aim early
    reach = max(target * (1.0 - LATENCY_SHARE) - 1.5 * latency, target / 2)
    first, known = end - u + reach, 2 * u <= reach  # known: one read in [end + u, first]
    if now < first:
        delay = first - now
        if policy.jitter and not known:
            delay *= 1.0 + policy.jitter * ((rng or random).random() - 0.5)
    else:
        late = max(0.0, now - end)
        delay = target * (1.0 + late / max(total, 1e-9) / max(policy.window, 1e-9))
    delay = min(max(delay, lo), hi)
    grid = reach - 2 * u if known else max(target, lo)
    due = snap(now, now + delay, read_grid(grid / scale) * scale)
    if known:  # from the earliest it may have ended: if not yet, the end is placed better
        early = end - u
    elif now + target < first:  # before the window: readings of progress to place it
        early = now + max(target, RIDE_EVERY * total)
    else:
        early = due - target / 2
    return min(max(early, now + max(lo, target / 2)), due), due


#: the share of the target left for the reads' own delays beyond ``latency``: the plan aims at
#: the rest
LATENCY_SHARE = 0.05
#: a task before its window rides along with other tasks' batch reads at most this often (a
#: fraction of its expected duration): enough readings of progress to place the window
RIDE_EVERY = 0.25


def plan_read(
    *,
    now: float,
    start: float,
    estimated: float | None,
    zero_at: float,
    p1: tuple[float, int] | None,
    p2: tuple[float, int] | None,
    policy: PollPolicy,
    scale: float = 1.0,
    rng: random.Random | None = None,
) -> float:
    """The local time of the next read of one task (pure; ``scale`` = time_scale): the due
    time of ``plan_window``."""
    return plan_window(
        now=now,
        start=start,
        estimated=estimated,
        zero_at=zero_at,
        p1=p1,
        p2=p2,
        policy=policy,
        scale=scale,
        rng=rng,
    )[1]


def plan_next_poll(
    *,
    now: float,
    start: float,
    estimated: float | None,
    zero_at: float,
    p1: tuple[float, int] | None,
    p2: tuple[float, int] | None,
    policy: PollPolicy,
    scale: float = 1.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds from ``now`` until the next poll of one task (pure; ``scale`` = time_scale).

    ``estimated`` is the service's ``estimated_time`` in local seconds; ``p1``/``p2`` are the
    first and the latest (time, progress) observations with progress above 0.
    """
    lo, hi = policy.min_interval * scale, policy.max_interval * scale
    expected_total = estimated if estimated else policy.first_poll * scale
    left: float
    if p2 is not None and p1 is not None and p2[1] > p1[1] and p2[0] > p1[0]:
        rate = (p2[1] - p1[1]) / (p2[0] - p1[0])
        left = (100 - p2[1]) / rate - (now - p2[0])
    elif p2 is not None and p2[1] > 0:
        # one observation: progress started somewhere after the last time it was seen at 0
        t, p = p2
        started = zero_at if zero_at > start else start
        left = (t - started) * (100 - p) / p
        left -= now - t
    else:
        left = start + expected_total - now
    if left <= 0:
        left = expected_total * policy.overdue_fraction
    delay = min(max(left, lo), hi)
    if policy.jitter:
        delay *= 1.0 + policy.jitter * ((rng or random).random() - 0.5)
    return max(delay, 0.0)


def plan_safety_poll(
    *,
    now: float,
    start: float,
    estimated: float | None,
    zero_at: float,
    p1: tuple[float, int] | None,
    p2: tuple[float, int] | None,
    policy: PollPolicy,
    scale: float = 1.0,
    rng: random.Random | None = None,
    polls: int = 0,
) -> float:
    """Seconds from ``now`` until the next poll of one task when callbacks are on (pure).

    A callback wakes the task when it ends; polls only catch a callback that was lost. So the
    first poll comes ``callback_grace`` after the expected end (planned like ``plan_next_poll``
    but not capped at ``max_interval``); once a task has been polled (``polls`` > 0), it is
    late and its callback will still come: the next polls wait at least ``max_interval``.
    """
    unclamped = attrs.evolve(policy, max_interval=float("inf"), jitter=0.0)
    expected = plan_next_poll(
        now=now,
        start=start,
        estimated=estimated,
        zero_at=zero_at,
        p1=p1,
        p2=p2,
        policy=unclamped,
        scale=scale,
    )
    delay = expected + policy.callback_grace * scale
    if polls > 0:
        delay = max(delay, policy.max_interval * scale)
    if policy.jitter:
        delay *= 1.0 + policy.jitter * ((rng or random).random() - 0.5)
    return max(delay, 0.0)
