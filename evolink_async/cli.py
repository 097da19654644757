"""The ``evolink-async`` command line (also ``python -m evolink_async``).

::

    evolink-async batch PROMPTS --out DIR [--simulate] [--concurrency N] [--rate R] ...
    evolink-async batch PROMPTS --out DIR --callback-url https://bot.example.com/evolink
    evolink-async generate "A paper boat on a river" --duration 8 [-o boat.mp4]
    evolink-async status TASK_ID
    evolink-async credits
    evolink-async simulate --port 8080 --time-scale 0.05

Exit status: 0 all completed, 1 some not completed (or a request failed), 2 usage or input
errors (nothing was sent), 130 interrupted. The API key (``--api-key`` or
``$EVOLINK_API_KEY``) is never printed.

Progress goes to a rich display when standard output is a terminal and rich (the ``cli``
extra) is installed, and to plain periodic log lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

from .__about__ import __version__
from .batch import BatchInputError, BatchJob, BatchLine, BatchProgress, BatchSummary, load_prompts
from .client import EvolinkClient
from .download import safe_filename
from .errors import (
    EvolinkError,
    InvalidRequestError,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    TaskFailedError,
    TaskTimeoutError,
    redact_url,
)
from .models import Credits, Task, VideoRequest
from .webhooks import CallbackReceiver, parse_listen

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "SIMULATE_TIME_SCALE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: ``--simulate``: local seconds per simulated second (a "300 s" clip takes 1.5 s).
SIMULATE_TIME_SCALE = 0.005
#: ``--listen`` when ``--callback-url`` is given without it.
DEFAULT_LISTEN = "127.0.0.1:8080"
#: Keeps the callback URL's secret segment across runs (tasks re-attached by a rerun call it).
CALLBACK_SECRET_ENV = "EVOLINK_CALLBACK_SECRET"
_SIMULATE_RATE = 50.0
_SIMULATE_BURST = 10
_LOG_INTERVAL = 5.0  # seconds between plain progress lines
_REFRESH = 0.125  # seconds between rich refreshes
_MAX_LISTED = 10  # lines listed under "not completed" in the summary

logger = logging.getLogger("evolink_async")


# ------------------------------------------------------------------------------- helpers


def _rich_available() -> bool:
    return importlib.util.find_spec("rich") is not None


def _err(message: str) -> None:
    print(f"evolink-async: {message}", file=sys.stderr, flush=True)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 if allow_zero else value > 0):
        rule = "must not be negative" if allow_zero else "must be greater than 0"
        raise argparse.ArgumentTypeError(f"{rule}, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, allow_zero=False)


def _non_negative_float(text: str) -> float:
    return _number(text, allow_zero=True)


class _Interrupts:
    """SIGINT/SIGTERM on the running loop: the first calls ``on_first`` (stop admitting,
    or cancel); a second SIGINT exits at once with status 130. Every journal record is
    written whole and fsynced before the next, and the manifest is replaced atomically, so
    exiting at any point leaves no corrupt file (a torn last journal line is tolerated)."""

    def __init__(self) -> None:
        self.count = 0
        self.on_first: Callable[[], object] | None = None
        self.message = "interrupted: stopping (press Ctrl-C again to quit at once)"
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self._on_signal, signal.SIGINT)
            loop.add_signal_handler(signal.SIGTERM, self._on_signal, signal.SIGTERM)
            self._loop = loop

    def uninstall(self) -> None:
        if self._loop is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    self._loop.remove_signal_handler(sig)
            self._loop = None

    def _on_signal(self, sig: signal.Signals) -> None:
        self.count += 1
        if self.count == 1:
            _err(self.message)
            if self.on_first is not None:
                self.on_first()
            return
        if sig == signal.SIGINT:
            _err("interrupted again: quitting now")
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)


def _run(command: Callable[[_Interrupts], Awaitable[int]]) -> int:
    """Run an async command with the signal handling above."""
    interrupts = _Interrupts()

    async def runner() -> int:
        interrupts.install(asyncio.get_running_loop())
        try:
            return await command(interrupts)
        finally:
            interrupts.uninstall()

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:  # no signal handlers on this platform
        return EXIT_INTERRUPTED


def _connection(args: argparse.Namespace) -> tuple[str | None, str | None] | None:
    """(base_url, api_key) from the flags and environment; None (after a message) when no
    key is available."""
    api_key = args.api_key or os.environ.get("EVOLINK_API_KEY")
    base_url = args.base_url or os.environ.get("EVOLINK_BASE_URL") or None
    if not api_key:
        _err("no API key: pass --api-key or set $EVOLINK_API_KEY (or try --simulate)")
        return None
    return base_url, api_key


@contextlib.asynccontextmanager
async def _service(args: argparse.Namespace, **client_kwargs: Any) -> AsyncIterator[EvolinkClient]:
    """A client for the real service, or for an embedded simulator with ``--simulate``."""
    time_scale: float | None = args.time_scale
    if getattr(args, "simulate", False):
        from .testing import Simulator  # noqa: PLC0415 - only needed for --simulate

        scale = time_scale or SIMULATE_TIME_SCALE
        # with callbacks, the simulator calls the local receiver over http on loopback
        insecure = client_kwargs.get("callbacks") is not None
        async with Simulator(time_scale=scale, allow_insecure_callbacks=insecure) as sim:
            client_kwargs.setdefault("rate", _SIMULATE_RATE)
            client_kwargs.setdefault("burst", _SIMULATE_BURST)
            async with EvolinkClient(
                sim.api_key, sim.base_url, time_scale=scale, **client_kwargs
            ) as client:
                yield client
        return
    conn = _connection(args)
    if conn is None:
        raise _UsageError
    base_url, api_key = conn
    async with EvolinkClient(
        api_key, base_url, time_scale=time_scale or 1.0, **client_kwargs
    ) as client:
        yield client


class _UsageError(Exception):
    """A usage problem already reported on stderr: exit 2."""


# ------------------------------------------------------------------------------- progress


def _stats_line(p: BatchProgress, rps: float) -> str:
    parts = [
        f"queued {p.queued}",
        f"submitted {p.submitted}",
        f"processing {p.processing}",
    ]
    if p.downloading:
        parts.append(f"downloading {p.downloading}")
    parts += [f"completed {p.completed}", f"failed {p.failed}"]
    if p.unknown:
        parts.append(f"unknown {p.unknown}")
    if p.skipped:
        parts.append(f"skipped {p.skipped}")
    parts += [f"{rps:.1f} req/s", f"{p.credits:g} credits"]
    if p.rate_limited:
        parts.append(f"429s {p.rate_limited}")
    return " · ".join(parts)


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


class _Display:
    """Where batch progress goes: nowhere, plain lines, or a rich live display."""

    def start(self, progress: BatchProgress) -> None:
        """Called once before the run."""

    def update(self, progress: BatchProgress) -> None:
        """Called about eight times a second."""

    def stop(self, progress: BatchProgress) -> None:
        """Called once after the run."""


class _PlainDisplay(_Display):
    def __init__(self, out: TextIO, interval: float = _LOG_INTERVAL) -> None:
        self.out = out
        self.interval = interval
        self.last = 0.0
        self.rate = _Rate()

    def _line(self, p: BatchProgress) -> None:
        rps = self.rate.update(p.requests)
        print(
            f"[{p.elapsed:7.1f}s] {p.done}/{p.total} done · {_stats_line(p, rps)}",
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


class _RichDisplay(_Display):
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

        self._text_type = Text
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
        self.stats.plain = _stats_line(progress, rps)

    def stop(self, progress: BatchProgress) -> None:
        self.update(progress)
        self.live.stop()


def _make_display(quiet: bool) -> _Display:
    if quiet:
        return _Display()
    if _is_tty(sys.stdout) and _rich_available():
        return _RichDisplay()
    return _PlainDisplay(sys.stdout)


def _summary_rows(summary: BatchSummary) -> list[tuple[str, str]]:
    rate = summary.requests / summary.elapsed if summary.elapsed > 0 else 0.0
    rows = [
        ("prompts", str(summary.total)),
        ("completed", str(summary.completed)),
        ("failed", str(summary.failed)),
        ("unknown", str(summary.unknown)),
        ("skipped", str(summary.skipped)),
        ("downloaded", str(summary.downloaded) if summary.download else "off (--no-download)"),
    ]
    if summary.download_failed:
        rows.append(("download failures", str(summary.download_failed)))
    rows += [
        ("credits", f"{summary.credits:g}"),
        ("API requests", f"{summary.requests} ({rate:.1f}/s)"),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("manifest", str(summary.manifest)),
    ]
    return rows


def _not_completed(summary: BatchSummary) -> list[str]:
    """A few lines of the manifest that did not end with a downloaded clip."""
    out: list[str] = []
    try:
        with summary.manifest.open(encoding="utf-8") as f:
            for raw in f:
                entry = json.loads(raw)
                ok = entry["status"] == "completed" and (
                    entry["video"] is not None or not summary.download
                )
                if ok:
                    continue
                error = entry.get("error") or {}
                detail = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
                out.append(f"line {entry['line']}: {entry['status']} ({detail})")
    except (OSError, ValueError, KeyError):
        return out
    return out


def _print_summary(summary: BatchSummary) -> None:
    rows = _summary_rows(summary)
    problems = _not_completed(summary)
    title = "Batch interrupted" if summary.interrupted else "Batch summary"
    if _is_tty(sys.stdout) and _rich_available():
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
    else:
        print(f"{title}:")
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        for line in problems[:_MAX_LISTED]:
            print(f"  {line}")
    if len(problems) > _MAX_LISTED:
        print(f"  ... and {len(problems) - _MAX_LISTED} more (see the manifest)")
    if summary.aborted:
        print(f"stopped early: {summary.aborted}")
    if summary.interrupted:
        print("run the same command again to resume (running tasks are re-attached)")
    sys.stdout.flush()


# ------------------------------------------------------------------------------- commands


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _callback_receiver(args: argparse.Namespace) -> CallbackReceiver | None:
    """The receiver of ``--callback-url``/``--listen`` (not started), or None without them.
    Raises ValueError (an InvalidRequestError for the URL) with a message for the user."""
    if args.callback_url is None:
        if args.listen is not None:
            raise ValueError("--listen needs --callback-url (the URL the service calls)")
        return None
    host, port = parse_listen(args.listen or DEFAULT_LISTEN)
    url = urlsplit(args.callback_url)
    # the embedded simulator may call back over http, on loopback only (the real service
    # calls https URLs of public hosts, as the receiver checks otherwise)
    insecure = args.simulate and url.scheme.lower() == "http"
    if insecure and not _is_loopback(url.hostname):
        raise ValueError("--callback-url: with --simulate, an http URL must be on loopback")
    try:
        return CallbackReceiver(
            args.callback_url,
            host=host,
            port=port,
            secret=os.environ.get(CALLBACK_SECRET_ENV) or None,
            allow_insecure=insecure,
        )
    except InvalidRequestError as exc:
        raise ValueError(f"--callback-url: {exc}") from None
    except ValueError as exc:  # the secret: the message does not carry it
        raise ValueError(f"${CALLBACK_SECRET_ENV}: {exc}") from None


def _batch(args: argparse.Namespace) -> int:
    try:
        receiver = _callback_receiver(args)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        lines = load_prompts(
            args.prompts,
            fmt=args.format,
            model=args.model,
            duration=args.duration,
            aspect_ratio=args.aspect_ratio,
        )
    except BatchInputError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not args.simulate and _connection(args) is None:
        return EXIT_USAGE
    return _run(lambda interrupts: _batch_async(args, lines, interrupts, receiver))


async def _batch_async(
    args: argparse.Namespace,
    lines: list[BatchLine],
    interrupts: _Interrupts,
    receiver: CallbackReceiver | None = None,
) -> int:
    client_kwargs: dict[str, Any] = {"max_in_flight": args.concurrency}
    if args.rate is not None:
        client_kwargs.update(rate=args.rate, burst=1)
    if args.timeout is not None:
        client_kwargs["task_timeout"] = args.timeout
    try:
        async with contextlib.AsyncExitStack() as stack:
            if receiver is not None:  # listening before the first create gives its URL
                try:
                    await stack.enter_async_context(receiver)
                except OSError as exc:
                    where = f"{receiver.host}:{receiver.port}"
                    _err(f"cannot listen for callbacks on {where}: {exc.strerror or exc}")
                    return EXIT_SOME_FAILED
                client_kwargs["callbacks"] = receiver
            client = await stack.enter_async_context(_service(args, **client_kwargs))
            job = BatchJob(
                client,
                lines,
                args.out,
                budget=args.budget,
                max_attempts=args.max_attempts,
                task_timeout=args.timeout,
                retry_unknown=args.retry_unknown,
                download=not args.no_download,
                download_concurrency=args.downloads,
            )
            interrupts.on_first = job.stop
            interrupts.message = (
                "interrupted: no new submissions; writing the journal and manifest "
                "(press Ctrl-C again to quit at once)"
            )
            if not args.quiet:
                where = "the embedded simulator" if args.simulate else redact_url(client.base_url)
                print(f"batch: {len(lines)} prompts → {args.out} ({where})", flush=True)
                if receiver is not None:
                    print(f"callbacks: {receiver.redacted_url}", flush=True)
            summary = await _follow(job, _make_display(args.quiet))
    except _UsageError:
        return EXIT_USAGE
    except (JournalLockedError, JournalCorruptError, BatchInputError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except JournalError as exc:
        _err(str(exc))
        return EXIT_SOME_FAILED
    except OSError as exc:  # e.g. the output directory cannot be written
        _err(f"cannot write to {args.out}: {exc.strerror or exc}")
        return EXIT_SOME_FAILED
    if not args.quiet:
        _print_summary(summary)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


async def _follow(job: BatchJob, display: _Display) -> BatchSummary:
    """Run the job, refreshing the display while it runs."""
    run = asyncio.ensure_future(job.run())
    started = False
    try:
        while not run.done():
            if not started and job.progress().total:
                display.start(job.progress())
                started = True
            else:
                display.update(job.progress())
            await asyncio.wait({run}, timeout=_REFRESH)
        return run.result()
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        if started:
            display.stop(job.progress())


def _request_from_args(args: argparse.Namespace) -> VideoRequest:
    fields: dict[str, Any] = {"prompt": args.prompt}
    for name in ("model", "duration", "aspect_ratio"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.image_url:
        fields["image_urls"] = [args.image_url]
    return VideoRequest.from_json(fields)


def _generate(args: argparse.Namespace) -> int:
    try:
        request = _request_from_args(args)
    except InvalidRequestError as exc:
        _err(f"invalid request: {exc}")
        return EXIT_USAGE
    if not args.simulate and _connection(args) is None:
        return EXIT_USAGE
    return _run(lambda interrupts: _generate_async(args, request, interrupts))


async def _generate_async(
    args: argparse.Namespace, request: VideoRequest, interrupts: _Interrupts
) -> int:
    current = asyncio.current_task()
    assert current is not None
    interrupts.on_first = current.cancel
    interrupts.message = "interrupted"
    task_id: str | None = None
    client_kwargs: dict[str, Any] = {}
    if args.timeout is not None:
        client_kwargs["task_timeout"] = args.timeout
    try:
        async with _service(args, **client_kwargs) as client:
            task = await client.create_video(request)
            task_id = task.id
            if not args.quiet:
                print(f"task {task.id} created ({task.credits_reserved or '?'} credits reserved)")
            with _task_display(args.quiet) as on_progress:
                on_progress(task)
                task = await client.wait(task, on_progress=on_progress)
            if args.no_download:
                print(task.video_url)
                return EXIT_OK
            dest = Path(args.output) if args.output else Path(safe_filename(task.id) + ".mp4")
            if dest.is_dir():
                dest = dest / (safe_filename(task.id) + ".mp4")
            result = await client.download(task, dest)
            if not args.quiet:
                print(f"saved {result.path} ({result.size} bytes)")
            else:
                print(result.path)
            return EXIT_OK
    except _UsageError:
        return EXIT_USAGE
    except asyncio.CancelledError:
        if task_id is not None:
            _err(
                f"task {task_id} keeps running at the service; see `evolink-async status {task_id}`"
            )
        return EXIT_INTERRUPTED
    except TaskFailedError as exc:
        _err(str(exc))
        return EXIT_SOME_FAILED
    except TaskTimeoutError as exc:
        _err(f"{exc}; see `evolink-async status {exc.task_id}` later")
        return EXIT_SOME_FAILED
    except EvolinkError as exc:
        _err(str(exc))
        return EXIT_SOME_FAILED


@contextlib.contextmanager
def _task_display(quiet: bool) -> Any:
    """A callback showing one task's status and progress (rich bar or plain lines)."""
    if quiet:
        yield lambda task: None
        return
    if _is_tty(sys.stdout) and _rich_available():
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
        return

    seen: list[tuple[str, int | None]] = []

    def on_plain(task: Task) -> None:
        state = (task.raw_status, task.progress)
        if not seen or seen[-1] != state:
            seen.append(state)
            print(f"  {task.raw_status} {task.progress or 0}%", flush=True)

    yield on_plain


def _task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": task.raw_status or str(task.status),
        "progress": task.progress,
        "model": task.model,
        "created": task.created,
        "estimated_time": task.estimated_time,
        "credits_reserved": task.credits_reserved,
        "video_url": task.video_url,
        "error": ({"code": task.error.code, "message": task.error.message} if task.error else None),
    }


_T = TypeVar("_T")


def _one_request(
    args: argparse.Namespace,
    call: Callable[[EvolinkClient], Awaitable[_T]],
    show: Callable[[_T], None],
) -> int:
    """Run one API call (``status``, ``credits``), print its answer; map errors to exit codes."""
    if _connection(args) is None:
        return EXIT_USAGE

    async def command(interrupts: _Interrupts) -> int:
        current = asyncio.current_task()
        assert current is not None
        interrupts.on_first = current.cancel
        interrupts.message = "interrupted"
        try:
            async with _service(args) as client:
                answer = await call(client)
        except asyncio.CancelledError:
            return EXIT_INTERRUPTED
        except InvalidRequestError as exc:
            _err(str(exc))
            return EXIT_USAGE
        except EvolinkError as exc:
            _err(str(exc))
            return EXIT_SOME_FAILED
        show(answer)
        return EXIT_OK

    return _run(command)


def _status(args: argparse.Namespace) -> int:
    def show(task: Task) -> None:
        data = _task_json(task)
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
            return
        for key, value in data.items():
            if value is not None:
                shown = json.dumps(value) if isinstance(value, dict) else value
                print(f"{key + ':':<18}{shown}")

    return _one_request(args, lambda client: client.get_task(args.task_id), show)


def _credits(args: argparse.Namespace) -> int:
    def show(credits: Credits) -> None:
        data = {
            "remaining": credits.remaining,
            "key": _balance(credits.token),
            "account": _balance(credits.user),
        }
        if args.json:
            print(json.dumps(data))
            return
        remaining = "unlimited" if credits.remaining is None else f"{credits.remaining:g}"
        print(f"remaining credits: {remaining}")
        for name in ("key", "account"):
            balance = data[name]
            if isinstance(balance, dict):
                shown = ", ".join(f"{k} {v}" for k, v in balance.items() if v is not None)
                print(f"  {name}: {shown}")

    return _one_request(args, lambda client: client.get_credits(), show)


def _balance(balance: Any) -> dict[str, Any] | None:
    if balance is None:
        return None
    return {
        "remaining": balance.remaining_credits,
        "used": balance.used_credits,
        "unlimited": balance.unlimited_credits,
    }


def _simulate(args: argparse.Namespace) -> int:
    from .testing.cli import serve, simulator_kwargs_from_args  # noqa: PLC0415

    try:
        kwargs = simulator_kwargs_from_args(args)
    except (ValueError, TypeError) as exc:
        _err(str(exc))
        return EXIT_USAGE

    async def command(interrupts: _Interrupts) -> int:
        current = asyncio.current_task()
        assert current is not None
        interrupts.on_first = current.cancel
        interrupts.message = "stopping the simulator"
        try:
            await serve(**kwargs)
        except asyncio.CancelledError:
            return EXIT_OK
        except (ValueError, TypeError) as exc:  # a knob the config refuses
            _err(str(exc))
            return EXIT_USAGE
        except OSError as exc:  # e.g. the port is taken
            _err(str(exc))
            return EXIT_SOME_FAILED
        return EXIT_OK

    return _run(command)


# ------------------------------------------------------------------------------- parser


def _add_connection(parser: argparse.ArgumentParser, *, simulate: bool) -> None:
    group = parser.add_argument_group("service")
    group.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: $EVOLINK_BASE_URL or Evolink's)"
    )
    group.add_argument(
        "--api-key", metavar="KEY", help="API key (default: $EVOLINK_API_KEY; never printed)"
    )
    group.add_argument(
        "--time-scale",
        type=_positive_float,
        metavar="S",
        help="local seconds per service second: match a simulator running faster than real "
        f"time (default 1; {SIMULATE_TIME_SCALE} with --simulate)",
    )
    if simulate:
        group.add_argument(
            "--simulate",
            action="store_true",
            help="run the embedded simulator in-process (no key, no network, fast clips)",
        )


def _add_request_defaults(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--model", help=f"model {what} (default: sora-2-preview)")
    parser.add_argument("--duration", type=int, metavar="SECONDS", help=f"duration {what}")
    parser.add_argument(
        "--aspect-ratio", metavar="RATIO", help=f"aspect ratio {what} (e.g. 16:9, 720x1280)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``evolink-async``."""
    parser = argparse.ArgumentParser(
        prog="evolink-async",
        description="Generate videos with Evolink's API: batches, single clips, task status.",
        epilog="Exit status: 0 all completed, 1 some not completed, 2 usage or input error, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    batch = sub.add_parser(
        "batch",
        help="generate a clip for every prompt of a file (resumable)",
        description="Generate a clip for every prompt of PROMPTS into DIR, with a manifest and "
        "a journal; run the same command again to resume after a crash or Ctrl-C.",
    )
    batch.add_argument(
        "prompts",
        metavar="PROMPTS",
        help=".txt (one prompt a line), .jsonl (one request a "
        "line, the API's field names) or - for stdin",
    )
    batch.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory")
    batch.add_argument(
        "--format",
        choices=("auto", "txt", "jsonl"),
        default="auto",
        help="input format (default: from the file name; on stdin, jsonl if lines start with {)",
    )
    _add_connection(batch, simulate=True)
    _add_request_defaults(batch, "for lines that do not set it")
    limits = batch.add_argument_group("limits")
    limits.add_argument(
        "--concurrency",
        type=_positive_int,
        default=16,
        metavar="N",
        help="max tasks in flight (default 16)",
    )
    limits.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="max API requests per second (default 2; 50 with --simulate)",
    )
    limits.add_argument(
        "--budget",
        type=_non_negative_float,
        metavar="CREDITS",
        help="never reserve more credits for this batch (earlier runs included)",
    )
    limits.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=3,
        metavar="K",
        help="creates per prompt, retryable task failures included (default 3)",
    )
    limits.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="per task (default 1800); a timed-out task is re-attached by the next run",
    )
    batch.add_argument(
        "--retry-unknown",
        action="store_true",
        help="resubmit prompts whose earlier submission outcome is unknown (may pay twice)",
    )
    batch.add_argument(
        "--no-download", action="store_true", help="keep the result URLs, do not download"
    )
    batch.add_argument(
        "--downloads",
        type=_positive_int,
        default=4,
        metavar="N",
        help="downloads at once (default 4)",
    )
    callbacks = batch.add_argument_group("callbacks (the service calls back when a task ends)")
    callbacks.add_argument(
        "--callback-url",
        metavar="URL",
        help="public https URL under which the service reaches this process (a reverse proxy "
        "or a tunnel to --listen); a secret path segment is appended, kept across runs by "
        f"${CALLBACK_SECRET_ENV}; with --simulate an http loopback URL will do",
    )
    callbacks.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"where to receive callbacks (default {DEFAULT_LISTEN}; needs --callback-url)",
    )
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress, no summary")
    batch.set_defaults(handler=_batch)

    generate = sub.add_parser(
        "generate",
        help="generate one clip, wait for it and download it",
        description="Create one task, show its progress, and download the clip.",
    )
    generate.add_argument("prompt", metavar="PROMPT")
    _add_request_defaults(generate, "")
    generate.add_argument("--image-url", metavar="URL", help="a reference image (image-to-video)")
    generate.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="file (or directory) to save to (default: ./<task id>.mp4)",
    )
    generate.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="max wait")
    generate.add_argument("--no-download", action="store_true", help="print the result URL instead")
    generate.add_argument("--quiet", "-q", action="store_true", help="print only the file path")
    _add_connection(generate, simulate=True)
    generate.set_defaults(handler=_generate)

    status = sub.add_parser("status", help="show a task", description="Show one task.")
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(status, simulate=False)
    status.set_defaults(handler=_status)

    credits = sub.add_parser("credits", help="show the credit balance")
    credits.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(credits, simulate=False)
    credits.set_defaults(handler=_credits)

    from .testing.cli import add_simulator_arguments  # noqa: PLC0415

    simulate = sub.add_parser(
        "simulate",
        help="serve a local Evolink simulator until Ctrl-C",
        description="A local Evolink video API: no credits spent, faults on demand. Prints "
        "its base URL and API key.",
    )
    add_simulator_arguments(simulate)
    simulate.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evolink-async`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:  # before the event loop took over the signals
        _err("interrupted")
        return EXIT_INTERRUPTED
