"""``EvolinkAPI``: one method per endpoint of the service, over the transport.

Paths, task-id checks and the callback URL of a create live here; limits, polling and state do
not (the transport's gate applies the limits to every request).
"""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from urllib.parse import urlencode

from ._codec import (
    decode_account_credits,
    decode_task,
    decode_task_page,
    decode_tasks,
    decode_upload,
)
from ._keys import check_idempotency_key, new_idempotency_key
from ._transport import Transport
from .errors import InvalidRequestError
from .models import Credits, Task, TaskPage, TaskSummary, VideoRequest

__all__ = [
    "MAX_BATCH_READ",
    "MAX_PAGE_SIZE",
    "TASK_PREFIX",
    "EvolinkAPI",
    "check_task_id",
    "since_cutoff",
]

TASK_PREFIX = "task-unified-"
#: task ids one ``POST /v1/tasks/batch`` may ask for
MAX_BATCH_READ = 50
#: items one page of ``GET /v1/tasks`` may hold
MAX_PAGE_SIZE = 50


def check_task_id(task_id: str) -> str:
    """``task_id`` if it is a task id the service could have given; else InvalidRequestError."""
    if not isinstance(task_id, str) or not task_id.startswith(TASK_PREFIX):
        raise InvalidRequestError("task_id", task_id, f"must start with {TASK_PREFIX!r}")
    if "/" in task_id or "?" in task_id or "#" in task_id:
        raise InvalidRequestError("task_id", task_id, "must not contain '/', '?' or '#'")
    return task_id


def since_cutoff(since: float | datetime.datetime | datetime.timedelta | None) -> float | None:
    """``since`` (a Unix time, an aware datetime, or a timedelta back from now) as a Unix time;
    None: no cutoff."""
    if since is None:
        return None
    if isinstance(since, datetime.timedelta):
        return time.time() - since.total_seconds()
    if isinstance(since, datetime.datetime):
        if since.tzinfo is None:
            raise InvalidRequestError("since", since, "must be timezone-aware")
        return since.timestamp()
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    raise InvalidRequestError("since", since, "must be a Unix time, a datetime or a timedelta")


class EvolinkAPI:
    """The service's endpoints. ``callback_url``, when given, is asked for the URL to put in
    each create that sets none of its own (on the wire only: the secret URL stays out of
    requests, journals and logs).

    ``idempotency`` (default True): every create carries an idempotency key, and a create
    whose outcome is unknown is sent again with the same key. False for a proxy that strips
    the header: then no key is sent and no create is sent twice.
    """

    __slots__ = ("callback_url", "files_base_url", "idempotency", "transport")

    def __init__(
        self,
        transport: Transport,
        *,
        callback_url: Callable[[], str] | None = None,
        files_base_url: str | None = None,
        idempotency: bool = True,
    ) -> None:
        self.transport = transport
        self.callback_url = callback_url
        #: the Files API's base (None: the API's own base serves it, as the simulator does)
        self.files_base_url = files_base_url
        self.idempotency = idempotency

    def __repr__(self) -> str:
        return f"<EvolinkAPI {self.transport!r}>"

    @property
    def requests(self) -> int:
        """API requests sent so far (every attempt counts)."""
        return self.transport.requests

    @property
    def connected(self) -> bool:
        """Whether a connection to the service was ever opened."""
        return self.transport.connected

    def when_connected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once, when a connection to the service is first opened."""
        self.transport.when_connected(listener)

    def idempotency_key(self, request: VideoRequest, key: str | None = None) -> str | None:
        """The key a create of ``request`` carries: ``key``, else the request's
        ``client_request_id``, else a fresh ``run_`` key; None when idempotency is off."""
        if not self.idempotency:
            return None
        if key is not None:
            return check_idempotency_key(key)
        return request.client_request_id or new_idempotency_key()

    async def create_video(
        self, request: VideoRequest, *, idempotency_key: str | None = None
    ) -> Task:
        """POST /v1/videos/generations with an idempotency key (see :meth:`idempotency_key`):
        an unknown outcome is retried with the same key; without keys, never retried."""
        body = request.to_json()
        if request.callback_url is None and self.callback_url is not None:
            body["callback_url"] = self.callback_url()
        data, _ = await self.transport.create(
            "/v1/videos/generations",
            json=body,
            idempotency_key=self.idempotency_key(request, idempotency_key),
        )
        return decode_task(data)

    async def get_task(self, task_id: str, *, known: Task | None = None) -> Task:
        """GET /v1/tasks/{task_id}. ``known``: the task as last seen, given back as it is
        when the answer shows the same state (``_codec.same_state``; the poller's reads)."""
        check_task_id(task_id)
        data = await self.transport.request("GET", f"/v1/tasks/{task_id}", kind="task")
        return decode_task(data, known)

    async def get_tasks(
        self, task_ids: Iterable[str], *, known: Mapping[str, Task] | None = None
    ) -> list[Task]:
        """POST /v1/tasks/batch: up to 50 tasks in one request (duplicates sent once). Ids the
        service does not know (wrong, expired, another account's) are simply absent.
        ``known``: tasks as last seen, by id (see :meth:`get_task`)."""
        ids = list(dict.fromkeys(check_task_id(t) for t in task_ids))
        if len(ids) > MAX_BATCH_READ:
            raise InvalidRequestError(
                "task_ids", len(ids), f"at most {MAX_BATCH_READ} task ids per request"
            )
        if not ids:
            return []
        data = await self.transport.request(
            "POST", "/v1/tasks/batch", json={"task_ids": ids}, kind="tasks_batch"
        )
        return decode_tasks(data, known)

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        model: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> TaskPage:
        """GET /v1/tasks: one page of the account's tasks, newest first (no result links)."""
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise InvalidRequestError("page", page, "must be an integer >= 1")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidRequestError("page_size", page_size, f"must be 1..{MAX_PAGE_SIZE}")
        query: dict[str, str | int] = {"page": page, "page_size": page_size}
        for name, value in (("status", status), ("type", type), ("model", model)):
            if value is not None:
                query[name] = value
        path = "/v1/tasks?" + urlencode(query)
        data = await self.transport.request("GET", path, kind="tasks_list")
        return decode_task_page(data, page, page_size)

    async def iter_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        model: str | None = None,
        since: float | datetime.datetime | datetime.timedelta | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[TaskSummary]:
        """Every task of ``list_tasks``, page after page as the loop goes, newest first;
        stops at the first task created before ``since`` (filtered here: the service has no
        such filter)."""
        cutoff = since_cutoff(since)
        page = 1
        while True:
            batch = await self.list_tasks(
                status=status, type=type, model=model, page=page, page_size=page_size
            )
            for item in batch.items:
                if cutoff is not None and item.created_at is not None and item.created_at < cutoff:
                    return
                yield item
            if not batch.items or page * batch.page_size >= batch.total:
                return
            page += 1

    async def upload_file(self, data: bytes, file_name: str, mime: str) -> str:
        """POST /api/v1/files/upload/base64 on the Files API: the uploaded file's public URL
        (it expires after 72 hours). Never retried once it may have been sent."""
        base = (self.files_base_url or self.transport.base_url).rstrip("/")
        body = {
            "base64_data": f"data:{mime};base64," + base64.b64encode(data).decode("ascii"),
            "file_name": file_name,
        }
        answer = await self.transport.request(
            "POST", base + "/api/v1/files/upload/base64", json=body, create=True, kind="upload"
        )
        return decode_upload(answer)

    async def get_credits(self) -> Credits:
        """GET /v1/credits: the account's balance and this key's spend and limit.
        ``success: false`` or a missing ``data.user``/``data.token`` raises DecodeError."""
        answer = await self.transport.request("GET", "/v1/credits", kind="credits")
        return decode_account_credits(answer)
