"""``EvolinkAPI``: one method per endpoint of the service, over the transport.

Paths, task-id checks and the callback URL of a create live here; limits, polling and state do
not (the transport's gate applies the limits to every request).
"""

from __future__ import annotations

from collections.abc import Callable

from ._codec import decode_credits, decode_task
from ._keys import check_idempotency_key, new_idempotency_key
from ._transport import Transport
from .errors import InvalidRequestError
from .models import Credits, Task, VideoRequest

__all__ = ["TASK_PREFIX", "EvolinkAPI", "check_task_id"]

TASK_PREFIX = "task-unified-"


def check_task_id(task_id: str) -> str:
    """``task_id`` if it is a task id the service could have given; else InvalidRequestError."""
    if not isinstance(task_id, str) or not task_id.startswith(TASK_PREFIX):
        raise InvalidRequestError("task_id", task_id, f"must start with {TASK_PREFIX!r}")
    if "/" in task_id or "?" in task_id or "#" in task_id:
        raise InvalidRequestError("task_id", task_id, "must not contain '/', '?' or '#'")
    return task_id


class EvolinkAPI:
    """The service's endpoints. ``callback_url``, when given, is asked for the URL to put in
    each create that sets none of its own (on the wire only: the secret URL stays out of
    requests, journals and logs).

    ``idempotency`` (default True): every create carries an idempotency key, and a create
    whose outcome is unknown is sent again with the same key. False for a proxy that strips
    the header: then no key is sent and no create is sent twice.
    """

    __slots__ = ("callback_url", "idempotency", "transport")

    def __init__(
        self,
        transport: Transport,
        *,
        callback_url: Callable[[], str] | None = None,
        idempotency: bool = True,
    ) -> None:
        self.transport = transport
        self.callback_url = callback_url
        self.idempotency = idempotency

    def __repr__(self) -> str:
        return f"<EvolinkAPI {self.transport!r}>"

    @property
    def requests(self) -> int:
        """API requests sent so far (every attempt counts)."""
        return self.transport.requests

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

    async def get_task(self, task_id: str) -> Task:
        """GET /v1/tasks/{task_id}."""
        check_task_id(task_id)
        return decode_task(await self.transport.request("GET", f"/v1/tasks/{task_id}", kind="task"))

    async def get_credits(self) -> Credits:
        """GET /v1/credits: the key's and the account's balance."""
        return decode_credits(await self.transport.request("GET", "/v1/credits", kind="credits"))
