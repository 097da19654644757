"""The manifest: one entry per input line, rendered from the ledger, written atomically.

``manifest.jsonl`` has one object per input line, in input order, with exactly the keys
``line``, ``prompt``, ``status`` (``completed``, ``failed``, ``unknown``, ``skipped`` or
``cancelled``),
``task_id``, ``video`` (path relative to the directory, or null), ``url``, ``error``
(``{"code", "message"}`` or null; an error the gateway answered may add its ``request_id``
and ``suggestion``), ``attempts`` and ``credits``. Error texts pass the redactor. The same
entries are handed to the caller in :attr:`BatchSummary.entries`, so nobody needs to read the
file back.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from .._files import PART_FILE, atomic_write
from .._redact import redact_value
from .ledger import LedgerLine

__all__ = [
    "GALLERY_FILENAME",
    "MANIFEST_FILENAME",
    "BatchSummary",
    "LineStatus",
    "ManifestEntry",
    "remove_stale_temps",
    "render",
    "summarize",
    "write_manifest",
]

MANIFEST_FILENAME = "manifest.jsonl"
#: the gallery beside the manifest (written by :mod:`.gallery`)
GALLERY_FILENAME = "index.html"

LineStatus = Literal["completed", "failed", "unknown", "skipped", "cancelled", "interrupted"]

#: a clip's file name (see ``video_filename``)
_CLIP = re.compile(r"\d{5,}-[A-Za-z0-9._-]+\.mp4")


@attrs.frozen
class ManifestEntry:
    """One line of ``manifest.jsonl``: how one input line ended."""

    line: int
    prompt: str
    status: LineStatus
    task_id: str | None
    video: str | None
    url: str | None
    error: dict[str, str] | None
    attempts: int
    credits: float

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON object, keys in the manifest's order."""
        return {
            "line": self.line,
            "prompt": self.prompt,
            "status": self.status,
            "task_id": self.task_id,
            "video": self.video,
            "url": self.url,
            "error": redact_value(self.error),
            "attempts": self.attempts,
            "credits": self.credits,
        }


def render(ln: LedgerLine, why: str, reason: str) -> ManifestEntry:
    """The manifest entry of a ledger line. A line not final when the run ended (``why``:
    ``interrupted`` or ``aborted``, because of ``reason``) is ``interrupted`` if it was never
    sent or its task was still running (the rerun picks it up), ``unknown`` only if its
    create may have been taken without an answer; a line the credits stopped (``why`` a quota
    code) is ``skipped`` with that reason."""
    status: LineStatus
    error, credits, video = ln.error, ln.credits, ln.video
    stopped: LineStatus = "interrupted" if why in ("interrupted", "aborted") else "skipped"
    if ln.state in ("completed", "failed", "unknown", "skipped", "cancelled"):
        status = ln.state
    elif ln.state in ("submitted", "processing"):
        status = "interrupted" if stopped == "interrupted" else "unknown"
        error = {
            "code": why,
            "message": f"{reason} while task {ln.task_id} was running; "
            "run the same command again to re-attach it",
        }
    elif ln.state == "downloading":
        status, video = "completed", None
        error = {
            "code": why,
            "message": f"{reason} before the clip was downloaded; "
            "run the same command again to download it",
        }
    elif ln.state in ("posting", "maybe_sent"):
        status = "unknown"
        error = {
            "code": "maybe_created",
            "message": f"{reason} while this line's create request was being sent: the "
            "task may exist (and be billed). Not resubmitted; pass --retry-unknown "
            "(retry_unknown=True) to submit it again",
        }
    else:  # queued
        status, credits = stopped, 0.0
        error = {"code": why, "message": f"not submitted: {reason}"}
    if status in ("failed", "skipped", "cancelled"):
        credits = 0.0
    return ManifestEntry(
        line=ln.line,
        prompt=ln.prompt,
        status=status,
        task_id=ln.task_id,
        video=video,
        url=ln.url,
        error=error,
        attempts=ln.attempts,
        credits=round(credits, 4),
    )


def write_manifest(out_dir: Path, entries: Iterable[ManifestEntry]) -> Path:
    """Write ``manifest.jsonl`` atomically (blocking)."""
    data = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in entries)
    return atomic_write(out_dir / MANIFEST_FILENAME, data.encode("utf-8"))


def remove_stale_temps(out_dir: Path) -> None:
    """Remove the temporary files of the manifest and the gallery, and partial clip
    downloads, a killed run left (blocking; the directory's lock is held, so no download of
    ours is running). Also the ``.manifest.jsonl.<pid>.tmp`` files of older versions."""
    stale = [*out_dir.glob(f".{MANIFEST_FILENAME}.*.tmp")]
    for path in out_dir.glob(".*.part"):
        match = PART_FILE.fullmatch(path.name)
        if match is not None and (
            match["name"] in (MANIFEST_FILENAME, GALLERY_FILENAME) or _CLIP.fullmatch(match["name"])
        ):
            stale.append(path)
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()


@attrs.frozen
class BatchSummary:
    """What a job did. Counts are by manifest status; ``downloaded`` counts lines with a file.

    ``interrupted``: :meth:`BatchJob.stop` was called. ``aborted``: why the job stopped
    admitting by itself (the key was refused, the account is out of credits, the journal
    cannot be written), else ``None``. ``credits``: reserved by the batch's completed (and
    possibly running) tasks, earlier runs included. ``requests``: API requests of this run.
    ``entries``: the manifest's entries, in input order (what ``manifest.jsonl`` holds).
    ``duplicates``: the line numbers of each request the input gives more than once (each
    line is still a clip of its own).
    """

    total: int
    completed: int
    failed: int
    unknown: int
    skipped: int
    downloaded: int
    download_failed: int
    credits: float
    requests: int
    elapsed: float
    manifest: Path
    download: bool = True
    interrupted: bool = False
    aborted: str | None = None
    entries: tuple[ManifestEntry, ...] = ()
    #: lines whose task was cancelled at the service (refunded, not retried)
    cancelled: int = 0
    #: lines the run stopped before they ended: never sent, or their task still running (the
    #: rerun picks them up)
    stopped: int = 0
    duplicates: tuple[tuple[int, ...], ...] = ()

    @property
    def duplicate_count(self) -> int:
        """Lines that repeat an earlier line's request."""
        return sum(len(group) - 1 for group in self.duplicates)

    @property
    def counts(self) -> dict[str, int]:
        """Lines by manifest status (``cancelled`` only when there are any)."""
        return {
            "completed": self.completed,
            "failed": self.failed,
            "unknown": self.unknown,
            "skipped": self.skipped,
        } | {
            name: n
            for name, n in (("cancelled", self.cancelled), ("interrupted", self.stopped))
            if n
        }

    @property
    def ok(self) -> bool:
        """Every line completed (and downloaded, unless downloads were off)."""
        if self.completed != self.total:
            return False
        return not self.download or self.downloaded == self.total

    @property
    def failures(self) -> tuple[ManifestEntry, ...]:
        """The entries of the lines that did not complete, or completed without a file."""
        return tuple(
            e
            for e in self.entries
            if e.status != "completed" or (self.download and e.video is None)
        )


def summarize(
    entries: Sequence[ManifestEntry],
    manifest: Path,
    *,
    requests: int,
    elapsed: float,
    download: bool,
    interrupted: bool,
    aborted: str | None,
    duplicates: tuple[tuple[int, ...], ...] = (),
) -> BatchSummary:
    """The :class:`BatchSummary` of a run's manifest entries."""
    by_status = Counter(e.status for e in entries)
    return BatchSummary(
        total=len(entries),
        completed=by_status["completed"],
        failed=by_status["failed"],
        unknown=by_status["unknown"],
        skipped=by_status["skipped"],
        downloaded=sum(1 for e in entries if e.video is not None),
        download_failed=sum(
            1 for e in entries if e.error is not None and e.error.get("code") == "download_failed"
        ),
        credits=round(
            sum(e.credits for e in entries if e.status in ("completed", "unknown", "interrupted")),
            4,
        ),
        requests=requests,
        elapsed=elapsed,
        manifest=manifest,
        download=download,
        interrupted=interrupted,
        aborted=aborted,
        entries=tuple(entries),
        cancelled=by_status["cancelled"],
        stopped=by_status["interrupted"],
        duplicates=duplicates,
    )
