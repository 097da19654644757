"""Planning a run: what the journal of earlier runs says each line needs (pure, no I/O).

Lines never journaled, and lines whose create was refused (``rejected``), are submitted;
created tasks are re-attached by id; completed tasks whose file is missing are downloaded;
the rest keep their final state. Lines whose create may or may not have reached the service
(``intent`` without an answer, or ``unknown``) are sent again with the idempotency key their
intent journaled (the gateway answers with the original task: never paid twice), first of all
submissions; without a key (an older journal, or keys turned off) they stay ``unknown`` unless
``retry_unknown``, which resubmits them as a new attempt (that may pay twice). Failed lines
keep their state unless ``retry_failed``: they are then submitted again as new attempts, with
new idempotency keys (the gateway refunded the failed task, so nothing is paid twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .input import BatchInputError, BatchLine, LineProblem
from .journal import LineState
from .ledger import Ledger

__all__ = ["MAYBE_CREATED", "Plan", "check_fingerprints", "journal_error", "plan"]

MAYBE_CREATED = (
    "an earlier run stopped after deciding to submit this line and before the service answered:"
    " the task may exist (and be billed). Sent without an idempotency key, so not resubmitted;"
    " pass --retry-unknown (retry_unknown=True) to submit it again"
)


@attrs.frozen
class Plan:
    """Line numbers to submit, to re-attach (by task id) and to download, in input order;
    ``resend``: the lines of ``submit`` sent again with the idempotency key journaled for
    them (they come first in ``submit``)."""

    submit: tuple[int, ...] = ()
    reattach: tuple[int, ...] = ()
    fetch: tuple[int, ...] = ()
    resend: Mapping[int, str] = attrs.field(factory=dict)


def journal_error(value: str | dict[str, Any] | None, default_code: str) -> dict[str, str]:
    """A journaled error (or reason) as the manifest's ``{"code", "message"}``."""
    if isinstance(value, dict):
        code = value.get("code")
        message = value.get("message")
        return {
            "code": str(code) if code is not None else default_code,
            "message": str(message) if message is not None else "",
        }
    return {"code": default_code, "message": value or ""}


def check_fingerprints(
    lines: Iterable[BatchLine], state: Mapping[int, LineState], out_dir: Path
) -> None:
    """Refuse to run when the journal holds other requests for these lines.

    Raises:
        BatchInputError: naming every line whose request changed (nothing is submitted).
    """
    problems = [
        LineProblem(
            entry.line,
            None,
            "differs from the request journaled for this line "
            "(another prompts file, or other --model/--duration/--aspect-ratio?)",
        )
        for entry in lines
        if (s := state.get(entry.line)) is not None
        and s.fingerprint is not None
        and s.fingerprint != entry.fingerprint
    ]
    if problems:
        raise BatchInputError(
            str(out_dir),
            problems,
            f"holds the journal of another batch for {len(problems)} line(s); "
            "use another output directory (nothing was submitted)",
        )


@attrs.define
class _Planner:
    ledger: Ledger
    retry_unknown: bool
    download: bool
    keys: bool = False
    retry_failed: bool = False
    resend: dict[int, str] = attrs.Factory(dict)
    submit: list[int] = attrs.Factory(list)
    reattach: list[int] = attrs.Factory(list)
    fetch: list[int] = attrs.Factory(list)

    def line(self, line: int, s: LineState) -> None:
        led = self.ledger
        led.restore(
            line, "queued", attempts=s.attempts, task_id=s.task_id, credits=s.credits or 0.0
        )
        if s.phase in ("intent", "unknown"):
            self.maybe_created(line, s)
        elif s.phase == "created":
            if s.task_id is None:  # pragma: no cover - a created record always has one
                led.restore(line, "unknown", error=_maybe_created())
            else:
                led.restore(line, "submitted")
                self.reattach.append(line)
        elif s.phase == "download_failed" or (s.phase == "finished" and s.status == "completed"):
            led.restore(line, "queued", url=s.url)
            self.completed_pending(line)
        elif s.phase == "finished" and s.status == "rejected":
            led.restore(line, "queued", task_id=None, credits=0.0)
            self.submit.append(line)
        elif s.phase == "finished" and s.status == "cancelled":
            error = journal_error(s.error, "request_cancelled")
            led.restore(line, "cancelled", credits=0.0, error=error)
        elif s.phase == "finished" and self.retry_failed:  # a new attempt, with a new key
            led.restore(line, "queued", task_id=None, credits=0.0)
            self.submit.append(line)
        elif s.phase == "finished":
            error = journal_error(s.error, s.status or "failed")
            led.restore(line, "failed", credits=0.0, error=error)

    def maybe_created(self, line: int, s: LineState) -> None:
        if self.keys and s.key is not None:
            self.ledger.restore(line, "queued", task_id=None, credits=0.0)
            self.resend[line] = s.key
        elif self.retry_unknown:
            self.ledger.restore(line, "queued", task_id=None, credits=0.0)
            self.submit.append(line)
        elif s.phase == "intent":
            self.ledger.restore(line, "unknown", error=_maybe_created())
        else:
            self.ledger.restore(line, "unknown", error=journal_error(s.error, "maybe_created"))

    def downloaded(self, line: int, s: LineState, present: bool) -> None:
        self.ledger.restore(line, "queued", url=s.url)
        if present and s.path is not None:
            self.ledger.restore(line, "completed", video=Path(s.path).name)
        else:
            self.completed_pending(line)

    def completed_pending(self, line: int) -> None:
        """A completed task whose file is not here (yet)."""
        led = self.ledger
        if not self.download:
            led.restore(line, "completed")
        elif led[line].url is None:
            error = {"code": "download_failed", "message": "no result URL was journaled"}
            led.restore(line, "completed", error=error)
        else:
            led.restore(line, "downloading")
            self.fetch.append(line)


def _maybe_created() -> dict[str, str]:
    return {"code": "maybe_created", "message": MAYBE_CREATED}


def plan(
    ledger: Ledger,
    state: Mapping[int, LineState],
    present: Mapping[int, bool],
    *,
    retry_unknown: bool,
    download: bool,
    keys: bool = False,
    retry_failed: bool = False,
) -> Plan:
    """Set each line of ``ledger`` from the journal's ``state`` and say what to do with it.

    ``present``: for each line journaled ``downloaded``, whether its file is still there
    with the journaled size. ``keys``: the client sends idempotency keys (a line whose
    outcome is unknown is then sent again with its journaled key). ``retry_failed``: failed
    lines are submitted again, as new attempts.
    """
    planner = _Planner(ledger, retry_unknown, download, keys, retry_failed)
    done: list[tuple[int, LineState]] = []
    for ln in ledger:
        s = state.get(ln.line)
        if s is None:
            planner.submit.append(ln.line)
        elif s.phase == "downloaded":
            ledger.restore(
                ln.line, "queued", attempts=s.attempts, task_id=s.task_id, credits=s.credits or 0.0
            )
            done.append((ln.line, s))
        else:
            planner.line(ln.line, s)
    for line, s in done:
        planner.downloaded(line, s, present.get(line, False))
    submit = (*planner.resend, *planner.submit)
    return Plan(submit, tuple(planner.reattach), tuple(planner.fetch), planner.resend)
