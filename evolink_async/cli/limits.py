"""``evolink-async limits``: show (or reset) the limits a fleet shares through Redis."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from .._env import env_api_key, env_redis_url
from ..limits import SharedLimitsError
from ..limits.redis_admin import clear_leases, read_state, reset_budget
from ..limits.redis_limits import default_namespace
from .app import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, err

__all__ = ["limits_command"]


def _confirm(what: str, args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        err(f"{what}: confirm with --yes (standard input is not a terminal)")
        return False
    answer = input(f"{what}. Continue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _show(state: dict[str, Any]) -> None:
    rate, budget = state["rate"], state["budget"]
    print(f"namespace {state['namespace']}")
    pause = rate["pause_left"]
    print(f"rate: x{rate['factor']:.3g} of the configured rate, paused {pause:.1f}s more")
    cap = state["concurrency"]["cap"]
    print(f"tasks in flight: {len(state['leases'])} of {f'{cap:g}' if cap else '(not set yet)'}")
    for lease in state["leases"]:
        print(f"  {lease['owner']}  expires in {lease['expires_in']:.1f}s")
    if state["waiting"]:
        print(f"waiting for a slot, in order: {', '.join(state['waiting'])}")
    if state.get("waiting_for_credits"):
        print(f"waiting for credits, in order: {', '.join(state['waiting_for_credits'])}")
    if budget is None:
        print("budget: none")
    else:
        total, spent, held = (
            budget.get("total", 0),
            budget.get("spent", 0),
            budget.get("reserved", 0),
        )
        print(f"budget: {total:g} credits, {spent:g} spent, {held:g} reserved")
    for r in state["reservations"]:
        print(f"  {r['amount']:g} credits held by {r['owner']}")


def limits_command(args: argparse.Namespace) -> int:
    url = args.redis or env_redis_url()
    if not url:
        err("no Redis: pass --redis URL or set $EVOLINK_REDIS_URL")
        return EXIT_USAGE
    namespace = args.namespace
    if namespace is None:
        key = args.api_key or env_api_key()
        if not key:
            err("no namespace: pass --namespace, or the fleet's --api-key ($EVOLINK_API_KEY)")
            return EXIT_USAGE
        namespace = default_namespace(key)
    if args.reset_budget and not _confirm(
        f"--reset-budget forgets the budget of {namespace}: its total, the credits spent and "
        "every reservation, a dead process's included (the tasks may still be billed)",
        args,
    ):
        return EXIT_USAGE
    if args.clear_leases and not _confirm(
        f"--clear-leases frees every concurrency slot of {namespace}, live processes' too",
        args,
    ):
        return EXIT_USAGE

    async def run() -> dict[str, Any]:
        if args.reset_budget:
            await reset_budget(url, namespace)
        if args.clear_leases:
            await clear_leases(url, namespace)
        return await read_state(url, namespace)

    try:
        state = anyio.run(run)
    except SharedLimitsError as exc:
        err(str(exc))
        return EXIT_SOME_FAILED
    if args.json:
        print(json.dumps(state))
    else:
        _show(state)
    return EXIT_OK
