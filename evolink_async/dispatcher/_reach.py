"""Whether this client's creates reach the service: fail fast before the first one got
through, pause during an outage after.

Until a create of the client has succeeded, and while no connection to the service was ever
opened, creates go one at a time: the first tells whether the service can be reached at all.
When its connection cannot even be opened (refused, DNS, TLS:
:class:`~..errors.ServiceUnreachableError`, after the transport's few quick retries), the
creates waiting behind it are told the same error without sending anything, the run stops
(no new create is sent) and ``generate_many`` raises the error. A slow service does not hold
the others back: its connection opens at once.

Once a create has succeeded, a create that cannot reach the service pauses every create of the
client instead: ``Paused`` is told to the listeners (the runs), new creates wait before their
intent is written, and one refused create is sent again after a backoff, with its own key
(its intent is already journaled: an outage burns none). A create that gets through resumes
them all (``Resumed``). Polls of the tasks in flight go on with the poller's own backoff.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

from .._retry import RetryPolicy
from ..errors import ServiceUnreachableError
from .events import Event, Paused, Resumed

__all__ = ["Reach"]

logger = logging.getLogger("evolink_async")

T = TypeVar("T")

#: the least wait between two tries during an outage (even with ``set_testing``)
_MIN_WAIT = 0.05


class Reach:
    """The reachability of the service for one client's creates (see the module).

    ``policy`` spaces the tries during an outage (real seconds; 1 s doubling up to 30 s).
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy(wait_initial=1.0, wait_max=30.0, jitter=0.5)
        #: a create of this client got through
        self.created = False
        #: the error of the outage creates are paused for (None: not paused)
        self.outage: ServiceUnreachableError | None = None
        #: ``time.monotonic()`` of the next try during an outage
        self.retry_at = 0.0
        self._since = 0.0
        self._tries = 0
        self._prober = False  # a refused create waits to be sent again (the others wait)
        self._first = False  # a first create is on its way
        self._told: ServiceUnreachableError | None = None
        self._round = 0
        self._listeners: list[Callable[[Event], object]] = []
        self._event: anyio.Event | None = None

    def __repr__(self) -> str:
        state = "paused" if self.outage is not None else "open" if self.created else "untried"
        return f"<Reach {state}>"

    # -- listeners and waking ------------------------------------------------------------------

    def listen(self, listener: Callable[[Event], object]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[Event], object]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _tell(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("a listener failed on %r", event)

    def _poke(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def _changed(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    # -- admission -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admit(self, connected: Callable[[], bool]) -> AsyncIterator[None]:
        """Around a create, before its intent: wait while creates are paused; before any
        create got through and while no connection was ever opened (``connected``), one at a
        time. Raises the first one's ``ServiceUnreachableError`` to those waiting behind."""
        round_ = self._round
        while self.outage is not None or (self._first and not connected()):
            await self._changed()  # poked by the first create's end, or connection_opened()
            if self._round != round_ and self._told is not None:
                raise self._told
        first = not self.created and not self._first
        self._first = self._first or first
        try:
            yield
        finally:
            if first:
                self._first = False
                self._poke()

    def connection_opened(self) -> None:
        """A connection to the service was opened: the creates waiting behind the first go."""
        self._poke()

    def give_up(self, error: ServiceUnreachableError) -> None:
        """The first create could not reach the service: tell the creates waiting for it."""
        self._told = error
        self._round += 1
        self._poke()

    # -- one create --------------------------------------------------------------------------

    async def create(
        self,
        send: Callable[[], Awaitable[T]],
        on_wait: Callable[[ServiceUnreachableError | None], None],
        *,
        keyed: bool,
    ) -> T:
        """``await send()``; while the service cannot be reached (and a create got through
        before), wait and send again as it is: a refused try reached nothing, and one that
        may have been taken (``maybe_created``) is sent again only with its key (``keyed``).
        ``on_wait`` is told the error as the create starts waiting, None as it is sent again.
        Raises at once before any create got through."""
        while True:
            try:
                result = await send()
            except ServiceUnreachableError as exc:
                if not self.created or (exc.maybe_created and not keyed):
                    raise
                on_wait(exc)
                await self._pause(exc)
                on_wait(None)
                continue
            except Exception:
                self._resume()  # an answer (or a connection opened): reachable again
                raise
            self.created = True
            self._resume()
            return result

    async def _pause(self, error: ServiceUnreachableError) -> None:
        """Wait until this refused create is to be sent again: after a backoff for the one
        that tries, at the end of the outage for the others."""
        if self.outage is None:
            self._since, self._tries = time.monotonic(), 0
            logger.warning("%s: creates paused until it can be reached", error)
        self.outage = error
        while self.outage is not None:
            if not self._prober:
                self._prober = True
                try:
                    self._tries += 1
                    wait = max(self.policy.backoff(self._tries), _MIN_WAIT)
                    self.retry_at = time.monotonic() + wait
                    self._tell(Paused(error.cause, error.where, wait, error))
                    with anyio.move_on_after(wait):
                        while self.outage is not None:
                            await self._changed()
                finally:
                    self._prober = False
                    self._poke()
                return
            await self._changed()

    def _resume(self) -> None:
        if self.outage is None:
            return
        paused_for = time.monotonic() - self._since
        self.outage = None
        logger.warning("the service can be reached again: creates resume")
        self._tell(Resumed(paused_for))
        self._poke()
