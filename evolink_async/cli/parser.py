"""The argument parser of ``evolink-async``: one ``add_*`` function per command, and the
parsers of the number options."""

from __future__ import annotations

import argparse
import re
from typing import Any, Protocol

from ..__about__ import __version__
from .._env import CALLBACK_SECRET_ENV
from .app import SIMULATE_TIME_SCALE
from .batch import DEFAULT_LISTEN, batch_command
from .gallery import gallery_command
from .generate import generate_command
from .job import add_job, add_worker
from .limits import limits_command
from .simulate import simulate_command
from .tasks import credits_command, status_command, tasks_command

__all__ = [
    "add_batch",
    "add_connection",
    "add_credits",
    "add_gallery",
    "add_generate",
    "add_limits",
    "add_simulate",
    "add_status",
    "add_tasks",
    "build_parser",
    "duration_ago",
    "job_name",
    "ledger_url",
    "non_negative_float",
    "positive_float",
    "positive_int",
]

#: the exit codes, in every command's --help that can end with them
EXIT_STATUS = (
    "Exit status: 0 all completed, 1 some not completed, 2 usage or input error (nothing "
    "sent), 4 the service could not be reached before anything was created, 130 interrupted "
    "(run the same command again to resume)."
)


class _Commands(Protocol):
    """What ``add_subparsers()`` returns, as far as the ``add_*`` functions use it."""

    def add_parser(self, *args: Any, **kwargs: Any) -> argparse.ArgumentParser: ...


# ------------------------------------------------------------------------------- option types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def ledger_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise argparse.ArgumentTypeError("must start with postgresql:// or sqlite:///")
    return text


def job_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", text):
        raise argparse.ArgumentTypeError(
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return text


def _number(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 if allow_zero else value > 0):
        rule = "must not be negative" if allow_zero else "must be greater than 0"
        raise argparse.ArgumentTypeError(f"{rule}, got {text}")
    return value


def positive_float(text: str) -> float:
    return _number(text, allow_zero=False)


def non_negative_float(text: str) -> float:
    return _number(text, allow_zero=True)


# ------------------------------------------------------------------------------- shared groups


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
        type=positive_float,
        metavar="S",
        help="local seconds per service second, for a simulator running faster than real "
        "time (default: $EVOLINK_TIME_SCALE, else the scale the simulator states on its "
        f"answers, else 1; {SIMULATE_TIME_SCALE} with --simulate)",
    )
    group.add_argument(
        "--no-idempotency",
        action="store_true",
        help="send no Idempotency-Key (for a proxy that strips it): a create whose outcome is "
        "unknown is then never sent again",
    )
    if simulate:
        group.add_argument(
            "--simulate",
            action="store_true",
            help="run the embedded simulator in-process (no key, no network, fast clips)",
        )


def add_connection(parser: argparse.ArgumentParser) -> None:
    """The service's options (--base-url, --api-key, --time-scale), without --simulate."""
    _add_connection(parser, simulate=False)


def _add_request_defaults(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--model", help=f"model {what} (default: sora-2-preview)")
    parser.add_argument("--duration", type=int, metavar="SECONDS", help=f"duration {what}")
    parser.add_argument(
        "--aspect-ratio", metavar="RATIO", help=f"aspect ratio {what} (e.g. 16:9, 720x1280)"
    )


# ------------------------------------------------------------------------------- batch


def add_batch(sub: _Commands) -> None:
    batch = sub.add_parser(
        "batch",
        help="generate a clip for every prompt of a file (resumable)",
        description="Generate a clip for every prompt of PROMPTS into DIR, with a manifest and "
        "a journal; run the same command again to resume after a crash or Ctrl-C.",
        epilog=EXIT_STATUS,
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
    _add_batch_limits(batch)
    batch.add_argument(
        "--retry-unknown",
        action="store_true",
        help="resubmit prompts whose earlier submission outcome is unknown and that have no "
        "idempotency key (an older journal, or --no-idempotency): may pay twice; lines with a "
        "key are always sent again with it",
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit the prompts an earlier run left failed again, as new attempts with new "
        "idempotency keys (the service refunded the failed tasks)",
    )
    batch.add_argument(
        "--no-download", action="store_true", help="keep the result URLs, do not download"
    )
    batch.add_argument(
        "--downloads",
        type=positive_int,
        default=4,
        metavar="N",
        help="downloads at once (default 4)",
    )
    _add_batch_callbacks(batch)
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress, no summary")
    batch.set_defaults(handler=batch_command)


def _add_batch_limits(batch: argparse.ArgumentParser) -> None:
    limits = batch.add_argument_group("limits")
    limits.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="N",
        help="max tasks in flight (default 16)",
    )
    limits.add_argument(
        "--rate",
        type=positive_float,
        metavar="R",
        help="max API requests per second (default 2; 50 with --simulate)",
    )
    limits.add_argument(
        "--budget",
        type=non_negative_float,
        metavar="CREDITS",
        help="never reserve more credits for this batch (earlier runs included); with --redis, "
        "also the namespace's shared budget (the first process sets it, another total: exit 2)",
    )
    limits.add_argument(
        "--redis",
        metavar="URL",
        help="share the key's rate, tasks in flight and budget with every process on it, "
        "through Redis (default: $EVOLINK_REDIS_URL); Redis unreachable: requests fail",
    )
    limits.add_argument(
        "--redis-namespace",
        metavar="NAME",
        help="the shared limits' name (default: a keyed hash of the API key)",
    )
    limits.add_argument(
        "--allow-partial",
        action="store_true",
        help="start even when the credits cannot pay for the whole batch (checked first "
        "otherwise: exit 2, nothing sent); what is not paid for is reported skipped",
    )
    limits.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        metavar="K",
        help="creates per prompt, retryable task failures included (default 3)",
    )
    limits.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="per task (default 1800); a timed-out task is re-attached by the next run",
    )
    _add_batch_ledger(batch)


def _add_batch_ledger(batch: argparse.ArgumentParser) -> None:
    ledger = batch.add_argument_group("ledger (where the batch's state is kept)")
    ledger.add_argument(
        "--ledger",
        type=ledger_url,
        metavar="URL",
        help="postgresql://... to keep the job's ledger in PostgreSQL "
        "(default: OUT/ledger.sqlite, beside OUT/journal.jsonl)",
    )
    ledger.add_argument(
        "--job",
        type=job_name,
        default="default",
        metavar="NAME",
        help="the job's name in the ledger (default 'default')",
    )


def _add_batch_callbacks(batch: argparse.ArgumentParser) -> None:
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


# ------------------------------------------------------------------------------- the others


def add_generate(sub: _Commands) -> None:
    generate = sub.add_parser(
        "generate",
        help="generate one clip, wait for it and download it",
        description="Create one task, show its progress, and download the clip.",
        epilog=EXIT_STATUS,
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
    generate.add_argument("--timeout", type=positive_float, metavar="SECONDS", help="max wait")
    generate.add_argument("--no-download", action="store_true", help="print the result URL instead")
    generate.add_argument("--quiet", "-q", action="store_true", help="print only the file path")
    _add_connection(generate, simulate=True)
    generate.set_defaults(handler=generate_command)


def add_status(sub: _Commands) -> None:
    status = sub.add_parser("status", help="show a task", description="Show one task.")
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(status, simulate=False)
    status.set_defaults(handler=status_command)


def add_tasks(sub: _Commands) -> None:
    tasks = sub.add_parser(
        "tasks",
        help="list the account's tasks",
        description="List the account's tasks, newest first (no result links: use status).",
    )
    tasks.add_argument(
        "--status",
        choices=("processing", "completed", "failed", "cancelled"),
        help="only tasks in this status (processing includes queued tasks)",
    )
    tasks.add_argument("--type", choices=("video", "image", "audio"), help="only this type")
    tasks.add_argument("--model", help="only this model")
    tasks.add_argument(
        "--since",
        type=duration_ago,
        metavar="AGE",
        help="only tasks created in the last AGE: 90s, 30m, 2h, 7d",
    )
    tasks.add_argument("--limit", type=positive_int, default=100, help="at most this many")
    tasks.add_argument("--json", action="store_true", help="print JSON, one task a line")
    _add_connection(tasks, simulate=False)
    tasks.set_defaults(handler=tasks_command)


def duration_ago(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``7d`` (or bare seconds) as seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    unit = text[-1:].lower()
    number = text[:-1] if unit in units else text
    try:
        value = float(number) * units.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an age like 90s, 30m, 2h or 7d: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive age: {text!r}")
    return value


def add_credits(sub: _Commands) -> None:
    credits = sub.add_parser("credits", help="show the credit balance")
    credits.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(credits, simulate=False)
    credits.set_defaults(handler=credits_command)


def add_simulate(sub: _Commands) -> None:
    from ..testing.cli import add_simulator_arguments  # noqa: PLC0415

    simulate = sub.add_parser(
        "simulate",
        help="serve a local Evolink simulator until Ctrl-C",
        description="A local Evolink video API: no credits spent, faults on demand. Prints "
        "its base URL and API key.",
    )
    add_simulator_arguments(simulate)
    simulate.set_defaults(handler=simulate_command)


def add_gallery(sub: _Commands) -> None:
    gallery = sub.add_parser(
        "gallery",
        help="(re)build DIR/index.html, the page of a batch's clips",
        description="Write DIR/index.html from DIR/manifest.jsonl: every line of the manifest, "
        "its clip playable in place, filterable by status (batch writes it when it ends).",
    )
    gallery.add_argument("dir", metavar="DIR", help="a batch's output directory")
    gallery.add_argument("--title", help="the page's title (default: from DIR)")
    gallery.add_argument("--quiet", "-q", action="store_true", help="do not print the path")
    gallery.set_defaults(handler=gallery_command)


def add_limits(sub: _Commands) -> None:
    limits = sub.add_parser(
        "limits",
        help="show the limits processes share through Redis (or reset them)",
        description="Show a namespace's shared state: the rate and any pause, the leases of "
        "tasks in flight with their owners, the budget and its reservations.",
    )
    limits.add_argument("--redis", metavar="URL", help="default: $EVOLINK_REDIS_URL")
    limits.add_argument(
        "--namespace",
        metavar="NAME",
        help="default: the one derived from --api-key / $EVOLINK_API_KEY",
    )
    limits.add_argument("--api-key", metavar="KEY", help="the fleet's key (never printed)")
    limits.add_argument(
        "--reset-budget",
        action="store_true",
        help="forget the budget, what was spent and every reservation (asks first)",
    )
    limits.add_argument(
        "--clear-leases",
        action="store_true",
        help="free every concurrency slot, live processes' too (asks first)",
    )
    limits.add_argument("--yes", "-y", action="store_true", help="do not ask")
    limits.add_argument("--json", action="store_true", help="print JSON")
    limits.set_defaults(handler=limits_command)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``evolink-async``."""
    parser = argparse.ArgumentParser(
        prog="evolink-async",
        description="Generate videos with Evolink's API: batches, single clips, task status.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = (add_batch, add_generate, add_status, add_tasks, add_credits, add_simulate)
    for add in (*commands, add_gallery, add_limits, add_worker, add_job):
        add(sub)
    return parser
