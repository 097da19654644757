"""What the waiters of one process of :class:`~.redis_limits.RedisLimits` wait for, fed by the
link's listener from the namespace's channel.

A waiter for a slot or for credits holds a ticket in a line in Redis (its lease or reservation
id); the script run that frees something serves the line in order and publishes
``go:<id>:<wait>`` (granted; ``<wait>``: seconds to the rate slot booked with it, or empty) or
``ask:<id>`` (ask again: the answer changed, e.g. it can never fit). ``pause`` tells every
rate sleeper that a 429 paused the namespace.
"""

from __future__ import annotations

import time

import anyio

__all__ = ["Waits"]

#: answers kept for tickets nobody waits on yet
_KEPT = 256


class Waits:
    """The tickets this process waits on, the rate slots booked ahead for it, the pause."""

    __slots__ = ("_answers", "_events", "_paused", "_prefix", "ahead")

    def __init__(self, owner: str) -> None:
        self._prefix = f"{owner}:"  # this process's tickets
        self._events: dict[str, anyio.Event] = {}
        #: answers heard, also those that came before their waiter began to wait (the grant
        #: published by another process's call can overtake the answer to our own)
        self._answers: dict[str, str] = {}
        self._paused: anyio.Event | None = None
        #: rate slots booked for this process along with a lease or reservation granted
        #: (``time.monotonic()`` deadlines), taken by its next requests
        self.ahead: list[float] = []

    def book_ahead(self, wait: float) -> None:
        self.ahead.append(time.monotonic() + wait)
        self.ahead.sort()

    def take_ahead(self, grace: float) -> float | None:
        """The earliest slot booked ahead that is still good (not past by more than
        ``grace`` seconds), or ``None``; slots past their grace are dropped."""
        now = time.monotonic()
        while self.ahead:
            slot = self.ahead.pop(0)
            if now <= slot + grace:
                return slot
        return None

    def hear(self, data: bytes) -> None:
        """One message of the namespace's channel."""
        if data == b"pause":
            self.wake_pause()
            return
        text = data.decode(errors="replace")
        if text.startswith("go:"):
            ticket, _, wait = text[3:].rpartition(":")
            self._answer(ticket, wait or "-")
        elif text.startswith("ask:"):
            self._answer(text[4:], "ask")

    def _answer(self, ticket: str, answer: str) -> None:
        if not ticket.startswith(self._prefix):
            return  # another process's
        if len(self._answers) >= _KEPT:  # never waited for (given up): forget the oldest
            del self._answers[next(iter(self._answers))]
        self._answers[ticket] = answer
        event = self._events.get(ticket)
        if event is not None:
            event.set()

    def ask_all(self) -> None:
        """Messages may have been missed (listener reconnected): every waiter asks again."""
        for ticket in list(self._events):
            self._answers.setdefault(ticket, "ask")
            self._events[ticket].set()

    async def wait_ticket(self, ticket: str, seconds: float) -> str | None:
        """Wait at most ``seconds`` for ticket's answer: ``"ask"``, a rate slot's wait in
        seconds as text (granted), ``"-"`` (granted, no slot booked), or ``None`` (no word)."""
        if ticket in self._answers:
            return self._answers.pop(ticket)
        event = self._events.setdefault(ticket, anyio.Event())
        try:
            with anyio.move_on_after(max(0.0, seconds)):
                await event.wait()
            return self._answers.pop(ticket, None)
        finally:
            del self._events[ticket]

    @property
    def waiting(self) -> list[str]:
        """The tickets this process waits on now."""
        return list(self._events)

    def wake_pause(self) -> None:
        """A pause began: rate sleepers book again; slots booked ahead are given up."""
        self.ahead.clear()
        if self._paused is not None:
            self._paused.set()
            self._paused = None

    async def wait_pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when a pause began meanwhile."""
        if self._paused is None:
            self._paused = anyio.Event()
        event = self._paused
        with anyio.move_on_after(max(0.0, seconds)):
            await event.wait()
            return True
        return False
