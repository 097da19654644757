"""What the simulator saw: requests, limits hit, credits, tasks, callbacks."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from ._task import SimulatedTask

__all__ = ["CallbackAttempt", "CallbackStats", "SimulatorStats"]

#: The status recorded for a request whose connection the simulator dropped (ghost).
DROPPED = 0


@attrs.frozen(kw_only=True)
class CallbackAttempt:
    """One POST of a task to its callback_url."""

    task_id: str
    attempt: int  # 0 = first try, 1..3 = retries
    status: int | None  # HTTP status, None if the POST failed (refused, timeout)
    error: str | None
    at: float  # simulated time it was sent
    real: float  # time.monotonic() it was sent

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@attrs.define(kw_only=True)
class CallbackStats:
    """Callback deliveries: every attempt, and per-task totals."""

    attempts: list[CallbackAttempt] = attrs.Factory(list)
    delivered: int = 0  # tasks whose callback got a 2xx
    gave_up: int = 0  # tasks whose 1 + retries attempts all failed
    dropped: int = 0  # tasks whose callbacks were silently dropped (callback_drop_rate)

    @property
    def attempted(self) -> int:
        return len(self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "delivered": self.delivered,
            "gave_up": self.gave_up,
            "dropped": self.dropped,
            "attempts": [attrs.asdict(a) for a in self.attempts],
        }


@attrs.define(kw_only=True)
class SimulatorStats:
    """Everything the simulator counted; live (it changes as requests arrive).

    ``requests`` counts every answered request (API, result files; not the stats endpoint)
    by ``(endpoint, status)``, endpoint one of ``create``, ``get_task``, ``tasks_batch``,
    ``tasks_list``, ``credits``, ``files``, ``other``; status 0 means the connection was
    dropped (ghost).
    ``request_times`` holds the ``time.monotonic()`` arrival of each API request (``/v1/...``),
    the ones the rate limit counts.
    """

    requests: Counter[tuple[str, int]] = attrs.Factory(Counter)
    request_times: list[float] = attrs.Factory(list)
    #: tasks created (and billed until refunded) per prompt
    creates_per_prompt: Counter[str] = attrs.Factory(Counter)
    replayed: int = 0  # creates answered from the key ledger (no new task)
    idempotency_conflicts: int = 0  # a key repeated with another body
    create_faults: int = 0  # creates taken, then answered with ``create_fault``
    peak_active_tasks: int = 0
    rate_limited: int = 0  # 429 answers, rate and concurrency
    credits_reserved: float = 0.0  # total ever reserved at creation
    credits_spent: float = 0.0  # by completed tasks
    credits_released: float = 0.0  # by failed tasks
    tasks: dict[str, SimulatedTask] = attrs.Factory(dict)
    #: the number of ids asked by each ``POST /v1/tasks/batch`` answered (in arrival order)
    batch_reads: list[int] = attrs.Factory(list)
    ghost_task_ids: list[str] = attrs.Factory(list)
    slow_task_ids: list[str] = attrs.Factory(list)
    callbacks: CallbackStats = attrs.Factory(CallbackStats)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def count(self, endpoint: str, status: int | None = None) -> int:
        """Requests to ``endpoint`` (with ``status``, if given)."""
        return sum(
            n for (e, s), n in self.requests.items() if e == endpoint and status in (None, s)
        )

    def max_requests_in_window(self, seconds: float = 1.0) -> int:
        """The most API requests that arrived within any window of ``seconds`` real seconds."""
        times, best, lo = self.request_times, 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    @property
    def single_reads(self) -> int:
        """``GET /v1/tasks/{id}`` requests answered (any status)."""
        return self.count("get_task")

    @property
    def reads(self) -> int:
        """Task reads of any kind: single GETs plus batch reads answered."""
        return self.count("get_task") + self.count("tasks_batch")

    @property
    def peak_requests_per_second(self) -> int:
        return self.max_requests_in_window(1.0)

    def detection_delays(self) -> list[float]:
        """Simulated seconds between each task finishing and a client first seeing it."""
        return [d for t in self.tasks.values() if (d := t.detection_delay_sim) is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as served at ``GET /_simulator/stats``."""
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, status), n in sorted(self.requests.items()):
            requests.setdefault(endpoint, {})[str(status)] = n
        return {
            "requests": requests,
            "total_requests": self.total_requests,
            "request_times": self.request_times,
            "peak_requests_per_second": self.peak_requests_per_second,
            "creates_per_prompt": dict(self.creates_per_prompt),
            "replayed": self.replayed,
            "idempotency_conflicts": self.idempotency_conflicts,
            "create_faults": self.create_faults,
            "peak_active_tasks": self.peak_active_tasks,
            "rate_limited": self.rate_limited,
            "credits_reserved": round(self.credits_reserved, 4),
            "credits_spent": round(self.credits_spent, 4),
            "credits_released": round(self.credits_released, 4),
            "tasks": {task_id: t.summary() for task_id, t in self.tasks.items()},
            "ghost_task_ids": self.ghost_task_ids,
            "slow_task_ids": self.slow_task_ids,
            "batch_reads": self.batch_reads,
            "callbacks": self.callbacks.to_dict(),
        }
