"""The SQL statements one journal record becomes in the ledger, and the settling of credits.

:func:`record_ops` gives, for one checked record and the line state it folded into, the
statements a :class:`~evolink_async.batch.store.LedgerStore` runs in the record's transaction:
the event, the line's folded state, the attempt's idempotency key, and the line's credits.

Credits of a line (what ``job status`` shows and the job's budget counts):

* ``reserved``: held while the line's outcome is open. A claim reserves the line's price
  (:mod:`.claims`); the reservation stays while the task may exist and is not known to have
  failed (``intent``, ``unknown``, ``created``: "unknown" lines keep theirs, the create may
  have been taken).
* ``charged``: the final charge of a completed task, the figure the service reported
  (``usage.credits_used``, carried by the ``finished`` record's ``credits``), else what it
  reserved at the create, else the price. The reservation is released when it is charged.
* A ``finished`` line that did not complete (failed, cancelled, a refused create) was
  refunded by the gateway: its reservation is released in the same transaction, unless the
  record says ``retry`` (the line is created again at once, under the same reservation).
* An ``intent`` on a line whose reservation was released reserves its price again.

``jobs.reserved``/``jobs.charged`` move by the same deltas in the same transaction, so they
stay the sums of the lines' columns, and a record applied twice changes nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._schema import upsert_line_sql
from .records import LineState

__all__ = ["line_params", "meta_op", "record_ops", "settle_ops", "state_from_row"]

_UPSERT = upsert_line_sql()
_EVENT = "INSERT INTO events (job, line, ts, event, record) VALUES (?, ?, ?, ?, ?)"
_ATTEMPT = (
    "INSERT INTO attempts (job, line, attempt, idempotency_key, fingerprint, ts) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job, line, attempt) DO NOTHING"
)


def _of_line(column: str) -> str:
    return f"COALESCE((SELECT {column} FROM lines WHERE job = ? AND line = ?), 0)"


# the job's sums move by the line's change; run BEFORE the line's own update
_JOB_CHARGE = (
    f"UPDATE jobs SET reserved = reserved - {_of_line('reserved')}, "
    f"charged = charged - {_of_line('charged')} + "
    f"COALESCE(?, {_of_line('COALESCE(credits, reserved, price)')}) WHERE name = ?"
)
_LINE_CHARGE = (
    "UPDATE lines SET charged = COALESCE(?, credits, reserved, price, 0), reserved = 0 "
    "WHERE job = ? AND line = ?"
)
_JOB_RELEASE = (
    f"UPDATE jobs SET reserved = reserved - {_of_line('reserved')}, "
    f"charged = charged - {_of_line('charged')} WHERE name = ?"
)
_LINE_RELEASE = "UPDATE lines SET reserved = 0, charged = 0 WHERE job = ? AND line = ?"
_RELEASED = "job = ? AND line = ? AND reserved = 0 AND COALESCE(charged, 0) = 0"
_JOB_RESERVE = (
    "UPDATE jobs SET reserved = reserved + "
    f"COALESCE((SELECT price FROM lines WHERE {_RELEASED}), 0) WHERE name = ?"
)
_PLACE = "UPDATE lines SET host = ?, out_dir = ? WHERE job = ? AND line = ?"
_LINE_RESERVE = f"UPDATE lines SET reserved = COALESCE(price, 0) WHERE {_RELEASED}"


def _credits(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def settle_ops(
    job: str, record: Mapping[str, Any], state: LineState
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that settle a line's credits for ``record``, which folded into
    ``state`` (see the module docstring)."""
    line = state.line
    event = record.get("event")
    if event == "intent":  # only a later attempt may follow a release
        if state.attempts < 2:
            return []
        return [(_JOB_RESERVE, (job, line, job)), (_LINE_RESERVE, (job, line))]
    if event != "finished" or record.get("retry") is True:
        return []
    if record.get("status") == "completed":
        charge = _credits(record.get("credits"))
        return [
            (_JOB_CHARGE, (job, line, job, line, charge, job, line, job)),
            (_LINE_CHARGE, (charge, job, line)),
        ]
    return [(_JOB_RELEASE, (job, line, job, line, job)), (_LINE_RELEASE, (job, line))]


def line_params(job: str, state: LineState, ts: str) -> tuple[Any, ...]:
    """The parameters of the line upsert for ``state``."""
    error = None if state.error is None else json.dumps(state.error, ensure_ascii=False)
    return (
        job,
        state.line,
        state.phase,
        state.task_id,
        state.attempts,
        state.status,
        error,
        state.url,
        state.path,
        state.size,
        state.sha256,
        state.credits,
        state.fingerprint,
        state.key,
        ts,
    )


def state_from_row(row: tuple[Any, ...]) -> LineState:
    """A line's state from the ledger's ``SELECT line, phase, ... idempotency_key`` row."""
    error = None if row[5] is None else json.loads(row[5])
    return LineState(
        line=int(row[0]),
        phase=row[1],
        task_id=row[2],
        attempts=int(row[3]),
        status=row[4],
        error=error,
        url=row[6],
        path=row[7],
        size=None if row[8] is None else int(row[8]),
        sha256=row[9],
        credits=None if row[10] is None else float(row[10]),
        fingerprint=row[11],
        key=row[12],
    )


def meta_op(key: str, value: int) -> tuple[str, tuple[Any, ...]]:
    """Set ``ledger_meta[key]`` to ``value``."""
    return (
        "INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )


def record_ops(
    job: str,
    record: Mapping[str, Any],
    state: LineState | None,
    place: tuple[str, str] | None = None,
) -> list[Any]:
    """The statements that store one checked ``record`` and the line state it folded into;
    ``place`` (host, directory): where the record was written (a clip is there)."""
    line = record.get("line") if isinstance(record.get("line"), int) else None
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    ops: list[Any] = [(_EVENT, (job, line, record["ts"], record["event"], text))]
    if state is None:
        return ops
    ops.append((_UPSERT, line_params(job, state, record["ts"])))
    if record["event"] == "intent":
        key = record.get("key")
        ops.append(
            (
                _ATTEMPT,
                (
                    job,
                    state.line,
                    state.attempts,
                    key if isinstance(key, str) else None,
                    state.fingerprint,
                    record["ts"],
                ),
            )
        )
    ops.extend(settle_ops(job, record, state))
    if record["event"] == "downloaded" and place is not None:
        ops.append((_PLACE, (*place, job, state.line)))
    return ops
