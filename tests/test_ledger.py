"""The ledger: one pure state machine per batch line (table tests: state by event)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from evolink_async.batch.ledger import (
    FINAL,
    STATES,
    TRANSITIONS,
    BatchProgress,
    Ledger,
    LedgerLine,
    State,
    TransitionError,
)

PRICE = 23.04
ERR = {"code": "boom", "message": "it broke"}

Event = Callable[[Ledger], bool]

#: event name -> how to send it to line 1
EVENTS: dict[str, Event] = {
    "post": lambda led: led.post(1),
    "intent_failed": lambda led: led.intent_failed(1),
    "intent_cancelled": lambda led: led.intent_cancelled(1),
    "submitted": lambda led: led.submitted(1, "task-1", 46.08),
    "processing": lambda led: led.processing(1),
    "retrying": lambda led: led.retrying(1),
    "requeued": lambda led: led.requeued(1),
    "budget_skipped": lambda led: led.budget_skipped(1, "over budget"),
    "stopped": lambda led: led.stopped(1),
    "completed": lambda led: led.completed(1, "task-1", "https://cdn/1.mp4", credits=46.08),
    "failed": lambda led: led.failed(1, ERR),
    "unknown": lambda led: led.unknown(1, ERR),
    "skipped": lambda led: led.skipped(1, ERR),
    "cancelled": lambda led: led.cancelled(1, ERR),
    "downloaded": lambda led: led.downloaded(1, "00001-task-1.mp4"),
    "download_failed": lambda led: led.download_failed(1, ERR),
}

OPEN = [s for s in STATES if s not in FINAL]
NOT_DOWNLOADING = [s for s in OPEN if s != "downloading"]

#: (event, the states it applies in, the state it leads to); every other state ignores it
TABLE: list[tuple[str, list[State], State]] = [
    ("post", ["queued"], "posting"),
    ("intent_failed", ["posting"], "queued"),
    ("intent_cancelled", ["posting"], "maybe_sent"),
    ("submitted", list(STATES), "submitted"),
    ("processing", ["submitted"], "processing"),
    ("retrying", OPEN, "queued"),
    ("requeued", ["submitted", "processing"], "queued"),
    ("budget_skipped", OPEN, "skipped"),
    ("stopped", NOT_DOWNLOADING, "queued"),
    ("completed", NOT_DOWNLOADING, "downloading"),
    ("failed", NOT_DOWNLOADING, "failed"),
    ("unknown", NOT_DOWNLOADING, "unknown"),
    ("skipped", NOT_DOWNLOADING, "skipped"),
    ("cancelled", NOT_DOWNLOADING, "cancelled"),
    ("downloaded", ["downloading"], "completed"),
    ("download_failed", ["downloading"], "completed"),
]

CASES = [
    pytest.param(state, event, target if state in applies else None, id=f"{state}-{event}")
    for event, applies, target in TABLE
    for state in STATES
]


def ledger_in(state: State, **facts: Any) -> Ledger:
    led = Ledger([LedgerLine(1, "a fox", PRICE), LedgerLine(2, "a hen", PRICE)])
    led.restore(1, state, **facts)
    return led


def test_the_table_covers_every_event() -> None:
    assert set(TRANSITIONS) == set(EVENTS) == {event for event, _, _ in TABLE}


@pytest.mark.parametrize(("state", "event", "expected"), CASES)
def test_an_event_moves_a_line_as_the_table_says(
    state: State, event: str, expected: State | None
) -> None:
    led = ledger_in(state, task_id="task-1", credits=11.52)
    before = led[1].state
    applied = EVENTS[event](led)
    assert (expected is not None, expected or before) == (applied, led[1].state)
    # the counts follow the lines
    assert sum(led.counts().values()) == 2


# state -> (credits held against the budget, credits shown in progress), for a line whose
# journaled credits are ``credits`` (0: not known) and whose price is PRICE
HELD: list[tuple[State, float, float, float]] = [
    ("queued", 0.0, 0.0, 0.0),
    ("posting", 0.0, PRICE, 0.0),
    ("posting", 46.08, 46.08, 0.0),
    ("maybe_sent", 0.0, PRICE, 0.0),
    ("unknown", 0.0, PRICE, 0.0),
    ("unknown", 46.08, 46.08, 0.0),
    ("submitted", 46.08, 46.08, 46.08),
    ("processing", 46.08, 46.08, 46.08),
    ("downloading", 46.08, 46.08, 46.08),
    ("completed", 46.08, 46.08, 46.08),
    ("failed", 46.08, 0.0, 0.0),
    ("skipped", 46.08, 0.0, 0.0),
]


@pytest.mark.parametrize(("state", "credits", "held", "shown"), HELD)
def test_the_budget_counts_lines_that_may_have_been_paid_for(
    state: State, credits: float, held: float, shown: float
) -> None:
    led = ledger_in(state, credits=credits)
    assert (held, shown) == (led.held(), led.credits())
    assert max(0.0, 100.0 - held) == led.budget_left(100.0)
    assert led.budget_left(None) is None


def test_a_resumed_intent_only_line_holds_its_price_until_answered() -> None:
    led = ledger_in("unknown")
    assert PRICE == led.held()
    led = ledger_in("queued")
    led.post(1)
    led.intent_written(1)
    assert (PRICE, 1) == (led.held(), led[1].attempts)
    led.submitted(1, "task-1", None)  # no figure from the service: the price
    assert (PRICE, PRICE) == (led.held(), led.credits())
    led.retrying(1)
    assert (0.0, "queued") == (led.held(), led[1].state)


@pytest.mark.parametrize(
    ("url", "download", "state", "error_code", "fetch"),
    [
        ("https://cdn/1.mp4", True, "downloading", None, True),
        ("https://cdn/1.mp4", False, "completed", None, False),
        (None, True, "completed", "download_failed", False),
    ],
)
def test_a_completed_task_is_downloaded_only_with_a_url_and_downloads_on(
    url: str | None, download: bool, state: State, error_code: str | None, fetch: bool
) -> None:
    led = ledger_in("processing", task_id="task-1")
    assert fetch == led.completed(1, "task-1", url, credits=5.0, download=download)
    ln = led[1]
    assert (state, error_code, url, 5.0) == (
        ln.state,
        ln.error["code"] if ln.error else None,
        ln.url,
        ln.credits,
    )


def test_progress_shows_posting_and_maybe_sent_lines_as_queued() -> None:
    led = Ledger(LedgerLine(n, f"p{n}", PRICE) for n in range(1, 6))
    led.post(1)
    led.post(2)
    led.intent_cancelled(2)
    led.submitted(3, "task-3", 10.0)
    led.failed(4, ERR)
    assert BatchProgress(
        total=5, queued=3, submitted=1, failed=1, credits=10.0, requests=7
    ) == led.progress(requests=7)
    assert (1, 1) == (led.count("posting"), led.count("maybe_sent"))


def test_lines_are_unique_and_known() -> None:
    with pytest.raises(ValueError, match="unique"):
        Ledger([LedgerLine(1, "a"), LedgerLine(1, "b")])
    with pytest.raises(TransitionError, match="no line 9"):
        Ledger([LedgerLine(1, "a")]).post(9)
