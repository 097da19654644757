"""The one retry engine: how long to wait before the next try.

Used by the transport (API requests), downloads and the poller (failed polls). A few named
numbers (:class:`RetryPolicy`), exponential backoff with jitter, ``Retry-After`` in seconds or
as an HTTP date, and a process-wide testing switch that every wait consults, as stamina does.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Mapping

import attrs

__all__ = [
    "RetryPolicy",
    "backoff",
    "is_testing",
    "parse_retry_after",
    "retry_after_from_headers",
    "set_testing",
]

_testing = False
_rng = random.Random()  # jitter only; not security relevant


def set_testing(enabled: bool) -> None:
    """Zero every retry wait (API requests, downloads, polls after a failed poll), for tests of
    code that uses the SDK. Affects every client of the process."""
    global _testing  # noqa: PLW0603 - a process-wide testing switch, like stamina's
    _testing = enabled


def is_testing() -> bool:
    """Whether :func:`set_testing` zeroed the retry waits."""
    return _testing


def backoff(
    retry: int,
    *,
    initial: float,
    maximum: float,
    jitter: float = 1.0,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry number ``retry`` (1-based): ``initial`` doubled each retry, capped
    at ``maximum``, of which the fraction ``jitter`` is random (1.0 = full jitter). Zero while
    testing."""
    if _testing:
        return 0.0
    base = min(maximum, initial * (2.0 ** max(0, retry - 1)))
    r = (rng or _rng).random()
    return base * (1.0 - jitter) + base * jitter * r


@attrs.frozen
class RetryPolicy:
    """How requests are retried.

    ``attempts`` counts the first try; ``wait_initial`` doubles each retry up to ``wait_max``;
    ``jitter`` is the randomized fraction of each wait (1.0 = full jitter); a ``Retry-After``
    longer than ``max_retry_after`` is not waited for: the error is raised instead.
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    wait_initial: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    wait_max: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(
        default=1.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    max_retry_after: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1-based), jitter applied."""
        return backoff(
            retry, initial=self.wait_initial, maximum=self.wait_max, jitter=self.jitter, rng=rng
        )


_RETRY_MSG = re.compile(r"retry\s+after\s+(\d+(?:\.\d+)?)\s*(?:s\b|sec|second)", re.IGNORECASE)


def parse_retry_after(header: str | None, message: str | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date) or, failing
    that, from a "retry after N seconds" error message. ``None`` when neither says."""
    if header:
        header = header.strip()
        try:
            seconds = float(header)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
        else:
            if not math.isnan(seconds):
                return max(0.0, seconds)
    if message:
        match = _RETRY_MSG.search(message)
        if match:
            return float(match.group(1))
    return None


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """:func:`parse_retry_after` of a response's ``Retry-After`` header."""
    return parse_retry_after(headers.get("Retry-After"))
