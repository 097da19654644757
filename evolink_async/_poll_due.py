"""The poller's due times: a heap of due times with the task ids due at each, and beside it
a heap of the earliest time each task's read is worth taking along
(``_poll_plan.plan_window``).

The heap holds bare floats, mapped to their task id (a list only when several reads fall due
at the very same time): queuing a read allocates nothing the garbage collector tracks. A
tuple a read made the collector run a young collection every ~700 reads and, at 10 000 tasks
in flight, a full one (about 100 ms) every ~25 000.

When some tasks are due, the room their batch reads leave (a batch read carries 50) is
filled with tasks whose read may come early, soonest due first: they cost no request now and
save one later. No I/O here; the poller owns the entries.
"""

from __future__ import annotations

import heapq
import math

from ._poll_entry import Entry

__all__ = ["DueQueue"]


class DueQueue:
    """Due times of tracked entries (``entry.due`` is the one that counts; items in the heaps
    that no longer match it are stale and skipped)."""

    __slots__ = ("_early", "_heap", "_ids", "_seq")

    def __init__(self) -> None:
        self._heap: list[float] = []
        #: the task id due at each time in the heap (stale ones included, until popped); a
        #: list of them when several reads fall due at the very same time
        self._ids: dict[float, str | list[str]] = {}
        #: (earliest, due then, seq, task id): riders
        self._early: list[tuple[float, float, int, str]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def next_due(self) -> float:
        """The earliest due time queued (stale items included: an early look is harmless)."""
        return self._heap[0] if self._heap else math.inf

    def push(self, entry: Entry, due: float, early: float | None = None) -> None:
        """Queue ``entry`` at ``due``; it may ride along with other reads from ``early``."""
        entry.due = due
        task_id = entry.task.id
        have = self._ids.get(due)
        if have is None:
            self._ids[due] = task_id
        elif isinstance(have, str):
            self._ids[due] = [have, task_id]
        else:
            have.append(task_id)
        heapq.heappush(self._heap, due)
        if early is not None and early < due:
            self._seq += 1
            heapq.heappush(self._early, (early, due, self._seq, task_id))

    def pop_due(self, entries: dict[str, Entry], now: float) -> list[Entry]:
        """Pop the entries due by ``now`` (they leave the queue until replanned)."""
        heap, ids, due_now = self._heap, self._ids, []
        while heap and heap[0] <= now:
            due = heapq.heappop(heap)
            found = ids.pop(due, None)  # None: taken with the first of its equal times
            if found is None:
                continue
            for task_id in [found] if isinstance(found, str) else found:
                entry = entries.get(task_id)
                if entry is None or entry.due != due:
                    continue  # stale heap item: rescheduled, finished or taken since
                entry.due = math.inf  # in the stream; not due again until replanned
                due_now.append(entry)
        return due_now

    def riders(self, entries: dict[str, Entry], now: float, room: int) -> list[Entry]:
        """Up to ``room`` entries not yet due whose read may come by ``now``, soonest due
        first (they leave the queue until replanned)."""
        if room <= 0:
            return []
        early, ready = self._early, []
        while early and early[0][0] <= now:
            item = heapq.heappop(early)
            entry = entries.get(item[3])
            if entry is not None and entry.due == item[1]:
                ready.append(item)
        if not ready:
            return []
        ready.sort(key=lambda item: item[1])
        for item in ready[room:]:  # no room this time: maybe the next
            heapq.heappush(early, item)
        taken = []
        for item in ready[:room]:
            entry = entries[item[3]]
            entry.due = math.inf
            taken.append(entry)
        return taken
