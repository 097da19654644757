"""The ``evolink-async`` command line (also ``python -m evolink_async``).

::

    evolink-async batch PROMPTS --out DIR [--simulate] [--concurrency N] [--rate R] ...
    evolink-async batch PROMPTS --out DIR --callback-url https://bot.example.com/evolink
    evolink-async generate "A paper boat on a river" --duration 8 [-o boat.mp4]
    evolink-async status TASK_ID
    evolink-async credits
    evolink-async simulate --port 8080 --time-scale 0.05
    evolink-async gallery DIR
    evolink-async limits --redis URL [--namespace N] [--reset-budget] [--clear-leases]

Exit status: 0 all completed, 1 some not completed (or a request failed), 2 usage or input
errors (nothing was sent), 4 the service could not be reached (refused, DNS, TLS) before
anything was created, 130 interrupted. The API key (``--api-key`` or
``$EVOLINK_API_KEY``) is never printed.

Progress goes to a rich display when standard output is a terminal and rich (the ``cli``
extra) is installed, and to plain periodic log lines otherwise.

The modules: ``parser`` (the options), ``app`` (signals, the event loop, exit codes, the
connection), ``display`` (progress and summaries), and one per command: ``batch``,
``generate``, ``tasks`` (``status``, ``credits``), ``simulate``, ``gallery`` and ``limits``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._env import CALLBACK_SECRET_ENV
from .._logging import configure_logging
from .app import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    SIMULATE_TIME_SCALE,
    err,
)
from .parser import build_parser

if TYPE_CHECKING:
    import argparse

__all__ = [
    "CALLBACK_SECRET_ENV",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "SIMULATE_TIME_SCALE",
    "build_parser",
    "main",
]


def _configure_logging(verbose: int) -> None:
    """``-v``/``-vv`` log the package at info/debug to stderr; without them ``$EVOLINK_LOG``
    (debug, info, warning, error, critical) sets the level; neither: nothing is logged but
    warnings and errors, as Python's default."""
    if verbose:
        configure_logging(logging.DEBUG if verbose > 1 else logging.INFO)
    else:
        configure_logging()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evolink-async`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        _configure_logging(args.verbose)
    except ValueError as exc:  # a bad $EVOLINK_LOG
        err(str(exc))
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:  # before the event loop took over the signals
        err("interrupted")
        return EXIT_INTERRUPTED
