"""What the user sees: batch progress (nowhere, plain periodic lines, or a rich live display),
the batch summary with the lines that did not complete, and one task's progress.

Rich is used when standard output is a terminal and rich (the ``cli`` extra) is installed."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

from ..batch import BatchProgress, BatchSummary
from ..models import Task

__all__ = [
    "Display",
    "PlainDisplay",
    "RichDisplay",
    "failure_lines",
    "is_tty",
    "make_display",
    "print_summary",
    "rich_available",
    "stats_line",
    "summary_rows",
    "task_display",
]

_LOG_INTERVAL = 5.0  # seconds between plain progress lines
_MAX_LISTED = 10  # lines listed under "not completed" in the summary


def rich_available() -> bool:
    return importlib.util.find_spec("rich") is not None


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _use_rich() -> bool:
    return is_tty(sys.stdout) and rich_available()


# ------------------------------------------------------------------------------- batch progress


def stats_line(p: BatchProgress, rps: float, eta: float | None = None) -> str:
    """What a person watching a batch wants on one line: counts by state, credits of the
    budget, retries, downloads, a pause (a 429's, or an outage's) and the time left."""
    running = p.submitted + p.processing  # created: waiting at the service or generating
    parts = [f"queued {p.queued}", f"running {running}"]
    if p.processing:
        parts[-1] += f" ({p.processing} seen processing)"
    if p.downloading:
        parts.append(f"downloading {p.downloading}")
    parts += [f"completed {p.completed}", f"failed {p.failed}"]
    for name in ("unknown", "skipped", "cancelled"):
        if getattr(p, name):
            parts.append(f"{name} {getattr(p, name)}")
    spent = f"{p.credits:g} credits" + (f" of {p.budget:g}" if p.budget is not None else "")
    parts += [f"{rps:.1f} req/s", spent]
    if p.retries:
        parts.append(f"retries {p.retries}")
    if p.download_failed:
        parts.append(f"downloads {p.downloaded} ok, {p.download_failed} failed")
    if p.rate_limited:
        parts.append(f"429s {p.rate_limited}")
    if p.outage is not None:
        parts.append(f"paused: {p.outage}, retry in {math.ceil(p.outage_retry)} s")
    elif p.paused > 0:
        parts.append(f"paused: rate limited, {math.ceil(p.paused)} s")
    if p.stopping:
        parts.append("stopping")
    elif eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class _Eta:
    """Time left from the pace of lines finished over the last minute (None until known)."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, done: int, total: int) -> float | None:
        now = self.clock()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        if done >= total:
            return 0.0
        if done <= d0 or now <= t0:
            return None
        return (total - done) * (now - t0) / (done - d0)


class _Rate:
    """Requests per second over the last few seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, requests: int) -> float:
        now = time.monotonic()
        self.samples.append((now, requests))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, r0 = self.samples[0]
        return (requests - r0) / (now - t0) if now > t0 else 0.0


class Display:
    """Where batch progress goes: nowhere, plain lines, or a rich live display."""

    def start(self, progress: BatchProgress) -> None:
        """Called once before the run."""

    def update(self, progress: BatchProgress) -> None:
        """Called about eight times a second."""

    def stop(self, progress: BatchProgress) -> None:
        """Called once after the run."""


class PlainDisplay(Display):
    """A line of counts every ``interval`` seconds, and at the start and the end."""

    def __init__(self, out: TextIO, interval: float = _LOG_INTERVAL) -> None:
        self.out = out
        self.interval = interval
        self.last = 0.0
        self.rate = _Rate()
        self.eta = _Eta()

    def _line(self, p: BatchProgress) -> None:
        rps = self.rate.update(p.requests)
        eta = self.eta.update(p.done, p.total)
        print(
            f"[{p.elapsed:7.1f}s] {p.done}/{p.total} done · {stats_line(p, rps, eta)}",
            file=self.out,
            flush=True,
        )
        self.last = time.monotonic()

    def start(self, progress: BatchProgress) -> None:
        self._line(progress)

    def update(self, progress: BatchProgress) -> None:
        if time.monotonic() - self.last >= self.interval:
            self._line(progress)

    def stop(self, progress: BatchProgress) -> None:
        self._line(progress)


class RichDisplay(Display):
    """One bar (done/total, ETA) and a line of counts, requests/s and credits."""

    def __init__(self) -> None:
        from rich.console import Console, Group  # noqa: PLC0415 - rich is optional
        from rich.live import Live  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text  # noqa: PLC0415

        self.rate = _Rate()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.stats = Text("")
        self.live = Live(
            Group(self.progress, self.stats),
            console=Console(file=sys.stdout),
            refresh_per_second=8,
        )
        self.task_id: Any = None

    def start(self, progress: BatchProgress) -> None:
        self.task_id = self.progress.add_task(
            "batch", total=progress.total, completed=progress.done
        )
        self.live.start()
        self.update(progress)

    def update(self, progress: BatchProgress) -> None:
        rps = self.rate.update(progress.requests)
        description = "stopping" if progress.stopping else "batch"
        self.progress.update(self.task_id, completed=progress.done, description=description)
        self.stats.plain = stats_line(progress, rps)

    def stop(self, progress: BatchProgress) -> None:
        self.update(progress)
        self.live.stop()


def make_display(quiet: bool) -> Display:
    """Nothing with ``--quiet``; rich on a terminal (when installed); plain lines otherwise."""
    if quiet:
        return Display()
    if _use_rich():
        return RichDisplay()
    return PlainDisplay(sys.stdout)


# ------------------------------------------------------------------------------- batch summary


def summary_rows(summary: BatchSummary) -> list[tuple[str, str]]:
    """(name, value) rows of the summary table."""
    rate = summary.requests / summary.elapsed if summary.elapsed > 0 else 0.0
    rows = [
        ("prompts", str(summary.total)),
        ("completed", str(summary.completed)),
        ("failed", str(summary.failed)),
        ("unknown", str(summary.unknown)),
        ("skipped", str(summary.skipped)),
    ]
    if summary.cancelled:
        rows.append(("cancelled", str(summary.cancelled)))
    if summary.stopped:
        rows.append(("interrupted", f"{summary.stopped} (run the same command again)"))
    rows += [
        ("downloaded", str(summary.downloaded) if summary.download else "off (--no-download)"),
    ]
    if summary.download_failed:
        rows.append(("download failures", str(summary.download_failed)))
    if summary.duplicates:
        rows.append(("duplicate prompts", _duplicates_text(summary.duplicates)))
    rows += [
        ("credits", f"{summary.credits:g}"),
        ("API requests", f"{summary.requests} ({rate:.1f}/s)"),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("manifest", str(summary.manifest)),
    ]
    return rows


def _duplicates_text(groups: tuple[tuple[int, ...], ...]) -> str:
    """``2 (line 4 repeats line 1; line 9 repeats line 2)``, the first few groups listed."""
    count = sum(len(group) - 1 for group in groups)
    shown = [
        f"line{'s' if len(g) > 2 else ''} {', '.join(map(str, g[1:]))} "
        f"repeat{'' if len(g) > 2 else 's'} line {g[0]}"
        for g in groups[:_MAX_LISTED]
    ]
    more = f"; and {len(groups) - _MAX_LISTED} more" if len(groups) > _MAX_LISTED else ""
    return f"{count} ({'; '.join(shown)}{more})"


def failure_lines(entries: Iterable[Mapping[str, Any]], *, download: bool) -> Iterator[str]:
    """``line N: status (code: message)`` for each manifest entry (a dict with the manifest's
    keys) that did not end with a downloaded clip (without downloads: a completed task)."""
    for entry in entries:
        ok = entry["status"] == "completed" and (entry["video"] is not None or not download)
        if ok:
            continue
        error = entry.get("error") or {}
        detail = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        yield f"line {entry['line']}: {entry['status']} ({detail})"


def _not_completed(summary: BatchSummary) -> list[str]:
    """The lines of the run that did not complete (from the summary's manifest entries), the
    lines that ended the same way for the same reason said once."""
    groups: dict[str, list[int]] = {}
    for text in failure_lines((e.to_json() for e in summary.entries), download=summary.download):
        head, _, rest = text.partition(": ")
        groups.setdefault(rest, []).append(int(head.removeprefix("line ")))
    return [f"{_lines_text(lines)}: {what}" for what, lines in groups.items()]


def _lines_text(lines: list[int]) -> str:
    """``line 4``, ``lines 2, 5, 9``, ``lines 3-157 (153)`` or ``153 lines (3, 4, 8, ...)``."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    if lines == list(range(lines[0], lines[-1] + 1)) and len(lines) > 3:
        return f"lines {lines[0]}-{lines[-1]} ({len(lines)})"
    if len(lines) <= 5:
        return "lines " + ", ".join(map(str, lines))
    return f"{len(lines)} lines ({', '.join(map(str, lines[:3]))}, ...)"


def _print_rich_summary(title: str, rows: list[tuple[str, str]], problems: list[str]) -> None:
    from rich.console import Console  # noqa: PLC0415 - rich is optional
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    console = Console(file=sys.stdout)
    console.print(table)
    for line in problems[:_MAX_LISTED]:
        console.print(f"  {line}", markup=False, highlight=False)


def _print_plain_summary(title: str, rows: list[tuple[str, str]], problems: list[str]) -> None:
    print(f"{title}:")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for line in problems[:_MAX_LISTED]:
        print(f"  {line}")


def print_summary(summary: BatchSummary) -> None:
    """The summary table, the first lines that did not complete, and what to do next."""
    problems = _not_completed(summary)
    title = "Batch interrupted" if summary.interrupted else "Batch summary"
    show = _print_rich_summary if _use_rich() else _print_plain_summary
    show(title, summary_rows(summary), problems)
    if len(problems) > _MAX_LISTED:
        print(f"  ... and {len(problems) - _MAX_LISTED} more (see the manifest)")
    if summary.aborted:
        print(f"stopped early: {summary.aborted}")
    if summary.interrupted:
        print("run the same command again to resume (running tasks are re-attached)")
    sys.stdout.flush()


# ------------------------------------------------------------------------------- one task


@contextlib.contextmanager
def task_display(quiet: bool) -> Iterator[Callable[[Task], None]]:
    """A callback showing one task's status and progress (rich bar or plain lines)."""
    if quiet:
        yield lambda task: None
        return
    if _use_rich():
        with _rich_task_display() as on_rich:
            yield on_rich
        return
    seen: list[tuple[str, int | None]] = []

    def on_plain(task: Task) -> None:
        state = (task.raw_status, task.progress)
        if not seen or seen[-1] != state:
            seen.append(state)
            print(f"  {task.raw_status} {task.progress or 0}%", flush=True)

    yield on_plain


@contextlib.contextmanager
def _rich_task_display() -> Iterator[Callable[[Task], None]]:
    from rich.console import Console  # noqa: PLC0415 - rich is optional
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(file=sys.stdout),
    )
    bar = progress.add_task("pending", total=100)

    def on_rich(task: Task) -> None:
        progress.update(bar, completed=task.progress or 0, description=task.raw_status)

    with progress:
        yield on_rich
