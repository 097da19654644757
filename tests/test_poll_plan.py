"""The default read planner (``plan_read``) and ``PollPolicy(target_delay=...)``: pure."""

from __future__ import annotations

import math

import pytest

from evolink_async import PollPolicy
from evolink_async._poll_plan import plan_read, read_grid, snap

POLICY = PollPolicy(jitter=0.0)


def due(**kw: object) -> float:
    args: dict[str, object] = {
        "now": 0.0,
        "start": 0.0,
        "estimated": 200.0,
        "zero_at": 0.0,
        "p1": None,
        "p2": None,
        "policy": POLICY,
    }
    args.update(kw)
    return plan_read(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "expected", "target"),
    [
        (PollPolicy(), 200.0, 10.0),  # 5 % of the expected duration
        (PollPolicy(), 10.0, 1.0),  # never under 1 s
        (PollPolicy(target_delay=1.0), 200.0, 1.0),
        (PollPolicy(target_delay=30.0), 200.0, 30.0),
    ],
)
def test_the_target_is_stated_or_five_percent_never_under_a_second(
    policy: PollPolicy, expected: float, target: float
) -> None:
    assert target == policy.target_for(expected)


def test_target_delay_must_be_positive() -> None:
    with pytest.raises(ValueError, match="target_delay"):
        PollPolicy(target_delay=0)


def test_no_read_before_the_window_where_the_task_is_likely_to_end() -> None:
    # expected at 200 s; the window opens 12 % (24 s) before: the first read at 176 s or
    # the grid point (8 s) before it
    assert 168.0 <= due() <= 176.0


def test_in_the_window_a_task_is_read_every_target_at_most() -> None:
    reads = [due(now=180.0)]
    while reads[-1] < 200.0:
        reads.append(due(now=reads[-1]))
    gaps = [b - a for a, b in zip([180.0, *reads], reads, strict=False)]
    assert all(0 < g <= 10.0 for g in gaps)  # the default target: 5 % of 200 s
    assert all(r % 8.0 == 0 for r in reads)  # on the shared grid


def test_tasks_due_near_each_other_are_read_at_the_same_instant() -> None:
    # two tasks started 3 s apart with the same estimate: their reads coincide on the grid
    a = due(now=180.0)
    b = due(now=180.0, start=3.0)
    assert a == b


def test_progress_moves_the_window() -> None:
    # at 100 s the task is 25 % done (started at 0): it ends near 400 s, not 200 s
    slow = due(now=100.0, p1=(50.0, 12), p2=(100.0, 25))
    assert 300.0 < slow < 400.0


def test_a_late_task_is_read_less_and_less_often() -> None:
    gaps = [due(now=t) - t for t in (200.0, 260.0, 400.0)]
    assert gaps == sorted(gaps)
    assert gaps[0] <= 10.0 < gaps[-1]


def test_target_delay_one_reads_every_second_in_the_window() -> None:
    policy = PollPolicy(target_delay=1.0, jitter=0.0)
    assert 1.0 == due(now=190.0, policy=policy) - 190.0


def test_min_equal_max_interval_is_a_fixed_poller_off_the_grid() -> None:
    fixed = PollPolicy(min_interval=6.0, max_interval=6.0, jitter=0.0)
    assert [6.0, 6.0, 6.0] == [due(now=t, policy=fixed) - t for t in (0.3, 100.1, 250.7)]


def test_time_scale_scales_every_figure() -> None:
    assert math.isclose(due() * 0.01, due(estimated=2.0, scale=0.01))


@pytest.mark.parametrize(("seconds", "grid"), [(10.0, 8.0), (8.0, 8.0), (1.0, 1.0), (0.3, 0.25)])
def test_the_grid_is_the_largest_power_of_two_not_above(seconds: float, grid: float) -> None:
    assert grid == read_grid(seconds)


def test_snap_never_plans_later_than_asked_and_always_ahead() -> None:
    assert (8.0, 16.0, 24.0) == (snap(0.0, 9.0, 8.0), snap(8.0, 16.0, 8.0), snap(16.0, 16.5, 8.0))


def test_a_known_rate_of_progress_narrows_the_window() -> None:
    # the same expected end (400 s) from the estimate alone, and from two progress readings
    blind = due(now=100.0, estimated=400.0)
    known = due(now=100.0, estimated=400.0, p1=(50.0, 12), p2=(100.0, 25))
    assert blind < known <= 400.0
