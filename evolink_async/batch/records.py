"""The journal's one schema: its records, and how they fold into one state per line.

Pure (no I/O besides :func:`replay`'s read): :mod:`.journal` writes the records, this module
says what they mean. See :mod:`evolink_async.batch.journal` for each record.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import attrs

from .._redact import redact
from ..errors import JournalCorruptError

__all__ = [
    "JOURNAL_FILENAME",
    "LOCK_FILENAME",
    "LineState",
    "Parsed",
    "Phase",
    "encode",
    "fingerprint",
    "finished_record",
    "fold",
    "fold_all",
    "job_seed",
    "parse",
    "replay",
]

JOURNAL_FILENAME = "journal.jsonl"
LOCK_FILENAME = ".lock"

Phase = Literal["intent", "created", "finished", "downloaded", "unknown", "download_failed"]
_PHASES: frozenset[str] = frozenset(get_args(Phase))

# Keys that would carry the API key; compared after lower-casing and mapping "-" to "_".
_SECRET_KEYS = frozenset(
    {"api_key", "apikey", "authorization", "proxy_authorization", "x_api_key", "bearer"}
)


@attrs.frozen
class LineState:
    """What the journal says about one input line, after folding all its records.

    Attributes:
        line: the input line number.
        phase: the latest event: ``intent``, ``created``, ``finished``, ``downloaded``,
            ``unknown`` or ``download_failed`` (see the module docstring for what each means
            on resume).
        task_id: the task the service created for it, once known.
        attempts: how many submissions were intended (``intent`` records).
        status: the task's final status, once ``finished`` (e.g. ``completed``, ``failed``).
        error: the task's error (``{"code": ..., "message": ...}``) when finished with one,
            the reason the outcome is ``unknown``, or why the download failed.
        url: the result URL of a completed task.
        path, size, sha256: the downloaded file.
        credits: the credits reserved for the task, as the service reported them.
        fingerprint: the :func:`fingerprint` of the request last intended.
        key: the idempotency key of the submission last intended (None: sent without one,
            or by a version that kept none).
    """

    line: int
    phase: Phase
    task_id: str | None = None
    attempts: int = 0
    status: str | None = None
    error: str | dict[str, Any] | None = None
    url: str | None = None
    path: str | None = None
    size: int | None = None
    sha256: str | None = None
    credits: float | None = None
    fingerprint: str | None = None
    key: str | None = None


def fingerprint(request: Mapping[str, Any]) -> str:
    """Return the hex SHA-256 of the request's canonical JSON.

    Canonical: keys sorted, no whitespace, UTF-8, and keys whose value is ``None`` left out
    (at any depth), since an absent optional field and a ``null`` one mean the same request.
    Lets a resumed run notice that line N now holds another request.
    """
    text = json.dumps(
        _drop_none(request),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _drop_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(item) for item in value]
    return value


def _check_secrets(value: Any, where: str = "record") -> Any:
    """Refuse keys that would carry a credential; redact key-like strings. Returns a copy."""
    if isinstance(value, Mapping):
        checked: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"journal {where} keys must be strings, got {key!r}")
            if key.strip().lower().replace("-", "_") in _SECRET_KEYS:
                raise ValueError(
                    f"refusing to write {where}.{key} to the journal: it would hold a credential"
                )
            checked[key] = _check_secrets(item, f"{where}.{key}")
        return checked
    if isinstance(value, (list, tuple)):
        return [_check_secrets(item, where) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- reading


@attrs.frozen
class Parsed:
    records: list[dict[str, Any]]
    good_end: int  # the offset just past the last valid record (and its newline, if any)
    needs_newline: bool  # the last valid record has no trailing newline


def parse(data: bytes, path: Path) -> Parsed:
    """Parse journal bytes; drop an unparsable last line, reject one anywhere else."""
    records: list[dict[str, Any]] = []
    good_end = 0
    needs_newline = False
    lines = data.split(b"\n")
    # The index of the last line with content: a torn write can only be there.
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    offset = 0
    for index, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                raise ValueError("not a record (a JSON object with an 'event')")
        except ValueError as exc:  # also UnicodeDecodeError and JSONDecodeError
            if index == last:
                break  # torn by a crash mid-write: ignore it
            raise JournalCorruptError(path, index + 1, str(exc)) from exc
        records.append(record)
        terminated = index < len(lines) - 1
        good_end = min(offset, len(data)) if terminated else start + len(raw)
        needs_newline = not terminated
    return Parsed(records, good_end, needs_newline)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _error(value: Any) -> str | dict[str, Any] | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return dict(value)
    return None


def fold(state: dict[int, LineState], record: Mapping[str, Any]) -> LineState | None:
    """Apply one record to ``state``; return the line's new state (None if not a line event)."""
    event = record.get("event")
    line = _int(record.get("line"))
    if line is None or event not in _PHASES:
        return None  # run-level or future records: kept in the file, ignored here
    old = state.get(line) or LineState(line=line, phase="intent")
    task_id = _str(record.get("task_id"))
    new: LineState
    if event == "intent":
        new = LineState(
            line=line,
            phase="intent",
            attempts=old.attempts + 1,
            fingerprint=_str(record.get("fingerprint")),
            key=_str(record.get("key")),
        )
    elif event == "created":
        new = attrs.evolve(
            old,
            phase="created",
            task_id=task_id,
            credits=_float(record.get("credits")),
            status=None,
            error=None,
            url=None,
        )
    elif event == "finished":
        new = attrs.evolve(
            old,
            phase="finished",
            task_id=task_id or old.task_id,
            status=_str(record.get("status")),
            error=_error(record.get("error")),
            url=_str(record.get("url")),
        )
    elif event == "downloaded":
        new = attrs.evolve(
            old,
            phase="downloaded",
            task_id=task_id or old.task_id,
            path=_str(record.get("path")),
            size=_int(record.get("size")),
            sha256=_str(record.get("sha256")),
        )
    elif event == "download_failed":
        new = attrs.evolve(
            old,
            phase="download_failed",
            task_id=task_id or old.task_id,
            error=_str(record.get("reason")),
        )
    else:  # "unknown"
        new = attrs.evolve(old, phase="unknown", error=_str(record.get("reason")))
    state[line] = new
    return new


def finished_record(
    line: int,
    task_id: str,
    status: str,
    error: str | Mapping[str, Any] | None = None,
    url: str | None = None,
    *,
    credits: float | None = None,
    retry: bool = False,
) -> dict[str, Any]:
    """A ``finished`` record; ``credits`` and ``retry`` only when given (older readers
    ignore them)."""
    record: dict[str, Any] = {
        "event": "finished",
        "line": line,
        "task_id": task_id,
        "status": status,
        "error": error,
        "url": url,
    }
    if credits is not None:
        record["credits"] = credits
    if retry:
        record["retry"] = True
    return record


def job_seed(records: list[dict[str, Any]]) -> str | None:
    """The seed of the job's idempotency keys (the first ``job`` record's), if journaled."""
    for record in records:
        if record.get("event") == "job" and isinstance(record.get("key_seed"), str):
            seed: str = record["key_seed"]
            return seed
    return None


def fold_all(records: list[dict[str, Any]]) -> dict[int, LineState]:
    state: dict[int, LineState] = {}
    for record in records:
        fold(state, record)
    return state


def replay(directory: str | os.PathLike[str]) -> dict[int, LineState]:
    """Read ``<directory>/journal.jsonl`` and return the state of each line.

    Needs no lock and changes nothing. A missing journal is an empty one. An unparsable last
    line (a write torn by a crash) is ignored.

    Raises:
        JournalCorruptError: a line before the last one is not a valid record.
    """
    path = Path(directory) / JOURNAL_FILENAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    return fold_all(parse(data, path).records)


def encode(record: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """A record as one journal line (``ts`` added, keys checked, secrets redacted), and
    the checked record to fold."""
    event = record.get("event")
    if not isinstance(event, str) or not event:
        raise ValueError(f"a journal record needs an 'event' string, got {event!r}")
    line = record.get("line")
    if "line" in record and (not isinstance(line, int) or isinstance(line, bool)):
        raise ValueError(f"a journal record's 'line' must be an int, got {line!r}")
    checked: dict[str, Any] = _check_secrets(record)
    ordered = {"ts": checked.pop("ts", None) or _now(), "event": event}
    if "line" in checked:
        ordered["line"] = checked.pop("line")
    ordered.update(checked)
    text = json.dumps(ordered, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode("utf-8"), ordered
