"""The ledger: ONE pure state machine per batch line (no I/O, no asyncio).

Every fact a run knows about a line lives here: its state, attempts, task id, result URL,
file, error and credits. The progress counts, the progress credits and the budget are
computed from it, nowhere else. The job feeds it events; the journal and the manifest are
written from what it holds.

States (``State``)::

    queued ──post──▶ posting ──submitted──▶ submitted ──processing──▶ processing
      ▲                 │ intent_failed ▲                    │
      └─────────────────┘               │                    ▼  completed(download)
    posting ──intent_cancelled──▶ maybe_sent              downloading ──downloaded──▶ completed
    any non-final ──retrying / stopped / requeued──▶ queued          └──download_failed──▶ completed
    any non-final ──completed / failed / unknown / skipped / budget_skipped──▶ final

``posting``: the intent is (being) journaled and the create may be on the wire, no answer yet.
``maybe_sent``: the run was cancelled while the intent was being written: the create may have
been sent. Both count as ``queued`` in :class:`BatchProgress`, and as ``unknown`` in a manifest
written before they are answered.

The budget (:meth:`Ledger.held`): a line holds its credits while its task may exist and is not
known to have failed: ``submitted``, ``processing``, ``downloading``, ``completed`` at the
credits the service reported; ``posting``, ``maybe_sent`` and ``unknown`` (an intent without an
answer) at their credits if known, else at the line's price, until resolved. So a resumed run
never reserves beyond its budget for lines an earlier run may have paid for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal, get_args

import attrs

__all__ = [
    "FINAL",
    "STATES",
    "TRANSITIONS",
    "BatchProgress",
    "Ledger",
    "LedgerLine",
    "State",
    "TransitionError",
]

State = Literal[
    "queued",
    "posting",
    "maybe_sent",
    "submitted",
    "processing",
    "downloading",
    "completed",
    "failed",
    "unknown",
    "skipped",
    "cancelled",
]
STATES: Final[tuple[State, ...]] = get_args(State)
#: states in which a line is done for this run
FINAL: Final[frozenset[State]] = frozenset(
    {"completed", "failed", "unknown", "skipped", "cancelled"}
)
_OPEN: Final[frozenset[State]] = frozenset(STATES) - FINAL
#: states whose credits the service reported (task created, not failed)
_REPORTED: Final[frozenset[State]] = frozenset(
    {"submitted", "processing", "downloading", "completed"}
)
#: states where the create may have been paid for without an answer
_MAYBE_PAID: Final[frozenset[State]] = frozenset({"posting", "maybe_sent", "unknown"})
#: states shown as ``queued`` in progress counts
_AS_QUEUED: Final[frozenset[State]] = frozenset({"queued", "posting", "maybe_sent"})

#: event -> (the states it applies in, the state it leads to); an event in another state is
#: ignored (a repeat, or an answer that arrives after the line ended). ``None``: decided by
#: the event's arguments (see the methods).
TRANSITIONS: Final[Mapping[str, tuple[frozenset[State], State | None]]] = {
    "post": (frozenset({"queued"}), "posting"),
    "intent_failed": (frozenset({"posting"}), "queued"),
    "intent_cancelled": (frozenset({"posting"}), "maybe_sent"),
    "submitted": (frozenset(STATES), "submitted"),
    "processing": (frozenset({"submitted"}), "processing"),
    "retrying": (_OPEN, "queued"),
    "budget_skipped": (_OPEN, "skipped"),
    "requeued": (frozenset({"submitted", "processing"}), "queued"),
    "completed": (_OPEN - {"downloading"}, None),
    "failed": (_OPEN - {"downloading"}, "failed"),
    "unknown": (_OPEN - {"downloading"}, "unknown"),
    "skipped": (_OPEN - {"downloading"}, "skipped"),
    "cancelled": (_OPEN - {"downloading"}, "cancelled"),
    "stopped": (_OPEN - {"downloading"}, "queued"),
    "downloaded": (frozenset({"downloading"}), "completed"),
    "download_failed": (frozenset({"downloading"}), "completed"),
}

Error = dict[str, str]


class TransitionError(ValueError):
    """An event names a line the ledger does not have."""


@attrs.define(eq=False)
class LedgerLine:
    """The state of one input line in this run (mutated only by :class:`Ledger`)."""

    line: int
    prompt: str
    price: float = 0.0
    state: State = "queued"
    task_id: str | None = None
    url: str | None = None
    video: str | None = None
    error: Error | None = None
    attempts: int = 0
    credits: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def sent(self) -> bool:
        """The latest attempt's create got an answer (a task id) in this state."""
        return self.state in ("submitted", "processing", "downloading")

    @property
    def held(self) -> float:
        """The credits this line holds against the budget."""
        if self.state in _REPORTED:
            return self.credits
        if self.state in _MAYBE_PAID:
            return self.credits if self.credits > 0 else self.price
        return 0.0


@attrs.frozen
class BatchProgress:
    """A snapshot of a running job, for progress displays.

    Line counts: ``queued`` (not sent yet, or waiting to be sent again), ``submitted`` (task
    created, pending at the service), ``processing``, ``downloading`` (completed, file being
    fetched), and the final ``completed``, ``failed``, ``unknown``, ``skipped``. ``credits``:
    reserved by completed tasks and tasks in flight, of ``budget`` (None: no budget).
    ``downloaded``/``download_failed``: completed lines with their file on disk / whose file
    could not be fetched. ``requests``: API requests sent by this run; ``retries``: attempts
    made again (a retryable task failure, or a create the service refused); ``paused``:
    seconds left of a pause a 429 asked for; ``outage``: why creates are paused because the
    service cannot be reached (None: they are not), the next try in ``outage_retry`` seconds.
    """

    total: int
    queued: int = 0
    submitted: int = 0
    processing: int = 0
    downloading: int = 0
    completed: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    cancelled: int = 0
    credits: float = 0.0
    budget: float | None = None
    downloaded: int = 0
    download_failed: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    paused: float = 0.0
    outage: str | None = None
    outage_retry: float = 0.0
    elapsed: float = 0.0
    stopping: bool = False

    @property
    def done(self) -> int:
        """Lines with a final status."""
        return self.completed + self.failed + self.unknown + self.skipped + self.cancelled


class Ledger:
    """The lines of one run, in input order, and the transitions between their states.

    Each event method returns whether it applied (``False``: the line was in a state the
    event does not apply in, see :data:`TRANSITIONS`, and nothing changed).
    """

    __slots__ = ("_counts", "_lines")

    def __init__(self, lines: Iterable[LedgerLine]) -> None:
        self._lines: dict[int, LedgerLine] = {}
        for ln in lines:
            if ln.line in self._lines:
                raise ValueError("line numbers must be unique")
            self._lines[ln.line] = ln
        self._counts: Counter[State] = Counter(ln.state for ln in self._lines.values())

    def __getitem__(self, line: int) -> LedgerLine:
        try:
            return self._lines[line]
        except KeyError:
            raise TransitionError(f"no line {line} in this batch") from None

    def __iter__(self) -> Iterator[LedgerLine]:
        return iter(self._lines.values())

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={n}" for s, n in sorted(self._counts.items()) if n)
        return f"<Ledger {len(self._lines)} lines: {counts}>"

    # ----------------------------------------------------------------- derived figures

    def counts(self) -> dict[str, int]:
        """Lines by progress state (``posting`` and ``maybe_sent`` shown as ``queued``)."""
        shown: Counter[str] = Counter()
        for state, n in self._counts.items():
            shown["queued" if state in _AS_QUEUED else state] += n
        return dict(shown)

    def count(self, state: State) -> int:
        """Lines in ``state``."""
        return self._counts[state]

    def credits(self) -> float:
        """Credits reserved by completed lines and tasks in flight (for progress)."""
        return round(sum(ln.credits for ln in self if ln.state in _REPORTED), 4)

    def held(self) -> float:
        """Credits that count as spent against the budget (see the module docstring)."""
        return sum(ln.held for ln in self)

    def budget_left(self, budget: float | None) -> float | None:
        """What a new reservation may still use of ``budget`` (None: no budget)."""
        if budget is None:
            return None
        return max(0.0, budget - self.held())

    def progress(self, **run: Any) -> BatchProgress:
        """A :class:`BatchProgress` of the counts and credits, with the run's own figures."""
        c = self.counts()
        return BatchProgress(
            total=len(self),
            queued=c.get("queued", 0),
            submitted=c.get("submitted", 0),
            processing=c.get("processing", 0),
            downloading=c.get("downloading", 0),
            completed=c.get("completed", 0),
            failed=c.get("failed", 0),
            unknown=c.get("unknown", 0),
            skipped=c.get("skipped", 0),
            cancelled=c.get("cancelled", 0),
            credits=self.credits(),
            downloaded=sum(1 for ln in self if ln.state == "completed" and ln.video),
            download_failed=sum(
                1 for ln in self if ln.error and ln.error.get("code") == "download_failed"
            ),
            **run,
        )

    # ----------------------------------------------------------------- transitions

    def _move(self, line: int, event: str, to: State | None = None) -> LedgerLine | None:
        ln = self[line]
        allowed, target = TRANSITIONS[event]
        if ln.state not in allowed:
            return None
        new = to if to is not None else target
        assert new is not None
        self._counts[ln.state] -= 1
        self._counts[new] += 1
        ln.state = new
        return ln

    def restore(self, line: int, state: State, **facts: Any) -> None:
        """Set a line from the journal of earlier runs (planning, before any event)."""
        ln = self[line]
        for name, value in facts.items():
            setattr(ln, name, value)
        self._counts[ln.state] -= 1
        self._counts[state] += 1
        ln.state = state

    def post(self, line: int) -> bool:
        """The line's intent is about to be journaled: its create may go out."""
        return self._move(line, "post") is not None

    def intent_written(self, line: int) -> None:
        """The intent is on disk: one more attempt."""
        self[line].attempts += 1

    def intent_failed(self, line: int) -> bool:
        """The intent could not be written: nothing was sent."""
        return self._move(line, "intent_failed") is not None

    def intent_cancelled(self, line: int) -> bool:
        """Cancelled while the intent was written: the create may have been sent."""
        return self._move(line, "intent_cancelled") is not None

    def submitted(self, line: int, task_id: str, credits: float | None) -> bool:
        """The service created ``task_id``; ``credits`` as reported (None: the price)."""
        ln = self._move(line, "submitted")
        if ln is None:
            return False
        ln.task_id = task_id
        ln.credits = credits if credits is not None else ln.price
        return True

    def processing(self, line: int) -> bool:
        """The service reports the task processing."""
        return self._move(line, "processing") is not None

    def retrying(self, line: int) -> bool:
        """The attempt ended retryably: the line waits to be sent again."""
        ln = self._move(line, "retrying")
        if ln is not None:
            ln.credits = 0.0
        return ln is not None

    def requeued(self, line: int) -> bool:
        """A re-attached task failed retryably: the line is to be submitted again."""
        ln = self._move(line, "requeued")
        if ln is not None:
            ln.credits = 0.0
        return ln is not None

    def budget_skipped(self, line: int, reason: str) -> bool:
        """The budget cannot pay for the line."""
        ln = self._move(line, "budget_skipped")
        if ln is not None:
            ln.error = {"code": "budget_exceeded", "message": reason}
        return ln is not None

    def stopped(self, line: int) -> bool:
        """The create was not sent (the job stopped, or the journal failed)."""
        ln = self._move(line, "stopped")
        if ln is not None:
            ln.credits = 0.0
        return ln is not None

    def completed(
        self,
        line: int,
        task_id: str | None,
        url: str | None,
        *,
        credits: float | None = None,
        download: bool = True,
    ) -> bool:
        """The task completed; returns True when its clip is to be downloaded now."""
        ln = self[line]
        if self._move(line, "completed", "completed") is None:
            return False
        if task_id is not None:
            ln.task_id = task_id
        if credits is not None:
            ln.credits = credits
        ln.url = url
        ln.error = None
        if url is None:
            ln.error = {
                "code": "download_failed",
                "message": "the service reported the task completed without a result URL",
            }
            return False
        if download:
            self._move_to(ln, "downloading")
        return download

    def _move_to(self, ln: LedgerLine, state: State) -> None:
        self._counts[ln.state] -= 1
        self._counts[state] += 1
        ln.state = state

    def failed(self, line: int, error: Error, task_id: str | None = None) -> bool:
        """The line failed (task failure, refused create, timeout)."""
        ln = self._move(line, "failed")
        if ln is not None:
            ln.error = error
            ln.credits = 0.0
            if task_id is not None:
                ln.task_id = task_id
        return ln is not None

    def unknown(self, line: int, error: Error, task_id: str | None = None) -> bool:
        """Whether the create reached the service is not known."""
        ln = self._move(line, "unknown")
        if ln is not None:
            ln.error = error
            if task_id is not None:
                ln.task_id = task_id
        return ln is not None

    def cancelled(self, line: int, error: Error) -> bool:
        """The line's task was cancelled at the service (refunded; not retried)."""
        ln = self._move(line, "cancelled")
        if ln is not None:
            ln.error = error
            ln.credits = 0.0
        return ln is not None

    def skipped(self, line: int, error: Error) -> bool:
        """The dispatcher skipped the line (nothing created)."""
        ln = self._move(line, "skipped")
        if ln is not None:
            ln.error = error
            ln.credits = 0.0
        return ln is not None

    def downloaded(self, line: int, video: str) -> bool:
        """The clip is on disk as ``video``."""
        ln = self._move(line, "downloaded")
        if ln is not None:
            ln.video = video
            ln.error = None
        return ln is not None

    def download_failed(self, line: int, error: Error) -> bool:
        """The clip could not be fetched: completed, without a file."""
        ln = self._move(line, "download_failed")
        if ln is not None:
            ln.video = None
            ln.error = error
        return ln is not None

    def task_known(self, line: int, task_id: str) -> None:
        """The service named the line's task (an outcome carries its id)."""
        self[line].task_id = task_id

    def set_url(self, line: int, url: str) -> None:
        """A fresh result URL (the old link expired)."""
        self[line].url = url
