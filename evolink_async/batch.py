"""The batch job: a prompts file in, clips and a manifest out, resumable after any crash.

This is the library side of ``evolink-async batch`` (no argument parsing, no printing)::

    lines = load_prompts("prompts.txt", duration=8)          # validates every line first
    async with EvolinkClient(rate=2, max_in_flight=10) as client:
        summary = await BatchJob(client, lines, "clips").run()

**Input.** A ``.txt`` file has one prompt per line; a ``.jsonl`` file one request object per
line, with the API's field names. Blank lines and lines starting with ``#`` are skipped; ``-``
reads standard input. Every line is validated before anything is sent: one or more bad lines
raise :class:`BatchInputError`, naming each line, field and rule. ``model``, ``duration`` and
``aspect_ratio`` defaults apply to the lines that do not set them. A line is identified by its
line number in the file (comments and blank lines count).

**Output directory.** ``<line:05d>-<task id>.mp4`` for each clip, ``manifest.jsonl`` and the
journal (``journal.jsonl``, see :mod:`evolink_async.journal`). The directory is locked while a
job runs: a second job on it raises :class:`~evolink_async.errors.JournalLockedError`.

**Journal.** Before each create request, ``intent`` (with the request's fingerprint) is on
disk; then ``created`` (task id, credits), ``finished`` (status, error or result URL) and
``downloaded`` (file, size, sha256). A create the service refused for certain (HTTP 4xx:
nothing was created) is journaled ``finished`` with status ``rejected``. Running the job again
on the same directory:

* lines completed and downloaded, whose file is still there with the journaled size, are not
  touched; completed ones not (or no longer) downloaded are downloaded;
* tasks created but not finished are re-attached by id and polled, never resubmitted (also
  after a per-task timeout: the task may still finish);
* lines whose create may or may not have reached the service (``intent`` without ``created``,
  or ``unknown``) are reported ``unknown`` and not resubmitted, unless ``retry_unknown=True``;
* failed lines stay failed; rejected lines are submitted again;
* a line whose request changed since it was journaled (another file or other defaults) makes
  the job refuse to start (:class:`BatchInputError`): nothing is submitted.

**Manifest.** ``manifest.jsonl`` has one object per input line, in input order, with exactly
the keys ``line``, ``prompt``, ``status`` (``completed``, ``failed``, ``unknown`` or
``skipped``), ``task_id``, ``video`` (path relative to the directory, or null), ``url``,
``error`` (``{"code", "message"}`` or null), ``attempts`` (times the line was submitted,
over all runs) and ``credits`` (credits reserved by its completed or possibly running task). It
is written atomically (temporary file + rename) when the job ends, also when it is stopped or
fails. A completed clip that could not be downloaded keeps ``status: "completed"`` with
``video: null``, its ``url``, and ``error: {"code": "download_failed", ...}``; the next run
downloads it again. Lines a stopped job did not finish get ``error.code`` ``interrupted``:
``skipped`` if never sent, ``unknown`` if their task was still running (the next run re-attaches
it), ``completed`` with ``video: null`` if not downloaded yet.

**Stopping.** :meth:`BatchJob.stop` stops admitting: no create is sent after it, creates
already on the wire get their answer (and their ``created`` record), tasks still running are
left to the next run, and the journal and manifest are written before :meth:`BatchJob.run`
returns.

Limits: the client's ``rate``, ``max_in_flight`` (re-attached tasks hold a place too) and
``budget`` apply; the job's ``budget`` counts the credits of every line of the batch, the ones
reserved by earlier runs included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from .dispatcher import (
    Batch,
    BudgetSkipped,
    Completed,
    Event,
    Failed,
    Outcome,
    Progress,
    RateLimited,
    Retrying,
    Submitted,
)
from .download import safe_filename
from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BudgetExceededError,
    DecodeError,
    DownloadError,
    EvolinkError,
    InsufficientCreditsError,
    InvalidRequestError,
    JournalError,
    NotFoundError,
    TaskFailedError,
    TaskTimeoutError,
)
from .journal import Journal, LineState, fingerprint
from .models import Task, TaskStatus, VideoRequest

if TYPE_CHECKING:
    from .client import EvolinkClient

__all__ = [
    "MANIFEST_FILENAME",
    "BatchInputError",
    "BatchJob",
    "BatchLine",
    "BatchProgress",
    "BatchSummary",
    "LineProblem",
    "LineStatus",
    "PromptFormat",
    "load_prompts",
    "parse_prompts",
    "run_batch",
    "video_filename",
]

MANIFEST_FILENAME = "manifest.jsonl"

PromptFormat = Literal["auto", "txt", "jsonl"]
LineStatus = Literal["completed", "failed", "unknown", "skipped"]

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_MAX_LISTED_PROBLEMS = 20
#: seconds a stopping job waits for creates already sent to be answered
_STOP_GRACE = 30.0
#: statuses of line states that are final
_FINAL: frozenset[str] = frozenset({"completed", "failed", "unknown", "skipped"})
#: the temporary file of a clip download (see ``download._part_name``) cut short by a kill
_PART_FILE = re.compile(r"\.\d{5,}-[A-Za-z0-9._-]+\.mp4\.[0-9a-f]{8}\.part")


# --------------------------------------------------------------------------------- input


@attrs.frozen
class LineProblem:
    """Why one input line (or the input as a whole, ``line=None``) cannot be used."""

    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "input"
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"


class BatchInputError(EvolinkError, ValueError):
    """The prompts cannot be used as given; nothing was submitted.

    ``problems`` lists every bad line (line number, field, rule); ``source`` names the input.
    """

    def __init__(self, source: str, problems: Iterable[LineProblem], summary: str = "") -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        if not summary:
            summary = f"{count} invalid line{'s' if count != 1 else ''}, nothing was submitted"
        shown = [f"  {p}" for p in self.problems[:_MAX_LISTED_PROBLEMS]]
        if count > _MAX_LISTED_PROBLEMS:
            shown.append(f"  ... and {count - _MAX_LISTED_PROBLEMS} more")
        super().__init__("\n".join([f"{source}: {summary}", *shown]))


@attrs.frozen
class BatchLine:
    """One prompt of a batch: its line number in the input and its validated request."""

    line: int
    request: VideoRequest

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def fingerprint(self) -> str:
        """The journal's fingerprint of the request (defaults applied)."""
        return fingerprint(self.request.to_json())


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, str) and len(value) > limit:
        return f"a string of {len(value)} characters"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _detect_format(first: str | None) -> Literal["txt", "jsonl"]:
    return "jsonl" if first is not None and first.lstrip().startswith("{") else "txt"


def parse_prompts(
    lines: Iterable[str],
    *,
    fmt: Literal["txt", "jsonl"],
    model: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
    source: str = "<prompts>",
) -> list[BatchLine]:
    """Validate every line of a prompts text and return the requests, in input order.

    ``lines`` are the input's lines (line numbers count from 1, skipped lines included).
    Raises :class:`BatchInputError` listing every bad line when at least one is bad, or when
    there is no prompt at all.
    """
    defaults = {"model": model, "duration": duration, "aspect_ratio": aspect_ratio}
    result: list[BatchLine] = []
    problems: list[LineProblem] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields: dict[str, Any]
        if fmt == "txt":
            fields = {"prompt": text}
        else:
            try:
                data = json.loads(text)
            except ValueError as exc:
                detail = (
                    f"{exc.msg} (column {exc.colno})"
                    if isinstance(exc, json.JSONDecodeError)
                    else exc
                )
                problems.append(LineProblem(number, None, f"invalid JSON: {detail}"))
                continue
            if not isinstance(data, dict):
                problems.append(
                    LineProblem(number, None, "must be a JSON object with the API's field names")
                )
                continue
            fields = data
        for key, default in defaults.items():
            if default is not None and fields.get(key) is None:
                fields[key] = default
        try:
            request = VideoRequest.from_json(fields)
        except InvalidRequestError as exc:
            rule = exc.rule if exc.value is None else f"{exc.rule} (got {_short(exc.value)})"
            problems.append(LineProblem(number, exc.field, rule))
            continue
        result.append(BatchLine(number, request))
    if problems:
        raise BatchInputError(source, problems)
    if not result:
        raise BatchInputError(source, [], "no prompts (only blank or # lines)")
    return result


def load_prompts(
    source: str | os.PathLike[str] | IO[str],
    *,
    fmt: PromptFormat = "auto",
    model: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
) -> list[BatchLine]:
    """Read and validate a prompts file (``.txt`` or ``.jsonl``; ``"-"`` = standard input).

    ``fmt="auto"`` picks ``jsonl`` for ``.jsonl``/``.ndjson``/``.json`` files and ``txt`` for
    other files; on standard input (or an open text stream) ``jsonl`` when the first prompt
    line starts with ``{``. Blocking: call it before the event loop or in a worker thread.

    Raises :class:`BatchInputError` (every bad line listed, or an unreadable input).
    """
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BatchInputError(name, [], f"not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise BatchInputError(name, [], f"cannot read it: {exc.strerror or exc}") from None
        suffix_fmt: Literal["txt", "jsonl"] = (
            "jsonl" if path.suffix.lower() in _JSONL_SUFFIXES else "txt"
        )
        if fmt == "auto":
            fmt = suffix_fmt
    else:
        stream: IO[str] = sys.stdin if isinstance(source, (str, os.PathLike)) else source
        name = "<stdin>" if stream is sys.stdin else getattr(stream, "name", "<stream>")
        try:
            text = stream.read()
        except UnicodeDecodeError as exc:
            raise BatchInputError(str(name), [], f"not UTF-8 text ({exc.reason})") from None
        text = text.removeprefix("\ufeff")
    lines = [raw.removesuffix("\r") for raw in text.split("\n")]
    if fmt == "auto":
        first = next((s for s in lines if s.strip() and not s.strip().startswith("#")), None)
        fmt = _detect_format(first)
    return parse_prompts(
        lines,
        fmt=fmt,
        model=model,
        duration=duration,
        aspect_ratio=aspect_ratio,
        source=str(name),
    )


def video_filename(line: int, task_id: str) -> str:
    """The clip's file name in the output directory: ``<line:05d>-<task id>.mp4``."""
    return safe_filename(f"{line:05d}", task_id) + ".mp4"


# --------------------------------------------------------------------------------- results


@attrs.frozen
class BatchProgress:
    """A snapshot of a running job, for progress displays.

    Line counts: ``queued`` (not sent yet, or waiting to be sent again), ``submitted`` (task
    created, pending at the service), ``processing``, ``downloading`` (completed, file being
    fetched), and the final ``completed``, ``failed``, ``unknown``, ``skipped``. ``credits``:
    reserved by completed tasks and tasks in flight. ``requests``: API requests sent by this
    run.
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
    credits: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    elapsed: float = 0.0
    stopping: bool = False

    @property
    def done(self) -> int:
        """Lines with a final status."""
        return self.completed + self.failed + self.unknown + self.skipped


@attrs.frozen
class BatchSummary:
    """What a job did. Counts are by manifest status; ``downloaded`` counts lines with a file.

    ``interrupted``: :meth:`BatchJob.stop` was called. ``aborted``: why the job stopped
    admitting by itself (the key was refused, the account is out of credits, the journal
    cannot be written), else ``None``. ``credits``: reserved by the batch's completed (and
    possibly running) tasks, earlier runs included. ``requests``: API requests of this run.
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

    @property
    def counts(self) -> dict[str, int]:
        """Lines by manifest status."""
        return {
            "completed": self.completed,
            "failed": self.failed,
            "unknown": self.unknown,
            "skipped": self.skipped,
        }

    @property
    def ok(self) -> bool:
        """Every line completed (and downloaded, unless downloads were off)."""
        if self.completed != self.total:
            return False
        return not self.download or self.downloaded == self.total


# --------------------------------------------------------------------------------- machinery


class _Stopped(EvolinkError):
    """Raised by the create hook once the job stops admitting: nothing is sent."""


@attrs.define(eq=False)
class _Line:
    """The live state of one input line during a run."""

    entry: BatchLine
    state: str = "queued"
    task_id: str | None = None
    url: str | None = None
    video: str | None = None
    error: dict[str, str] | None = None
    attempts: int = 0
    credits: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in _FINAL


_Op = Callable[[], Awaitable[object]]


class _JournalWriter:
    """Appends journal records in the order they are posted, from one task.

    ``post`` is fire-and-forget (usable from synchronous event handlers); ``write`` waits until
    the record is on disk. After a failed write every later one fails too.
    """

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._queue: asyncio.Queue[tuple[_Op, asyncio.Future[None] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._on_error = on_error
        self.error: BaseException | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def post(self, op: _Op) -> None:
        self._queue.put_nowait((op, None))

    async def write(self, op: _Op) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        await future

    async def _run(self) -> None:
        while True:
            op, future = await self._queue.get()
            try:
                if self.error is not None:
                    raise JournalError(f"the journal is unusable: {self.error}")
                await op()
            except Exception as exc:
                if self.error is None:
                    self.error = exc
                    self._on_error(exc)
                if future is not None and not future.done():
                    future.set_exception(exc)
            else:
                if future is not None and not future.done():
                    future.set_result(None)
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        """Write what was posted, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None


def _error_info(exc: BaseException) -> dict[str, str]:
    """``{"code", "message"}`` for the manifest."""
    if isinstance(exc, TaskFailedError):
        err = exc.task.error
        code = str(err.code) if err is not None and err.code is not None else "task_failed"
        message = err.message if err is not None and err.message else str(exc)
        return {"code": code, "message": message}
    if isinstance(exc, TaskTimeoutError):
        return {
            "code": "task_timeout",
            "message": f"{exc}; it may still finish: run the same command again to re-attach it",
        }
    if isinstance(exc, BudgetExceededError):
        return {"code": "budget_exceeded", "message": str(exc)}
    if isinstance(exc, APIError):
        api_code = exc.code if exc.code is not None else (exc.type or f"http_{exc.status}")
        return {"code": str(api_code), "message": str(exc)}
    if isinstance(exc, APIConnectionError):
        code = "maybe_created" if exc.maybe_created else "connection_error"
        return {"code": code, "message": str(exc)}
    if isinstance(exc, DecodeError):
        return {"code": "maybe_created", "message": str(exc)}
    if isinstance(exc, DownloadError):
        return {"code": "download_failed", "message": str(exc)}
    return {"code": type(exc).__name__, "message": str(exc)}


def _journal_error(value: str | dict[str, Any] | None, default_code: str) -> dict[str, str]:
    if isinstance(value, dict):
        code = value.get("code")
        message = value.get("message")
        return {
            "code": str(code) if code is not None else default_code,
            "message": str(message) if message is not None else "",
        }
    return {"code": default_code, "message": value or ""}


_MAYBE_CREATED = (
    "an earlier run stopped after deciding to submit this line and before the service answered:"
    " the task may exist (and be billed). Not resubmitted; pass --retry-unknown "
    "(retry_unknown=True) to submit it again"
)


def _check_files(out_dir: Path, checks: list[tuple[str, int | None]]) -> list[bool]:
    """For each (relative path, size): is the file there with that size? (blocking)"""
    ok: list[bool] = []
    for rel, size in checks:
        try:
            ok.append(size is not None and (out_dir / Path(rel).name).stat().st_size == size)
        except OSError:
            ok.append(False)
    return ok


def _write_manifest(out_dir: Path, entries: list[dict[str, Any]]) -> Path:
    """Write ``manifest.jsonl`` atomically (blocking)."""
    path = out_dir / MANIFEST_FILENAME
    tmp = out_dir / f".{MANIFEST_FILENAME}.{os.getpid()}.tmp"
    data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        dir_fd = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _remove_stale_temps(out_dir: Path) -> None:
    """Remove manifest temp files and partial clip downloads (``.<clip>.<hex>.part``) a
    killed run left behind (blocking; the lock is held, so no download of ours is running)."""
    stale_files = [
        *out_dir.glob(f".{MANIFEST_FILENAME}.*.tmp"),
        *(p for p in out_dir.glob(".*.mp4.*.part") if _PART_FILE.fullmatch(p.name)),
    ]
    for stale in stale_files:
        with contextlib.suppress(OSError):
            stale.unlink()


class BatchJob:
    """One run of a batch over an output directory; see the module docstring.

    ``await job.run()`` returns a :class:`BatchSummary`; ``job.progress()`` gives live counts;
    ``job.stop()`` (safe to call from a signal handler on the loop) stops admitting and makes
    ``run`` return soon with the journal and manifest written.

    Options: ``budget`` (credits for the whole batch, earlier runs included), ``max_attempts``
    (creates per line, retryable task failures included), ``task_timeout`` (seconds per task;
    default the client's ``task_timeout``), ``retry_unknown``, ``download`` (False: keep URLs
    only), ``download_concurrency`` (files fetched at once).
    """

    def __init__(
        self,
        client: EvolinkClient,
        lines: Iterable[BatchLine],
        out_dir: str | os.PathLike[str],
        *,
        budget: float | None = None,
        max_attempts: int = 3,
        task_timeout: float | None = None,
        retry_unknown: bool = False,
        download: bool = True,
        download_concurrency: int = 4,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if download_concurrency < 1:
            raise ValueError(f"download_concurrency must be at least 1, got {download_concurrency}")
        if budget is not None and budget < 0:
            raise ValueError(f"budget must not be negative, got {budget}")
        self.client = client
        self.out_dir = Path(out_dir)
        self.budget = budget
        self.max_attempts = max_attempts
        self.task_timeout = task_timeout
        self.retry_unknown = retry_unknown
        self.download = download
        self._lines = [_Line(entry) for entry in lines]
        numbers = [ln.entry.line for ln in self._lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line numbers must be unique")
        self._counts: Counter[str] = Counter(ln.state for ln in self._lines)
        self._download_slots = anyio.Semaphore(download_concurrency)
        self._journal: Journal | None = None
        self._writer: _JournalWriter | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        #: lines whose create may be on the wire (intent written, no answer yet)
        self._posting: set[int] = set()
        self._posting_idle = asyncio.Event()
        self._posting_idle.set()
        #: lines whose intent is journaled but whose create was cancelled around its sending
        self._maybe_sent: set[int] = set()
        self._retry_later: list[_Line] = []
        self._stop_requested = asyncio.Event()
        self._halt = asyncio.Event()
        self._stopping = False
        self._interrupted = False
        self._aborted: str | None = None
        self._started = False
        self._start_time = time.monotonic()
        self._requests_at_start = 0
        self._rate_limited = 0
        self._entries: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        p = self.progress()
        return f"<BatchJob {str(self.out_dir)!r} done={p.done}/{p.total} stopping={p.stopping}>"

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop admitting; ``run`` returns once creates on the wire are answered."""
        self._interrupted = True
        self._request_stop()

    def _request_stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()

    def _abort(self, reason: str) -> None:
        if self._aborted is None and not self._interrupted:
            self._aborted = reason
        self._request_stop()

    def progress(self) -> BatchProgress:
        """Live counts, credits and requests of this run."""
        c = self._counts
        credits = sum(
            ln.credits
            for ln in self._lines
            if ln.state in ("submitted", "processing", "downloading", "completed")
        )
        requests = self.client.transport.requests - self._requests_at_start if self._started else 0
        return BatchProgress(
            total=len(self._lines),
            queued=c["queued"],
            submitted=c["submitted"],
            processing=c["processing"],
            downloading=c["downloading"],
            completed=c["completed"],
            failed=c["failed"],
            unknown=c["unknown"],
            skipped=c["skipped"],
            credits=round(credits, 4),
            requests=requests,
            rate_limited=self._rate_limited,
            elapsed=time.monotonic() - self._start_time,
            stopping=self._stopping,
        )

    def _posting_add(self, line: int) -> None:
        self._posting.add(line)
        self._posting_idle.clear()

    def _posting_discard(self, line: int) -> None:
        self._posting.discard(line)
        if not self._posting:
            self._posting_idle.set()

    def _set(self, ln: _Line, state: str) -> None:
        self._counts[ln.state] -= 1
        self._counts[state] += 1
        ln.state = state

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> BatchSummary:
        """Run the job once. Raises ``JournalLockedError`` when another job holds the
        directory, :class:`BatchInputError` when the journal holds other requests for these
        lines (nothing is submitted then), and ``JournalError`` if the journal fails."""
        if self._started:
            raise RuntimeError("a BatchJob runs once")
        self._started = True
        self._start_time = time.monotonic()
        self._requests_at_start = self.client.transport.requests
        journal = await Journal.aopen(self.out_dir)
        self._journal = journal
        try:
            submit, reattach, fetch = await self._plan(journal.state)
            writer = self._writer = _JournalWriter(
                lambda exc: self._abort(f"the journal cannot be written: {exc}")
            )
            writer.start()
            try:
                await self._execute(submit, reattach, fetch)
            finally:
                with anyio.CancelScope(shield=True):
                    await writer.close()
                    manifest = await anyio.to_thread.run_sync(
                        _write_manifest, self.out_dir, self._manifest_entries()
                    )
        finally:
            with anyio.CancelScope(shield=True):
                await journal.aclose()
        if writer.error is not None:
            err = writer.error
            raise err if isinstance(err, JournalError) else JournalError(str(err))
        return self._summary(manifest)

    async def _plan(
        self, state: Mapping[int, LineState]
    ) -> tuple[list[_Line], list[_Line], list[_Line]]:
        """Sort lines by what the journal says: submit, re-attach, download, or done."""
        problems: list[LineProblem] = []
        for ln in self._lines:
            s = state.get(ln.entry.line)
            if (
                s is not None
                and s.fingerprint is not None
                and s.fingerprint != ln.entry.fingerprint
            ):
                problems.append(
                    LineProblem(
                        ln.entry.line,
                        None,
                        "differs from the request journaled for this line "
                        "(another prompts file, or other --model/--duration/--aspect-ratio?)",
                    )
                )
        if problems:
            raise BatchInputError(
                str(self.out_dir),
                problems,
                f"holds the journal of another batch for {len(problems)} line(s); "
                "use another output directory (nothing was submitted)",
            )
        await anyio.to_thread.run_sync(_remove_stale_temps, self.out_dir)
        submit: list[_Line] = []
        reattach: list[_Line] = []
        fetch: list[_Line] = []
        check: list[tuple[_Line, LineState]] = []
        for ln in self._lines:
            s = state.get(ln.entry.line)
            if s is None:
                submit.append(ln)
                continue
            ln.attempts = s.attempts
            ln.task_id = s.task_id
            ln.credits = s.credits or 0.0
            if s.phase in ("intent", "unknown"):
                if self.retry_unknown:
                    ln.task_id = None
                    ln.credits = 0.0
                    submit.append(ln)
                else:
                    default = {"code": "maybe_created", "message": _MAYBE_CREATED}
                    ln.error = (
                        default if s.phase == "intent" else _journal_error(s.error, "maybe_created")
                    )
                    self._set(ln, "unknown")
            elif s.phase == "created":
                if s.task_id is None:  # pragma: no cover - a created record always has one
                    ln.error = {"code": "maybe_created", "message": _MAYBE_CREATED}
                    self._set(ln, "unknown")
                else:
                    self._set(ln, "submitted")
                    reattach.append(ln)
            elif s.phase == "finished" and s.status == "completed":
                ln.url = s.url
                self._completed_pending(ln, fetch)
            elif s.phase == "finished" and s.status == "rejected":
                ln.task_id = None
                ln.credits = 0.0
                submit.append(ln)
            elif s.phase == "finished":
                ln.credits = 0.0
                ln.error = _journal_error(s.error, s.status or "failed")
                self._set(ln, "failed")
            else:  # downloaded
                ln.url = s.url
                check.append((ln, s))
        if check:
            ok = await anyio.to_thread.run_sync(
                _check_files, self.out_dir, [(s.path or "", s.size) for _, s in check]
            )
            for (ln, s), present in zip(check, ok, strict=True):
                if present and s.path is not None:
                    ln.video = Path(s.path).name
                    self._set(ln, "completed")
                else:
                    self._completed_pending(ln, fetch)
        return submit, reattach, fetch

    def _completed_pending(self, ln: _Line, fetch: list[_Line]) -> None:
        """A completed task whose file is not here (yet)."""
        if not self.download:
            self._set(ln, "completed")
        elif ln.url is None:
            ln.error = {"code": "download_failed", "message": "no result URL was journaled"}
            self._set(ln, "completed")
        else:
            self._set(ln, "downloading")
            fetch.append(ln)

    async def _execute(
        self, submit: list[_Line], reattach: list[_Line], fetch: list[_Line]
    ) -> None:
        watcher = asyncio.get_running_loop().create_task(self._watch_stop())
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._halt.is_set():  # stopped before it began
                    tg.cancel_scope.cancel()
                for ln in fetch:
                    tg.start_soon(self._download, ln)
                for ln in reattach:
                    tg.start_soon(self._reattach, ln)
                if submit:
                    tg.start_soon(self._submit_pass, submit, self.max_attempts)
            # Re-attached tasks that failed with a retryable error and have attempts left.
            while self._retry_later and not self._stopping:
                remaining = self.max_attempts - self._retry_later[0].attempts
                group = [
                    ln for ln in self._retry_later if self.max_attempts - ln.attempts == remaining
                ]
                self._retry_later = [ln for ln in self._retry_later if ln not in group]
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._submit_pass, group, remaining)
        finally:
            self._tg = None
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_stop(self) -> None:
        """On stop: let creates on the wire be answered, then end the run's work."""
        await self._stop_requested.wait()
        with anyio.move_on_after(_STOP_GRACE):
            await self._posting_idle.wait()
        self._halt.set()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- submitting through the dispatcher -----------------------------------------------

    def _budget_left(self) -> float | None:
        if self.budget is None:
            return None
        held = sum(
            ln.credits
            for ln in self._lines
            if ln.state in ("submitted", "processing", "downloading", "completed")
            or (ln.state == "unknown" and ln.task_id is not None)
        )
        return max(0.0, self.budget - held)

    async def _submit_pass(self, lines: list[_Line], max_attempts: int) -> None:
        """Send ``lines`` through the dispatcher and follow them until each ends."""
        if self._stopping:
            return

        def source() -> Iterator[VideoRequest]:
            for ln in lines:
                if self._stopping:
                    return
                yield ln.entry.request

        batch: Batch = self.client.dispatcher.generate_many(
            source(),
            budget=self._budget_left(),
            max_attempts=max_attempts,
            timeout=self.task_timeout,
            on_event=functools.partial(self._on_event, lines),
            before_create=functools.partial(self._before_create, lines),
        )
        try:
            await self._drain(batch, lines)
        finally:
            with anyio.CancelScope(shield=True):
                await batch.aclose()

    async def _drain(self, batch: Batch, lines: list[_Line]) -> None:
        """Take the outcomes until the batch ends or the job halts (without closing the
        batch's generator from another task)."""
        halt = asyncio.ensure_future(self._halt.wait())
        nxt: asyncio.Future[Outcome] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(batch.__anext__())
                await asyncio.wait({nxt, halt}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    return
                try:
                    outcome = nxt.result()
                except StopAsyncIteration:
                    return
                nxt = None
                self._on_outcome(lines[outcome.index - 1], outcome)
        finally:
            halt.cancel()
            if nxt is not None and not nxt.done():
                nxt.cancel()
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt

    async def _before_create(
        self, lines: list[_Line], index: int, request: VideoRequest, attempt: int
    ) -> None:
        """The dispatcher's hook: the intent is on disk before the create is sent."""
        ln = lines[index - 1]
        if self._stopping:
            raise _Stopped("not submitted: the batch was stopped")
        assert self._writer is not None
        self._posting_add(ln.entry.line)
        try:
            await self._writer.write(
                functools.partial(self._j.intent, ln.entry.line, ln.entry.fingerprint)
            )
        except BaseException as exc:
            self._posting_discard(ln.entry.line)
            if not isinstance(exc, Exception):  # cancelled: the intent is written anyway
                self._maybe_sent.add(ln.entry.line)
            raise
        ln.attempts += 1

    def _on_event(self, lines: list[_Line], event: Event) -> None:
        if isinstance(event, RateLimited):
            self._rate_limited += 1
            return
        if isinstance(event, (Completed, Failed)):
            self._on_outcome(lines[event.outcome.index - 1], event.outcome)
            return
        ln = lines[event.index - 1]
        if isinstance(event, Submitted):
            self._posting_discard(ln.entry.line)
            ln.task_id = event.task_id
            if event.credits_reserved is not None:
                ln.credits = event.credits_reserved
            else:
                r = ln.entry.request
                ln.credits = self.client.prices.price(r.model, r.duration) or 0.0
            self._set(ln, "submitted")
            self._post(
                functools.partial(
                    self._j.created, ln.entry.line, event.task_id, event.credits_reserved
                )
            )
        elif isinstance(event, Progress):
            if event.status is TaskStatus.PROCESSING and ln.state == "submitted":
                self._set(ln, "processing")
        elif isinstance(event, Retrying):
            self._posting_discard(ln.entry.line)
            if not ln.final:
                ln.credits = 0.0
                self._set(ln, "queued")
        elif isinstance(event, BudgetSkipped) and not ln.final:
            ln.error = {"code": "budget_exceeded", "message": event.reason}
            self._set(ln, "skipped")

    @property
    def _j(self) -> Journal:
        assert self._journal is not None
        return self._journal

    def _post(self, op: _Op) -> None:
        assert self._writer is not None
        self._writer.post(op)

    def _on_outcome(self, ln: _Line, outcome: Outcome) -> None:
        """Record how a line ended (called once per outcome; repeats are ignored)."""
        line = ln.entry.line
        self._posting_discard(line)
        if ln.final or ln.state == "downloading":
            return
        err = outcome.error
        if outcome.task_id is not None:
            ln.task_id = outcome.task_id
        if outcome.status == "completed" and outcome.task is not None:
            ln.credits = outcome.credits
            self._task_completed(ln, outcome.task.video_url)
        elif outcome.status == "skipped":
            ln.credits = 0.0
            ln.error = _error_info(err) if err is not None else {"code": "skipped", "message": ""}
            self._set(ln, "skipped")
        elif outcome.status == "unknown":
            reason = str(err) if err is not None else "the create's outcome is unknown"
            ln.error = {"code": "maybe_created", "message": reason}
            self._post(functools.partial(self._j.unknown, line, reason))
            self._set(ln, "unknown")
        elif isinstance(err, (_Stopped, JournalError)):
            ln.credits = 0.0  # nothing was sent for this attempt
            self._set(ln, "queued")
        else:
            # No Submitted event for the latest attempt: its create itself failed.
            self._task_failed(ln, err, from_create=ln.state == "queued")

    def _task_completed(self, ln: _Line, url: str | None) -> None:
        line = ln.entry.line
        assert ln.task_id is not None
        ln.url = url
        ln.error = None
        self._post(functools.partial(self._j.finished, line, ln.task_id, "completed", None, url))
        if url is None:
            ln.error = {
                "code": "download_failed",
                "message": "the service reported the task completed without a result URL",
            }
            self._set(ln, "completed")
        elif not self.download:
            self._set(ln, "completed")
        else:
            self._set(ln, "downloading")
            if self._tg is not None:
                self._tg.start_soon(self._download, ln)

    def _task_failed(self, ln: _Line, err: EvolinkError | None, *, from_create: bool) -> None:
        line = ln.entry.line
        info = _error_info(err) if err is not None else {"code": "failed", "message": ""}
        ln.error = info
        ln.credits = 0.0
        refused = isinstance(err, APIError) or (
            isinstance(err, APIConnectionError) and not err.maybe_created
        )
        if not from_create and isinstance(err, (TaskFailedError, NotFoundError)) and ln.task_id:
            code = "task_not_found" if isinstance(err, NotFoundError) else info["code"]
            record = {"code": code, "message": info["message"]}
            ln.error = record
            self._post(functools.partial(self._j.finished, line, ln.task_id, "failed", record))
        elif from_create and refused:
            # The service answered the create with an error (or was never reached):
            # nothing was created, so the next run may submit the line again.
            self._post(
                functools.partial(
                    self._j.append,
                    {
                        "event": "finished",
                        "line": line,
                        "task_id": None,
                        "status": "rejected",
                        "error": info,
                    },
                )
            )
            if isinstance(err, (AuthenticationError, InsufficientCreditsError)):
                self._abort(f"the service refused a create: {err}")
        # A task timeout (or an error that ended tracking) leaves ``created`` in the journal:
        # the next run re-attaches the task.
        self._set(ln, "failed")

    # -- re-attaching and downloading ----------------------------------------------------

    async def _reattach(self, ln: _Line) -> None:
        """Follow a task an earlier run created, by id (never resubmitted)."""
        assert ln.task_id is not None
        task_id = ln.task_id
        permit = None
        concurrency = self.client.concurrency
        try:
            if concurrency is not None:
                permit = await concurrency.acquire()

            def on_progress(task: Task) -> None:
                if task.status is TaskStatus.PROCESSING and ln.state == "submitted":
                    self._set(ln, "processing")

            try:
                task = await self.client.wait(
                    task_id, timeout=self.task_timeout, on_progress=on_progress
                )
            except TaskFailedError as exc:
                if exc.retryable and ln.attempts < self.max_attempts and not self._stopping:
                    self._post(
                        functools.partial(
                            self._j.finished, ln.entry.line, task_id, "failed", _error_info(exc)
                        )
                    )
                    ln.credits = 0.0
                    self._set(ln, "queued")
                    self._retry_later.append(ln)
                else:
                    self._task_failed(ln, exc, from_create=False)
            except EvolinkError as exc:
                self._task_failed(ln, exc, from_create=False)
            else:
                self._task_completed(ln, task.video_url)
        except BaseException:
            with contextlib.suppress(RuntimeError):  # the client is closed already
                self.client.poller.forget(task_id)
            raise
        finally:
            if permit is not None:
                permit.release()

    async def _download(self, ln: _Line) -> None:
        """Fetch a completed line's clip (at most ``download_concurrency`` at once)."""
        assert ln.task_id is not None
        assert ln.url is not None
        async with self._download_slots:
            if self._stopping:
                return
            name = video_filename(ln.entry.line, ln.task_id)
            try:
                result = await self._fetch(ln, name)
            except DownloadError as exc:
                ln.video = None
                ln.error = _error_info(exc)
                self._post(
                    functools.partial(
                        self._j.append,
                        {
                            "event": "download_failed",
                            "line": ln.entry.line,
                            "task_id": ln.task_id,
                            "reason": str(exc),
                        },
                    )
                )
                self._set(ln, "completed")
                return
            assert self._writer is not None
            try:
                await self._writer.write(
                    functools.partial(
                        self._j.downloaded,
                        ln.entry.line,
                        ln.task_id,
                        name,
                        result.size,
                        result.sha256,
                    )
                )
            except JournalError:
                return  # the job is aborting; the line stays "downloading" (interrupted)
            ln.video = name
            ln.error = None
            self._set(ln, "completed")

    async def _fetch(self, ln: _Line, name: str) -> Any:
        assert ln.url is not None
        assert ln.task_id is not None
        dest = self.out_dir / name
        try:
            return await self.client.download(ln.url, dest)
        except DownloadError as exc:
            if exc.status not in (401, 403, 404, 410):
                raise
            # The link may have expired: ask the service for a fresh one, once.
            try:
                task = await self.client.get_task(ln.task_id)
            except EvolinkError:
                raise exc from None
            fresh = task.video_url
            if fresh is None or fresh == ln.url:
                raise
            ln.url = fresh
            return await self.client.download(fresh, dest)

    # -- results -------------------------------------------------------------------------

    def _manifest_entries(self) -> list[dict[str, Any]]:
        why = "interrupted" if self._interrupted else "aborted"
        reason = (
            "the batch was interrupted"
            if self._interrupted
            else f"the batch stopped: {self._aborted or 'internal error'}"
        )
        entries = []
        for ln in self._lines:
            status: str
            error = ln.error
            credits = ln.credits
            video = ln.video
            if ln.final:
                status = ln.state
            elif ln.state in ("submitted", "processing"):
                status = "unknown"
                error = {
                    "code": why,
                    "message": f"{reason} while task {ln.task_id} was running; "
                    "run the same command again to re-attach it",
                }
            elif ln.state == "downloading":
                status = "completed"
                video = None
                error = {
                    "code": why,
                    "message": f"{reason} before the clip was downloaded; "
                    "run the same command again to download it",
                }
            elif ln.entry.line in self._posting or ln.entry.line in self._maybe_sent:
                status = "unknown"
                error = {
                    "code": "maybe_created",
                    "message": f"{reason} while this line's create request was being sent: the "
                    "task may exist (and be billed). Not resubmitted; pass --retry-unknown "
                    "(retry_unknown=True) to submit it again",
                }
            else:
                status = "skipped"
                credits = 0.0
                error = {"code": why, "message": f"not submitted: {reason}"}
            if status in ("failed", "skipped"):
                credits = 0.0
            entries.append(
                {
                    "line": ln.entry.line,
                    "prompt": ln.entry.prompt,
                    "status": status,
                    "task_id": ln.task_id,
                    "video": video,
                    "url": ln.url,
                    "error": error,
                    "attempts": ln.attempts,
                    "credits": round(credits, 4),
                }
            )
        self._entries = entries
        return entries

    def _summary(self, manifest: Path) -> BatchSummary:
        entries = self._entries
        by_status = Counter(str(e["status"]) for e in entries)
        return BatchSummary(
            total=len(entries),
            completed=by_status["completed"],
            failed=by_status["failed"],
            unknown=by_status["unknown"],
            skipped=by_status["skipped"],
            downloaded=sum(1 for e in entries if e["video"] is not None),
            download_failed=sum(
                1 for e in entries if e["error"] and e["error"].get("code") == "download_failed"
            ),
            credits=round(
                sum(
                    float(e["credits"]) for e in entries if e["status"] in ("completed", "unknown")
                ),
                4,
            ),
            requests=self.client.transport.requests - self._requests_at_start,
            elapsed=time.monotonic() - self._start_time,
            manifest=manifest,
            download=self.download,
            interrupted=self._interrupted,
            aborted=self._aborted,
        )


async def run_batch(
    client: EvolinkClient,
    source: str | os.PathLike[str] | IO[str] | Sequence[BatchLine],
    out_dir: str | os.PathLike[str],
    *,
    fmt: PromptFormat = "auto",
    model: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
    budget: float | None = None,
    max_attempts: int = 3,
    task_timeout: float | None = None,
    retry_unknown: bool = False,
    download: bool = True,
    download_concurrency: int = 4,
) -> BatchSummary:
    """Load and validate ``source`` (a prompts file, ``"-"``, a text stream, or
    :class:`BatchLine` objects), then run a :class:`BatchJob` on ``out_dir``."""
    lines: list[BatchLine]
    if isinstance(source, (list, tuple)):
        lines = list(cast("Sequence[BatchLine]", source))
    else:
        lines = await anyio.to_thread.run_sync(
            functools.partial(
                load_prompts,
                cast("str | os.PathLike[str] | IO[str]", source),
                fmt=fmt,
                model=model,
                duration=duration,
                aspect_ratio=aspect_ratio,
            )
        )
    job = BatchJob(
        client,
        lines,
        out_dir,
        budget=budget,
        max_attempts=max_attempts,
        task_timeout=task_timeout,
        retry_unknown=retry_unknown,
        download=download,
        download_concurrency=download_concurrency,
    )
    return await job.run()
