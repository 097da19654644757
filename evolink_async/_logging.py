"""Logging: the package logs to the ``evolink_async`` logger; nothing is configured
on import (a library leaves that to its application). :func:`configure_logging` attaches one
stderr handler to ``evolink_async`` at a level given, or read from ``$EVOLINK_LOG``; the command
line calls it at start-up. The API key and the callback secret never reach a log record.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

__all__ = ["LOGGER_NAME", "LOG_ENV", "LOG_LEVELS", "configure_logging"]

LOGGER_NAME = "evolink_async"
LOG_ENV = "EVOLINK_LOG"
#: the values ``$EVOLINK_LOG`` (and ``configure_logging(level)``) take, case-insensitive
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` attaches (so a second call replaces it). Without
    a stream of its own it writes to whatever ``sys.stderr`` is at each record."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.follows_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follows_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str | int | None = None, *, stream: TextIO | None = None
) -> int | None:
    """Log ``evolink_async``'s records at ``level`` and above to ``stream`` (default stderr).

    ``level``: a name of :data:`LOG_LEVELS`, or a ``logging`` level number; None reads
    ``$EVOLINK_LOG`` and, when that is unset or empty, configures nothing and returns None.
    Returns the level set. Calling it again replaces its handler rather than adding one.
    Raises ValueError (naming the setting and the allowed values) for an unknown level.
    """
    source = "level"
    if level is None:
        level = os.environ.get(LOG_ENV, "").strip() or None
        source = f"${LOG_ENV}"
        if level is None:
            return None
    if isinstance(level, str):
        number = LOG_LEVELS.get(level.lower())
        if number is None:
            allowed = ", ".join(LOG_LEVELS)
            raise ValueError(f"{source}: unknown log level {level!r} (one of {allowed})")
    else:
        number = int(level)
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(number)
    return number
