"""When to poll a task next: the poll policy and the two pure planners of the poller."""

from __future__ import annotations

import random

import attrs

__all__ = ["PollPolicy", "plan_next_poll", "plan_safety_poll"]


@attrs.frozen
class PollPolicy:
    """How often tasks are polled. All times are in the service's seconds (scaled by the
    client's ``time_scale``).

    ``first_poll``: when the service gives no ``estimated_time``, the first poll comes after
    this many seconds (Evolink's own client waits about 15 s). ``overdue_fraction``: once a task
    is later than expected, it is polled every this fraction of its expected duration.
    ``workers``: polls in progress at once (the rate limiter still paces them).
    ``callback_grace``: with callbacks on (``EvolinkClient(callbacks=...)``), polls are only
    the safety net for a lost callback: a task is first polled this long after its expected
    end, then every ``max_interval`` (see ``plan_safety_poll``).
    """

    min_interval: float = 2.0
    #: long enough for a first poll at an honest ``estimated_time`` (clips take minutes): a
    #: 60 s cap made ~3.6 GETs per task on the simulator's 1-5 min tasks, 300 s makes ~1.3
    max_interval: float = 300.0
    first_poll: float = 15.0
    overdue_fraction: float = 0.08
    jitter: float = 0.05
    workers: int = 16
    callback_grace: float = 60.0


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
