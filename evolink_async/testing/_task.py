"""One simulated task: its plan (timestamps fixed at creation) and its state at any instant.

Nothing ticks: ``status_at(t)`` and ``progress_at(t)`` read the timestamps. pending until
``started_at``, processing (progress 1..99, linear in the generation time) until
``finished_at``, then completed or failed (``error_code``), frozen from then on.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

__all__ = ["TERMINAL_STATUSES", "SimulatedTask"]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@attrs.define(kw_only=True, eq=False)
class SimulatedTask:
    """A task of the simulated service, with what the simulator recorded about it.

    Times ending in ``_at`` are simulated Unix seconds; ``*_real`` are ``time.monotonic()``
    values (None when the clock is a ManualClock, which has no real-time mapping, except for
    ``created_real`` and ``first_seen_terminal_real``, which are measured). Treat it as
    read-only: change a task through the Simulator's control methods.
    """

    id: str
    model: str
    prompt: str
    duration: int
    aspect_ratio: str | None
    callback_url: str | None
    price: float
    created_at: float
    started_at: float
    finished_at: float
    generation_time: float
    estimated_time: int
    error_code: str | None = None
    error_message: str | None = None
    #: the create's image_urls (e.g. a Files API upload's URL)
    image_urls: tuple[str, ...] = ()
    #: what the task costs when it completes (``usage.credits_used``); None: ``price``
    final_price: float | None = None
    #: how a cancel (error code ``request_cancelled``) reads: status ``cancelled`` or ``failed``
    cancel_style: str = "failed"
    #: this task's first result download fails ("truncate" or "503"), or None
    download_fault: str | None = None
    callback_dropped: bool = False
    ghost: bool = False
    slow: bool = False
    created_real: float = 0.0
    started_real: float | None = None
    finished_real: float | None = None
    #: GET /v1/tasks/{id} answered for this task
    polls: int = 0
    #: when a GET first answered it terminal: how late the client noticed
    first_seen_terminal_at: float | None = None
    first_seen_terminal_real: float | None = None
    downloads: int = 0
    #: credits spent or released (done once, when the task is first found terminal)
    settled: bool = False

    @property
    def created(self) -> int:
        """The ``created`` field: whole Unix seconds."""
        return int(self.created_at)

    def status_at(self, now: float) -> str:
        if now < self.started_at:
            return "pending"
        if now < self.finished_at:
            return "processing"
        if self.error_code is None:
            return "completed"
        if self.error_code == "request_cancelled" and self.cancel_style == "cancelled":
            return "cancelled"
        return "failed"

    def is_terminal_at(self, now: float) -> bool:
        return now >= self.finished_at

    def progress_at(self, now: float) -> int:
        status = self.status_at(now)
        if status == "completed":
            return 100
        if status in ("failed", "cancelled"):  # frozen where it stopped
            return (
                self._running_progress(self.finished_at)
                if self.finished_at > self.started_at
                else 0
            )
        return self._running_progress(now) if status == "processing" else 0

    def _running_progress(self, t: float) -> int:
        done = (t - self.started_at) / self.generation_time if self.generation_time > 0 else 1.0
        return min(99, max(1, 1 + int(98 * done)))

    def read(self, status: str, now: float) -> None:
        """A read (GET or batch) answered this task in ``status`` and the client got it."""
        self.polls += 1
        if self.first_seen_terminal_at is None and status in TERMINAL_STATUSES:
            self.first_seen_terminal_at = now
            self.first_seen_terminal_real = time.monotonic()

    @property
    def detection_delay(self) -> float | None:
        """Real seconds from finishing to the first GET that showed it terminal."""
        if self.first_seen_terminal_real is None or self.finished_real is None:
            return None
        return self.first_seen_terminal_real - self.finished_real

    @property
    def detection_delay_sim(self) -> float | None:
        """Simulated seconds from finishing to the first GET that showed it terminal."""
        if self.first_seen_terminal_at is None:
            return None
        return self.first_seen_terminal_at - self.finished_at

    @property
    def charge(self) -> float:
        """The final charge of this task if it completes."""
        return self.price if self.final_price is None else self.final_price

    def body(self, now: float, result_url: str | None) -> dict[str, Any]:
        """The JSON the service answers for this task at ``now`` (create, GET, callback)."""
        status = self.status_at(now)
        body: dict[str, Any] = {
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "object": "video.generation.task",
            "progress": self.progress_at(now),
            "status": status,
            "task_info": {
                "can_cancel": status in ("pending", "processing"),
                "estimated_time": self.estimated_time,
                "video_duration": self.duration,
            },
            "type": "video",
            "usage": {
                "billing_rule": "per_call",
                "credits_reserved": self.price,
                "user_group": "default",
            },
        }
        if status == "completed":
            body["results"] = [result_url]
            body["usage"]["credits_used"] = self.charge
            body["usage"]["cost"] = {"credits": self.charge}
        elif status == "failed":  # a ``cancelled`` status carries no error (tolerated)
            body["error"] = {"code": self.error_code, "message": self.error_message or ""}
        return body

    def summary(self) -> dict[str, Any]:
        """What the stats endpoint shows of this task."""
        return {
            "prompt": self.prompt,
            "model": self.model,
            "duration": self.duration,
            "outcome": self.error_code or "completed",
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "created_real": self.created_real,
            "started_real": self.started_real,
            "finished_real": self.finished_real,
            "estimated_time": self.estimated_time,
            "polls": self.polls,
            "first_seen_terminal_at": self.first_seen_terminal_at,
            "first_seen_terminal_real": self.first_seen_terminal_real,
            "detection_delay": self.detection_delay,
            "detection_delay_sim": self.detection_delay_sim,
            "downloads": self.downloads,
            "ghost": self.ghost,
            "slow": self.slow,
        }
