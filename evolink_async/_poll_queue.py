"""The hand-off of due reads from the poller's scheduling loop to its read workers.

What an anyio memory object stream does here, without the checkpoint its ``receive`` takes
before every wait: a worker that finds nothing to read waits at once, so each read costs one
wake-up of one worker and no extra turn of the event loop (at a few dozen reads a second,
every turn is a cold wake-up of the process).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["ReadQueue"]

T = TypeVar("T")


class ReadQueue(Generic[T]):
    """Unbounded, first in first out; each item wakes one waiting receiver."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiters: deque[anyio.Event] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def send_nowait(self, item: T) -> None:
        self._items.append(item)
        if self._waiters:
            self._waiters.popleft().set()

    def receive_nowait(self) -> T:
        """The next item; ``anyio.WouldBlock`` when there is none."""
        if not self._items:
            raise anyio.WouldBlock
        return self._items.popleft()

    async def receive(self) -> T:
        """The next item, waiting for one (no checkpoint when one is there: see the module)."""
        while not self._items:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():  # woken for an item but cancelled: wake another for it
                    if self._items and self._waiters:
                        self._waiters.popleft().set()
                else:
                    self._waiters.remove(event)
                raise
        return self._items.popleft()
