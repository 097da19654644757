"""Run the simulator from a shell: ``python -m evolink_async.testing --port 8080``.

The main CLI's ``evolink-async simulate`` reuses this public module's ``add_simulator_arguments``,
``simulator_kwargs_from_args`` and ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from ._config import DEFAULT_API_KEY
from ._server import Simulator

__all__ = ["add_simulator_arguments", "main", "serve", "simulator_kwargs_from_args"]

DEFAULT_PORT = 8080

# (flag, type, metavar count, help). The knob is the flag's name with "_" for "-"; a flag
# left unset keeps the SimulatorConfig default.
_RANGE = 2
_KNOB_FLAGS: tuple[tuple[str, type, int, str], ...] = (
    ("--seed", int, 1, "seed of every random draw (default 0)"),
    ("--time-scale", float, 1, "real seconds per simulated second (default 1; 0.01 = 100x)"),
    ("--queue-delay", float, _RANGE, "queue time range, simulated s (default 0 30)"),
    ("--generation-time", float, _RANGE, "generation time range, simulated s (default 60 300)"),
    ("--rate-limit", int, 1, "requests per --rate-window real seconds per key (default: none)"),
    ("--rate-window", float, 1, "rate-limit window in real seconds (default 1)"),
    ("--max-concurrent", int, 1, "tasks pending+processing per key (default: none)"),
    ("--credits", float, 1, "starting balance (default 1000000)"),
    ("--failure-rate", float, 1, "fraction of tasks failing with --failure-codes"),
    ("--retryable-failure-rate", float, 1, "fraction failing with a retryable task error"),
    ("--fatal-failure-rate", float, 1, "fraction failing with a fatal task error"),
    ("--error-5xx-rate", float, 1, "fraction of API requests answered 502/503 (no task)"),
    ("--html-error-fraction", float, 1, "of those, the fraction with an HTML or empty body"),
    ("--slow-rate", float, 1, "fraction of API answers delayed by --slow-seconds"),
    ("--slow-seconds", float, 1, "delay of a slow answer, real s (default 5)"),
    ("--ghost-rate", float, 1, "fraction of API requests whose connection is dropped"),
    ("--link-ttl", float, 1, "result link lifetime, simulated s (default 86400)"),
    ("--download-fail-rate", float, 1, "fraction of tasks whose first download fails"),
    ("--callback-drop-rate", float, 1, "fraction of tasks whose callbacks are never sent"),
    ("--create-fault-rate", float, 1, "fraction of creates that get --create-fault (default 1)"),
    ("--create-fault-limit", int, 1, "at most this many faulted creates per prompt (default 1)"),
    ("--outcome-unknown-replays", int, 1, "repeats of a key answered paid_outcome_unknown"),
)


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags (one per knob) to ``parser``."""
    group = parser.add_argument_group("simulator")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on")
    group.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 = any free port ({DEFAULT_PORT})"
    )
    group.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key clients must send")
    for flag, type_, count, help_ in _KNOB_FLAGS:
        if count == _RANGE:
            group.add_argument(flag, type=type_, nargs=2, metavar=("LOW", "HIGH"), help=help_)
        else:
            group.add_argument(flag, type=type_, help=help_)
    group.add_argument(
        "--failure-codes", help="comma-separated task error codes for --failure-rate"
    )
    group.add_argument(
        "--download-fail-mode",
        choices=("alternate", "truncate", "503"),
        help="how a failing download fails (default: alternate)",
    )
    group.add_argument(
        "--create-fault",
        choices=("500", "502", "503", "520", "522", "524", "drop", "timeout"),
        help="answer a create the service took with this (a 5xx, a cut connection, a late "
        "answer after --slow-seconds)",
    )
    group.add_argument(
        "--no-idempotency",
        dest="idempotency",
        action="store_false",
        default=None,
        help="ignore Idempotency-Key (as behind a proxy that strips it)",
    )
    group.add_argument(
        "--sample-clip",
        dest="per_task_clips",
        action="store_false",
        default=None,
        help="serve the packaged 1 s sample to every task (default: a clip made for each task, "
        "of its duration and aspect ratio)",
    )
    group.add_argument(
        "--allow-insecure-callbacks",
        action="store_true",
        default=None,
        help="accept http:// and private/loopback callback_url hosts",
    )


def simulator_kwargs_from_args(ns: argparse.Namespace) -> dict[str, Any]:
    """The ``Simulator(**kwargs)`` for parsed flags; unset flags are left out."""
    kwargs: dict[str, Any] = {"host": ns.host, "port": ns.port, "api_key": ns.api_key}
    names = [flag[2:].replace("-", "_") for flag, *_ in _KNOB_FLAGS]
    extra = [
        "download_fail_mode",
        "allow_insecure_callbacks",
        "per_task_clips",
        "create_fault",
        "idempotency",
    ]
    for name in [*names, *extra]:
        value = getattr(ns, name, None)
        if value is not None:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    if getattr(ns, "failure_codes", None):
        kwargs["failure_codes"] = tuple(c.strip() for c in ns.failure_codes.split(",") if c.strip())
    return kwargs


async def serve(**kwargs: Any) -> None:
    """Run a simulator with these knobs, print where it is, and serve until cancelled (the
    simulator is closed in full even then)."""
    sim = Simulator(**kwargs)
    await sim.start()
    try:
        print(f"Evolink simulator serving on {sim.base_url}", flush=True)
        print(f"API key: {sim.api_key}", flush=True)
        print(f"Stats:   {sim.base_url}/_simulator/stats   (Ctrl-C to stop)", flush=True)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await sim.close()


async def _serve_until_stopped(kwargs: dict[str, Any]) -> None:
    """serve(), ending quietly on SIGTERM as on Ctrl-C. (A signal handler of the loop, which
    aiohttp runs on: it cancels the scope the moment the signal arrives.)"""
    with anyio.CancelScope() as scope:
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, scope.cancel)
        await serve(**kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evolink_async.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m evolink_async.testing",
        description="A local Evolink video API: no credits spent, faults on demand.",
    )
    add_simulator_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        anyio.run(_serve_until_stopped, simulator_kwargs_from_args(ns))
    except KeyboardInterrupt:
        pass
    except (ValueError, TypeError) as exc:  # a knob the config refuses
        parser.error(str(exc))
    except OSError as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
