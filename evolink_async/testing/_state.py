"""The simulated service's bookkeeping: tasks, the account's credits, and its limits.

No HTTP here. Tasks finish lazily: ``settle()`` pops every task whose planned finish has
passed off one heap (spending or releasing its credits) and is called before anything reads
the state, so 10 000 tasks cost no timers.
"""

from __future__ import annotations

import heapq
import math
import random
import string
import time
from collections import deque
from typing import Any

from ._catalog import FATAL_TASK_ERRORS, RETRYABLE_TASK_ERRORS, TASK_ERROR_MESSAGES
from ._clock import Clock
from ._config import SimulatorConfig
from ._errors import ApiError
from ._persist import TaskFile
from ._quota import KeyQuota
from ._stats import SimulatorStats
from ._task import SimulatedTask
from ._validation import CreateRequest

__all__ = ["ServiceState"]

_ID_CHARS = string.ascii_lowercase + string.digits
# A cancellation is the client's doing (cancel_task), never a random failure.
CANCELLED = "request_cancelled"
_FATAL_DRAWN = tuple(code for code in FATAL_TASK_ERRORS if code != CANCELLED)


class ServiceState:
    """Tasks, credits and limits of the one simulated account."""

    def __init__(
        self,
        config: SimulatorConfig,
        clock: Clock,
        stats: SimulatorStats,
        store: TaskFile | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.stats = stats
        self.tasks = stats.tasks
        self.available = config.credits  # remaining, not counting what running tasks hold
        self.held = 0.0
        self.used = 0.0
        self._active: list[tuple[float, str]] = []  # (finished_at, id); stale entries skipped
        self._active_ids: set[str] = set()
        self._accepted: deque[float] = deque()  # monotonic times inside the rate window
        self._created = 0
        self.quota = KeyQuota(
            config.key_limit, config.daily_limit, config.daily_period, config.reset_timezone
        )
        for task in store.tasks() if store is not None else ():
            self._restore(task)

    # -- limits -----------------------------------------------------------------------------

    def check_rate(self) -> None:
        """Count one API request against the rate limit, or raise 429 (not counted)."""
        limit = self.config.rate_limit
        if limit is None:
            return
        now, window = time.monotonic(), self.config.rate_window
        while self._accepted and now - self._accepted[0] >= window:
            self._accepted.popleft()
        if len(self._accepted) >= limit:
            self.stats.rate_limited += 1
            raise ApiError.rate_limited(_ceil_seconds(self._accepted[0] + window - now))
        self._accepted.append(now)

    def _check_capacity(self, price: float) -> None:
        limit = self.config.max_concurrent
        if limit is not None and len(self._active_ids) >= limit:
            self.stats.rate_limited += 1
            wait = self.clock.real_seconds(self._active[0][0] - self.clock.now())
            raise ApiError.too_many_concurrent(limit, _ceil_seconds(wait))
        if price > self.available + 1e-9:
            raise ApiError.insufficient_quota(price, round(self.available, 4))
        self.quota.check(price, self.clock.now())

    # -- tasks ------------------------------------------------------------------------------

    def create(self, request: CreateRequest) -> SimulatedTask:
        """Admit a valid request (or raise 429/402) and plan the task's whole life."""
        self.settle()
        price = round(request.spec.prices[request.duration] * self.config.charge_factor, 4)
        self._check_capacity(price)
        now = self.clock.now()
        rng = random.Random(f"{self.config.seed}/task/{self._created}")
        self._created += 1
        task = self._plan(rng, request, price, now)
        if self.store is not None:
            self.store.append(task, now)
        self._admit(task)
        return task

    def _admit(self, task: SimulatedTask) -> None:
        self.tasks[task.id] = task
        self.available -= task.price
        self.held += task.price
        self.quota.charge(task.price, task.created_at)
        self.stats.credits_reserved += task.price
        self.stats.creates_per_prompt[task.prompt] += 1
        self._activate(task)
        self.stats.peak_active_tasks = max(self.stats.peak_active_tasks, len(self._active_ids))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _restore(self, task: SimulatedTask) -> None:
        """A task an earlier simulator created (``state_path``), on this clock."""
        self._created += 1
        task.created_real = self.clock.to_real(task.created_at) or 0.0
        task.started_real = self.clock.to_real(task.started_at)
        task.finished_real = self.clock.to_real(task.finished_at)
        self._admit(task)

    def _plan(
        self, rng: random.Random, request: CreateRequest, price: float, now: float
    ) -> SimulatedTask:
        """Draw everything random about a task, always in the same order (reproducible)."""
        cfg, spec = self.config, request.spec
        task_id = _new_id(rng, now)
        queue = rng.uniform(*cfg.queue_delay)
        stretch = math.sqrt(request.duration / min(spec.durations))
        generation = rng.uniform(*cfg.generation_time) * stretch
        estimate = (queue + generation) * (1 + rng.uniform(-1, 1) * cfg.estimate_error)
        fail_draw, code_draw, fail_point = rng.random(), rng.random(), rng.uniform(0.05, 1.0)
        download_fails = rng.random() < cfg.download_fail_rate
        callback_dropped = rng.random() < cfg.callback_drop_rate

        code = self._failure_code(fail_draw, code_draw)
        started = now + queue
        finished = started + (generation * fail_point if code else generation)
        while task_id in self.tasks:  # 36**8 ids a second: never, but stay correct
            task_id = _new_id(rng, now)
        fault = None
        if download_fails:
            mode = cfg.download_fail_mode
            fault = mode if mode != "alternate" else ("truncate", "503")[self._created % 2]
        return SimulatedTask(
            id=task_id,
            cancel_style=cfg.cancel_style,
            model=spec.name,
            prompt=request.prompt,
            duration=request.duration,
            aspect_ratio=request.aspect_ratio,
            callback_url=request.callback_url,
            price=price,
            final_price=round(price * cfg.final_charge_factor, 4),
            image_urls=request.image_urls,
            created_at=now,
            started_at=started,
            finished_at=finished,
            generation_time=generation,
            estimated_time=max(1, round(estimate)),
            error_code=code,
            error_message=_message(code),
            download_fault=fault,
            callback_dropped=callback_dropped,
            created_real=time.monotonic(),
            started_real=self.clock.to_real(started),
            finished_real=self.clock.to_real(finished),
        )

    def _failure_code(self, fail_draw: float, code_draw: float) -> str | None:
        cfg = self.config
        for rate, codes in (
            (cfg.retryable_failure_rate, RETRYABLE_TASK_ERRORS),
            (cfg.fatal_failure_rate, _FATAL_DRAWN),
            (cfg.failure_rate, cfg.failure_codes),
            (cfg.cancel_rate, (CANCELLED,)),
        ):
            if fail_draw < rate:
                return codes[int(code_draw * len(codes))]
            fail_draw -= rate
        return None

    def _activate(self, task: SimulatedTask) -> None:
        self._active_ids.add(task.id)
        heapq.heappush(self._active, (task.finished_at, task.id))

    def settle(self) -> None:
        """Finish, in order, every active task whose finish time has passed."""
        now = self.clock.now()
        while self._active and self._active[0][0] <= now:
            finished_at, task_id = heapq.heappop(self._active)
            task = self.tasks[task_id]
            if task.settled or task.finished_at != finished_at:
                continue  # a stale entry: the task was finished early by a control method
            task.settled = True
            self._active_ids.discard(task_id)
            self.held -= task.price
            if task.error_code is None:  # the final charge may differ from the reservation
                self.used += task.charge
                self.available -= task.charge - task.price
                self.quota.charge(task.charge - task.price, task.created_at)
                self.stats.credits_spent += task.charge
            else:
                self.available += task.price
                self.stats.credits_released += task.price
                self.quota.refund(task.price, task.created_at)

    def finish_now(self, task_id: str, error_code: str | None, message: str | None) -> None:
        """End an active task at the current simulated time (control methods)."""
        self.settle()
        task = self.tasks[task_id]
        if task.settled:
            raise ValueError(f"{task_id} is already {task.status_at(self.clock.now())}")
        now = self.clock.now()
        task.started_at = min(task.started_at, now)
        task.finished_at = now
        task.error_code = error_code
        task.error_message = message or _message(error_code)
        task.started_real = self.clock.to_real(task.started_at)
        task.finished_real = self.clock.to_real(now)
        heapq.heappush(self._active, (now, task_id))
        self.settle()

    @property
    def active_count(self) -> int:
        self.settle()
        return len(self._active_ids)

    def credits_body(self) -> dict[str, Any]:
        self.settle()
        remaining, used = round(self.available, 4), round(self.used, 4)
        return {
            "data": {
                "token": self.quota.token_body(remaining, used),
                "user": {"remaining_credits": remaining, "used_credits": used},
            },
            "message": "",
            "success": True,
        }


def _message(code: str | None) -> str | None:
    return None if code is None else TASK_ERROR_MESSAGES.get(code, code.replace("_", " "))


def _new_id(rng: random.Random, now: float) -> str:
    return f"task-unified-{int(now)}-" + "".join(rng.choice(_ID_CHARS) for _ in range(8))


def _ceil_seconds(seconds: float) -> int:
    """Retry-After: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
