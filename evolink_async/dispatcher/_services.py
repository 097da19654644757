"""The dispatcher's collaborators (``Services``), what it needs of the API (``TaskAPI``), and
``Signal``, its "something changed" wake-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import attrs

from ..limits import Estimator, Limits
from ..models import Task, VideoRequest
from ..poller import Poller
from ._reach import Reach

__all__ = ["Services", "Signal", "TaskAPI"]


class TaskAPI(Protocol):
    """What the dispatcher needs of the API (``api.EvolinkAPI`` is one)."""

    @property
    def requests(self) -> int: ...

    #: a connection to the service was ever opened (creates go one at a time until then)
    @property
    def connected(self) -> bool: ...

    #: creates carry idempotency keys (a create that may have been taken is then resent)
    idempotency: bool

    def when_connected(self, listener: Callable[[], None]) -> None: ...

    def create_video(
        self, request: VideoRequest, *, idempotency_key: str | None = None
    ) -> Awaitable[Task]: ...


@attrs.frozen
class Services:
    """The dispatcher's collaborators: the API, the one poller, the client's limits, what a
    create costs, and the defaults of the client."""

    api: TaskAPI
    poller: Poller
    limits: Limits
    price: Estimator
    time_scale: float = 1.0
    task_timeout: float | None = 1800.0
    #: told of a service figure above the estimate (model, duration, extra, figure)
    learn: Callable[[str, int | None, Mapping[str, Any], float], None] | None = None
    #: whether the client's creates reach the service (fail fast, or pause in an outage)
    reach: Reach = attrs.field(factory=Reach)


class Signal:
    """Something changed: ``wait()`` returns at the next ``set()`` after the last ``clear()``.

    The anyio event behind it is made only when somebody has to wait: ``set`` and ``clear``
    run for every outcome, and making an event each time costs more than the rest of them.
    """

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    def clear(self) -> None:
        self._flag = False
        if self._event is not None and self._event.is_set():
            self._event = None

    async def wait(self) -> None:
        if self._flag:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()
