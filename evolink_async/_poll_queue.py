"""The hand-off of due reads from the poller's scheduling loop to its read workers.

What an anyio memory object stream does here, without the checkpoint its ``receive`` takes
before every wait: a worker that finds nothing to read waits at once, so each read costs one
wake-up of one worker and no extra turn of the event loop (at a few dozen reads a second,
every turn is a cold wake-up of the process).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["ReadQueue"]

T = TypeVar("T")


class ReadQueue(Generic[T]):
    """Unbounded, first in first out; each item wakes one waiting receiver. A waiter is a bare
    future of the running loop (an anyio event wraps an asyncio event that wraps one)."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def send_nowait(self, item: T) -> None:
        self._items.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def take(self) -> T | None:
        """The next item, or None when there is none (no exception: an idle worker's usual
        case)."""
        return self._items.popleft() if self._items else None

    async def receive(self) -> T:
        """The next item, waiting for one (no checkpoint when one is there: see the module)."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken for an item but cancelled: wake another for it
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        return self._items.popleft()
