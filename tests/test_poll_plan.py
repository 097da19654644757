"""The default read planner (``plan_read``) and ``PollPolicy(target_delay=...)``: pure."""

from __future__ import annotations

import math

import pytest

from evolink_async import PollPolicy
from evolink_async._poll_plan import expected_end, plan_read, plan_window, read_grid, snap

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
    # expected at 200 s; the window opens 12 % (24 s) before, at 176 s: the first read is one
    # target (10 s) into it, at 186 s (an end at 176 s is still seen within the target), or
    # the grid point (8 s) before it
    assert 184.0 == due()


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
    # (63 points of progress over 250 s: the end, 395 s, is known to under 6 s, less than half
    # the 20 s target): the blind plan reads in the window before it, the known one once after
    blind = due(now=300.0, estimated=400.0)
    known = due(now=300.0, estimated=400.0, p1=(50.0, 12), p2=(300.0, 75))
    assert blind < 395.0 < known <= 395.0 + 20.0


def test_two_close_readings_of_progress_leave_the_end_uncertain() -> None:
    # 13 points of progress over 50 s: the rate is known to about 8 %, the end (74 points, 285 s
    # away) to about 26 s; 63 points over 250 s: the end to under 6 s
    end, _, u = expected_end(
        now=100.0, start=0.0, estimated=None, zero_at=0.0, p1=(50.0, 12), p2=(100.0, 25),
        fallback=15.0,
    )  # fmt: skip
    far_end, _, far_u = expected_end(
        now=300.0, start=0.0, estimated=None, zero_at=0.0, p1=(50.0, 12), p2=(300.0, 75),
        fallback=15.0,
    )  # fmt: skip
    assert (385.0, 395.0) == (round(end), round(far_end))
    assert far_u < 6.0
    assert u > 25.0


def window(**kw: object) -> tuple[float, float]:
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
    return plan_window(**args)  # type: ignore[arg-type]


def test_before_its_window_a_task_rides_along_every_quarter_of_its_duration() -> None:
    assert (50.0, 184.0) == window()  # rides from 50 s (a quarter of 200 s); due at 184 s
    assert (110.0, 184.0) == window(now=60.0, p1=(60.0, 30))


def test_when_the_end_is_known_one_read_after_it_sees_it_within_the_target() -> None:
    # progress 10 -> 90 over 160 s: reaches 99 at 198 s, give or take 0.225 s (the rate's error
    # over the 9 points left) + 2 s (one percent of the run)
    end, _, u = expected_end(
        now=180.0, start=0.0, estimated=200.0, zero_at=0.0, p1=(20.0, 10), p2=(180.0, 90),
        fallback=15.0,
    )  # fmt: skip
    assert (198.0, 2.225) == pytest.approx((end, u))
    early, due_at = window(now=180.0, p1=(20.0, 10), p2=(180.0, 90))
    # it may ride along from the earliest it may have ended; it is due when it has surely
    # ended, soon enough to see an end at the earliest within the target: one read
    assert end - u <= early < end + u <= due_at <= end - u + POLICY.target_for(end)


@pytest.mark.parametrize("policy", [POLICY, PollPolicy(target_delay=1.0, jitter=0.0)])
def test_a_read_never_rides_sooner_than_half_a_target_after_the_last(policy: PollPolicy) -> None:
    for now in (0.0, 100.0, 180.0, 190.0, 199.0, 230.0):
        early, due_at = window(now=now, policy=policy)
        target = policy.target_for(200.0)
        assert now + max(target / 2, policy.min_interval) <= early <= due_at or early == due_at


def test_a_fixed_interval_poller_does_not_ride() -> None:
    fixed = PollPolicy(min_interval=6.0, max_interval=6.0, jitter=0.0)
    assert (106.0, 106.0) == window(now=100.0, policy=fixed)
