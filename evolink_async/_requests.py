"""The client's single requests, one method per endpoint (``EvolinkClient`` inherits them):
thin over ``api.EvolinkAPI``, with the client's checks of what is given."""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from ._upload_check import aread_upload
from .api import EvolinkAPI
from .models import Credits, Task, TaskSummary, VideoFields, VideoRequest

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Requests"]


class Requests:
    """The client's single requests, one per endpoint (``EvolinkClient`` inherits them)."""

    api: EvolinkAPI

    async def create_video(
        self,
        request: VideoRequest | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[VideoFields],
    ) -> Task:
        """POST /v1/videos/generations. Give a ``VideoRequest`` or its fields as keywords
        (``prompt=...``, ``duration=...``; fields of one model in ``extra={...}``).

        It carries ``idempotency_key`` (else ``client_request_id``, else a fresh ``run_`` key);
        an unknown outcome (no answer, a 5xx) is sent again with that key (with the client's
        ``idempotency=False``: never, ``maybe_created=True``). ``InvalidRequestError``: a field
        broke a rule, nothing sent; ``IdempotencyConflictError``: the key was used before."""
        if request is None:
            request = VideoRequest.from_fields(fields)
        elif fields:
            raise TypeError("pass either a VideoRequest or keyword fields, not both")
        elif not isinstance(request, VideoRequest):
            raise TypeError(f"expected a VideoRequest, got {type(request).__name__}")
        return await self.api.create_video(request, idempotency_key=idempotency_key)

    async def get_task(self, task_id: str) -> Task:
        """GET /v1/tasks/{task_id}."""
        return await self.api.get_task(task_id)

    async def get_tasks(self, task_ids: Iterable[str]) -> list[Task]:
        """POST /v1/tasks/batch: up to 50 tasks in one request. Ids the service does not know
        (wrong, expired, another account's) are absent from the list."""
        return await self.api.get_tasks(task_ids)

    def list_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        model: str | None = None,
        since: float | datetime.datetime | datetime.timedelta | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[TaskSummary]:
        """The account's tasks, newest first, read page by page (GET /v1/tasks) as the loop
        goes. ``status`` (``processing`` includes queued tasks), ``type`` and ``model`` filter
        on the service; ``since`` (a Unix time, a datetime, or a timedelta back from now)
        stops at the first older task. Items carry no result links (``get_tasks`` has them).
        """
        return self.api.iter_tasks(
            status=status, type=type, model=model, since=since, page_size=page_size
        )

    async def upload_file(self, path: str | os.PathLike[str]) -> str:
        """Upload a local image (JPEG, PNG, GIF or WebP, at most 30 MB: checked first, naming
        the rule) to the Files API; its public URL, for ``image_urls``. It expires after 72
        hours. An upload is never retried once it may have been sent."""
        file = await aread_upload(path)
        return await self.api.upload_file(file.data, file.name, file.mime)

    async def get_credits(self) -> Credits:
        """GET /v1/credits: the account's balance (``.balance``), this key's spend and what is
        left of its limit (``.key_used``, ``.key_remaining``), and ``.available``, the smaller.
        An answer with ``success: false`` or without ``data.user``/``data.token`` raises
        ``DecodeError``."""
        return await self.api.get_credits()
