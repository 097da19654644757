"""``evolink-async generate PROMPT``: create one task, show its progress, download the clip."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..client import EvolinkClient
from ..download import safe_filename
from ..errors import (
    EvolinkError,
    InvalidRequestError,
    ServiceUnreachableError,
    TaskFailedError,
    TaskTimeoutError,
)
from ..models import Task, VideoRequest
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
from .display import task_display

__all__ = ["generate_command", "request_from_args"]


def request_from_args(args: argparse.Namespace) -> VideoRequest:
    """The request of the flags; raises InvalidRequestError naming the field and rule."""
    fields: dict[str, Any] = {"prompt": args.prompt}
    for name in ("model", "duration", "aspect_ratio"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.image_url:
        fields["image_urls"] = [args.image_url]
    return VideoRequest.from_json(fields)


def generate_command(args: argparse.Namespace) -> int:
    """Check the request before anything is sent; then create, wait and download."""
    try:
        request = request_from_args(args)
    except InvalidRequestError as exc:
        err(f"invalid request: {exc}")
        return EXIT_USAGE
    if not args.simulate and connection(args) is None:
        return EXIT_USAGE
    return run(lambda interrupts: _generate_async(args, request, interrupts))


async def _generate_async(
    args: argparse.Namespace, request: VideoRequest, interrupts: Interrupts
) -> int:
    scope = interrupts.cancel_scope("interrupted")
    created: list[Task] = []
    client_kwargs: dict[str, Any] = {}
    if args.timeout is not None:
        client_kwargs["task_timeout"] = args.timeout
    try:
        async with service(args, **client_kwargs) as client:
            with scope:
                return await _create_wait_download(client, args, request, created)
    except UsageError:
        return EXIT_USAGE
    except TaskFailedError as exc:
        err(str(exc))
        return EXIT_SOME_FAILED
    except TaskTimeoutError as exc:
        err(f"{exc}; see `evolink-async status {exc.task_id}` later")
        return EXIT_SOME_FAILED
    except ServiceUnreachableError as exc:
        return unreachable(exc)
    except EvolinkError as exc:
        err(str(exc))
        return EXIT_SOME_FAILED
    # the first Ctrl-C cancelled the scope
    if created:
        task_id = created[0].id
        err(f"task {task_id} keeps running at the service; see `evolink-async status {task_id}`")
    return EXIT_INTERRUPTED


async def _create_wait_download(
    client: EvolinkClient, args: argparse.Namespace, request: VideoRequest, created: list[Task]
) -> int:
    """Create the task (appended to ``created``), follow it to its end, save or print it."""
    task = await client.create_video(request)
    created.append(task)
    if not args.quiet:
        print(f"task {task.id} created ({task.credits_reserved or '?'} credits reserved)")
    with task_display(args.quiet) as on_progress:
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
