"""``generate``: one call that creates a video, waits for it and downloads it (as
openai-python's ``create_and_poll`` and fal's ``subscribe`` give their users).

``EvolinkClient`` inherits it; it goes through the client's dispatcher, so the client's
limits, budget and retries apply as they do to every other request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Unpack

from .dispatcher import Event, RequestLike, TaskHandle
from .download import DownloadResult
from .errors import EvolinkError
from .models import Task, VideoFields, VideoRequest

__all__ = ["Generate"]


class Generate:
    """The one-call convenience of the client."""

    if TYPE_CHECKING:  # provided by EvolinkClient

        async def submit(
            self,
            request: RequestLike,
            *,
            timeout: float | None = None,
            max_attempts: int = 3,
            on_event: Callable[[Event], object] | None = None,
        ) -> TaskHandle: ...

        async def download(
            self, task_or_url: Task | str, path: str | os.PathLike[str]
        ) -> DownloadResult: ...

    async def generate(
        self,
        request: VideoRequest | Mapping[str, Any] | str,
        *,
        out: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        max_attempts: int = 3,
        on_event: Callable[[Event], object] | None = None,
        **fields: Unpack[VideoFields],
    ) -> Task:
        """Create a video, wait until it is done and, with ``out``, download it there; return
        the completed task. ``request`` is a prompt (with the request's ``fields`` as keywords:
        ``duration=8``...), a mapping with the API's field names, or a ``VideoRequest``.

        It goes through the client's limits like ``submit`` (retryable failures are tried again
        up to ``max_attempts``); ``on_event`` sees its events (``Submitted``, ``Progress``, the
        end). Raises the failure: ``TaskFailedError`` (``TaskCancelledError`` if cancelled),
        ``TaskTimeoutError``, ``BudgetExceededError``, an ``APIError``, or an
        ``APIConnectionError`` with ``maybe_created=True`` when the create may have been taken.
        """
        if fields:
            if not isinstance(request, str):
                raise TypeError("keyword fields go with a prompt, not a request or a mapping")
            request = VideoRequest.from_fields({"prompt": request, **fields})
        handle = await self.submit(
            request, timeout=timeout, max_attempts=max_attempts, on_event=on_event
        )
        outcome = await handle
        if outcome.status != "completed" or outcome.task is None:
            raise outcome.error or EvolinkError(f"the video was not made: {outcome.status}")
        if out is not None:
            await self.download(outcome.task, out)
        return outcome.task
