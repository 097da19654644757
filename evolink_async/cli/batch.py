"""``evolink-async batch PROMPTS --out DIR``: a clip for every prompt of a file, resumable."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from .._env import CALLBACK_SECRET_ENV, env_callback_secret, env_redis_url
from ..batch import (
    BatchInputError,
    BatchJob,
    BatchLine,
    BatchSummary,
    CreditsShortError,
    UploadError,
    load_prompts,
)
from ..batch.store import LedgerConfig
from ..callbacks import CallbackReceiver, parse_listen
from ..client import EvolinkClient
from ..errors import (
    InvalidRequestError,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    ServiceUnreachableError,
    redact_url,
)
from ..limits import RedisLimits, SharedLimitsError
from ..models import is_loopback_host
from .app import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    Interrupts,
    UsageError,
    connection,
    err,
    run,
    service,
    unreachable,
)
from .display import Display, make_display, print_summary
from .gallery import write_batch_gallery
from .job import shared_batch

__all__ = ["DEFAULT_LISTEN", "batch_command", "follow"]

#: ``--listen`` when ``--callback-url`` is given without it.
DEFAULT_LISTEN = "127.0.0.1:8080"
_REFRESH = 0.125  # seconds between display refreshes
_STOPPING = (
    "interrupted: no new submissions; writing the journal and manifest "
    "(press Ctrl-C again to quit at once)"
)


def batch_command(args: argparse.Namespace) -> int:
    """Check the flags and the whole input before anything is sent; then run the batch."""
    try:
        receiver = _callback_receiver(args)
    except ValueError as exc:
        err(str(exc))
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
        err(str(exc))
        return EXIT_USAGE
    if not args.simulate and connection(args) is None:
        return EXIT_USAGE
    if args.ledger is not None and args.ledger.startswith(("postgresql://", "postgres://")):
        return shared_batch(args, lines)  # a shared job: create or join it, then work on it
    return run(lambda interrupts: _batch_async(args, lines, interrupts, receiver))


def _callback_receiver(args: argparse.Namespace) -> CallbackReceiver | None:
    """The receiver of ``--callback-url``/``--listen`` (not started), or None without them.
    Raises ValueError with a message for the user."""
    if args.callback_url is None:
        if args.listen is not None:
            raise ValueError("--listen needs --callback-url (the URL the service calls)")
        return None
    host, port = parse_listen(args.listen or DEFAULT_LISTEN)
    url = urlsplit(args.callback_url)
    # the embedded simulator may call back over http, on loopback only (the real service
    # calls https URLs of public hosts, as the receiver checks otherwise)
    insecure = args.simulate and url.scheme.lower() == "http"
    if insecure and not (url.hostname is not None and is_loopback_host(url.hostname)):
        raise ValueError("--callback-url: with --simulate, an http URL must be on loopback")
    try:
        return CallbackReceiver(
            args.callback_url,
            host=host,
            port=port,
            secret=env_callback_secret(),
            allow_insecure=insecure,
        )
    except InvalidRequestError as exc:
        raise ValueError(f"--callback-url: {exc}") from None
    except ValueError as exc:  # the secret: the message does not carry it
        raise ValueError(f"${CALLBACK_SECRET_ENV}: {exc}") from None


async def _batch_async(
    args: argparse.Namespace,
    lines: list[BatchLine],
    interrupts: Interrupts,
    receiver: CallbackReceiver | None,
) -> int:
    try:
        summary = await _run_job(args, lines, interrupts, receiver)
    except UsageError:
        return EXIT_USAGE
    except ServiceUnreachableError as exc:  # before any create got through: nothing spent
        return unreachable(exc)
    except SharedLimitsError as exc:  # another shared budget: exit 2; Redis unreachable: 1
        err(str(exc))
        return EXIT_SOME_FAILED if exc.unreachable else EXIT_USAGE
    except (JournalLockedError, JournalCorruptError, BatchInputError, CreditsShortError) as exc:
        err(str(exc))
        return EXIT_USAGE
    except (JournalError, UploadError) as exc:
        err(str(exc))
        return EXIT_SOME_FAILED
    except OSError as exc:  # e.g. the output directory cannot be written
        err(f"cannot write to {args.out}: {exc.strerror or exc}")
        return EXIT_SOME_FAILED
    if summary is None:  # could not listen for callbacks (reported)
        return EXIT_SOME_FAILED
    if not args.quiet:
        print_summary(summary)
    await write_batch_gallery(summary, quiet=args.quiet)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


async def _run_job(
    args: argparse.Namespace,
    lines: list[BatchLine],
    interrupts: Interrupts,
    receiver: CallbackReceiver | None,
) -> BatchSummary | None:
    """The job's summary; None (after a message) when the receiver cannot listen."""
    client_kwargs = _client_kwargs(args)
    async with contextlib.AsyncExitStack() as stack:
        if receiver is not None:  # listening before the first create gives its URL
            try:
                await stack.enter_async_context(receiver)
            except OSError as exc:
                where = f"{receiver.host}:{receiver.port}"
                err(f"cannot listen for callbacks on {where}: {exc.strerror or exc}")
                return None
            client_kwargs["callbacks"] = receiver
        client = await stack.enter_async_context(
            service(args, state_dir=Path(args.out), **client_kwargs)
        )
        if isinstance(client.limits, RedisLimits):
            await client.limits.check()  # reach Redis, set or check the shared budget
        job = _make_job(client, lines, args)
        interrupts.on_first = job.stop
        interrupts.message = _STOPPING

        def ready() -> None:  # the input and the directory are checked: output may begin
            if not args.quiet:
                where = "the embedded simulator" if args.simulate else redact_url(client.base_url)
                print(f"batch: {len(lines)} prompts → {args.out} ({where})", flush=True)
                if receiver is not None:
                    print(f"callbacks: {receiver.redacted_url}", flush=True)

        try:
            return await follow(job, make_display(args.quiet), on_ready=ready)
        except (OSError, JournalError) as exc:
            # the directory itself cannot be used (a file, no permission): bad input, exit 2
            if job.ready or isinstance(exc, (JournalLockedError, JournalCorruptError)):
                raise
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
            err(f"--out {args.out}: cannot be used as the output directory: {why}")
            raise UsageError from None


def _client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_in_flight": args.concurrency}
    redis_url = args.redis or env_redis_url()
    if redis_url:  # the key's limits shared by every process on it; --budget is the fleet's
        kwargs.update(limits=RedisLimits(redis_url, args.redis_namespace), budget=args.budget)
    if args.rate is not None:
        kwargs.update(rate=args.rate, burst=1)
    if args.timeout is not None:
        kwargs["task_timeout"] = args.timeout
    return kwargs


def _make_job(client: EvolinkClient, lines: list[BatchLine], args: argparse.Namespace) -> BatchJob:
    return BatchJob(
        client,
        lines,
        args.out,
        budget=args.budget,
        max_attempts=args.max_attempts,
        task_timeout=args.timeout,
        retry_unknown=args.retry_unknown,
        retry_failed=args.retry_failed,
        download=not args.no_download,
        download_concurrency=args.downloads,
        check_credits=not args.allow_partial,
        ledger=LedgerConfig(args.ledger, args.job),
    )


class _Refresher:
    """Shows a job's progress on a display, every ``_REFRESH`` seconds while it runs."""

    def __init__(self, job: BatchJob, display: Display) -> None:
        self.job = job
        self.display = display
        self.started = False

    async def loop(self) -> None:
        while True:
            progress = self.job.progress()
            if not self.started and progress.total and self.job.ready:
                self.display.start(progress)
                self.started = True
            elif self.started:
                self.display.update(progress)
            await anyio.sleep(_REFRESH)

    def stop(self) -> None:
        if self.started:
            self.display.stop(self.job.progress())


async def follow(
    job: BatchJob, display: Display, *, on_ready: Callable[[], object] | None = None
) -> BatchSummary:
    """Run the job, refreshing the display once it is ready (nothing is shown before the
    input and the directory are checked). The job's errors come out as they are, not wrapped
    in an exception group."""
    refresher = _Refresher(job, display)
    summary: BatchSummary | None = None
    error: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresher.loop)
            try:
                summary = await job.run(on_ready=on_ready)
            except Exception as exc:  # raised again below, on its own
                error = exc
            tg.cancel_scope.cancel()
    finally:
        refresher.stop()
    if error is not None:
        raise error
    assert summary is not None
    return summary
