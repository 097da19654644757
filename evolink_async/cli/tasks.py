"""``evolink-async status TASK_ID``, ``evolink-async credits``: one request, one answer; and
``evolink-async tasks``: the account's tasks, page by page."""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..client import EvolinkClient
from ..errors import EvolinkError, InvalidRequestError, ServiceUnreachableError
from ..models import Credits, Task, TaskSummary
from .app import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    Interrupts,
    connection,
    err,
    run,
    service,
    unreachable,
)

__all__ = [
    "credits_command",
    "credits_lines",
    "local_time",
    "one_request",
    "status_command",
    "summary_json",
    "task_json",
    "task_lines",
    "tasks_command",
]

_T = TypeVar("_T")


def one_request(
    args: argparse.Namespace,
    call: Callable[[EvolinkClient], Awaitable[_T]],
    show: Callable[[_T], None],
) -> int:
    """Run one API call, print its answer; map errors to exit codes."""
    if connection(args) is None:
        return EXIT_USAGE

    async def command(interrupts: Interrupts) -> int:
        scope = interrupts.cancel_scope("interrupted")
        try:
            async with service(args) as client:
                with scope:
                    answer = await call(client)
        except InvalidRequestError as exc:
            err(str(exc))
            return EXIT_USAGE
        except ServiceUnreachableError as exc:
            return unreachable(exc, sent="nothing was read")
        except EvolinkError as exc:
            err(str(exc))
            return EXIT_SOME_FAILED
        if scope.cancelled_caught:
            return EXIT_INTERRUPTED
        show(answer)
        return EXIT_OK

    return run(command)


def task_json(task: Task) -> dict[str, Any]:
    """What ``status`` shows of a task."""
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


def status_command(args: argparse.Namespace) -> int:
    def show(task: Task) -> None:
        data = task_json(task)
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
            return
        for key, value in task_lines(task):
            print(f"{key + ':':<18}{value}")

    return one_request(args, lambda client: client.get_task(args.task_id), show)


def task_lines(task: Task) -> list[tuple[str, str]]:
    """What ``status`` prints of a task, for a person: local times, units."""
    rows = [("id", task.id), ("status", task.raw_status or str(task.status))]
    if task.progress is not None:
        rows.append(("progress", f"{task.progress} %"))
    if task.model:
        rows.append(("model", task.model))
    if task.created:
        rows.append(("created", local_time(task.created)))
    if task.estimated_time is not None and not task.is_terminal:
        rows.append(("estimated time", f"{task.estimated_time:g} s"))
    if task.credits_reserved is not None:
        rows.append(("credits reserved", f"{task.credits_reserved:g}"))
    if task.video_url:
        rows.append(("video", task.video_url))
    if task.error is not None:
        rows.append(("error", f"{task.error.code}: {task.error.message or ''}".rstrip(": ")))
    return rows


def local_time(unix: float) -> str:
    """``2026-12-03 09:14:05 CET``: a Unix time in the machine's time zone."""
    return datetime.datetime.fromtimestamp(unix).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def credits_command(args: argparse.Namespace) -> int:
    def show(credits: Credits) -> None:
        data = {
            "remaining": credits.remaining,
            "key": _balance(credits.token),
            "account": _balance(credits.user),
        }
        if args.json:
            print(json.dumps(data))
            return
        for line in credits_lines(credits):
            print(line)

    return one_request(args, lambda client: client.get_credits(), show)


def credits_lines(credits: Credits) -> list[str]:
    """What ``credits`` prints, for a person: ONE figure that can be spent, with its meaning,
    then where it comes from."""
    available = credits.available
    if available is None:
        head = "available: unknown (the service gave no balance)"
    else:
        limited = credits.key_remaining is not None and credits.key_remaining == available
        why = "this key's own limit" if limited else "the account's balance"
        head = f"available: {available:g} credits (about ${available / 68:,.2f}; {why})"
    lines = [head]
    if credits.balance is not None:
        lines.append(f"  account balance: {credits.balance:g} (shared by all its keys)")
    if credits.key_used is not None:
        limit = (
            f", {credits.key_remaining:g} left of its limit"
            if credits.key_remaining is not None
            else ", no limit of its own"
        )
        lines.append(f"  this key: {credits.key_used:g} spent{limit}")
    return lines


def _balance(balance: Any) -> dict[str, Any] | None:
    if balance is None:
        return None
    return {
        "remaining": balance.remaining_credits,
        "used": balance.used_credits,
        "unlimited": balance.unlimited_credits,
    }


def summary_json(item: TaskSummary) -> dict[str, Any]:
    """What ``tasks`` shows of a list item."""
    return {
        "id": item.id,
        "status": item.raw_status or str(item.status),
        "progress": item.progress,
        "model": item.model,
        "type": item.type,
        "created_at": item.created_at,
        "credits_used": item.credits_used,
    }


def tasks_command(args: argparse.Namespace) -> int:
    async def collect(client: EvolinkClient) -> list[TaskSummary]:
        found: list[TaskSummary] = []
        items = client.list_tasks(
            status=args.status,
            type=args.type,
            model=args.model,
            since=None if args.since is None else datetime.timedelta(seconds=args.since),
        )
        async for item in items:
            found.append(item)
            if len(found) >= args.limit:
                break
        return found

    def show(items: list[TaskSummary]) -> None:
        for item in items:
            data = summary_json(item)
            if args.json:
                print(json.dumps(data, ensure_ascii=False))
                continue
            when = (
                datetime.datetime.fromtimestamp(item.created_at, datetime.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M:%S"
                )
                if item.created_at is not None
                else "-"
            )
            progress = "" if item.progress is None else f" {item.progress}%"
            print(f"{item.id}  {when}  {data['status']}{progress}  {item.model or '-'}")
        if not args.json and not items:
            print("no tasks")

    return one_request(args, collect, show)
