"""The simulator's task reads beyond GET /v1/tasks/{id}: ``POST /v1/tasks/batch`` (up to 50
tasks in one request) and ``GET /v1/tasks`` (the account's tasks, newest first, page by page).

As the gateway (``evolink-gateway.md`` §2): a batch answers ``{"data": [task...]}`` with full
task bodies, and ids it does not know are simply absent; the list's items carry no result
links. ``SimulatorConfig(batch_reads=False)`` makes the batch endpoint answer 404, as a
gateway without it would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ._clock import Clock
from ._config import SimulatorConfig
from ._errors import ApiError
from ._stats import SimulatorStats
from ._task import SimulatedTask

__all__ = ["MAX_BATCH", "TaskReads"]

MAX_BATCH = 50
MAX_PAGE_SIZE = 50
_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")


class TaskReads:
    """The two handlers, over the simulator's state (passed in, not reached into)."""

    def __init__(
        self,
        config: SimulatorConfig,
        clock: Clock,
        stats: SimulatorStats,
        authorize: Callable[[web.Request], None],
        settled_body: Callable[[SimulatedTask], dict[str, Any]],
    ) -> None:
        self.config = config
        self.clock = clock
        self.stats = stats
        self.authorize = authorize
        self.settled_body = settled_body

    async def batch(self, request: web.Request, call: Any) -> web.StreamResponse:
        """POST /v1/tasks/batch (``call.fault == "ghost"``: the answer never reaches the
        client, so it counts as no read)."""
        delivered = getattr(call, "fault", None) != "ghost"
        if not self.config.batch_reads:
            raise ApiError(404, "not_found", f"No route for POST {request.path}", "not_found_error")
        self.authorize(request)
        ids = _task_ids(await request.read())
        data = []
        for task_id in ids:
            task = self.stats.tasks.get(task_id)
            if task is None:
                continue  # unknown or expired: absent, no error
            body = self.settled_body(task)
            if delivered:
                task.read(body["status"], self.clock.now())
            data.append(body)
        if delivered:
            self.stats.batch_reads.append(len(ids))
        return web.json_response({"data": data})

    async def listing(self, request: web.Request, call: Any) -> web.StreamResponse:
        """GET /v1/tasks?status=&type=&model=&page=&page_size= (newest first)."""
        self.authorize(request)
        query = request.query
        page = _int_param(query, "page", 1, 1, 1_000_000)
        size = _int_param(query, "page_size", 20, 1, MAX_PAGE_SIZE)
        status = query.get("status")
        if status is not None and status not in _STATUSES:
            raise ApiError.invalid("status", f"status must be one of {', '.join(_STATUSES)}")
        items = [
            _item(task, self.settled_body(task))
            for task in sorted(self.stats.tasks.values(), key=_newest_first)
        ]
        items = [i for i in items if _matches(i, status, query.get("type"), query.get("model"))]
        first = (page - 1) * size
        body = {
            "data": items[first : first + size],
            "total": len(items),
            "page": page,
            "page_size": size,
        }
        return web.json_response(body)


def _task_ids(raw: bytes) -> list[str]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    ids = body.get("task_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError.invalid("task_ids", "task_ids must be a list of task ids")
    if len(ids) > MAX_BATCH:
        raise ApiError.invalid("task_ids", f"at most {MAX_BATCH} task ids per request")
    return list(dict.fromkeys(ids))


def _int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise ApiError.invalid(name, f"{name} must be an integer from {lo} to {hi}")
    return value


def _newest_first(task: SimulatedTask) -> tuple[float, str]:
    return (-task.created_at, task.id)


def _item(task: SimulatedTask, body: Mapping[str, Any]) -> dict[str, Any]:
    """A list item: the task's summary fields, no result links."""
    status = body["status"]
    item: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "type": "video",
        "status": status,
        "progress": body["progress"],
        "created_at": task.created,
        "has_results": status == "completed",
        "result_count": 1 if status == "completed" else 0,
        "has_error": "error" in body,
    }
    if status == "completed":
        item["credits_used"] = task.price
        item["duration"] = round(task.finished_at - task.created_at, 3)
    return item


def _matches(
    item: Mapping[str, Any], status: str | None, type_: str | None, model: str | None
) -> bool:
    if status == "processing":  # "includes queued tasks"
        if item["status"] not in ("pending", "processing"):
            return False
    elif status is not None and item["status"] != status:
        return False
    if type_ is not None and item["type"] != type_:
        return False
    return model is None or item["model"] == model
