"""Running a command: the event loop, Ctrl-C and SIGTERM, exit codes, the connection to the
service (or to an embedded simulator)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from .._env import env_api_key, env_base_url, env_time_scale
from ..client import EvolinkClient
from ..errors import ServiceUnreachableError

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "SIMULATE_TIME_SCALE",
    "Interrupts",
    "UsageError",
    "connection",
    "err",
    "run",
    "service",
    "unreachable",
]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
#: the service could not be reached (refused, DNS, TLS) before anything was created
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

#: ``--simulate``: local seconds per simulated second (a "300 s" clip takes 1.5 s).
SIMULATE_TIME_SCALE = 0.005
_SIMULATE_RATE = 50.0
_SIMULATE_BURST = 10


def err(message: str) -> None:
    """A message for the user on stderr."""
    print(f"evolink-async: {message}", file=sys.stderr, flush=True)


def unreachable(exc: ServiceUnreachableError, *, sent: str = "nothing was created") -> int:
    """Say that the service cannot be reached, and why; the exit status for it."""
    err(
        f"{exc}; {sent}. Check --base-url (or $EVOLINK_BASE_URL) and the network, "
        "then run the same command again"
    )
    return EXIT_UNREACHABLE


class UsageError(Exception):
    """A usage problem already reported on stderr: exit 2."""


class Interrupts:
    """SIGINT/SIGTERM on the running loop: the first calls ``on_first`` (stop admitting,
    or cancel); a second SIGINT exits at once with status 130. Every journal record is
    written whole and fsynced before the next, and the manifest is replaced atomically, so
    exiting at any point leaves no corrupt file (a torn last journal line is tolerated).

    The handlers are the loop's own (``add_signal_handler``), not anyio's
    ``open_signal_receiver``: that one needs a task of its own to read the signals, in a task
    group that would wrap every error of the command in an exception group, and the second
    Ctrl-C would wait for that task's turn."""

    def __init__(self) -> None:
        self.count = 0
        self.on_first: Callable[[], object] | None = None
        self.message = "interrupted: stopping (press Ctrl-C again to quit at once)"
        self._loop: asyncio.AbstractEventLoop | None = None

    def cancel_scope(self, message: str) -> anyio.CancelScope:
        """A cancel scope that the first interrupt cancels, announced with ``message``. Enter
        it inside the service's ``async with``, so that closing the client is not cancelled;
        an interrupt before it is entered cancels it as it is entered."""
        scope = anyio.CancelScope()
        self.on_first = scope.cancel
        self.message = message
        return scope

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
            err(self.message)
            if self.on_first is not None:
                self.on_first()
            return
        if sig == signal.SIGINT:
            err("interrupted again: quitting now")
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)


def run(command: Callable[[Interrupts], Awaitable[int]]) -> int:
    """Run an async command with the signal handling above; return its exit status."""
    interrupts = Interrupts()

    async def runner() -> int:
        interrupts.install(asyncio.get_running_loop())
        try:
            return await command(interrupts)
        finally:
            interrupts.uninstall()

    try:
        return anyio.run(runner)
    except KeyboardInterrupt:  # no signal handlers on this platform
        return EXIT_INTERRUPTED


#: where ``--simulate`` keeps its simulator's tasks in a batch's output directory
SIMULATOR_STATE = ".simulator.jsonl"


def connection(args: argparse.Namespace) -> tuple[str, str] | None:
    """(base_url, api_key) from the flags and environment; None (after a message) when no
    key is available."""
    api_key = args.api_key or env_api_key()
    if not api_key:
        err("no API key: pass --api-key or set $EVOLINK_API_KEY (or try --simulate)")
        return None
    try:
        env_time_scale()
    except ValueError as exc:
        err(str(exc))
        return None
    return args.base_url or env_base_url(), api_key


@contextlib.asynccontextmanager
async def service(
    args: argparse.Namespace, *, state_dir: Path | None = None, **client_kwargs: Any
) -> AsyncIterator[EvolinkClient]:
    """A client for the real service, or for an embedded simulator with ``--simulate`` (which
    keeps its tasks in ``state_dir``, when given, so that a rerun there finds them again).
    Raises :class:`UsageError` (after a message) without an API key."""
    time_scale: float | None = args.time_scale
    client_kwargs.setdefault("idempotency", not getattr(args, "no_idempotency", False))
    if getattr(args, "simulate", False):
        from .. import testing  # noqa: PLC0415 - only needed for --simulate

        scale = time_scale or SIMULATE_TIME_SCALE
        # with callbacks, the simulator calls the local receiver over http on loopback
        insecure = client_kwargs.get("callbacks") is not None
        state = str(state_dir / SIMULATOR_STATE) if state_dir is not None else None
        async with testing.Simulator(
            time_scale=scale, allow_insecure_callbacks=insecure, state_path=state
        ) as sim:
            client_kwargs.setdefault("rate", _SIMULATE_RATE)
            client_kwargs.setdefault("burst", _SIMULATE_BURST)
            async with EvolinkClient(
                sim.api_key, sim.base_url, time_scale=scale, **client_kwargs
            ) as client:
                yield client
        return
    conn = connection(args)
    if conn is None:
        raise UsageError
    base_url, api_key = conn
    # no --time-scale: $EVOLINK_TIME_SCALE, or the one a simulator states on its answers
    async with EvolinkClient(api_key, base_url, time_scale=time_scale, **client_kwargs) as client:
        yield client
