"""A simulator's tasks kept in a file, so that a simulator started again on the same file
answers for the tasks of the earlier one: an interrupted ``--simulate`` batch resumes like a
real one, with no ``task_not_found``.

The file is JSON lines: a header with the timeline's origin (wall-clock and simulated time),
then one line per task as it was planned at its creation. A simulator opened on it continues
that timeline (as if it had run all along) and knows every task again, and every idempotency
key of its ledger (a line ``{"key", "fingerprint", "task_id"}`` after the task's). What
control methods change later (``fail_task``, ``cancel_task``) is not kept: they are for tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

import attrs

from ._task import SimulatedTask

__all__ = ["TaskFile"]

#: what is planned at creation (the rest is measured, or changes as the task is read)
_KEPT = (
    "id", "model", "prompt", "duration", "aspect_ratio", "callback_url", "price", "created_at",
    "started_at", "finished_at", "generation_time", "estimated_time", "error_code",
    "error_message", "cancel_style", "download_fault", "callback_dropped", "final_price",
)  # fmt: skip


class TaskFile:
    """The tasks of ``path`` (read when opened) and the timeline they live on."""

    def __init__(self, path: str | Path, time_scale: float) -> None:
        self.path = Path(path)
        self.time_scale = time_scale
        self.records: list[dict[str, Any]] = []
        #: idempotency key -> (fingerprint of the create's body, the task it created)
        self.keys: dict[str, tuple[str, str]] = {}
        self.origin: tuple[float, float] | None = None  # (wall clock, simulated time)
        self._out: IO[str] | None = None
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:  # a line torn by a crash: the task was never answered
                continue
            if isinstance(record, dict) and "origin" in record:
                wall, sim = record["origin"]
                self.origin = (float(wall), float(sim))
            elif isinstance(record, dict) and "key" in record:
                self.keys[str(record["key"])] = (str(record["fingerprint"]), str(record["task_id"]))
            elif isinstance(record, dict) and "id" in record:
                self.records.append({k: record[k] for k in _KEPT if k in record})

    @property
    def start(self) -> float | None:
        """Simulated time now on the file's timeline (None: a new file starts its own)."""
        if self.origin is None:
            return None
        wall, sim = self.origin
        return sim + (time.time() - wall) / self.time_scale

    def tasks(self) -> list[SimulatedTask]:
        """The tasks of the file, planned as they were (their real-time marks left unset)."""
        return [SimulatedTask(**record) for record in self.records]

    def append(self, task: SimulatedTask, sim_now: float) -> None:
        """Keep a task just created (flushed before its create is answered)."""
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("a", encoding="utf-8")
            if self.origin is None:
                self.origin = (time.time(), sim_now)
                self._out.write(json.dumps({"origin": list(self.origin)}) + "\n")
        fields = attrs.asdict(task, recurse=False)
        self._out.write(json.dumps({k: fields[k] for k in _KEPT}) + "\n")
        self._out.flush()

    def append_key(self, key: str, fingerprint: str, task_id: str) -> None:
        """Keep the ledger entry of a task just appended."""
        if self._out is not None:
            record = {"key": key, "fingerprint": fingerprint, "task_id": task_id}
            self._out.write(json.dumps(record) + "\n")
            self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
